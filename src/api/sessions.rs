//! steel-browser session routes (`/v1/health`, `/v1/sessions...`) and the CDP upgrade route.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::api::{ApiError, AppState};
use crate::cdp_proxy::{self, ProxyError, Upstream};
use crate::orchestrator::now_ms;
use crate::protocol::session::{SessionOptions, SessionRecord, SessionStatus};
use crate::protocol::steel::{
    CreateSessionRequest, DEFAULT_TIMEOUT_MS, MultipleSessions, ReleaseAllResponse,
    ReleaseSessionResponse, SessionDetails,
};

/// The session routes, shared by the TCP port and the Unix socket.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/sessions", post(create).get(list))
        .route("/v1/sessions/release", post(release_all))
        .route("/v1/sessions/{id}", get(get_one))
        .route("/v1/sessions/{id}/release", post(release))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `POST /v1/sessions`. An empty body counts as `{}` (the SDKs send a JSON content type with
/// no body); unknown fields are ignored.
async fn create(
    State(st): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<SessionDetails>, ApiError> {
    let req: CreateSessionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CreateSessionRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?
    };
    let id = match &req.session_id {
        Some(id) => parse_id(id)?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let options = options_of(req)?;
    let rec = st.ingress.create(&id, options).await?;
    if rec.status == SessionStatus::Failed {
        let reason = rec.reason.as_deref().unwrap_or("unknown reason");
        return Err(ApiError::Internal(format!("session {id} failed: {reason}")));
    }
    Ok(Json(details(&st, &rec)))
}

/// Checks the request's options and applies the defaults.
fn options_of(req: CreateSessionRequest) -> Result<SessionOptions, ApiError> {
    if let Some(d) = req.dimensions
        && !(1..=10_000).contains(&d.width) | !(1..=10_000).contains(&d.height)
    {
        return Err(ApiError::BadRequest(format!(
            "dimensions must be between 1 and 10000 pixels, got {}x{}",
            d.width, d.height
        )));
    }
    if let Some(proxy) = &req.proxy_url {
        let ok = ["http://", "https://", "socks4://", "socks5://"]
            .iter()
            .any(|s| proxy.starts_with(s));
        if !ok {
            return Err(ApiError::BadRequest(format!(
                "proxyUrl must start with http://, https://, socks4:// or socks5://, got '{}'",
                crate::protocol::steel::redact_proxy(proxy)
            )));
        }
    }
    Ok(SessionOptions {
        dimensions: req.dimensions,
        user_agent: req.user_agent.filter(|ua| !ua.is_empty()),
        proxy_url: req.proxy_url,
        timeout_ms: req.timeout.unwrap_or(DEFAULT_TIMEOUT_MS),
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
}

/// `GET /v1/sessions[?status=live]`, oldest first.
async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<MultipleSessions>, ApiError> {
    let status = match q.status.as_deref() {
        Some(s) => Some(s.parse::<SessionStatus>().map_err(ApiError::BadRequest)?),
        None => None,
    };
    let mut records = st.ingress.list().await?;
    records.retain(|r| status.is_none_or(|s| r.status == s));
    records.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    let sessions = records.iter().map(|r| details(&st, r)).collect();
    Ok(Json(MultipleSessions { sessions }))
}

/// `GET /v1/sessions/{id}`; ended sessions stay retrievable.
async fn get_one(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<SessionDetails>, ApiError> {
    let id = parse_id(&id)?;
    let rec = st.ingress.get(&id).await?;
    Ok(Json(details(&st, &rec)))
}

/// `POST /v1/sessions/{id}/release`; idempotent. The body, if any, is ignored.
async fn release(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ReleaseSessionResponse>, ApiError> {
    let id = parse_id(&id)?;
    let rec = st.ingress.release(&id).await?;
    Ok(Json(ReleaseSessionResponse {
        success: true,
        session: details(&st, &rec),
    }))
}

/// `POST /v1/sessions/release`: releases every session that is not over yet.
async fn release_all(
    State(st): State<Arc<AppState>>,
) -> Result<Json<ReleaseAllResponse>, ApiError> {
    let open: Vec<SessionRecord> = st
        .ingress
        .list()
        .await?
        .into_iter()
        .filter(|r| !r.status.is_final())
        .collect();
    let results =
        futures_util::future::join_all(open.iter().map(|r| st.ingress.release(&r.id))).await;
    let mut released = Vec::new();
    for (rec, result) in open.iter().zip(results) {
        match result {
            Ok(_) => released.push(rec.id.clone()),
            Err(e) => return Err(ApiError::Internal(format!("releasing {}: {e}", rec.id))),
        }
    }
    let message = format!("released {} session(s)", released.len());
    Ok(Json(ReleaseAllResponse {
        success: true,
        message,
        released,
    }))
}

/// The TCP fallback: a websocket upgrade is a CDP connection, anything else is a 404.
pub async fn cdp_or_not_found(State(st): State<Arc<AppState>>, req: Request) -> Response {
    if !cdp_proxy::is_upgrade(req.headers()) {
        return not_found_for(&req).into_response();
    }
    match proxy(&st, req).await {
        Ok(resp) => resp,
        Err(err) => err.into_response(),
    }
}

async fn proxy(st: &AppState, req: Request) -> Result<Response, ApiError> {
    let id = match cdp_proxy::session_id_of(req.uri()) {
        Some(id) => parse_id(&id)?,
        None => only_live_session(st).await?,
    };
    let rec = st.ingress.get(&id).await?;
    let worker = match (&rec.status, &rec.worker) {
        (SessionStatus::Live, Some(w)) => w,
        _ => {
            return Err(ApiError::NotFound(format!(
                "session {id} is {}",
                rec.status
            )));
        }
    };
    let up = Upstream {
        port: worker.port,
        ws_path: worker.ws_path.clone(),
    };
    cdp_proxy::splice(req, up, st.sockets.token(&id))
        .await
        .map_err(|e| match e {
            ProxyError::NotUpgrade => ApiError::BadRequest(e.to_string()),
            ProxyError::Upstream(_) => ApiError::BadGateway(e.to_string()),
        })
}

/// With no `sessionId`, steel-browser's behaviour: the one live session, if there is one.
async fn only_live_session(st: &AppState) -> Result<String, ApiError> {
    let live: Vec<_> = st
        .ingress
        .list()
        .await?
        .into_iter()
        .filter(|r| r.status == SessionStatus::Live)
        .collect();
    match live.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(ApiError::NotFound(
            "no live session; create one with POST /v1/sessions".into(),
        )),
        _ => Err(ApiError::BadRequest(format!(
            "{} sessions are live; name one with ?sessionId=ID",
            live.len()
        ))),
    }
}

/// The Unix socket's fallback.
pub async fn not_found(req: Request) -> ApiError {
    not_found_for(&req)
}

fn not_found_for(req: &Request<Body>) -> ApiError {
    ApiError::NotFound(format!(
        "Route {}:{} not found",
        req.method(),
        req.uri().path()
    ))
}

fn parse_id(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::BadRequest(format!("session id must be a UUID, got '{id}'")))
}

fn details(st: &AppState, rec: &SessionRecord) -> SessionDetails {
    SessionDetails::from_record(rec, &st.api_base, now_ms())
}
