//! What [`LocalWorkerHost`](crate::worker::LocalWorkerHost)'s file calls do to a session's
//! files dir: check the client's names (nothing leaves the dir, no symlink is followed), run
//! the file system work on blocking threads, and answer with a [`HostError`] whose kind and
//! message the API passes on as they are.

use std::io;
use std::path::{Path, PathBuf};

use crate::host::{ByteStream, FileListing, FileRead, HostError, HostErrorKind};
use crate::protocol::session::SessionId;
use crate::worker::files::{self, stream};
use crate::worker::{chromium, downloads};

/// The files dir of session `id`, whose browser's dir is `session_dir`, created on first use.
/// A session that ended (its dir gone) is [`HostErrorKind::NotFound`].
pub async fn files_dir(id: &SessionId, session_dir: &Path) -> Result<PathBuf, HostError> {
    let dir = chromium::files_dir(session_dir);
    let check = dir.clone();
    let made = blocking(move || {
        // Never its parents: a session that ended meanwhile took its dir with it, and must not
        // get it back.
        match std::fs::create_dir(&check) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        // The root of every name a client gives: a link here would lead all of them away.
        if std::fs::symlink_metadata(&check)?.is_dir() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{} is not a directory",
                check.display()
            )))
        }
    })
    .await?;
    match made {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(HostError::new(
            HostErrorKind::NotFound,
            format!("session {id} ended"),
        )),
        Err(e) => Err(internal(format!("files dir: {e}"))),
    }
}

/// Runs blocking file system work off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HostError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| internal(format!("file task failed: {e}")))
}

/// A failure on the host's side (the disk, a task): a retry may help.
pub(super) fn internal(message: String) -> HostError {
    HostError::new(HostErrorKind::Retryable, message)
}

/// A client's file name as a path inside the files dir; [`HostErrorKind::BadInput`] when it
/// could leave it.
pub(super) fn safe_path(raw: &str) -> Result<PathBuf, HostError> {
    files::relative(raw).ok_or_else(|| {
        HostError::new(
            HostErrorKind::BadInput,
            format!("Invalid path provided: '{}'", raw.replace('\0', "\\0")),
        )
    })
}

/// The answer to a failed file system call on the client's file `raw`.
pub(super) fn path_error(raw: &str, err: io::Error) -> HostError {
    let bad = |message| HostError::new(HostErrorKind::BadInput, message);
    match err.kind() {
        io::ErrorKind::NotFound => HostError::new(
            HostErrorKind::NotFound,
            format!("no file '{raw}' in this session"),
        ),
        io::ErrorKind::InvalidInput | io::ErrorKind::IsADirectory => {
            bad(format!("Invalid path provided: '{raw}': {err}"))
        }
        // O_NOFOLLOW on a symlink.
        _ if err.raw_os_error() == Some(nix::libc::ELOOP) => {
            bad(format!("Invalid path provided: '{raw}' is a symlink"))
        }
        _ => internal(format!("'{raw}': {err}")),
    }
}

/// The files of the session in `session_dir`, its usage and why its downloads are stopped.
pub async fn listing(
    id: &SessionId,
    session_dir: &Path,
    quota: u64,
) -> Result<FileListing, HostError> {
    let dir = files_dir(id, session_dir).await?;
    let session_dir = session_dir.to_path_buf();
    let (entries, used, stopped) = blocking(move || {
        (
            files::list(&dir),
            files::usage(&dir),
            downloads::stopped(&session_dir),
        )
    })
    .await?;
    Ok(FileListing {
        entries,
        used,
        quota,
        downloads_stopped: stopped.map(|s| s.message),
    })
}

/// Opens the client's file `raw` for reading, without following a symlink.
pub async fn read(id: &SessionId, session_dir: &Path, raw: String) -> Result<FileRead, HostError> {
    let dir = files_dir(id, session_dir).await?;
    let rel = safe_path(&raw)?;
    let opened = {
        let rel = rel.clone();
        blocking(move || -> io::Result<_> {
            let path = files::resolve(&dir, &rel, false)?;
            let file = files::open_nofollow(&path)?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(io::ErrorKind::NotFound.into());
            }
            Ok((file, meta))
        })
        .await?
    };
    let (file, meta) = opened.map_err(|e| path_error(&raw, e))?;
    let modified_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    Ok(FileRead {
        path: rel.to_string_lossy().into_owned(),
        size: meta.len(),
        modified_ms,
        body: stream::file_body(file, meta.len()),
    })
}

/// Deletes the client's file `raw` (never a directory; a symlink itself, never its target).
pub async fn delete(id: &SessionId, session_dir: &Path, raw: String) -> Result<(), HostError> {
    let dir = files_dir(id, session_dir).await?;
    let rel = safe_path(&raw)?;
    let session_dir = session_dir.to_path_buf();
    blocking(move || -> io::Result<()> {
        let path = files::resolve(&dir, &rel, false)?;
        // Only files: `remove_file` on a symlink removes the link, never its target.
        if std::fs::symlink_metadata(&path)?.is_dir() {
            return Err(io::ErrorKind::NotFound.into());
        }
        std::fs::remove_file(path)?;
        downloads::clear_stopped(&session_dir);
        Ok(())
    })
    .await?
    .map_err(|e| path_error(&raw, e))
}

/// Deletes every file of the session in `session_dir`.
pub async fn clear(id: &SessionId, session_dir: &Path) -> Result<(), HostError> {
    let dir = files_dir(id, session_dir).await?;
    let session_dir = session_dir.to_path_buf();
    // remove_dir_all does not follow symlinks: a planted link goes, its target stays.
    blocking(move || {
        std::fs::remove_dir_all(&dir)?;
        match std::fs::create_dir(&dir) {
            // The session ended meanwhile: its dir is gone, which is not to be undone.
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        downloads::clear_stopped(&session_dir);
        Ok::<_, io::Error>(())
    })
    .await?
    .map_err(|e| internal(format!("deleting files: {e}")))
}

/// `files.zip` of the session in `session_dir`, once one of the [`stream::MAX_ZIPS`] permits
/// is free; [`HostErrorKind::Busy`] when none is.
pub async fn zip(id: &SessionId, session_dir: &Path) -> Result<ByteStream, HostError> {
    let dir = files_dir(id, session_dir).await?;
    let permit = stream::ZIPS.try_acquire().map_err(|_| {
        HostError::new(
            HostErrorKind::Busy,
            format!(
                "{} files.zip downloads are being written (the most at once, across sessions); \
                 try again when one is done",
                stream::MAX_ZIPS
            ),
        )
    })?;
    Ok(stream::zip_body(dir, permit, stream::ZIP_STALL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_escape_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a\0b", "./a"] {
            let err = safe_path(bad).unwrap_err();
            assert_eq!(err.kind, HostErrorKind::BadInput, "{bad:?}");
            assert!(!err.message.contains('\0'));
        }
        assert_eq!(safe_path("a/b.txt").unwrap(), PathBuf::from("a/b.txt"));
    }

    #[test]
    fn symlinks_are_client_errors() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("l")).unwrap();
        let err = files::open_nofollow(&tmp.path().join("l")).unwrap_err();
        assert_eq!(path_error("l", err).kind, HostErrorKind::BadInput);
        let missing = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(path_error("x", missing).kind, HostErrorKind::NotFound);
    }
}
