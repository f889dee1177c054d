//! Sessions end to end: create, CDP through the proxy, kill, timeout, idempotent ids.

use crate::helper::open_tab;
use crate::helper::{TestDaemon, cdp_browser_version, group_members, is_live, wait_for};
use bro::worker::process::thread_nices;

#[test]
fn create_connect_kill_leaves_nothing() {
    let d = TestDaemon::start();
    let s = d.create(&[
        "--width",
        "800",
        "--height",
        "600",
        "--user-agent",
        "bro-it/1",
    ]);
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["status"], "live");
    assert_eq!(s["timeout"], 300_000);
    assert_eq!(s["dimensions"]["width"], 800);
    let api = d.status["api_url"].as_str().unwrap();
    let ws = s["websocketUrl"].as_str().unwrap();
    assert_eq!(ws, format!("{}/?sessionId={id}", api.replace("http", "ws")));

    // The proxied socket answers, and the steel clients' `&apiKey=` suffix is tolerated.
    let product = cdp_browser_version(&format!("{ws}&apiKey=anything"));
    assert!(product.starts_with("Chrome/"), "{product}");

    let pid = d.browser_pid(&id);
    let dir = d.session_dir(&id);
    assert!(dir.join("profile").is_dir());
    // Offered compression, Chromium agrees to it; through bro the offer is dropped, so the
    // socket runs uncompressed (Chromium would deflate every message it sends).
    let active = std::fs::read_to_string(dir.join("profile/DevToolsActivePort")).unwrap();
    let (port, browser_path) = active.trim().split_once('\n').unwrap();
    let direct = upgrade_offering_deflate(&format!("127.0.0.1:{port}"), browser_path);
    assert!(direct.starts_with("http/1.1 101"), "{direct}");
    assert!(
        direct.contains("sec-websocket-extensions: permessage-deflate"),
        "{direct}"
    );
    let api_addr = api.trim_start_matches("http://");
    let proxied = upgrade_offering_deflate(api_addr, &format!("/?sessionId={id}"));
    assert!(proxied.starts_with("http/1.1 101"), "{proxied}");
    assert!(!proxied.contains("sec-websocket-extensions"), "{proxied}");
    assert!(!group_members(pid).is_empty());
    // No renderer for the address bar's WebUI drop-down (more than half of a fresh
    // browser's CPU, invisible headless): without bro's flags it starts within a second.
    for _ in 0..20 {
        let webui: Vec<u32> = group_members(pid)
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("--top-chrome-webui"))
            })
            .collect();
        assert!(webui.is_empty(), "top-chrome WebUI renderer(s) {webui:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Run as root (as CI does), Chromium would put threads at nice -8, above the daemon and
    // restate-server; bro's browsers cannot.
    let boosted: Vec<String> = group_members(pid)
        .into_iter()
        .flat_map(|p| {
            thread_nices(p)
                .into_iter()
                .filter(|nice| *nice < 0)
                .map(move |nice| format!("process {p}: a thread at nice {nice}"))
        })
        .collect();
    assert!(
        boosted.is_empty(),
        "browser threads above nice 0: {boosted:?}"
    );

    let out = d.ok(&["session", "kill", &id]);
    assert!(out.contains(&id), "{out}");
    assert!(
        group_members(pid).is_empty(),
        "browser group {pid} still runs"
    );
    assert!(!is_live(pid));
    assert!(!dir.exists(), "profile dir not removed");
    let after = d.get(&id);
    assert_eq!(after["status"], "released");
    d.stop();
}

#[test]
fn a_timeout_releases_the_session_by_itself() {
    let d = TestDaemon::start();
    let s = d.create(&["--timeout", "2s"]);
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["timeout"], 2000);
    let pid = d.browser_pid(&id);
    assert!(
        wait_for(|| d.status_of(&id) == "released"),
        "not released after its timeout"
    );
    assert!(group_members(pid).is_empty());
    assert!(!d.session_dir(&id).exists());
    assert_eq!(d.get(&id)["reason"], "timeout");
    d.stop();
}

#[test]
fn creating_twice_with_one_id_gives_one_session_and_one_browser() {
    let d = TestDaemon::start();
    let id = "6a0d8a3e-2f0b-4c8e-9f5e-1b2c3d4e5f60";
    let first = d.create(&["--session-id", id]);
    let pid = d.browser_pid(id);
    let second = d.create(&["--session-id", id]);
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["createdAt"], second["createdAt"]);
    assert_eq!(d.browser_pid(id), pid, "a second browser was launched");
    let browsers = crate::helper::leftovers(d.home.path())
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("--user-data-dir") && !c.contains("--type="))
        })
        .count();
    assert_eq!(browsers, 1, "one browser process expected");
    let list = d.json(&["session", "list", "--json"]);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    d.stop();
}

#[test]
fn list_filters_by_status_and_kill_all_releases_everything() {
    let d = TestDaemon::start();
    let a = d.create(&[]);
    let b = d.create(&["--timeout", "0"]);
    assert_eq!(b["timeout"], 0);
    d.ok(&["session", "kill", a["id"].as_str().unwrap()]);
    let live = d.json(&["session", "list", "--status", "live", "--json"]);
    let ids: Vec<&str> = live["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b["id"].as_str().unwrap()]);
    let table = d.ok(&["session", "list"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("released") && table.contains("never"),
        "{table}"
    );
    let all = d.json(&["session", "kill", "--all", "--json"]);
    assert_eq!(all["released"].as_array().unwrap().len(), 1);
    assert_eq!(d.status_of(b["id"].as_str().unwrap()), "released");
    d.stop();
}

/// A `sessionContext` goes in (typed cookies, localStorage written from bro's own page) and
/// comes back out of the live browser, cookies as the browser wrote them, so a context read
/// from one session starts the next.
#[test]
fn a_session_context_goes_in_and_comes_back_out() {
    use std::io::{Read, Write};
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://127.0.0.1:{}", server.local_addr().unwrap().port());
    std::thread::spawn(move || {
        // A thread each: Chromium opens connections it may never use.
        for mut conn in server.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let body = "<!doctype html><title>ctx</title>";
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    let d = TestDaemon::start();
    let api = d.status["api_url"].as_str().unwrap().to_string();
    // A cookie as `GET .../context` gives it, output-only keys included.
    let cookie = serde_json::json!({
        "name": "who", "value": "a", "domain": "127.0.0.1", "path": "/", "expires": -1,
        "size": 4, "httpOnly": false, "secure": false, "session": true, "sameSite": "Lax",
        "priority": "Medium", "sameParty": false, "sourceScheme": "NonSecure",
        "sourcePort": 80, "partitionKeyOpaque": false,
    });
    let mut context = serde_json::json!({
        "cookies": [cookie],
        "localStorage": { origin.clone(): { "kept": "yes" } },
    });
    for round in 0..2 {
        let body = serde_json::json!({ "sessionContext": context }).to_string();
        let (status, out) = crate::helper::http(&api, "POST", "/v1/sessions", &body);
        assert_eq!(
            status,
            200,
            "round {round}: {}",
            String::from_utf8_lossy(&out)
        );
        let s: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let id = s["id"].as_str().unwrap();
        open_tab(s["websocketUrl"].as_str().unwrap(), &format!("{origin}/"));
        let path = format!("/v1/sessions/{id}/context");
        let mut got = serde_json::Value::Null;
        assert!(
            wait_for(|| {
                got = serde_json::from_slice(&crate::helper::http(&api, "GET", &path, "").1)
                    .unwrap_or_default();
                got["localStorage"][&origin]["kept"] == "yes"
            }),
            "round {round}: {got}"
        );
        let cookies = got["cookies"].as_array().unwrap();
        assert!(
            cookies
                .iter()
                .any(|c| c["name"] == "who" && c["value"] == "a" && c["sameSite"] == "Lax"),
            "round {round}: {got}"
        );
        context = got;
    }
    d.stop();
}

/// A stop that comes while a create's browser is starting ends that launch through its own
/// error path: the create fails (it does not hang), and no process or session dir is left.
#[test]
fn a_stop_during_a_cold_launch_leaves_nothing() {
    let d = TestDaemon::start();
    let sessions = d.home.path().join("data/sessions");
    let home = d.home.path().to_path_buf();
    let create =
        std::thread::spawn(move || crate::helper::bro_in(&home, &["session", "create", "--json"]));
    let started = std::time::Instant::now();
    let mut launching = false;
    while !launching && started.elapsed() < std::time::Duration::from_secs(30) {
        launching = std::fs::read_dir(&sessions).is_ok_and(|mut dir| dir.next().is_some());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(launching, "no launch began within 30 s");
    d.stop();
    let out = create.join().unwrap();
    let said = crate::helper::text(&out);
    // Either the create won the race with the stop (live, then released by it) or it
    // failed saying why; it never hangs and never leaves its browser.
    assert!(
        said.contains("\"live\"") || said.contains("the daemon is stopping"),
        "{said}"
    );
}

/// Sends a websocket upgrade offering `permessage-deflate` to `addr` for `path` and returns
/// the answer's head, lowercased; the socket is closed after it.
fn upgrade_offering_deflate(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(crate::helper::TIMEOUT)).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}
