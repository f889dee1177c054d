//! The disk side of an upload: its bytes written chunk by chunk under a hidden temporary name
//! ([`files::UPLOAD_PREFIX`]) within the session's files quota, then renamed into place once
//! the client's name for it is known, or removed when the upload fails, passes the quota or is
//! abandoned.
//!
//! The quota is shared by the uploads of a session running at once (`Share`): each chunk is
//! counted against the files on disk plus what every upload under way has written.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::serve::{blocking, internal, path_error, safe_path};
use crate::config::format_size;
use crate::host::{ByteStream, FileEntry, HostError, HostErrorKind};
use crate::worker::files;

/// Writes `body` into the files dir `dir` under a temporary name; the name's id. `min_size`
/// bytes that cannot fit in `quota` are refused before `body` is read.
pub async fn receive(
    dir: PathBuf,
    quota: u64,
    min_size: Option<u64>,
    mut body: ByteStream,
) -> Result<String, HostError> {
    let mut share = Share::enter(&dir, quota);
    share.measure().await?;
    let used = share.used();
    if min_size.is_some_and(|n| n > quota.saturating_sub(used)) {
        return Err(too_large(quota, used));
    }
    // The file is made once the body delivers (bytes, or its end): a body that fails first
    // leaves nothing behind.
    let mut next = body.next().await.transpose().map_err(cut_short)?;
    let id = uuid::Uuid::new_v4().to_string();
    let mut part = Partial::create(&dir, &id, &mut share).await?;
    let written = async {
        while let Some(chunk) = next {
            share.take(chunk.len() as u64).await?;
            part.write(&chunk).await?;
            next = body.next().await.transpose().map_err(cut_short)?;
        }
        Ok(())
    }
    .await;
    match written {
        Ok(()) => part.keep().await?,
        // Removed before the answer goes: a client that lists its files after a 413 must
        // not see the refused upload's temporary file.
        Err(err) => {
            part.abandon().await;
            return Err(err);
        }
    }
    Ok(id)
}

/// Moves the upload `id` of the files dir `dir` to the client's name `raw` (directories on
/// the way made; a symlink on the way refused; a file there replaced, a directory there
/// refused); removes it when it cannot.
pub async fn place(dir: PathBuf, id: &str, raw: String) -> Result<FileEntry, HostError> {
    let from = temp_path(&dir, id)?;
    let rel = match safe_path(&raw).and_then(|rel| not_partial(&raw, rel)) {
        Ok(rel) => rel,
        Err(err) => {
            remove(from).await;
            return Err(err);
        }
    };
    let placed = {
        let (dir, rel) = (dir.clone(), rel.clone());
        // From here the blocking task owns the file: placed or removed.
        blocking(move || {
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
        .await?
    };
    placed.map_err(|e| path_error(&raw, e))?;
    blocking(move || files::entry(&dir, &rel))
        .await?
        .ok_or_else(|| internal("the saved file vanished".into()))
}

/// Removes the upload `id` of the files dir `dir` (the caller waits for it, so no temporary
/// file outlives its answer).
pub async fn discard(dir: PathBuf, id: &str) {
    if let Ok(path) = temp_path(&dir, id) {
        remove(path).await;
    }
}

async fn remove(path: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
}

/// The temporary file of upload `id`, which must be a UUID (an id is never a path).
fn temp_path(dir: &Path, id: &str) -> Result<PathBuf, HostError> {
    match uuid::Uuid::try_parse(id) {
        Ok(uuid) => Ok(dir.join(format!("{}{uuid}", files::UPLOAD_PREFIX))),
        Err(_) => Err(HostError::new(
            HostErrorKind::BadInput,
            format!("no upload {id:?}"),
        )),
    }
}

/// Refuses names of the browser's downloads in progress: bro removes those of the downloads
/// it cancels, and must never take an upload for one.
fn not_partial(raw: &str, rel: PathBuf) -> Result<PathBuf, HostError> {
    let partial = rel
        .file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(files::PARTIAL_SUFFIX));
    if partial {
        return Err(HostError::new(
            HostErrorKind::BadInput,
            format!(
                "Invalid path provided: '{raw}': names ending in {} are the browser's downloads \
                 in progress",
                files::PARTIAL_SUFFIX
            ),
        ));
    }
    Ok(rel)
}

/// The body failed: the caller's side stopped the upload.
fn cut_short(err: io::Error) -> HostError {
    HostError::new(
        HostErrorKind::BadInput,
        format!("the upload ended early: {err}"),
    )
}

/// The refusal of an upload past the quota, naming it.
fn too_large(quota: u64, used: u64) -> HostError {
    HostError::new(
        HostErrorKind::TooLarge,
        format!(
            "the upload does not fit in this session's files quota of {} ({quota} bytes, \
             --files-quota): {} are in use; delete files or raise the quota",
            format_size(quota),
            format_size(used)
        ),
    )
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
    async fn measure(&mut self) -> Result<(), HostError> {
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
    async fn take(&mut self, n: u64) -> Result<(), HostError> {
        loop {
            match self.try_take(n) {
                Take::Taken => return Ok(()),
                Take::Over(used) => return Err(too_large(self.quota, used)),
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
/// [`Partial::keep`] (an error, or the upload abandoned), it removes its file.
struct Partial {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl Partial {
    async fn create(dir: &Path, id: &str, share: &mut Share) -> Result<Partial, HostError> {
        let path = dir.join(format!("{}{id}", files::UPLOAD_PREFIX));
        share.register(path.clone());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(disk)?;
        Ok(Partial {
            path,
            file: Some(file),
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), HostError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| disk(io::ErrorKind::NotFound.into()))?;
        file.write_all(chunk).await.map_err(disk)
    }

    /// Ends the writing and leaves the file in place, for [`place`] or [`discard`].
    async fn keep(mut self) -> Result<(), HostError> {
        if let Some(file) = self.file.as_mut() {
            // tokio's File writes in the background: flush waits for the last write and
            // reports its error.
            file.flush().await.map_err(disk)?;
        }
        drop(self.file.take());
        self.path = PathBuf::new();
        Ok(())
    }

    /// Ends the writing and removes the file, waiting for it.
    async fn abandon(mut self) {
        drop(self.file.take());
        let path = std::mem::take(&mut self.path);
        remove(path).await;
    }
}

fn disk(err: io::Error) -> HostError {
    internal(format!("saving the upload: {err}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
        assert_eq!(b.take(7).await, Err(too_large(20, 14)));
        assert!(b.take(6).await.is_ok());
        // a ends with its file on disk: b measures again and still counts it.
        std::fs::write(dir.join("a"), [0u8; 10]).unwrap();
        drop(a);
        assert_eq!(b.take(1).await, Err(too_large(20, 20)));
        drop(b);
        assert!(live().get(&dir).is_none());
    }

    fn body(chunks: Vec<io::Result<Bytes>>) -> ByteStream {
        futures_util::stream::iter(chunks).boxed()
    }

    #[tokio::test]
    async fn an_upload_is_placed_or_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let chunks = vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))];
        let id = receive(dir.clone(), 100, None, body(chunks)).await.unwrap();
        let entry = place(dir.clone(), &id, "d/x.txt".into()).await.unwrap();
        assert_eq!((entry.path.as_str(), entry.size), ("d/x.txt", 4));
        assert_eq!(std::fs::read(dir.join("d/x.txt")).unwrap(), b"abcd");
        // Past the quota, announced or not; a body that fails; a name that escapes.
        let announced = receive(dir.clone(), 10, Some(7), body(vec![])).await;
        assert_eq!(announced.unwrap_err().kind, HostErrorKind::TooLarge);
        let big = vec![Ok(Bytes::from(vec![0u8; 7]))];
        let over = receive(dir.clone(), 10, None, body(big)).await;
        assert_eq!(over.unwrap_err().kind, HostErrorKind::TooLarge);
        let broken = vec![Ok(Bytes::from_static(b"ab")), Err(io::Error::other("gone"))];
        let cut = receive(dir.clone(), 100, None, body(broken)).await;
        assert_eq!(cut.unwrap_err().kind, HostErrorKind::BadInput);
        let id = receive(dir.clone(), 100, None, body(vec![])).await.unwrap();
        let escapes = place(dir.clone(), &id, "../x".into()).await;
        assert_eq!(escapes.unwrap_err().kind, HostErrorKind::BadInput);
        let id = receive(dir.clone(), 100, None, body(vec![])).await.unwrap();
        discard(dir.clone(), &id).await;
        assert_eq!(
            temp_path(&dir, "../../etc/passwd").unwrap_err().kind,
            HostErrorKind::BadInput
        );
        // Every refusal above removed its file before it answered.
        let names: Vec<_> = files::list(&dir).into_iter().map(|e| e.path).collect();
        assert_eq!(names, ["d/x.txt"]);
        assert_eq!(files::usage(&dir), 4);
    }
}
