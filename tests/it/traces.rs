//! Traces: with `--otlp-endpoint`, a create is one trace across bro and restate-server, as a
//! real OTLP/gRPC receiver (opentelemetry-proto's TraceService served by grpcio) sees it; and
//! a receiver that never answers costs the daemon nothing but one log line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helper::{self, TestDaemon, text, wait_for};

/// `tests/compat/otlp_receiver.py` on a free loopback port, writing the spans it gets as
/// JSON lines; killed (by pid) on drop.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Receiver {
        let python = helper::python_venv();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("spans.jsonl");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/otlp_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the OTLP receiver did not start");
        Receiver {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Span> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| Span {
                trace: v["trace_id"].as_str().unwrap_or_default().into(),
                id: v["span_id"].as_str().unwrap_or_default().into(),
                parent: v["parent_id"].as_str().unwrap_or_default().into(),
                name: v["name"].as_str().unwrap_or_default().into(),
                service: v["service"].as_str().unwrap_or_default().into(),
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    service: String,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The spans of one trace as an indented tree (`service: name`), roots first.
fn tree(spans: &[Span]) -> String {
    let mut children: HashMap<&str, Vec<&Span>> = HashMap::new();
    for s in spans {
        children.entry(s.parent.as_str()).or_default().push(s);
    }
    let ids: Vec<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let mut out = String::new();
    fn walk(s: &Span, depth: usize, children: &HashMap<&str, Vec<&Span>>, out: &mut String) {
        out.push_str(&format!(
            "{}{}: {}\n",
            "  ".repeat(depth),
            s.service,
            s.name
        ));
        for c in children.get(s.id.as_str()).into_iter().flatten() {
            walk(c, depth + 1, children, out);
        }
    }
    for root in spans.iter().filter(|s| !ids.contains(&s.parent.as_str())) {
        walk(root, 0, &children, &mut out);
    }
    out
}

#[test]
fn a_create_is_one_trace_from_the_api_through_restate_to_the_launch() {
    let receiver = Receiver::start();
    let d = TestDaemon::start_with(&["--otlp-endpoint", &receiver.endpoint()]);
    let created = d.create(&[]);
    let id = created["id"].as_str().unwrap().to_string();
    d.ok(&["session", "kill", &id]);

    // The create's trace: its API span, restate-server's spans of the invocation, and the
    // handler's and the launch's back in bro.
    let mut trace = Vec::new();
    let complete = wait_for(|| {
        let spans = receiver.spans();
        let Some(create) = spans.iter().find(|s| s.name == "create_session") else {
            return false;
        };
        trace = spans
            .iter()
            .filter(|s| s.trace == create.trace)
            .cloned()
            .collect();
        let has = |service: &str, name: &str| {
            trace.iter().any(|s| s.service == service && s.name == name)
        };
        // restate-server (1.7) exports its spans as service `Restate`.
        has("Restate", "invocation-attempt Session/{key}/create")
            && has("bro", "restate_attempt")
            && has("bro", "session")
            && has("bro", "launch")
    });
    let all = receiver.spans();
    assert!(
        complete,
        "the create's trace is not whole:\n{}\nall spans:\n{}",
        tree(&trace),
        tree(&all)
    );
    eprintln!("the create's trace:\n{}", tree(&trace));
    // One trace: every span of it hangs under the create's API span.
    let roots: Vec<&Span> = trace
        .iter()
        .filter(|s| !trace.iter().any(|p| p.id == s.parent))
        .collect();
    assert_eq!(roots.len(), 1, "{}", tree(&trace));
    assert_eq!(roots[0].name, "create_session", "{}", tree(&trace));
    assert_eq!(roots[0].parent, "", "{}", tree(&trace));
    d.stop();
}

/// A receiver that accepts connections and never answers: creates and releases go on as
/// usual, the failure is logged once, and the daemon stops within its bound.
#[test]
fn a_receiver_that_never_answers_does_not_wedge_the_daemon() {
    // Bound but never accepted: connections queue in the backlog and get no answer.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let d = TestDaemon::start_with(&["--otlp-endpoint", &endpoint]);
    let started = Instant::now();
    for _ in 0..3 {
        let created = d.create(&[]);
        d.ok(&["session", "kill", created["id"].as_str().unwrap()]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "3 creates and releases took {:?}",
        started.elapsed()
    );
    // Each export gives up after 5 s; the first failure is logged, the next ones are not.
    let logged = |d: &TestDaemon| {
        let out = d.bro(&["daemon", "logs", "-n", "1000"]);
        text(&out)
            .matches("the OTLP receiver did not take spans")
            .count()
    };
    assert!(wait_for(|| logged(&d) >= 1), "no failure logged");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(logged(&d), 1, "logged more than once");
    let stopping = Instant::now();
    d.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(30),
        "stop took {:?}",
        stopping.elapsed()
    );
    drop(silent);
}
