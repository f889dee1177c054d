//! `bro daemon`: reads top to bottom as the startup order, then the ordered shutdown.
//!
//! 1. take the lock of this bro home;
//! 2. find Chromium;
//! 3. start (or adopt) restate-server;
//! 4. serve the orchestrator's SDK endpoint and register it;
//! 5. reconcile state with the browsers that run;
//! 6. serve the TCP API and the Unix socket;
//! 7. on SIGTERM or a shutdown request: release the sessions (unless asked to keep them),
//!    stop serving, stop restate.

pub mod identity;
pub mod lifecycle;
pub mod restate;
pub mod supervisor;
pub mod sweep;

use std::collections::HashSet;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::Request;
use axum::serve::ListenerExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, control::ControlState};
use crate::cdp_proxy::Sockets;
use crate::orchestrator::ingress::{Ingress, RestateAddr};
use crate::orchestrator::{self, Deps};
use crate::paths::Paths;
use crate::protocol::control::{DaemonStatus, RestateStatus};
use crate::protocol::{PROTOCOL_VERSION, session::SessionStatus};
use crate::worker::{LocalWorkerHost, chromium};

/// Everything `bro daemon` is configured with.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub port: u16,
    pub bind: IpAddr,
    pub max_sessions: u32,
    /// Most creates waiting for a slot; 0 = no queue.
    pub max_queue: u32,
    /// Ready browsers to keep; 0 = none.
    pub warm: u32,
    /// How long a create waits for a slot.
    pub queue_timeout_ms: u64,
    /// Timeout of sessions created without one; 0 means none.
    pub default_timeout_ms: u64,
    /// How long ended sessions stay retrievable; 0 means forever.
    pub retention_ms: u64,
    /// Bytes each session's files dir may hold (uploads and the browser's downloads).
    pub files_quota: u64,
    pub node: String,
    pub chromium: Option<PathBuf>,
    /// Added to every browser's command line.
    pub chromium_flags: Vec<String>,
    pub restate_server: Option<PathBuf>,
    pub restate_admin_url: Option<String>,
    pub restate_ingress_url: Option<String>,
    /// Required from TCP clients when set.
    pub api_key: Option<String>,
}

impl DaemonOptions {
    /// Every setting within the bound bro can honour (flags and `config.toml` are checked as
    /// they are read; this covers every other way in). The message names the bound.
    pub fn check(&self) -> Result<(), String> {
        use crate::config::{self as c, check_count};
        use crate::protocol::session::check_ms;
        check_count(self.max_sessions, 1, c::MAX_SESSIONS_LIMIT)
            .map_err(|e| format!("max_sessions: {e}"))?;
        check_count(self.max_queue, 0, c::MAX_QUEUE_LIMIT)
            .map_err(|e| format!("max_queue: {e}"))?;
        check_count(self.warm, 0, c::MAX_WARM).map_err(|e| format!("warm: {e}"))?;
        check_ms(
            "queue_timeout",
            self.queue_timeout_ms,
            c::MAX_QUEUE_TIMEOUT_MS,
        )?;
        check_ms(
            "default_timeout",
            self.default_timeout_ms,
            c::MAX_DEFAULT_TIMEOUT_MS,
        )?;
        check_ms("retention", self.retention_ms, c::MAX_RETENTION_MS)?;
        c::check_node(&self.node).map_err(|e| format!("node: {e}"))?;
        Ok(())
    }
}

/// How long a stopping daemon spends releasing its sessions through Restate before it stops
/// their browsers itself.
const RELEASE_BUDGET: Duration = Duration::from_secs(8);
/// How long the servers and background tasks get to finish once told to stop.
const TASKS_BUDGET: Duration = Duration::from_secs(3);
/// How long killing the browsers left in the sessions dir may take.
const REAP_BUDGET: Duration = Duration::from_secs(6);

/// Runs the daemon until SIGTERM/SIGINT or `POST /bro/v1/shutdown`. A start that fails at any
/// step stops what it had started (restate-server, the browsers it launched) before it
/// returns the error.
pub async fn run(paths: Paths, opts: DaemonOptions) -> Result<()> {
    opts.check().map_err(anyhow::Error::msg)?;
    paths.create_all().context("creating bro's directories")?;
    // Held until the undo of a failed start is done, so no other daemon of this home can
    // adopt the restate-server or the browsers the undo is about to stop.
    let _lock = lifecycle::lock(&paths)?;
    let mut started = Started::new(&paths);
    let result = run_inner(paths, opts, &mut started).await;
    if result.is_err() {
        started.undo().await;
    }
    result
}

/// What a start has brought up so far, undone when a later step fails.
struct Started {
    restate: Option<restate::Supervised>,
    host: Option<Arc<LocalWorkerHost>>,
    /// Handed to the services as [`Deps::stopping`].
    stopping: CancellationToken,
    /// Stops the servers (API, socket, SDK endpoint).
    servers: CancellationToken,
    /// Stops the background tasks (supervisor, download watcher, sweep).
    background: CancellationToken,
    /// The session dirs there before this start (a previous daemon's kept sessions): a failed
    /// start leaves them alone.
    before: HashSet<String>,
}

/// What the daemon reads of the supervised restate-server that [`Started`] holds.
struct RestateHandle {
    pid: Arc<AtomicU32>,
    restarts: Arc<AtomicU32>,
}

impl Started {
    fn new(paths: &Paths) -> Self {
        let before = std::fs::read_dir(paths.sessions_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        Started {
            restate: None,
            host: None,
            stopping: CancellationToken::new(),
            servers: CancellationToken::new(),
            background: CancellationToken::new(),
            before,
        }
    }

    /// Keeps the supervised restate-server, so a failed start stops it.
    fn hold(&mut self, sup: Option<restate::Supervised>) -> Option<RestateHandle> {
        let handle = sup.as_ref().map(|s| RestateHandle {
            pid: Arc::clone(&s.pid),
            restarts: Arc::clone(&s.restarts),
        });
        self.restate = sup;
        handle
    }

    async fn stop_restate(&mut self) {
        if let Some(sup) = self.restate.take() {
            sup.stop().await;
        }
    }

    /// Kills the browsers under the sessions dir (all of them, or only those this start
    /// launched), each directly by the pid its dir records (and only when that pid is still
    /// the dir's browser). The dirs stay: the next start's reconciliation removes or
    /// quarantines each as its record says.
    async fn stop_browsers(&self, all: bool) -> usize {
        let Some(host) = &self.host else {
            return 0;
        };
        let dirs: Vec<_> = host
            .dirs()
            .into_iter()
            .filter(|(name, _)| all || !self.before.contains(name))
            .collect();
        let stops = dirs.iter().map(|(name, dir)| async move {
            if let Err(err) = host.stop_orphan(dir).await {
                tracing::error!(session = %name, %err, "stopping a browser failed");
            }
        });
        if tokio::time::timeout(REAP_BUDGET, futures_util::future::join_all(stops))
            .await
            .is_err()
        {
            tracing::error!("stopping the browsers left took longer than {REAP_BUDGET:?}");
        }
        dirs.len()
    }

    /// After a failed start: launches under way give up, restate-server stops, and the
    /// browsers this start launched are stopped.
    async fn undo(&mut self) {
        self.stopping.cancel();
        self.servers.cancel();
        self.background.cancel();
        self.stop_restate().await;
        let stopped = self.stop_browsers(false).await;
        tracing::info!(
            browser_dirs = stopped,
            "the start failed; stopped what it had started"
        );
    }
}

async fn run_inner(paths: Paths, opts: DaemonOptions, started: &mut Started) -> Result<()> {
    if !opts.bind.is_loopback() && opts.api_key.is_none() {
        bail!(
            "refusing to serve on {} without an API key: anyone who reaches it could drive the \
             browsers; pass --api-key (or set BRO_API_KEY), or bind 127.0.0.1",
            opts.bind
        );
    }
    if let Some(key) = &opts.api_key {
        api::auth::check_key(key).map_err(anyhow::Error::msg)?;
    }
    let chromium = chromium::find(opts.chromium.as_deref())?;
    let shutdown = CancellationToken::new();
    lifecycle::on_signals(shutdown.clone())?;

    // The API port before anything is started: a port in use fails the start at once.
    let tcp = TcpListener::bind((opts.bind, opts.port))
        .await
        .with_context(|| {
            format!(
                "port {} on {} is in use; pass --port to pick another",
                opts.port, opts.bind
            )
        })?;

    // Restate: supervised, or an existing one. Either way it must sign its calls to the SDK
    // endpoint with bro's key (an external one is configured with `identity.pem`).
    crate::paths::create_private_dir(&paths.restate_dir())?;
    let identity = identity::Identity::load_or_create(&paths.restate_dir())?;
    let (supervised, admin, ingress_addr) =
        match (&opts.restate_admin_url, &opts.restate_ingress_url) {
            (Some(admin), Some(ingress)) => (
                None,
                RestateAddr::parse(admin).map_err(anyhow::Error::msg)?,
                RestateAddr::parse(ingress).map_err(anyhow::Error::msg)?,
            ),
            (None, None) => {
                let binary = restate::find_binary(opts.restate_server.as_deref(), &paths)?;
                let sup = restate::start(binary, &paths, &identity).await?;
                let admin = RestateAddr::Unix(sup.sockets.admin.clone());
                let ingress = RestateAddr::Unix(sup.sockets.ingress.clone());
                (Some(sup), admin, ingress)
            }
            _ => bail!(
                "--restate-admin-url and --restate-ingress-url go together; pass both or neither"
            ),
        };
    // From here on a failed start stops the restate-server it started.
    let supervised = started.hold(supervised);
    let ports = restate::Ports::load_or_pick(&paths.restate_dir());
    ports.save(&paths.restate_dir())?;
    let ingress = Ingress::new(ingress_addr.clone(), admin.clone()).map_err(anyhow::Error::msg)?;

    // The orchestrator's SDK endpoint (h2c, TCP_NODELAY), registered at every start.
    let (exit_tx, exit_rx) = mpsc::unbounded_channel();
    let host = LocalWorkerHost::new(
        chromium.clone(),
        opts.chromium_flags.clone(),
        paths.sessions_dir(),
        paths.quarantine_dir(),
        opts.files_quota,
        exit_tx,
    );
    started.host = Some(Arc::clone(&host));
    let sockets = Arc::new(Sockets::default());
    let deps = Arc::new(Deps {
        host: host.clone(),
        node: opts.node.clone(),
        max_sessions: opts.max_sessions,
        max_queue: opts.max_queue,
        queue_timeout_ms: opts.queue_timeout_ms,
        warm: opts.warm,
        retention_ms: opts.retention_ms,
        events: Arc::clone(&sockets) as Arc<dyn orchestrator::SessionEvents>,
        stopping: started.stopping.clone(),
    });
    let sdk_listener = TcpListener::bind(("127.0.0.1", ports.sdk))
        .await
        .with_context(|| format!("binding the SDK endpoint on 127.0.0.1:{}", ports.sdk))?;
    let endpoint_url = format!("http://127.0.0.1:{}/", sdk_listener.local_addr()?.port());
    let servers = started.servers.clone();
    let sdk_task = tokio::spawn(serve_sdk(
        sdk_listener,
        orchestrator::endpoint(deps, &identity.public_key)?,
        servers.clone(),
    ));
    restate::register(&admin, &endpoint_url).await?;

    // The clients of creates still queued by a previous daemon are gone: end their waits.
    let dropped = ingress
        .clear_queue(&opts.node)
        .await
        .context("clearing the queue of a previous daemon")?;
    if dropped > 0 {
        tracing::info!(
            dropped,
            "ended the waits of a previous daemon's queued creates"
        );
    }

    // Recovery before anyone can call: live sessions re-adopted or failed, orphans reaped.
    let mut sup = supervisor::Supervisor::new(
        Arc::clone(&host) as Arc<dyn crate::host::WorkerHost>,
        opts.node.clone(),
        ingress.clone(),
        Arc::clone(&sockets),
        paths.quarantine_dir(),
    );
    let done = sup
        .reconcile()
        .await
        .context("reconciling sessions with Restate state")?;
    tracing::info!(
        adopted = done.adopted,
        failed = done.failed,
        reaped = done.reaped,
        quarantined = done.quarantined,
        "reconciled"
    );
    // The warm pool launches up to --warm (or stops what a larger one left).
    ingress
        .warm_fill(&opts.node)
        .await
        .context("starting the warm pool")?;
    let sup_stop = started.background.clone();
    let sup_task = tokio::spawn(sup.run(exit_rx, sup_stop.clone()));
    // The browsers' downloads stop when a session's files pass --files-quota.
    let quota_task = tokio::spawn(host.watch_downloads(sup_stop.clone()));

    // Sessions and slots that killed invocations left half done are repaired.
    let sweep_task = tokio::spawn(sweep::run(
        ingress.clone(),
        opts.node.clone(),
        opts.retention_ms,
        sup_stop.clone(),
    ));

    // The TCP API (bound first of all) and the Unix socket.
    let api_port = tcp.local_addr()?.port();
    let api_base = format!("http://{}:{api_port}", url_host(opts.bind));
    let socket = bind_socket(&paths)?;
    let status = DaemonStatus {
        pid: std::process::id(),
        version: crate::VERSION.to_string(),
        protocol: PROTOCOL_VERSION,
        api_url: api_base.clone(),
        socket: paths.socket().display().to_string(),
        node: opts.node.clone(),
        max_sessions: opts.max_sessions,
        max_queue: opts.max_queue,
        queue_timeout_ms: opts.queue_timeout_ms,
        warm: opts.warm,
        chromium: chromium.display().to_string(),
        home: paths.display_home(),
        restate: RestateStatus {
            admin_url: admin.to_string(),
            ingress_url: ingress_addr.to_string(),
            identity_key: identity.public_key.clone(),
            pid: None,
            supervised: supervised.is_some(),
            restarts: 0,
            endpoint_url,
        },
        pool: None,
    };
    let state = Arc::new(AppState {
        ingress: ingress.clone(),
        host: Arc::clone(&host) as Arc<dyn crate::host::WorkerHost>,
        sockets,
        api_base: api_base.clone(),
        control: ControlState {
            base: status,
            restate_pid: supervised.as_ref().map(|s| Arc::clone(&s.pid)),
            restate_restarts: supervised.as_ref().map(|s| Arc::clone(&s.restarts)),
            shutdown: shutdown.clone(),
            keep_sessions: AtomicBool::new(false),
        },
        api_key: opts.api_key.clone(),
        http: reqwest::Client::new(),
        default_timeout_ms: opts.default_timeout_ms,
        bind: opts.bind,
    });
    let tcp_task = tokio::spawn(serve(
        tcp.tap_io(nodelay),
        api::tcp_router(state.clone()),
        servers.clone(),
    ));
    let unix_task = tokio::spawn(serve(
        socket,
        api::unix_router(state.clone()),
        servers.clone(),
    ));
    let info = lifecycle::DaemonInfo {
        pid: std::process::id(),
        api_url: api_base.clone(),
        socket: paths.socket().display().to_string(),
    };
    lifecycle::write_info(&paths, &info)?;
    tracing::info!(api = %api_base, socket = %info.socket, "bro daemon ready");

    shutdown.cancelled().await;
    // Bounded whatever state the sessions are in: the releases through Restate get
    // RELEASE_BUDGET, then every browser left is stopped directly by its pid.
    let keep = state.control.keep_sessions.load(Ordering::SeqCst);
    if !keep {
        // Launches under way give up now (their sessions end `failed`); none starts.
        started.stopping.cancel();
        let released = tokio::time::timeout(RELEASE_BUDGET, async {
            release_open_sessions(&ingress).await;
            stop_warm_pool(&ingress, &opts.node).await;
        })
        .await;
        if released.is_err() {
            tracing::warn!(
                "releasing the sessions through Restate took longer than {RELEASE_BUDGET:?}; \
                 stopping their browsers directly"
            );
        }
    }
    servers.cancel();
    sup_stop.cancel();
    join_within(
        vec![
            tcp_task, unix_task, sup_task, sdk_task, quota_task, sweep_task,
        ],
        TASKS_BUDGET,
    )
    .await;
    if !keep {
        let left = started.stop_browsers(true).await;
        if left > 0 {
            tracing::warn!(
                browser_dirs = left,
                "stopped the browsers Restate had not released"
            );
        }
    }
    started.stop_restate().await;
    let _ = std::fs::remove_file(paths.socket());
    let _ = std::fs::remove_file(paths.daemon_info());
    tracing::info!("bro daemon stopped");
    Ok(())
}

/// Waits for `tasks` up to `budget`, then aborts those still running.
async fn join_within(tasks: Vec<tokio::task::JoinHandle<()>>, budget: Duration) {
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    if tokio::time::timeout(budget, futures_util::future::join_all(tasks))
        .await
        .is_err()
    {
        tracing::warn!("servers still busy after {budget:?}; closing them");
        for a in aborts {
            a.abort();
        }
    }
}

/// Releases every open session, so a stopped daemon leaves no browser behind.
async fn release_open_sessions(ingress: &Ingress) {
    let open = match ingress.list().await {
        Ok(records) => records
            .into_iter()
            .filter(|r| !r.status.is_final())
            .collect::<Vec<_>>(),
        Err(err) => {
            tracing::error!(%err, "cannot list sessions to release them");
            return;
        }
    };
    let releases = open
        .iter()
        .filter(|r| r.status != SessionStatus::Releasing)
        .map(|r| ingress.release(&r.id));
    for result in futures_util::future::join_all(releases).await {
        if let Err(err) = result {
            tracing::error!(%err, "releasing a session at shutdown failed");
        }
    }
}

/// Stops the warm browsers, once the launches under way have landed in the pool (up to 15 s),
/// so none is left running without a record.
async fn stop_warm_pool(ingress: &Ingress, node: &str) {
    for _ in 0..150 {
        match ingress.warm(node).await {
            Ok(w) if w.filling.is_empty() => break,
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            Err(err) => {
                tracing::error!(%err, "cannot read the warm pool to stop it");
                return;
            }
        }
    }
    match ingress.warm_drain(node).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(stopped = n, "stopped the warm browsers"),
        Err(err) => tracing::error!(%err, "stopping the warm browsers failed"),
    }
}

/// Serves the SDK endpoint: every path goes to the Restate endpoint.
async fn serve_sdk(
    listener: TcpListener,
    endpoint: restate_sdk::endpoint::Endpoint,
    stop: CancellationToken,
) {
    let app = Router::new().fallback(move |req: Request| {
        let endpoint = endpoint.clone();
        async move { endpoint.handle(req).map(axum::body::Body::new) }
    });
    serve(listener.tap_io(nodelay), app, stop).await;
}

fn nodelay(tcp: &mut tokio::net::TcpStream) {
    // Without it every Restate call pays ~44 ms of Nagle + delayed ACK (restate-notes §4.2).
    let _ = tcp.set_nodelay(true);
}

async fn serve<L>(listener: L, app: Router, stop: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(err) = result {
        tracing::error!(%err, "server stopped with an error");
    }
}

/// Binds the control socket, 0600 inside the 0700 runtime dir, replacing a stale one.
fn bind_socket(paths: &Paths) -> Result<UnixListener> {
    let path = paths.socket();
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The host part of the advertised URL: a wildcard bind is reached on loopback.
fn url_host(bind: IpAddr) -> String {
    match bind {
        IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".into(),
        IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".into(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}
