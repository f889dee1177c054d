//! Quick actions (`/v1/scrape`, `/v1/screenshot`, `/v1/pdf`): in a session of their own or
//! in a client's live one.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::fake_restate::{Answer, ended};
use super::{Harness, get, post};
use crate::host::HostErrorKind;
use crate::protocol::session::SessionStatus;

#[tokio::test]
async fn a_scrape_runs_in_a_session_of_its_own_and_releases_it() {
    let h = Harness::new().await;
    let body = json!({"url": "example.com", "screenshot": true});
    let reply = h.tcp(post("/v1/scrape", body)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let expected = json!({
        "content": {"html": "<p>hi</p>"},
        "metadata": {"statusCode": 200},
        "screenshot": "anBlZw==",
    });
    assert_eq!(reply.json(), expected);
    assert_eq!(h.host.calls(), ["act 4242 https://example.com/"]);
    let handlers = h.restate.handlers();
    assert_eq!(handlers.len(), 2, "{handlers:?}");
    let id = handlers[0].strip_prefix("create ").unwrap();
    assert_eq!(handlers[1], format!("release {id}"));
    // Quick actions do not queue.
    assert_eq!(h.restate.calls()[0].body["wait"], false);
}

#[tokio::test]
async fn screenshot_and_pdf_answer_their_bytes() {
    let h = Harness::new().await;
    let reply = h
        .tcp(post("/v1/screenshot", json!({"url": "a.test"})))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "image/jpeg");
    assert_eq!(&reply.body[..], b"jpeg");
    let reply = h
        .tcp(post("/v1/sessions/pdf", json!({"url": "a.test"})))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/pdf");
    assert_eq!(&reply.body[..], b"%PDF");
}

#[tokio::test]
async fn a_page_the_host_refuses_is_422_other_host_failures_502() {
    let h = Harness::new().await;
    h.host
        .fail("act", HostErrorKind::Refused, "net::ERR_NAME_NOT_RESOLVED");
    let reply = h
        .tcp(post("/v1/scrape", json!({"url": "nowhere.test"})))
        .await;
    reply.assert_error(422, "net::ERR_NAME_NOT_RESOLVED");
    // The action's own session is released all the same.
    let handlers = h.restate.handlers();
    assert!(handlers[1].starts_with("release "), "{handlers:?}");

    h.host.fail(
        "act",
        HostErrorKind::Retryable,
        "the CDP connection was lost",
    );
    let reply = h.tcp(post("/v1/pdf", json!({"url": "a.test"}))).await;
    reply.assert_error(502, "the CDP connection was lost");
}

#[tokio::test]
async fn an_action_whose_session_fails_to_start_is_500_and_capacity_429() {
    let h = Harness::new().await;
    h.restate
        .script("create", Answer::Error(500, "chromium is missing".into()));
    let reply = h.tcp(post("/v1/scrape", json!({"url": "a.test"}))).await;
    reply.assert_error(500, "the action's session failed: chromium is missing");
    h.restate
        .script("create", Answer::Error(429, "node local is full".into()));
    let reply = h.tcp(post("/v1/scrape", json!({"url": "a.test"}))).await;
    reply.assert_error(429, "node local is full");
    assert_eq!(reply.headers["retry-after"], "5");
    assert!(h.host.calls().is_empty());
}

#[tokio::test]
async fn in_a_live_session_a_host_failure_is_502_or_404_once_it_ended() {
    let h = Harness::new().await;
    let rec = h.live();
    let id = rec.id.to_string();
    let body = json!({"url": "a.test", "sessionId": id});
    let reply = h.tcp(post("/v1/screenshot", body.clone())).await;
    assert_eq!(reply.status, 200);
    // No session of its own: the client's is neither created nor released.
    assert_eq!(h.restate.handlers(), [format!("get {id}")]);

    h.host
        .fail("act", HostErrorKind::Permanent, "target crashed");
    let reply = h.tcp(post("/v1/screenshot", body.clone())).await;
    reply.assert_error(502, "target crashed");

    h.restate.script("get", Answer::record(rec.clone()));
    let gone = ended(rec, SessionStatus::Released, "released");
    h.restate.script("get", Answer::record(gone));
    let reply = h.tcp(post("/v1/screenshot", body)).await;
    reply.assert_error(404, &format!("session {id} is released"));
}

#[tokio::test]
async fn file_urls_are_refused_over_tcp_but_loaded_for_the_owner() {
    let h = Harness::new().await;
    let body = json!({"url": "file:///etc/hosts"});
    let reply = h.tcp(post("/v1/scrape", body.clone())).await;
    reply.assert_error(
        400,
        "file:// URLs are loaded only for requests on bro's Unix socket",
    );
    assert!(h.restate.calls().is_empty());
    assert!(h.host.calls().is_empty());

    let reply = h.unix(post("/v1/scrape", body)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(h.host.calls(), ["act 4242 file:///etc/hosts"]);
}

#[tokio::test]
async fn bad_action_input_is_400_before_any_call() {
    let h = Harness::new().await;
    for (body, part) in [
        (json!({}), "a url is required"),
        (json!({"url": "ftp://x"}), "Invalid URL: ftp://x"),
        (
            json!({"url": "a.test", "delay": 30_001}),
            "delay must be at most",
        ),
        (
            json!({"url": "a.test", "format": ["gif"]}),
            "unknown format 'gif'",
        ),
        (
            json!({"url": "a.test", "sessionId": "nope"}),
            "must be a UUID",
        ),
    ] {
        h.tcp(post("/v1/scrape", body))
            .await
            .assert_error(400, part);
    }
    assert!(h.restate.calls().is_empty());
    assert!(h.host.calls().is_empty());
}

/// A screenshot or PDF asked for with `Accept: application/json` alone (the typed steel SDKs)
/// is Steel Cloud's `{"url"}`; the URL serves the bytes with their content type, on both doors.
#[tokio::test]
async fn a_client_that_accepts_only_json_gets_a_url_to_the_bytes() {
    let h = Harness::new().await;
    for (route, kind, bytes) in [
        ("/v1/screenshot", "image/jpeg", &b"jpeg"[..]),
        ("/v1/sessions/pdf", "application/pdf", &b"%PDF"[..]),
    ] {
        let reply = h.tcp(accepting("application/json", route)).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.headers["content-type"], "application/json");
        let body = reply.json();
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        let url = body["url"].as_str().unwrap();
        let path = url.strip_prefix(super::API_BASE).unwrap();
        assert!(path.starts_with("/v1/artifacts/"), "{url}");
        for reply in [h.tcp(get(path)).await, h.unix(get(path)).await] {
            assert_eq!(reply.status, 200);
            assert_eq!(reply.headers["content-type"], kind);
            assert_eq!(reply.headers["x-content-type-options"], "nosniff");
            assert_eq!(&reply.body[..], bytes);
        }
        // Kept as a private file named by the UUID alone.
        let name = path.rsplit('/').next().unwrap();
        let file = h.artifacts_home.path().join("artifacts").join(name);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A scrape's screenshot and PDF come as `{url}` objects too.
    let mut req = accepting("application/json", "/v1/scrape");
    *req.body_mut() = json!({"url": "a.test", "screenshot": true, "pdf": true})
        .to_string()
        .into();
    let body = h.tcp(req).await.json();
    for key in ["screenshot", "pdf"] {
        let url = body[key]["url"].as_str().unwrap();
        let reply = h.tcp(get(url.strip_prefix(super::API_BASE).unwrap())).await;
        assert_eq!(reply.status, 200, "{key}");
    }
}

/// Anything but `application/json` alone keeps steel-browser's bytes (curl, fetch, requests
/// send `*/*`).
#[tokio::test]
async fn any_other_accept_keeps_the_bytes() {
    let h = Harness::new().await;
    for accept in [
        "*/*",
        "image/jpeg",
        "application/json, */*",
        "application/json, image/*;q=0.8",
        "",
    ] {
        let reply = h.tcp(accepting(accept, "/v1/screenshot")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["content-type"], "image/jpeg", "{accept:?}");
        assert_eq!(&reply.body[..], b"jpeg");
    }
    let reply = h
        .tcp(accepting("application/json; charset=utf-8", "/v1/pdf"))
        .await;
    assert!(reply.json()["url"].is_string());
    assert!(
        std::fs::read_dir(h.artifacts_home.path().join("artifacts"))
            .unwrap()
            .count()
            == 1
    );
}

/// Artifact names are a UUID and an extension, nothing else: every other name is 404 and
/// never reaches the file system.
#[tokio::test]
async fn hostile_artifact_names_are_404() {
    let h = Harness::new().await;
    std::fs::write(h.artifacts_home.path().join("secret.jpg"), b"secret").unwrap();
    for name in [
        "..%2Fsecret.jpg",
        "%2E%2E%2Fsecret.jpg",
        "secret.jpg",
        "00000000-0000-4000-8000-000000000000.jpg",
        "00000000-0000-4000-8000-000000000000.jpg%00",
        "00000000-0000-4000-8000-000000000000.html",
        "x",
    ] {
        let reply = h.tcp(get(&format!("/v1/artifacts/{name}"))).await;
        reply.assert_error(404, "not found");
    }
    let reply = h.tcp(get("/v1/artifacts/a/b")).await;
    assert_eq!(reply.status, 404);
}

fn accepting(accept: &str, route: &str) -> axum::http::Request<axum::body::Body> {
    let mut req = post(route, json!({"url": "a.test"}));
    if !accept.is_empty() {
        req.headers_mut().insert("accept", accept.parse().unwrap());
    }
    req
}
