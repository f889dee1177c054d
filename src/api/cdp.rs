//! CDP on the TCP port: websocket upgrades spliced to the session's browser, and
//! `/json/version` and `/json/list` so `connectOverCDP("http://…")` and Puppeteer's
//! `browserURL` find their websocket through bro.
//!
//! A request for another node's session is passed to that node once, signed for it with the
//! cluster secret. A request that arrived signed by a node is never passed on (409): the
//! node that signed it should have sent it to the owner, so it is a loop or a forgery.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

use crate::api::sessions::{browser_failed, live_worker, not_found_for, parse_id};
use crate::api::{ApiError, AppState};
use crate::cdp_proxy::Sockets;
use crate::cdp_proxy::{self, ProxyError, Upstream};
use crate::node::auth::{self as node_auth, Content, Signed};
use crate::orchestrator::SessionEvents;
use crate::protocol::session::{SessionId, SessionRecord, SessionStatus, WorkerInfo};
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

/// Why a CDP request ends here: an [`ApiError`], or a request that another node signed for a
/// session this node does not own.
#[derive(Debug)]
pub enum CdpError {
    /// The usual failures, answered by [`ApiError`].
    Api(ApiError),
    /// A node-signed request for another node's session: 409, never passed on.
    SecondHop(String),
}

impl From<ApiError> for CdpError {
    fn from(err: ApiError) -> Self {
        CdpError::Api(err)
    }
}

impl IntoResponse for CdpError {
    fn into_response(self) -> Response {
        match self {
            CdpError::Api(err) => err.into_response(),
            CdpError::SecondHop(message) => {
                tracing::debug!(%message, "refused to pass on a node's request");
                let status = StatusCode::CONFLICT;
                let body = ErrorBody {
                    message,
                    status_code: status.as_u16(),
                    error: status.canonical_reason().unwrap_or("Conflict").to_string(),
                };
                (status, Json(body)).into_response()
            }
        }
    }
}

/// Refuses to forward a request for session `id`, owned by node `owner`, that arrived with a
/// node signature (whether or not it checks out): nodes forward a client's request once, to
/// the owner, so a signed request for a session that is not here is a loop or an attack.
pub fn one_hop(
    headers: &HeaderMap,
    id: &SessionId,
    owner: &str,
    here: &str,
) -> Result<(), CdpError> {
    if headers.contains_key(node_auth::NODE_AUTH_HEADER) {
        return Err(CdpError::SecondHop(format!(
            "session {id} is on node {owner}, not on this node ({here}), and this request was              forwarded by another node: bro forwards a request to the owning node once, never              on (the cluster's views of the session differ, or the request is forged)"
        )));
    }
    Ok(())
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

async fn proxy(st: &AppState, req: Request) -> Result<Response, CdpError> {
    let (id, rec, worker) = live_target(st, req.uri()).await?;
    let page = req
        .uri()
        .path()
        .starts_with("/devtools/page/")
        .then(|| req.uri().path().to_string());
    let up = if rec.node == st.node {
        // Page-level sockets (from `/json/list`) keep their path; everything else is the
        // browser.
        Upstream::browser(worker.port, page.unwrap_or_else(|| worker.ws_path.clone()))
    } else {
        // Another node's session: its node splices the socket on to the browser; the bytes
        // pass here untouched.
        one_hop(req.headers(), &id, &rec.node, &st.node)?;
        let path = format!("{}?sessionId={id}", page.as_deref().unwrap_or("/"));
        let (addr, headers) = to_node(st, &rec.node, &path)?;
        Upstream {
            addr,
            ws_path: path,
            headers,
        }
    };
    match cdp_proxy::splice(req, up, st.sockets.link(&id)).await {
        Ok(resp) => Ok(resp),
        Err(e @ ProxyError::NotUpgrade) => Err(ApiError::BadRequest(e.to_string()).into()),
        Err(e @ ProxyError::Upstream(_)) => {
            Err(browser_failed(st, &id, e.to_string()).await.into())
        }
    }
}

/// `GET /json/version?sessionId=ID`: the browser's answer with `webSocketDebuggerUrl`
/// pointing at bro.
#[utoipa::path(get, path = "/json/version", tag = "cdp", params(("sessionId" = Option<String>, Query, description = "The session; without it, the only live one")), responses((status = 200, description = "The browser's /json/version with webSocketDebuggerUrl pointing at bro"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Forwarded by another node for a session not on this one", body = ErrorBody)))]
async fn version(
    State(st): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, CdpError> {
    let (id, rec, worker) = live_target(&st, &uri).await?;
    let mut v = match fetch(&st, &headers, &id, &rec, &worker, "/json/version").await {
        Ok(v) => v,
        Err(CdpError::Api(e)) => return Err(browser_failed(&st, &id, e.to_string()).await.into()),
        Err(e) => return Err(e),
    };
    v["webSocketDebuggerUrl"] = Value::String(ws_url(&st, &uri, &headers, "/", &id));
    Ok(Json(v))
}

/// `GET /json/list?sessionId=ID`: the browser's targets, their sockets routed through bro.
#[utoipa::path(get, path = "/json/list", tag = "cdp", params(("sessionId" = Option<String>, Query, description = "The session; without it, the only live one")), responses((status = 200, description = "The browser's targets, their sockets routed through bro"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Forwarded by another node for a session not on this one", body = ErrorBody)))]
async fn list(
    State(st): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, CdpError> {
    let (id, rec, worker) = live_target(&st, &uri).await?;
    let mut targets = match fetch(&st, &headers, &id, &rec, &worker, "/json/list").await {
        Ok(v) => v,
        Err(CdpError::Api(e)) => return Err(browser_failed(&st, &id, e.to_string()).await.into()),
        Err(e) => return Err(e),
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

/// The browser's answer to `path`: from the browser itself, or, for another node's session,
/// through that node's API (which asks its browser) unless the request (`headers`) came from
/// a node already.
async fn fetch(
    st: &AppState,
    headers: &HeaderMap,
    id: &SessionId,
    rec: &SessionRecord,
    worker: &WorkerInfo,
    path: &str,
) -> Result<Value, CdpError> {
    let bad =
        |e: reqwest::Error| ApiError::BadGateway(format!("the browser did not answer {path}: {e}"));
    let req = if rec.node == st.node {
        st.http.get(worker.devtools_url(path))
    } else {
        one_hop(headers, id, &rec.node, &st.node)?;
        let path = format!("{path}?sessionId={id}");
        let (addr, headers) = to_node(st, &rec.node, &path)?;
        let mut req = st.node_http.get(format!("http://{addr}{path}"));
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req
    };
    let resp = req
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(bad)?;
    if !resp.status().is_success() {
        return Err(ApiError::BadGateway(format!(
            "{path} answered {} for session {id}",
            resp.status()
        ))
        .into());
    }
    Ok(resp.json().await.map_err(bad)?)
}

/// The `ip:port` of `node`'s API and the headers that sign a `GET path_and_query` without a
/// body for it.
pub(crate) fn to_node(
    st: &AppState,
    node: &str,
    path_and_query: &str,
) -> Result<(String, Vec<(http::HeaderName, http::HeaderValue)>), ApiError> {
    let unknown = || {
        ApiError::Unavailable(format!(
            "node {node} is not known here (no heartbeat of it seen)"
        ))
    };
    let (Some(view), Some(verifier)) = (&st.cluster, &st.node_auth) else {
        return Err(unknown());
    };
    let api = view.api_of(node).ok_or_else(unknown)?;
    let addr = api
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/').to_string())
        .ok_or_else(unknown)?;
    let signed = Signed {
        target: node,
        method: &http::Method::GET,
        path_and_query,
        content: Content::empty(),
        files_of: None,
        min_size: None,
    };
    let headers = node_auth::sign(verifier.secret(), &signed, node_auth::unix_now())
        .map_err(|e| ApiError::Internal(format!("signing a request to node {node}: {e}")))?;
    Ok((addr, headers.into()))
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

/// The live session a CDP request is for, its record and its browser.
async fn live_target(
    st: &AppState,
    uri: &Uri,
) -> Result<(SessionId, SessionRecord, WorkerInfo), ApiError> {
    let id = session_of(st, uri).await?;
    let (rec, worker) = live_worker(st, &id).await?;
    Ok((id, rec, worker))
}

/// The session a CDP request names, or steel-browser's fallback: the one live session.
pub(crate) async fn session_of(st: &AppState, uri: &Uri) -> Result<SessionId, ApiError> {
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
