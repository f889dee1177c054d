//! CDP requests for sessions of other nodes: passed on once, never twice.

use axum::body::Body;
use axum::http::Request;

use super::Harness;
use super::fake_restate::live_record;
use crate::node::auth::NODE_AUTH_HEADER;
use crate::protocol::session::{SessionId, SessionRecord};

/// A live session that node `n2` owns, known to the fake Restate.
fn on_other_node(h: &Harness) -> SessionRecord {
    let rec = SessionRecord {
        node: "n2".into(),
        ..live_record(&SessionId::random())
    };
    h.restate.put(rec.clone());
    rec
}

/// A GET of `uri`, a websocket upgrade when `upgrade`, carrying a node signature when
/// `signed` (its value does not matter: it is never passed on).
fn request(uri: &str, upgrade: bool, signed: bool) -> Request<Body> {
    let mut req = Request::get(uri);
    if upgrade {
        req = req
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    }
    if signed {
        req = req.header(NODE_AUTH_HEADER, "1800000000.00.00");
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_node_signed_request_for_another_nodes_session_is_refused_409() {
    let h = Harness::new().await;
    let rec = on_other_node(&h);
    let id = rec.id.as_str();
    for (uri, upgrade) in [
        (format!("/json/version?sessionId={id}"), false),
        (format!("/json/list?sessionId={id}"), false),
        (format!("/?sessionId={id}"), true),
        (format!("/devtools/page/P1?sessionId={id}"), true),
    ] {
        let reply = h.tcp(request(&uri, upgrade, true)).await;
        reply.assert_error(409, "forwarded by another node");
        assert!(
            reply.json()["message"]
                .as_str()
                .unwrap()
                .contains("node n2")
        );
    }
    // Unsigned, the same socket request is passed on; this daemon runs alone, so the owner
    // is unknown here.
    let reply = h
        .tcp(request(&format!("/?sessionId={id}"), true, false))
        .await;
    reply.assert_error(503, "node n2 is not known here");
}
