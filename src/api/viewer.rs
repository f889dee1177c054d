//! The live viewer. `GET /v1/sessions/debug` (steel-browser's route, `?sessionId=` or the one
//! live session) and `GET /v1/sessions/{id}/player` (Steel Cloud's `debugUrl`) serve one
//! page built into the binary (`api/viewer/`); it opens `/v1/sessions/cast`, steel's cast
//! websocket, which the session's host serves with a screencast of its own
//! ([`WorkerHost::screencast`]), so viewing is not client activity. Sessions that ended are
//! sent on to their replay. Another node's session has its socket spliced to that node's
//! API, signed, one hop, as CDP sockets are (`api::cdp`).
//!
//! The page is guarded like the rest of the TCP port (key, `Host`, `Origin`); a browser
//! cannot send the key header, so the page takes `apiKey` in its URL and hands it to its
//! sockets, and never leaks it: no referrer, no framing by foreign origins, a
//! content-security policy that runs only its own script.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use crate::api::cdp::{CdpError, one_hop, session_of, to_node};
use crate::api::sessions::{browser_failed, live_worker, parse_id};
use crate::api::{ApiError, AppState};
use crate::cdp_proxy::{self, Link, ProxyError, Upstream};
use crate::host::{CastInput, CastOutput, CastSpec, HostErrorKind};
use crate::protocol::cast::{MAX_INPUT_MESSAGE, PageRef};
use crate::protocol::session::SessionId;

const PAGE: &str = include_str!("viewer/viewer.html");
const STYLE: &str = include_str!("viewer/viewer.css");
const SCRIPT: &str = include_str!("viewer/viewer.js");

/// Viewer messages waiting for the host; past this a flood is dropped, not queued.
const INPUT_BUFFER: usize = 64;
/// How often a quiet socket is pinged, and how long without a word from the viewer (pongs
/// included) ends it: a viewer whose network vanished stops its screencast.
const PING_EVERY: Duration = Duration::from_secs(15);
const SILENT_FOR: Duration = Duration::from_secs(45);
/// How long one message to the viewer may take to go out.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the upgraded connection may take to appear.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `pageId` and `apiKey` a URL may carry.
const MAX_PARAM: usize = 256;
/// Messages a viewer may send that are not cast messages or out of bounds, within
/// [`BAD_WINDOW`]: one is dropped (a viewer of another version, a fast triple click), a
/// flood ends the socket.
const MAX_BAD_MESSAGES: u32 = 20;
const BAD_WINDOW: Duration = Duration::from_secs(10);
/// Longest reason of a websocket close frame (125 bytes of payload less the code).
const MAX_CLOSE_REASON: usize = 123;

/// The viewer's routes (TCP port only: a browser cannot open the Unix socket).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/sessions/debug", get(debug))
        .route("/v1/sessions/cast", get(cast))
        .route("/v1/sessions/{id}/player", get(player))
}

/// The query of the viewer page and of its socket (steel's names; bro's `sessionId`, and
/// `quality`, `maxWidth`, `maxHeight`, `maxFps` for the socket, clamped).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ViewerQuery {
    show_controls: Option<String>,
    theme: Option<String>,
    interactive: Option<String>,
    page_id: Option<String>,
    page_index: Option<String>,
    api_key: Option<String>,
    tab_info: Option<String>,
    activate: Option<String>,
    quality: Option<String>,
    max_width: Option<String>,
    max_height: Option<String>,
    max_fps: Option<String>,
}

/// What the page is told (its `bro-config` block).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PageConfig {
    session_id: String,
    show_controls: bool,
    theme: &'static str,
    interactive: bool,
    page_id: Option<String>,
    page_index: Option<u32>,
    api_key: Option<String>,
}

impl ViewerQuery {
    fn flag(name: &str, value: &Option<String>, default: bool) -> Result<bool, ApiError> {
        match value.as_deref() {
            None | Some("") => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::BadRequest(format!(
                "{name} must be true or false, got '{}'",
                v.chars().take(32).collect::<String>()
            ))),
        }
    }

    fn number(name: &str, value: &Option<String>, default: u32) -> Result<u32, ApiError> {
        match value.as_deref() {
            None | Some("") => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError::BadRequest(format!("{name} must be a whole number, got '{}'", {
                    v.chars().take(32).collect::<String>()
                }))
            }),
        }
    }

    /// The page asked for by `pageId` or `pageIndex`, checked.
    fn page(&self) -> Result<Option<PageRef>, ApiError> {
        if let Some(id) = self.page_id.as_deref().filter(|s| !s.is_empty()) {
            let ok = id.len() <= MAX_PARAM
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(ApiError::BadRequest("pageId is not a page id".into()));
            }
            return Ok(Some(PageRef::Id(id.to_string())));
        }
        if self.page_index.as_deref().is_some_and(|s| !s.is_empty()) {
            let index = Self::number("pageIndex", &self.page_index, 0)?;
            return Ok(Some(PageRef::Index(index)));
        }
        Ok(None)
    }

    fn api_key(&self) -> Result<Option<String>, ApiError> {
        match self.api_key.as_deref().filter(|k| !k.is_empty()) {
            Some(k) if k.len() > MAX_PARAM => {
                Err(ApiError::BadRequest("apiKey is too long".into()))
            }
            k => Ok(k.map(str::to_string)),
        }
    }

    fn config(&self, id: &SessionId) -> Result<PageConfig, ApiError> {
        let theme = match self.theme.as_deref() {
            None | Some("" | "dark") => "dark",
            Some("light") => "light",
            Some(_) => return Err(ApiError::BadRequest("theme must be dark or light".into())),
        };
        let page = self.page()?;
        Ok(PageConfig {
            session_id: id.to_string(),
            show_controls: Self::flag("showControls", &self.show_controls, true)?,
            theme,
            interactive: Self::flag("interactive", &self.interactive, true)?,
            page_id: match &page {
                Some(PageRef::Id(id)) => Some(id.clone()),
                _ => None,
            },
            page_index: match page {
                Some(PageRef::Index(i)) => Some(i),
                _ => None,
            },
            api_key: self.api_key()?,
        })
    }
}

/// `GET /v1/sessions/debug`: steel-browser's viewer route.
#[utoipa::path(get, path = "/v1/sessions/debug", tag = "viewer", params(("sessionId" = Option<String>, Query, description = "The session; without it, the only live one"), ("showControls" = Option<bool>, Query, description = "Tabs and address bar (default true)"), ("theme" = Option<String>, Query, description = "dark (default) or light"), ("interactive" = Option<bool>, Query, description = "Forward mouse and keyboard (default true)"), ("pageId" = Option<String>, Query, description = "Show this page only"), ("pageIndex" = Option<u32>, Query, description = "Show the page at this index only"), ("apiKey" = Option<String>, Query, description = "The API key, for a browser that cannot send the header")), responses((status = 200, description = "The live viewer page (HTML)"), (status = 302, description = "The session ended: its replay"), (status = 400, description = "Bad input", body = crate::protocol::steel::ErrorBody), (status = 401, description = "Missing or wrong API key", body = crate::protocol::steel::ErrorBody), (status = 404, body = crate::protocol::steel::ErrorBody)))]
async fn debug(
    State(st): State<Arc<AppState>>,
    Query(q): Query<ViewerQuery>,
    uri: http::Uri,
) -> Result<Response, ApiError> {
    let id = session_of(&st, &uri).await?;
    page(&st, &id, &q).await
}

/// `GET /v1/sessions/{id}/player`: Steel Cloud's `debugUrl`, the same page.
#[utoipa::path(get, path = "/v1/sessions/{id}/player", tag = "viewer", params(("id" = String, Path, description = "Session id (a UUID)"), ("showControls" = Option<bool>, Query, description = "Tabs and address bar (default true)"), ("theme" = Option<String>, Query, description = "dark (default) or light"), ("interactive" = Option<bool>, Query, description = "Forward mouse and keyboard (default true)"), ("pageId" = Option<String>, Query, description = "Show this page only"), ("pageIndex" = Option<u32>, Query, description = "Show the page at this index only"), ("apiKey" = Option<String>, Query, description = "The API key, for a browser that cannot send the header")), responses((status = 200, description = "The live viewer page (HTML)"), (status = 302, description = "The session ended: its replay"), (status = 400, description = "Bad input", body = crate::protocol::steel::ErrorBody), (status = 401, description = "Missing or wrong API key", body = crate::protocol::steel::ErrorBody), (status = 404, body = crate::protocol::steel::ErrorBody)))]
async fn player(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<ViewerQuery>,
) -> Result<Response, ApiError> {
    page(&st, &parse_id(&id)?, &q).await
}

/// The viewer page of session `id`, or a redirect to its replay once it ended.
async fn page(st: &AppState, id: &SessionId, q: &ViewerQuery) -> Result<Response, ApiError> {
    let config = q.config(id)?;
    let rec = st.ingress.get(id).await?;
    if rec.status.is_final() {
        let key = config
            .api_key
            .map(|k| {
                format!(
                    "?apiKey={}",
                    url::form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>()
                )
            })
            .unwrap_or_default();
        let to = format!("/v1/sessions/{id}/replay{key}");
        return Ok((StatusCode::FOUND, [(header::LOCATION, to)]).into_response());
    }
    let nonce = crate::api::html::nonce();
    let json = serde_json::to_string(&config)
        .map_err(|e| ApiError::Internal(format!("the viewer's config: {e}")))?
        // Inside a <script> block: no `</script>` may close it early.
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let html = PAGE
        .replace("{{style}}", STYLE)
        .replace("{{script}}", SCRIPT)
        .replace("{{nonce}}", &nonce)
        .replace("{{config}}", &json);
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'self' http://localhost:* http://127.0.0.1:* \
         http://[::1]:*"
    );
    Ok(crate::api::html::page(html, &csp))
}

/// `GET /v1/sessions/cast` (websocket): steel's cast protocol. With `pageId` or `pageIndex`
/// it screencasts that page (frames out, input in); with `tabInfo=true` or neither it sends
/// the tab list as it changes.
#[utoipa::path(get, path = "/v1/sessions/cast", tag = "viewer", params(("sessionId" = Option<String>, Query, description = "The session; without it, the only live one"), ("pageId" = Option<String>, Query, description = "Screencast this page"), ("pageIndex" = Option<u32>, Query, description = "Screencast the page at this index"), ("tabInfo" = Option<bool>, Query, description = "Send the tab list instead of frames"), ("interactive" = Option<bool>, Query, description = "Take input (default true)"), ("activate" = Option<bool>, Query, description = "Bring the page to the front first (a user's tab switch; interactive only, default false): a page behind another sends no frames"), ("quality" = Option<u32>, Query, description = "JPEG quality, 10..=90 (default 70)"), ("maxWidth" = Option<u32>, Query, description = "Largest frame width, 64..=3840 (default 1920)"), ("maxHeight" = Option<u32>, Query, description = "Largest frame height, 64..=2160 (default 1080)"), ("maxFps" = Option<u32>, Query, description = "Frames a second at most, 1..=30 (default 15)")), responses((status = 101, description = "The cast websocket"), (status = 400, description = "Bad input, or not a websocket upgrade", body = crate::protocol::steel::ErrorBody), (status = 401, description = "Missing or wrong API key", body = crate::protocol::steel::ErrorBody), (status = 404, description = "No such live session or page", body = crate::protocol::steel::ErrorBody), (status = 429, description = "The session has as many viewers as bro serves", body = crate::protocol::steel::ErrorBody)))]
async fn cast(
    State(st): State<Arc<AppState>>,
    Query(q): Query<ViewerQuery>,
    req: Request,
) -> Result<Response, CdpError> {
    if !cdp_proxy::is_upgrade(req.headers()) {
        let msg = "GET /v1/sessions/cast is a websocket: open it with ws://";
        return Err(ApiError::BadRequest(msg.into()).into());
    }
    let accept = accept_key(&req)?;
    // The whole query is checked here, on whichever node: a bad value is a 400 before any
    // forwarding, not the owner's refusal seen through a splice.
    let tab_info = ViewerQuery::flag("tabInfo", &q.tab_info, false)?;
    let page = if tab_info { None } else { q.page()? };
    let interactive = ViewerQuery::flag("interactive", &q.interactive, true)?;
    let activate = ViewerQuery::flag("activate", &q.activate, false)?;
    let quality = clamp_u8(ViewerQuery::number("quality", &q.quality, 70)?);
    let max_width = ViewerQuery::number("maxWidth", &q.max_width, 1920)?;
    let max_height = ViewerQuery::number("maxHeight", &q.max_height, 1080)?;
    let max_fps = ViewerQuery::number("maxFps", &q.max_fps, 15)?;
    q.api_key()?;
    let id = session_of(&st, req.uri()).await?;
    let (rec, worker) = live_worker(&st, &id).await?;
    if rec.node != st.node {
        one_hop(req.headers(), &id, &rec.node, &st.node)?;
        return forward(&st, req, &id, &rec.node).await;
    }
    let spec = CastSpec {
        session_id: id.clone(),
        worker,
        page,
        quality,
        max_width,
        max_height,
        max_fps,
        interactive,
        activate: activate && interactive,
    }
    .clamped();
    let (tx, rx) = mpsc::channel::<CastInput>(INPUT_BUFFER);
    let input =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
            .boxed();
    let out = match st.host_of(&rec.node)?.screencast(spec, input).await {
        Ok(out) => out,
        Err(e) if matches!(e.kind, HostErrorKind::Retryable | HostErrorKind::Permanent) => {
            let what = format!("the viewer of session {id}: {e}");
            return Err(browser_failed(&st, &id, what).await.into());
        }
        Err(e) => return Err(ApiError::from(e).into()),
    };
    let mut req = req;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        // Dropping `out` and `tx` unasked stops the host's screencast.
        let Ok(Ok(io)) = tokio::time::timeout(UPGRADE_TIMEOUT, upgrade).await else {
            return;
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_INPUT_MESSAGE))
            .max_frame_size(Some(MAX_INPUT_MESSAGE));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await;
        serve(ws, out, tx).await;
    });
    Ok(switching(accept))
}

fn clamp_u8(n: u32) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// The `Sec-WebSocket-Accept` of the client's handshake, or 400 for one that is not a
/// version-13 websocket handshake.
fn accept_key(req: &Request) -> Result<HeaderValue, ApiError> {
    let bad = || ApiError::BadRequest("not a websocket handshake (version 13 with a key)".into());
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(bad)?;
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(bad());
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    HeaderValue::from_str(&accept).map_err(|_| bad())
}

fn switching(accept: HeaderValue) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    resp
}

/// Pumps one viewer socket: the host's messages out, the viewer's checked messages in, until
/// either side ends, the viewer sends what it may not, or it falls silent.
async fn serve<S>(
    ws: WebSocketStream<S>,
    mut out: BoxStream<'static, CastOutput>,
    tx: mpsc::Sender<CastInput>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut heard = tokio::time::Instant::now();
    let mut bad = BadMessages::default();
    let mut ping = tokio::time::interval(PING_EVERY);
    let close = loop {
        tokio::select! {
            msg = out.next() => {
                let Some(msg) = msg else { break None };
                let Ok(text) = serde_json::to_string(&msg) else { continue };
                let sent = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::text(text))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break None;
                }
            }
            msg = stream.next() => {
                heard = tokio::time::Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => match inbound(&text) {
                        // A viewer faster than the page loses input rather than queueing it.
                        Ok(input) => { let _ = tx.try_send(input); }
                        Err(why) => {
                            tracing::debug!(%why, "a viewer message was dropped");
                            if !bad.take() {
                                break Some((CloseCode::Policy, format!("too many bad messages; the last: {why}")));
                            }
                        }
                    },
                    Some(Ok(Message::Binary(_))) => {
                        break Some((CloseCode::Unsupported, "messages are JSON text".into()));
                    }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "a viewer socket failed");
                        break None;
                    }
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > SILENT_FOR {
                    break None;
                }
                let sent = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Ping(Default::default()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break None;
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: close_reason(&reason).into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
}

/// Bad messages of one socket: each is dropped, more than [`MAX_BAD_MESSAGES`] within
/// [`BAD_WINDOW`] end the socket.
#[derive(Default)]
struct BadMessages {
    since: Option<tokio::time::Instant>,
    count: u32,
}

impl BadMessages {
    /// Counts one; false once they are a flood.
    fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        match self.since {
            Some(at) if now.duration_since(at) < BAD_WINDOW => self.count += 1,
            _ => (self.since, self.count) = (Some(now), 1),
        }
        self.count <= MAX_BAD_MESSAGES
    }
}

/// `reason` cut to what a close frame carries, at a char boundary: a longer one makes the
/// browser fail the socket (1006) and lose the reason and code.
fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A viewer's message, parsed and checked.
fn inbound(text: &str) -> Result<CastInput, String> {
    let input: CastInput =
        serde_json::from_str(text).map_err(|e| format!("not a cast message: {e}"))?;
    input.check()?;
    Ok(input)
}

/// Splices the viewer's socket to the API of `node`, which owns the session: signed, with
/// `sessionId` and without `apiKey`. The bytes pass untouched and, as viewing is not client
/// activity, the splice counts nothing against the session's idle timer.
async fn forward(
    st: &AppState,
    req: Request,
    id: &SessionId,
    node: &str,
) -> Result<Response, CdpError> {
    let mut pairs: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    pairs.retain(|(k, _)| k != "apiKey" && k != "sessionId");
    pairs.push(("sessionId".into(), id.to_string()));
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let path = format!("/v1/sessions/cast?{query}");
    let (addr, headers) = to_node(st, node, &path)?;
    let up = Upstream {
        addr,
        ws_path: path,
        headers,
    };
    let link = Link {
        closed: st.sockets.link(id).closed,
        ..Link::default()
    };
    match cdp_proxy::splice(req, up, link).await {
        Ok(resp) => Ok(resp),
        Err(e @ ProxyError::NotUpgrade) => Err(ApiError::BadRequest(e.to_string()).into()),
        Err(e @ ProxyError::Upstream(_)) => Err(browser_failed(st, id, e.to_string()).await.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON && cut.len() >= MAX_CLOSE_REASON - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_few_bad_messages_pass_a_flood_does_not() {
        let mut bad = BadMessages::default();
        assert!((0..MAX_BAD_MESSAGES).all(|_| bad.take()));
        assert!(!bad.take());
    }
}
