//! Traces: with `--otlp-endpoint`, a create is one trace across bro and restate-server, as a
//! real OTLP/gRPC receiver (opentelemetry-proto's TraceService served by grpcio) sees it; and
//! a receiver that never answers costs the daemon nothing but one log line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helper::{self, TestDaemon, text, wait_for};

/// `tests/compat/otlp_receiver.py` on a loopback port it picks, writing the spans it gets as
/// JSON lines; killed (by pid) on drop.
pub(crate) struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let python = helper::python_venv();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("spans.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/otlp_receiver.py");
        let child = Command::new(python)
            .arg(script)
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Owned from here, so a failure below kills it (Drop).
        let mut receiver = Receiver {
            child,
            port: 0,
            out,
            _dir: dir,
        };
        let stdout = receiver.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(helper::TIMEOUT)
            .expect("the OTLP receiver did not start in time");
        receiver.port = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the OTLP receiver did not start: {line:?}"));
        receiver
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    pub(crate) fn spans(&self) -> Vec<Span> {
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
pub(crate) struct Span {
    pub(crate) trace: String,
    id: String,
    parent: String,
    pub(crate) name: String,
    service: String,
}

/// The spans of one trace as an indented tree (`service: name`), roots first.
pub(crate) fn tree(spans: &[Span]) -> String {
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

/// The spans of the trace `trace` if it is one whole create: a single root, the
/// `create_session` API span (under `parent`: "" for none), and restate-server's, the
/// handler's and the browser's (`leaf`: `launch` cold, `claim_warm` warm) spans in it, the
/// browser's under the handler's invocation. Checked as one, since restate-server sends its
/// spans in batches of its own and the last may come later than bro's.
pub(crate) fn whole_create(
    spans: &[Span],
    trace: &str,
    parent: &str,
    leaf: &str,
) -> Result<Vec<Span>, String> {
    let trace: Vec<Span> = spans.iter().filter(|s| s.trace == trace).cloned().collect();
    let has =
        |service: &str, name: &str| trace.iter().any(|s| s.service == service && s.name == name);
    // One trace: every span of it hangs under the create's API span.
    let roots: Vec<&Span> = trace
        .iter()
        .filter(|s| !trace.iter().any(|p| p.id == s.parent))
        .collect();
    let whole = roots.len() == 1
        && roots[0].name == "create_session"
        && roots[0].parent == parent
        // restate-server (1.7) exports its spans as service `Restate`.
        && has("Restate", "ingress Session/{key}/create")
        && has("Restate", "invocation-attempt Session/{key}/create")
        && has("bro", "restate_attempt")
        && has("bro", "session")
        && chain(&trace, leaf).is_some_and(|up| {
            up.contains(&"invocation-attempt Session/{key}/create")
                && up.contains(&"restate_attempt")
                && up.last() == Some(&"create_session")
        });
    if whole { Ok(trace) } else { Err(tree(&trace)) }
}

/// The names of bro's span `name` in `trace` and of its ancestors, itself first (the first
/// such span's; bounded by the trace's size, so a cycle cannot loop).
pub(crate) fn chain<'a>(trace: &'a [Span], name: &str) -> Option<Vec<&'a str>> {
    let mut at = trace
        .iter()
        .find(|s| s.service == "bro" && s.name == name)?;
    let mut up = vec![at.name.as_str()];
    while let Some(p) = trace.iter().find(|p| p.id == at.parent) {
        if up.len() > trace.len() {
            break;
        }
        up.push(p.name.as_str());
        at = p;
    }
    Some(up)
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
    let mut last = Err(String::new());
    let complete = wait_for(|| {
        let spans = receiver.spans();
        last = match spans.iter().find(|s| s.name == "create_session") {
            Some(create) => whole_create(&spans, &create.trace, "", "launch"),
            None => Err("no create_session span".into()),
        };
        last.is_ok()
    });
    assert!(
        complete,
        "the create's trace is not whole:\n{}\nall spans:\n{}",
        last.unwrap_err(),
        tree(&receiver.spans())
    );
    eprintln!("the create's trace:\n{}", tree(&last.unwrap()));

    // A caller's traceparent places the create in the caller's trace, under the caller's
    // span; its "not sampled" flag and its tracestate do not turn bro's or Restate's spans
    // off.
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace}-{parent}-00");
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let host = api.trim_start_matches("http://").to_string();
    let headers = [
        ("Host", host.as_str()),
        ("traceparent", traceparent.as_str()),
        ("tracestate", "caller=chosen"),
    ];
    let (status, body) = helper::http_with(&api, "POST", "/v1/sessions", &headers, b"{}");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let created: Value = serde_json::from_slice(&body).unwrap();
    d.ok(&["session", "kill", created["id"].as_str().unwrap()]);
    let mut last = Err(String::new());
    let joined = wait_for(|| {
        last = whole_create(&receiver.spans(), trace, parent, "launch");
        last.is_ok()
    });
    assert!(
        joined,
        "the create is not whole in the caller's trace:\n{}\nall spans:\n{}",
        last.unwrap_err(),
        tree(&receiver.spans())
    );
    d.stop();
}

/// A create that takes a warm browser is one trace too, with `claim_warm` where a cold one
/// has `launch`, under the create's invocation; the ready browser's own launch is in no
/// create's trace.
#[test]
fn a_warm_create_is_one_trace_down_to_its_claim() {
    let receiver = Receiver::start();
    let d = TestDaemon::start_with(&["--otlp-endpoint", &receiver.endpoint(), "--warm", "1"]);
    let ready = || {
        let st = d.json(&["daemon", "status", "--json"]);
        st["pool"]["warm_ready"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    };
    assert!(wait_for(ready), "no warm browser got ready");
    let created = d.create(&[]);
    let id = created["id"].as_str().unwrap().to_string();
    // A warm session has no dir of its own: it did not launch cold.
    assert!(!d.session_dir(&id).exists(), "the create launched cold");
    d.ok(&["session", "kill", &id]);

    let mut last = Err(String::new());
    let complete = wait_for(|| {
        let spans = receiver.spans();
        last = match spans.iter().find(|s| s.name == "create_session") {
            Some(create) => whole_create(&spans, &create.trace, "", "claim_warm"),
            None => Err("no create_session span".into()),
        };
        last.is_ok()
    });
    assert!(
        complete,
        "the warm create's trace is not whole:\n{}\nall spans:\n{}",
        last.unwrap_err(),
        tree(&receiver.spans())
    );
    let trace = last.unwrap();
    eprintln!("the warm create's trace:\n{}", tree(&trace));
    assert!(
        !trace.iter().any(|s| s.name == "launch"),
        "a launch in the warm create's trace:\n{}",
        tree(&trace)
    );
    d.stop();
}

/// How long bro gives one export (`otlp::EXPORT_TIMEOUT`).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// A receiver that accepts connections and never answers: creates and releases go on as
/// usual, the failure is logged once, and the daemon stops within its bound.
#[test]
fn a_receiver_that_never_answers_does_not_wedge_the_daemon() {
    // Bound but never accepted: connections queue in the backlog and get no answer.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let d = TestDaemon::start_with(&["--otlp-endpoint", &endpoint]);
    // A create that waited for an export would take at least EXPORT_TIMEOUT, every one of
    // them: the fastest is under it. Each is under the tests' TIMEOUT, whatever the load of
    // the machine (a create takes 1 to 2 s here, more while other tests start daemons).
    let mut took = Vec::new();
    let mut create_and_kill = || {
        let started = Instant::now();
        let created = d.create(&[]);
        d.ok(&["session", "kill", created["id"].as_str().unwrap()]);
        took.push(started.elapsed());
        eprintln!("a create and release took {:?}", started.elapsed());
        assert!(started.elapsed() < helper::TIMEOUT, "{took:?}");
    };
    for _ in 0..3 {
        create_and_kill();
    }
    // The first failure is logged, the next ones are not.
    let logged = |d: &TestDaemon| {
        let out = d.bro(&["daemon", "logs", "-n", "1000"]);
        text(&out)
            .matches("the OTLP receiver did not take spans")
            .count()
    };
    assert!(wait_for(|| logged(&d) >= 1), "no failure logged");
    // Spans made after that warning, so at least one more export fails before the count:
    // sent within the batch delay, given up after EXPORT_TIMEOUT.
    create_and_kill();
    let after = Instant::now();
    while after.elapsed() < EXPORT_TIMEOUT + Duration::from_secs(2) {
        assert!(logged(&d) <= 1, "logged more than once");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(logged(&d), 1, "logged more than once");
    let fastest = took.iter().min().unwrap();
    assert!(*fastest < EXPORT_TIMEOUT, "creates took {took:?}");
    let stopping = Instant::now();
    d.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(30),
        "stop took {:?}",
        stopping.elapsed()
    );
    drop(silent);
}
