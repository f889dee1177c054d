//! Browser workers: launching, probing and killing one Chromium per session.
//!
//! [`WorkerHost`] is the seam between the orchestrator and the machine a browser runs on:
//! in-process ([`LocalWorkerHost`]) today, an authenticated call to the owning node's daemon
//! later. Knows nothing of HTTP routes or Restate.

pub mod actions;
pub mod cdp;
pub mod chromium;
pub mod downloads;
pub mod files;
pub mod kill;
pub mod page;
pub mod process;
pub mod proxy_hop;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::protocol::session::{ProxyBytes, SessionOptions, WorkerInfo};
use crate::protocol::steel::SessionContext;
use proxy_hop::{ProxyHops, Upstream};

/// Why a browser could not be launched or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "chromium not found: {0}. Run ./install.sh (or apt-get install chromium), or pass --chromium PATH"
    )]
    ChromiumNotFound(String),
    #[error("chromium exited during startup ({status}): {log}")]
    Exited { status: String, log: String },
    #[error("chromium did not answer on its DevTools port within {0:?}")]
    NotReady(Duration),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    /// Processes of the browser outlived SIGKILL (stuck in the kernel, say).
    #[error(
        "processes {pids:?} of the browser of {} still run after SIGKILL; its dir is left in place",
        dir.display()
    )]
    Unkillable { dir: PathBuf, pids: Vec<u32> },
    /// A process of the browser may not be signalled: it runs as another user.
    #[error(
        "not permitted to kill process {pid} of the browser of {} (it runs as another user); \
         stop it as that user",
        dir.display()
    )]
    NotPermitted { pid: u32, dir: PathBuf },
    #[error("applying the session context failed: {0}")]
    Context(#[from] crate::worker::cdp::CdpError),
    /// The browser answered the context's CDP calls with an error: the context is at fault.
    #[error("{CONTEXT_REFUSED}: {0}")]
    ContextRefused(String),
    /// An id or dir that is not one of bro's session dirs: never turned into a path, never
    /// deleted. Only a forged call can send one, so no retry can fix it.
    #[error("refusing to touch {0}: not a session dir of bro's (sessions/<uuid>)")]
    NotOurs(String),
}

/// Start of the reason of a session whose `sessionContext` the browser refused.
pub const CONTEXT_REFUSED: &str = "the browser refused the sessionContext";

impl WorkerError {
    pub(crate) fn io(what: &'static str, source: std::io::Error) -> Self {
        WorkerError::Io { what, source }
    }

    /// True when no retry can help (the binary is missing).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            WorkerError::ChromiumNotFound(_)
                | WorkerError::ContextRefused(_)
                | WorkerError::NotOurs(_)
                | WorkerError::Unkillable { .. }
                | WorkerError::NotPermitted { .. }
        )
    }

    /// A failed context call: refused (the browser answered with an error), or lost.
    fn context(err: crate::worker::cdp::CdpError) -> Self {
        match err {
            crate::worker::cdp::CdpError::Call { .. } => {
                WorkerError::ContextRefused(err.to_string())
            }
            other => WorkerError::Context(other),
        }
    }
}

/// What to launch: the session id, its options, and a context to put in first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub session_id: String,
    pub options: SessionOptions,
    #[serde(default)]
    pub context: Option<SessionContext>,
    /// A warm pool browser: no session yet, so the supervisor does not watch it until a
    /// session [claims](WorkerHost::claim) it.
    #[serde(default)]
    pub warm: bool,
}

/// What the host tells the supervisor about its browsers.
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    /// A browser is up for session `session_id`: watch it.
    Launched {
        session_id: String,
        worker: WorkerInfo,
        options: SessionOptions,
    },
    /// A browser exited while it was not being stopped.
    Exited(WorkerExit),
    /// A browser was stopped on purpose: stop watching it.
    Stopped { pid: u32 },
}

/// A browser that exited while it was not being stopped.
#[derive(Debug, Clone)]
pub struct WorkerExit {
    pub session_id: String,
    pub pid: u32,
    pub reason: String,
    /// Exited with status 0: closed on purpose (a client's `Browser.close`).
    pub clean: bool,
}

/// Launches and stops browsers on one node. Both operations are idempotent per session id.
pub trait WorkerHost: Send + Sync + 'static {
    /// Starts the session's browser and waits until its CDP endpoint answers. A leftover
    /// browser of the same session (from a launch retried after a crash) is killed first, so a
    /// retry never leaves two browsers.
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<WorkerInfo, WorkerError>>;

    /// Stops the browser and removes the session directory: SIGKILL to the browser's process
    /// group, and the directory goes once no process of it is left. The profile is thrown
    /// away, so a graceful `Browser.close` would only cost time (about 100 ms a release).
    /// Only a browser that is provably the session's is killed (see [`kill`]): a recorded
    /// pid that now names another process is left alone. Returns the bytes its proxy hop
    /// carried, if it had one.
    fn stop(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<Option<ProxyBytes>, WorkerError>>;

    /// Hands a warm browser to a session: checks that it still answers, puts the session's
    /// context in, and watches it as the session's from now on. An error means the browser is
    /// unusable; the caller stops it and launches cold.
    fn claim(&self, claim: Claim) -> BoxFuture<'_, Result<WorkerInfo, WorkerError>>;
}

/// A warm browser taken by a session: [`WorkerHost::claim`]'s input.
#[derive(Debug, Clone)]
pub struct Claim {
    pub session_id: String,
    pub worker: WorkerInfo,
    pub options: SessionOptions,
    pub context: Option<SessionContext>,
}

/// Browsers as child processes of this daemon, under `sessions_dir/<id>`.
pub struct LocalWorkerHost {
    chromium: PathBuf,
    /// Extra flags for every browser (`chromium_flags` in config.toml).
    extra_flags: Vec<String>,
    sessions_dir: PathBuf,
    http: reqwest::Client,
    /// Pids being stopped on purpose: their exit is not reported. A child of this daemon
    /// leaves the set when it is reaped; an adopted browser when its stop is done.
    stopping: Arc<Mutex<HashSet<u32>>>,
    /// Pids of the browsers this daemon spawned and has not reaped yet.
    children: Arc<Mutex<HashSet<u32>>>,
    /// Per session with browser work under way: a gate that runs one launch or stop at a time
    /// (a retried attempt may start while an abandoned one still runs), and how many wait on
    /// it. The reaper leaves these sessions' dirs alone.
    busy: Mutex<HashMap<String, Gate>>,
    events: mpsc::UnboundedSender<WorkerEvent>,
    /// The local hops in front of sessions' http:// proxies.
    hops: ProxyHops,
}

/// A session's turn-taking lock and how many launches or stops hold or wait for it.
type Gate = (Arc<tokio::sync::Mutex<()>>, usize);

/// The pid and start time of a launched browser, written into its session dir (`worker.json`)
/// right after spawn so a retried launch or the reaper can find it, and whom the dir serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PidFile {
    pid: u32,
    start_time: u64,
    /// Launched for the warm pool.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    warm: bool,
    /// The session the browser serves: the dir's own at launch, the claiming session's for a
    /// warm browser. (Missing in unclaimed warm dirs and in dirs of older bros.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
}

/// Whom a session dir says it belongs to, from its `worker.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirOwner {
    /// It serves this session.
    Session(String),
    /// A warm browser no session has claimed: nothing in it was ever a client's.
    Warm,
    /// It does not say (no or an unreadable `worker.json`): the session of its name, if any.
    Unknown,
}

impl LocalWorkerHost {
    /// A host launching `chromium`; launches and unexpected exits are sent to `events`.
    pub fn new(
        chromium: PathBuf,
        extra_flags: Vec<String>,
        sessions_dir: PathBuf,
        events: mpsc::UnboundedSender<WorkerEvent>,
    ) -> Arc<Self> {
        Arc::new(LocalWorkerHost {
            chromium,
            extra_flags,
            sessions_dir,
            http: reqwest::Client::new(),
            stopping: Arc::new(Mutex::new(HashSet::new())),
            children: Arc::new(Mutex::new(HashSet::new())),
            busy: Mutex::new(HashMap::new()),
            events,
            hops: ProxyHops::default(),
        })
    }

    /// The directory holding every session dir.
    pub fn sessions_dir(&self) -> &Path {
        &self.sessions_dir
    }

    /// The directory of session `id`, which must be a UUID in its canonical form: an id
    /// reaches here from Restate state and handler inputs, and `sessions_dir.join("/etc")`
    /// or `join("../..")` would point anywhere.
    pub fn session_dir(&self, id: &str) -> Result<PathBuf, WorkerError> {
        if !is_session_id(id) {
            return Err(WorkerError::NotOurs(format!("session id {id:?}")));
        }
        Ok(self.sessions_dir.join(id))
    }

    /// Checks that `dir` is `sessions_dir/<uuid>` (a [`WorkerInfo::dir`] comes from Restate
    /// state, so it is checked where it is acted on).
    fn own_dir(&self, dir: &Path) -> Result<(), WorkerError> {
        owned_session_dir(&self.sessions_dir, dir)
    }

    /// Every session dir on disk, as (session id, dir).
    pub fn session_dirs(&self) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.sessions_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| {
                let e = e.ok()?;
                Some((e.file_name().to_str()?.to_string(), e.path()))
            })
            .collect()
    }

    /// True while the browser `pid` is being stopped on purpose.
    pub fn is_stopping(&self, pid: u32) -> bool {
        lock(&self.stopping).contains(&pid)
    }

    /// True while a launch of `id` runs in this daemon.
    pub fn is_launching(&self, id: &str) -> bool {
        lock(&self.busy).contains_key(id)
    }

    /// True when the browser of `worker` runs and answers CDP.
    pub async fn probe(&self, worker: &WorkerInfo) -> bool {
        if !process::is_alive(worker.pid, worker.start_time) {
            return false;
        }
        let url = format!("http://127.0.0.1:{}/json/version", worker.port);
        matches!(self.http.get(url).timeout(Duration::from_secs(2)).send().await,
                 Ok(r) if r.status().is_success())
    }

    /// Kills whatever browser a session dir's pid file names and removes the dir. Used for a
    /// retried launch and for orphans whose session is provably over.
    pub async fn reap_dir(&self, dir: &Path) -> Result<(), WorkerError> {
        self.stop_orphan(dir).await?;
        remove_dir(&self.sessions_dir, dir).await
    }

    /// Stops the browser of a session dir that no live session watches, and its proxy hop;
    /// the dir itself stays. The browser is killed only when it is provably the dir's (see
    /// [`kill`]).
    pub async fn stop_orphan(&self, dir: &Path) -> Result<(), WorkerError> {
        self.own_dir(dir)?;
        if let Some(name) = dir.file_name() {
            self.hops.close(&name.to_string_lossy());
        }
        // A fresh launch finds no dir and skips the scan of /proc.
        if dir.exists() {
            let recorded = read_pid_file(dir).map(|pf| kill::Recorded {
                pid: pf.pid,
                start_time: pf.start_time,
            });
            kill::kill_browser(recorded, dir).await?;
        }
        Ok(())
    }

    /// Whom session dir `dir` says it belongs to.
    pub fn dir_owner(&self, dir: &Path) -> DirOwner {
        match read_pid_file(dir) {
            Some(PidFile {
                session: Some(id), ..
            }) => DirOwner::Session(id),
            Some(PidFile { warm: true, .. }) => DirOwner::Warm,
            _ => DirOwner::Unknown,
        }
    }

    async fn launch_inner(&self, spec: LaunchSpec) -> Result<WorkerInfo, WorkerError> {
        let id = spec.session_id.clone();
        let launched = self.launch_browser(spec).await;
        if launched.is_err() {
            self.hops.close(&id);
        }
        launched
    }

    async fn launch_browser(&self, spec: LaunchSpec) -> Result<WorkerInfo, WorkerError> {
        let dir = self.session_dir(&spec.session_id)?;
        self.reap_dir(&dir).await?;
        crate::paths::create_private_dir(&dir)
            .map_err(|e| WorkerError::io("create session dir", e))?;
        // An http:// proxy is reached through a local hop, which adds its credentials (Chromium
        // takes none) and counts the bytes.
        let mut options = spec.options.clone();
        if let Some(upstream) = options.proxy_url.as_deref().and_then(Upstream::of) {
            let port = self
                .hops
                .open(&dir, upstream, 0)
                .await
                .map_err(|e| WorkerError::io("open the local proxy hop", e))?;
            options.proxy_url = Some(format!("http://127.0.0.1:{port}"));
        }
        let mut child = chromium::spawn(&self.chromium, &self.extra_flags, &dir, &options)?;
        let pid = child.id().ok_or_else(|| WorkerError::Exited {
            status: "before its pid was read".into(),
            log: chromium::log_tail(&dir),
        })?;
        // A zombie counts: a browser that died at once is still known by its start time.
        let start_time = process::stat(pid).map(|s| s.start_time).unwrap_or_default();
        let pf = PidFile {
            pid,
            start_time,
            warm: spec.warm,
            session: (!spec.warm).then(|| spec.session_id.clone()),
        };
        write_pid_file(&dir, &pf)?;

        let ready = match chromium::wait_ready(&mut child, &dir, &self.http).await {
            Ok((port, ws_path)) => {
                let worker = WorkerInfo {
                    pid,
                    start_time,
                    port,
                    ws_path,
                    dir: dir.clone(),
                };
                match &spec.context {
                    Some(ctx) => page::apply_context(&worker, ctx).await.map(|()| worker),
                    None => Ok(worker),
                }
                .map_err(WorkerError::context)
            }
            Err(err) => Err(err),
        };
        match ready {
            Ok(worker) => {
                self.watch_child(spec.session_id.clone(), pid, child);
                if !spec.warm {
                    let _ = self.events.send(WorkerEvent::Launched {
                        session_id: spec.session_id,
                        worker: worker.clone(),
                        options: spec.options,
                    });
                }
                Ok(worker)
            }
            Err(err) => {
                drop(child);
                let recorded = kill::Recorded { pid, start_time };
                kill::kill_browser(Some(recorded), &dir).await?;
                remove_dir(&self.sessions_dir, &dir).await?;
                Err(err)
            }
        }
    }

    /// Reaps the child when it exits and reports the exit unless it was stopped on purpose.
    fn watch_child(&self, session_id: String, pid: u32, mut child: tokio::process::Child) {
        let events = self.events.clone();
        let stopping = Arc::clone(&self.stopping);
        let children = Arc::clone(&self.children);
        lock(&children).insert(pid);
        tokio::spawn(async move {
            let status = child.wait().await;
            lock(&children).remove(&pid);
            if !lock(&stopping).remove(&pid) {
                let clean = status.as_ref().is_ok_and(|s| s.success());
                let reason = match status {
                    Ok(s) if s.success() => "browser closed by the client".to_string(),
                    Ok(s) => format!("browser exited ({s})"),
                    Err(e) => format!("browser lost: {e}"),
                };
                let _ = events.send(WorkerEvent::Exited(WorkerExit {
                    session_id,
                    pid,
                    reason,
                    clean,
                }));
            }
        });
    }

    /// Runs `work` for session `id` once no other launch or stop of it runs. Without this, an
    /// attempt Restate abandoned (its stream broke) and the retry it started could both spawn
    /// a browser, and one would be left behind.
    async fn one_at_a_time<T>(&self, id: String, work: impl std::future::Future<Output = T>) -> T {
        /// Leaves the session's entry when the work ends, or when its future is dropped.
        struct Leave<'a>(&'a Mutex<HashMap<String, Gate>>, String);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                let mut busy = lock(self.0);
                if let Some(entry) = busy.get_mut(&self.1) {
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        busy.remove(&self.1);
                    }
                }
            }
        }
        let gate = {
            let mut busy = lock(&self.busy);
            let entry = busy
                .entry(id.clone())
                .or_insert_with(|| (Arc::default(), 0));
            entry.1 += 1;
            Arc::clone(&entry.0)
        };
        let _leave = Leave(&self.busy, id);
        let _turn = gate.lock().await;
        work.await
    }

    async fn stop_inner(&self, worker: WorkerInfo) -> Result<Option<ProxyBytes>, WorkerError> {
        self.own_dir(&worker.dir)?;
        lock(&self.stopping).insert(worker.pid);
        // Unwatched before it dies, so its death is not reported as a crash.
        let _ = self.events.send(WorkerEvent::Stopped { pid: worker.pid });
        let recorded = kill::Recorded {
            pid: worker.pid,
            start_time: worker.start_time,
        };
        let result = kill::kill_browser(Some(recorded), &worker.dir).await;
        if !lock(&self.children).contains(&worker.pid) {
            // Not ours to reap (adopted after a restart), or reaped already.
            lock(&self.stopping).remove(&worker.pid);
        }
        result?;
        let bytes = worker
            .dir
            .file_name()
            .and_then(|name| self.hops.close(&name.to_string_lossy()));
        remove_dir(&self.sessions_dir, &worker.dir).await?;
        Ok(bytes)
    }

    /// Reopens the proxy hop of a browser adopted after a daemon restart, on the port the
    /// browser was launched with. Nothing to do for a session without one.
    pub async fn resume(
        &self,
        worker: &WorkerInfo,
        options: &SessionOptions,
    ) -> Result<(), WorkerError> {
        match options.proxy_url.as_deref().and_then(Upstream::of) {
            Some(upstream) => self
                .hops
                .reopen(&worker.dir, upstream)
                .await
                .map_err(|e| WorkerError::io("reopen the local proxy hop", e)),
            None => Ok(()),
        }
    }
}

impl WorkerHost for LocalWorkerHost {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<WorkerInfo, WorkerError>> {
        let id = spec.session_id.clone();
        Box::pin(self.one_at_a_time(id, self.launch_inner(spec)))
    }

    fn stop(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<Option<ProxyBytes>, WorkerError>> {
        let id = worker
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Box::pin(self.one_at_a_time(id, self.stop_inner(worker)))
    }

    fn claim(&self, claim: Claim) -> BoxFuture<'_, Result<WorkerInfo, WorkerError>> {
        Box::pin(async move {
            self.own_dir(&claim.worker.dir)?;
            // The dir says whose it is before any client can use it, so the reaper never
            // takes it for an unused warm browser.
            let pf = PidFile {
                pid: claim.worker.pid,
                start_time: claim.worker.start_time,
                warm: true,
                session: Some(claim.session_id.clone()),
            };
            write_pid_file(&claim.worker.dir, &pf)?;
            if !self.probe(&claim.worker).await {
                return Err(WorkerError::NotReady(Duration::from_secs(2)));
            }
            if let Some(ctx) = &claim.context {
                page::apply_context(&claim.worker, ctx)
                    .await
                    .map_err(WorkerError::context)?;
            }
            let _ = self.events.send(WorkerEvent::Launched {
                session_id: claim.session_id,
                worker: claim.worker.clone(),
                options: claim.options,
            });
            Ok(claim.worker)
        })
    }
}

/// True for a UUID in its canonical (lowercase, hyphenated) form: the only names of session
/// and warm browser dirs.
pub fn is_session_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

/// Checks that `dir` is exactly `sessions_dir/<uuid>`: no `..`, no other parent, no
/// symlinked session dir (its target could be anywhere).
fn owned_session_dir(sessions_dir: &Path, dir: &Path) -> Result<(), WorkerError> {
    let not_ours = || WorkerError::NotOurs(dir.display().to_string());
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(not_ours)?;
    if !is_session_id(name) || dir.parent() != Some(sessions_dir) {
        return Err(not_ours());
    }
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => Err(not_ours()),
        _ => Ok(()),
    }
}

/// Removes a session dir and its temp dir, retrying while exiting processes still write.
/// Checked just before the delete: only `sessions_dir/<uuid>` is ever removed.
async fn remove_dir(sessions_dir: &Path, dir: &Path) -> Result<(), WorkerError> {
    owned_session_dir(sessions_dir, dir)?;
    let tmp = chromium::tmp_dir(dir);
    // The temp dir only when its parent is this user's own (not a planted link).
    let tmp = tmp
        .parent()
        .is_some_and(chromium::tmp_base_is_ours)
        .then_some(tmp);
    for path in tmp.into_iter().chain([dir.to_path_buf()]) {
        let mut result = std::fs::remove_dir_all(&path);
        for _ in 0..20 {
            match &result {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    result = std::fs::remove_dir_all(&path);
                }
                _ => break,
            }
        }
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(WorkerError::io("remove session dir", e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The browser a session dir records: pid file and `DevToolsActivePort` (for tools such as
/// `bro bench` that look at browsers from outside the daemon).
pub fn worker_in(dir: &Path) -> Option<WorkerInfo> {
    let pf = read_pid_file(dir)?;
    let (port, ws_path) = chromium::read_port_file(&dir.join("profile/DevToolsActivePort"))?;
    Some(WorkerInfo {
        pid: pf.pid,
        start_time: pf.start_time,
        port,
        ws_path,
        dir: dir.to_path_buf(),
    })
}

fn read_pid_file(dir: &Path) -> Option<PidFile> {
    serde_json::from_slice(&std::fs::read(dir.join("worker.json")).ok()?).ok()
}

/// Writes `worker.json` whole or not at all (a new file renamed over the old), so a crash
/// never leaves a dir that does not say whose it is.
fn write_pid_file(dir: &Path, pf: &PidFile) -> Result<(), WorkerError> {
    let bytes = serde_json::to_vec(pf)
        .map_err(|e| WorkerError::io("write worker.json", std::io::Error::other(e)))?;
    let tmp = dir.join("worker.json.new");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, dir.join("worker.json")))
        .map_err(|e| WorkerError::io("write worker.json", e))
}

/// Locks a std mutex, recovering the data if a holder panicked (the sets stay valid).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids_are_session_ids() {
        assert!(is_session_id("0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69"));
        for bad in [
            "",
            "/etc",
            "..",
            "../../tmp",
            "0B9C1C4E-7D2F-4A51-9B0E-3F1D2C4B5A69",
            "0b9c1c4e7d2f4a519b0e3f1d2c4b5a69",
            "{0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69}",
            "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69/..",
        ] {
            assert!(!is_session_id(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn only_session_dirs_of_bros_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let sessions = root.path().join("sessions");
        let victim = root.path().join("victim");
        std::fs::create_dir_all(&sessions).unwrap();
        std::fs::create_dir_all(&victim).unwrap();
        let id = "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69";
        for dir in [
            victim.clone(),
            sessions.join("..").join("victim"),
            sessions.join(id).join("..").join("..").join("victim"),
            PathBuf::from("/"),
            sessions.clone(),
        ] {
            let err = remove_dir(&sessions, &dir).await.unwrap_err();
            assert!(matches!(err, WorkerError::NotOurs(_)), "{dir:?}: {err}");
            assert!(err.is_permanent());
        }
        // A session dir that is a symlink to elsewhere is not followed.
        std::os::unix::fs::symlink(&victim, sessions.join(id)).unwrap();
        assert!(remove_dir(&sessions, &sessions.join(id)).await.is_err());
        assert!(victim.exists());
        std::fs::remove_file(sessions.join(id)).unwrap();
        // The real thing goes.
        std::fs::create_dir_all(sessions.join(id).join("profile")).unwrap();
        remove_dir(&sessions, &sessions.join(id)).await.unwrap();
        assert!(!sessions.join(id).exists());
        assert!(victim.exists());
    }
}
