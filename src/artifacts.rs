//! Screenshots and PDFs handed out by URL: what a quick action answers a client that accepts
//! only JSON (the typed steel SDKs), as Steel Cloud answers `{"url": ...}`. The API stores the
//! bytes here and serves them at `GET /v1/artifacts/{name}`.
//!
//! They live in one private dir of the node that answered (0700, each file 0600), named by a
//! random UUID and the kind's extension: no client string ever reaches a path. They are kept
//! for the daemon's `retention`, like ended sessions (a sweep removes them; an expired one is
//! not served even before the sweep comes), and the dir holds at most `artifacts_quota` bytes
//! and [`MAX_ARTIFACTS`] files: past either, the oldest are evicted to make room. Evicting
//! rather than refusing keeps screenshots working when one client takes many; the URL of an
//! evicted one answers 404, which a client that fetches its URL at once (as they do) never
//! meets. One artifact larger than the whole quota is refused.
//!
//! No HTTP here, and nothing of sessions or browsers: the API calls [`ArtifactStore::put`]
//! and [`ArtifactStore::open`] (on a blocking thread: they touch the disk).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Most artifacts kept at once, whatever their size (bounds the index and the dir).
pub const MAX_ARTIFACTS: usize = 10_000;

/// How often the sweep looks for expired artifacts.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Removes expired artifacts every [`SWEEP_EVERY`] until `stop`.
pub async fn sweep_until(store: Arc<ArtifactStore>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        let store = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || store.sweep(now_ms())).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "expired artifacts removed"),
            Err(err) => tracing::warn!(%err, "the artifacts sweep failed"),
        }
    }
}

/// What an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    Jpeg,
    Pdf,
}

impl ArtifactKind {
    fn extension(self) -> &'static str {
        match self {
            ArtifactKind::Jpeg => "jpg",
            ArtifactKind::Pdf => "pdf",
        }
    }

    /// The content type it is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            ArtifactKind::Jpeg => "image/jpeg",
            ArtifactKind::Pdf => "application/pdf",
        }
    }
}

/// An artifact's name, `UUID.jpg` or `UUID.pdf`: its file name and the last part of its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArtifactName {
    pub id: Uuid,
    pub kind: ArtifactKind,
}

impl ArtifactName {
    /// Reads a client's name: a canonical lowercase UUID and a known extension, nothing else.
    pub fn parse(name: &str) -> Option<ArtifactName> {
        let (id, ext) = name.split_once('.')?;
        let kind = match ext {
            "jpg" => ArtifactKind::Jpeg,
            "pdf" => ArtifactKind::Pdf,
            _ => return None,
        };
        let parsed = Uuid::try_parse(id).ok()?;
        // The canonical spelling only, so one artifact has one name.
        (parsed.hyphenated().to_string() == id).then_some(ArtifactName { id: parsed, kind })
    }
}

impl std::fmt::Display for ArtifactName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id.hyphenated(), self.kind.extension())
    }
}

/// Why an artifact could not be stored or served.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Larger than the whole quota.
    #[error("{0}")]
    TooLarge(String),
    /// Never stored, expired or evicted.
    #[error("{0}")]
    NotFound(String),
    #[error("artifacts dir: {0}")]
    Io(#[from] io::Error),
}

/// One stored artifact.
#[derive(Debug, Clone, Copy)]
struct Stored {
    created_ms: u64,
    size: u64,
}

/// What is stored: by name, and by age for eviction and expiry.
#[derive(Debug, Default)]
struct Index {
    by_name: HashMap<ArtifactName, Stored>,
    /// Creation time, then the order of insertion (several in one millisecond).
    by_age: BTreeSet<(u64, u64, Uuid)>,
    names: HashMap<Uuid, ArtifactKind>,
    total: u64,
    next: u64,
}

impl Index {
    fn insert(&mut self, name: ArtifactName, stored: Stored) {
        self.total += stored.size;
        self.next += 1;
        self.by_age.insert((stored.created_ms, self.next, name.id));
        self.names.insert(name.id, name.kind);
        self.by_name.insert(name, stored);
    }

    /// Takes the oldest out; its name, to remove its file.
    fn pop_oldest(&mut self) -> Option<ArtifactName> {
        let (_, _, id) = self.by_age.pop_first()?;
        let kind = self.names.remove(&id)?;
        let name = ArtifactName { id, kind };
        if let Some(stored) = self.by_name.remove(&name) {
            self.total -= stored.size;
        }
        Some(name)
    }

    fn oldest_ms(&self) -> Option<u64> {
        self.by_age.first().map(|(ms, _, _)| *ms)
    }
}

/// The artifacts of this node.
#[derive(Debug)]
pub struct ArtifactStore {
    dir: PathBuf,
    quota: u64,
    /// Zero keeps them until evicted.
    retention: Duration,
    index: Mutex<Index>,
}

impl ArtifactStore {
    /// Opens (or creates, 0700) the dir and takes up what it holds: artifacts of an earlier
    /// run are kept for what is left of their retention; anything else in it (the temp file
    /// of a write that died) is removed.
    pub fn open(dir: PathBuf, quota: u64, retention: Duration) -> io::Result<ArtifactStore> {
        crate::paths::create_private_dir(&dir)?;
        let mut index = Index::default();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let name = entry.file_name();
            let parsed = name.to_str().and_then(ArtifactName::parse);
            match parsed {
                Some(name) if meta.is_file() => {
                    let created_ms = meta.modified().map(unix_ms).unwrap_or(0);
                    let size = meta.len();
                    index.insert(name, Stored { created_ms, size });
                }
                _ if meta.is_file() || meta.is_symlink() => {
                    let _ = std::fs::remove_file(entry.path());
                }
                _ => {}
            }
        }
        let store = ArtifactStore {
            dir,
            quota,
            retention,
            index: Mutex::new(index),
        };
        store.sweep(now_ms());
        store.evict_for(0, None);
        Ok(store)
    }

    /// The dir the artifacts are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `bytes` under a new random name, evicting the oldest artifacts past the quota
    /// or [`MAX_ARTIFACTS`]. More bytes than the whole quota are refused.
    pub fn put(&self, kind: ArtifactKind, bytes: &[u8]) -> Result<ArtifactName, ArtifactError> {
        let size = bytes.len() as u64;
        if size > self.quota {
            return Err(ArtifactError::TooLarge(format!(
                "the {} is {size} bytes, more than the whole artifacts quota ({} bytes; \
                 artifacts_quota in config.toml); ask for it without `Accept: \
                 application/json` to get its bytes",
                kind.extension(),
                self.quota
            )));
        }
        let name = ArtifactName {
            id: Uuid::new_v4(),
            kind,
        };
        // Written whole under a temporary name (not an artifact's, so a restart removes one a
        // crash left), then renamed: a reader never sees half of it.
        crate::paths::replace_private(&self.dir.join(name.to_string()), bytes)?;
        self.sweep(now_ms());
        let stored = Stored {
            created_ms: now_ms(),
            size,
        };
        self.evict_for(size, Some((name, stored)));
        Ok(name)
    }

    /// Opens the artifact a client named, with its kind and size; [`ArtifactError::NotFound`]
    /// for a name that is not one, and for one never stored, expired or evicted.
    pub fn open_artifact(&self, name: &str) -> Result<(ArtifactKind, File, u64), ArtifactError> {
        let missing = || ArtifactError::NotFound(format!("artifact {name:?} not found"));
        let name = ArtifactName::parse(name).ok_or_else(missing)?;
        let stored = self
            .lock()
            .by_name
            .get(&name)
            .copied()
            .ok_or_else(missing)?;
        if self.expired(stored.created_ms, now_ms()) {
            return Err(missing());
        }
        use std::os::unix::fs::OpenOptionsExt;
        // The dir is private, but a link planted in it is never followed.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(self.dir.join(name.to_string()))
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => missing(),
                _ => ArtifactError::Io(e),
            })?;
        Ok((name.kind, file, stored.size))
    }

    /// Removes the artifacts older than the retention; how many.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut gone = Vec::new();
        {
            let mut index = self.lock();
            while index.oldest_ms().is_some_and(|ms| self.expired(ms, now_ms)) {
                gone.extend(index.pop_oldest());
            }
        }
        self.remove(&gone);
        gone.len()
    }

    /// Bytes and count of what is stored.
    pub fn usage(&self) -> (u64, usize) {
        let index = self.lock();
        (index.total, index.by_name.len())
    }

    /// Evicts the oldest until `size` more bytes and one more file fit, then takes `new` in
    /// (under the same lock, so two writers never both fill the room left).
    fn evict_for(&self, size: u64, new: Option<(ArtifactName, Stored)>) {
        let mut gone = Vec::new();
        {
            let mut index = self.lock();
            let count = usize::from(new.is_some());
            while (index.total + size > self.quota || index.by_name.len() + count > MAX_ARTIFACTS)
                && let Some(name) = index.pop_oldest()
            {
                gone.push(name);
            }
            if let Some((name, stored)) = new {
                index.insert(name, stored);
            }
        }
        if !gone.is_empty() {
            tracing::info!(
                evicted = gone.len(),
                quota = self.quota,
                "artifacts past the quota: the oldest were removed"
            );
        }
        self.remove(&gone);
    }

    fn remove(&self, names: &[ArtifactName]) {
        for name in names {
            let _ = std::fs::remove_file(self.dir.join(name.to_string()));
        }
    }

    fn expired(&self, created_ms: u64, now_ms: u64) -> bool {
        !self.retention.is_zero()
            && now_ms.saturating_sub(created_ms) >= self.retention.as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store(quota: u64, retention: Duration) -> (tempfile::TempDir, ArtifactStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(tmp.path().join("artifacts"), quota, retention).unwrap();
        (tmp, store)
    }

    #[test]
    fn an_artifact_is_private_and_named_by_a_random_uuid() {
        let (_tmp, store) = store(1 << 20, Duration::from_secs(60));
        let name = store.put(ArtifactKind::Jpeg, b"jpeg bytes").unwrap();
        let text = name.to_string();
        assert!(text.ends_with(".jpg") && text.len() == 40, "{text}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.dir().join(&text)), 0o600);
        let (kind, file, size) = store.open_artifact(&text).unwrap();
        assert_eq!((kind, size), (ArtifactKind::Jpeg, 10));
        assert_eq!(std::io::read_to_string(file).unwrap(), "jpeg bytes");
        // Only temp-free files are left behind.
        let names: Vec<_> = std::fs::read_dir(store.dir()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn hostile_names_are_not_found() {
        let (_tmp, store) = store(1 << 20, Duration::ZERO);
        let name = store.put(ArtifactKind::Pdf, b"%PDF").unwrap().to_string();
        let upper = name.to_uppercase().replace(".PDF", ".pdf");
        let other_kind = name.replace(".pdf", ".jpg");
        let simple = name.replace('-', "");
        for bad in [
            "",
            "..",
            "../artifacts",
            "/etc/passwd",
            &format!("{name}/"),
            &format!("../{name}"),
            &format!("{name}.pdf"),
            upper.as_str(),
            other_kind.as_str(),
            simple.as_str(),
            "00000000-0000-4000-8000-000000000000.pdf",
        ] {
            assert!(
                matches!(store.open_artifact(bad), Err(ArtifactError::NotFound(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn past_the_quota_the_oldest_are_evicted_and_too_large_is_refused() {
        let (_tmp, store) = store(100, Duration::ZERO);
        let a = store.put(ArtifactKind::Jpeg, &[1; 40]).unwrap();
        let b = store.put(ArtifactKind::Jpeg, &[2; 40]).unwrap();
        let c = store.put(ArtifactKind::Jpeg, &[3; 40]).unwrap();
        assert!(store.open_artifact(&a.to_string()).is_err(), "a evicted");
        assert!(!store.dir().join(a.to_string()).exists());
        assert!(store.open_artifact(&b.to_string()).is_ok());
        assert!(store.open_artifact(&c.to_string()).is_ok());
        assert_eq!(store.usage(), (80, 2));
        let err = store.put(ArtifactKind::Pdf, &[0; 101]).unwrap_err();
        assert!(matches!(err, ArtifactError::TooLarge(_)), "{err}");
        assert_eq!(store.usage(), (80, 2));
    }

    #[test]
    fn expired_artifacts_are_not_served_and_the_sweep_removes_them() {
        let (_tmp, store) = store(1 << 20, Duration::from_secs(60));
        let name = store.put(ArtifactKind::Jpeg, b"x").unwrap();
        assert_eq!(store.sweep(now_ms()), 0);
        assert_eq!(store.sweep(now_ms() + 61_000), 1);
        assert!(!store.dir().join(name.to_string()).exists());
        assert!(store.open_artifact(&name.to_string()).is_err());
    }

    #[test]
    fn a_restart_keeps_artifacts_and_drops_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("artifacts");
        let store = ArtifactStore::open(dir.clone(), 1 << 20, Duration::ZERO).unwrap();
        let name = store.put(ArtifactKind::Pdf, b"%PDF-1.4").unwrap();
        drop(store);
        std::fs::write(dir.join(".dead.tmp"), b"half").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join(format!("{}.jpg", Uuid::new_v4())))
            .unwrap();
        let store = ArtifactStore::open(dir.clone(), 1 << 20, Duration::ZERO).unwrap();
        assert!(store.open_artifact(&name.to_string()).is_ok());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // A smaller quota at the next start evicts down to it.
        drop(store);
        let store = ArtifactStore::open(dir, 4, Duration::ZERO).unwrap();
        assert_eq!(store.usage(), (0, 0));
    }
}
