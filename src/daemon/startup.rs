//! The phases of a start, in order: preflight (the API port bound first of all), Restate,
//! the orchestrator, recovery, the API. Each returns the handle the shutdown needs and
//! records in [`Started`] what a failed start must stop. Also the one place the daemon's
//! shared parts are built: [`worker_host`], [`deps`], [`supervisor`], [`app_state`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::identity::Identity;
use super::serve::{bind_reuseport, bind_socket, nodelay, serve, serve_sdk, url_host};
use super::started::{RestateHandle, Started};
use super::supervisor::Supervisor;
use super::{Stop, lifecycle, restate, sweep};
use crate::api::replay::{Asset, PlayerAssets};
use crate::api::{self, AppState, LimitDefaults, RecordingDefaults, control::ControlState};
use crate::artifacts::ArtifactStore;
use crate::cdp_proxy::Sockets;
use crate::host::{HostRouter, OneNode, WorkerEvent, WorkerHost};
use crate::node::secret::ClusterSecret;
use crate::orchestrator::ingress::{Ingress, RestateAddr};
use crate::orchestrator::pool::{MemoryRoom, PoolConfig};
use crate::orchestrator::{self, Deps};
use crate::paths::Paths;
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::cluster::NodeBeat;
use crate::protocol::control::{DaemonStatus, LimitsStatus, RestateStatus};
use crate::settings::{Settings, millis};
use crate::worker::agent::Agents;
use crate::worker::recording::RecordingStore;
use crate::worker::{LocalWorkerHost, chromium, limits};

/// What the checks before anything starts leave: the browser to launch, the token that
/// stops the daemon, and the API port, bound first so a port in use fails the start at once.
pub(super) struct Preflight {
    pub(super) chromium: PathBuf,
    pub(super) shutdown: CancellationToken,
    pub(super) tcp: TcpListener,
}

impl Preflight {
    /// The base URL of the TCP API, `http://<bind>:<port>`.
    pub(super) fn api_url(&self, settings: &Settings) -> Result<String> {
        let port = self.tcp.local_addr()?.port();
        Ok(format!("http://{}:{port}", url_host(settings.bind)))
    }
}

/// Refuses settings bro cannot serve safely, finds Chromium, listens for the stop signals (or
/// takes the caller's token) and binds the API port. Nothing is started yet, so nothing is to undo.
pub(super) async fn preflight(settings: &Settings, stop: Stop) -> Result<Preflight> {
    if !settings.bind.is_loopback() && settings.api_key.is_none() {
        bail!(
            "refusing to serve on {} without an API key: anyone who reaches it could drive the \
             browsers; pass --api-key (or set BRO_API_KEY), or bind 127.0.0.1",
            settings.bind
        );
    }
    if let Some(key) = &settings.api_key {
        api::auth::check_key(key.expose()).map_err(anyhow::Error::msg)?;
    }
    let chromium = chromium::find(settings.chromium.as_deref())?;
    let shutdown = match stop {
        Stop::Signals => {
            let token = CancellationToken::new();
            lifecycle::on_signals(token.clone())?;
            token
        }
        Stop::Token(token) => token,
    };
    let tcp = TcpListener::bind((settings.bind, settings.port))
        .await
        .with_context(|| {
            format!(
                "port {} on {} is in use; pass --port to pick another",
                settings.port, settings.bind
            )
        })?;
    Ok(Preflight {
        chromium,
        shutdown,
        tcp,
    })
}

/// The Restate the daemon uses, supervised or existing.
pub(super) struct RestatePhase {
    pub(super) identity: Identity,
    pub(super) admin: RestateAddr,
    pub(super) ingress_addr: RestateAddr,
    pub(super) ingress: Ingress,
    /// The supervised restate-server's pid and restarts (`None` for an existing Restate).
    pub(super) supervised: Option<RestateHandle>,
    /// The SDK endpoint's port: saved in `ports.json` alone, `[cluster] sdk_port` in a
    /// cluster.
    pub(super) ports: restate::Ports,
    /// The cluster secret, in a cluster.
    pub(super) secret: Option<ClusterSecret>,
}

/// What the cluster secret derives the request-identity key from: every node's
/// restate-server signs with that one key, so any node's daemon accepts any node's calls.
const REQUEST_IDENTITY_LABEL: &str = "restate request identity";

/// Starts restate-server (or adopts an existing Restate). Either way it must sign its calls
/// to the SDK endpoint with bro's key (an external one is configured with `identity.pem`;
/// in a cluster, the key derived from the cluster secret, `cluster-identity.pem`).
/// From here on a failed start stops the restate-server it started ([`Started::hold`]).
pub(super) async fn restate(
    paths: &Paths,
    settings: &Settings,
    started: &mut Started,
) -> Result<RestatePhase> {
    crate::paths::create_private_dir(&paths.restate_dir())?;
    let secret = match &settings.cluster {
        Some(c) => Some(ClusterSecret::load(&c.secret_file).map_err(|e| {
            anyhow::anyhow!("this node is in a cluster ([cluster] in config.toml) but {e}")
        })?),
        None => None,
    };
    let identity = match &secret {
        Some(s) => Identity::derived(&paths.restate_dir(), &s.derive(REQUEST_IDENTITY_LABEL))?,
        None => Identity::load_or_create(&paths.restate_dir())?,
    };
    let cluster_node = match (&settings.cluster, &secret) {
        (Some(c), Some(secret)) => {
            // The fabric's mutual TLS, from the secret: only nodes that hold it get in.
            let tls = super::fabric_tls::write(
                &paths.restate_dir().join("fabric"),
                secret,
                &c.name,
                &settings.node,
                settings.bind,
            )
            .map_err(anyhow::Error::msg)?;
            Some(restate::ClusterNode {
                node: settings.node.clone(),
                bind: settings.bind,
                cluster: c.clone(),
                tls: Some(tls),
            })
        }
        _ => None,
    };
    let (supervised, admin, ingress_addr) =
        match (&settings.restate_admin_url, &settings.restate_ingress_url) {
            (Some(admin), Some(ingress)) => (
                None,
                RestateAddr::parse(admin).map_err(anyhow::Error::msg)?,
                RestateAddr::parse(ingress).map_err(anyhow::Error::msg)?,
            ),
            (None, None) => {
                let binary = restate::find_binary(settings.restate_server.as_deref(), paths)?;
                let sup = restate::start(
                    binary,
                    paths,
                    &identity,
                    cluster_node,
                    settings.otlp_endpoint.as_deref(),
                )
                .await?;
                let admin = RestateAddr::Unix(sup.sockets.admin.clone());
                let ingress = RestateAddr::Unix(sup.sockets.ingress.clone());
                (Some(sup), admin, ingress)
            }
            _ => bail!(
                "--restate-admin-url and --restate-ingress-url go together; pass both or neither"
            ),
        };
    let supervised = started.hold(supervised);
    let ports = match &settings.cluster {
        // The same port on every node, and the single machine's saved one left alone.
        Some(c) => restate::Ports { sdk: c.sdk_port },
        None => {
            let ports = restate::Ports::load_or_pick(&paths.restate_dir());
            ports.save(&paths.restate_dir())?;
            ports
        }
    };
    let ingress = Ingress::new(ingress_addr.clone(), admin.clone()).map_err(anyhow::Error::msg)?;
    Ok(RestatePhase {
        identity,
        admin,
        ingress_addr,
        ingress,
        supervised,
        ports,
        secret,
    })
}

/// The orchestrator's parts the later phases share.
pub(super) struct OrchestratorPhase {
    pub(super) host: Arc<LocalWorkerHost>,
    /// This node's host and, in a cluster, the other nodes' remote hosts.
    pub(super) hosts: Arc<dyn HostRouter>,
    /// The cluster parts, when the settings have `[cluster]`.
    pub(super) cluster: Option<Cluster>,
    pub(super) sockets: Arc<Sockets>,
    pub(super) endpoint_url: String,
    pub(super) sdk_task: JoinHandle<()>,
}

/// Serves the orchestrator's SDK endpoint (h2c, TCP_NODELAY) and registers it with Restate,
/// at every start. A failed start stops the browsers launched from here on. Also returns the
/// browsers' exits, for the supervisor that [`recovery`] starts.
pub(super) async fn orchestrator(
    paths: &Paths,
    settings: &Settings,
    chromium: PathBuf,
    restate: &RestatePhase,
    started: &mut Started,
) -> Result<(OrchestratorPhase, mpsc::UnboundedReceiver<WorkerEvent>)> {
    let (exit_tx, exits) = mpsc::unbounded_channel();
    let host = worker_host(paths, settings, chromium, exit_tx)?;
    // A stop ends the launches under way through their own error path (browser killed,
    // dir removed), before the services give up on them.
    host.stop_launches_on(started.stopping.clone());
    started.host = Some(Arc::clone(&host));
    let sockets = Arc::new(Sockets::default());
    let cluster = Cluster::new(
        settings,
        restate.secret.clone(),
        &restate.ingress,
        Arc::clone(&host) as Arc<dyn WorkerHost>,
    );
    let hosts: Arc<dyn HostRouter> = match &cluster {
        Some(c) => Arc::clone(&c.hosts) as Arc<dyn HostRouter>,
        None => Arc::new(OneNode {
            node: settings.node.clone(),
            host: Arc::clone(&host) as Arc<dyn WorkerHost>,
        }),
    };
    let deps = deps(settings, &hosts, &sockets, started);
    let bound = if settings.cluster.is_some() {
        // The same loopback URL is registered by every node, so whichever node leads a
        // partition calls its own daemon (co-location: no load balancer, no single point of
        // failure). SO_REUSEPORT lets nodes sharing one machine (tests) bind it all, the
        // kernel spreading calls over them; any daemon can run any handler.
        bind_reuseport(restate.ports.sdk)
    } else {
        TcpListener::bind(("127.0.0.1", restate.ports.sdk))
            .await
            .map_err(anyhow::Error::from)
    };
    let sdk_listener = bound.with_context(|| {
        format!(
            "binding the SDK endpoint on 127.0.0.1:{}",
            restate.ports.sdk
        )
    })?;
    let endpoint_url = format!("http://127.0.0.1:{}/", sdk_listener.local_addr()?.port());
    let sdk_task = tokio::spawn(serve_sdk(
        sdk_listener,
        orchestrator::endpoint(deps, &restate.identity.public_key)?,
        started.servers.clone(),
    ));
    restate::register(&restate.admin, &endpoint_url).await?;
    let phase = OrchestratorPhase {
        host,
        hosts,
        cluster,
        sockets,
        endpoint_url,
        sdk_task,
    };
    Ok((phase, exits))
}

/// Recovery before anyone can call: a previous daemon's queued creates are ended, live
/// sessions re-adopted or failed, orphans reaped, the warm pool filled; then the background
/// tasks start (supervisor, download quota, sweep). Returns them, for the shutdown to join.
pub(super) async fn recovery(
    paths: &Paths,
    settings: &Settings,
    restate: &RestatePhase,
    orch: &OrchestratorPhase,
    exits: mpsc::UnboundedReceiver<WorkerEvent>,
    started: &Started,
    api_url: &str,
) -> Result<Vec<JoinHandle<()>>> {
    let ingress = &restate.ingress;
    // The clients of creates still queued by a previous daemon are gone: end their waits
    // (before the bounds below hand out slots). The first call through Restate: in a
    // cluster it waits for the partitions.
    let dropped = when_cluster_answers(settings, || ingress.clear_queue(&settings.node))
        .await
        .context("clearing the queue of a previous daemon")?;
    if dropped > 0 {
        tracing::info!(
            dropped,
            "ended the waits of a previous daemon's queued creates"
        );
    }
    // This node's bounds, whichever daemon serves its `Pool`.
    let bounds = PoolConfig {
        capacity: settings.max_sessions,
        max_queue: settings.max_queue,
        queue_timeout_ms: millis(settings.queue_timeout),
    };
    when_cluster_answers(settings, || ingress.configure_pool(&settings.node, bounds))
        .await
        .context("setting this node's capacity")?;
    // Bounds set, free memory next: until its first measurement the `Pool` has no memory cap,
    // and in a cluster other nodes may place creates here already (from this node's last
    // beats before it restarted).
    let floor_task = match settings.min_free_memory {
        Some(floor) => Some(memory_floor(settings, ingress, &orch.host, floor, started).await?),
        None => None,
    };
    let mut sup = supervisor(
        paths,
        settings,
        Arc::clone(&orch.host) as Arc<dyn WorkerHost>,
        ingress,
        Arc::clone(&orch.sockets),
    );
    let done = reconcile(&mut sup, settings)
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
    when_cluster_answers(settings, || {
        ingress.warm_configure(&settings.node, settings.warm)
    })
    .await
    .context("starting the warm pool")?;
    let stop = started.background.clone();
    let sup_task = tokio::spawn(sup.run(exits, stop.clone()));
    // The browsers' downloads stop when a session's files pass --files-quota.
    let quota_task = tokio::spawn(orch.host.watch_downloads(stop.clone()));
    // Recordings go once their session ended more than `retention` ago.
    let recordings_task = tokio::spawn(orch.host.keep_recordings(settings.retention, stop.clone()));
    // Sessions and slots that killed invocations left half done are repaired.
    let sweep_task = tokio::spawn(sweep::run(
        ingress.clone(),
        settings.node.clone(),
        millis(settings.retention),
        stop,
    ));
    let mut tasks = vec![sup_task, quota_task, recordings_task, sweep_task];
    tasks.extend(floor_task);
    if let Some(cluster) = &orch.cluster {
        // The first beat before the API serves: the other nodes place creates here from
        // now on, and this node knows the others when its first create comes.
        let beat = node_beat(settings, api_url, &cluster.settings);
        when_cluster_answers(settings, || ingress.beat(beat.clone()))
            .await
            .context("the first heartbeat to the cluster")?;
        if let Err(err) = cluster.view.refresh().await {
            tracing::warn!(error = %err, "reading the cluster's state failed");
        }
        tasks.push(tokio::spawn(super::cluster::run(
            ingress.clone(),
            Arc::clone(&cluster.view),
            beat,
            started.background.clone(),
        )));
        tasks.push(tokio::spawn(super::cluster::reissue_fabric_certificates(
            paths.restate_dir().join("fabric"),
            cluster.secret.clone(),
            cluster.settings.clone(),
            settings.node.clone(),
            settings.bind,
            started.background.clone(),
        )));
    }
    Ok(tasks)
}

/// The free memory floor: the room measured and sent once before the API serves (so no
/// create slips past it), then kept up to date by a task.
async fn memory_floor(
    settings: &Settings,
    ingress: &Ingress,
    host: &Arc<LocalWorkerHost>,
    floor: u64,
    started: &Started,
) -> Result<JoinHandle<()>> {
    let cost = settings
        .max_session_memory
        .unwrap_or(super::memory_floor::DEFAULT_SESSION_COST);
    let measuring = Arc::clone(host);
    let measured =
        tokio::task::spawn_blocking(move || super::memory_floor::measure(&measuring, floor, cost))
            .await
            .ok()
            .flatten();
    if let Some((measured, free)) = measured {
        if let MemoryRoom::Serving { room, serving } = &measured {
            tracing::info!(
                free_bytes = free,
                floor_bytes = floor,
                room,
                serving = serving.len(),
                "free memory floor"
            );
        }
        when_cluster_answers(settings, || {
            ingress.pool_memory_room(&settings.node, Some(measured.clone()))
        })
        .await
        .context("setting this node's free memory room")?;
    }
    Ok(tokio::spawn(super::memory_floor::run(
        ingress.clone(),
        settings.node.clone(),
        floor,
        cost,
        Arc::clone(host),
        started.background.clone(),
    )))
}

/// What this node tells the cluster about itself.
fn node_beat(
    settings: &Settings,
    api_url: &str,
    cluster: &crate::settings::ClusterSettings,
) -> NodeBeat {
    NodeBeat {
        name: settings.node.clone(),
        api: api_url.to_string(),
        fabric: format!(
            "https://{}:{}/",
            url_host(settings.bind),
            cluster.fabric_port
        ),
        capacity: settings.max_sessions,
        version: crate::VERSION.to_string(),
    }
}

/// How long a cluster node's first call may wait for the partitions to run (they need a
/// second log server when the cluster keeps 2 copies).
const CLUSTER_FIRST_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// `call` through Restate. Alone, one try. In a cluster, tried again for up to
/// [`CLUSTER_FIRST_CALL_TIMEOUT`]: the partitions run once a second member is up (each is
/// replicated on two nodes), and a node may be the first one started.
async fn when_cluster_answers<T, F, Fut>(settings: &Settings, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::orchestrator::ingress::IngressError>>,
{
    let Some(cluster) = &settings.cluster else {
        return Ok(call().await?);
    };
    let began = std::time::Instant::now();
    loop {
        match call().await {
            Ok(answer) => return Ok(answer),
            Err(err) if is_transient(&err) && began.elapsed() < CLUSTER_FIRST_CALL_TIMEOUT => {
                tracing::info!(
                    waited_s = began.elapsed().as_secs(),
                    %err,
                    "waiting for the cluster's partitions: they run once a second member of \
                     {} is up",
                    cluster.members.len()
                );
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Whether waiting may cure `err`: Restate not answering, or failing a call it had no
/// leader for; not a refusal of what was sent.
fn is_transient(err: &crate::orchestrator::ingress::IngressError) -> bool {
    use crate::orchestrator::ingress::IngressError;
    matches!(
        err,
        IngressError::Unreachable { .. } | IngressError::Failed(_)
    )
}

/// How long a cluster node's reconciliation is tried again while the cluster's query
/// engine is not ready.
const CLUSTER_RECONCILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The supervisor's reconciliation. Alone, one try. In a cluster, tried again for up to
/// [`CLUSTER_RECONCILE_TIMEOUT`]: a node that rejoins its cluster gets "No such scanner"
/// from its queries for some seconds (measured: about 6 s after its restate-server answers),
/// longer than a query's own retries.
async fn reconcile(
    sup: &mut Supervisor,
    settings: &Settings,
) -> Result<super::supervisor::Reconciled> {
    if settings.cluster.is_none() {
        return Ok(sup.reconcile().await?);
    }
    let began = std::time::Instant::now();
    loop {
        match sup.reconcile().await {
            Ok(done) => return Ok(done),
            Err(err) if began.elapsed() < CLUSTER_RECONCILE_TIMEOUT => {
                tracing::info!(
                    waited_s = began.elapsed().as_secs(),
                    %err,
                    "waiting for the cluster's query engine to reconcile sessions"
                );
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// The API as served: its state (the shutdown reads `keep_sessions` there) and its tasks.
pub(super) struct ApiPhase {
    pub(super) state: Arc<AppState>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

/// Serves the TCP API (on the port bound in [`preflight`]) and the Unix socket, then
/// publishes `daemon.json`.
pub(super) fn api(
    paths: &Paths,
    settings: &Settings,
    pre: Preflight,
    restate: &RestatePhase,
    orch: &OrchestratorPhase,
    started: &Started,
) -> Result<ApiPhase> {
    let api_port = pre.tcp.local_addr()?.port();
    let api_base = format!("http://{}:{api_port}", url_host(settings.bind));
    let socket = bind_socket(paths)?;
    let status = DaemonStatus {
        pid: std::process::id(),
        version: crate::VERSION.to_string(),
        protocol: PROTOCOL_VERSION,
        api_url: api_base.clone(),
        socket: paths.socket().display().to_string(),
        node: settings.node.clone(),
        max_sessions: settings.max_sessions,
        max_queue: settings.max_queue,
        queue_timeout_ms: millis(settings.queue_timeout),
        warm: settings.warm,
        chromium: pre.chromium.display().to_string(),
        home: paths.display_home(),
        restate: RestateStatus {
            admin_url: restate.admin.to_string(),
            ingress_url: restate.ingress_addr.to_string(),
            identity_key: restate.identity.public_key.clone(),
            pid: None,
            supervised: restate.supervised.is_some(),
            restarts: 0,
            endpoint_url: orch.endpoint_url.clone(),
        },
        pool: None,
        limits: Some(limits_status(&orch.host.limits(), settings)),
    };
    // Screenshots and PDFs handed out by URL, kept as long as ended sessions.
    let artifacts = Arc::new(
        ArtifactStore::open(
            paths.artifacts_dir(),
            settings.artifacts_quota,
            settings.retention,
        )
        .with_context(|| format!("opening {}", paths.artifacts_dir().display()))?,
    );
    let sweep_task = tokio::spawn(crate::artifacts::sweep_until(
        Arc::clone(&artifacts),
        started.background.clone(),
    ));
    let state = app_state(
        settings,
        status,
        api_base.clone(),
        restate,
        orch,
        pre.shutdown,
        Served {
            rrweb_player: rrweb_player(paths),
            artifacts,
            recording: recording_defaults(paths, settings),
        },
    )?;
    let servers = &started.servers;
    let mut tcp_router = api::tcp_router(state.clone());
    if let Some(cluster) = &orch.cluster {
        // The other nodes' calls to this node's browsers, signed with the cluster secret
        // (not the API key: the routes are outside the steel API's layers).
        tcp_router = tcp_router.merge(crate::node::serve::routes(
            Arc::clone(&orch.host) as Arc<dyn WorkerHost>,
            Arc::clone(&cluster.verifier),
        ));
    }
    let tcp_task = tokio::spawn(serve(pre.tcp.tap_io(nodelay), tcp_router, servers.clone()));
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
    lifecycle::write_info(paths, &info)?;
    tracing::info!(api = %api_base, socket = %info.socket, "bro daemon ready");
    Ok(ApiPhase {
        state,
        tasks: vec![tcp_task, unix_task, sweep_task],
    })
}

/// The host that launches and stops this machine's browsers, enforcing the session limits
/// in the mode chosen here (a forced cgroup mode this machine does not allow fails the start).
fn worker_host(
    paths: &Paths,
    settings: &Settings,
    chromium: PathBuf,
    exits: mpsc::UnboundedSender<WorkerEvent>,
) -> Result<Arc<LocalWorkerHost>> {
    let name = limits::parent_name(&paths.sessions_dir());
    let detected = limits::detect(&limits::Sys::here(), settings.limits_mode, &name, true)
        .map_err(|e| anyhow::anyhow!("session limits: {e}"))?;
    tracing::info!(mode = detected.mode.label(), why = %detected.why, "session limits");
    let host = local_host(paths, settings, chromium, exits);
    let limits = limits::Limits::new(detected, settings.max_session_memory, settings.cpu_share);
    if let Err(err) = limits.record_parents(&paths.cgroup_record()) {
        tracing::warn!(%err, "could not record bro's cgroups");
    }
    host.set_limits(Arc::new(limits));
    Ok(host)
}

/// How this node enforces session limits, for its status.
fn limits_status(limits: &limits::Limits, settings: &Settings) -> LimitsStatus {
    LimitsStatus {
        mode: limits.mode().label().to_string(),
        why: limits.detected().why.clone(),
        forced: limits.detected().forced,
        max_session_memory: settings.max_session_memory,
        cpu_share: settings.cpu_share,
        min_free_memory: settings.min_free_memory,
        browser_nice: Some(settings.browser_nice),
    }
}

/// The session limits the create route applies, as this node enforces them.
fn limit_defaults(limits: &limits::Limits, settings: &Settings) -> LimitDefaults {
    LimitDefaults {
        max_memory: settings.max_session_memory,
        cpu_share: settings.cpu_share,
        memory: limits.mode() != limits::Mode::Off,
        cpu: limits.mode().shares_cpu(),
    }
}

fn local_host(
    paths: &Paths,
    settings: &Settings,
    chromium: PathBuf,
    exits: mpsc::UnboundedSender<WorkerEvent>,
) -> Arc<LocalWorkerHost> {
    let store = RecordingStore::new(
        paths.recordings_dir(),
        settings.record_max_bytes,
        settings.recordings_quota,
    );
    let host = LocalWorkerHost::new(
        chromium,
        settings.chromium_flags.clone(),
        paths.sessions_dir(),
        paths.quarantine_dir(),
        settings.files_quota,
        Agents::new(store, paths.rrweb_dir()),
        exits,
    );
    host.set_browser_nice(settings.browser_nice);
    host
}

/// Whether sessions record by default, and whether they can (rrweb installed).
fn recording_defaults(paths: &Paths, settings: &Settings) -> RecordingDefaults {
    let installed = paths.rrweb_dir().is_some();
    if settings.record && !installed {
        tracing::warn!(
            "record is on but rrweb is not installed: sessions do not record by default; \
             run ./install.sh to install it"
        );
    }
    RecordingDefaults {
        record: settings.record && installed,
        installed,
    }
}

/// What the Restate services run with (times in ms, as they count).
fn deps(
    settings: &Settings,
    hosts: &Arc<dyn HostRouter>,
    sockets: &Arc<Sockets>,
    started: &Started,
) -> Arc<Deps> {
    Arc::new(Deps {
        hosts: Arc::clone(hosts),
        node: settings.node.clone(),
        max_sessions: settings.max_sessions,
        max_queue: settings.max_queue,
        queue_timeout_ms: millis(settings.queue_timeout),
        warm: settings.warm,
        retention_ms: millis(settings.retention),
        events: Arc::clone(sockets) as Arc<dyn orchestrator::SessionEvents>,
        stopping: started.stopping.clone(),
    })
}

/// The worker supervisor: reconciliation at start, then liveness and reaping.
fn supervisor(
    paths: &Paths,
    settings: &Settings,
    host: Arc<dyn WorkerHost>,
    ingress: &Ingress,
    sockets: Arc<Sockets>,
) -> Supervisor {
    Supervisor::new(
        host,
        settings.node.clone(),
        ingress.clone(),
        sockets,
        paths.quarantine_dir(),
    )
}

/// What the API serves besides sessions: the replay page's player, the artifact store and
/// whether sessions record by default.
struct Served {
    rrweb_player: Option<PlayerAssets>,
    artifacts: Arc<ArtifactStore>,
    recording: RecordingDefaults,
}

/// The state every API handler shares (times in ms, as the handlers count).
fn app_state(
    settings: &Settings,
    status: DaemonStatus,
    api_base: String,
    restate: &RestatePhase,
    orch: &OrchestratorPhase,
    shutdown: CancellationToken,
    served: Served,
) -> Result<Arc<AppState>> {
    let node_http = crate::node::remote::node_client()
        .map_err(|e| anyhow::anyhow!("the HTTP client for other nodes: {e}"))?;
    Ok(Arc::new(AppState {
        ingress: restate.ingress.clone(),
        hosts: Arc::clone(&orch.hosts),
        node: settings.node.clone(),
        cluster: orch.cluster.as_ref().map(|c| Arc::clone(&c.view)),
        node_auth: orch.cluster.as_ref().map(|c| Arc::clone(&c.verifier)),
        sockets: Arc::clone(&orch.sockets),
        api_base,
        control: ControlState {
            base: status,
            restate_pid: restate.supervised.as_ref().map(|s| Arc::clone(&s.pid)),
            restate_restarts: restate.supervised.as_ref().map(|s| Arc::clone(&s.restarts)),
            shutdown,
            keep_sessions: AtomicBool::new(false),
        },
        api_key: settings.api_key(),
        http: reqwest::Client::new(),
        node_http,
        default_timeout_ms: millis(settings.default_timeout),
        recording: served.recording,
        limits: limit_defaults(&orch.host.limits(), settings),
        bind: settings.bind,
        rrweb_player: served.rrweb_player,
        artifacts: served.artifacts,
    }))
}

/// rrweb-player's files from the install, for the replay page; `None` (and a warning) when
/// rrweb is not installed or cannot be read, so the daemon runs without replays.
fn rrweb_player(paths: &Paths) -> Option<PlayerAssets> {
    let Some(dir) = paths.rrweb_dir() else {
        tracing::warn!(
            looked_in = ?paths.rrweb_install_candidates(),
            "rrweb is not installed: recordings cannot be replayed (run install.sh)"
        );
        return None;
    };
    let read = |file: &str| match std::fs::read(dir.join(file)) {
        Ok(bytes) => Some(Asset::new(bytes)),
        Err(e) => {
            tracing::warn!(file = %dir.join(file).display(), error = %e, "cannot read rrweb-player");
            None
        }
    };
    Some(PlayerAssets {
        js: read(crate::paths::RRWEB_PLAYER_JS)?,
        css: read(crate::paths::RRWEB_PLAYER_CSS)?,
    })
}
