//! The restate-server beside the daemon: found, configured, started, watched and restarted
//! with backoff, and stopped on shutdown. With `--restate-admin-url/--restate-ingress-url`
//! an existing Restate is used and nothing is supervised.
//!
//! A restate-server outlives a daemon killed with SIGKILL (it is not in the daemon's process
//! group and gets no death signal); the next daemon adopts it when it answers, so in-flight
//! invocations keep going.
//!
//! Alone, restate-server listens on Unix sockets only. As one node of a cluster
//! ([`ClusterNode`]) it also listens on TCP for its fabric (node to node) on `<bind>`, while
//! admin and ingress stay on Unix sockets, reached by this daemon alone.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::daemon::identity::Identity;
use crate::orchestrator::ingress::RestateAddr;
use crate::paths::Paths;
use crate::settings::ClusterSettings;
use crate::wait::{Poll, wait_until};
use crate::worker::chromium::{executable, search_path};
use crate::worker::process;

/// The restate-server version bro is built and tested against (install.sh installs it).
pub const RESTATE_VERSION: &str = "1.7.12";

/// restate-server's jemalloc settings, unless the user's environment has its own: one arena,
/// and freed pages go back to the system at once, not after further allocations (which an
/// idle server does not make). Measured here: 4–7 MiB less idle RSS.
const MALLOC_CONF: &str = "narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0";

/// How long a starting restate-server may take to answer `/health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a cluster node's restate-server may take to answer: its admin API answers only
/// once the cluster is provisioned, which needs the first member up, so the first start of
/// a cluster waits for its nodes to be brought up, one machine after another.
const CLUSTER_HEALTH_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a cluster node waiting for its cluster says so in the log.
const CLUSTER_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How long registering the SDK endpoint is retried (the server may still be opening its
/// admin API, or the endpoint its listener; a registration's discovery call can itself take
/// seconds on a busy machine).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(20);

/// Why Restate could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum RestateError {
    #[error(
        "restate-server not found ({0}). Run ./install.sh, or pass --restate-server PATH / set BRO_RESTATE_SERVER"
    )]
    NotFound(String),
    #[error("restate-server did not become healthy within {0:?}; see {1}")]
    Unhealthy(Duration, PathBuf),
    #[error(
        "the Restate cluster did not form within {0:?}: the first member, {1}, provisions it \
         and must be running (its bro daemon started); see {2}"
    )]
    ClusterUnformed(Duration, IpAddr, PathBuf),
    #[error("restate-server exited during startup ({0}); see {1}")]
    Exited(String, PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("registering bro's services with Restate failed: {0}")]
    Register(String),
    #[error(
        "restate-server's socket path {0} is longer than Unix sockets allow ({MAX_SOCKET_PATH} bytes); use a shorter BRO_HOME or data dir"
    )]
    SocketPath(PathBuf),
    #[error("bro's request-identity key: {0}")]
    Identity(#[from] crate::daemon::identity::IdentityError),
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> RestateError {
    move |source| RestateError::Io { what, source }
}

/// Finds restate-server: the configured path (`--restate-server`, `BRO_RESTATE_SERVER` or
/// `config.toml`, as the settings resolved it), then bro's install dir, then `PATH`.
pub fn find_binary(flag: Option<&Path>, paths: &Paths) -> Result<PathBuf, RestateError> {
    if let Some(path) = flag {
        return executable(path).ok_or_else(|| RestateError::NotFound(path.display().to_string()));
    }
    let candidates = paths.restate_install_candidates();
    candidates
        .iter()
        .find_map(|p| executable(p))
        .or_else(|| search_path("restate-server"))
        .ok_or_else(|| {
            RestateError::NotFound(format!("looked in {} and PATH", candidates[0].display()))
        })
}

/// The loopback port of the SDK endpoint, kept across restarts in `ports.json` so Restate
/// keeps calling it at the URL it was registered with. (restate-server itself listens on Unix
/// sockets only; fields of older files, its TCP ports, are ignored.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub sdk: u16,
}

impl Ports {
    /// The port from `ports.json` when it is still free, else a free one.
    pub fn load_or_pick(dir: &Path) -> Self {
        let saved: Option<Ports> = std::fs::read(dir.join("ports.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match saved {
            Some(p) if p.sdk != 0 && port_free(p.sdk) => p,
            _ => Ports { sdk: free_port() },
        }
    }

    /// Saves the port for the next start.
    pub fn save(&self, dir: &Path) -> Result<(), RestateError> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        std::fs::write(dir.join("ports.json"), bytes).map_err(io_err("write ports.json"))
    }
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The longest path a Unix socket can have (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The Unix sockets restate-server opens for admin and ingress: in its node dir,
/// `<base-dir>/<node-name>/`, inside bro's 0700 restate dir.
#[derive(Debug, Clone)]
pub struct Sockets {
    pub admin: PathBuf,
    pub ingress: PathBuf,
}

impl Sockets {
    fn of(node_dir: &Path) -> Result<Sockets, RestateError> {
        let sockets = Sockets {
            admin: node_dir.join("admin.sock"),
            ingress: node_dir.join("ingress.sock"),
        };
        // fabric.sock is the longest name of the three.
        let longest = node_dir.join("fabric.sock");
        if longest.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(RestateError::SocketPath(longest));
        }
        Ok(sockets)
    }
}

/// restate-server's node name on a single machine: its data lives in
/// `<base-dir>/<node-name>/`, so it is fixed (it defaults to the hostname, which would strand
/// the data when that changes). A cluster node takes bro's node name instead.
const NODE_NAME: &str = "bro";

/// A restate-server that is one node of a Restate cluster: bro's `[cluster]` settings with
/// this node's name and address.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    /// bro's node name, which is also restate-server's (unique in the cluster).
    pub node: String,
    /// This node's address, one of the members: its fabric listens there.
    pub bind: IpAddr,
    pub cluster: ClusterSettings,
    /// The fabric's mutual TLS ([`crate::daemon::fabric_tls`]); `None` leaves the fabric in
    /// plain HTTP (unit tests only).
    pub tls: Option<crate::daemon::fabric_tls::FabricTls>,
}

impl ClusterNode {
    /// A member's fabric address, `https://<ip>:<fabric_port>/` (`http://` without TLS).
    fn fabric_url(&self, ip: IpAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!(
            "{scheme}://{}/",
            SocketAddr::new(ip, self.cluster.fabric_port)
        )
    }

    /// How many copies of each log record and partition Restate keeps: 2 with 3 or more
    /// members, so any one node may fail; else 1, since 2 copies on a 2-node cluster would
    /// stop all writes when either node stops (it adds no tolerance, it removes some), and
    /// a 1-node cluster has no second node to copy to.
    fn replication(&self) -> u8 {
        if self.cluster.members.len() >= 3 {
            2
        } else {
            1
        }
    }
}

/// Where a restate-server keeps its data and sockets, and the names it runs under.
#[derive(Debug, Clone)]
struct Layout {
    /// `base-dir`: `<restate dir>/data` alone, `<restate dir>/cluster` as a cluster node (so
    /// a single machine's Restate, its own one-node cluster, is never mixed into another).
    base_dir: PathBuf,
    node_name: String,
    cluster_name: String,
}

impl Layout {
    fn new(restate_dir: &Path, cluster: Option<&ClusterNode>) -> Layout {
        match cluster {
            None => Layout {
                base_dir: restate_dir.join("data"),
                node_name: NODE_NAME.to_string(),
                cluster_name: cluster_name(restate_dir),
            },
            Some(c) => Layout {
                base_dir: restate_dir.join("cluster"),
                node_name: c.node.clone(),
                cluster_name: c.cluster.name.clone(),
            },
        }
    }

    /// `<base-dir>/<node-name>/`: the node's data and its sockets.
    fn node_dir(&self) -> PathBuf {
        self.base_dir.join(&self.node_name)
    }
}

/// The config file bro writes for restate-server: no TCP port (`--listen-mode unix` on the
/// command line), calls to the SDK endpoint signed with bro's key, telemetry off, a fixed
/// node name and a small footprint.
pub fn config_toml(base_dir: &Path, cluster: &str, identity_key: &Path) -> String {
    render(base_dir, NODE_NAME, cluster, identity_key, None)
}

/// The config file of a cluster node: named after bro's node, its fabric on
/// `<bind>:<fabric_port>` over TCP (and on its Unix socket: `listen-mode = "all"`) while
/// admin and ingress keep their Unix sockets only, the members' fabrics as the replicated
/// metadata servers, replicated logs, and the first member alone allowed to provision the
/// cluster.
///
/// Exactly one node can ever provision, so the cluster is provisioned once, without a
/// manual step, whatever order the nodes start in. That node must keep its data dir: a
/// first member started afresh would provision a second, different cluster.
pub fn cluster_config_toml(base_dir: &Path, node: &ClusterNode, identity_key: &Path) -> String {
    render(
        base_dir,
        &node.node,
        &node.cluster.name,
        identity_key,
        Some(node),
    )
}

/// The config file, alone or as a cluster node; alone, the cluster parts are empty.
fn render(
    base_dir: &Path,
    node_name: &str,
    cluster: &str,
    identity_key: &Path,
    node: Option<&ClusterNode>,
) -> String {
    let (cluster_keys, cluster_tables) = node.map(cluster_parts).unwrap_or_default();
    format!(
        r#"# Written by bro at every start; edits are overwritten.
node-name = "{node_name}"
cluster-name = "{cluster}"
base-dir = {base}
{cluster_keys}disable-telemetry = true
log-filter = "{LOG_FILTER}"
log-disable-ansi-codes = true
default-num-partitions = 2
rocksdb-total-memory-size = "128 MiB"
# bro keeps its own records in state; Restate's copies of finished calls go after an hour.
default-journal-retention = "1h"
default-idempotency-retention = "1h"

# Retries end: an invocation failing every attempt is killed (never paused, which would hold
# its Session or Pool for good). bro's services declare the same policy themselves.
# The services declare the same policy (orchestrator::retry_policy); this covers the rest.
[default-retry-policy]
initial-interval = "{initial_ms}ms"
exponentiation-factor = 2.0
max-interval = "{max_ms}ms"
max-attempts = {attempts}
on-max-attempts = "kill"

[admin.query-engine]
memory-size = "64 MiB"

[worker.invoker]
# Every call to bro's SDK endpoint is signed; the endpoint refuses unsigned ones.
request-identity-private-key-pem-file = {key}
{cluster_tables}"#,
        base = toml_string(base_dir),
        key = toml_string(identity_key),
        initial_ms = crate::orchestrator::RETRY_INITIAL_INTERVAL.as_millis(),
        max_ms = crate::orchestrator::RETRY_MAX_INTERVAL.as_millis(),
        attempts = crate::orchestrator::INVOCATION_MAX_ATTEMPTS,
    )
}

/// restate-server's log filter.
const LOG_FILTER: &str = "warn,restate=info";

/// [`LOG_FILTER`] when restate-server exports spans: its exporter logs an error for every
/// batch a receiver did not take (every few seconds while it is down), so its lines are off.
/// bro's own exporter says once that the receiver is down, and once that it is back.
const TRACED_LOG_FILTER: &str = "warn,restate=info,opentelemetry_sdk=off,opentelemetry_otlp=off";

/// restate-server's config exporting its spans to `endpoint` (bro's `otlp_endpoint`): an
/// `http://` URL is OTLP/gRPC to restate-server as to bro, so both go to one receiver, and
/// restate-server continues the trace of the `traceparent` bro sends to its ingress. A
/// top-level key, so it goes first, before any table; and its exporter's errors are not
/// logged ([`TRACED_LOG_FILTER`]).
pub fn with_tracing(config: String, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(endpoint) => format!(
            "tracing-endpoint = {}\n{}",
            toml::Value::String(endpoint.to_string()),
            config.replacen(
                &format!("log-filter = \"{LOG_FILTER}\"\n"),
                &format!("log-filter = \"{TRACED_LOG_FILTER}\"\n"),
                1
            )
        ),
        None => config,
    }
}

/// A cluster node's top-level keys and its tables, for [`render`].
fn cluster_parts(node: &ClusterNode) -> (String, String) {
    let fabric = SocketAddr::new(node.bind, node.cluster.fabric_port);
    let addresses: Vec<String> = node
        .cluster
        .members
        .iter()
        .map(|ip| toml::Value::String(node.fabric_url(*ip)).to_string())
        .collect();
    let keys = format!(
        r#"# One node of a cluster. Only the fabric (node to node) listens on TCP; admin and
# ingress keep their Unix sockets (below), reached by this node's daemon alone. The fabric
# listens on a Unix socket too, for this node's daemon to read restate-server's metrics.
listen-mode = "all"
bind-address = "{fabric}"
advertised-address = {advertised}
# Only the first member provisions the cluster, so it is provisioned exactly once.
auto-provision = {provisions}
# Copies of each log record and partition: 2 from 3 members on (one node may fail), else 1.
default-replication = {replication}
"#,
        provisions = node.cluster.provisions(node.bind),
        replication = node.replication(),
        advertised = toml::Value::String(node.fabric_url(node.bind)),
    );
    let tables = format!(
        r#"
[admin]
listen-mode = "unix"

[ingress]
listen-mode = "unix"

[metadata-client]
type = "replicated"
addresses = [{addresses}]

[bifrost]
default-provider = "replicated"
{tls}"#,
        addresses = addresses.join(", "),
        tls = node.tls.as_ref().map(tls_table).unwrap_or_default(),
    );
    (keys, tables)
}

/// The fabric's `[tls]`: TLS required both ways; any certificate the cluster's CA signed
/// is a member (the CA's key comes from the cluster secret).
fn tls_table(tls: &crate::daemon::fabric_tls::FabricTls) -> String {
    format!(
        r#"
# Mutual TLS between the nodes, with certificates from a CA derived from the cluster secret.
[tls]
mode = "require"
cert-file = {cert}
key-file = {key}
ca-files = [{ca}]
require-client-auth = true
allowed-subject-names = ["*"]
"#,
        cert = toml_string(&tls.cert_file),
        key = toml_string(&tls.key_file),
        ca = toml_string(&tls.ca_file),
    )
}

/// A path as a TOML string, quoted and escaped.
fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// Pid and start time of the supervised restate-server, for adoption by the next daemon.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct PidFile {
    pid: u32,
    start_time: u64,
}

/// A supervised restate-server.
pub struct Supervised {
    pub sockets: Sockets,
    /// Current pid (changes on restart).
    pub pid: Arc<AtomicU32>,
    pub restarts: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

struct Runner {
    binary: PathBuf,
    dir: PathBuf,
    layout: Layout,
    /// This node's part in a cluster; `None` alone.
    cluster: Option<ClusterNode>,
    log: PathBuf,
    admin: RestateAddr,
    http: reqwest::Client,
}

/// Starts (or adopts) restate-server for `paths`, alone or as the cluster node `cluster`, and
/// supervises it until [`Supervised::stop`]. Returns once its admin API answers on its
/// socket (as a cluster node: once the cluster is provisioned).
pub async fn start(
    binary: PathBuf,
    paths: &Paths,
    identity: &Identity,
    cluster: Option<ClusterNode>,
    tracing_endpoint: Option<&str>,
) -> Result<Supervised, RestateError> {
    let dir = paths.restate_dir();
    crate::paths::create_private_dir(&dir).map_err(io_err("create restate dir"))?;
    let layout = Layout::new(&dir, cluster.as_ref());
    let sockets = Sockets::of(&layout.node_dir())?;
    let admin = RestateAddr::Unix(sockets.admin.clone());
    let http = admin.client();
    let config = match &cluster {
        None => config_toml(
            &layout.base_dir,
            &layout.cluster_name,
            &identity.private_key_file,
        ),
        Some(node) => cluster_config_toml(&layout.base_dir, node, &identity.private_key_file),
    };
    let config = with_tracing(config, tracing_endpoint);
    std::fs::write(dir.join("restate.toml"), config).map_err(io_err("write restate.toml"))?;
    let runner = Runner {
        binary,
        log: paths.restate_log(),
        admin,
        dir: dir.clone(),
        layout,
        cluster,
        http,
    };
    let (child, pf) = match adoptable(&runner).await {
        // A cluster node's server is tied to the daemon that spawned it (it dies with it);
        // one still running is the end of a previous one: stopped, and a new one spawned.
        Some(pf) if runner.cluster.is_some() => {
            tracing::info!(pid = pf.pid, "stopping a previous daemon's restate-server");
            terminate(pf).await;
            let (child, pf) = runner.spawn().await?;
            (Some(child), pf)
        }
        Some(pf) => {
            tracing::info!(pid = pf.pid, "adopting the running restate-server");
            (None, pf)
        }
        None => {
            let (child, pf) = runner.spawn().await?;
            (Some(child), pf)
        }
    };

    let pid = Arc::new(AtomicU32::new(0));
    pid.store(pf.pid, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let restarts = Arc::new(AtomicU32::new(0));
    let task = tokio::spawn(supervise(
        runner,
        child,
        pf,
        Arc::clone(&pid),
        Arc::clone(&restarts),
        stop.clone(),
    ));
    Ok(Supervised {
        sockets,
        pid,
        restarts,
        task,
        stop,
    })
}

impl Supervised {
    /// Stops restate-server (SIGTERM, then SIGKILL after 10 s) and the supervision.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A restate-server left by a previous daemon that still runs and answers.
async fn adoptable(runner: &Runner) -> Option<PidFile> {
    let file = std::fs::read(runner.dir.join("restate.pid")).ok()?;
    let pf: PidFile = serde_json::from_slice(&file).ok()?;
    if !process::is_alive(pf.pid, pf.start_time) {
        return None;
    }
    if is_ours(&runner.http, &runner.admin, &runner.layout.cluster_name).await {
        return Some(pf);
    }
    // Alive but not answering on its socket (hung, or an older bro's server on TCP ports):
    // stop it so a fresh one can take the data dir.
    terminate(pf).await;
    None
}

impl Runner {
    async fn spawn(&self) -> Result<(Child, PidFile), RestateError> {
        crate::paths::rotate_log(
            &self.log,
            crate::paths::LOG_MAX_BYTES,
            crate::paths::LOG_KEEP,
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io_err("open restate-server.log"))?;
        let log_err = log.try_clone().map_err(io_err("open restate-server.log"))?;
        // restate-server leaves `invoker-*` dirs in its TMPDIR at every start; keep them in its
        // own dir (emptied here: the previous server is gone) rather than the user's /tmp.
        // A killed server leaves its sockets behind; binding over them would fail.
        let node_dir = self.layout.node_dir();
        for name in ["admin.sock", "ingress.sock", "fabric.sock"] {
            let _ = std::fs::remove_file(node_dir.join(name));
        }
        let tmp = self.dir.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_err("create restate tmp dir"))?;
        let mut command = match (&self.cluster, search_path("setpriv")) {
            // A cluster node's restate-server dies with its daemon: Restate calls the SDK
            // endpoint at this machine's loopback address from whichever node leads a
            // partition, so a server left running without its daemon would take
            // leadership it cannot serve and stall those partitions. Dead, its partitions
            // move to the other nodes within seconds (about 4 s measured). (A single
            // machine's server outlives a killed daemon instead, to be adopted.)
            (Some(_), Some(setpriv)) => {
                let mut command = Command::new(setpriv);
                command
                    .args(["--pdeathsig", "TERM", "--"])
                    .arg(&self.binary);
                command
            }
            (Some(_), None) => {
                tracing::warn!(
                    "setpriv (util-linux) not found: this node's restate-server will outlive \
                     a killed daemon and stall the partitions it leads until the daemon returns"
                );
                Command::new(&self.binary)
            }
            (None, _) => Command::new(&self.binary),
        };
        // The API key is the daemon's alone (an auto-started daemon may have it in its
        // environment).
        command.env("TMPDIR", &tmp).env_remove("BRO_API_KEY");
        if std::env::var_os("MALLOC_CONF").is_none() {
            command.env("MALLOC_CONF", MALLOC_CONF);
        }
        command
            .arg("--config-file")
            .arg(self.dir.join("restate.toml"))
            .arg("--no-logo");
        if self.cluster.is_none() {
            // Unix sockets only: no TCP port that other users, or web pages through a
            // browser, could reach. The sockets are inside bro's 0700 restate dir. (A
            // cluster node's file sets the listen mode per service; this flag would override
            // the file's.)
            command.args(["--listen-mode", "unix"]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            // Killed if dropped before `supervise` holds it: a start given up while it
            // waits for the server (a stop asked for meanwhile) leaves no server behind. (A
            // daemon killed with SIGKILL drops nothing: its server outlives it, as meant.)
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err("spawn restate-server"))?;
        let pid = child.id().unwrap_or_default();
        let pf = PidFile {
            pid,
            start_time: process::start_time(pid).unwrap_or_default(),
        };
        let _ = std::fs::write(
            self.dir.join("restate.pid"),
            serde_json::to_vec(&pf).unwrap_or_default(),
        );

        let (limit, every) = match self.cluster {
            None => (HEALTH_TIMEOUT, Duration::from_millis(20)),
            Some(_) => (CLUSTER_HEALTH_TIMEOUT, Duration::from_millis(250)),
        };
        let poll = Poll::new(limit, every);
        let began = Instant::now();
        let mut said = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(RestateError::Exited(status.to_string(), self.log.clone()));
            }
            // Before the cluster is provisioned, admin accepts and then hangs; `is_ours`
            // gives each probe its own timeout.
            if is_ours(&self.http, &self.admin, &self.layout.cluster_name).await {
                return Ok((child, pf));
            }
            if let Some(node) = &self.cluster
                && said.elapsed() >= CLUSTER_PROGRESS_EVERY
            {
                said = Instant::now();
                let answering = fabric_answers(node).await;
                tracing::info!(
                    waited_s = began.elapsed().as_secs(),
                    "waiting for the cluster: {} provisions it; {answering} of {} members \
                     answer on their fabric port {}",
                    node.cluster
                        .members
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    node.cluster.members.len(),
                    node.cluster.fabric_port,
                );
            }
            if !poll.again().await {
                terminate(pf).await;
                return Err(match &self.cluster {
                    Some(node) => RestateError::ClusterUnformed(
                        limit,
                        node.cluster.members.first().copied().unwrap_or(node.bind),
                        self.log.clone(),
                    ),
                    None => RestateError::Unhealthy(limit, self.log.clone()),
                });
            }
        }
    }
}

/// How many of the cluster's members accept a TCP connection on their fabric port (each
/// given half a second), for the progress lines of a node waiting for its cluster.
async fn fabric_answers(node: &ClusterNode) -> usize {
    let port = node.cluster.fabric_port;
    let tries = node.cluster.members.iter().map(|ip| async move {
        let connect = tokio::net::TcpStream::connect(SocketAddr::new(*ip, port));
        matches!(
            tokio::time::timeout(Duration::from_millis(500), connect).await,
            Ok(Ok(_))
        )
    });
    futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|answered| *answered)
        .count()
}

/// True when the restate-server answering at `admin` is healthy and is this home's: its
/// cluster name says so (a server of another home must never be taken for ours).
async fn is_ours(http: &reqwest::Client, admin: &RestateAddr, cluster: &str) -> bool {
    #[derive(Deserialize)]
    struct ClusterHealth {
        cluster_name: String,
    }
    let url = admin.url("/cluster-health");
    let Ok(resp) = http.get(url).timeout(Duration::from_secs(2)).send().await else {
        return false;
    };
    if !resp.status().is_success() {
        return false;
    }
    resp.json::<ClusterHealth>()
        .await
        .is_ok_and(|h| h.cluster_name == cluster)
}

/// The cluster name of this home's restate-server, derived from its directory.
pub fn cluster_name(restate_dir: &Path) -> String {
    let hash = crate::paths::path_hash(restate_dir);
    format!("bro-{hash:016x}")
}

/// Watches restate-server and restarts it with backoff until `stop` fires, then stops it.
async fn supervise(
    runner: Runner,
    mut child: Option<Child>,
    mut pf: PidFile,
    pid: Arc<AtomicU32>,
    restarts: Arc<AtomicU32>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = Instant::now();
        tokio::select! {
            _ = stop.cancelled() => {
                terminate(pf).await;
                if let Some(mut c) = child { let _ = c.wait().await; }
                return;
            }
            status = wait_exit(&mut child, pf) => {
                tracing::warn!(pid = pf.pid, %status, "restate-server exited; restarting");
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(250);
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
            match runner.spawn().await {
                Ok((c, new_pf)) => {
                    child = Some(c);
                    pf = new_pf;
                    pid.store(pf.pid, Ordering::SeqCst);
                    restarts.fetch_add(1, Ordering::SeqCst);
                    tracing::info!(pid = pf.pid, "restate-server restarted");
                    break;
                }
                Err(err) => tracing::error!(%err, "restarting restate-server failed"),
            }
        }
    }
}

/// Resolves when the watched restate-server exits: by `wait` for our child, by polling for
/// an adopted one.
async fn wait_exit(child: &mut Option<Child>, pf: PidFile) -> String {
    match child {
        Some(c) => match c.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        },
        None => {
            while process::is_alive(pf.pid, pf.start_time) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            "adopted process gone".into()
        }
    }
}

/// SIGTERM, up to 10 s for a clean exit, then SIGKILL.
async fn terminate(pf: PidFile) {
    let gone = || !process::is_alive(pf.pid, pf.start_time);
    if gone() {
        return;
    }
    process::signal(pf.pid, Signal::SIGTERM);
    if !crate::wait::wait_for(Duration::from_secs(10), process::EXIT_POLL, gone).await {
        process::signal_group(pf.pid, Signal::SIGKILL);
        crate::wait::wait_for(Duration::from_secs(2), process::EXIT_POLL, gone).await;
    }
}

/// Registers the SDK endpoint at `endpoint_url` (always with `force`, which re-discovers the
/// services when they changed; see restate-notes §4.4).
pub async fn register(admin: &RestateAddr, endpoint_url: &str) -> Result<(), RestateError> {
    let http = admin.client();
    let body = serde_json::json!({ "uri": endpoint_url, "force": true });
    let (http, body, every) = (&http, &body, Duration::from_millis(100));
    let tried = wait_until(REGISTER_TIMEOUT, every, || async move {
        match http
            .post(admin.url("/deployments"))
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => ControlFlow::Break(()),
            Ok(r) => ControlFlow::Continue(format!(
                "{}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => ControlFlow::Continue(e.to_string()),
        }
    })
    .await;
    let ControlFlow::Continue(mut last) = tried else {
        return Ok(());
    };
    // The endpoint refusing discovery means the Restate does not sign with bro's key (an
    // external Restate configured without it, or with another).
    if last.contains("401") || last.contains("identity") {
        last.push_str(
            "; that Restate does not sign its calls with bro's key: set its \
             [worker.invoker] request-identity-private-key-pem-file to bro's identity.pem",
        );
    }
    Err(RestateError::Register(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_opens_no_port_and_signs_calls() {
        let toml = config_toml(Path::new("/d \"q\""), "bro-x", Path::new("/k/identity.pem"));
        let parsed: toml::Table = toml.parse().unwrap();
        assert_eq!(parsed["base-dir"].as_str(), Some("/d \"q\""));
        assert_eq!(
            parsed["worker"]["invoker"]["request-identity-private-key-pem-file"].as_str(),
            Some("/k/identity.pem")
        );
        let retry = &parsed["default-retry-policy"];
        assert_eq!(retry["max-attempts"].as_integer(), Some(30));
        assert_eq!(retry["on-max-attempts"].as_str(), Some("kill"));
        assert_eq!(retry["initial-interval"].as_str(), Some("250ms"));
        assert_eq!(retry["max-interval"].as_str(), Some("10000ms"));
        assert!(!toml.contains("bind-address"), "{toml}");
        assert!(toml.contains("disable-telemetry = true"));
        assert!(toml.contains("node-name = \"bro\""));
        assert!(toml.contains("cluster-name = \"bro-x\""));
        assert!(toml.contains("default-num-partitions = 2"));
    }

    #[test]
    fn a_taken_sdk_port_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap().port();
        Ports { sdk: taken }.save(tmp.path()).unwrap();
        assert_ne!(Ports::load_or_pick(tmp.path()).sdk, taken);
        drop(held);
        assert_eq!(Ports::load_or_pick(tmp.path()).sdk, taken);
    }

    #[test]
    fn a_socket_path_too_long_is_refused_with_a_fix() {
        let long = PathBuf::from(format!("/{}", "x".repeat(100)));
        let err = Sockets::of(&Layout::new(&long, None).node_dir()).unwrap_err();
        assert!(err.to_string().contains("shorter BRO_HOME"), "{err}");
        let layout = Layout::new(Path::new("/tmp/bro/data/restate"), None);
        let sockets = Sockets::of(&layout.node_dir()).unwrap();
        assert_eq!(
            sockets.admin,
            Path::new("/tmp/bro/data/restate/data/bro/admin.sock")
        );
    }

    /// The endpoint is a top-level key of restate-server's config, the rest unchanged but
    /// the log filter, which keeps out the exporter's error per failed batch.
    #[test]
    fn tracing_goes_to_bros_endpoint_as_a_top_level_key() {
        let plain = config_toml(Path::new("/d"), "bro-x", Path::new("/k/identity.pem"));
        assert_eq!(with_tracing(plain.clone(), None), plain);
        let traced = with_tracing(plain.clone(), Some("http://127.0.0.1:4317"));
        let parsed: toml::Table = traced.parse().unwrap();
        assert_eq!(
            parsed["tracing-endpoint"].as_str(),
            Some("http://127.0.0.1:4317")
        );
        assert_eq!(
            parsed["log-filter"].as_str(),
            Some("warn,restate=info,opentelemetry_sdk=off,opentelemetry_otlp=off")
        );
        assert!(traced.ends_with(&plain.replace(LOG_FILTER, TRACED_LOG_FILTER)));
    }

    /// The single machine's file, byte for byte as before clusters existed.
    #[test]
    fn the_single_machine_config_is_unchanged() {
        let toml = config_toml(Path::new("/d"), "bro-x", Path::new("/k/identity.pem"));
        let want = r#"# Written by bro at every start; edits are overwritten.
node-name = "bro"
cluster-name = "bro-x"
base-dir = "/d"
disable-telemetry = true
log-filter = "warn,restate=info"
log-disable-ansi-codes = true
default-num-partitions = 2
rocksdb-total-memory-size = "128 MiB"
# bro keeps its own records in state; Restate's copies of finished calls go after an hour.
default-journal-retention = "1h"
default-idempotency-retention = "1h"

# Retries end: an invocation failing every attempt is killed (never paused, which would hold
# its Session or Pool for good). bro's services declare the same policy themselves.
# The services declare the same policy (orchestrator::retry_policy); this covers the rest.
[default-retry-policy]
initial-interval = "250ms"
exponentiation-factor = 2.0
max-interval = "10000ms"
max-attempts = 30
on-max-attempts = "kill"

[admin.query-engine]
memory-size = "64 MiB"

[worker.invoker]
# Every call to bro's SDK endpoint is signed; the endpoint refuses unsigned ones.
request-identity-private-key-pem-file = "/k/identity.pem"
"#;
        assert_eq!(toml, want);
    }

    #[test]
    fn a_cluster_fabric_requires_mutual_tls() {
        let mut n1 = node(
            "n1",
            [10, 0, 0, 1],
            &[[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]],
        );
        n1.tls = Some(crate::daemon::fabric_tls::FabricTls {
            cert_file: "/r/fabric/node.pem".into(),
            key_file: "/r/fabric/node.key".into(),
            ca_file: "/r/fabric/ca.pem".into(),
        });
        let parsed: toml::Table = cluster_config_toml(Path::new("/d"), &n1, Path::new("/k"))
            .parse()
            .unwrap();
        assert_eq!(
            parsed["advertised-address"].as_str(),
            Some("https://10.0.0.1:5122/")
        );
        let addresses = parsed["metadata-client"]["addresses"].as_array().unwrap();
        assert!(
            addresses
                .iter()
                .all(|a| a.as_str().unwrap().starts_with("https://"))
        );
        let tls = &parsed["tls"];
        assert_eq!(tls["mode"].as_str(), Some("require"));
        assert_eq!(tls["require-client-auth"].as_bool(), Some(true));
        assert_eq!(tls["ca-files"][0].as_str(), Some("/r/fabric/ca.pem"));
    }

    fn node(node: &str, bind: [u8; 4], members: &[[u8; 4]]) -> ClusterNode {
        ClusterNode {
            node: node.into(),
            bind: IpAddr::from(bind),
            cluster: ClusterSettings {
                name: "bro".into(),
                members: members.iter().map(|m| IpAddr::from(*m)).collect(),
                secret_file: "/etc/bro/cluster.key".into(),
                fabric_port: 5122,
                sdk_port: 9081,
            },
            tls: None,
        }
    }

    /// A cluster node: fabric on TCP at its bind, admin and ingress on Unix sockets, the
    /// members' fabrics as metadata servers, replicated logs; the first member alone
    /// provisions.
    #[test]
    fn a_cluster_node_config_opens_only_the_fabric() {
        let members = [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]];
        let n2 = node("n2", [10, 0, 0, 2], &members);
        let toml = cluster_config_toml(Path::new("/d"), &n2, Path::new("/k/c.pem"));
        let parsed: toml::Table = toml.parse().unwrap();
        assert_eq!(parsed["node-name"].as_str(), Some("n2"));
        assert_eq!(parsed["cluster-name"].as_str(), Some("bro"));
        assert_eq!(parsed["listen-mode"].as_str(), Some("all"));
        assert_eq!(parsed["bind-address"].as_str(), Some("10.0.0.2:5122"));
        assert_eq!(
            parsed["advertised-address"].as_str(),
            Some("http://10.0.0.2:5122/")
        );
        assert_eq!(parsed["auto-provision"].as_bool(), Some(false));
        assert_eq!(parsed["default-replication"].as_integer(), Some(2));
        assert_eq!(parsed["default-num-partitions"].as_integer(), Some(2));
        assert_eq!(parsed["admin"]["listen-mode"].as_str(), Some("unix"));
        assert_eq!(
            parsed["admin"]["query-engine"]["memory-size"].as_str(),
            Some("64 MiB")
        );
        assert_eq!(parsed["ingress"]["listen-mode"].as_str(), Some("unix"));
        assert_eq!(
            parsed["metadata-client"]["type"].as_str(),
            Some("replicated")
        );
        let addresses: Vec<&str> = parsed["metadata-client"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert_eq!(
            addresses,
            [
                "http://10.0.0.1:5122/",
                "http://10.0.0.2:5122/",
                "http://10.0.0.3:5122/"
            ]
        );
        assert_eq!(
            parsed["bifrost"]["default-provider"].as_str(),
            Some("replicated")
        );
        assert_eq!(
            parsed["worker"]["invoker"]["request-identity-private-key-pem-file"].as_str(),
            Some("/k/c.pem")
        );
        let n1 = node("n1", [10, 0, 0, 1], &members);
        let parsed: toml::Table = cluster_config_toml(Path::new("/d"), &n1, Path::new("/k"))
            .parse()
            .unwrap();
        assert_eq!(parsed["auto-provision"].as_bool(), Some(true));
        // Fewer than 3 members keep one copy.
        let pair = node("n1", [10, 0, 0, 1], &members[..2]);
        let parsed: toml::Table = cluster_config_toml(Path::new("/d"), &pair, Path::new("/k"))
            .parse()
            .unwrap();
        assert_eq!(parsed["default-replication"].as_integer(), Some(1));
    }

    /// A cluster node's data and sockets are under `cluster/<node>/`, apart from a single
    /// machine's `data/bro/`; IPv6 addresses are bracketed.
    #[test]
    fn a_cluster_node_lives_under_its_own_name() {
        let n1 = node("n1", [10, 0, 0, 1], &[[10, 0, 0, 1]]);
        let layout = Layout::new(Path::new("/r"), Some(&n1));
        assert_eq!(layout.node_dir(), Path::new("/r/cluster/n1"));
        assert_eq!(layout.cluster_name, "bro");
        assert_eq!(n1.replication(), 1);
        assert_eq!(n1.fabric_url("::1".parse().unwrap()), "http://[::1]:5122/");
    }

    #[test]
    fn missing_binary_names_install_sh() {
        let paths = Paths::under(PathBuf::from("/nonexistent"));
        let err = find_binary(Some(Path::new("/nonexistent/restate-server")), &paths).unwrap_err();
        assert!(err.to_string().contains("./install.sh"), "{err}");
    }
}
