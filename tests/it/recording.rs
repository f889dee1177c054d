//! Recordings (rrweb, `GET /v1/sessions/{id}/events`) and `optimizeBandwidth`, applied by the
//! page agent, in real browsers driven by playwright-core (`tests/compat/recording.mjs`).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::helper::{TestDaemon, http, http_head, png, serve_http, text};

/// The pages the tests load, from a server of their own on 127.0.0.1 (its images are also
/// reachable as `localhost`, a host the blocking test blocks).
const CHURN_PAGE: &str = r#"<!doctype html><title>churn</title>
<style>@keyframes spin { to { transform: rotate(360deg) } } .s { animation: spin 1s linear infinite; width: 40px; height: 40px; background: teal }</style>
<div class="s"></div><input id="name"><button id="go" onclick="document.title='clicked'">go</button>
<ul id="list"></ul><p id="clock"></p>
<script>setInterval(() => { document.getElementById('clock').textContent = 'tick ' + Date.now(); }, 50);</script>"#;

/// A page with three images: same origin, from `localhost`, and under `/pat/`.
fn images_page(port: u16) -> String {
    format!(
        r#"<!doctype html><title>images</title>
<img id="same" src="/img.png"><img id="other" src="http://localhost:{port}/img.png"><img id="pattern" src="/pat/img.png">"#
    )
}

/// Serves the test pages on a free port of 127.0.0.1 until the test binary exits.
fn serve_pages() -> u16 {
    let png = png();
    let (port, _) = serve_http(move |path, port| {
        if path.ends_with(".png") {
            ("image/png", png.clone())
        } else if path.starts_with("/images") {
            ("text/html", images_page(port).into_bytes())
        } else {
            ("text/html", CHURN_PAGE.as_bytes().to_vec())
        }
    });
    port
}

fn compat_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

/// `node recording.mjs ARGS`: its JSON line.
fn drive(args: &[&str]) -> Value {
    crate::compat::npm_ci(&compat_dir());
    let out = Command::new("node")
        .arg("recording.mjs")
        .args(args)
        .current_dir(compat_dir())
        .output()
        .expect("node is needed for the recording tests");
    assert!(
        out.status.success(),
        "recording.mjs {args:?} failed:\n{}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// Creates a session with `body` over the API; its details.
fn create(api: &str, body: &str) -> Value {
    let (status, resp) = http(api, "POST", "/v1/sessions", body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    serde_json::from_slice(&resp).unwrap()
}

/// `GET path`: status, head and the body as JSON (`Null` when it is not JSON).
fn get(api: &str, path: &str) -> (u16, String, Value) {
    let host = api.trim_start_matches("http://");
    let (status, head, body) = http_head(api, "GET", path, &[("Host", host)], b"");
    (
        status,
        head,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// Waits until the warm pool holds a ready browser.
pub(crate) fn wait_warm(d: &TestDaemon) {
    let ready = crate::helper::wait_for(|| {
        let status = d.json(&["daemon", "status", "--json"]);
        status["pool"]["warm_ready"]
            .as_array()
            .is_some_and(|ready| !ready.is_empty())
    });
    assert!(ready, "no warm browser came up");
}

fn types(events: &Value) -> Vec<u64> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_recorded_session_serves_its_rrweb_events_after_release() {
    let port = serve_pages();
    // A warm browser: the session claims it, and its agent starts at the claim.
    let d = TestDaemon::start_with(&["--warm", "1"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    wait_warm(&d);
    let s = create(&api, r#"{"record": true}"#);
    let id = s["id"].as_str().unwrap().to_string();
    assert!(!d.session_dir(&id).exists(), "it launched cold");
    let ws = s["websocketUrl"].as_str().unwrap();
    let page = format!("http://127.0.0.1:{port}/churn");
    let facts = drive(&["churn", ws, &page]);
    assert_eq!(facts["title"], "clicked", "{facts}");
    assert_eq!(facts["popupTitle"], "churn", "{facts}");
    assert_eq!(facts["bindingVisible"], false, "{facts}");

    // While live: the events so far.
    let (status, _, live) = get(&api, &format!("/v1/sessions/{id}/events"));
    assert_eq!(status, 200);
    assert!(types(&live).contains(&2), "no FullSnapshot while live");

    let (status, _) = http(&api, "POST", &format!("/v1/sessions/{id}/release"), "");
    assert_eq!(status, 200);
    let (status, _, events) = get(&api, &format!("/v1/sessions/{id}/events"));
    assert_eq!(status, 200);
    let kinds = types(&events);
    assert!(
        kinds.contains(&4) && kinds.contains(&2) && kinds.contains(&3),
        "{kinds:?}"
    );
    let all = events.to_string();
    assert!(all.contains("item 19"), "the DOM changes are recorded");
    assert!(all.contains("typed by the test"), "the input is recorded");
    // Two tabs: the page and its popup, each named.
    let pages: std::collections::HashSet<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["pageId"].as_str())
        .collect();
    assert!(pages.len() >= 2, "{pages:?}");

    // Paged: Next-Cursor names the next page's pointer.
    let (status, head, first) = get(&api, &format!("/v1/sessions/{id}/events?limit=2"));
    assert_eq!((status, first.as_array().unwrap().len()), (200, 2));
    let cursor = head
        .lines()
        .find_map(|l| l.strip_prefix("next-cursor: "))
        .expect("a Next-Cursor header")
        .trim()
        .to_string();
    let (_, _, second) = get(
        &api,
        &format!("/v1/sessions/{id}/events?limit=2&pointer={cursor}"),
    );
    assert_eq!(second[0], events[2]);
    // Bounds and unknowns.
    for bad in [
        "limit=0",
        "limit=10001",
        "limit=x",
        "pointer=3",
        "pointer=-1",
    ] {
        let (status, _, body) = get(&api, &format!("/v1/sessions/{id}/events?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let unknown = uuid::Uuid::new_v4();
    let (status, _, body) = get(&api, &format!("/v1/sessions/{unknown}/events"));
    assert_eq!(status, 404);
    assert!(body["message"].is_string(), "{body}");

    // The file outlives the session dir, private.
    let file = d.home.path().join(format!("data/recordings/{id}.ndjson"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(!d.session_dir(&id).exists());

    // The typed Python SDK parses them.
    let python = crate::helper::python_venv();
    let script = "import sys, json\nfrom steel import Steel\n\
                  c = Steel(base_url=sys.argv[1], steel_api_key='x', max_retries=0)\n\
                  ev = c.sessions.events(sys.argv[2])\n\
                  print(json.dumps({'n': len(ev), 'types': sorted({e['type'] for e in ev})}))\n";
    let out = Command::new(python)
        .args(["-c", script, &api, &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "steel-sdk events():\n{}", text(&out));
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["n"].as_u64().unwrap() as usize, kinds.len());

    // A session created without record has no events.
    let plain = create(&api, "{}");
    let plain_id = plain["id"].as_str().unwrap();
    let (status, _, none) = get(&api, &format!("/v1/sessions/{plain_id}/events"));
    assert_eq!((status, none), (200, serde_json::json!([])));
    // The pool refilled before the stop: a warm launch under way when the daemon stops
    // leaves its dir behind (a race of the warm pool's, not of recordings).
    wait_warm(&d);
    d.stop();
}

#[test]
fn optimize_bandwidth_blocks_images_hosts_and_patterns() {
    let port = serve_pages();
    let d = TestDaemon::start_with(&["--warm", "1"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    wait_warm(&d);
    let page = format!("http://127.0.0.1:{port}/images");
    let loaded = |body: &str| {
        let s = create(&api, body);
        let facts = drive(&["images", s["websocketUrl"].as_str().unwrap(), &page]);
        let id = s["id"].as_str().unwrap();
        http(&api, "POST", &format!("/v1/sessions/{id}/release"), "");
        facts
    };
    let free = loaded("{}");
    assert_eq!(
        (free["same"].as_u64(), free["other"].as_u64()),
        (Some(2), Some(2)),
        "{free}"
    );
    assert_eq!(free["pattern"], 2, "{free}");

    let images = loaded(r#"{"optimizeBandwidth": {"blockImages": true}}"#);
    assert_eq!(
        (images["same"].as_u64(), images["other"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(images["tabSame"], 0, "a new tab is filtered too: {images}");

    let hosts = loaded(
        r#"{"optimizeBandwidth": {"blockHosts": ["localhost"], "blockUrlPatterns": ["*/pat/*"]}}"#,
    );
    assert_eq!(hosts["same"], 2, "{hosts}");
    assert_eq!(hosts["other"], 0, "{hosts}");
    assert_eq!(hosts["pattern"], 0, "{hosts}");

    // `true` blocks the three types; recording and blocking together.
    let both = loaded(r#"{"optimizeBandwidth": true, "record": true}"#);
    assert_eq!(both["same"], 0, "{both}");
    wait_warm(&d);
    d.stop();
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_page_flooding_its_recorder_stays_within_the_cap() {
    let port = serve_pages();
    let d = TestDaemon::start_with(&["--record", "--record-max-bytes", "2MiB"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    // Recorded by the daemon's default.
    let s = create(&api, "{}");
    assert_eq!(s["record"], true, "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    let before = rss_kib(d.daemon_pid());
    let page = format!("http://127.0.0.1:{port}/churn");
    let facts = drive(&["flood", s["websocketUrl"].as_str().unwrap(), &page, "8"]);
    assert!(facts["rounds"].as_u64().unwrap() > 5, "{facts}");
    // The tab recorded runs the recorder; one opened past the cap does not.
    assert_eq!(facts["recorderBefore"], true, "{facts}");
    assert_eq!(facts["recorderAfter"], false, "{facts}");
    let after = rss_kib(d.daemon_pid());
    assert!(
        after < before + 64 * 1024,
        "the daemon grew from {before} KiB to {after} KiB"
    );
    let file = d.home.path().join(format!("data/recordings/{id}.ndjson"));
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(len <= 2 << 20, "{len}");
    let (_, _, events) = get(&api, &format!("/v1/sessions/{id}/events"));
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["data"]["tag"], "bro.recording-cut", "{last}");
    // --no-record wins over the daemon's default.
    let out = d.create(&["--no-record"]);
    assert!(out["record"] == false || out["record"].is_null(), "{out}");
    d.stop();
}

#[test]
fn a_restarted_daemon_takes_up_recording_and_blocking_again() {
    let port = serve_pages();
    let mut d = TestDaemon::start();
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let s = create(
        &api,
        r#"{"record": true, "optimizeBandwidth": {"blockImages": true}}"#,
    );
    let id = s["id"].as_str().unwrap().to_string();
    let out = d.bro(&["daemon", "stop", "--keep-sessions"]);
    assert!(out.status.success(), "{}", text(&out));
    d.restart_with(&[]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let ws = format!("ws://{}/?sessionId={id}", api.trim_start_matches("http://"));
    let images = drive(&["images", &ws, &format!("http://127.0.0.1:{port}/images")]);
    assert_eq!(images["same"], 0, "blocking resumed: {images}");
    drive(&["churn", &ws, &format!("http://127.0.0.1:{port}/churn")]);
    let (status, _, events) = get(&api, &format!("/v1/sessions/{id}/events"));
    assert_eq!(status, 200);
    assert!(events.to_string().contains("item 19"), "recording resumed");
    d.stop();
}
