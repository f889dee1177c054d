//! Hostile input and access: bad bodies, foreign origins and hosts, websocket upgrades for
//! sessions that are not live, a Restate that went away, and schemathesis fuzzing the
//! OpenAPI description. Never a 5xx, except the 503 that says Restate is unreachable.

use crate::helper::{TestDaemon, http, http_with};

#[test]
fn bad_input_gets_4xx_and_foreign_callers_403() {
    let d = TestDaemon::start();
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let host = api.trim_start_matches("http://").to_string();

    for (body, want) in [
        ("{not json", 400),
        (r#"{"timeout":"soon"}"#, 400),
        (r#"{"sessionId":"not-a-uuid"}"#, 400),
        (r#"{"dimensions":{"width":0,"height":10}}"#, 400),
        (r#"{"proxyUrl":"gopher://x"}"#, 400),
        ("[]", 400),
        (
            r#"{"sessionContext":{"cookies":[{"name":1,"value":"v"}]}}"#,
            400,
        ),
        (r#"{"sessionContext":{"cookies":["a=b"]}}"#, 400),
        // Well-formed, but the browser refuses it (found by schemathesis): the client's fault.
        (
            r#"{"sessionContext":{"cookies":[{"name":"a","value":"b","domain":"x.test","httpOnly":"yes"}]}}"#,
            422,
        ),
    ] {
        let (status, out) = http(&api, "POST", "/v1/sessions", body);
        assert_eq!(status, want, "{body}: {}", String::from_utf8_lossy(&out));
        let err: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(err["statusCode"], want);
    }
    assert_eq!(http(&api, "GET", "/v1/sessions/not-a-uuid", "").0, 400);
    assert_eq!(http(&api, "GET", "/v1/sessions?limit=-1", "").0, 400);
    assert_eq!(http(&api, "GET", "/v1/nope", "").0, 404);
    let big = "x".repeat(2 << 20);
    assert_eq!(http(&api, "POST", "/v1/sessions", &big).0, 413);

    // A web page in the user's browser, and a DNS-rebound name, are refused.
    let evil = [("Host", host.as_str()), ("Origin", "https://evil.example")];
    assert_eq!(http_with(&api, "GET", "/v1/sessions", &evil, b"").0, 403);
    let local = [("Host", host.as_str()), ("Origin", "http://localhost:5173")];
    assert_eq!(http_with(&api, "GET", "/v1/sessions", &local, b"").0, 200);
    let rebound = [("Host", "rebound.example:3000")];
    assert_eq!(http_with(&api, "GET", "/v1/sessions", &rebound, b"").0, 403);

    // Upgrades for unknown or released sessions are refused before the upgrade.
    let upgrade = |id: &str| {
        let path = format!("/?sessionId={id}");
        let headers = [
            ("Host", host.as_str()),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ];
        http_with(&api, "GET", &path, &headers, b"").0
    };
    assert_eq!(upgrade("00000000-0000-4000-8000-000000000000"), 404);
    assert_eq!(upgrade("nope"), 400);
    let s = d.create(&[]);
    let id = s["id"].as_str().unwrap();
    d.ok(&["session", "kill", id]);
    assert_eq!(upgrade(id), 404);
    d.stop();
}

/// A daemon whose Restate went away answers 503 with a message that says so, and stops
/// cleanly. Restate here is another home's: bro does not restart a Restate it does not
/// supervise, so it stays away.
#[test]
fn restate_unreachable_is_a_503_that_says_so() {
    let owner = TestDaemon::start();
    let (_links, admin, ingress) = crate::helper::restate_links(&owner);
    let (admin, ingress) = (admin.as_str(), ingress.as_str());
    // An external Restate signs its calls with its own key; the guest must verify that one
    // (without it, the guest's endpoint refuses the owner's Restate: tested in plane.rs).
    let mut guest = TestDaemon::prepare();
    let key_dir = guest.home.path().join("data/restate");
    std::fs::create_dir_all(&key_dir).unwrap();
    std::fs::copy(
        owner.home.path().join("data/restate/identity.pem"),
        key_dir.join("identity.pem"),
    )
    .unwrap();
    guest.restart_with(&[
        "--restate-admin-url",
        admin,
        "--restate-ingress-url",
        ingress,
    ]);
    assert_eq!(guest.status["restate"]["supervised"], false);
    let api = guest.status["api_url"].as_str().unwrap().to_string();
    let (status, _) = http(&api, "GET", "/v1/sessions", "");
    assert_eq!(status, 200);

    owner.stop(); // and with it, the Restate the guest uses
    for (method, path, body) in [
        ("POST", "/v1/sessions", "{}"),
        ("GET", "/v1/sessions", ""),
        ("GET", &format!("/v1/sessions/{}", uuid::Uuid::new_v4()), ""),
    ] {
        let (status, body) = http(&api, method, path, body);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 503, "{method} {path}: {body}");
        assert!(body.contains("restate is unreachable"), "{body}");
    }
    let out = guest.bro(&["session", "list"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restate is unreachable"),
        "{}",
        crate::helper::text(&out)
    );
    guest.stop();
}

/// schemathesis generates requests for every operation of `/v1/openapi.json` (coverage,
/// fuzzing and stateful phases): no answer may be a 5xx.
#[test]
fn fuzzing_the_openapi_description_finds_no_server_error() {
    let st = crate::helper::python_venv().with_file_name("st");
    let d = TestDaemon::start_with(&["--max-sessions", "4", "--queue-timeout", "1s"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(st)
        .args(["run", &format!("{api}/v1/openapi.json")])
        .args(["--checks", "not_a_server_error", "--max-examples", "25"])
        .args(["--workers", "2", "--request-timeout", "60"])
        .current_dir(work.path())
        .output()
        .unwrap();
    let report = crate::helper::text(&out);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}"
    );
    let cases = report
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or("no summary");
    println!("schemathesis: {}", cases.trim());
    d.stop();
}
