//! `POST /v1/sessions/{id}/files`: a multipart upload whose file part streams on to the
//! session's host ([`WorkerHost::upload_file`]) chunk by chunk as it arrives; the host writes
//! it under a temporary name within the files quota, and places it under the client's name
//! once the form is read (the `path` part may come after the file).
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
//! - the quota: enforced by the host on every chunk; a body announced longer than the room
//!   left (plus [`MULTIPART_ROOM`]) is refused before it is read;
//! - time: a client that sends nothing for [`IDLE_TIMEOUT`] loses its upload (408).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};

use super::{FileDetails, files_of};
use crate::api::{ApiError, AppState};
use crate::host::{FilesOf, HostError, WorkerHost};
use crate::protocol::steel::ErrorBody;

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
/// How long the rest of a form may take once its file part arrived whole. The file waits for
/// its name under a hidden temporary name meanwhile, and such a file untouched for an hour is
/// taken for a dead upload's and removed: a form that trickles on past this is cut off long
/// before that.
const REST_OF_FORM: Duration = Duration::from_secs(300);

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
            Some(Refusal::Late) => form_too_slow(),
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

/// The 408 of a form that went on too long after its file (steel's error body).
fn form_too_slow() -> Response {
    let status = StatusCode::REQUEST_TIMEOUT;
    let body = ErrorBody {
        message: format!(
            "the rest of the form took more than {} s after its file and was abandoned; \
             nothing was saved",
            REST_OF_FORM.as_secs()
        ),
        status_code: status.as_u16(),
        error: status.canonical_reason().unwrap_or("Error").to_string(),
    };
    (status, Json(body)).into_response()
}

/// Reads the form while the host writes its file part, then has the host place the file
/// under the client's name (or drop it).
async fn save(
    st: &AppState,
    id: &str,
    request: Request,
    length: Option<u64>,
    tap: &Tap,
) -> Result<FileDetails, ApiError> {
    let (host, of) = files_of(st, id).await?;
    // The file is at least the body less what a form carries besides it.
    let min_size = length.map(|n| n.saturating_sub(MULTIPART_ROOM));
    let (feed, go, file) = Feed::new();
    let written = async {
        let upload = host.upload_file(of.clone(), min_size, feed.boxed()).await?;
        Ok::<_, HostError>(Staged::new(&host, &of, upload))
    };
    let (written, form) = tokio::join!(written, read_form(request, tap, go, file));
    let (staged, (name, path)) = match (written, form) {
        (Ok(staged), Ok(form)) if form.file => (staged, (form.name, form.path)),
        (Ok(staged), form) => {
            staged.discard().await;
            return Err(form.map_or_else(PartError::into_api, |_| no_file()));
        }
        (Err(err), Err(PartError::NotRead | PartError::HostStopped)) => return Err(err.into()),
        (Err(_), Err(err)) => return Err(err.into_api()),
        (Err(_), Ok(form)) if !form.file => return Err(no_file()),
        (Err(err), Ok(_)) => return Err(err.into()),
    };
    let raw = path.or(name).unwrap_or_else(|| "upload".into());
    let entry = host.place_upload(of, staged.keep(), raw).await?;
    Ok(FileDetails::from(entry))
}

fn no_file() -> ApiError {
    ApiError::BadRequest("No file provided: send a `file` part".into())
}

/// The file part's bytes as the host reads them. The form is read only once the host asks
/// for the first bytes, so its own refusals (an ended session, the quota) come first.
struct Feed {
    go: Option<oneshot::Sender<()>>,
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl Feed {
    /// The stream, the signal that the host reads, and the sender of the file part's bytes.
    fn new() -> (Feed, oneshot::Receiver<()>, mpsc::Sender<io::Result<Bytes>>) {
        let (go_tx, go_rx) = oneshot::channel();
        // One chunk in flight: the parser reads on only as fast as the host writes.
        let (tx, rx) = mpsc::channel(1);
        let feed = Feed {
            go: Some(go_tx),
            rx,
        };
        (feed, go_rx, tx)
    }
}

impl Stream for Feed {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
        self.rx.poll_recv(cx)
    }
}

/// An upload the host holds under its temporary name. Dropped unplaced (an error, or the
/// request abandoned), it has the host remove it.
struct Staged {
    host: Arc<dyn WorkerHost>,
    of: FilesOf,
    upload: Option<String>,
}

impl Staged {
    fn new(host: &Arc<dyn WorkerHost>, of: &FilesOf, upload: String) -> Staged {
        Staged {
            host: Arc::clone(host),
            of: of.clone(),
            upload: Some(upload),
        }
    }

    /// The upload's id, to be placed.
    fn keep(mut self) -> String {
        self.upload.take().unwrap_or_default()
    }

    /// Removes the upload now (the answer waits for it, so no temporary file outlives it).
    async fn discard(mut self) {
        if let Some(upload) = self.upload.take() {
            self.host.discard_upload(self.of.clone(), upload).await;
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        let (host, of) = (Arc::clone(&self.host), self.of.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { host.discard_upload(of, upload).await });
        }
    }
}

/// What the form held besides the file's bytes.
struct Form {
    /// It had a `file` part, sent whole.
    file: bool,
    /// The file part's own name.
    name: Option<String>,
    /// The `path` part.
    path: Option<String>,
}

/// Once the host reads (`go`), reads every part: the `file` part's bytes into `file`, the
/// `path` part as text, others skipped. When the file part does not arrive whole (an error,
/// or none was sent), the host is told with an error, so it keeps nothing.
async fn read_form(
    request: Request,
    tap: &Tap,
    go: oneshot::Receiver<()>,
    file: mpsc::Sender<io::Result<Bytes>>,
) -> Result<Form, PartError> {
    if go.await.is_err() {
        return Err(PartError::NotRead);
    }
    let mut file = Some(file);
    let read = read_parts(request, tap, &mut file).await;
    if let Some(file) = file {
        let cut = io::Error::other("the file part did not arrive whole");
        let _ = file.send(Err(cut)).await;
    }
    read
}

/// Reads the parts; the sender leaves `file` once the file part was sent whole.
async fn read_parts(
    request: Request,
    tap: &Tap,
    file: &mut Option<mpsc::Sender<io::Result<Bytes>>>,
) -> Result<Form, PartError> {
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::BadRequest(format!("Request must be multipart/form-data: {e}")))?;
    let mut out = Form {
        file: false,
        name: None,
        path: None,
    };
    while let Some(mut field) = form.next_field().await? {
        match field.name() {
            Some("file") => {
                let Some(to) = file.as_ref() else {
                    return Err(ApiError::BadRequest("send one `file` part".into()).into());
                };
                if field.file_name().is_none() && field.content_type().is_none() {
                    return Err(ApiError::BadRequest(
                        "upload the file's bytes as the `file` part; fetching a URL is not supported".into(),
                    ).into());
                }
                out.name = field.file_name().map(str::to_string);
                while let Some(chunk) = next_chunk(&mut field, tap).await? {
                    if to.send(Ok(chunk)).await.is_err() {
                        return Err(PartError::HostStopped);
                    }
                }
                // Sent whole: the stream ends, and the host keeps the file.
                *file = None;
                out.file = true;
                tap.file_arrived();
            }
            Some("path") => out.path = Some(small_text(&mut field, tap).await?),
            // Other parts are read past, never held.
            _ => while next_chunk(&mut field, tap).await?.is_some() {},
        }
    }
    Ok(out)
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

/// Why reading the form stopped.
enum PartError {
    /// The host refused before it read anything: the form was not read.
    NotRead,
    /// The host stopped reading the file (the quota, its disk): its error says why.
    HostStopped,
    Multipart(MultipartError),
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
    fn into_api(self) -> ApiError {
        match self {
            PartError::Multipart(e) => bad(e),
            PartError::Api(e) => e,
            // The host's own answer comes with these; never without one.
            PartError::NotRead | PartError::HostStopped => {
                ApiError::Internal("the upload stopped without a reason".into())
            }
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
    /// The rest of the form took longer than [`REST_OF_FORM`] after its file.
    Late = 3,
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
    /// When the rest of the form must be in by, once its file arrived.
    rest_by: Mutex<Option<Instant>>,
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
                rest_by: Mutex::new(None),
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

    /// The file part arrived whole: the rest of the form has [`REST_OF_FORM`].
    fn file_arrived(&self) {
        self.rest_within(REST_OF_FORM);
    }

    /// The rest of the body must be read within `limit` from now.
    fn rest_within(&self, limit: Duration) {
        let mut rest_by = self
            .shared
            .rest_by
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *rest_by = Some(Instant::now() + limit);
    }

    /// `n` bytes of field data came out of the parser.
    fn handed(&self, n: usize) {
        self.shared.handed.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn refused(&self) -> Option<Refusal> {
        match self.shared.refused.load(Ordering::Relaxed) {
            1 => Some(Refusal::Headers),
            2 => Some(Refusal::Idle),
            3 => Some(Refusal::Late),
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
        // Checked at every read; a client that sends nothing is woken by the idle timer.
        let rest_by = *this
            .shared
            .rest_by
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if rest_by.is_some_and(|by| Instant::now() >= by) {
            return this.refuse(Refusal::Late, "the rest of the form came too slowly");
        }
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
    async fn a_form_that_trickles_on_after_its_file_is_cut_off() {
        // A byte every 100 ms: never quiet for the idle timeout, never done.
        let drip = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok::<_, io::Error>(Bytes::from_static(b"x")), ()))
        });
        let tap = Tap::new(Body::from_stream(drip));
        let mut parser = tap.parser(Duration::from_millis(300));
        assert!(parser.next().await.unwrap().is_ok());
        tap.rest_within(Duration::from_millis(500));
        let started = std::time::Instant::now();
        while let Some(Ok(_)) = parser.next().await {}
        assert_eq!(tap.refused(), Some(Refusal::Late));
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

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
}
