//! The replay page in a real headless Chromium (playwright-core, `tests/compat/replay.mjs`):
//! a session records a page served here, is released, and its viewer (`/player`, with the API
//! key in its URL) sends the browser on to the replay, which loads rrweb-player from the daemon
//! and plays what the daemon recorded (not blank: the screenshot has many colours; the changed
//! title). The recorded page is hostile: its script and handlers would change the replay
//! page's title and call home if they ran in the replay, and its picture is on a plain-http
//! loopback address the replay must not ask. For a session that did not record the page says so.

use std::path::Path;
use std::process::Command;

use crate::helper::{Hits, TestDaemon, http_with, png, serve_http, text};
use crate::recording::wait_warm;

const KEY: &str = "replay-secret-0123456789";

/// The recorded page: what the replay must show, plus what must not run or load in it. Its
/// script and handlers act only away from http (in the replay's `about:blank` iframe).
const PAGE: &str = r#"<!doctype html><html><head><title>recorded</title><style>
  body { margin: 0; font: 28px sans-serif; background: #fdf6e3; }
  h1 { background: #268bd2; color: white; padding: 24px; margin: 0; }
  .box { width: 200px; height: 120px; margin: 24px; background: #dc322f; }
</style>
<script>
  window.pwn = (how) => {
    if (location.protocol === 'http:') return;
    try { parent.document.title = 'pwned by ' + how; parent.__broPwned = how; } catch (e) {}
    fetch('/pwned?' + how).catch(() => {});
    new Image().src = 'https://pwned.invalid/' + how;
  };
  window.pwn('script');
</script></head>
<body><h1 id="title">bro replay fixture</h1><div class="box"></div>
<img id="pic" src="/img.png" width="40" height="40" onload="pwn('onload')">
<img src="data:image/png;base64,AAAA" onerror="pwn('onerror')">
</body></html>"#;

/// Serves [`PAGE`] (and a picture) on a free port of 127.0.0.1, counting requests by path.
fn serve_page() -> (u16, Hits) {
    let png = png();
    serve_http(move |path, _| {
        if path == "/img.png" {
            ("image/png", png.clone())
        } else {
            ("text/html", PAGE.as_bytes().to_vec())
        }
    })
}

/// Creates a session (recording or not) over the TCP API, has playwright load `page` in it and
/// change it, releases it, returns its id.
fn ended_session(d: &TestDaemon, dir: &Path, record: bool, page: &str) -> String {
    let api = d.status["api_url"].as_str().unwrap();
    let host = api.trim_start_matches("http://");
    let headers = [("Host", host), ("steel-api-key", KEY)];
    wait_warm(d);
    let body = format!(r#"{{"record": {record}}}"#);
    let (status, reply) = http_with(api, "POST", "/v1/sessions", &headers, body.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let details: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    // `record` is left out when false.
    assert_eq!(
        details["record"].as_bool().unwrap_or(false),
        record,
        "{details}"
    );
    let id = details["id"].as_str().unwrap().to_string();
    let ws = format!("{}&apiKey={KEY}", details["websocketUrl"].as_str().unwrap());
    let out = Command::new("node")
        .args(["replay.mjs", "drive", &ws, page])
        .current_dir(dir)
        .output()
        .expect("node is needed for the replay test (apt-get install nodejs)");
    assert!(
        out.status.success(),
        "replay.mjs drive failed:\n{}",
        text(&out)
    );
    let release = format!("/v1/sessions/{id}/release");
    assert_eq!(http_with(api, "POST", &release, &headers, b"").0, 200);
    id
}

#[test]
fn the_viewer_of_an_ended_session_plays_its_recording_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    crate::compat::npm_ci(&dir);
    let (port, hits) = serve_page();
    let page = format!("http://127.0.0.1:{port}/page");
    let d = TestDaemon::start_with(&["--api-key", KEY, "--warm", "1"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let recorded = ended_session(&d, &dir, true, &page);
    let unrecorded = ended_session(&d, &dir, false, &page);
    let before = hits.lock().unwrap().clone();
    // Two tabs in each session.
    assert_eq!(before.get("/img.png"), Some(&4), "{before:?}");
    let out = Command::new("node")
        .arg("replay.mjs")
        .args([&api, KEY, &recorded, &unrecorded])
        .current_dir(&dir)
        .output()
        .expect("node is needed for the replay test (apt-get install nodejs)");
    assert!(out.status.success(), "replay.mjs failed:\n{}", text(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    eprintln!("replay facts: {facts}");
    // The viewer of an ended session sent the browser on to its replay.
    assert_eq!(
        facts["redirectedFrom"],
        format!("/v1/sessions/{recorded}/player")
    );
    assert_eq!(facts["landedOn"], format!("/v1/sessions/{recorded}/replay"));
    assert_eq!(facts["state"], "playing", "{facts}");
    assert_eq!(
        facts["replayedTitle"], "bro replay fixture: changed",
        "{facts}"
    );
    // A blank player is one colour; the page has a blue title on cream, a box and text, plus
    // the player's controls.
    let colours = facts["colours"].as_u64().unwrap();
    assert!(
        colours > 20,
        "the replay looks blank ({colours} colours): {facts}"
    );
    // Nothing of the recorded page ran in the replay: rrweb's iframe has no scripts, and the
    // page's policy runs only its own nonce'd script.
    assert_eq!(facts["sandbox"], "allow-same-origin", "{facts}");
    assert_eq!(facts["hostile"], serde_json::Value::Null, "{facts}");
    assert_eq!(facts["pageTitle"], "bro · replay", "{facts}");
    // The first tab plays by default (the title above is its own), the second from the
    // picker: each on its own, never mixed.
    assert_eq!(facts["tabs"], 2, "{facts}");
    assert_eq!(
        facts["secondTitle"], "bro replay fixture: second tab",
        "{facts}"
    );
    assert_eq!(facts["secondTab"], "1", "{facts}");
    // The replay asked nothing of the recorded page's plain-http loopback server.
    assert_eq!(*hits.lock().unwrap(), before, "the replay reached the LAN");
    let requests = facts["requests"].as_array().unwrap();
    assert!(
        requests.iter().all(|r| r["host"] != "pwned.invalid"),
        "{facts}"
    );
    // The player came from bro without a key in its URL; the events with the key in the header.
    for path in ["/v1/assets/rrweb-player.js", "/v1/assets/rrweb-player.css"] {
        let asked = requests.iter().find(|r| r["path"] == path);
        assert!(
            asked.is_some_and(|r| r["keyInUrl"] == false && r["keyInHeader"] == false),
            "{path}: {facts}"
        );
    }
    let events = format!("/v1/sessions/{recorded}/events");
    assert!(
        requests
            .iter()
            .any(|r| r["path"] == events.as_str() && r["keyInHeader"] == true),
        "{facts}"
    );
    // No script error of the page itself (the sandbox's and the policy's refusals of the
    // recorded page's script are expected, and nothing else).
    let unexpected: Vec<&serde_json::Value> = facts["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            let l = l.as_str().unwrap_or("");
            !(l.contains("sandboxed") || l.contains("Content Security Policy"))
        })
        .collect();
    assert!(unexpected.is_empty(), "{facts}");
    let message = facts["unrecordedMessage"].as_str().unwrap();
    assert!(message.contains("did not record"), "{facts}");
    wait_warm(&d);
    d.stop();
}
