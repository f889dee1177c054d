//! A session's files dir (`<session dir>/files/`), where uploads and the browser's downloads
//! land: the checks that keep a client's file names inside it, its size against the files
//! quota, and its listing. Everything here is blocking file system work: async callers run it
//! on `spawn_blocking`, as the host's file calls do ([`serve`]; uploads in [`upload`], file
//! and zip streams in [`stream`]).

pub mod serve;
pub mod stream;
pub mod upload;

use std::collections::HashSet;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name prefix of an upload still being received. It is written under this hidden name and
/// renamed into place once complete, so a half-received file never shows under its real name;
/// listings skip these, the quota counts them.
pub const UPLOAD_PREFIX: &str = ".bro-upload-";

/// Suffix of the file Chromium writes a download into until it completes.
pub const PARTIAL_SUFFIX: &str = ".crdownload";

/// One file of a files dir.
pub use crate::host::FileEntry as Entry;

/// A client's relative file name as a path inside the files dir, or `None` when it could leave
/// it or is not a name at all: empty, absolute, with `.` or `..` components, with a NUL, or an
/// upload's temporary name.
pub fn relative(raw: &str) -> Option<PathBuf> {
    if raw.is_empty() || raw.contains('\0') {
        return None;
    }
    let path = Path::new(raw);
    let normal = path.components().all(|c| match c {
        Component::Normal(name) => !name.to_string_lossy().starts_with(UPLOAD_PREFIX),
        _ => false,
    });
    // Rebuilt from its components, so `a//b/` is `a/b`.
    normal.then(|| path.components().collect())
}

/// `root/rel`, refused (`InvalidInput`) when a directory on the way is a symlink or not a
/// directory: a link planted in the files dir must not lead a client's name outside it. With
/// `create`, missing directories on the way are made. `rel` must come from [`relative`]. The
/// last component is not looked at: callers open it without following links
/// ([`open_nofollow`]) or replace it by a rename, which never follows one.
pub fn resolve(root: &Path, rel: &Path, create: bool) -> io::Result<PathBuf> {
    check_dir(root)?;
    let mut path = root.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .collect();
    for part in parents {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => return Err(escapes(rel)),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("'{}' is a file, not a directory", strip(root, &path)),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match std::fs::create_dir(&path) {
                    Ok(()) => {}
                    // Made meanwhile by another upload: look again.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => check_dir(&path)?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(root.join(rel))
}

/// Opens an existing file for reading without following a symlink in its last component (a
/// link there fails with `ELOOP`).
pub fn open_nofollow(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// A real directory, not a symlink to one.
fn check_dir(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", path.display()),
        ))
    }
}

fn escapes(rel: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("'{}' goes through a symlink", rel.display()),
    )
}

fn strip(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every regular file under `root` (symlinks are not followed), with uploads in progress when
/// `with_uploads`.
fn walk(root: &Path, with_uploads: bool) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    let upload = entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(UPLOAD_PREFIX);
                    if with_uploads || !upload {
                        out.extend(entry_of(root, &path));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn entry_of(root: &Path, file: &Path) -> Option<Entry> {
    let meta = std::fs::symlink_metadata(file).ok()?;
    let modified_ms = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(Entry {
        path: file.strip_prefix(root).ok()?.to_string_lossy().into_owned(),
        size: meta.len(),
        modified_ms,
    })
}

/// The files a client sees, newest first (uploads in progress are left out).
pub fn list(root: &Path) -> Vec<Entry> {
    let mut out = walk(root, false);
    out.sort_by(|a, b| b.modified_ms.cmp(&a.modified_ms).then(a.path.cmp(&b.path)));
    out
}

/// One file a client names, if it is a regular file inside `root`.
pub fn entry(root: &Path, rel: &Path) -> Option<Entry> {
    let path = resolve(root, rel, false).ok()?;
    let meta = std::fs::symlink_metadata(&path).ok()?;
    meta.is_file().then(|| entry_of(root, &path)).flatten()
}

/// Bytes the files under `root` take against the quota: every regular file, downloads and
/// uploads in progress included.
pub fn usage(root: &Path) -> u64 {
    walk(root, true).iter().map(|e| e.size).sum()
}

/// How old (since its last write) an upload's temporary file must be to count as left over
/// by a daemon that stopped mid-upload: a live upload writes at least every minute (its idle
/// timeout), so an hour without a write is never one in progress.
pub const STALE_UPLOAD: Duration = Duration::from_secs(3600);

/// Bytes the files under `root` take against the quota, leaving out the uploads in progress
/// named in `live` (their writers count them); uploads' temporary files not in `live` and not
/// written for [`STALE_UPLOAD`] are removed instead of counted.
pub fn usage_besides(root: &Path, live: &HashSet<PathBuf>) -> u64 {
    let stale_before = stale_before();
    walk(root, true)
        .into_iter()
        .filter(|e| {
            let path = root.join(&e.path);
            if !is_upload(&path) {
                return true;
            }
            if live.contains(&path) {
                return false;
            }
            if e.modified_ms < stale_before {
                return std::fs::remove_file(&path).is_err();
            }
            true
        })
        .map(|e| e.size)
        .sum()
}

/// Removes the uploads' temporary files not written for [`STALE_UPLOAD`] (left by a daemon
/// that stopped mid-upload).
pub fn remove_stale_uploads(root: &Path) {
    let stale_before = stale_before();
    for e in walk(root, true) {
        let path = root.join(&e.path);
        if is_upload(&path) && e.modified_ms < stale_before {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn is_upload(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(UPLOAD_PREFIX))
}

/// Unix milliseconds [`STALE_UPLOAD`] ago.
fn stale_before() -> u64 {
    SystemTime::now()
        .checked_sub(STALE_UPLOAD)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// The partial file of a download Chromium announced as `suggested` (`<name>.crdownload` in
/// `root`), when that name is a plain file name.
pub fn partial_download(root: &Path, suggested: &str) -> Option<PathBuf> {
    let name = format!("{suggested}{PARTIAL_SUFFIX}");
    let rel = relative(&name)?;
    (rel.components().count() == 1).then(|| root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_dir_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "a\0b",
            "./a",
            ".bro-upload-1234",
            "d/.bro-upload-x",
        ] {
            assert_eq!(relative(bad), None, "{bad:?}");
        }
        assert_eq!(relative("a/b.txt"), Some(PathBuf::from("a/b.txt")));
        assert_eq!(relative("..hidden"), Some(PathBuf::from("..hidden")));
        // A doubled slash, a trailing one or an inner `.` name the same file (Rust drops them).
        assert_eq!(relative("a//b/"), Some(PathBuf::from("a/b")));
        assert_eq!(relative("a/./b"), Some(PathBuf::from("a/b")));
    }

    #[test]
    fn symlinks_planted_in_the_dir_lead_nowhere() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("files");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("secret")).unwrap();

        // A directory on the way that is a symlink: refused, reading and creating alike.
        let err = resolve(&root, Path::new("link/secret"), false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(resolve(&root, Path::new("link/new/x"), true).is_err());
        assert!(!outside.join("new").exists());
        // A symlink as the file itself: not a file of the dir, and not opened.
        assert_eq!(entry(&root, Path::new("secret")), None);
        let path = resolve(&root, Path::new("secret"), false).unwrap();
        assert!(open_nofollow(&path).is_err());
        // Neither is listed nor counted, and their targets are not either.
        assert!(list(&root).is_empty());
        assert_eq!(usage(&root), 0);
        // The files dir itself replaced by a link.
        let moved = tmp.path().join("files-link");
        std::os::unix::fs::symlink(&outside, &moved).unwrap();
        assert!(resolve(&moved, Path::new("secret"), false).is_err());
    }

    #[test]
    fn usage_counts_uploads_in_progress_that_listings_hide() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let dir = resolve(root, Path::new("a/b/c.txt"), true).unwrap();
        std::fs::write(&dir, [0u8; 10]).unwrap();
        std::fs::write(root.join(".bro-upload-1"), [0u8; 5]).unwrap();
        std::fs::write(root.join("x.bin.crdownload"), [0u8; 7]).unwrap();
        assert_eq!(usage(root), 22);
        let names: Vec<_> = list(root).into_iter().map(|e| e.path).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"a/b/c.txt".to_string()));
        assert_eq!(
            partial_download(root, "x.bin"),
            Some(root.join("x.bin.crdownload"))
        );
        assert_eq!(partial_download(root, "../x"), None);
        assert_eq!(partial_download(root, "a/x"), None);
        // A file where a directory is expected.
        assert!(resolve(root, Path::new("a/b/c.txt/d"), true).is_err());
    }

    #[test]
    fn quota_usage_leaves_live_uploads_to_their_writers_and_drops_stale_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("kept.bin"), [0u8; 10]).unwrap();
        let live = root.join(".bro-upload-live");
        std::fs::write(&live, [0u8; 5]).unwrap();
        let young = root.join(".bro-upload-young");
        std::fs::write(&young, [0u8; 7]).unwrap();
        let stale = root.join(".bro-upload-stale");
        std::fs::write(&stale, [0u8; 100]).unwrap();
        let old = SystemTime::now() - STALE_UPLOAD - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(usage(root), 122);
        // The live one is left to its writer, the young one counts, the stale one goes.
        assert_eq!(usage_besides(root, &HashSet::from([live.clone()])), 17);
        assert!(!stale.exists());
        assert!(live.exists() && young.exists());
        std::fs::File::options()
            .write(true)
            .open(&young)
            .unwrap()
            .set_modified(old)
            .unwrap();
        remove_stale_uploads(root);
        assert!(!young.exists());
        assert!(live.exists());
    }
}
