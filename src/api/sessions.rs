//! steel-browser session routes (`/v1/health`, `/v1/sessions...`) and the CDP upgrade route.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tracing::Instrument;

use std::time::Duration;

use crate::api::{ApiError, AppState};
use crate::orchestrator::ingress::{Ingress, IngressError};
use crate::orchestrator::now_ms;
use crate::protocol::cluster::NODE_HEADER;
use crate::protocol::live::LiveDetails;
use crate::protocol::session::{
    Dimensions, SessionId, SessionOptions, SessionRecord, SessionStatus, WorkerInfo,
};
use crate::protocol::steel::ErrorBody;
use crate::protocol::steel::{
    CreateSessionRequest, MultipleSessions, NO_WAIT_HEADER, ReleaseAllResponse,
    ReleaseSessionResponse, SessionContext, SessionDetails,
};
use crate::telemetry;

/// The session routes, shared by the TCP port and the Unix socket.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(crate::api::openapi::openapi_json))
        .route("/v1/sessions", post(create).get(list))
        .route("/v1/sessions/release", post(release_all))
        .route("/v1/sessions/{id}", get(get_one))
        .route("/v1/sessions/{id}/release", post(release))
        .route("/v1/sessions/{id}/context", get(context))
        .route("/v1/sessions/{id}/live-details", get(live_details))
}

#[utoipa::path(get, path = "/v1/health", tag = "sessions", responses((status = 200, description = "The daemon answers: {\"status\":\"ok\"}")))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `POST /v1/sessions`. An empty body counts as `{}` (the SDKs send a JSON content type with
/// no body); unknown fields are ignored.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body(content = Option<CreateSessionRequest>, description = "Options; an empty body counts as {}"), responses((status = 200, body = SessionDetails), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 429, description = "At capacity: the queue is full, the wait timed out, or x-bro-no-wait was sent; see Retry-After", body = ErrorBody), (status = 422, description = "The browser refused the sessionContext, or was killed at the memoryLimit the create asked for while it launched", body = ErrorBody), (status = 500, description = "The browser failed to start", body = ErrorBody), (status = 503, description = "Restate unreachable", body = ErrorBody)))]
async fn create(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SessionDetails>, ApiError> {
    // The root of the create's trace when traces are exported (or a part of the client's,
    // when it sends a `traceparent`): the Restate invocation and the launch join it.
    let span = telemetry::otlp::continue_from(&headers, || {
        tracing::info_span!("create_session", session_id = tracing::field::Empty)
    });
    let (started, start_ms) = (std::time::Instant::now(), now_ms());
    let rec = create_session(&st, &headers, &body, &span)
        .instrument(span.clone())
        .await;
    observe_create(&rec, started.elapsed(), start_ms);
    Ok(Json(details(&st, &rec?)))
}

/// The create behind `POST /v1/sessions`, inside its span: the session's record once it is
/// live.
async fn create_session(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    span: &tracing::Span,
) -> Result<SessionRecord, ApiError> {
    let req: CreateSessionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CreateSessionRequest::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?
    };
    let id = match &req.session_id {
        Some(id) => parse_id(id)?,
        None => SessionId::random(),
    };
    span.record("session_id", tracing::field::display(&id));
    let context = req.session_context.clone();
    if let Some(ctx) = &context {
        ctx.check().map_err(ApiError::BadRequest)?;
    }
    let options = options_of(req, st.default_timeout_ms, st.recording, st.limits)?;
    let no_wait = headers
        .get(NO_WAIT_HEADER)
        .is_some_and(|v| !matches!(v.as_bytes(), b"0" | b"false" | b""));
    let asked = match headers.get(NODE_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest(format!("{NODE_HEADER} must be a node name")))?,
        ),
        None => None,
    };
    let node = st.place(asked, &id).await?;
    let base = &st.control.base;
    let wait = (!no_wait).then(|| Duration::from_millis(base.queue_timeout_ms));
    // A client that hangs up while its create waits for a slot leaves the queue.
    let leave = LeaveOnDrop {
        ingress: st.ingress.clone(),
        node: node.clone(),
        id: Some(id.clone()),
    };
    // A session that failed is an error of its kind: the browser refusing the client's
    // context is 422, anything else 500.
    let rec = st
        .ingress
        .create(&id, options, context, wait, Some(node), base.warm > 0)
        .await;
    leave.disarm();
    Ok(rec?)
}

/// Counts a create by outcome (quick actions' own sessions too, `api::actions`); a new live
/// one's latency from its slot (cold launch or warm browser, the queue wait left out) and how
/// long it waited for that slot (until its record's creation), a refused one's wait until
/// refusal. A create naming a session that already exists is `existing` (or `ended`), in no
/// histogram: nothing was launched or waited for.
pub(crate) fn observe_create(rec: &Result<SessionRecord, ApiError>, took: Duration, start_ms: u64) {
    use crate::prometheus::{CREATE_SECONDS, CREATES, QUEUE_WAIT_SECONDS};
    // A record created before this request began is a session that was there already. A
    // create granted its slot at once is as old as its request, stamped by this daemon; after
    // a wait the record's time is taken by the Session handler on this host or, in a cluster,
    // on any node: clocks apart by more than the create took count a new one as existing.
    let existing = |rec: &SessionRecord| rec.created_at_ms < start_ms;
    let outcome = match rec {
        Ok(rec) if rec.status == SessionStatus::Live && existing(rec) => "existing",
        Ok(rec) if rec.status == SessionStatus::Live => "live",
        // The id named a session that is over: it is returned as it is.
        Ok(_) => "ended",
        Err(ApiError::Internal(_)) => "failed",
        Err(ApiError::Unprocessable(_)) => "refused",
        Err(ApiError::AtCapacity(_)) => "at_capacity",
        Err(ApiError::BadRequest(_) | ApiError::NotFound(_)) => "bad_request",
        Err(ApiError::Unavailable(_)) => "unavailable",
        Err(_) => "error",
    };
    metrics::counter!(CREATES, "outcome" => outcome).increment(1);
    match rec {
        Ok(rec) if rec.status == SessionStatus::Live && !existing(rec) => {
            let waited = Duration::from_millis(rec.created_at_ms - start_ms).min(took);
            metrics::histogram!(QUEUE_WAIT_SECONDS).record(waited.as_secs_f64());
            let kind = if warm_claimed(rec) { "warm" } else { "cold" };
            metrics::histogram!(CREATE_SECONDS, "kind" => kind)
                .record(took.saturating_sub(waited).as_secs_f64());
        }
        Err(ApiError::AtCapacity(_)) => {
            metrics::histogram!(QUEUE_WAIT_SECONDS).record(took.as_secs_f64());
        }
        _ => {}
    }
    // Folds the samples into the histograms, so a daemon nobody scrapes keeps none pending.
    crate::prometheus::upkeep();
}

/// Whether a live session's browser came from the warm pool. A warm browser keeps the dir it
/// was launched in (named by the warm slot's own id), a cold one's is the session's; the
/// record carries no flag of it, and adding one would change its stored and wire shape.
fn warm_claimed(rec: &SessionRecord) -> bool {
    rec.worker
        .as_ref()
        .is_some_and(|w| w.dir.file_name() != Some(rec.id.as_str().as_ref()))
}

/// Counts a release by outcome: `released` when this release ended the session, `ended` when
/// it was over before (`start_ms`, when the release was asked).
pub(crate) fn observe_release(rec: &Result<SessionRecord, IngressError>, start_ms: u64) {
    let outcome = match rec {
        Ok(rec) if rec.ended_at_ms.is_some_and(|at| at < start_ms) => "ended",
        Ok(_) => "released",
        Err(IngressError::NotFound(_)) => "not_found",
        Err(_) => "error",
    };
    metrics::counter!(crate::prometheus::RELEASES, "outcome" => outcome).increment(1);
}

/// Sends `Pool/leave` for the session unless disarmed: dropped with the request's future when
/// the client hangs up.
struct LeaveOnDrop {
    ingress: Ingress,
    node: String,
    id: Option<SessionId>,
}

impl LeaveOnDrop {
    fn disarm(mut self) {
        self.id = None;
    }
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let (ingress, node) = (self.ingress.clone(), std::mem::take(&mut self.node));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let span = telemetry::session_span(&id);
            rt.spawn(
                async move {
                    if let Err(e) = ingress.leave_queue(&node, &id).await {
                        tracing::warn!(error = %e, "could not take a gone client out of the queue");
                    }
                }
                .instrument(span),
            );
        }
    }
}

/// Checks the request's options and applies the defaults.
fn options_of(
    req: CreateSessionRequest,
    default_timeout_ms: u64,
    recording: crate::api::RecordingDefaults,
    limits: crate::api::LimitDefaults,
) -> Result<SessionOptions, ApiError> {
    let mut limit_ignored = Vec::new();
    let (memory_limit, cpu_share) = limits_of(&req, limits, &mut limit_ignored)?;
    if req.record == Some(true) && !recording.installed {
        return Err(ApiError::BadRequest(
            "record: rrweb (the recorder) is not installed on this daemon's machine; run \
             ./install.sh to install it"
                .into(),
        ));
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
        if !url::Url::parse(proxy).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty())) {
            return Err(ApiError::BadRequest(format!(
                "proxyUrl '{}' is not a URL with a host",
                crate::protocol::steel::redact_proxy(proxy)
            )));
        }
        let with_user = url::Url::parse(proxy).is_ok_and(|u| !u.username().is_empty());
        if with_user && !proxy.starts_with("http://") {
            return Err(ApiError::BadRequest(format!(
                "proxyUrl '{}': credentials work with http:// proxies only (Chromium cannot \
                 authenticate to socks proxies, and bro's hop does not speak TLS to an https one)",
                crate::protocol::steel::redact_proxy(proxy)
            )));
        }
    }
    let mobile = req
        .device_config
        .as_ref()
        .is_some_and(|d| d.device == "mobile");
    let mut ignored = req.ignored_options();
    if let Some(d) = &req.device_config
        && !matches!(d.device.as_str(), "desktop" | "mobile")
    {
        ignored.push(format!("deviceConfig.device={}", d.device));
    }
    let options = SessionOptions {
        // steel-browser's mobile minimum size, unless the client chose one.
        dimensions: req.dimensions.or(mobile.then_some(Dimensions {
            width: 508,
            height: 1074,
        })),
        user_agent: req.user_agent.clone().filter(|ua| !ua.is_empty()),
        proxy_url: req.proxy_url.clone(),
        timeout_ms: req.timeout.unwrap_or(default_timeout_ms),
        block_ads: req.block_ads.unwrap_or(false),
        inactivity_timeout_ms: req.inactivity_timeout.unwrap_or(0),
        optimize_bandwidth: req.optimize_bandwidth.clone().unwrap_or_default(),
        // The daemon's default (`--record`) when the client does not say.
        record: req.record.unwrap_or(recording.record),
        memory_limit,
        cpu_share,
        ignored: ignored.into_iter().chain(limit_ignored).collect(),
    };
    // Every option within the bounds bro can honour (timeouts, sizes, lengths).
    options.check().map_err(ApiError::BadRequest)?;
    Ok(options)
}

/// A create's memory limit and CPU share with the daemon's defaults applied; the ones asked
/// for that this daemon does not enforce go to `ignored` (`ignoredOptions`). Asking for more
/// memory than `--max-session-memory` is refused: the daemon's value is a cap.
fn limits_of(
    req: &CreateSessionRequest,
    limits: crate::api::LimitDefaults,
    ignored: &mut Vec<String>,
) -> Result<(Option<u64>, Option<u32>), ApiError> {
    let asked = match &req.memory_limit {
        Some(m) => Some(
            m.bytes()
                .map_err(|e| ApiError::BadRequest(format!("memoryLimit: {e}")))?,
        ),
        None => None,
    };
    if let (Some(asked), Some(cap)) = (asked, limits.max_memory)
        && asked > cap
    {
        return Err(ApiError::BadRequest(format!(
            "memoryLimit: {} is over this daemon's max_session_memory ({})",
            crate::config::format_size(asked),
            crate::config::format_size(cap)
        )));
    }
    let memory = match limits.memory {
        true => asked.or(limits.max_memory),
        false => {
            if asked.is_some() {
                ignored.push("memoryLimit (limits_mode = off)".to_string());
            }
            None
        }
    };
    // A session may weigh as much as an ordinary process (100) or the node's share, if more;
    // never 10000 against its neighbours because a client asked.
    let cpu_cap = limits.cpu_share.unwrap_or(100).max(100);
    if let Some(share) = req.cpu_share
        && limits.cpu
        && share > cpu_cap
    {
        return Err(ApiError::BadRequest(format!(
            "cpuShare: {share} is over this daemon's most ({cpu_cap}: its cpu_share, at least 100)"
        )));
    }
    let cpu = match limits.cpu {
        true => req.cpu_share.or(limits.cpu_share),
        false => {
            if req.cpu_share.is_some() {
                ignored.push("cpuShare (needs a cgroup limits mode)".to_string());
            }
            None
        }
    };
    Ok((memory, cpu))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    status: Option<String>,
    /// The last id of the previous page: this page starts after it.
    cursor_id: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/sessions[?status=live][&cursorId=ID][&limit=N]`, oldest first. A page after the
/// last one is empty, which is what ends the SDKs' auto-pagination.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", params(("status" = Option<String>, Query, description = "starting, live, releasing, released or failed"), ("cursorId" = Option<String>, Query, description = "Start after this session id"), ("limit" = Option<u32>, Query, description = "Page size")), responses((status = 200, body = MultipleSessions), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody)))]
async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<MultipleSessions>, ApiError> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<SessionStatus>().map_err(ApiError::BadRequest)?),
        None => None,
    };
    let limit = match q.limit.as_deref().filter(|s| !s.is_empty()) {
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a positive integer, got '{l}'"
                )));
            }
        },
        None => usize::MAX,
    };
    let mut records = st.ingress.list().await?;
    // The exact status: `?status=live` lists sessions a client can connect to now, not
    // those still starting (shown to steel clients as live, but not yet reachable).
    records.retain(|r| status.is_none_or(|s| r.status == s));
    records.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    let start = match q.cursor_id.as_deref().filter(|c| !c.is_empty()) {
        // An unknown cursor gives an empty page rather than the first one again.
        Some(cursor) => records
            .iter()
            .position(|r| r.id == cursor)
            .map_or(records.len(), |i| i + 1),
        None => 0,
    };
    let sessions = records
        .iter()
        .skip(start)
        .take(limit)
        .map(|r| details(&st, r))
        .collect();
    Ok(Json(MultipleSessions { sessions }))
}

/// `GET /v1/sessions/{id}`; ended sessions stay retrievable.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 200, body = SessionDetails), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<SessionDetails>, ApiError> {
    let id = parse_id(&id)?;
    let rec = st.ingress.get(&id).await?;
    Ok(Json(details(&st, &rec)))
}

/// `POST /v1/sessions/{id}/release`; idempotent. The body, if any, is ignored.
#[utoipa::path(post, path = "/v1/sessions/{id}/release", tag = "sessions", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 200, body = ReleaseSessionResponse), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn release(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ReleaseSessionResponse>, ApiError> {
    let id = parse_id(&id)?;
    let start_ms = now_ms();
    let rec = st.ingress.release(&id).await;
    observe_release(&rec, start_ms);
    let rec = rec?;
    let message = match rec.status {
        SessionStatus::Failed => format!("Session {id} had failed: nothing left to release"),
        status => format!("Session {id} {status}"),
    };
    Ok(Json(ReleaseSessionResponse {
        success: true,
        message,
        session: details(&st, &rec),
    }))
}

/// `POST /v1/sessions/release`: releases every session that is not over yet.
#[utoipa::path(post, path = "/v1/sessions/release", tag = "sessions", responses((status = 200, body = ReleaseAllResponse), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody)))]
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
    let start_ms = now_ms();
    let results =
        futures_util::future::join_all(open.iter().map(|r| st.ingress.release(&r.id))).await;
    // Every release is counted before the first error is answered.
    for result in &results {
        observe_release(result, start_ms);
    }
    let mut released = Vec::new();
    for (rec, result) in open.iter().zip(results) {
        match result {
            Ok(_) => released.push(rec.id.to_string()),
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

/// The error for a call to a live session's browser that failed: 404 when the session ended
/// meanwhile (its teardown marks it `releasing` before the browser goes, so a browser that
/// vanished under the call shows here), else 502 with `what`.
pub(crate) async fn browser_failed(st: &AppState, id: &SessionId, what: String) -> ApiError {
    match live_worker(st, id).await {
        Err(ended @ ApiError::NotFound(_)) => ended,
        _ => ApiError::BadGateway(what),
    }
}

/// The live session `id` and its browser; 404 for an unknown or ended session.
pub(crate) async fn live_worker(
    st: &AppState,
    id: &SessionId,
) -> Result<(SessionRecord, WorkerInfo), ApiError> {
    let rec = st.ingress.get(id).await?;
    match (&rec.status, &rec.worker) {
        (SessionStatus::Live, Some(w)) => {
            let w = w.clone();
            Ok((rec, w))
        }
        _ => Err(ApiError::NotFound(format!(
            "session {id} is {}",
            rec.status
        ))),
    }
}

/// `GET /v1/sessions/{id}/context`: the browser's cookies and the storage of its pages.
#[utoipa::path(get, path = "/v1/sessions/{id}/context", tag = "sessions", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 200, body = SessionContext), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn context(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<SessionContext>, ApiError> {
    let id = parse_id(&id)?;
    let (rec, worker) = live_worker(&st, &id).await?;
    let ctx = match st.host_of(&rec.node)?.context(worker).await {
        Ok(ctx) => ctx,
        Err(e) => {
            let what = format!("reading the context of session {id}: {e}");
            return Err(browser_failed(&st, &id, what).await);
        }
    };
    Ok(Json(ctx))
}

/// `GET /v1/sessions/{id}/live-details`, with steel-browser's keys and the SDK's.
#[utoipa::path(get, path = "/v1/sessions/{id}/live-details", tag = "sessions", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 200, description = "Pages, browser state, websocketUrl and wsUrl"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn live_details(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<LiveDetails>, ApiError> {
    let id = parse_id(&id)?;
    let (rec, worker) = live_worker(&st, &id).await?;
    let browser = match st.host_of(&rec.node)?.pages(worker).await {
        Ok(browser) => browser,
        Err(e) => {
            let what = format!("listing the pages of session {id}: {e}");
            return Err(browser_failed(&st, &id, what).await);
        }
    };
    let d = details(&st, &rec);
    Ok(Json(LiveDetails::new(&d, &browser)))
}

/// The Unix socket's fallback.
pub async fn not_found(req: Request) -> ApiError {
    not_found_for(&req)
}

pub(crate) fn not_found_for(req: &Request<Body>) -> ApiError {
    ApiError::NotFound(format!(
        "Route {}:{} not found",
        req.method(),
        req.uri().path()
    ))
}

pub(crate) fn parse_id(id: &str) -> Result<SessionId, ApiError> {
    SessionId::from_client(id).map_err(ApiError::BadRequest)
}

pub(crate) fn details(st: &AppState, rec: &SessionRecord) -> SessionDetails {
    SessionDetails::from_record(rec, &st.api_base, now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LimitDefaults;
    use crate::protocol::steel::MemoryLimit;

    fn req(memory: Option<MemoryLimit>, cpu: Option<u32>) -> CreateSessionRequest {
        CreateSessionRequest {
            memory_limit: memory,
            cpu_share: cpu,
            ..Default::default()
        }
    }

    #[test]
    fn limits_take_the_daemons_defaults_and_cap() {
        let cgroup = LimitDefaults {
            max_memory: Some(1 << 30),
            cpu_share: Some(50),
            memory: true,
            cpu: true,
        };
        let mut ignored = Vec::new();
        let asked = req(Some(MemoryLimit::Text("512MiB".into())), Some(100));
        assert_eq!(
            limits_of(&asked, cgroup, &mut ignored).unwrap(),
            (Some(512 << 20), Some(100))
        );
        // A share over the node's (at least 100) is refused, like memory over its cap.
        let greedy = req(None, Some(10_000));
        assert!(limits_of(&greedy, cgroup, &mut ignored).is_err());
        let generous = LimitDefaults {
            cpu_share: Some(400),
            ..cgroup
        };
        assert!(limits_of(&req(None, Some(400)), generous, &mut ignored).is_ok());
        assert!(limits_of(&req(None, Some(401)), generous, &mut ignored).is_err());
        assert_eq!(
            limits_of(&req(None, None), cgroup, &mut ignored).unwrap(),
            (Some(1 << 30), Some(50))
        );
        let over = req(Some(MemoryLimit::Bytes(2 << 30)), None);
        assert!(limits_of(&over, cgroup, &mut ignored).is_err());
        let tiny = req(Some(MemoryLimit::Text("1KiB".into())), None);
        assert!(limits_of(&tiny, cgroup, &mut ignored).is_err());
        assert!(ignored.is_empty());

        // Measurement: no CPU share; off: nothing, and what was asked is listed as ignored.
        let measure = LimitDefaults {
            cpu: false,
            ..cgroup
        };
        assert_eq!(
            limits_of(&asked, measure, &mut ignored).unwrap(),
            (Some(512 << 20), None)
        );
        let off = LimitDefaults::default();
        assert_eq!(limits_of(&asked, off, &mut ignored).unwrap(), (None, None));
        assert_eq!(ignored.len(), 3, "{ignored:?}");
    }
}
