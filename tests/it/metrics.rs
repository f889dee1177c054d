//! `GET /metrics` scraped by a real Prometheus (Debian's package, run as a child with its own
//! config, storage and loopback port): the scrape parses (`up` is 1, restate-server's own
//! families came along), and creating a session, using it over CDP and releasing it move
//! bro's figures as Prometheus sees them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use crate::helper::{TestDaemon, free_port, http, http_with, wait_for};

const KEY: &str = "metrics-secret-0123456789";

/// Debian's Prometheus: `BRO_PROMETHEUS`, else `/usr/bin/prometheus`.
fn prometheus_path() -> PathBuf {
    std::env::var_os("BRO_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

/// A Prometheus of the test's own, killed (by pid) when dropped.
struct Prometheus {
    child: Child,
    base: String,
    dir: TempDir,
}

impl Prometheus {
    /// Scrapes `target` (`127.0.0.1:PORT`) every 3 s, sending the API key as a bearer token
    /// read from a file (`authorization.credentials_file`, as the README says), so the key
    /// never shows in Prometheus' scrape URLs. The scrape timeout stays above the daemon's
    /// own 2 s bound on a read, on a loaded machine too.
    fn start(target: &str) -> Prometheus {
        let bin = prometheus_path();
        assert!(
            bin.exists(),
            "Prometheus is not installed ({}): run ./install.sh --test-deps",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("bro-it-prom-")
            .tempdir()
            .unwrap();
        let key_file = dir.path().join("bro.key");
        std::fs::write(&key_file, KEY).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 3s\n  scrape_timeout: 3s\n\
             scrape_configs:\n  - job_name: bro\n    metrics_path: /metrics\n\
             \x20   authorization:\n      credentials_file: '{}'\n\
             \x20   static_configs:\n      - targets: ['{target}']\n",
            key_file.display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    /// The value of the instant query `expr`'s first series; `None` when it has none (yet).
    fn value(&self, expr: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", encode(expr));
        let addr = self.base.trim_start_matches("http://");
        // Not listening yet: no answer (the request helper panics on a refused connect).
        std::net::TcpStream::connect(addr).ok()?;
        let (status, body) = http_with(&self.base, "GET", &path, &[("Host", addr)], b"");
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_slice(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `expr`'s value passes `test`; the last value and the log's tail otherwise.
    fn wait(&self, expr: &str, test: impl Fn(f64) -> bool) -> Result<f64, String> {
        let mut last = None;
        let started = std::time::Instant::now();
        if wait_for(|| {
            last = self.value(expr);
            last.is_some_and(&test)
        }) {
            eprintln!("{expr} = {last:?} after {:?}", started.elapsed());
            return Ok(last.unwrap_or_default());
        }
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        Err(format!(
            "{expr} = {last:?}; prometheus log (last lines, newest first):\n{}",
            tail.join("\n")
        ))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CDP websocket whose connect, handshake and reads are bounded (a hang fails the test).
fn cdp_connect(
    url: &str,
) -> (
    tokio_tungstenite::tungstenite::WebSocket<std::net::TcpStream>,
    tokio_tungstenite::tungstenite::handshake::client::Response,
) {
    let bound = std::time::Duration::from_secs(30);
    let host = url
        .trim_start_matches("ws://")
        .split(['/', '?'])
        .next()
        .unwrap();
    let addr: std::net::SocketAddr = host.parse().unwrap();
    let tcp = std::net::TcpStream::connect_timeout(&addr, bound).unwrap();
    tcp.set_read_timeout(Some(bound)).unwrap();
    tcp.set_write_timeout(Some(bound)).unwrap();
    tokio_tungstenite::tungstenite::client(url, tcp).unwrap()
}

/// Percent-encodes a PromQL expression for a query string.
fn encode(expr: &str) -> String {
    expr.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_daemon_and_sees_a_create() {
    let d = TestDaemon::start_with(&["--api-key", KEY]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    // The key guards the route.
    let (status, _) = http(&api, "GET", "/metrics", "");
    assert_eq!(status, 401);

    let target = api.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(&target);
    prom.wait(r#"up{job="bro"}"#, |v| v == 1.0).unwrap();
    let live = r#"bro_sessions{job="bro",status="live"}"#;
    assert_eq!(prom.wait(live, |_| true).unwrap(), 0.0);
    let creates = r#"bro_session_creates_total{job="bro",outcome="live"}"#;
    assert_eq!(prom.wait(creates, |_| true).unwrap(), 0.0);
    // restate-server's own metrics came along in the same scrape.
    prom.wait(r#"bro_restate_metrics_up{job="bro"}"#, |v| v == 1.0)
        .unwrap();
    prom.wait(r#"count({job="bro",__name__=~"restate_.+"})"#, |v| v > 10.0)
        .unwrap();

    let s = d.create(&[]);
    let id = s["id"].as_str().unwrap().to_string();
    prom.wait(live, |v| v == 1.0).unwrap();
    prom.wait(creates, |v| v == 1.0).unwrap();
    prom.wait(
        r#"bro_session_create_seconds_count{job="bro",kind="cold"}"#,
        |v| v == 1.0,
    )
    .unwrap();
    // A CDP client through bro: the socket and its bytes are counted.
    let ws_url = format!("{}&apiKey={KEY}", s["websocketUrl"].as_str().unwrap());
    let (mut ws, _) = cdp_connect(&ws_url);
    let ask = r#"{"id":1,"method":"Browser.getVersion"}"#;
    ws.send(tokio_tungstenite::tungstenite::Message::text(ask))
        .unwrap();
    ws.read().unwrap();
    prom.wait(r#"bro_cdp_connections{job="bro"}"#, |v| v == 1.0)
        .unwrap();
    let to_client = r#"bro_cdp_bytes_total{job="bro",direction="to_client"}"#;
    prom.wait(to_client, |v| v > 0.0).unwrap();
    let to_browser = r#"bro_cdp_bytes_total{job="bro",direction="to_browser"}"#;
    prom.wait(to_browser, |v| v >= ask.len() as f64).unwrap();
    drop(ws);
    prom.wait(r#"bro_cdp_connections{job="bro"}"#, |v| v == 0.0)
        .unwrap();

    let memory = format!(r#"bro_browser_memory_bytes{{job="bro",session="{id}"}}"#);
    let bytes = prom.wait(&memory, |v| v > 0.0).unwrap();
    prom.wait(r#"bro_browsers_memory_bytes{job="bro"}"#, |v| v > 0.0)
        .unwrap();
    eprintln!(
        "Prometheus saw the session's browser at {:.0} MiB",
        bytes / 1048576.0
    );

    d.ok(&["session", "kill", &id]);
    prom.wait(live, |v| v == 0.0).unwrap();
    prom.wait(
        r#"bro_session_releases_total{job="bro",outcome="released"}"#,
        |v| v == 1.0,
    )
    .unwrap();
    // The end is counted once, with its final status.
    prom.wait(
        r#"bro_session_ends_total{job="bro",status="released"}"#,
        |v| v == 1.0,
    )
    .unwrap();
    drop(prom);
    d.stop();
}
