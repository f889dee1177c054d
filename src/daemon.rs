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

pub mod ingress;
pub mod lifecycle;
pub mod restate;
pub mod supervisor;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::Request;
use axum::serve::ListenerExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, control::ControlState};
use crate::cdp_proxy::Sockets;
use crate::orchestrator::{self, Deps};
use crate::paths::Paths;
use crate::protocol::control::{DaemonStatus, RestateStatus};
use crate::protocol::{PROTOCOL_VERSION, session::SessionStatus};
use crate::worker::{LocalWorkerHost, chromium};
use ingress::Ingress;

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

/// Runs the daemon until SIGTERM/SIGINT or `POST /bro/v1/shutdown`.
pub async fn run(paths: Paths, opts: DaemonOptions) -> Result<()> {
    paths.create_all().context("creating bro's directories")?;
    let _lock = lifecycle::lock(&paths)?;
    if !opts.bind.is_loopback() && opts.api_key.is_none() {
        bail!(
            "refusing to serve on {} without an API key: anyone who reaches it could drive the \
             browsers; pass --api-key (or set BRO_API_KEY), or bind 127.0.0.1",
            opts.bind
        );
    }
    let chromium = chromium::find(opts.chromium.as_deref())?;
    let shutdown = CancellationToken::new();
    lifecycle::on_signals(shutdown.clone())?;

    // Restate: supervised, or an existing one.
    let (supervised, ports) = match (&opts.restate_admin_url, &opts.restate_ingress_url) {
        (Some(_), Some(_)) => {
            std::fs::create_dir_all(paths.restate_dir())?;
            (
                None,
                restate::Ports::load_or_pick(&paths.restate_dir(), true),
            )
        }
        (None, None) => {
            let binary = restate::find_binary(opts.restate_server.as_deref(), &paths)?;
            let (sup, ports) = restate::start(binary, &paths).await?;
            (Some(sup), ports)
        }
        _ => {
            bail!("--restate-admin-url and --restate-ingress-url go together; pass both or neither")
        }
    };
    ports.save(&paths.restate_dir())?;
    let (admin_url, ingress_url) = match &supervised {
        Some(s) => (s.admin_url.clone(), s.ingress_url.clone()),
        None => (
            opts.restate_admin_url.clone().unwrap_or_default(),
            opts.restate_ingress_url.clone().unwrap_or_default(),
        ),
    };
    let ingress = Ingress::new(ingress_url.clone(), admin_url.clone());

    // The orchestrator's SDK endpoint (h2c, TCP_NODELAY), registered at every start.
    let (exit_tx, exit_rx) = mpsc::unbounded_channel();
    let host = LocalWorkerHost::new(
        chromium.clone(),
        opts.chromium_flags.clone(),
        paths.sessions_dir(),
        exit_tx,
    );
    let sockets = Arc::new(Sockets::default());
    let deps = Arc::new(Deps {
        host: host.clone(),
        node: opts.node.clone(),
        max_sessions: opts.max_sessions,
        max_queue: opts.max_queue,
        queue_timeout_ms: opts.queue_timeout_ms,
        warm: opts.warm,
        retention_ms: opts.retention_ms,
        sockets: Arc::clone(&sockets),
    });
    let sdk_listener = TcpListener::bind(("127.0.0.1", ports.sdk))
        .await
        .with_context(|| format!("binding the SDK endpoint on 127.0.0.1:{}", ports.sdk))?;
    let endpoint_url = format!("http://127.0.0.1:{}/", sdk_listener.local_addr()?.port());
    let servers = CancellationToken::new();
    let sdk_task = tokio::spawn(serve_sdk(
        sdk_listener,
        orchestrator::endpoint(deps),
        servers.clone(),
    ));
    restate::register(&admin_url, &endpoint_url).await?;

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
        host,
        opts.node.clone(),
        ingress.clone(),
        Arc::clone(&sockets),
    );
    let done = sup
        .reconcile()
        .await
        .context("reconciling sessions with Restate state")?;
    tracing::info!(
        adopted = done.adopted,
        failed = done.failed,
        reaped = done.reaped,
        "reconciled"
    );
    // The warm pool launches up to --warm (or stops what a larger one left).
    ingress
        .warm_fill(&opts.node)
        .await
        .context("starting the warm pool")?;
    let sup_stop = CancellationToken::new();
    let sup_task = tokio::spawn(sup.run(exit_rx, sup_stop.clone()));

    // The TCP API and the Unix socket.
    let tcp = TcpListener::bind((opts.bind, opts.port))
        .await
        .with_context(|| {
            format!(
                "port {} on {} is in use; pass --port to pick another",
                opts.port, opts.bind
            )
        })?;
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
            admin_url,
            ingress_url,
            pid: None,
            supervised: supervised.is_some(),
            restarts: 0,
            endpoint_url,
        },
        pool: None,
    };
    let state = Arc::new(AppState {
        ingress: ingress.clone(),
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
    if !state.control.keep_sessions.load(Ordering::SeqCst) {
        release_open_sessions(&ingress).await;
        stop_warm_pool(&ingress, &opts.node).await;
    }
    servers.cancel();
    sup_stop.cancel();
    let _ = tokio::join!(tcp_task, unix_task, sup_task, sdk_task);
    if let Some(sup) = supervised {
        sup.stop().await;
    }
    let _ = std::fs::remove_file(paths.socket());
    let _ = std::fs::remove_file(paths.daemon_info());
    tracing::info!("bro daemon stopped");
    Ok(())
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
