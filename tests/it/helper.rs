//! `TestDaemon`: a `bro daemon` in a temp `BRO_HOME`, driven through the real CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bro::worker::process;
use serde_json::Value;
use tempfile::TempDir;

/// One `TIMEOUT` for every poll in the tests.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A daemon of its own; stopped (and checked for leftovers) by `stop`, killed by `Drop`.
pub struct TestDaemon {
    pub home: TempDir,
    pub status: Value,
    stopped: bool,
}

impl TestDaemon {
    /// Starts `bro daemon start --port 0` in a fresh home.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the daemon with extra flags.
    pub fn start_with(args: &[&str]) -> Self {
        let mut daemon = Self::prepare();
        daemon.restart_with(args);
        daemon
    }

    /// A fresh home with no daemon yet (write its config.toml, then `restart_with`).
    pub fn prepare() -> Self {
        check_prerequisites();
        let home = tempfile::Builder::new()
            .prefix("bro-it-")
            .tempdir()
            .expect("temp dir");
        TestDaemon {
            home,
            status: Value::Null,
            stopped: true,
        }
    }

    /// (Re)starts the daemon on this home.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.restart_with_env(args, &[]);
    }

    /// (Re)starts the daemon on this home with extra environment variables.
    pub fn restart_with_env(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let mut argv = vec!["daemon", "start", "--port", "0"];
        argv.extend_from_slice(args);
        let out = bro_env(self.home.path(), &argv, env);
        assert!(
            out.status.success(),
            "bro daemon start failed:\n{}",
            text(&out)
        );
        self.status = self.json(&["daemon", "status", "--json"]);
        self.stopped = false;
    }

    /// Runs `bro ARGS` with this home.
    pub fn bro(&self, args: &[&str]) -> Output {
        bro_in(self.home.path(), args)
    }

    /// Runs `bro ARGS`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.bro(args);
        assert!(out.status.success(), "bro {args:?} failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `bro ARGS` (which must print JSON) and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bro {args:?}: {e}: {stdout}"))
    }

    /// `bro session create --json ARGS`.
    pub fn create(&self, args: &[&str]) -> Value {
        let mut argv = vec!["session", "create", "--json"];
        argv.extend_from_slice(args);
        self.json(&argv)
    }

    /// `bro session get ID --json`.
    pub fn get(&self, id: &str) -> Value {
        self.json(&["session", "get", id, "--json"])
    }

    /// The session's exact status (`broStatus`: steel's `status` shows a starting session as
    /// live and a releasing one as released, too early for a test waiting on the end).
    pub fn status_of(&self, id: &str) -> String {
        self.get(id)["broStatus"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn daemon_pid(&self) -> u32 {
        self.status["pid"].as_u64().expect("pid") as u32
    }

    pub fn restate_pid(&self) -> u32 {
        self.status["restate"]["pid"].as_u64().expect("restate pid") as u32
    }

    /// The session's dir under the sessions dir.
    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.home.path().join("data/sessions").join(id)
    }

    /// The browser pid the daemon recorded for a session.
    pub fn browser_pid(&self, id: &str) -> u32 {
        self.recorded_pid(id)
            .unwrap_or_else(|| panic!("no worker.json in {}", self.session_dir(id).display()))
    }

    /// The browser pid recorded in a session (or warm browser) dir, if the dir is still there.
    pub fn recorded_pid(&self, id: &str) -> Option<u32> {
        let bytes = std::fs::read(self.session_dir(id).join("worker.json")).ok()?;
        let pf: Value = serde_json::from_slice(&bytes).expect("worker.json is JSON");
        Some(pf["pid"].as_u64().expect("pid") as u32)
    }

    /// Stops the daemon (releasing its sessions) and asserts nothing of it still runs.
    pub fn stop(mut self) {
        let out = self.bro(&["daemon", "stop"]);
        assert!(
            out.status.success(),
            "bro daemon stop failed:\n{}",
            text(&out)
        );
        self.stopped = true;
        let left = wait_for(|| leftovers(self.home.path()).is_empty());
        assert!(
            left,
            "processes left behind: {:?}",
            leftovers(self.home.path())
        );
        let sessions = std::fs::read_dir(self.home.path().join("data/sessions"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(sessions, 0, "session dirs left behind");
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.bro(&["daemon", "stop"]);
        }
        // A failed test must not leak: kill what is left of this home, by pid.
        for pid in leftovers(self.home.path()) {
            kill(pid, "KILL");
        }
        remove_cgroups(self.home.path());
    }
}

/// Removes the cgroups a daemon of `home` made (its record, `data/cgroups`, lists their
/// parents), which a daemon killed by a test leaves behind with no later daemon of that home
/// to sweep them: each session's cgroup, then the parent. Only `bro-*` dirs in a cgroupfs, and
/// only once their processes are gone (bounded retries).
fn remove_cgroups(home: &Path) {
    let record = std::fs::read_to_string(home.join("data/cgroups")).unwrap_or_default();
    let parents: Vec<PathBuf> = record
        .lines()
        .map(PathBuf::from)
        .filter(|p| {
            p.starts_with("/sys/fs/cgroup")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("bro-"))
        })
        .collect();
    for _ in 0..20 {
        let mut left = false;
        for parent in &parents {
            if let Ok(children) = std::fs::read_dir(parent) {
                for child in children.flatten() {
                    if child.file_type().is_ok_and(|t| t.is_dir()) {
                        left |= std::fs::remove_dir(child.path()).is_err();
                    }
                }
            }
            left |= parent.exists() && std::fs::remove_dir(parent).is_err();
        }
        if !left {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `unix:` addresses of `owner`'s restate-server sockets, through links in a temp dir (kept
/// alive by the returned guard): a guest daemon's command line must not name the owner's
/// home, or the owner's leftover check would count the guest as its own.
pub fn restate_links(owner: &TestDaemon) -> (TempDir, String, String) {
    let links = tempfile::tempdir().expect("temp dir");
    let link = |key: &str| {
        let target = owner.status["restate"][key]
            .as_str()
            .expect("restate address");
        let path = links.path().join(key);
        std::os::unix::fs::symlink(target.trim_start_matches("unix:"), &path).expect("symlink");
        format!("unix:{}", path.display())
    };
    let (admin, ingress) = (link("admin_url"), link("ingress_url"));
    (links, admin, ingress)
}

/// Runs the `bro` binary with `BRO_HOME=home` (and port 0 for autostarted daemons).
pub fn bro_in(home: &Path, args: &[&str]) -> Output {
    bro_env(home, args, &[])
}

/// `bro_in` with extra environment variables (bro's own `BRO_*` settings are cleared first).
pub fn bro_env(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bro"));
    cmd.args(args)
        .env("BRO_HOME", home)
        .env("BRO_PORT", "0")
        .env_remove("RUST_LOG");
    for var in [
        "BRO_MAX_SESSIONS",
        "BRO_DEFAULT_TIMEOUT",
        "BRO_API_KEY",
        "BRO_BIND",
        "BRO_NODE",
        "BRO_OTLP_ENDPOINT",
        "BRO_BROWSER_NICE",
        "BRO_WARM",
        "BRO_LIMITS_MODE",
        "BRO_CPU_SHARE",
        "BRO_MAX_SESSION_MEMORY",
        "BRO_MIN_FREE_MEMORY",
    ] {
        cmd.env_remove(var);
    }
    // The OpenTelemetry SDK's own settings would change what a traced daemon exports.
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(var);
        }
    }
    cmd.envs(env.iter().copied()).output().expect("run bro")
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Pids of live processes started for `home`: its daemon (found by its open cwd-independent
/// marker, the home path in its environment), restate-server and browsers (home in argv).
pub fn leftovers(home: &Path) -> Vec<u32> {
    let needle = home.to_string_lossy().into_owned();
    let me = std::process::id();
    process::pids()
        .filter(|pid| *pid != me && is_live(*pid))
        .filter(|pid| {
            let has = |file: &str| {
                std::fs::read(format!("/proc/{pid}/{file}"))
                    .map(|b| String::from_utf8_lossy(&b).contains(&needle))
                    .unwrap_or(false)
            };
            has("cmdline") || has("environ")
        })
        .collect()
}

/// True for a pid that exists and is not a zombie.
pub fn is_live(pid: u32) -> bool {
    process::start_time(pid).is_some()
}

/// Live pids in process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    process::group_members(pgid)
}

/// TCP ports `pid` listens on: its socket inodes matched against `/proc/net/tcp{,6}`.
pub fn listen_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.ok()?.path()).ok()?;
            let t = target.to_str()?;
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is f[1] (ADDR:PORT in hex), st is f[3] (0A = LISTEN), inode f[9].
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                ports.extend(port);
            }
        }
    }
    ports
}

/// Sends a signal by pid with `kill(1)`.
pub fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// A loopback port free now (another process may take it before it is bound again).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `cond` every 50 ms until it holds or `TIMEOUT` passes.
pub fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// One plain HTTP/1.1 request with a JSON body to `base` (`http://127.0.0.1:PORT`);
/// returns the status and the (de-chunked) body.
pub fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    http_with(base, method, path, &[("Host", addr)], body.as_bytes())
}

/// `http` with the given headers (`Host` included: none is added).
pub fn http_with(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let (status, _, body) = http_head(base, method, path, headers, body);
    (status, body)
}

/// `http_with` that also returns the response head (lowercased).
pub fn http_head(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect to the API");
    // A server that takes the connection and never answers fails the test, not hangs it.
    let _ = tcp.set_read_timeout(Some(TIMEOUT));
    let _ = tcp.set_write_timeout(Some(TIMEOUT));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    tcp.write_all(head.as_bytes()).expect("send");
    let _ = tcp.write_all(body);
    let mut resp = Vec::new();
    let _ = tcp.read_to_end(&mut resp);
    let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, String::new(), resp);
    };
    let split = split + 4;
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = &resp[split..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_vec()
    };
    (status, head, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || data.len() < line_end + 2 + size {
            break;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[(line_end + 4 + size).min(data.len())..];
    }
    out
}

/// Sends `Browser.getVersion` over a websocket URL and returns the product string.
pub fn cdp_browser_version(url: &str) -> String {
    use tokio_tungstenite::tungstenite::{Message, connect};
    let (mut ws, _) = connect(url).unwrap_or_else(|e| panic!("connect {url}: {e}"));
    ws.send(Message::text(r#"{"id":1,"method":"Browser.getVersion"}"#))
        .expect("send");
    loop {
        let msg = ws.read().expect("read");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("json");
            if v["id"] == 1 {
                return v["result"]["product"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
        }
    }
}

/// Fails at once, with the install command, when Chromium or restate-server is missing.
pub fn check_prerequisites() {
    let chromium = chromium_path();
    assert!(
        chromium.exists(),
        "Chromium is not installed ({}): run ./install.sh --no-bro",
        chromium.display()
    );
    let restate = restate_server_path();
    assert!(
        restate.exists(),
        "restate-server is not installed ({}): run ./install.sh --no-bro",
        restate.display()
    );
}

/// The Chromium the tests use: `BRO_CHROMIUM`, else Debian's.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("BRO_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The restate-server the tests use: `BRO_RESTATE_SERVER`, else the one `install.sh` puts in
/// the user's data dir.
pub fn restate_server_path() -> PathBuf {
    std::env::var_os("BRO_RESTATE_SERVER").map(PathBuf::from).unwrap_or_else(|| {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share"));
        data.join("bro/restate-server/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server")
    })
}

static VENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A venv under `target/` with the pinned Python packages of `tests/compat/requirements.txt`
/// (steel-sdk, schemathesis, and opentelemetry-proto + grpcio for the OTLP receiver); returns
/// its python.
pub fn python_venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat-venv");
    // One test builds it; the others wait for it.
    let _guard = VENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args([
            "-c",
            "import steel, schemathesis, grpc, opentelemetry.proto.collector.trace.v1",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if ready {
        return python;
    }
    let out = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .output()
        .expect("python3 is needed");
    assert!(
        out.status.success(),
        "python3 -m venv failed:\n{}",
        text(&out)
    );
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(dir.join("requirements.txt"))
        .output()
        .expect("pip");
    assert!(
        out.status.success(),
        "pip install -r tests/compat/requirements.txt failed:\n{}",
        text(&out)
    );
    python
}

/// Requests a [`serve_http`] server got, by path (query cut).
pub type Hits = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

/// A small HTTP server on a free port of 127.0.0.1 for the pages sessions load, until the test
/// binary exits: `answer(path, port)` (the path without its query) gives the content type and
/// body; requests are counted by path.
pub fn serve_http(
    answer: impl Fn(&str, u16) -> (&'static str, Vec<u8>) + Send + Sync + 'static,
) -> (u16, Hits) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Hits::default();
    let counted = std::sync::Arc::clone(&hits);
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (answer, counted) = (
                std::sync::Arc::clone(&answer),
                std::sync::Arc::clone(&counted),
            );
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/").to_string();
                *counted.lock().unwrap().entry(path.clone()).or_default() += 1;
                let (kind, body) = answer(&path, port);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    (port, hits)
}

/// A 2×2 red PNG.
pub fn png() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(2, 2, image::Rgb([200, 10, 10]))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// Opens `url` in a new tab of the browser behind `ws_url` (a session's CDP websocket), and
/// checks that the browser made the tab.
pub fn open_tab(ws_url: &str, url: &str) {
    use tokio_tungstenite::tungstenite::{Message, connect};
    let (mut ws, _) = connect(ws_url).unwrap_or_else(|e| panic!("connect {ws_url}: {e}"));
    let call =
        serde_json::json!({ "id": 1, "method": "Target.createTarget", "params": { "url": url } });
    ws.send(Message::text(call.to_string())).unwrap();
    loop {
        if let Message::Text(t) = ws.read().unwrap() {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == 1 {
                assert!(v["result"]["targetId"].is_string(), "{v}");
                return;
            }
        }
    }
}
