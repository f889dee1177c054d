//! `POST /v1/sessions/{id}/files`: a multipart upload streamed to disk chunk by chunk under
//! a hidden temporary name, renamed into place once complete, and removed when the upload
//! fails, passes the files quota or is abandoned.
//!
//! An answer given before the client has sent its whole body (unknown session, quota) is
//! given only after the rest of the body was read and thrown away, up to [`DRAIN_FOR`]:
//! closing a connection with unread bytes makes the kernel send a reset, and many clients
//! report that reset instead of the answer.
//!
//! Bounds, so one client cannot hold what others need:
//! - memory: the multipart parser is fed only while it hands the bytes on as field data; one
//!   that holds more than [`PARSER_ROOM`] it cannot hand on (a part's headers with no end)
//!   gets nothing more, and the upload is refused (400);
//! - the quota: uploads of a session running at once share it ([`Share`]): each chunk is
//!   counted against the files on disk plus what every upload under way has written;
//! - time: a client that sends nothing for [`IDLE_TIMEOUT`] loses its upload (408).

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, BodyDataStream};
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};

use super::{blocking, path_error, safe_path, session_files};
use crate::api::{ApiError, AppState};
use crate::config::format_size;
use crate::protocol::files::FileDetails;
use crate::protocol::steel::ErrorBody;
use crate::worker::files;

/// How long the rest of a refused upload is read before the answer goes out regardless.
const DRAIN_FOR: Duration = Duration::from_secs(10);
/// Most bytes of the `path` part.
const MAX_PATH_PART: usize = 4096;
/// Bytes a multipart body may carry besides the file (boundaries, part headers, `path`): a
/// body longer than the room left plus this cannot fit and is refused before it is read.
const MULTIPART_ROOM: u64 = 64 << 10;
/// Bytes the multipart parser may hold that it has not handed on as field data (part headers,
/// boundaries) before it gets no more: besides these, it holds at most one chunk of the body.
const PARSER_ROOM: u64 = 64 << 10;
/// How long an upload may send nothing before it is abandoned.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Receives one upload; every outcome is an answer the client can read.
pub(super) async fn receive(st: &AppState, id: &str, req: Request) -> Response {
    receive_with(st, id, req, IDLE_TIMEOUT).await
}

async fn receive_with(st: &AppState, id: &str, req: Request, idle: Duration) -> Response {
    let waits_for_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = req.into_parts();
    let tap = Tap::new(body);
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let request = Request::from_parts(parts, Body::from_stream(tap.parser(idle)));
    match save(st, id, request, length, &tap).await {
        Ok(details) => Json(details).into_response(),
        Err(err) => match tap.refused() {
            Some(Refusal::Idle) => idle_timeout(idle),
            refused => {
                // A client waiting for `100 Continue` that got none sends no body: nothing to
                // read.
                if !waits_for_continue || tap.was_read() {
                    tap.clone().drain(DRAIN_FOR).await;
                }
                match refused {
                    Some(Refusal::Headers) => headers_too_long().into_response(),
                    _ => err.into_response(),
                }
            }
        },
    }
}

/// The 400 of a body whose part headers do not end.
fn headers_too_long() -> ApiError {
    ApiError::BadRequest(format!(
        "Request must be multipart/form-data: more than {} KiB of multipart headers and \
         boundaries (a part's headers must end with an empty line)",
        PARSER_ROOM >> 10
    ))
}

/// The 408 of an upload whose client went quiet (steel's error body).
fn idle_timeout(idle: Duration) -> Response {
    let status = StatusCode::REQUEST_TIMEOUT;
    let body = ErrorBody {
        message: format!(
            "the upload sent nothing for {} s and was abandoned; nothing was saved",
            idle.as_secs()
        ),
        status_code: status.as_u16(),
        error: status.canonical_reason().unwrap_or("Error").to_string(),
    };
    (status, Json(body)).into_response()
}

async fn save(
    st: &AppState,
    id: &str,
    request: Request,
    length: Option<u64>,
    tap: &Tap,
) -> Result<FileDetails, ApiError> {
    let (_, dir) = session_files(st, id).await?;
    let quota = st.files_quota;
    let mut share = Share::enter(&dir, quota);
    share.measure().await?;
    let used = share.used();
    let room = quota.saturating_sub(used);
    if length.is_some_and(|n| n > room.saturating_add(MULTIPART_ROOM)) {
        return Err(too_large(quota, used));
    }
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::BadRequest(format!("Request must be multipart/form-data: {e}")))?;
    let mut saved = None;
    let parts = read_parts(&mut form, &dir, &mut share, tap, &mut saved).await;
    let (part, (name, path)) = match (parts, saved) {
        (Ok(names), Some(part)) => (part, names),
        (Ok(_), None) => {
            return Err(ApiError::BadRequest(
                "No file provided: send a `file` part".into(),
            ));
        }
        (Err(err), saved) => {
            if let Some(part) = saved {
                part.discard().await;
            }
            return Err(err.into_api(quota));
        }
    };
    let raw = path.or(name).unwrap_or_else(|| "upload".into());
    let rel = match safe_path(&raw).and_then(|rel| not_partial(&raw, rel)) {
        Ok(rel) => rel,
        Err(err) => {
            part.discard().await;
            return Err(err);
        }
    };
    part.place(&dir, &rel)
        .await
        .map_err(|e| path_error(&raw, e))?;
    let details = blocking(move || files::entry(&dir, &rel))
        .await?
        .map(FileDetails::from)
        .ok_or_else(|| ApiError::Internal("the saved file vanished".into()));
    drop(share);
    details
}

/// Refuses names of the browser's downloads in progress: bro removes those of the downloads
/// it cancels, and must never take an upload for one.
fn not_partial(raw: &str, rel: PathBuf) -> Result<PathBuf, ApiError> {
    let partial = rel
        .file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(files::PARTIAL_SUFFIX));
    if partial {
        return Err(ApiError::BadRequest(format!(
            "Invalid path provided: '{raw}': names ending in {} are the browser's downloads in \
             progress",
            files::PARTIAL_SUFFIX
        )));
    }
    Ok(rel)
}

/// Reads every part: the `file` part into a [`Partial`] left in `saved` (also when an error
/// stops it half way, so the caller removes it), the `path` part as text, others skipped.
/// Returns the file part's own name and the `path` part.
async fn read_parts(
    form: &mut Multipart,
    dir: &Path,
    share: &mut Share,
    tap: &Tap,
    saved: &mut Option<Partial>,
) -> Result<(Option<String>, Option<String>), PartError> {
    let (mut name, mut path) = (None, None);
    while let Some(mut field) = form.next_field().await? {
        match field.name() {
            Some("file") => {
                if saved.is_some() {
                    return Err(ApiError::BadRequest("send one `file` part".into()).into());
                }
                if field.file_name().is_none() && field.content_type().is_none() {
                    return Err(ApiError::BadRequest(
                        "upload the file's bytes as the `file` part; fetching a URL is not supported".into(),
                    ).into());
                }
                name = field.file_name().map(str::to_string);
                let part = saved.insert(Partial::create(dir, share).await?);
                part.write(&mut field, share, tap).await?;
            }
            Some("path") => path = Some(small_text(&mut field, tap).await?),
            // Other parts are read past, never held.
            _ => while next_chunk(&mut field, tap).await?.is_some() {},
        }
    }
    Ok((name, path))
}

/// The field's next chunk, counted as handed on by the parser.
async fn next_chunk(field: &mut Field<'_>, tap: &Tap) -> Result<Option<Bytes>, MultipartError> {
    let chunk = field.chunk().await?;
    if let Some(c) = &chunk {
        tap.handed(c.len());
    }
    Ok(chunk)
}

fn bad(e: MultipartError) -> ApiError {
    ApiError::BadRequest(format!("Request must be multipart/form-data: {e}"))
}

/// The 413 of an upload past the quota, naming it.
fn too_large(quota: u64, used: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "the upload does not fit in this session's files quota of {} ({quota} bytes, \
         --files-quota): {} are in use; delete files or raise the quota",
        format_size(quota),
        format_size(used)
    ))
}

/// The `path` part, up to [`MAX_PATH_PART`] bytes of UTF-8.
async fn small_text(field: &mut Field<'_>, tap: &Tap) -> Result<String, ApiError> {
    let mut text = Vec::new();
    while let Some(chunk) = next_chunk(field, tap).await.map_err(bad)? {
        if text.len() + chunk.len() > MAX_PATH_PART {
            return Err(ApiError::BadRequest(format!(
                "the `path` part is longer than {MAX_PATH_PART} bytes"
            )));
        }
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text).map_err(|_| ApiError::BadRequest("the `path` part is not UTF-8".into()))
}

/// Why reading the parts stopped.
enum PartError {
    Multipart(MultipartError),
    /// With the bytes in use when the upload did not fit.
    OverQuota(u64),
    Api(ApiError),
}

impl From<MultipartError> for PartError {
    fn from(e: MultipartError) -> Self {
        PartError::Multipart(e)
    }
}

impl From<ApiError> for PartError {
    fn from(e: ApiError) -> Self {
        PartError::Api(e)
    }
}

impl PartError {
    fn into_api(self, quota: u64) -> ApiError {
        match self {
            PartError::Multipart(e) => bad(e),
            PartError::OverQuota(used) => too_large(quota, used),
            PartError::Api(e) => e,
        }
    }
}

/// The uploads under way, per files dir.
static LIVE: LazyLock<Mutex<HashMap<PathBuf, Live>>> = LazyLock::new(Default::default);

/// The uploads under way in one files dir.
#[derive(Debug, Default)]
struct Live {
    /// Bytes they have written.
    written: u64,
    /// Their temporary files.
    partials: HashSet<PathBuf>,
    /// Bumped when one ends: the files on disk changed, measures taken before are stale.
    epoch: u64,
    uploads: usize,
}

fn live() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Live>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// One upload's share of its session's quota: what it wrote counts for every upload of the
/// session until it ends (dropped), when its file is on disk or gone.
struct Share {
    dir: PathBuf,
    quota: u64,
    /// Bytes on disk besides the uploads under way, as last measured.
    settled: u64,
    /// The [`Live::epoch`] of that measure.
    epoch: u64,
    written: u64,
    partial: Option<PathBuf>,
}

/// What [`Share::try_take`] found.
enum Take {
    Taken,
    Over(u64),
    Stale,
}

impl Share {
    fn enter(dir: &Path, quota: u64) -> Share {
        let mut map = live();
        let l = map.entry(dir.to_path_buf()).or_default();
        l.uploads += 1;
        Share {
            dir: dir.to_path_buf(),
            quota,
            settled: 0,
            // Measured before first use.
            epoch: l.epoch.wrapping_sub(1),
            written: 0,
            partial: None,
        }
    }

    /// Measures the files on disk, leaving out the uploads under way.
    async fn measure(&mut self) -> Result<(), ApiError> {
        let (epoch, partials) = {
            let mut map = live();
            let l = map.entry(self.dir.clone()).or_default();
            (l.epoch, l.partials.clone())
        };
        let dir = self.dir.clone();
        self.settled = blocking(move || files::usage_besides(&dir, &partials)).await?;
        self.epoch = epoch;
        Ok(())
    }

    /// Bytes in use: on disk, and written by the uploads under way.
    fn used(&self) -> u64 {
        let written = live().get(&self.dir).map_or(0, |l| l.written);
        self.settled.saturating_add(written)
    }

    fn try_take(&mut self, n: u64) -> Take {
        let mut map = live();
        let l = map.entry(self.dir.clone()).or_default();
        if l.epoch != self.epoch {
            return Take::Stale;
        }
        let used = self.settled.saturating_add(l.written);
        if used.saturating_add(n) > self.quota {
            return Take::Over(used);
        }
        l.written += n;
        self.written += n;
        Take::Taken
    }

    /// Counts `n` more bytes of this upload, or says it does not fit.
    async fn take(&mut self, n: u64) -> Result<(), PartError> {
        loop {
            match self.try_take(n) {
                Take::Taken => return Ok(()),
                Take::Over(used) => return Err(PartError::OverQuota(used)),
                Take::Stale => self.measure().await?,
            }
        }
    }

    /// Names this upload's temporary file, which measures leave to it.
    fn register(&mut self, partial: PathBuf) {
        let mut map = live();
        map.entry(self.dir.clone())
            .or_default()
            .partials
            .insert(partial.clone());
        self.partial = Some(partial);
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut map = live();
        if let Some(l) = map.get_mut(&self.dir) {
            l.written = l.written.saturating_sub(self.written);
            if let Some(p) = &self.partial {
                l.partials.remove(p);
            }
            l.epoch = l.epoch.wrapping_add(1);
            l.uploads = l.uploads.saturating_sub(1);
            if l.uploads == 0 {
                map.remove(&self.dir);
            }
        }
    }
}

/// An upload being written under a hidden name in the files dir. Dropped before
/// [`Partial::place`] (an error, or the request abandoned), it removes its file.
struct Partial {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl Partial {
    async fn create(dir: &Path, share: &mut Share) -> Result<Partial, ApiError> {
        let path = dir.join(format!("{}{}", files::UPLOAD_PREFIX, uuid::Uuid::new_v4()));
        share.register(path.clone());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| ApiError::Internal(format!("saving the upload: {e}")))?;
        Ok(Partial {
            path,
            file: Some(file),
        })
    }

    /// Copies the field to the file, as long as the share of the quota allows.
    async fn write(
        &mut self,
        field: &mut Field<'_>,
        share: &mut Share,
        tap: &Tap,
    ) -> Result<(), PartError> {
        let disk = |e: io::Error| ApiError::Internal(format!("saving the upload: {e}"));
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| disk(io::ErrorKind::NotFound.into()))?;
        while let Some(chunk) = next_chunk(field, tap).await? {
            share.take(chunk.len() as u64).await?;
            file.write_all(&chunk).await.map_err(disk)?;
        }
        // tokio's File writes in the background: flush waits for the last write and reports
        // its error.
        Ok(file.flush().await.map_err(disk)?)
    }

    /// Removes the file now (the answer waits for it, so no partial file outlives it).
    async fn discard(mut self) {
        drop(self.file.take());
        let path = std::mem::take(&mut self.path);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
    }

    /// Moves the complete file to `rel` (directories on the way made; a symlink on the way
    /// refused; a file there replaced, a directory there refused); removes it when it cannot.
    async fn place(mut self, dir: &Path, rel: &Path) -> io::Result<()> {
        drop(self.file.take());
        let (dir, rel) = (dir.to_path_buf(), rel.to_path_buf());
        // From here the blocking task owns the file: placed or removed.
        let from = std::mem::take(&mut self.path);
        tokio::task::spawn_blocking(move || {
            let placed = files::resolve(&dir, &rel, true).and_then(|target| {
                if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    return Err(io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "a directory has that name",
                    ));
                }
                std::fs::rename(&from, &target)
            });
            if placed.is_err() {
                let _ = std::fs::remove_file(&from);
            }
            placed
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            let _ = std::fs::remove_file(path);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Why the tap stopped feeding the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The parser held more than [`PARSER_ROOM`] it could not hand on.
    Headers = 1,
    /// The client sent nothing for the idle timeout.
    Idle = 2,
}

/// The request body, shared: the multipart parser reads it through [`Tap::parser`], and what
/// the parser left is read and thrown away before a refusal is sent.
#[derive(Clone)]
struct Tap {
    shared: Arc<Shared>,
}

struct Shared {
    body: Mutex<BodyDataStream>,
    read: AtomicBool,
    /// Bytes given to the parser.
    fed: AtomicU64,
    /// Bytes the parser handed on as field data.
    handed: AtomicU64,
    /// A [`Refusal`], or 0.
    refused: AtomicU8,
}

impl Tap {
    fn new(body: Body) -> Self {
        Tap {
            shared: Arc::new(Shared {
                body: Mutex::new(body.into_data_stream()),
                read: AtomicBool::new(false),
                fed: AtomicU64::new(0),
                handed: AtomicU64::new(0),
                refused: AtomicU8::new(0),
            }),
        }
    }

    /// The body as the parser reads it: fed only while the parser hands its bytes on, and
    /// ended when the client sends nothing for `idle`.
    fn parser(&self, idle: Duration) -> Parser {
        Parser {
            shared: self.shared.clone(),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
            deferred_at: None,
        }
    }

    /// `n` bytes of field data came out of the parser.
    fn handed(&self, n: usize) {
        self.shared.handed.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn refused(&self) -> Option<Refusal> {
        match self.shared.refused.load(Ordering::Relaxed) {
            1 => Some(Refusal::Headers),
            2 => Some(Refusal::Idle),
            _ => None,
        }
    }

    fn was_read(&self) -> bool {
        self.shared.read.load(Ordering::Relaxed)
    }

    /// Reads the rest of the body and drops it, for up to `limit`.
    async fn drain(self, limit: Duration) {
        let rest = async {
            while let Some(Ok(_)) =
                futures_util::future::poll_fn(|cx| self.shared.poll_body(cx)).await
            {}
        };
        let _ = tokio::time::timeout(limit, rest).await;
    }
}

impl Shared {
    fn poll_body(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, axum::Error>>> {
        self.read.store(true, Ordering::Relaxed);
        // Never contended: the parser and the drain take turns, and a poll does not block.
        let mut body = self.body.lock().unwrap_or_else(|e| e.into_inner());
        body.poll_next_unpin(cx)
    }
}

/// The body as the multipart parser reads it ([`Tap::parser`]).
struct Parser {
    shared: Arc<Shared>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// Waiting for the client (the timer runs).
    waiting: bool,
    /// The handed count when the parser, holding too much, was last made to hand on first.
    deferred_at: Option<u64>,
}

impl Parser {
    fn refuse(&self, why: Refusal, message: &str) -> Poll<Option<Result<Bytes, axum::Error>>> {
        self.shared.refused.store(why as u8, Ordering::Relaxed);
        Poll::Ready(Some(Err(axum::Error::new(io::Error::other(
            message.to_string(),
        )))))
    }
}

impl Stream for Parser {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let handed = this.shared.handed.load(Ordering::Relaxed);
        let held = this
            .shared
            .fed
            .load(Ordering::Relaxed)
            .saturating_sub(handed);
        if held > PARSER_ROOM {
            // The parser reads all it can before it parses: let it hand on what it holds
            // first, and refuse only if it cannot.
            if this.deferred_at == Some(handed) {
                return this.refuse(Refusal::Headers, "multipart headers too long");
            }
            this.deferred_at = Some(handed);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if !this.waiting {
            this.waiting = true;
            this.timer.as_mut().reset(Instant::now() + this.idle);
        }
        match this.shared.poll_body(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.waiting = false;
                this.shared
                    .fed
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => this.refuse(Refusal::Idle, "the client sent nothing"),
                Poll::Pending => Poll::Pending,
            },
            other => {
                this.waiting = false;
                other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_that_goes_quiet_is_cut_off() {
        let first =
            futures_util::stream::iter([Ok::<_, io::Error>(Bytes::from_static(b"--x\r\n"))]);
        let tap = Tap::new(Body::from_stream(
            first.chain(futures_util::stream::pending()),
        ));
        let mut parser = tap.parser(Duration::from_millis(300));
        assert!(parser.next().await.unwrap().is_ok());
        let started = std::time::Instant::now();
        assert!(parser.next().await.unwrap().is_err());
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(tap.refused(), Some(Refusal::Idle));
    }

    #[tokio::test]
    async fn a_parser_that_hands_nothing_on_gets_nothing_more() {
        let chunk = Bytes::from(vec![b'a'; 48 << 10]);
        let endless = futures_util::stream::repeat_with(move || Ok::<_, io::Error>(chunk.clone()));
        let tap = Tap::new(Body::from_stream(endless));
        let mut parser = tap.parser(IDLE_TIMEOUT);
        // Fed up to the room and one chunk past it, then made to hand on, then refused.
        let mut fed = 0;
        while let Some(Ok(c)) = parser.next().await {
            fed += c.len() as u64;
            assert!(fed < PARSER_ROOM + (48 << 10) + 1, "fed {fed}");
        }
        assert_eq!(tap.refused(), Some(Refusal::Headers));
        // What is handed on makes room again.
        let tap = Tap::new(Body::from_stream(futures_util::stream::repeat_with(|| {
            Ok::<_, io::Error>(Bytes::from(vec![b'a'; 48 << 10]))
        })));
        let mut parser = tap.parser(IDLE_TIMEOUT);
        for _ in 0..100 {
            let c = parser.next().await.unwrap().unwrap();
            tap.handed(c.len());
        }
        assert_eq!(tap.refused(), None);
    }

    #[tokio::test]
    async fn uploads_at_once_share_the_quota() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("kept"), [0u8; 4]).unwrap();
        let mut a = Share::enter(&dir, 20);
        let mut b = Share::enter(&dir, 20);
        a.measure().await.unwrap();
        b.measure().await.unwrap();
        assert!(a.take(10).await.is_ok());
        // 4 on disk + 10 written by a: 7 more do not fit.
        assert!(matches!(b.take(7).await, Err(PartError::OverQuota(14))));
        assert!(b.take(6).await.is_ok());
        // a ends with its file on disk: b measures again and still counts it.
        std::fs::write(dir.join("a"), [0u8; 10]).unwrap();
        drop(a);
        assert!(matches!(b.take(1).await, Err(PartError::OverQuota(20))));
        drop(b);
        assert!(live().get(&dir).is_none());
    }
}
