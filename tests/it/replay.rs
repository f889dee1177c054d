//! The replay page in a real headless Chromium (playwright-core, `tests/compat/replay.mjs`):
//! with the API key in its URL, it loads rrweb-player from the daemon and plays a recording
//! (not blank: the screenshot has many colours); for a session that did not record it says so.
//!
//! The recorded session's page is driven as `tests/compat/fixtures/replay_page.mjs` says. Until
//! the daemon records sessions itself, its events are `tests/compat/fixtures/rrweb-events.json`
//! (real rrweb events of that same page, made by `tests/compat/record_rrweb_fixture.mjs`),
//! answered for `GET /v1/sessions/{id}/events` inside the browser (`page.route`); without
//! that last argument `replay.mjs` plays what the daemon serves.

use std::path::Path;
use std::process::Command;

use crate::helper::{TestDaemon, http_with, text};

const KEY: &str = "replay-secret-0123456789";

/// Creates a session (recording or not) over the TCP API, has playwright change its page as
/// the fixture's page changed, releases it, returns its id.
fn ended_session(api: &str, dir: &Path, record: bool) -> String {
    let host = api.trim_start_matches("http://");
    let headers = [("Host", host), ("steel-api-key", KEY)];
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
        .args(["replay.mjs", "drive", &ws])
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
fn the_replay_page_plays_a_recording_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    crate::compat::npm_ci(&dir);
    let d = TestDaemon::start_with(&["--api-key", KEY]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let recorded = ended_session(&api, &dir, true);
    let unrecorded = ended_session(&api, &dir, false);
    let out = Command::new("node")
        .arg("replay.mjs")
        .args([&api, KEY, &recorded, &unrecorded])
        .arg("fixtures/rrweb-events.json")
        .current_dir(&dir)
        .output()
        .expect("node is needed for the replay test (apt-get install nodejs)");
    assert!(out.status.success(), "replay.mjs failed:\n{}", text(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(facts["state"], "playing", "{facts}");
    assert_eq!(
        facts["replayedTitle"], "bro replay fixture: changed",
        "{facts}"
    );
    // A blank player is one colour; the fixture's page has a blue title on cream, a box and
    // text, plus the player's controls.
    let colours = facts["colours"].as_u64().unwrap();
    assert!(
        colours > 20,
        "the replay looks blank ({colours} colours): {facts}"
    );
    // The player came from bro with the key of the page's URL, as did the events request.
    for path in [
        "/v1/assets/rrweb-player.js".to_string(),
        "/v1/assets/rrweb-player.css".to_string(),
        format!("/v1/sessions/{recorded}/events"),
    ] {
        let asked = facts["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == path.as_str());
        assert!(
            asked.is_some_and(|r| r["keyed"] == true),
            "{path} not asked with the key: {facts}"
        );
    }
    // No script error, no refusal by the page's content security policy.
    assert_eq!(facts["logs"], serde_json::json!([]), "{facts}");
    let message = facts["unrecordedMessage"].as_str().unwrap();
    assert!(message.contains("did not record"), "{facts}");
    d.stop();
}
