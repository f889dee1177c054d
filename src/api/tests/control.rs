//! bro's control routes (`/bro/v1/...`): on the Unix socket only.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::fake_host::USAGE;
use super::fake_restate::ended;
use super::{Harness, get, post};
use crate::host::HostErrorKind;
use crate::protocol::control::{DaemonStatus, Dashboard};
use crate::protocol::session::{SessionId, SessionStatus};

#[tokio::test]
async fn control_routes_are_not_on_the_tcp_port() {
    let h = Harness::new().await;
    for uri in ["/bro/v1/status", "/bro/v1/dashboard"] {
        h.tcp(get(uri)).await.assert_error(404, "not found");
    }
    let reply = h.tcp(post("/bro/v1/shutdown", json!({}))).await;
    reply.assert_error(404, "Route POST:/bro/v1/shutdown not found");
    assert!(!h.state.control.shutdown.is_cancelled());
}

#[tokio::test]
async fn the_status_carries_the_pool_read_from_restate() {
    let h = Harness::new().await;
    let reply = h.unix(get("/bro/v1/status")).await;
    assert_eq!(reply.status, 200);
    let status: DaemonStatus = serde_json::from_slice(&reply.body).unwrap();
    let pool = status.pool.expect("a pool");
    assert_eq!((pool.capacity, pool.used), (4, 0));
    assert_eq!(status.node, "local");
}

#[tokio::test]
async fn the_dashboard_shows_live_sessions_with_their_browsers_figures() {
    let h = Harness::new().await;
    let live = h.live();
    let done = ended(h.live(), SessionStatus::Released, "released");
    h.restate.put(done.clone());
    let reply = h.unix(get("/bro/v1/dashboard")).await;
    assert_eq!(reply.status, 200);
    let dash: Dashboard = serde_json::from_slice(&reply.body).unwrap();
    assert!(dash.restate_ok);
    assert_eq!(dash.sessions.len(), 2);
    let row = |id: &SessionId| dash.sessions.iter().find(|r| r.session.id == id.as_str());
    let live_row = row(&live.id).unwrap();
    assert_eq!(live_row.pid, Some(4242));
    assert_eq!(live_row.mem_kib, USAGE.mem_kib);
    assert_eq!(live_row.processes, USAGE.processes);
    let done_row = row(&done.id).unwrap();
    assert_eq!((done_row.pid, done_row.mem_kib), (None, 0));
    assert_eq!(dash.workers.len(), 1);
    assert_eq!(dash.workers[0].session.as_deref(), Some(live.id.as_str()));
    assert_eq!(h.host.calls(), ["usage [4242]"]);
}

#[tokio::test]
async fn a_preview_comes_from_the_host_and_its_failure_is_502() {
    let h = Harness::new().await;
    let id = h.live().id;
    let uri = format!("/bro/v1/sessions/{id}/preview?width=10");
    let reply = h.unix(get(&uri)).await;
    assert_eq!(reply.status, 200);
    let expected = json!({"url": "https://example.com/", "title": "Example", "jpeg": "/9j/"});
    assert_eq!(reply.json(), expected);
    // The width is clamped; the record is read from state, not through `Session/get`.
    assert_eq!(h.host.calls(), ["preview 4242 64"]);
    assert_eq!(h.restate.handlers(), ["query"]);

    h.host.fail("preview", HostErrorKind::Retryable, "no page");
    let reply = h.unix(get(&uri)).await;
    reply.assert_error(502, "preview failed: no page");
}

#[tokio::test]
async fn a_preview_of_an_unknown_or_ended_session_is_404() {
    let h = Harness::new().await;
    let unknown = SessionId::random();
    let reply = h
        .unix(get(&format!("/bro/v1/sessions/{unknown}/preview")))
        .await;
    reply.assert_error(404, &format!("session {unknown} not found"));
    let rec = ended(h.live(), SessionStatus::Failed, "crashed");
    h.restate.put(rec.clone());
    let reply = h
        .unix(get(&format!("/bro/v1/sessions/{}/preview", rec.id)))
        .await;
    reply.assert_error(404, "is failed");
    let reply = h.unix(get("/bro/v1/sessions/nope/preview")).await;
    reply.assert_error(400, "must be a UUID");
    assert!(h.host.calls().is_empty());
}

#[tokio::test]
async fn shutdown_stops_the_daemon_keeping_sessions_when_asked() {
    let h = Harness::new().await;
    let reply = h
        .unix(post("/bro/v1/shutdown", json!({"keepSessions": true})))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"status": "stopping"}));
    assert!(h.state.control.shutdown.is_cancelled());
    assert!(h.state.control.keep_sessions.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_journal_id_that_is_not_one_reads_nothing() {
    let h = Harness::new().await;
    let reply = h
        .unix(get("/bro/v1/invocations/x'%20OR%201=1/journal"))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!([]));
    assert!(h.restate.calls().is_empty());
}
