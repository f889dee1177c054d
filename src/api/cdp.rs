//! CDP on the TCP port: websocket upgrades spliced to the session's browser, and
//! `/json/version` and `/json/list` so `connectOverCDP("http://…")` and Puppeteer's
//! `browserURL` find their websocket through bro.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderMap, Uri};
use serde_json::Value;

use crate::api::sessions::{browser_failed, live_worker, not_found_for, parse_id};
use crate::api::{ApiError, AppState};
use crate::cdp_proxy::Sockets;
use crate::cdp_proxy::{self, ProxyError, Upstream};
use crate::orchestrator::SessionEvents;
use crate::protocol::session::{SessionId, SessionStatus, WorkerInfo};
use crate::protocol::steel::ErrorBody;

/// `/json/version` and `/json/list` (each with and without the trailing slash Playwright adds).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/json/version", get(version))
        .route("/json/version/", get(version))
        .route("/json", get(list))
        .route("/json/", get(list))
        .route("/json/list", get(list))
        .route("/json/list/", get(list))
}

/// The TCP fallback: a websocket upgrade is a CDP connection, anything else is a 404.
pub async fn upgrade_or_not_found(State(st): State<Arc<AppState>>, req: Request) -> Response {
    if !cdp_proxy::is_upgrade(req.headers()) {
        return not_found_for(&req).into_response();
    }
    match proxy(&st, req).await {
        Ok(resp) => resp,
        Err(err) => err.into_response(),
    }
}

async fn proxy(st: &AppState, req: Request) -> Result<Response, ApiError> {
    let (id, worker) = live_target(st, req.uri()).await?;
    // Page-level sockets (from `/json/list`) keep their path; everything else is the browser.
    let ws_path = match req.uri().path() {
        p if p.starts_with("/devtools/page/") => p.to_string(),
        _ => worker.ws_path.clone(),
    };
    let up = Upstream {
        port: worker.port,
        ws_path,
    };
    match cdp_proxy::splice(req, up, st.sockets.link(&id)).await {
        Ok(resp) => Ok(resp),
        Err(e @ ProxyError::NotUpgrade) => Err(ApiError::BadRequest(e.to_string())),
        Err(e @ ProxyError::Upstream(_)) => Err(browser_failed(st, &id, e.to_string()).await),
    }
}

/// `GET /json/version?sessionId=ID`: the browser's answer with `webSocketDebuggerUrl`
/// pointing at bro.
#[utoipa::path(get, path = "/json/version", tag = "cdp", params(("sessionId" = Option<String>, Query, description = "The session; without it, the only live one")), responses((status = 200, description = "The browser's /json/version with webSocketDebuggerUrl pointing at bro"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn version(
    State(st): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (id, worker) = live_target(&st, &uri).await?;
    let mut v = match fetch(&st, &worker, "/json/version").await {
        Ok(v) => v,
        Err(e) => return Err(browser_failed(&st, &id, e.to_string()).await),
    };
    v["webSocketDebuggerUrl"] = Value::String(ws_url(&st, &uri, &headers, "/", &id));
    Ok(Json(v))
}

/// `GET /json/list?sessionId=ID`: the browser's targets, their sockets routed through bro.
#[utoipa::path(get, path = "/json/list", tag = "cdp", params(("sessionId" = Option<String>, Query, description = "The session; without it, the only live one")), responses((status = 200, description = "The browser's targets, their sockets routed through bro"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list(
    State(st): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (id, worker) = live_target(&st, &uri).await?;
    let mut targets = match fetch(&st, &worker, "/json/list").await {
        Ok(v) => v,
        Err(e) => return Err(browser_failed(&st, &id, e.to_string()).await),
    };
    for t in targets.as_array_mut().into_iter().flatten() {
        let path = format!("/devtools/page/{}", t["id"].as_str().unwrap_or_default());
        t["webSocketDebuggerUrl"] = Value::String(ws_url(&st, &uri, &headers, &path, &id));
        if let Some(obj) = t.as_object_mut() {
            obj.remove("devtoolsFrontendUrl");
        }
    }
    Ok(Json(targets))
}

async fn fetch(st: &AppState, worker: &WorkerInfo, path: &str) -> Result<Value, ApiError> {
    let bad =
        |e: reqwest::Error| ApiError::BadGateway(format!("the browser did not answer {path}: {e}"));
    st.http
        .get(worker.devtools_url(path))
        .send()
        .await
        .map_err(bad)?
        .json()
        .await
        .map_err(bad)
}

/// `ws://HOST{path}?sessionId=ID`, on the host the client used, keeping its `apiKey`.
fn ws_url(st: &AppState, uri: &Uri, headers: &HeaderMap, path: &str, id: &str) -> String {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| st.api_base.trim_start_matches("http://").to_string());
    let key = query_value(uri, "apiKey")
        .map(|k| format!("&apiKey={k}"))
        .unwrap_or_default();
    format!("ws://{host}{path}?sessionId={id}{key}")
}

fn query_value<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name && !v.is_empty() => Some(v),
            _ => None,
        })
}

/// A session that ends takes its proxied sockets with it.
impl SessionEvents for Sockets {
    fn ended(&self, id: &SessionId) {
        self.close(id);
    }
}

/// The live session a CDP request is for, and its browser.
async fn live_target(st: &AppState, uri: &Uri) -> Result<(SessionId, WorkerInfo), ApiError> {
    let id = session_of(st, uri).await?;
    let (_, worker) = live_worker(st, &id).await?;
    Ok((id, worker))
}

/// The session a CDP request names, or steel-browser's fallback: the one live session.
async fn session_of(st: &AppState, uri: &Uri) -> Result<SessionId, ApiError> {
    if let Some(id) = cdp_proxy::session_id_of(uri) {
        return parse_id(&id);
    }
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
