//! bro's control routes, on the Unix socket only: daemon status and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, AppState};
use crate::protocol::cluster::{ClusterStatus, NodeStatus};
use crate::protocol::control::{
    DaemonStatus, Dashboard, JournalEntry, Preview, SessionRow, ShutdownRequest, ShutdownResponse,
    WorkerRow,
};
use crate::protocol::session::SessionStatus;
use crate::protocol::steel::SessionDetails;

/// The parts of the status that change while the daemon runs, and the shutdown switch.
pub struct ControlState {
    /// The status as of start; restate's pid and restart count are filled in on read.
    pub base: DaemonStatus,
    pub restate_pid: Option<Arc<AtomicU32>>,
    pub restate_restarts: Option<Arc<AtomicU32>>,
    pub shutdown: CancellationToken,
    /// Set by a shutdown request that asks to leave the sessions running.
    pub keep_sessions: std::sync::atomic::AtomicBool,
}

impl ControlState {
    /// The current status.
    pub fn status(&self) -> DaemonStatus {
        let mut status = self.base.clone();
        if let Some(pid) = &self.restate_pid {
            status.restate.pid = Some(pid.load(Ordering::SeqCst));
        }
        if let Some(restarts) = &self.restate_restarts {
            status.restate.restarts = restarts.load(Ordering::SeqCst);
        }
        status
    }
}

/// `/bro/v1/status` and `/bro/v1/shutdown`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/bro/v1/status", get(status))
        .route("/bro/v1/cluster", get(cluster))
        .route("/bro/v1/cluster/nodes/{node}/forget", post(forget_node))
        .route("/bro/v1/dashboard", get(dashboard))
        .route("/bro/v1/shutdown", post(shutdown))
        .route("/bro/v1/sessions/{id}/preview", get(preview))
        .route("/bro/v1/invocations/{id}/journal", get(journal))
}

async fn status(State(st): State<Arc<AppState>>) -> Json<DaemonStatus> {
    let mut status = st.control.status();
    status.pool = st
        .ingress
        .pool(&status.node, status.max_sessions, status.max_queue)
        .await
        .ok();
    Json(status)
}

/// `GET /bro/v1/cluster`: the nodes of the cluster as this node last read them (a single
/// node answers with itself alone, `clustered: false`).
async fn cluster(State(st): State<Arc<AppState>>) -> Result<Json<ClusterStatus>, ApiError> {
    let now = crate::now_ms();
    let Some(view) = &st.cluster else {
        let status = st.control.status();
        let pool = st
            .ingress
            .pool(&status.node, status.max_sessions, status.max_queue)
            .await
            .ok();
        let node = NodeStatus {
            name: st.node.clone(),
            address: st.api_base.clone(),
            healthy: pool.is_some(),
            capacity: status.max_sessions,
            used: pool.as_ref().map_or(0, |p| p.used),
            queued: pool.as_ref().map_or(0, |p| p.queued.len() as u32),
            last_seen_ms: 0,
            restate: if pool.is_some() {
                "alive"
            } else {
                "unreachable"
            }
            .into(),
            this: true,
        };
        return Ok(Json(ClusterStatus {
            clustered: false,
            cluster: String::new(),
            node: st.node.clone(),
            members: Vec::new(),
            nodes: vec![node],
        }));
    };
    // Fresh figures when Restate answers; the last ones read otherwise.
    if let Err(err) = view.refresh().await {
        tracing::debug!(error = %err, "reading the cluster's state failed");
    }
    Ok(Json(ClusterStatus {
        clustered: true,
        cluster: view.name.clone(),
        node: st.node.clone(),
        members: view.members.clone(),
        nodes: view.status(now),
    }))
}

/// `POST /bro/v1/cluster/nodes/{node}/forget`: drops the heartbeat record of a node removed
/// from the cluster; 400 while it still beats.
async fn forget_node(
    State(st): State<Arc<AppState>>,
    Path(node): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    crate::config::check_node(&node).map_err(ApiError::BadRequest)?;
    if node == st.node {
        return Err(ApiError::BadRequest(format!(
            "node {node} is the node answering; forget it from another node once it is stopped"
        )));
    }
    st.ingress.forget_node(&node).await?;
    Ok(Json(serde_json::json!({ "forgot": node })))
}

/// `GET /bro/v1/dashboard`: status, sessions with their browsers' figures, invocations.
async fn dashboard(State(st): State<Arc<AppState>>) -> Json<Dashboard> {
    let mut status = st.control.status();
    let (node, records, invocations) = tokio::join!(
        st.ingress
            .pool_and_warm(&status.node, status.max_sessions, status.max_queue),
        st.ingress.list(),
        st.ingress.invocations(40),
    );
    let (pool, warm) = node.ok().unzip();
    status.pool = pool;
    let restate_ok = records.is_ok();
    let mut records = records.unwrap_or_default();
    records.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
    let now = crate::now_ms();
    let warm = warm.map(|w| w.ready).unwrap_or_default();
    // Every browser's figures from one pass over /proc.
    // Figures of this node's browsers only: another node's pids mean nothing here.
    let pids: Vec<u32> = records
        .iter()
        .filter(|r| r.status == SessionStatus::Live && r.node == st.node)
        .filter_map(|r| r.worker.as_ref().map(|w| w.pid))
        .chain(warm.iter().map(|e| e.worker.pid))
        .collect();
    let usage = match st.host_of(&st.node) {
        Ok(host) => host.usage(pids).await,
        Err(_) => Default::default(),
    };
    let usage_of = |pid: u32| {
        let u = usage.get(&pid).copied().unwrap_or_default();
        (u.mem_kib, u.cpu_ticks, u.processes)
    };
    let mut workers = Vec::new();
    let sessions = records
        .iter()
        .map(|rec| {
            let live = rec.status == SessionStatus::Live;
            let worker = rec.worker.as_ref().filter(|_| live);
            let (mem_kib, cpu_ticks, processes) = worker.map_or((0, 0, 0), |w| usage_of(w.pid));
            if let Some(w) = worker {
                workers.push(WorkerRow {
                    pid: w.pid,
                    port: w.port,
                    session: Some(rec.id.to_string()),
                    processes,
                    mem_kib,
                    cpu_ticks,
                });
            }
            SessionRow {
                session: SessionDetails::from_record(rec, &st.api_base, now),
                node: rec.node.clone(),
                pid: worker.map(|w| w.pid),
                port: worker.map(|w| w.port),
                mem_kib,
                cpu_ticks,
                processes,
                clients: st.sockets.open_count(&rec.id) as u32,
            }
        })
        .collect();
    for entry in warm {
        let (mem_kib, cpu_ticks, processes) = usage_of(entry.worker.pid);
        workers.push(WorkerRow {
            pid: entry.worker.pid,
            port: entry.worker.port,
            session: None,
            processes,
            mem_kib,
            cpu_ticks,
        });
    }
    Json(Dashboard {
        status,
        taken_at_ms: now,
        sessions,
        invocations: invocations.unwrap_or_default(),
        restate_ok,
        workers,
    })
}

async fn shutdown(
    State(st): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Json<ShutdownResponse> {
    let req: ShutdownRequest = serde_json::from_slice(&body).unwrap_or_default();
    st.control
        .keep_sessions
        .store(req.keep_sessions, Ordering::SeqCst);
    st.control.shutdown.cancel();
    Json(ShutdownResponse {
        status: "stopping".into(),
    })
}

#[derive(Debug, Deserialize)]
struct PreviewQuery {
    /// Widest the picture may be, in CSS pixels.
    width: Option<u32>,
}

/// `GET /bro/v1/sessions/{id}/preview[?width=W]`: the live session's page as a JPEG, with its
/// URL and title, for `bro tui`'s preview pane.
async fn preview(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> Result<Json<Preview>, ApiError> {
    let id = crate::api::sessions::parse_id(&id)?;
    // Read from state, not through `Session/get`: a preview a second would flood the
    // invocations pane.
    let rec = st.ingress.record(&id).await?;
    let worker = match (rec.status, rec.worker) {
        (SessionStatus::Live, Some(w)) => w,
        (status, _) => return Err(ApiError::NotFound(format!("session {id} is {status}"))),
    };
    let width = q.width.unwrap_or(640).clamp(64, 1920);
    let host = st.host_of(&rec.node)?;
    tokio::time::timeout(Duration::from_secs(5), host.preview(worker, width))
        .await
        .map_err(|_| ApiError::BadGateway("the browser did not answer within 5 s".into()))?
        .map(Json)
        .map_err(|e| ApiError::BadGateway(format!("preview failed: {e}")))
}

/// `GET /bro/v1/invocations/{id}/journal`: the entries of one Restate invocation.
async fn journal(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<JournalEntry>>, ApiError> {
    Ok(Json(st.ingress.journal(&id).await?))
}
