//! The live viewer against a real daemon, session browser and viewer browser: Debian's
//! Chromium driven by playwright-core (`tests/compat/viewer.mjs`) sees the session's page,
//! types and clicks into it, switches tabs, runs two viewers at once and closes them; a
//! ninth viewer is refused; and a viewer's socket does not keep a session from idling out.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::compat::npm_ci;
use crate::helper::{TestDaemon, chromium_path, text, wait_for};

const KEY: &str = "viewer-secret-0123456789";

#[test]
fn the_viewer_shows_and_drives_a_live_session() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    npm_ci(&dir);
    let d = TestDaemon::start_with(&["--api-key", KEY]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let s = d.create(&["--timeout", "0", "--width", "800", "--height", "600"]);
    let id = s["id"].as_str().unwrap();
    assert_eq!(
        s["debugUrl"].as_str().unwrap(),
        format!("{api}/v1/sessions/{id}/player")
    );
    let out = Command::new("node")
        .arg("viewer.mjs")
        .args([&api, KEY, id, s["websocketUrl"].as_str().unwrap()])
        .arg(chromium_path())
        .current_dir(&dir)
        .output()
        .expect("node is needed for the viewer test");
    assert!(out.status.success(), "viewer.mjs failed:\n{}", text(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    eprintln!("viewer facts: {facts}");
    assert_eq!(facts["result"], "got:hello bro");
    assert_eq!(facts["viewersWithTwo"], 2);
    assert_eq!(facts["viewersAfterClose"], "zero");
    assert!(
        facts["switchedTo"]
            .as_str()
            .unwrap()
            .starts_with("second tab")
    );

    // Once the session is over, the player sends the browser on to the replay.
    d.ok(&["session", "kill", id]);
    assert!(wait_for(|| d.get(id)["status"] == "released"));
    let (status, _) = crate::helper::http(
        &api,
        "GET",
        &format!("/v1/sessions/{id}/player?apiKey={KEY}"),
        "",
    );
    assert_eq!(status, 302);
    d.stop();
}

#[test]
fn a_viewer_does_not_keep_a_session_from_idling_out() {
    use tokio_tungstenite::tungstenite::connect;
    let d = TestDaemon::start_with(&["--api-key", KEY]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let s = d.create(&["--inactivity-timeout", "3s", "--timeout", "0"]);
    let id = s["id"].as_str().unwrap().to_string();
    let url = format!(
        "{}/v1/sessions/cast?sessionId={id}&pageIndex=0&apiKey={KEY}",
        api.replacen("http", "ws", 1)
    );
    // Eight viewers at once; a ninth is refused with a reason, before any upgrade.
    let mut others: Vec<_> = (0..7)
        .map(|_| connect(url.as_str()).expect("a cast socket opens").0)
        .collect();
    let (mut ws, _) = connect(url.as_str()).expect("the cast socket opens");
    match connect(url.as_str()) {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            assert!(body.contains("viewers"), "{body}");
        }
        other => panic!("a ninth viewer was not refused: {:?}", other.map(|_| ())),
    }
    for other in &mut others {
        other.close(None).unwrap();
    }
    drop(others);
    // The viewer reads (and answers pings) until its socket ends with the session.
    let reader = std::thread::spawn(move || {
        let mut messages = 0;
        while ws.read().is_ok() {
            messages += 1;
        }
        messages
    });
    assert!(
        wait_for(|| d.get(&id)["status"] == "released"),
        "{}",
        d.get(&id)
    );
    assert_eq!(d.get(&id)["reason"], "inactivity timeout");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the viewer socket outlived its session"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reader.join().unwrap() >= 1, "no frame came");
    d.stop();
}
