//! The live viewer's routes: the page (statuses, key in the URL, redirect after the session,
//! escaping), and the cast websocket over a real TCP socket in front of the fake host
//! (input reaches the host; a bad message is dropped, while a flood of them, oversized and
//! binary messages end the socket and its screencast).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::fake_restate::ended;
use super::*;
use crate::host::HostErrorKind;
use crate::protocol::cast::{CastInput, MAX_INPUT_MESSAGE};
use crate::protocol::session::SessionStatus;

const KEY: &str = "viewer-test-key-0123456789";

fn upgrade(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("host", "127.0.0.1:3000")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn the_player_page_is_served_with_its_config_and_guards() {
    let h = Harness::new().await;
    let id = h.live().id;
    let reply = h
        .tcp(get(&format!(
            "/v1/sessions/{id}/player?theme=light&interactive=false&pageIndex=1"
        )))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(reply.headers["referrer-policy"], "no-referrer");
    let csp = reply.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'nonce-") && csp.contains("frame-ancestors"),
        "{csp}"
    );
    // Images only from here or data: URLs: a page's favicon URL must not make the viewing
    // browser fetch from its LAN.
    let img = csp.split(';').find(|d| d.trim().starts_with("img-src"));
    assert_eq!(img.map(str::trim), Some("img-src 'self' data:"), "{csp}");
    let body = String::from_utf8_lossy(&reply.body);
    assert!(body.contains(&format!("\"sessionId\":\"{id}\"")), "{body}");
    assert!(body.contains("\"theme\":\"light\"") && body.contains("\"interactive\":false"));
    assert!(body.contains("\"pageIndex\":1"));
    assert!(!body.contains("{{"), "a placeholder was left");

    // steel's route finds the one live session without a sessionId.
    let reply = h.tcp(get("/v1/sessions/debug?showControls=false")).await;
    assert_eq!(reply.status, 200);
    assert!(String::from_utf8_lossy(&reply.body).contains(&format!("\"sessionId\":\"{id}\"")));
    assert!(
        h.host.calls().is_empty(),
        "the page alone touches no browser"
    );
}

#[tokio::test]
async fn bad_input_unknown_and_ended_sessions() {
    let h = Harness::new().await;
    let id = h.live().id;
    for bad in [
        "theme=blue",
        "interactive=maybe",
        "showControls=2",
        "pageIndex=-1",
        "pageId=%3Cscript%3E",
    ] {
        let reply = h.tcp(get(&format!("/v1/sessions/{id}/player?{bad}"))).await;
        reply.assert_error(400, "");
    }
    h.tcp(get("/v1/sessions/not-an-id/player"))
        .await
        .assert_error(400, "");
    let unknown = SessionId::random();
    h.tcp(get(&format!("/v1/sessions/{unknown}/player")))
        .await
        .assert_error(404, "");
    h.tcp(get(&format!("/v1/sessions/debug?sessionId={unknown}")))
        .await
        .assert_error(404, "");

    // Over: to the replay, the key kept.
    let done = ended(h.live(), SessionStatus::Released, "released");
    h.restate.put(done.clone());
    let reply = h
        .tcp(get(&format!(
            "/v1/sessions/{}/player?apiKey=a%26b",
            done.id
        )))
        .await;
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.headers["location"],
        format!("/v1/sessions/{}/replay?apiKey=a%26b", done.id)
    );
}

#[tokio::test]
async fn a_key_in_the_url_opens_the_page_and_is_escaped_into_it() {
    let h = Harness::with_key(KEY).await;
    let id = h.live().id;
    h.tcp(get(&format!("/v1/sessions/{id}/player")))
        .await
        .assert_error(401, "API key");
    let reply = h
        .tcp(get(&format!("/v1/sessions/{id}/player?apiKey={KEY}")))
        .await;
    assert_eq!(reply.status, 200);
    assert!(String::from_utf8_lossy(&reply.body).contains(&format!("\"apiKey\":\"{KEY}\"")));

    // Without a daemon key, whatever comes as apiKey is data in the page, never markup.
    let h = Harness::new().await;
    let id = h.live().id;
    let reply = h
        .tcp(get(&format!(
            "/v1/sessions/{id}/player?apiKey=%3C%2Fscript%3E%3Cscript%3Ealert(1)"
        )))
        .await;
    let body = String::from_utf8_lossy(&reply.body);
    assert_eq!(body.matches("</script>").count(), 2, "{body}");
    assert!(body.contains("\\u003c/script\\u003e"));
}

#[tokio::test]
async fn the_cast_socket_answers_statuses_before_it_upgrades() {
    let h = Harness::new().await;
    let id = h.live().id;
    h.tcp(get(&format!("/v1/sessions/cast?sessionId={id}")))
        .await
        .assert_error(400, "websocket");
    let unknown = SessionId::random();
    h.tcp(upgrade(&format!(
        "/v1/sessions/cast?sessionId={unknown}&pageIndex=0"
    )))
    .await
    .assert_error(404, "");
    h.tcp(upgrade(&format!(
        "/v1/sessions/cast?sessionId={id}&maxFps=lots"
    )))
    .await
    .assert_error(400, "maxFps");
    let reply = h
        .tcp(upgrade(&format!(
            "/v1/sessions/cast?sessionId={id}&pageIndex=1&interactive=false"
        )))
        .await;
    assert_eq!(reply.status, 101);
    assert_eq!(
        reply.headers["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(h.host.calls(), ["screencast 4242 Some(Index(1)) false"]);

    h.host.fail("screencast", HostErrorKind::Busy, "8 viewers");
    h.tcp(upgrade(&format!(
        "/v1/sessions/cast?sessionId={id}&pageIndex=0"
    )))
    .await
    .assert_error(429, "8 viewers");
    h.host
        .fail("screencast", HostErrorKind::NotFound, "no page");
    h.tcp(upgrade(&format!(
        "/v1/sessions/cast?sessionId={id}&pageId=P9"
    )))
    .await
    .assert_error(404, "no page");
}

/// The TCP router on a real socket; its address.
async fn serve(h: &Harness) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tcp_router(Arc::clone(&h.state));
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Waits until the fake host runs `n` screencasts.
async fn casts_reach(h: &Harness, n: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.host.casts_open() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "casts stay at {}",
            h.host.casts_open()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn hostile_messages_end_the_socket_and_its_screencast() {
    let h = Harness::new().await;
    let id = h.live().id;
    let addr = serve(&h).await;
    let url = format!("ws://{addr}/v1/sessions/cast?sessionId={id}&pageIndex=0");
    let open = || async {
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        ws
    };

    // A frame comes; a click reaches the host.
    let mut ws = open().await;
    let first = ws.next().await.unwrap().unwrap();
    let frame: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(frame["pageId"], "P1");
    assert_eq!(frame["data"], "/9j/");
    let click = json!({"type": "mouseEvent", "pageId": "P1",
        "event": {"type": "mousePressed", "x": 5, "y": 6, "button": "left", "modifiers": 0}});
    ws.send(Message::text(click.to_string())).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.host.cast_inputs().is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        h.host.cast_inputs()[0],
        CastInput::MouseEvent { .. }
    ));
    // A second viewer at once.
    let second = open().await;
    casts_reach(&h, 2).await;
    drop(second);
    ws.close(None).await.unwrap();
    casts_reach(&h, 0).await;

    // One bad message is dropped, the socket stays: garbage, out-of-bounds figures, a
    // fast fourth click, a message of a newer viewer.
    let mut ws = open().await;
    let _frame = ws.next().await;
    let bad = [
        "{not json".to_string(),
        json!({"type": "mouseEvent", "event": {"type": "mouseMoved", "x": 1e300, "y": 0}})
            .to_string(),
        json!({"type": "mouseEvent", "event": {"type": "mousePressed", "x": 1, "y": 1,
            "button": "left", "clickCount": 4}})
        .to_string(),
        json!({"type": "mouseEvent", "event": {"type": "mousePressed", "x": 1, "y": 1,
            "button": "sideways"}})
        .to_string(),
    ];
    for msg in &bad {
        ws.send(Message::text(msg.clone())).await.unwrap();
    }
    // steel's back button is a button, and still reaches the host after the bad ones.
    let back = json!({"type": "mouseEvent", "event": {"type": "mousePressed", "x": 1, "y": 1,
        "button": "back", "buttons": 8}});
    ws.send(Message::text(back.to_string())).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.host.cast_inputs().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the socket closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.host.casts_open(), 1);
    // A flood of bad messages ends it, with a reason a close frame can carry.
    // (serde names the unknown variant in its reason: 400 bytes of it.)
    let long = json!({"type": "mouseEvent", "event": {"type": "é".repeat(200), "x": 1, "y": 1}})
        .to_string();
    let closed = loop {
        if ws.send(Message::text(long.clone())).await.is_err() {
            break None;
        }
        if let Ok(Some(Ok(Message::Close(frame)))) =
            tokio::time::timeout(Duration::from_millis(5), ws.next()).await
        {
            break frame;
        }
    };
    let closed = match closed {
        Some(frame) => Some(frame),
        None => loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        },
    }
    .expect("a close frame with a code");
    assert_eq!(closed.code, CloseCode::Policy);
    assert!(closed.reason.len() <= 123, "{}", closed.reason.len());
    assert!(closed.reason.starts_with("too many bad messages"));
    casts_reach(&h, 0).await;

    // Binary ends the socket with a reason.
    let mut ws = open().await;
    let _frame = ws.next().await;
    ws.send(Message::binary(vec![0u8; 16])).await.unwrap();
    let closed = loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(closed.unwrap().code, CloseCode::Unsupported);
    casts_reach(&h, 0).await;

    // A message over the limit ends the socket (tungstenite refuses to read it).
    let mut ws = open().await;
    let _frame = ws.next().await;
    let big = format!(
        "{{\"type\":\"x\",\"pad\":\"{}\"}}",
        "a".repeat(MAX_INPUT_MESSAGE)
    );
    let _ = ws.send(Message::text(big)).await;
    casts_reach(&h, 0).await;
    let inputs = h.host.cast_inputs();
    assert_eq!(inputs.len(), 2, "only the clicks got through: {inputs:?}");
}

#[tokio::test]
async fn a_bad_query_for_another_nodes_session_is_400_not_a_forward() {
    let h = Harness::new().await;
    let rec = crate::protocol::session::SessionRecord {
        node: "n2".into(),
        ..super::fake_restate::live_record(&SessionId::random())
    };
    h.restate.put(rec.clone());
    let id = rec.id.as_str();
    for (bad, name) in [
        ("quality=high", "quality"),
        ("maxWidth=-1", "maxWidth"),
        ("maxHeight=x", "maxHeight"),
        ("maxFps=lots", "maxFps"),
        ("pageId=%3Cscript%3E", "pageId"),
        ("interactive=maybe", "interactive"),
        ("tabInfo=2", "tabInfo"),
    ] {
        h.tcp(upgrade(&format!("/v1/sessions/cast?sessionId={id}&{bad}")))
            .await
            .assert_error(400, name);
    }
    assert!(h.host.calls().is_empty());
}
