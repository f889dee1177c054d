//! The API key of the TCP port: where it may come from, what it guards, and what it does not.

use axum::body::Body;
use axum::http::Request;

use super::{Harness, get};

const KEY: &str = "0123456789abcdef-test-key";

fn with_header(uri: &str, key: &str) -> Request<Body> {
    Request::get(uri)
        .header("steel-api-key", key)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_request_without_the_key_or_with_a_wrong_one_is_401() {
    let h = Harness::with_key(KEY).await;
    let rec = h.live();
    for req in [
        get("/v1/sessions"),
        get(&format!("/v1/sessions/{}", rec.id)),
        with_header("/v1/sessions", "0123456789abcdef-test-kez"),
        with_header("/v1/sessions", ""),
        // A prefix of the key, and the key with more after it, are not the key.
        with_header("/v1/sessions", &KEY[..KEY.len() - 1]),
        with_header("/v1/sessions", &format!("{KEY}x")),
        get(&format!("/v1/sessions?apiKey={}", &KEY[..8])),
        // The key under another name is not looked at.
        get(&format!("/v1/sessions?api_key={KEY}")),
        get(&format!("/json/version?sessionId={}", rec.id)),
    ] {
        let uri = req.uri().to_string();
        let reply = h.tcp(req).await;
        assert_eq!(reply.status.as_u16(), 401, "{uri}");
        reply.assert_error(401, "API key");
    }
    assert!(
        h.host.calls().is_empty(),
        "no browser is touched without the key"
    );
}

#[tokio::test]
async fn the_key_in_the_header_or_the_query_is_let_through() {
    let h = Harness::with_key(KEY).await;
    let rec = h.live();
    let by_header = h.tcp(with_header("/v1/sessions", KEY)).await;
    assert_eq!(by_header.status.as_u16(), 200);
    let by_query = h
        .tcp(get(&format!("/v1/sessions/{}?apiKey={KEY}", rec.id)))
        .await;
    assert_eq!(by_query.status.as_u16(), 200);
    assert_eq!(by_query.json()["id"], rec.id.as_str());
}

#[tokio::test]
async fn health_is_open_and_the_unix_socket_needs_no_key() {
    let h = Harness::with_key(KEY).await;
    assert_eq!(h.tcp(get("/v1/health")).await.status.as_u16(), 200);
    assert_eq!(h.unix(get("/v1/sessions")).await.status.as_u16(), 200);
}

#[tokio::test]
async fn artifact_urls_need_no_key_but_nothing_else_under_them_passes() {
    let h = Harness::with_key(KEY).await;
    let name = format!("{}.jpg", uuid::Uuid::new_v4().hyphenated());
    // Unknown, but past the key check: the store answers.
    let reply = h.tcp(get(&format!("/v1/artifacts/{name}"))).await;
    reply.assert_error(404, "");
    for path in [
        "/v1/artifacts/not-a-uuid.jpg".to_string(),
        format!("/v1/artifacts/{name}/x"),
        format!("/v1/artifacts/{}", name.to_uppercase()),
        format!("/v1/artifacts/{name}.exe"),
        "/v1/artifactsx".to_string(),
    ] {
        let reply = h.tcp(get(&path)).await;
        assert_eq!(reply.status.as_u16(), 401, "{path}");
    }
}
