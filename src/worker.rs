//! Browser workers: launching, probing and killing one Chromium per session, and everything
//! else done to a browser or its files.
//!
//! [`LocalWorkerHost`] is the [`WorkerHost`] of this machine: browsers as child processes of
//! this daemon. Knows nothing of HTTP routes or Restate.

pub mod actions;
pub mod agent;
pub mod block;
pub mod cast;
pub mod cdp;
pub mod chromium;
pub mod downloads;
pub mod files;
pub mod kill;
pub mod limits;
pub mod load;
pub mod page;
pub mod process;
pub mod proxy_hop;
pub mod quarantine;
pub mod recording;

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::host::{
    BrowserPages, ByteStream, CastInput, CastOutput, CastSpec, Claim, DirOwner, FileEntry,
    FileListing, FileRead, FilesOf, HostError, HostErrorKind, LaunchSpec, PageOutput, PageWork,
    Preview, RecordingPage, RecordingQuery, SessionDir, Usage, WorkerEvent, WorkerExit, WorkerHost,
};
use crate::protocol::session::{ProxyBytes, SessionId, SessionOptions, WorkerInfo};
use crate::protocol::steel::SessionContext;
use crate::wait::wait_until;
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
    /// The browser's cgroup OOM-killed it before it was ready: its limit is too small for a
    /// browser to start. The client's to fix when it `asked` for that limit (no retry helps).
    #[error(
        "browser killed at its {} ({} MiB) during launch; a browser needs more to start",
        limits::MEMORY_LIMIT_REASON,
        limit >> 20
    )]
    MemoryLimit { limit: u64, asked: bool },
    /// The page agent (recording, `optimizeBandwidth`) could not set up the browser.
    #[error("the page agent (recording, optimizeBandwidth) could not start: {0}")]
    Agent(crate::worker::cdp::CdpError),
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
    /// The daemon is stopping: a launch under way gave up (and removed what it had made).
    #[error("{0}: the daemon is stopping")]
    Stopping(&'static str),
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
                | WorkerError::Stopping(_)
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

/// Browsers as child processes of this daemon, under `sessions_dir/<id>`.
pub struct LocalWorkerHost {
    chromium: PathBuf,
    /// Extra flags for every browser (`chromium_flags` in config.toml).
    extra_flags: Vec<String>,
    /// The browsers' nice value over the daemon's (`browser_nice`).
    browser_nice: AtomicU32,
    sessions_dir: PathBuf,
    /// Where session dirs nothing proves over are moved aside ([`quarantine`]).
    quarantine_dir: PathBuf,
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
    /// Bytes each session's files may take, uploads and the browser's downloads together
    /// (`--files-quota`).
    files_quota: u64,
    /// The live viewers' screencasts and tab lists open now, per browser.
    casts: Arc<cast::Casts>,
    /// The page agents of the browsers that record or block, and the recordings.
    agents: agent::Agents,
    /// The sessions' memory limits and CPU shares ([`LocalWorkerHost::set_limits`]); none
    /// until set.
    limits: std::sync::OnceLock<Arc<limits::Limits>>,
    /// Cold launches in flight and the warm refills' turn ([`load`]).
    load: load::Load,
    /// Cancelled when the daemon stops: launches under way give up through their own error
    /// path, so they kill their browser and remove their dir before they return
    /// ([`LocalWorkerHost::stop_launches_on`]); never cancelled until set.
    launches_stop: std::sync::OnceLock<CancellationToken>,
    /// The launches under way, each its own task ([`WorkerHost::launch`]), so a stop can
    /// wait for them to end ([`LocalWorkerHost::settle_launches`]).
    launches: tokio_util::task::TaskTracker,
    /// This host, for the launch tasks.
    me: std::sync::Weak<LocalWorkerHost>,
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
    /// The browser's cgroup dirs (v1: memory, then cpu), so a daemon started later in
    /// another cgroup still finds, enforces and removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cgroups: Vec<PathBuf>,
}

impl LocalWorkerHost {
    /// A host launching `chromium`, its sessions' files bounded by `files_quota`, its page
    /// agents recording with `agents`; launches and unexpected exits are sent to `events`.
    pub fn new(
        chromium: PathBuf,
        extra_flags: Vec<String>,
        sessions_dir: PathBuf,
        quarantine_dir: PathBuf,
        files_quota: u64,
        agents: agent::Agents,
        events: mpsc::UnboundedSender<WorkerEvent>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| LocalWorkerHost {
            chromium,
            extra_flags,
            browser_nice: AtomicU32::new(crate::config::DEFAULT_BROWSER_NICE),
            sessions_dir,
            quarantine_dir,
            http: reqwest::Client::new(),
            stopping: Arc::new(Mutex::new(HashSet::new())),
            children: Arc::new(Mutex::new(HashSet::new())),
            busy: Mutex::new(HashMap::new()),
            events,
            hops: ProxyHops::default(),
            files_quota,
            casts: Arc::new(cast::Casts::new()),
            agents,
            limits: std::sync::OnceLock::new(),
            load: load::Load::default(),
            launches_stop: std::sync::OnceLock::new(),
            launches: tokio_util::task::TaskTracker::new(),
            me: me.clone(),
        })
    }

    /// Sets the nice value of the browsers launched from now on, over the daemon's
    /// (`browser_nice`, 0–19; [`crate::config::DEFAULT_BROWSER_NICE`] until set).
    pub fn set_browser_nice(&self, nice: u32) {
        self.browser_nice.store(nice, Ordering::Relaxed);
    }

    /// Makes launches give up when `token` is cancelled (the daemon stopping): a launch
    /// waiting for its turn returns at once; one whose browser is starting kills it and
    /// removes its dir, then returns [`WorkerError::Stopping`]. Set once, at start.
    pub fn stop_launches_on(&self, token: CancellationToken) {
        let _ = self.launches_stop.set(token);
    }

    /// Waits up to `within` for the launches under way to end (after a stop: they end through
    /// their own error path, browser killed and dir removed); true when none is left.
    pub async fn settle_launches(&self, within: Duration) -> bool {
        self.launches.close();
        let settled = tokio::time::timeout(within, self.launches.wait())
            .await
            .is_ok();
        self.launches.reopen();
        settled
    }

    /// The token of [`LocalWorkerHost::stop_launches_on`] (one never cancelled before then).
    fn launches_stop(&self) -> CancellationToken {
        self.launches_stop.get().cloned().unwrap_or_default()
    }

    /// Enforces `limits` on the browsers launched from now on: set once, at start, before any
    /// launch (later calls are ignored).
    pub fn set_limits(&self, limits: Arc<limits::Limits>) {
        let _ = self.limits.set(limits);
    }

    /// Cold launches in flight here: browsers whose memory a measurement does not show yet.
    pub fn launches_in_flight(&self) -> usize {
        self.load.launches_in_flight()
    }

    /// The limits in force (none before [`LocalWorkerHost::set_limits`]).
    pub fn limits(&self) -> Arc<limits::Limits> {
        static OFF: std::sync::LazyLock<Arc<limits::Limits>> =
            std::sync::LazyLock::new(|| Arc::new(limits::Limits::off()));
        Arc::clone(self.limits.get().unwrap_or(&OFF))
    }

    /// Removes the cgroup of session dir `dir` once its browser is gone. A failure is logged,
    /// not returned: the sweep removes the cgroup later.
    async fn release_limits(&self, dir: &Path) {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        let recorded = read_pid_file(dir).map(|pf| pf.cgroups).unwrap_or_default();
        if let Err(err) = self.limits().release(name, &recorded).await {
            tracing::warn!(dir = %dir.display(), %err, "could not remove a session's cgroup");
        }
    }

    /// Removes the recordings of sessions that ended more than `retention` ago, every
    /// [`SWEEP_RECORDINGS_EVERY`] until `stop`, and keeps them all within `recordings_quota`
    /// (`retention` 0 keeps them forever, quota permitting).
    pub fn keep_recordings(
        self: &Arc<Self>,
        retention: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let host = Arc::clone(self);
        // Zero keeps recordings forever, but the quota still holds.
        let retention = if retention.is_zero() {
            Duration::MAX
        } else {
            retention
        };
        async move {
            loop {
                let h = Arc::clone(&host);
                let removed = tokio::task::spawn_blocking(move || {
                    // A session not over keeps its recording, recorder or not.
                    let live = h.live_sessions();
                    h.agents
                        .store()
                        .sweep(retention, &|id| h.agents.records(id) || live.contains(id))
                })
                .await
                .unwrap_or_default();
                if removed > 0 {
                    tracing::info!(removed, "removed recordings past their retention");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(SWEEP_RECORDINGS_EVERY) => {}
                }
            }
        }
    }

    /// Starts the page agent of a browser now serving `session` (if its options ask for one).
    async fn start_agent(
        &self,
        worker: &WorkerInfo,
        session: &SessionId,
        options: &SessionOptions,
    ) -> Result<(), WorkerError> {
        let live = self.live_sessions();
        self.agents
            .start(worker, session, options, live)
            .await
            .map_err(WorkerError::Agent)
    }

    /// Stops the browsers' downloads when a session's files pass the files quota, until `stop`
    /// ([`downloads::watch`]).
    pub fn watch_downloads(
        &self,
        stop: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        downloads::watch(self.sessions_dir.clone(), self.files_quota, stop)
    }

    /// The dir of the browser serving the session of `of`, checked to be one of this host's.
    fn files_of(&self, of: &FilesOf) -> Result<PathBuf, HostError> {
        self.own_dir(&of.worker.dir)?;
        Ok(of.worker.dir.clone())
    }

    /// The directory of session `id`, which must be a UUID in its canonical form: an id
    /// reaches here from Restate state and handler inputs, and `sessions_dir.join("/etc")`
    /// or `join("../..")` would point anywhere.
    pub fn session_dir(&self, id: &str) -> Result<PathBuf, WorkerError> {
        if SessionId::parse(id).is_err() {
            return Err(WorkerError::NotOurs(format!("session id {id:?}")));
        }
        Ok(self.sessions_dir.join(id))
    }

    /// Checks that `dir` is `sessions_dir/<uuid>` (a [`WorkerInfo::dir`] comes from Restate
    /// state, so it is checked where it is acted on).
    fn own_dir(&self, dir: &Path) -> Result<(), WorkerError> {
        owned_session_dir(&self.sessions_dir, dir)
    }

    /// The sessions not over on this host: those with a session dir (named by it, or a warm
    /// dir that serves it). A recording of one of them is never evicted.
    pub fn live_sessions(&self) -> HashSet<SessionId> {
        self.dirs()
            .into_iter()
            .flat_map(|(name, dir)| {
                let served = match dir_owner(&dir) {
                    DirOwner::Session(id) => SessionId::parse(&id).ok(),
                    _ => None,
                };
                [SessionId::parse(&name).ok(), served]
            })
            .flatten()
            .collect()
    }

    /// The sessions whose browsers run or launch on this host: a session dir's own (its
    /// name, before its pid file says so), and the session a warm dir serves (a warm browser
    /// no session took serves none; one still launching may be named by its own id, which
    /// no session has). The free memory floor counts these as the node's sessions held.
    pub fn serving_sessions(&self) -> Vec<String> {
        self.dirs()
            .into_iter()
            .filter_map(|(name, dir)| match dir_owner(&dir) {
                DirOwner::Session(id) => Some(id),
                DirOwner::Warm => None,
                DirOwner::Unknown => Some(name),
            })
            .filter(|id| SessionId::parse(id).is_ok())
            .collect()
    }

    /// Warm refills launching on this host now.
    pub fn warm_launches_in_flight(&self) -> usize {
        self.load.warm_launches_in_flight()
    }

    /// Every entry of the sessions dir, as (name, path).
    pub fn dirs(&self) -> Vec<(String, PathBuf)> {
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

    /// True when the browser of `worker` runs and answers CDP within `timeout`.
    async fn answers(&self, worker: &WorkerInfo, timeout: Duration) -> bool {
        process::is_alive(worker.pid, worker.start_time)
            && chromium::answers(&self.http, worker.port, timeout).await
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
            self.agents.stop(&name.to_string_lossy());
        }
        // A fresh launch finds no dir and skips the scan of /proc.
        if dir.exists() {
            let recorded = read_pid_file(dir).map(|pf| kill::Recorded {
                pid: pf.pid,
                start_time: pf.start_time,
            });
            kill::kill_browser(recorded, dir).await?;
        }
        self.release_limits(dir).await;
        Ok(())
    }

    async fn launch_inner(&self, spec: LaunchSpec) -> Result<WorkerInfo, WorkerError> {
        let id = spec.session_id.to_string();
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
        let limits = self.limits();
        let name = dir_name(&dir);
        let spawned = limits
            .prepare(&name, limits.of(&spec.options), spec.warm)
            .map_err(|e| WorkerError::io("set up the session's cgroup", e))
            .and_then(|procs| {
                let nice = self.browser_nice.load(Ordering::Relaxed);
                chromium::spawn(
                    &self.chromium,
                    &self.extra_flags,
                    nice,
                    &dir,
                    &options,
                    &procs,
                )
            });
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                // Nothing runs in the cgroup yet: it goes now.
                self.release_limits(&dir).await;
                return Err(err);
            }
        };
        // A zombie counts: a browser that died at once is still known by its start time.
        let pid = child.id();
        let start_time = pid
            .and_then(|pid| process::stat(pid).map(|s| s.start_time))
            .unwrap_or_default();
        let written = match pid {
            Some(pid) => {
                let pf = PidFile {
                    pid,
                    start_time,
                    warm: spec.warm,
                    session: (!spec.warm).then(|| spec.session_id.to_string()),
                    cgroups: limits.cgroup_dirs(&name),
                };
                write_pid_file(&dir, &pf).map(|()| pid)
            }
            None => Err(WorkerError::Exited {
                status: "before its pid was read".into(),
                log: chromium::log_tail(&dir),
            }),
        };
        let pid = match written {
            Ok(pid) => pid,
            Err(err) => {
                let recorded = pid.map(|pid| kill::Recorded { pid, start_time });
                drop(child);
                kill::kill_browser(recorded, &dir).await?;
                self.release_limits(&dir).await;
                return Err(err);
            }
        };

        // A stopping daemon ends the wait here, so the error path below kills the browser
        // and removes its dir (a launch future dropped mid-way would leave both to the next
        // start).
        let stop = self.launches_stop();
        let ready = tokio::select! {
            biased;
            ready = self.until_ready(&mut child, (pid, start_time), &dir, &spec) => ready,
            () = stop.cancelled() => Err(WorkerError::Stopping("launching Chromium")),
        };
        match ready {
            Ok(worker) => {
                self.watch_child(spec.session_id.clone(), pid, dir_name(&dir), child);
                if !spec.warm {
                    let _ = self.events.send(WorkerEvent::Launched {
                        session_id: spec.session_id,
                        worker: worker.clone(),
                        options: Box::new(spec.options),
                    });
                }
                Ok(worker)
            }
            Err(err) => {
                drop(child);
                // Read before the cgroup goes: an OOM kill there says why it died.
                let err = launch_error(&limits, &name, &spec.options, err);
                self.agents.stop(&agent::dir_key_of(&dir));
                let recorded = kill::Recorded { pid, start_time };
                kill::kill_browser(Some(recorded), &dir).await?;
                self.release_limits(&dir).await;
                remove_dir(&self.sessions_dir, &dir).await?;
                Err(err)
            }
        }
    }

    /// [`WorkerHost::launch`]'s work, in its own task.
    async fn launch_task(&self, spec: LaunchSpec) -> Result<WorkerInfo, HostError> {
        let id = spec.session_id.to_string();
        // A warm refill takes CPU the sessions being created and used could have:
        // it waits for its turn and for CPU to spare (at most REFILL_WAIT, so a
        // machine that is never idle still refills), holding the turn through its
        // launch; a cold launch counts while it runs.
        let stop = self.launches_stop();
        let (_turn, _launch) = if spec.warm {
            let (turn, spare) = tokio::select! {
                biased;
                waited = self.load.refill_turn(load::REFILL_WAIT) => waited,
                () = stop.cancelled() => {
                    return Err(WorkerError::Stopping("launching a warm browser").into());
                }
            };
            if !spare {
                tracing::debug!(
                    "warm refill launching on a busy machine after {:?}",
                    load::REFILL_WAIT
                );
            }
            (Some((turn, self.load.warm_launch())), None)
        } else {
            (None, Some(self.load.launch()))
        };
        // Once the daemon is stopping no launch starts: neither one that comes now nor one
        // that waited at the gate behind another of its id.
        let launched = self.one_at_a_time(id, async {
            if stop.is_cancelled() {
                return Err(WorkerError::Stopping("launching Chromium"));
            }
            self.launch_inner(spec).await
        });
        Ok(launched.await?)
    }

    /// Waits for a spawned browser to answer on its DevTools port, then gives it the spec's
    /// context and (for a session) its page agent: the launched browser as a worker.
    async fn until_ready(
        &self,
        child: &mut tokio::process::Child,
        (pid, start_time): (u32, u64),
        dir: &Path,
        spec: &LaunchSpec,
    ) -> Result<WorkerInfo, WorkerError> {
        let (port, ws_path) = chromium::wait_ready(child, dir, &self.http).await?;
        let worker = WorkerInfo {
            pid,
            start_time,
            port,
            ws_path,
            dir: dir.to_path_buf(),
        };
        if let Some(ctx) = &spec.context {
            page::apply_context(&worker, ctx)
                .await
                .map_err(WorkerError::context)?;
        }
        // A warm browser serves no session yet: its agent starts at claim.
        if !spec.warm {
            self.start_agent(&worker, &spec.session_id, &spec.options)
                .await?;
        }
        Ok(worker)
    }

    /// Reaps the child when it exits and reports the exit unless it was stopped on purpose;
    /// one killed by its memory limit (an OOM kill in its cgroup) ends with that reason.
    fn watch_child(
        &self,
        session_id: SessionId,
        pid: u32,
        name: String,
        mut child: tokio::process::Child,
    ) {
        let events = self.events.clone();
        let limits = self.limits();
        let stopping = Arc::clone(&self.stopping);
        let children = Arc::clone(&self.children);
        lock(&children).insert(pid);
        tokio::spawn(async move {
            let status = child.wait().await;
            lock(&children).remove(&pid);
            if !lock(&stopping).remove(&pid) {
                let clean = status.as_ref().is_ok_and(|s| s.success());
                let reason = match status {
                    _ if limits.over(&name, None) => limits::MEMORY_LIMIT_REASON.to_string(),
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
        let began = std::time::Instant::now();
        self.agents.stop(&agent::dir_key(&worker));
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
        let kill_ms = began.elapsed().as_millis();
        self.release_limits(&worker.dir).await;
        let limits_ms = began.elapsed().as_millis() - kill_ms;
        let bytes = worker
            .dir
            .file_name()
            .and_then(|name| self.hops.close(&name.to_string_lossy()));
        discard_dir(&self.sessions_dir, &worker.dir).await?;
        tracing::debug!(
            kill_ms,
            limits_ms,
            dir_ms = began.elapsed().as_millis() - kill_ms - limits_ms,
            "stop: browser killed, limits released, dir removed"
        );
        Ok(bytes)
    }

    async fn claim_inner(&self, claim: Claim) -> Result<WorkerInfo, WorkerError> {
        self.own_dir(&claim.worker.dir)?;
        // The dir says whose it is before any client can use it, so the reaper never takes it
        // for an unused warm browser.
        let cgroups = read_pid_file(&claim.worker.dir)
            .map(|pf| pf.cgroups)
            .unwrap_or_default();
        let pf = PidFile {
            pid: claim.worker.pid,
            start_time: claim.worker.start_time,
            warm: true,
            session: Some(claim.session_id.to_string()),
            cgroups,
        };
        write_pid_file(&claim.worker.dir, &pf)?;
        // The session's own limits, in place of the node's defaults it was launched with.
        let limits = self.limits();
        limits
            .apply(
                &dir_name(&claim.worker.dir),
                limits.of(&claim.options),
                &pf.cgroups,
            )
            .map_err(|e| WorkerError::io("apply the session's limits", e))?;
        let timeout = Duration::from_secs(2);
        if !self.answers(&claim.worker, timeout).await {
            return Err(WorkerError::NotReady(timeout));
        }
        if let Some(ctx) = &claim.context {
            page::apply_context(&claim.worker, ctx)
                .await
                .map_err(WorkerError::context)?;
        }
        self.start_agent(&claim.worker, &claim.session_id, &claim.options)
            .await?;
        let _ = self.events.send(WorkerEvent::Launched {
            session_id: claim.session_id,
            worker: claim.worker.clone(),
            options: Box::new(claim.options),
        });
        Ok(claim.worker)
    }

    /// Kills the browsers whose profile is under the sessions dir when their dir is gone and
    /// `keep` does not name them (a dir deleted or quarantined under a browser that outlived
    /// it). A browser whose dir exists is judged with its dir.
    fn kill_strays(&self, keep: &HashSet<String>) -> usize {
        let prefix = format!("--user-data-dir={}/", self.sessions_dir.display());
        let mut killed = 0;
        for (pid, arg) in process::with_arg_prefix(&prefix) {
            let id = arg[prefix.len()..].split('/').next().unwrap_or_default();
            if keep.contains(id) || self.is_busy(id) || self.sessions_dir.join(id).exists() {
                continue;
            }
            let Some(st) = process::stat(pid) else {
                continue;
            };
            // Its command line names a profile under the sessions dir, so it is one of bro's
            // browsers: its group goes with it when it leads one (as bro starts browsers),
            // otherwise it goes alone.
            let sent = if st.pgrp == pid {
                process::try_signal_group(pid, nix::sys::signal::Signal::SIGKILL)
            } else {
                process::try_signal(pid, nix::sys::signal::Signal::SIGKILL)
            };
            match sent {
                Ok(()) => {
                    tracing::info!(pid, session_id = %id, "killed a browser whose dir is gone");
                    killed += 1;
                }
                Err(err) => {
                    tracing::warn!(pid, session_id = %id, %err, "cannot kill a browser whose dir is gone")
                }
            }
        }
        killed
    }

    /// Reopens the proxy hop of a browser adopted after a daemon restart, on the port the
    /// browser was launched with. Nothing to do for a session without one.
    async fn resume_hop(
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
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<WorkerInfo, HostError>> {
        let id = spec.session_id.to_string();
        // The launch's own span in the create's trace, when traces are exported.
        let span = crate::telemetry::otlp::span(|| tracing::info_span!("launch", session_id = %id));
        // Always there: `self` is borrowed from the Arc `new` made.
        let Some(host) = self.me.upgrade() else {
            return Box::pin(async {
                Err(HostError::new(
                    HostErrorKind::Permanent,
                    "launching Chromium: the worker host is gone",
                ))
            });
        };
        // Its own task: a caller that stops waiting (a stop's grace over, an attempt Restate
        // abandoned, a cluster peer cut off) leaves the launch to end by itself, through its
        // error path or landed (then reaped as an orphan), never half way with a browser
        // running in a dir nothing records.
        let task = self
            .launches
            .spawn(async move { host.launch_task(spec).await }.instrument(span));
        Box::pin(async move {
            task.await.unwrap_or_else(|err| {
                Err(HostError::new(
                    HostErrorKind::Retryable,
                    format!("the launch task failed: {err}"),
                ))
            })
        })
    }

    fn stop(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<Option<ProxyBytes>, HostError>> {
        let id = worker
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Box::pin(async move { Ok(self.one_at_a_time(id, self.stop_inner(worker)).await?) })
    }

    fn claim(&self, claim: Claim) -> BoxFuture<'_, Result<WorkerInfo, HostError>> {
        // A warm create's stand-in for `launch` in its trace, when traces are exported.
        let span = crate::telemetry::otlp::span(
            || tracing::info_span!("claim_warm", session_id = %claim.session_id),
        );
        Box::pin(async move { Ok(self.claim_inner(claim).await?) }.instrument(span))
    }

    fn probe(&self, worker: WorkerInfo, timeout: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move { chromium::answers(&self.http, worker.port, timeout).await })
    }

    fn alive(&self, worker: &WorkerInfo) -> bool {
        process::is_alive(worker.pid, worker.start_time)
    }

    fn resume(
        &self,
        worker: WorkerInfo,
        options: SessionOptions,
    ) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            self.resume_hop(&worker, &options).await?;
            // Adopted after a restart: its limits are known again (measurement needs them).
            let limits = self.limits();
            let recorded = read_pid_file(&worker.dir)
                .map(|pf| pf.cgroups)
                .unwrap_or_default();
            limits
                .apply(&dir_name(&worker.dir), limits.of(&options), &recorded)
                .map_err(|e| WorkerError::io("apply the session's limits", e))?;
            // The session the browser serves: the claiming one for a warm browser.
            let session = read_pid_file(&worker.dir)
                .and_then(|pf| pf.session)
                .or_else(|| {
                    worker
                        .dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .and_then(|id| SessionId::parse(&id).ok());
            if let Some(session) = session {
                self.own_dir(&worker.dir)?;
                self.start_agent(&worker, &session, &options).await?;
            }
            Ok(())
        })
    }

    fn context(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<SessionContext, HostError>> {
        Box::pin(async move {
            self.own_dir(&worker.dir)?;
            page::read_context(&worker).await.map_err(page_error)
        })
    }

    fn pages(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<BrowserPages, HostError>> {
        Box::pin(async move {
            self.own_dir(&worker.dir)?;
            let pages = page::pages(&self.http, &worker).await.map_err(page_error)?;
            let version = chromium::version(&self.http, worker.port).await;
            let mut browser = BrowserPages::from_cdp(&pages, &version);
            browser.viewers = self.casts.viewers(&cast::key_of(&worker));
            Ok(browser)
        })
    }

    fn preview(
        &self,
        worker: WorkerInfo,
        max_width: u32,
    ) -> BoxFuture<'_, Result<Preview, HostError>> {
        Box::pin(async move {
            self.own_dir(&worker.dir)?;
            page::preview(&worker, max_width).await.map_err(page_error)
        })
    }

    fn screencast(
        &self,
        spec: CastSpec,
        input: BoxStream<'static, CastInput>,
    ) -> BoxFuture<'_, Result<BoxStream<'static, CastOutput>, HostError>> {
        Box::pin(async move {
            self.own_dir(&spec.worker.dir)?;
            cast::start(&self.casts, spec, input).await
        })
    }

    fn act(
        &self,
        worker: WorkerInfo,
        work: PageWork,
    ) -> BoxFuture<'_, Result<PageOutput, HostError>> {
        Box::pin(async move {
            self.own_dir(&worker.dir)?;
            actions::run(&worker, &work).await
        })
    }

    fn usage(&self, pids: Vec<u32>) -> BoxFuture<'_, HashMap<u32, Usage>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || process::usage_by_group(&pids))
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|(pid, (mem_kib, cpu_ticks, processes))| {
                    let usage = Usage {
                        mem_kib,
                        cpu_ticks,
                        processes,
                    };
                    (pid, usage)
                })
                .collect()
        })
    }

    fn session_dirs(&self) -> Vec<SessionDir> {
        self.dirs()
            .into_iter()
            .filter(|(id, dir)| {
                // Only `<uuid>` dirs (not files, not symlinks) are bro's; the rest is not
                // touched.
                let real_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
                SessionId::parse(id).is_ok() && real_dir
            })
            .map(|(id, dir)| SessionDir {
                owner: dir_owner(&dir),
                busy: self.is_busy(&id) || younger_than(&dir, REAP_GRACE),
                id,
            })
            .collect()
    }

    fn is_busy(&self, id: &str) -> bool {
        lock(&self.busy).contains_key(id)
    }

    fn is_stopping(&self, pid: u32) -> bool {
        lock(&self.stopping).contains(&pid)
    }

    fn reap(&self, id: String) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let dir = self.session_dir(&id)?;
            Ok(self.reap_dir(&dir).await?)
        })
    }

    fn quarantine(&self, id: String, reason: String) -> BoxFuture<'_, Result<String, HostError>> {
        Box::pin(async move {
            let dir = self.session_dir(&id)?;
            let mut reason = reason;
            if let Err(err) = self.stop_orphan(&dir).await {
                reason = format!("{reason}; its browser could not be stopped: {err}");
            }
            let root = self.quarantine_dir.clone();
            let to =
                tokio::task::spawn_blocking(move || quarantine::move_aside(&dir, &root, &reason))
                    .await
                    .map_err(|e| HostError::new(HostErrorKind::Retryable, e.to_string()))?
                    .map_err(|e| {
                        HostError::new(
                            HostErrorKind::Retryable,
                            format!("could not move the dir into quarantine: {e}"),
                        )
                    })?;
            Ok(to.display().to_string())
        })
    }

    fn sweep_strays(&self, keep: Vec<String>) -> usize {
        let keep: HashSet<String> = keep.into_iter().collect();
        let cgroups = self.limits().sweep(|name| {
            keep.contains(name) || self.is_busy(name) || self.sessions_dir.join(name).exists()
        });
        self.kill_strays(&keep)
            + cgroups
            + chromium::sweep_tmp_dirs(&chromium::tmp_base(), REAP_GRACE)
            + sweep_trash(&trash_dir(&self.sessions_dir), REAP_GRACE)
    }

    fn over_limit(&self, workers: Vec<WorkerInfo>) -> BoxFuture<'_, Vec<u32>> {
        let limits = self.limits();
        Box::pin(async move {
            let limited: Vec<(u32, String)> = workers
                .iter()
                .map(|w| (w.pid, dir_name(&w.dir)))
                .filter(|(_, name)| limits.limits_of(name).is_some_and(|l| l.memory.is_some()))
                .collect();
            if limited.is_empty() {
                return Vec::new();
            }
            // Measurement reads PSS, off the runtime: only of the groups whose resident memory
            // (cheap, never below their PSS) is past their limit; and reads resident memory
            // (a walk of /proc) less often while every group is far below its limit.
            let groups: Vec<(u32, u64)> = limited
                .iter()
                .filter(|(_, name)| limits.measured(name))
                .map(|(pid, name)| {
                    let limit = limits.limits_of(name).and_then(|l| l.memory);
                    (*pid, limit.unwrap_or(u64::MAX))
                })
                .collect();
            let mut pgids: Vec<u32> = groups.iter().map(|(pid, _)| *pid).collect();
            pgids.sort_unstable();
            let pss = if !groups.is_empty() && limits.measure_due(&pgids) {
                let walked = pgids.clone();
                let (nearest, usage) = tokio::task::spawn_blocking(move || {
                    let rss = process::rss_by_group(&pgids);
                    let nearest = groups
                        .iter()
                        .filter_map(|(pid, limit)| {
                            rss.get(pid)
                                .map(|kib| limits::measure::permille(*kib, *limit))
                        })
                        .max()
                        .unwrap_or(0);
                    let near: Vec<u32> = groups
                        .iter()
                        .filter(|(pid, limit)| {
                            rss.get(pid)
                                .is_some_and(|kib| kib.saturating_mul(1024) > *limit)
                        })
                        .map(|(pid, _)| *pid)
                        .collect();
                    (nearest, process::usage_by_group(&near))
                })
                .await
                .unwrap_or_default();
                limits.measured_now(walked, nearest);
                usage
            } else {
                HashMap::new()
            };
            limited
                .into_iter()
                .filter(|(pid, name)| limits.over(name, pss.get(pid).map(|u| u.0)))
                .map(|(pid, _)| pid)
                .collect()
        })
    }

    fn files(&self, of: FilesOf) -> BoxFuture<'_, Result<FileListing, HostError>> {
        Box::pin(async move {
            let dir = self.files_of(&of)?;
            files::serve::listing(&of.session_id, &dir, self.files_quota).await
        })
    }

    fn read_file(&self, of: FilesOf, path: String) -> BoxFuture<'_, Result<FileRead, HostError>> {
        Box::pin(async move {
            let dir = self.files_of(&of)?;
            files::serve::read(&of.session_id, &dir, path).await
        })
    }

    fn upload_file(
        &self,
        of: FilesOf,
        min_size: Option<u64>,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<String, HostError>> {
        Box::pin(async move {
            let dir = self.files_of(&of)?;
            let files = files::serve::files_dir(&of.session_id, &dir).await?;
            files::upload::receive(files, self.files_quota, min_size, body).await
        })
    }

    fn place_upload(
        &self,
        of: FilesOf,
        upload: String,
        path: String,
    ) -> BoxFuture<'_, Result<FileEntry, HostError>> {
        Box::pin(async move {
            // Not made again: a session that ended meanwhile took its files with it.
            let files = chromium::files_dir(&self.files_of(&of)?);
            files::upload::place(files, &upload, path).await
        })
    }

    fn discard_upload(&self, of: FilesOf, upload: String) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Ok(dir) = self.files_of(&of) {
                files::upload::discard(chromium::files_dir(&dir), &upload).await;
            }
        })
    }

    fn delete_file(&self, of: FilesOf, path: String) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let dir = self.files_of(&of)?;
            files::serve::delete(&of.session_id, &dir, path).await
        })
    }

    fn clear_files(&self, of: FilesOf) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let dir = self.files_of(&of)?;
            files::serve::clear(&of.session_id, &dir).await
        })
    }

    fn zip_files(&self, of: FilesOf) -> BoxFuture<'_, Result<ByteStream, HostError>> {
        Box::pin(async move {
            let dir = self.files_of(&of)?;
            files::serve::zip(&of.session_id, &dir).await
        })
    }

    fn recording(&self, query: RecordingQuery) -> BoxFuture<'_, Result<RecordingPage, HostError>> {
        let store = self.agents.store().clone();
        Box::pin(async move {
            let limit = query.limit as usize;
            tokio::task::spawn_blocking(move || store.read(&query.session_id, query.from, limit))
                .await
                .map_err(|e| HostError::new(HostErrorKind::Retryable, e.to_string()))?
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::InvalidInput => HostError::new(
                        HostErrorKind::BadInput,
                        format!("pointer {} is not one this recording gave: {e}", query.from),
                    ),
                    _ => HostError::new(
                        HostErrorKind::Retryable,
                        format!("reading the recording failed: {e}"),
                    ),
                })
        })
    }
}

/// How often recordings past their retention are looked for.
pub const SWEEP_RECORDINGS_EVERY: Duration = Duration::from_secs(600);

/// A host for tools that launch browsers outside any daemon (`bro doctor`, `bro bench`): its
/// dirs go under `scratch`, its browsers run at nice `browser_nice` over this process, and
/// nothing watches them.
pub fn scratch_host(
    chromium: PathBuf,
    extra_flags: Vec<String>,
    browser_nice: u32,
    scratch: &Path,
) -> Arc<dyn WorkerHost> {
    let (events, _) = mpsc::unbounded_channel();
    let store = recording::RecordingStore::new(
        scratch.join("recordings"),
        crate::config::DEFAULT_RECORD_MAX_BYTES,
        crate::config::DEFAULT_RECORDINGS_QUOTA,
    );
    let host = LocalWorkerHost::new(
        chromium,
        extra_flags,
        scratch.to_path_buf(),
        scratch.join("quarantine"),
        crate::config::DEFAULT_FILES_QUOTA,
        agent::Agents::new(store, None),
        events,
    );
    host.set_browser_nice(browser_nice);
    host
}

/// A session dir younger than this is never reaped: its session's state may not be visible
/// to introspection yet. (A launch under way in this daemon is protected on its own.)
pub const REAP_GRACE: Duration = Duration::from_secs(10);

/// True when `path` changed less than `age` ago.
fn younger_than(path: &Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .is_some_and(|elapsed| elapsed < age)
}

/// The name of a session dir: its session or warm browser id.
fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whom session dir `dir` says it belongs to.
fn dir_owner(dir: &Path) -> DirOwner {
    match read_pid_file(dir) {
        Some(PidFile {
            session: Some(id), ..
        }) => DirOwner::Session(id),
        Some(PidFile { warm: true, .. }) => DirOwner::Warm,
        _ => DirOwner::Unknown,
    }
}

/// A failed page call as a host error: the browser refusing it is [`HostErrorKind::Refused`].
pub(crate) fn page_error(err: crate::worker::cdp::CdpError) -> HostError {
    let kind = match err {
        crate::worker::cdp::CdpError::Call { .. } => HostErrorKind::Refused,
        _ => HostErrorKind::Retryable,
    };
    HostError::new(kind, err.to_string())
}

/// A failed launch's error: [`WorkerError::MemoryLimit`] when its cgroup shows an OOM kill by
/// its own limit (the check the supervisor makes of a running browser), else `err`.
fn launch_error(
    limits: &limits::Limits,
    name: &str,
    options: &SessionOptions,
    err: WorkerError,
) -> WorkerError {
    match limits.limits_of(name).and_then(|l| l.memory) {
        Some(limit) if limits.over(name, None) => WorkerError::MemoryLimit {
            limit,
            // The client's own limit only when it was the one in force (a node's smaller
            // cap is not the client's fault).
            asked: options.memory_limit.is_some_and(|asked| asked <= limit),
        },
        _ => err,
    }
}

impl From<WorkerError> for HostError {
    fn from(err: WorkerError) -> Self {
        let kind = match &err {
            WorkerError::ContextRefused(_) | WorkerError::MemoryLimit { asked: true, .. } => {
                HostErrorKind::Refused
            }
            e if e.is_permanent() => HostErrorKind::Permanent,
            _ => HostErrorKind::Retryable,
        };
        HostError::new(kind, err.to_string())
    }
}

/// Checks that `dir` is exactly `sessions_dir/<uuid>`: no `..`, no other parent, no
/// symlinked session dir (its target could be anywhere).
fn owned_session_dir(sessions_dir: &Path, dir: &Path) -> Result<(), WorkerError> {
    let not_ours = || WorkerError::NotOurs(dir.display().to_string());
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(not_ours)?;
    if SessionId::parse(name).is_err() || dir.parent() != Some(sessions_dir) {
        return Err(not_ours());
    }
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => Err(not_ours()),
        _ => Ok(()),
    }
}

/// How long removing a session dir is retried while exiting processes still write in it.
const REMOVE_WAIT: Duration = Duration::from_secs(1);

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
        let path = &path;
        let removed = wait_until(REMOVE_WAIT, Duration::from_millis(50), || async move {
            match std::fs::remove_dir_all(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => ControlFlow::Continue(e),
                _ => ControlFlow::Break(()),
            }
        })
        .await;
        if let ControlFlow::Continue(e) = removed {
            return Err(WorkerError::io("remove session dir", e));
        }
    }
    Ok(())
}

/// Where stopped sessions' dirs wait for their delete: beside the sessions dir, so on its
/// file system (a rename moves a dir there at once).
fn trash_dir(sessions_dir: &Path) -> PathBuf {
    sessions_dir.with_file_name("trash")
}

/// Takes a stopped session's dir away at once and deletes it in the background: deleting a
/// browser profile takes hundreds of milliseconds that a release need not wait for. The dir
/// is renamed into [`trash_dir`] (one rename; the session dir is gone for everyone from
/// here) and deleted there with its temp dir; should the daemon die first, the sweep
/// ([`sweep_trash`], [`chromium::sweep_tmp_dirs`]) deletes them. When the rename fails (the
/// trash cannot be made, another file system), the dir is removed in place.
async fn discard_dir(sessions_dir: &Path, dir: &Path) -> Result<(), WorkerError> {
    owned_session_dir(sessions_dir, dir)?;
    let (Some(name), trash) = (dir.file_name(), trash_dir(sessions_dir)) else {
        return remove_dir(sessions_dir, dir).await;
    };
    let to = trash.join(name);
    let moved = crate::paths::create_private_dir(&trash).and_then(|()| std::fs::rename(dir, &to));
    if moved.is_err() {
        // Gone already (a retried stop) or not movable: removed here, as before.
        return remove_dir(sessions_dir, dir).await;
    }
    let tmp = chromium::tmp_dir(dir);
    let tmp = tmp
        .parent()
        .is_some_and(chromium::tmp_base_is_ours)
        .then_some(tmp);
    tokio::task::spawn_blocking(move || {
        for path in tmp.iter().chain([&to]) {
            if let Err(e) = std::fs::remove_dir_all(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %path.display(), error = %e, "could not delete a stopped session's dir; the sweep tries again");
            }
        }
    });
    Ok(())
}

/// Deletes what a stopped session left in the trash dir `trash` (see [`discard_dir`]) and
/// that has been there for `grace` (its own delete may still run). Returns how many.
fn sweep_trash(trash: &Path, grace: Duration) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(trash) else {
        return 0;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut removed = 0;
    for entry in entries.flatten() {
        // The rename set its ctime: the time it came into the trash.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let age = now.saturating_sub(u64::try_from(meta.ctime()).unwrap_or(0));
        if age < grace.as_secs() {
            continue;
        }
        let path = entry.path();
        let gone = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            tracing::info!(dir = %path.display(), "deleted a stopped session's dir left in the trash");
            removed += 1;
        }
    }
    removed
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
    fn a_launch_oom_killed_by_its_own_limit_says_memory_limit() {
        // A cgroup v2 machine in a temp dir, bro's cgroup delegated.
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("sys/fs/cgroup/bro.service");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("cgroup.controllers"), "cpu memory\n").unwrap();
        std::fs::write(own.join("cgroup.subtree_control"), "cpu memory\n").unwrap();
        let sys = limits::Sys {
            self_cgroup: "0::/bro.service\n".into(),
            mountinfo: "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n".into(),
            root: root.path().to_path_buf(),
        };
        let detected =
            limits::detect(&sys, crate::config::LimitsMode::Cgroup, "bro-x", true).unwrap();
        let limits = limits::Limits::new(detected, None, None);
        let id = "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69";
        let asked = SessionOptions {
            memory_limit: Some(64 << 20),
            ..Default::default()
        };
        limits.prepare(id, limits.of(&asked), false).unwrap();
        let exited = || WorkerError::Exited {
            status: "signal: 9 (SIGKILL)".into(),
            log: String::new(),
        };
        // No OOM kill in its cgroup: the error is what the launch saw.
        let err = launch_error(&limits, id, &asked, exited());
        assert!(matches!(err, WorkerError::Exited { .. }), "{err}");
        std::fs::write(
            own.join("bro-x").join(id).join("memory.events"),
            "oom 1\noom_kill 1\n",
        )
        .unwrap();
        let err = launch_error(&limits, id, &asked, exited());
        assert_eq!(
            err.to_string(),
            "browser killed at its memory limit (64 MiB) during launch; a browser needs more \
             to start"
        );
        // The client's limit: refused (422), never retried.
        assert_eq!(HostError::from(err).kind, HostErrorKind::Refused);
        // The node's own cap: not the client's fault, and retried within the launch's
        // bounded attempts (a launch near its limit may fit on a quieter machine).
        let err = launch_error(&limits, id, &SessionOptions::default(), exited());
        assert!(!err.is_permanent());
        assert_eq!(HostError::from(err).kind, HostErrorKind::Retryable);
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

    /// A stopped session's dir leaves the sessions dir at once, its delete ends in the
    /// background, and what a daemon killed before that delete left in the trash is swept
    /// once past the grace. The same checks as [`remove_dir`]: never a dir not bro's, never
    /// through a symlink.
    #[tokio::test]
    async fn a_stopped_dir_is_trashed_then_deleted() {
        let root = tempfile::tempdir().unwrap();
        let sessions = root.path().join("sessions");
        let victim = root.path().join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        let id = "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69";
        std::fs::create_dir_all(&sessions).unwrap();
        std::os::unix::fs::symlink(&victim, sessions.join(id)).unwrap();
        assert!(discard_dir(&sessions, &sessions.join(id)).await.is_err());
        assert!(discard_dir(&sessions, &victim).await.is_err());
        assert!(victim.exists());
        std::fs::remove_file(sessions.join(id)).unwrap();

        std::fs::create_dir_all(sessions.join(id).join("profile/Default")).unwrap();
        std::fs::write(sessions.join(id).join("profile/Default/x"), "x").unwrap();
        discard_dir(&sessions, &sessions.join(id)).await.unwrap();
        assert!(!sessions.join(id).exists());
        let trash = trash_dir(&sessions);
        let emptied =
            crate::wait::wait_for(Duration::from_secs(5), Duration::from_millis(10), || {
                !trash.join(id).exists()
            })
            .await;
        assert!(emptied, "the background delete did not end");
        // A retried stop finds the dir gone: no error.
        discard_dir(&sessions, &sessions.join(id)).await.unwrap();

        // Left behind by a daemon killed before its delete: kept within the grace only.
        std::fs::create_dir_all(trash.join(id).join("profile")).unwrap();
        assert_eq!(sweep_trash(&trash, Duration::from_secs(3600)), 0);
        assert!(trash.join(id).exists());
        assert_eq!(sweep_trash(&trash, Duration::ZERO), 1);
        assert!(!trash.join(id).exists());
        assert_eq!(sweep_trash(&root.path().join("none"), Duration::ZERO), 0);
    }

    /// A stopping daemon ends a launch whose browser is still starting through the launch's
    /// own error path: the browser's processes are killed and its dir is removed before the
    /// launch returns (a dropped launch future would leave both to the next start). Once
    /// stopped, no launch starts.
    #[tokio::test]
    async fn a_stop_ends_a_starting_launch_and_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        // A "browser" that never opens its DevTools port (run by its shebang, its argv
        // names its dir as Chromium's does, so the kill knows it for the dir's own).
        let fake = root.path().join("chromium");
        std::fs::write(
            &fake,
            "#!/bin/sh\n[ \"$1\" = probe ] && exit 0\nwhile :; do sleep 1; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        // Another test's fork may hold the new file open for a moment (ETXTBSY): run it once.
        let runs = (0..100).any(|_| {
            std::process::Command::new(&fake)
                .arg("probe")
                .status()
                .is_ok_and(|s| s.success())
                || {
                    std::thread::sleep(Duration::from_millis(20));
                    false
                }
        });
        assert!(runs, "the fake browser does not run");
        let sessions = root.path().join("sessions");
        let (events, _rx) = mpsc::unbounded_channel();
        let host = LocalWorkerHost::new(
            fake,
            Vec::new(),
            sessions.clone(),
            root.path().join("quarantine"),
            crate::config::DEFAULT_FILES_QUOTA,
            agent::Agents::new(
                recording::RecordingStore::new(root.path().join("rec"), 1 << 20, 1 << 30),
                None,
            ),
            events,
        );
        let stop = CancellationToken::new();
        host.stop_launches_on(stop.clone());
        let id = SessionId::parse("0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69").unwrap();
        let dir = sessions.join(id.to_string());
        let spec = |warm| LaunchSpec {
            session_id: id.clone(),
            options: SessionOptions::default(),
            context: None,
            warm,
        };
        let launch = tokio::spawn({
            let host = Arc::clone(&host);
            let spec = spec(false);
            async move { host.launch(spec).await }
        });
        // Stopped once the browser runs and its dir records it.
        let spawned =
            crate::wait::wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
                read_pid_file(&dir).is_some()
            })
            .await;
        assert!(spawned, "the fake browser never started");
        let pid = read_pid_file(&dir).unwrap().pid;
        /// Kills the fake browser's group if an assertion fails before the stop does.
        struct Group(u32);
        impl Drop for Group {
            fn drop(&mut self) {
                if process::group_members(self.0).is_empty() {
                    return;
                }
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(self.0 as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _group = Group(pid);
        stop.cancel();
        let err = tokio::time::timeout(Duration::from_secs(10), launch)
            .await
            .expect("the launch ends at the stop")
            .unwrap()
            .unwrap_err();
        assert!(err.message.contains("the daemon is stopping"), "{err}");
        assert_eq!(err.kind, HostErrorKind::Permanent);
        assert!(!dir.exists(), "the launch left its dir");
        assert_eq!(
            process::group_members(pid),
            Vec::<u32>::new(),
            "still running"
        );
        // No launch starts now, cold or warm.
        for warm in [false, true] {
            let err = host.launch(spec(warm)).await.unwrap_err();
            assert!(err.message.contains("the daemon is stopping"), "{err}");
        }
        assert!(!dir.exists());
    }
}
