//! `GET /v1/sessions/{id}/events`: pages of the owning host's recording, Steel Cloud's shape.

use serde_json::json;

use super::fake_restate::live_record;
use super::{Harness, get, post};
use crate::protocol::session::{SessionId, SessionRecord};

/// A live session created with `record`.
fn recorded(h: &Harness) -> SessionRecord {
    let mut rec = live_record(&SessionId::random());
    rec.options.record = true;
    h.restate.put(rec.clone());
    rec
}

#[tokio::test]
async fn events_are_a_json_array_paged_by_next_cursor() {
    let h = Harness::new().await;
    let id = recorded(&h).id;
    let reply = h.tcp(get(&format!("/v1/sessions/{id}/events"))).await;
    assert_eq!(reply.status, 200);
    let events = reply.json();
    assert_eq!(events[0]["type"], 4);
    assert_eq!(events[1]["type"], 2);
    assert_eq!(reply.headers["next-cursor"], "1");
    let reply = h
        .tcp(get(&format!(
            "/v1/sessions/{id}/events?pointer=1&limit=5&compressed=false"
        )))
        .await;
    assert_eq!(
        reply.json(),
        json!([{"type": 3, "data": {"source": 0}, "timestamp": 3, "pageId": "P1"}])
    );
    assert!(reply.headers.get("next-cursor").is_none());
    assert_eq!(
        h.host.calls(),
        [
            format!("recording {id} 0 10000"),
            format!("recording {id} 1 5")
        ]
    );
}

#[tokio::test]
async fn a_session_without_record_has_no_events_and_bad_input_is_400() {
    let h = Harness::new().await;
    let id = h.live().id;
    let reply = h.tcp(get(&format!("/v1/sessions/{id}/events"))).await;
    assert_eq!((reply.status.as_u16(), reply.json()), (200, json!([])));
    for (query, part) in [
        ("limit=0", "limit must be"),
        ("limit=10001", "limit must be"),
        ("limit=-3", "limit must be"),
        ("pointer=x", "pointer 'x' is not one"),
    ] {
        let reply = h
            .tcp(get(&format!("/v1/sessions/{id}/events?{query}")))
            .await;
        reply.assert_error(400, part);
    }
    let unknown = SessionId::random();
    let reply = h.tcp(get(&format!("/v1/sessions/{unknown}/events"))).await;
    reply.assert_error(404, &format!("session {unknown} not found"));
    assert!(h.host.calls().is_empty(), "{:?}", h.host.calls());
}

#[tokio::test]
async fn a_create_asking_to_record_without_rrweb_is_400() {
    let mut h = Harness::new().await;
    h.set_recording(false, false);
    let reply = h.tcp(post("/v1/sessions", json!({"record": true}))).await;
    reply.assert_error(400, "install.sh");
    // Without asking, it does not record.
    let reply = h.tcp(post("/v1/sessions", json!({}))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(h.restate.calls()[0].body["options"].get("record"), None);
}

#[tokio::test]
async fn the_daemon_default_applies_unless_the_create_says() {
    let mut h = Harness::new().await;
    h.set_recording(true, true);
    h.tcp(post("/v1/sessions", json!({}))).await;
    h.tcp(post("/v1/sessions", json!({"record": false}))).await;
    let calls = h.restate.calls();
    assert_eq!(calls[0].body["options"]["record"], true);
    assert_eq!(calls[1].body["options"].get("record"), None);
}

/// `blockHosts` takes host names: a URL, wildcard or `host:port` would block nothing, so a
/// create with one is a 400 that says so, and nothing is created.
#[tokio::test]
async fn a_create_blocking_a_host_that_is_no_host_name_is_400() {
    let h = Harness::new().await;
    for bad in [
        "https://ads.example.com",
        "*.ads.example.com",
        "ads.example.com:443",
        "ads.example.com/path",
        "ads example.com",
    ] {
        let body = json!({"optimizeBandwidth": {"blockHosts": [bad]}});
        let reply = h.tcp(post("/v1/sessions", body)).await;
        reply.assert_error(400, "optimizeBandwidth.blockHosts[0] must be a host name");
    }
    assert!(h.restate.calls().is_empty());
    let body = json!({"optimizeBandwidth": {"blockHosts": ["ads.example.com.", "Bücher.example"]}});
    assert_eq!(h.tcp(post("/v1/sessions", body)).await.status, 200);
}
