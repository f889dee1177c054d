//! `GET /metrics`: the API's access rules, the text format's content type, and the figures a
//! scrape reads (sessions by status, live browsers, Restate up or not).

use axum::body::Body;
use axum::http::Request;

use super::fake_host::USAGE;
use super::fake_restate::ended;
use super::{Harness, get};
use crate::protocol::session::SessionStatus;

const KEY: &str = "0123456789abcdef-test-key";

/// Held by each test here: scrapes share the process's limit of scrapes at once, which one
/// test's flood must not take from another's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bearer(value: &str) -> Request<Body> {
    Request::get("/metrics")
        .header("authorization", value)
        .body(Body::empty())
        .unwrap()
}

fn text(reply: &super::Reply) -> String {
    String::from_utf8(reply.body.to_vec()).unwrap()
}

#[tokio::test]
async fn metrics_need_the_key_when_one_is_set() {
    let _one = ONE_AT_A_TIME.lock().await;
    let h = Harness::with_key(KEY).await;
    for req in [
        get("/metrics"),
        get("/metrics?apiKey=0123456789abcdef-test-kez"),
        Request::get("/metrics")
            .header("steel-api-key", "nope")
            .body(Body::empty())
            .unwrap(),
        // Prometheus' `authorization`: a wrong token, another scheme, a malformed one.
        bearer("Bearer 0123456789abcdef-test-kez"),
        bearer(&format!("Basic {KEY}")),
        bearer(&format!("Bearer  {KEY}")),
        bearer(&format!("Bearer{KEY}")),
        bearer("Bearer"),
    ] {
        let reply = h.tcp(req).await;
        reply.assert_error(401, "API key");
    }
    let reply = h
        .tcp(
            Request::get("/metrics")
                .header("steel-api-key", KEY)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200);
    let reply = h.tcp(get(&format!("/metrics?apiKey={KEY}"))).await;
    assert_eq!(reply.status.as_u16(), 200);
    let reply = h.tcp(bearer(&format!("Bearer {KEY}"))).await;
    assert_eq!(reply.status.as_u16(), 200);
    // The owner's socket needs no key.
    assert_eq!(h.unix(get("/metrics")).await.status.as_u16(), 200);
}

#[tokio::test]
async fn a_scrape_is_the_text_format_with_this_nodes_sessions_and_browsers() {
    let _one = ONE_AT_A_TIME.lock().await;
    crate::prometheus::install("local");
    let h = Harness::new().await;
    let live = h.live();
    let gone = h.live();
    h.restate
        .put(ended(gone, SessionStatus::Released, "released"));
    let mut elsewhere =
        super::fake_restate::live_record(&crate::protocol::session::SessionId::random());
    elsewhere.node = "other".into();
    h.restate.put(elsewhere.clone());

    let reply = h.tcp(get("/metrics")).await;
    assert_eq!(reply.status.as_u16(), 200);
    assert_eq!(
        reply.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = text(&reply);
    for line in [
        "bro_restate_up{node=\"local\"} 1",
        "bro_sessions{node=\"local\",status=\"live\"} 1",
        "bro_sessions{node=\"local\",status=\"released\"} 1",
        "bro_sessions{node=\"local\",status=\"failed\"} 0",
        "# TYPE bro_sessions gauge",
        "# TYPE bro_browser_cpu_seconds_total counter",
        "# TYPE bro_session_creates_total counter",
        // The fake Restate is not bro's restate-server: nothing of it is re-exported.
        "bro_restate_metrics_up{node=\"local\"} 0",
    ] {
        assert!(body.contains(line), "{line} missing in:\n{body}");
    }
    let memory = format!(
        "bro_browser_memory_bytes{{node=\"local\",session=\"{}\"}} {}",
        live.id,
        USAGE.mem_kib * 1024
    );
    assert!(body.contains(&memory), "{memory} missing in:\n{body}");
    // The node's total over its live browsers (the one live session here).
    let total = format!(
        "bro_browsers_memory_bytes{{node=\"local\"}} {}",
        USAGE.mem_kib * 1024
    );
    assert!(body.contains(&total), "{total} missing in:\n{body}");
    // Another node's session is that node's to report.
    assert!(!body.contains(elsewhere.id.as_str()), "{body}");
    assert!(!body.contains("status=\"live\"} 2"), "{body}");
    // Every family has one HELP and one TYPE.
    let types: Vec<&str> = body.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let mut unique = types.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(types.len(), unique.len(), "{body}");
}

#[tokio::test]
async fn a_create_moves_the_counters() {
    let _one = ONE_AT_A_TIME.lock().await;
    crate::prometheus::install("local");
    let h = Harness::new().await;
    let before = creates_live(&text(&h.tcp(get("/metrics")).await));
    let reply = h
        .tcp(super::post("/v1/sessions", serde_json::json!({})))
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{:?}", reply.body);
    let after = creates_live(&text(&h.tcp(get("/metrics")).await));
    // Other tests of this binary create too: at least this one was counted.
    assert!(after > before, "{before} -> {after}");
}

#[tokio::test]
async fn without_restate_a_scrape_answers_at_once_with_restate_down() {
    let _one = ONE_AT_A_TIME.lock().await;
    let h = Harness::without_restate();
    let started = std::time::Instant::now();
    let reply = h.tcp(get("/metrics")).await;
    assert_eq!(reply.status.as_u16(), 200);
    let body = text(&reply);
    assert!(body.contains("bro_restate_up{node=\"local\"} 0"), "{body}");
    assert!(!body.contains("bro_sessions{"), "{body}");
    assert!(
        started.elapsed() < crate::api::metrics::PART_TIMEOUT * 2,
        "{:?}",
        started.elapsed()
    );
}

/// A Restate that accepts connections and never answers: its admin socket, held open.
fn hanging_restate(dir: &std::path::Path) -> (std::path::PathBuf, tokio::task::JoinHandle<()>) {
    let path = dir.join("admin.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    (path, task)
}

#[tokio::test]
async fn a_hanging_restate_cannot_hold_a_scrape_and_a_flood_gets_429() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (socket, task) = hanging_restate(dir.path());
    let mut h = Harness::without_restate();
    let addr = crate::orchestrator::ingress::RestateAddr::Unix(socket);
    std::sync::Arc::get_mut(&mut h.state).unwrap().ingress =
        crate::orchestrator::ingress::Ingress::new(addr.clone(), addr).unwrap();
    let limit = crate::api::metrics::PART_TIMEOUT;

    let started = std::time::Instant::now();
    let reply = h.tcp(get("/metrics")).await;
    let took = started.elapsed();
    assert_eq!(reply.status.as_u16(), 200);
    assert!(text(&reply).contains("bro_restate_up{node=\"local\"} 0"));
    assert!(took < limit + std::time::Duration::from_secs(1), "{took:?}");

    // Eight at once: two are served (Restate late in each), the others wait their turn for
    // as long as one read may take and are told to come back; none takes much longer.
    let started = std::time::Instant::now();
    let replies = futures_util::future::join_all((0..8).map(|_| h.tcp(get("/metrics")))).await;
    let took = started.elapsed();
    let served = replies.iter().filter(|r| r.status.as_u16() == 200).count();
    let refused = replies.iter().filter(|r| r.status.as_u16() == 429).count();
    assert!(
        served >= 2 && served + refused == 8,
        "{served} served, {refused} refused"
    );
    assert!(
        took < limit * 2 + std::time::Duration::from_secs(1),
        "{took:?}"
    );
    task.abort();
}

fn creates_live(body: &str) -> u64 {
    value(body, "bro_session_creates_total{", "outcome=\"live\"")
}

/// The value of the first sample of `body` that starts with `name` and holds `label`.
fn value(body: &str, name: &str, label: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_warm_create_and_a_full_node_are_told_apart() {
    let _one = ONE_AT_A_TIME.lock().await;
    crate::prometheus::install("local");
    let h = Harness::new().await;
    let warm = "bro_session_create_seconds_count{";
    let full = "bro_session_creates_total{";
    let scrape = async || text(&h.tcp(get("/metrics")).await);
    let before = scrape().await;

    // A warm browser keeps the dir (and id) it was launched under.
    let id = crate::protocol::session::SessionId::random();
    let mut rec = super::fake_restate::live_record(&id);
    let warm_id = crate::protocol::session::SessionId::random();
    rec.worker.as_mut().unwrap().dir =
        std::path::PathBuf::from("/nonexistent/sessions").join(warm_id.as_str());
    // Created by this request (a record from before it is a session that was there).
    rec.created_at_ms = crate::now_ms() + 20;
    h.restate
        .script("create", super::fake_restate::Answer::record(rec));
    let body = serde_json::json!({ "sessionId": id.as_str() });
    assert_eq!(
        h.tcp(super::post("/v1/sessions", body))
            .await
            .status
            .as_u16(),
        200
    );
    h.restate.script(
        "create",
        super::fake_restate::Answer::Error(429, "at capacity".into()),
    );
    let reply = h
        .tcp(super::post("/v1/sessions", serde_json::json!({})))
        .await;
    assert_eq!(reply.status.as_u16(), 429);

    let after = scrape().await;
    assert!(
        value(&after, warm, "kind=\"warm\"") > value(&before, warm, "kind=\"warm\""),
        "{after}"
    );
    let at_capacity = "outcome=\"at_capacity\"";
    assert!(
        value(&after, full, at_capacity) > value(&before, full, at_capacity),
        "{after}"
    );
}

#[tokio::test]
async fn a_create_of_an_existing_session_counts_as_existing() {
    let _one = ONE_AT_A_TIME.lock().await;
    crate::prometheus::install("local");
    let h = Harness::new().await;
    let scrape = async || text(&h.tcp(get("/metrics")).await);
    let before = scrape().await;
    let id = crate::protocol::session::SessionId::random();
    let mut rec = super::fake_restate::live_record(&id);
    rec.created_at_ms = crate::now_ms() - 60_000;
    h.restate
        .script("create", super::fake_restate::Answer::record(rec));
    let body = serde_json::json!({ "sessionId": id.as_str() });
    let reply = h.tcp(super::post("/v1/sessions", body)).await;
    assert_eq!(reply.status.as_u16(), 200);
    let after = scrape().await;
    let creates = "bro_session_creates_total{";
    let existing = "outcome=\"existing\"";
    assert!(
        value(&after, creates, existing) > value(&before, creates, existing),
        "{after}"
    );
}
