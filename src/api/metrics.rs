//! `GET /metrics`: this node's metrics in the Prometheus text format, behind the API's own
//! access rules (the key on the TCP port, the socket's file mode on the Unix socket).
//!
//! A scrape is the recorded events ([`crate::prometheus`]), then what is read now: this
//! node's sessions by status (one aggregate query to Restate's state), the memory and CPU of
//! its live browsers (one pass over `/proc`), its pool, queue and warm pool, whether Restate
//! answers, and last restate-server's own metrics (`restate_*`, from its fabric socket).
//! Every read is bounded by [`PART_TIMEOUT`] and they run together, so a scrape answers within
//! about that even when Restate hangs; what did not answer in time is left out.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::api::{ApiError, AppState};
use crate::host::Usage;
use crate::orchestrator::ingress::{Ingress, RestateAddr};
use crate::prometheus::{self, Exposition, Kind};
use crate::protocol::session::{SessionRecord, SessionStatus};
use crate::protocol::steel::ErrorBody;

/// How long each read of a scrape may take.
pub const PART_TIMEOUT: Duration = Duration::from_secs(2);

/// Scrapes served at once: each costs Restate two queries and the node a pass over `/proc`,
/// so a flood of scrapes waits here (then gets 429) instead of piling work up.
static SCRAPES: Semaphore = Semaphore::const_new(2);

/// Linux's clock ticks per second in `/proc/<pid>/stat` (`getconf CLK_TCK`), to turn CPU
/// ticks into seconds. The kernel reports these in `USER_HZ`, which is 100 on every
/// architecture bro runs on (x86-64, arm64) whatever its internal `HZ`; `tui` reads it the
/// same way.
const TICKS_PER_SECOND: f64 = 100.0;

/// One `/proc` pass of the live browsers at a time: held by the pass itself (a spawned task),
/// not by the scrape, so a pass still running after its scrape gave up keeps the next one
/// waiting instead of a second pass piling onto the first.
static USAGE_PASS: Semaphore = Semaphore::const_new(1);

/// A record's status and node, read by Restate's SQL engine from the record's JSON. The JSON
/// escapes every `"` inside a string, so these can only match the record's own keys.
const STATUS_RE: &str = r#""status":"([a-z]+)""#;
const NODE_RE: &str = r#""node":"([A-Za-z0-9._-]{1,64})""#;

/// `/metrics`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

/// `GET /metrics`: 429 when other scrapes held the way for [`PART_TIMEOUT`].
#[utoipa::path(get, path = "/metrics", tag = "metrics", responses((status = 200, description = "This node's metrics in the Prometheus text format (version 0.0.4)", content_type = "text/plain"), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 429, description = "Too many scrapes at once", body = ErrorBody)))]
pub(crate) async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let Ok(Ok(_permit)) = tokio::time::timeout(PART_TIMEOUT, SCRAPES.acquire()).await else {
        return ApiError::AtCapacity("too many scrapes at once; try again".into()).into_response();
    };
    let body = scrape(&st).await;
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], body).into_response()
}

/// The whole exposition of this node.
pub async fn scrape(st: &AppState) -> String {
    let status = st.control.status();
    let deadline = tokio::time::Instant::now() + PART_TIMEOUT;
    // The live browsers are the pool's sessions (bounded by its slots): read after it, by the
    // same deadline.
    let pool_and_live = async {
        let pool = within(
            "pool",
            deadline,
            st.ingress
                .pool_and_warm(&st.node, status.max_sessions, status.max_queue),
        )
        .await;
        let live = match &pool {
            Some((pool, _)) => {
                within("live browsers", deadline, live_usage(st, &pool.sessions)).await
            }
            None => None,
        };
        (pool, live)
    };
    let (counts, (pool, live), restate) = tokio::join!(
        within(
            "session counts",
            deadline,
            session_counts(&st.ingress, &st.node)
        ),
        pool_and_live,
        within("restate metrics", deadline, restate_text(&st.ingress.admin)),
    );
    let mut e = Exposition::default();
    e.family(
        "bro_restate_up",
        Kind::Gauge,
        "1 when Restate answered this scrape's count of sessions within 2 s, else 0",
    );
    e.sample(
        "bro_restate_up",
        &[("node", &st.node)],
        flag(counts.is_some()),
    );
    if let Some(counts) = &counts {
        write_sessions(&mut e, &st.node, counts);
    }
    if let Some((pool, warm)) = &pool {
        let node = [("node", st.node.as_str())];
        let gauges = [
            (
                "bro_pool_capacity",
                "Session slots of this node",
                pool.capacity as usize,
            ),
            (
                "bro_pool_used",
                "Session slots held now",
                pool.used as usize,
            ),
            (
                "bro_queue_length",
                "Creates waiting for a slot",
                pool.queued.len(),
            ),
            (
                "bro_warm_target",
                "Warm browsers the pool keeps (--warm)",
                status.warm as usize,
            ),
            (
                "bro_warm_ready",
                "Warm browsers ready to be claimed",
                warm.ready.len(),
            ),
            (
                "bro_warm_filling",
                "Warm browsers being launched",
                warm.filling.len(),
            ),
        ];
        for (name, help, value) in gauges {
            e.family(name, Kind::Gauge, help);
            e.sample(name, &node, value as f64);
        }
    }
    if let Some(live) = &live {
        write_browsers(&mut e, st, live);
    }
    e.family(
        "bro_restate_metrics_up",
        Kind::Gauge,
        "1 when restate-server's own metrics (restate_*) follow in this scrape, else 0",
    );
    e.sample(
        "bro_restate_metrics_up",
        &[("node", &st.node)],
        flag(restate.is_some()),
    );
    let mut out = prometheus::render_recorded();
    out.push_str(&e.finish());
    if let Some(text) = restate {
        out.push_str(&prometheus::restate_lines(&text));
    }
    out
}

/// Runs one read of a scrape until `deadline` (the scrape's start and [`PART_TIMEOUT`]);
/// `None` when it failed or was late.
async fn within<T, E: std::fmt::Display>(
    what: &str,
    deadline: tokio::time::Instant,
    read: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(err)) => {
            tracing::debug!(what, error = %err, "a metrics read failed");
            None
        }
        Err(_) => {
            tracing::debug!(what, "a metrics read timed out");
            None
        }
    }
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

#[derive(Debug, Deserialize)]
struct CountRow {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    node: Option<String>,
    n: u64,
}

/// This node's sessions by status, counted by Restate (one row per status and node, however
/// many records there are).
async fn session_counts(
    ingress: &Ingress,
    node: &str,
) -> Result<Vec<(SessionStatus, u64)>, crate::orchestrator::ingress::IngressError> {
    let sql = format!(
        "SELECT regexp_match(value_utf8, '{STATUS_RE}')[1] AS status, \
         regexp_match(value_utf8, '{NODE_RE}')[1] AS node, COUNT(*) AS n \
         FROM state WHERE service_name = 'Session' AND key = 'record' GROUP BY 1, 2"
    );
    // One attempt: a Restate that is down is said by `bro_restate_up`, not waited for.
    let rows: Vec<CountRow> = ingress.query_attempts(&sql, 1).await?;
    Ok(counts_of(rows, node))
}

/// Every status with its count among `rows` for `node` (0 when none).
fn counts_of(rows: Vec<CountRow>, node: &str) -> Vec<(SessionStatus, u64)> {
    SessionStatus::ALL
        .iter()
        .map(|s| {
            let n = rows
                .iter()
                .filter(|r| r.node.as_deref() == Some(node))
                .filter(|r| r.status.as_deref() == Some(s.as_str()))
                .map(|r| r.n)
                .sum();
            (*s, n)
        })
        .collect()
}

fn write_sessions(e: &mut Exposition, node: &str, counts: &[(SessionStatus, u64)]) {
    e.family(
        "bro_sessions",
        Kind::Gauge,
        "Sessions of this node by status, as Restate holds them (ended ones until forgotten)",
    );
    for (status, n) in counts {
        let labels = [("node", node), ("status", status.as_str())];
        e.sample("bro_sessions", &labels, *n as f64);
    }
}

#[derive(Debug, Deserialize)]
struct RecordRow {
    #[serde(default)]
    value_utf8: Option<String>,
}

/// This node's live sessions and their browsers' usage: the records of the pool's sessions
/// (`ids`, bounded by the node's slots), by key, and one `/proc` pass over their browsers.
async fn live_usage(
    st: &AppState,
    ids: &[String],
) -> Result<Vec<(SessionRecord, Usage)>, crate::orchestrator::ingress::IngressError> {
    // Only ids that parse as session ids (UUIDs) go into the query: nothing in one ends the
    // string.
    let keys: Vec<String> = ids
        .iter()
        .filter_map(|id| crate::protocol::session::SessionId::parse(id).ok())
        .take(crate::config::MAX_SESSIONS_LIMIT as usize)
        .map(|id| format!("'{id}'"))
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let node = &st.node;
    let sql = format!(
        "SELECT value_utf8 FROM state WHERE service_name = 'Session' AND key = 'record' \
         AND service_key IN ({})",
        keys.join(", ")
    );
    let rows: Vec<RecordRow> = st.ingress.query_attempts(&sql, 1).await?;
    let records: Vec<SessionRecord> = rows
        .into_iter()
        .filter_map(|r| serde_json::from_str(r.value_utf8.as_deref()?).ok())
        .filter(|r: &SessionRecord| r.status == SessionStatus::Live && r.node == *node)
        .collect();
    let pids: Vec<u32> = records
        .iter()
        .filter_map(|r| r.worker.as_ref().map(|w| w.pid))
        .collect();
    let usage = match st.host_of(node) {
        Ok(host) => usage_pass(host, pids).await,
        Err(_) => Default::default(),
    };
    Ok(records
        .into_iter()
        .map(|r| {
            let u = r
                .worker
                .as_ref()
                .and_then(|w| usage.get(&w.pid).copied())
                .unwrap_or_default();
            (r, u)
        })
        .collect())
}

/// The browsers' usage, read by a task that holds [`USAGE_PASS`] until its read ends, however
/// long after its scrape gave up that is.
async fn usage_pass(
    host: Arc<dyn crate::host::WorkerHost>,
    pids: Vec<u32>,
) -> std::collections::HashMap<u32, Usage> {
    let Ok(permit) = USAGE_PASS.acquire().await else {
        return Default::default();
    };
    let pass = tokio::spawn(async move {
        let usage = host.usage(pids).await;
        drop(permit);
        usage
    });
    pass.await.unwrap_or_default()
}

/// A per-browser family: name, kind, help, and its value from a browser's usage.
type BrowserFamily = (&'static str, Kind, &'static str, fn(&Usage) -> f64);

/// The node's totals over its live browsers (one series each, for dashboards and alerts that
/// should not follow per-session series), then the per-session ones (a `session` label each:
/// a new series per session, which Prometheus keeps until its retention).
fn write_browsers(e: &mut Exposition, st: &AppState, live: &[(SessionRecord, Usage)]) {
    let node = [("node", st.node.as_str())];
    e.family(
        "bro_browsers_memory_bytes",
        Kind::Gauge,
        "Memory (PSS) of this node's live sessions' browsers, all together",
    );
    let memory: u64 = live.iter().map(|(_, u)| u.mem_kib * 1024).sum();
    e.sample("bro_browsers_memory_bytes", &node, memory as f64);
    e.family(
        "bro_browsers_processes",
        Kind::Gauge,
        "Processes of this node's live sessions' browsers, all together",
    );
    let processes: u64 = live.iter().map(|(_, u)| u.processes as u64).sum();
    e.sample("bro_browsers_processes", &node, processes as f64);
    let families: [BrowserFamily; 3] = [
        (
            "bro_browser_memory_bytes",
            Kind::Gauge,
            "Memory (PSS) of a live session's browser, all its processes",
            |u| (u.mem_kib * 1024) as f64,
        ),
        (
            "bro_browser_cpu_seconds_total",
            Kind::Counter,
            "CPU time (user + system) of a live session's browser, all its processes",
            |u| u.cpu_ticks as f64 / TICKS_PER_SECOND,
        ),
        (
            "bro_browser_processes",
            Kind::Gauge,
            "Processes of a live session's browser",
            |u| u.processes as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        e.family(name, kind, help);
        for (rec, usage) in live {
            let labels = [("node", st.node.as_str()), ("session", rec.id.as_str())];
            e.sample(name, &labels, value(usage));
        }
    }
    e.family(
        "bro_session_cdp_connections",
        Kind::Gauge,
        "CDP websockets open to a live session through this node",
    );
    for (rec, _) in live {
        let labels = [("node", st.node.as_str()), ("session", rec.id.as_str())];
        e.sample(
            "bro_session_cdp_connections",
            &labels,
            st.sockets.open_count(rec.id.as_str()) as f64,
        );
    }
}

/// Why restate-server's metrics were not read.
#[derive(Debug, thiserror::Error)]
enum RestateTextError {
    #[error("Restate is not bro's own (no fabric socket to read)")]
    NotOurs,
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("answered {0}")]
    Status(http::StatusCode),
    #[error("the text is over {} bytes", prometheus::MAX_RESTATE_TEXT)]
    TooLarge,
}

/// restate-server's own metrics text. bro's restate-server serves it on its fabric socket,
/// `fabric.sock` beside `admin.sock` (its admin API has no `/metrics`), a cluster node's too
/// (its fabric listens there besides its TCP port, where mutual TLS is required); an
/// external Restate's fabric is not known, and is not read.
async fn restate_text(admin: &RestateAddr) -> Result<String, RestateTextError> {
    let RestateAddr::Unix(admin_socket) = admin else {
        return Err(RestateTextError::NotOurs);
    };
    let fabric = admin_socket.with_file_name("fabric.sock");
    if !fabric.exists() {
        return Err(RestateTextError::NotOurs);
    }
    let client = reqwest::Client::builder()
        .unix_socket(fabric)
        .timeout(PART_TIMEOUT)
        .build()?;
    let mut resp = client.get("http://localhost/metrics").send().await?;
    if !resp.status().is_success() {
        return Err(RestateTextError::Status(resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > prometheus::MAX_RESTATE_TEXT {
            return Err(RestateTextError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, node: &str, n: u64) -> CountRow {
        CountRow {
            status: Some(status.into()),
            node: Some(node.into()),
            n,
        }
    }

    #[test]
    fn counts_are_this_nodes_with_every_status() {
        let rows = vec![
            row("live", "a", 2),
            row("live", "b", 5),
            row("failed", "a", 1),
            row("weird", "a", 9),
            CountRow {
                status: None,
                node: None,
                n: 3,
            },
        ];
        let counts = counts_of(rows, "a");
        let get = |s: SessionStatus| counts.iter().find(|(x, _)| *x == s).map(|(_, n)| *n);
        assert_eq!(counts.len(), SessionStatus::ALL.len());
        assert_eq!(get(SessionStatus::Live), Some(2));
        assert_eq!(get(SessionStatus::Failed), Some(1));
        assert_eq!(get(SessionStatus::Released), Some(0));
    }

    #[test]
    fn the_patterns_read_a_records_own_status_and_node() {
        // A user agent holding the keys' text is escaped in the JSON: no match inside it.
        let mut rec: SessionRecord = serde_json::from_value(serde_json::json!({
            "id": "a1fb5870-6d36-4223-ad63-b9a73b08cd65", "status": "live", "node": "n-1",
            "createdAtMs": 1, "options": {"timeoutMs": 0},
        }))
        .unwrap();
        rec.options.user_agent = Some(r#""status":"failed","node":"evil""#.into());
        let json = serde_json::to_string(&rec).unwrap();
        let status_at = json.find(r#""status":"live""#).unwrap();
        let node_at = json.find(r#""node":"n-1""#).unwrap();
        assert!(status_at < json.find("userAgent").unwrap());
        assert!(node_at < json.find("userAgent").unwrap());
        assert!(!json.contains(r#""status":"failed""#), "{json}");
        assert!(!json.contains(r#""node":"evil""#), "{json}");
    }
}
