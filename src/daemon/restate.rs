//! The restate-server beside the daemon: found, configured, started, watched and restarted
//! with backoff, and stopped on shutdown. With `--restate-admin-url/--restate-ingress-url`
//! an existing Restate is used and nothing is supervised.
//!
//! A restate-server outlives a daemon killed with SIGKILL (it is not in the daemon's process
//! group and gets no death signal); the next daemon adopts it when it answers, so in-flight
//! invocations keep going.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::paths::Paths;
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

/// Why Restate could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum RestateError {
    #[error(
        "restate-server not found ({0}). Run ./install.sh, or pass --restate-server PATH / set BRO_RESTATE_SERVER"
    )]
    NotFound(String),
    #[error("restate-server did not become healthy within {0:?}; see {1}")]
    Unhealthy(Duration, PathBuf),
    #[error("restate-server exited during startup ({0}); see {1}")]
    Exited(String, PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("registering bro's services with Restate failed: {0}")]
    Register(String),
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> RestateError {
    move |source| RestateError::Io { what, source }
}

/// Finds restate-server: flag, then `BRO_RESTATE_SERVER`, then bro's install dir, then `PATH`.
pub fn find_binary(flag: Option<&Path>, paths: &Paths) -> Result<PathBuf, RestateError> {
    if let Some(path) = flag {
        return executable(path).ok_or_else(|| RestateError::NotFound(path.display().to_string()));
    }
    if let Some(env) = std::env::var_os("BRO_RESTATE_SERVER").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(env);
        return executable(&path).ok_or_else(|| {
            RestateError::NotFound(format!("{} from BRO_RESTATE_SERVER", path.display()))
        });
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

/// The loopback ports of one bro's restate-server and SDK endpoint, kept across restarts in
/// `ports.json` so Restate keeps calling the endpoint at the URL it was registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub admin: u16,
    pub ingress: u16,
    pub fabric: u16,
    pub sdk: u16,
}

impl Ports {
    /// Ports from `ports.json`, else free ones; any that is now taken by someone else is
    /// replaced by a free one. Ports of an adopted restate-server are kept as they are.
    ///
    /// Never Restate's defaults (9070, 8080, 5122): those belong to the user's own Restate,
    /// and while one home's server restarts, another home could take them from it.
    pub fn load_or_pick(dir: &Path, keep_restate_ports: bool) -> Self {
        let file = dir.join("ports.json");
        let saved: Option<Ports> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let mut ports = saved.unwrap_or(Ports {
            admin: 0,
            ingress: 0,
            fabric: 0,
            sdk: 0,
        });
        // Each free port stays bound until all are picked, so no two of them coincide.
        let mut held = Vec::new();
        let mut pick = |p: u16| {
            if p != 0 && port_free(p) {
                return p;
            }
            match TcpListener::bind(("127.0.0.1", 0)) {
                Ok(l) => {
                    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                    held.push(l);
                    port
                }
                Err(_) => 0,
            }
        };
        if !keep_restate_ports {
            ports.admin = pick(ports.admin);
            ports.ingress = pick(ports.ingress);
            ports.fabric = pick(ports.fabric);
        }
        ports.sdk = pick(ports.sdk);
        ports
    }

    /// Saves the ports for the next start.
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

/// The config file bro writes for restate-server: loopback only, telemetry off, a fixed node
/// name (data lives under `<base-dir>/<node-name>`) and a small footprint.
pub fn config_toml(base_dir: &Path, cluster: &str, ports: &Ports) -> String {
    format!(
        r#"# Written by bro at every start; edits are overwritten.
node-name = "bro"
cluster-name = "{cluster}"
base-dir = "{base}"
bind-address = "127.0.0.1:{fabric}"
advertised-address = "http://127.0.0.1:{fabric}/"
disable-telemetry = true
log-filter = "warn,restate=info"
log-disable-ansi-codes = true
default-num-partitions = 2
rocksdb-total-memory-size = "128 MiB"
# bro keeps its own records in state; Restate's copies of finished calls go after an hour.
default-journal-retention = "1h"
default-idempotency-retention = "1h"

[admin]
bind-address = "127.0.0.1:{admin}"

[admin.query-engine]
memory-size = "64 MiB"

[ingress]
bind-address = "127.0.0.1:{ingress}"
"#,
        base = base_dir.display(),
        cluster = cluster,
        fabric = ports.fabric,
        admin = ports.admin,
        ingress = ports.ingress,
    )
}

/// Pid and start time of the supervised restate-server, for adoption by the next daemon.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct PidFile {
    pid: u32,
    start_time: u64,
}

/// A supervised restate-server.
pub struct Supervised {
    pub admin_url: String,
    pub ingress_url: String,
    /// Current pid (changes on restart).
    pub pid: Arc<AtomicU32>,
    pub restarts: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

struct Runner {
    binary: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    admin_url: String,
    http: reqwest::Client,
}

/// Starts (or adopts) restate-server for `paths` and supervises it until [`Supervised::stop`].
/// Returns once admin `/health` answers, with the ports in use (the SDK endpoint's included).
pub async fn start(binary: PathBuf, paths: &Paths) -> Result<(Supervised, Ports), RestateError> {
    let dir = paths.restate_dir();
    std::fs::create_dir_all(&dir).map_err(io_err("create restate dir"))?;
    let http = reqwest::Client::new();
    let adopted = adoptable(&dir, &http).await;
    // Two bro homes starting at once can both see a default port free; the loser's
    // restate-server exits at once, and it retries on ports nobody holds.
    let mut attempt = 0;
    let (runner, ports, child, pf) = loop {
        let mut ports = Ports::load_or_pick(&dir, adopted.is_some());
        if attempt > 0 {
            ports = Ports {
                admin: free_port(),
                ingress: free_port(),
                fabric: free_port(),
                ..ports
            };
        }
        ports.save(&dir)?;
        let runner = Runner {
            binary: binary.clone(),
            log: paths.restate_log(),
            admin_url: format!("http://127.0.0.1:{}", ports.admin),
            dir: dir.clone(),
            http: http.clone(),
        };
        std::fs::write(
            dir.join("restate.toml"),
            config_toml(&dir.join("data"), &cluster_name(&dir), &ports),
        )
        .map_err(io_err("write restate.toml"))?;
        if let Some(pf) = adopted {
            tracing::info!(pid = pf.pid, "adopting the running restate-server");
            break (runner, ports, None, pf);
        }
        match runner.spawn().await {
            Ok((child, pf)) => break (runner, ports, Some(child), pf),
            Err(RestateError::Exited(status, log)) if attempt < 2 => {
                tracing::warn!(%status, log = %log.display(), "restate-server exited at start; retrying on other ports");
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    };

    let pid = Arc::new(AtomicU32::new(0));
    pid.store(pf.pid, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let restarts = Arc::new(AtomicU32::new(0));
    let admin_url = runner.admin_url.clone();
    let task = tokio::spawn(supervise(
        runner,
        child,
        pf,
        Arc::clone(&pid),
        Arc::clone(&restarts),
        stop.clone(),
    ));
    let sup = Supervised {
        admin_url,
        ingress_url: format!("http://127.0.0.1:{}", ports.ingress),
        pid,
        restarts,
        task,
        stop,
    };
    Ok((sup, ports))
}

impl Supervised {
    /// Stops restate-server (SIGTERM, then SIGKILL after 10 s) and the supervision.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A restate-server left by a previous daemon that still runs and answers.
async fn adoptable(dir: &Path, http: &reqwest::Client) -> Option<PidFile> {
    let pf: PidFile = serde_json::from_slice(&std::fs::read(dir.join("restate.pid")).ok()?).ok()?;
    if !process::is_alive(pf.pid, pf.start_time) {
        return None;
    }
    let ports: Ports = serde_json::from_slice(&std::fs::read(dir.join("ports.json")).ok()?).ok()?;
    let admin_url = format!("http://127.0.0.1:{}", ports.admin);
    if is_ours(http, &admin_url, &cluster_name(dir)).await {
        return Some(pf);
    }
    // Alive but not answering: stop it so a fresh one can take the data dir.
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
        let tmp = self.dir.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_err("create restate tmp dir"))?;
        let mut command = Command::new(&self.binary);
        command.env("TMPDIR", &tmp);
        if std::env::var_os("MALLOC_CONF").is_none() {
            command.env("MALLOC_CONF", MALLOC_CONF);
        }
        let mut child = command
            .arg("--config-file")
            .arg(self.dir.join("restate.toml"))
            .args(["--listen-mode", "tcp", "--no-logo"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false)
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

        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let cluster = cluster_name(&self.dir);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(RestateError::Exited(status.to_string(), self.log.clone()));
            }
            if is_ours(&self.http, &self.admin_url, &cluster).await {
                return Ok((child, pf));
            }
            if Instant::now() >= deadline {
                terminate(pf).await;
                return Err(RestateError::Unhealthy(HEALTH_TIMEOUT, self.log.clone()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// True when the restate-server answering at `admin_url` is healthy and is this home's: its
/// cluster name says so. Another home's server that won a race for a port answers too, and
/// must never be taken for ours.
async fn is_ours(http: &reqwest::Client, admin_url: &str, cluster: &str) -> bool {
    #[derive(Deserialize)]
    struct ClusterHealth {
        cluster_name: String,
    }
    let url = format!("{admin_url}/cluster-health");
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
    let alive = || process::is_alive(pf.pid, pf.start_time);
    if !alive() {
        return;
    }
    process::signal(pf.pid, Signal::SIGTERM);
    if !process::wait_until(Duration::from_secs(10), || !alive()).await {
        process::signal_group(pf.pid, Signal::SIGKILL);
        process::wait_until(Duration::from_secs(2), || !alive()).await;
    }
}

/// Registers the SDK endpoint at `endpoint_url` (always with `force`, which re-discovers the
/// services when they changed; see restate-notes §4.4).
pub async fn register(admin_url: &str, endpoint_url: &str) -> Result<(), RestateError> {
    let http = reqwest::Client::new();
    let body = serde_json::json!({ "uri": endpoint_url, "force": true });
    let mut last = String::new();
    for _ in 0..50 {
        match http
            .post(format!("{admin_url}/deployments"))
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(RestateError::Register(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_loopback_and_small() {
        let ports = Ports {
            admin: 1,
            ingress: 2,
            fabric: 3,
            sdk: 4,
        };
        let toml = config_toml(Path::new("/d"), "bro-x", &ports);
        assert!(toml.contains("bind-address = \"127.0.0.1:1\""));
        assert!(toml.contains("bind-address = \"127.0.0.1:2\""));
        assert!(toml.contains("disable-telemetry = true"));
        assert!(toml.contains("node-name = \"bro\""));
        assert!(toml.contains("cluster-name = \"bro-x\""));
        assert!(toml.contains("default-num-partitions = 2"));
        assert!(!toml.contains("0.0.0.0"));
    }

    #[test]
    fn taken_ports_are_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap().port();
        let saved = Ports {
            admin: taken,
            ingress: taken,
            fabric: taken,
            sdk: taken,
        };
        saved.save(tmp.path()).unwrap();
        let ports = Ports::load_or_pick(tmp.path(), false);
        assert!(ports.admin != taken && ports.ingress != taken && ports.sdk != taken);
        let kept = Ports::load_or_pick(tmp.path(), true);
        assert_eq!(kept.admin, taken, "an adopted server keeps its ports");
    }

    #[test]
    fn missing_binary_names_install_sh() {
        let paths = Paths::under(PathBuf::from("/nonexistent"));
        let err = find_binary(Some(Path::new("/nonexistent/restate-server")), &paths).unwrap_err();
        assert!(err.to_string().contains("./install.sh"), "{err}");
    }
}
