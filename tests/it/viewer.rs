//! The live viewer against a real daemon, session browser and viewer browser: Debian's
//! Chromium driven by playwright-core (`tests/compat/viewer.mjs`) sees the session's page,
//! types and clicks into it, switches tabs, runs two viewers at once and closes them; a
//! ninth viewer is refused; and a viewer's socket does not keep a session from idling out.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::compat::npm_ci;
use serde_json::{Value, json};

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
    assert!(wait_for(|| d.status_of(id) == "released"));
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
    let s = d.create(&["--inactivity-timeout", "8s", "--timeout", "0"]);
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
        wait_for(|| d.status_of(&id) == "released"),
        "{}",
        d.get(&id)
    );
    let rec = d.get(&id);
    assert_eq!(rec["reason"], "inactivity timeout", "{rec}");
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

/// A CDP connection to the session, driven by hand: calls in flat page sessions.
struct Cdp {
    ws: tokio_tungstenite::tungstenite::WebSocket<
        tokio_tungstenite::tungstenite::stream::MaybeTlsStream<std::net::TcpStream>,
    >,
    id: u64,
}

impl Cdp {
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        use tokio_tungstenite::tungstenite::Message;
        self.id += 1;
        let mut call = json!({"id": self.id, "method": method, "params": params});
        if let Some(s) = session {
            call["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(call.to_string())).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < end {
            if let Ok(Message::Text(t)) = self.ws.read() {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == self.id {
                    return v;
                }
            }
        }
        panic!("no answer to {method}");
    }

    /// Sends a call whose answer may never come (`Page.crash`).
    fn send(&mut self, session: &str, method: &str) {
        use tokio_tungstenite::tungstenite::Message;
        self.id += 1;
        let call = json!({"id": self.id, "method": method, "sessionId": session});
        self.ws.send(Message::text(call.to_string())).unwrap();
    }

    /// Attaches to page `target`; its flat session id.
    fn attach(&mut self, target: &str) -> String {
        let r = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        r["result"]["sessionId"].as_str().unwrap().to_string()
    }

    fn eval(&mut self, session: &str, expr: &str) -> Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["result"]["value"].clone()
    }
}

type Cast = tokio_tungstenite::tungstenite::WebSocket<
    tokio_tungstenite::tungstenite::stream::MaybeTlsStream<std::net::TcpStream>,
>;

/// A cast socket on page `page_id` (and the `extra` query), its reads bounded.
fn cast(api: &str, id: &str, page_id: &str, extra: &str) -> Cast {
    use tokio_tungstenite::tungstenite::stream::MaybeTlsStream;
    let url = format!(
        "{}/v1/sessions/cast?sessionId={id}&pageId={page_id}&apiKey={KEY}&maxFps=10{extra}",
        api.replacen("http", "ws", 1)
    );
    let (ws, _) = tokio_tungstenite::tungstenite::connect(url.as_str()).expect("a cast socket");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    ws
}

/// The messages a cast socket sends within `for_`, until it closes.
fn messages(ws: &mut Cast, for_: Duration) -> (Vec<Value>, bool) {
    use tokio_tungstenite::tungstenite::{Error, Message};
    let end = std::time::Instant::now() + for_;
    let mut got = Vec::new();
    while std::time::Instant::now() < end {
        match ws.read() {
            Ok(Message::Text(t)) => got.push(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(_)) => return (got, true),
            Ok(_) => {}
            Err(Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

fn frames(got: &[Value]) -> usize {
    got.iter().filter(|m| m["data"].is_string()).count()
}

#[test]
fn viewers_of_two_tabs_leave_both_running_and_a_crash_ends_its_screencast() {
    let d = TestDaemon::start_with(&["--api-key", KEY]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let s = d.create(&["--timeout", "0"]);
    let id = s["id"].as_str().unwrap().to_string();
    let ws_url = format!("{}&apiKey={KEY}", s["websocketUrl"].as_str().unwrap());
    let (ws, _) = tokio_tungstenite::tungstenite::connect(ws_url.as_str()).expect("CDP");
    if let tokio_tungstenite::tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    let mut cdp = Cdp { ws, id: 0 };

    // Two tabs, each painting ten times a second and counting its timer's ticks.
    let tick = "window.ticks = 0; setInterval(() => { document.body.textContent = ++window.ticks; }, 100); 1";
    let first = cdp.call(None, "Target.getTargets", json!({}))["result"]["targetInfos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .map(|t| t["targetId"].as_str().unwrap().to_string())
        .expect("the session's page");
    let second =
        cdp.call(None, "Target.createTarget", json!({"url": "about:blank"}))["result"]["targetId"]
            .as_str()
            .unwrap()
            .to_string();
    let s1 = cdp.attach(&first);
    let s2 = cdp.attach(&second);
    cdp.eval(&s1, tick);
    cdp.eval(&s2, tick);
    // The client brings the first tab to the front.
    cdp.call(None, "Target.activateTarget", json!({"targetId": first}));
    assert_eq!(cdp.eval(&s2, "document.visibilityState"), "hidden");

    // Viewer A on the first tab, then viewer B on the second, behind it: opening B leaves
    // the client's tab in front, visible, painting and running its timers.
    let mut a = cast(&api, &id, &first, "");
    let (got, closed) = messages(&mut a, Duration::from_secs(2));
    assert!(
        !closed && frames(&got) >= 2,
        "viewer A: {} frames",
        frames(&got)
    );
    let mut b = cast(&api, &id, &second, "");
    let ticks = cdp.eval(&s1, "window.ticks").as_i64().unwrap();
    let (got, closed) = messages(&mut a, Duration::from_secs(2));
    let ticked = cdp.eval(&s1, "window.ticks").as_i64().unwrap() - ticks;
    eprintln!(
        "with B open: A got {} frames, its tab ticked {ticked} times",
        frames(&got)
    );
    assert!(
        !closed && frames(&got) >= 2,
        "viewer A froze: {} frames",
        frames(&got)
    );
    assert!(
        ticked >= 10,
        "the first tab's timers slowed: {ticked} ticks in 2 s"
    );
    assert_eq!(cdp.eval(&s1, "document.visibilityState"), "visible");
    assert_eq!(cdp.eval(&s2, "document.visibilityState"), "hidden");

    // A user's tab switch (`activate`) brings the second tab forward: its frames come.
    let mut c = cast(&api, &id, &second, "&activate=true");
    let (got, closed) = messages(&mut c, Duration::from_secs(2));
    assert!(
        !closed && frames(&got) >= 2,
        "viewer C: {} frames",
        frames(&got)
    );
    assert_eq!(cdp.eval(&s2, "document.visibilityState"), "visible");
    let (got, _) = messages(&mut b, Duration::from_millis(600));
    assert!(
        frames(&got) >= 1,
        "viewer B got no frame of the tab in front"
    );
    // A viewer that does not take input does not switch tabs.
    cdp.call(None, "Target.activateTarget", json!({"targetId": first}));
    let watcher = cast(&api, &id, &second, "&activate=true&interactive=false");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cdp.eval(&s1, "document.visibilityState"), "visible");
    drop(watcher);
    drop(c);

    // The second tab's renderer crashes: its viewer is told and its socket ends; A goes on.
    cdp.send(&s2, "Page.crash");
    let (got, closed) = messages(&mut b, Duration::from_secs(10));
    assert!(
        got.iter()
            .any(|m| m["type"] == "targetClosed" && m["pageId"] == second.as_str()),
        "{got:?}"
    );
    assert!(closed, "the crashed tab's socket stays open");
    let details = |d: &TestDaemon| {
        let _ = d;
        let host = api.trim_start_matches("http://");
        let (_, body) = crate::helper::http_with(
            &api,
            "GET",
            &format!("/v1/sessions/{id}/live-details"),
            &[("Host", host), ("steel-api-key", KEY)],
            b"",
        );
        serde_json::from_slice::<Value>(&body).unwrap_or_default()["viewers"].clone()
    };
    assert!(wait_for(|| details(&d) == 1), "{}", details(&d));
    let (got, closed) = messages(&mut a, Duration::from_secs(2));
    assert!(
        !closed && frames(&got) >= 2,
        "viewer A stopped after B's crash"
    );
    drop(a);
    assert!(wait_for(|| details(&d) == 0), "{}", details(&d));
    d.stop();
}
