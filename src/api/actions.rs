//! steel's quick actions: `POST /v1/scrape`, `/v1/screenshot`, `/v1/pdf` (and their
//! `/v1/sessions/...` forms). Each runs in a short-lived session that goes through the
//! orchestrator like any other, or, with bro's `sessionId` field, in a new tab of that live
//! session.
//!
//! A screenshot or PDF comes as bytes, as steel-browser sends it, unless the client accepts
//! only JSON (`Accept: application/json`, what the typed steel SDKs send): then it gets Steel
//! Cloud's `{"url": ...}` (and a scrape `{"screenshot": {"url"}, "pdf": {"url"}}`), the bytes
//! kept in this node's [`ArtifactStore`](crate::artifacts::ArtifactStore) and served at
//! `GET /v1/artifacts/{name}` for the daemon's retention.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};

use crate::api::Caller;
use crate::api::sessions::{browser_failed, live_worker, parse_id};
use crate::api::{ApiError, AppState};
use crate::artifacts::ArtifactKind;
use crate::host::{HostErrorKind, PageOutput, PageWork};
use crate::orchestrator::ingress::IngressError;
use crate::protocol::actions::{ActionRequest, ArtifactUrl};
use crate::protocol::session::{SessionId, SessionOptions};
use crate::protocol::steel::ErrorBody;

/// Lifetime of the session a quick action runs in, should its release never come.
const ACTION_SESSION_TIMEOUT_MS: u64 = 120_000;

const FORMATS: [&str; 4] = ["html", "readability", "cleaned_html", "markdown"];

/// The quick action routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/scrape", post(scrape))
        .route("/v1/screenshot", post(screenshot))
        .route("/v1/pdf", post(pdf))
        .route("/v1/sessions/scrape", post(scrape))
        .route("/v1/sessions/screenshot", post(screenshot))
        .route("/v1/sessions/pdf", post(pdf))
        .route("/v1/artifacts/{name}", get(artifact))
}

/// True when the client accepts only JSON (`Accept: application/json`, as the typed steel
/// SDKs send): it gets a URL to the bytes instead of the bytes. `*/*`, an image or PDF type,
/// or no `Accept` at all keep steel-browser's bytes.
fn accepts_only_json(headers: &HeaderMap) -> bool {
    let mut json = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(text) = value.to_str() else {
            return false;
        };
        for range in text.split(',') {
            let media = range.split(';').next().unwrap_or_default().trim();
            if media.is_empty() {
                continue;
            }
            if !media.eq_ignore_ascii_case("application/json") {
                return false;
            }
            json = true;
        }
    }
    json
}

/// Keeps `bytes` in this node's artifacts and answers the URL they are served at.
async fn artifact_url(
    st: &AppState,
    kind: ArtifactKind,
    bytes: Vec<u8>,
) -> Result<String, ApiError> {
    let store = Arc::clone(&st.artifacts);
    let name = tokio::task::spawn_blocking(move || store.put(kind, &bytes))
        .await
        .map_err(|e| ApiError::Internal(format!("storing the artifact: {e}")))??;
    Ok(format!("{}/v1/artifacts/{name}", st.api_base))
}

/// `GET /v1/artifacts/{name}`: a screenshot (`UUID.jpg`) or PDF (`UUID.pdf`) a quick action
/// handed out by URL, until the daemon's retention passes or the artifacts quota evicts it.
#[utoipa::path(get, path = "/v1/artifacts/{name}", tag = "actions", params(("name" = String, Path, description = "UUID.jpg or UUID.pdf, as the screenshot's or PDF's url names it")), responses((status = 200, description = "The JPEG or PDF bytes"), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, description = "No such artifact, or it expired", body = ErrorBody)))]
async fn artifact(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&st.artifacts);
    let (kind, file, size) = tokio::task::spawn_blocking(move || store.open_artifact(&name))
        .await
        .map_err(|e| ApiError::Internal(format!("reading the artifact: {e}")))??;
    let headers = [
        (header::CONTENT_TYPE, kind.content_type().to_string()),
        (header::CONTENT_LENGTH, size.to_string()),
        (header::CACHE_CONTROL, "private, no-cache".to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        // Served on the API's origin: whatever a PDF holds runs nowhere near it.
        (header::CONTENT_SECURITY_POLICY, "sandbox".to_string()),
    ];
    Ok((headers, Body::from_stream(read_chunks(file, size))).into_response())
}

/// The first `size` bytes of `file`, in chunks of at most 64 KiB.
fn read_chunks(
    file: std::fs::File,
    size: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    const CHUNK: usize = 64 << 10;
    let file = tokio::fs::File::from_std(file);
    futures_util::stream::try_unfold((file, size), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let want = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
        let mut buf = vec![0; want];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the artifact was cut short",
            ));
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), (file, left - n as u64))))
    })
}

fn parse(body: &Bytes) -> Result<ActionRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("a url is required".into()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))
}

/// The longest `delay` (ms to wait after the page loads) a quick action takes.
const MAX_DELAY_MS: u64 = 30_000;

/// The URL to load: `https://` is added when there is no scheme, as steel does. `file://`
/// only for the owner on bro's Unix socket: over TCP, any local process (or a web page that
/// got past the Origin check) could read the user's files through the browser.
fn target_url(req: &ActionRequest, caller: Caller) -> Result<String, ApiError> {
    let raw = req.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    let raw = raw.ok_or_else(|| ApiError::BadRequest("a url is required".into()))?;
    // A URL with a scheme bro loads is taken as it is (`data:` has no `//`); anything else
    // without `://` is a host name, `example.com` or `localhost:3000`, and gets https.
    let parsed = match reqwest::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https" | "file" | "data") => Ok(u),
        _ if !raw.contains("://") => reqwest::Url::parse(&format!("https://{raw}")),
        other => other,
    };
    match parsed {
        Ok(u) if u.scheme() == "file" && caller != Caller::Owner => {
            Err(ApiError::BadRequest(format!(
                "{raw}: file:// URLs are loaded only for requests on bro's Unix socket \
                 (the owner's); over TCP they would let any local process read your files"
            )))
        }
        Ok(u) if matches!(u.scheme(), "http" | "https" | "file" | "data") => Ok(u.to_string()),
        _ => Err(ApiError::BadRequest(format!("Invalid URL: {raw}"))),
    }
}

/// Loads the page (in a short-lived session or the named one), takes what `take` asks for
/// from it, cleans up.
async fn with_page(
    st: &AppState,
    caller: Caller,
    req: &ActionRequest,
    take: PageWork,
) -> Result<PageOutput, ApiError> {
    let url = target_url(req, caller)?;
    let delay = req.delay.unwrap_or(0);
    if delay > MAX_DELAY_MS {
        return Err(ApiError::BadRequest(format!(
            "delay must be at most {MAX_DELAY_MS} ms, got {delay}"
        )));
    }
    let (node, worker, own_session) = match &req.session_id {
        Some(id) => {
            let (rec, worker) = live_worker(st, &parse_id(id)?).await?;
            (rec.node, worker, None)
        }
        None => {
            let id = SessionId::random();
            let options = SessionOptions {
                proxy_url: req.proxy_url.clone(),
                timeout_ms: ACTION_SESSION_TIMEOUT_MS,
                ..Default::default()
            };
            // Quick actions do not queue: a full node answers 429 at once.
            let (started, start_ms) = (std::time::Instant::now(), crate::orchestrator::now_ms());
            let created = st
                .ingress
                .create(
                    &id,
                    options,
                    None,
                    None,
                    Some(st.place(None, &id).await?),
                    st.control.base.warm > 0,
                )
                .await
                .map_err(|err| match err {
                    IngressError::Failed(reason) | IngressError::Refused(reason) => {
                        ApiError::Internal(format!("the action's session failed: {reason}"))
                    }
                    err => err.into(),
                });
            // Counted like the API's creates (and its release below like theirs), so the
            // session's end, counted too, has its start.
            crate::api::sessions::observe_create(&created, started.elapsed(), start_ms);
            let rec = created?;
            let Some(worker) = rec.worker else {
                let reason = rec.reason.unwrap_or_default();
                return Err(ApiError::Internal(format!(
                    "the action's session failed: {reason}"
                )));
            };
            (rec.node, worker, Some(id))
        }
    };
    let work = PageWork {
        url,
        delay_ms: delay,
        ..take
    };
    // The page itself not loading (DNS, refused, TLS...) is about the URL the client gave,
    // not a fault of bro: 422. Anything else went wrong on bro's side: 502.
    let result = match st.host_of(&node) {
        Ok(host) => host.act(worker, work).await.map_err(|e| match e.kind {
            HostErrorKind::Refused => ApiError::Unprocessable(e.message),
            _ => ApiError::BadGateway(e.message),
        }),
        Err(err) => Err(err),
    };
    if let Some(id) = &own_session {
        let start_ms = crate::orchestrator::now_ms();
        let released = st.ingress.release(id).await;
        crate::api::sessions::observe_release(&released, start_ms);
        if let Err(err) = released {
            tracing::warn!(session_id = %id, %err, "releasing a quick action's session failed");
        }
    }
    // In a client's live session that ended meanwhile, the browser's failure is a 404.
    match (result, &req.session_id) {
        (Err(ApiError::BadGateway(what)), Some(id)) if own_session.is_none() => {
            Err(browser_failed(st, &parse_id(id)?, what).await)
        }
        (result, _) => result,
    }
}

/// What a quick action takes from its page, besides loading it.
fn take(scrape: Option<Vec<String>>, screenshot: bool, full_page: bool, pdf: bool) -> PageWork {
    PageWork {
        url: String::new(),
        delay_ms: 0,
        scrape,
        screenshot,
        full_page,
        pdf,
    }
}

/// `POST /v1/scrape`: content in the asked formats (html by default), metadata, links, and
/// optionally a JPEG screenshot and PDF: base64, or `{"url"}` for a client that accepts only
/// JSON.
#[utoipa::path(post, path = "/v1/scrape", tag = "actions", request_body = ActionRequest, responses((status = 200, description = "content, metadata, links"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 422, description = "The page did not load", body = ErrorBody)))]
async fn scrape(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req = parse(&body)?;
    let formats = req.format.clone().unwrap_or_else(|| vec!["html".into()]);
    if let Some(bad) = formats.iter().find(|f| !FORMATS.contains(&f.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown format '{bad}' (expected one of: {})",
            FORMATS.join(", ")
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let work = take(Some(formats), req.screenshot, req.full_page, req.pdf);
    let page = with_page(&st, caller, &req, work).await?;
    let mut out = page.scraped.unwrap_or_default();
    out["metadata"]["statusCode"] = json!(page.status_code);
    // Steel Cloud's `{url}` objects for a client that takes only JSON, steel-browser's
    // base64 otherwise.
    let by_url = accepts_only_json(&headers);
    for (key, kind, bytes) in [
        ("screenshot", ArtifactKind::Jpeg, page.screenshot),
        ("pdf", ArtifactKind::Pdf, page.pdf),
    ] {
        let Some(bytes) = bytes else { continue };
        out[key] = if by_url {
            json!({ "url": artifact_url(&st, kind, bytes).await? })
        } else {
            json!(b64.encode(bytes))
        };
    }
    Ok(Json(out))
}

/// `POST /v1/screenshot`: the page as JPEG bytes (`fullPage` for all of it), or a URL to
/// them for a client that accepts only JSON.
#[utoipa::path(post, path = "/v1/screenshot", tag = "actions", request_body = ActionRequest, responses((status = 200, description = "JPEG bytes; with `Accept: application/json` alone, {\"url\"} to them (GET /v1/artifacts/{name})", content_type = "image/jpeg"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 422, description = "The page did not load", body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn screenshot(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = parse(&body)?;
    let work = take(None, true, req.full_page, false);
    let jpeg = with_page(&st, caller, &req, work)
        .await?
        .screenshot
        .unwrap_or_default();
    bytes_or_url(&st, &headers, ArtifactKind::Jpeg, jpeg).await
}

/// The bytes as they are, or `{"url": ...}` to them for a client that accepts only JSON.
async fn bytes_or_url(
    st: &AppState,
    headers: &HeaderMap,
    kind: ArtifactKind,
    bytes: Vec<u8>,
) -> Result<Response, ApiError> {
    if accepts_only_json(headers) {
        let url = artifact_url(st, kind, bytes).await?;
        return Ok(Json(ArtifactUrl { url }).into_response());
    }
    Ok(([(header::CONTENT_TYPE, kind.content_type())], bytes).into_response())
}

/// `POST /v1/pdf`: the page printed to PDF bytes, or a URL to them for a client that
/// accepts only JSON.
#[utoipa::path(post, path = "/v1/pdf", tag = "actions", request_body = ActionRequest, responses((status = 200, description = "PDF bytes; with `Accept: application/json` alone, {\"url\"} to them (GET /v1/artifacts/{name})", content_type = "application/pdf"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 422, description = "The page did not load", body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn pdf(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = parse(&body)?;
    let work = take(None, false, false, true);
    let pdf = with_page(&st, caller, &req, work)
        .await?
        .pdf
        .unwrap_or_default();
    bytes_or_url(&st, &headers, ArtifactKind::Pdf, pdf).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_scheme_and_bad_ones_are_400() {
        let req = |u: &str| ActionRequest {
            url: Some(u.into()),
            ..Default::default()
        };
        assert_eq!(
            target_url(&req("example.com"), Caller::Tcp).unwrap(),
            "https://example.com/"
        );
        assert_eq!(
            target_url(&req("http://127.0.0.1:8/x"), Caller::Tcp).unwrap(),
            "http://127.0.0.1:8/x"
        );
        assert!(matches!(
            target_url(&req("http://"), Caller::Tcp),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            target_url(&req("ftp://x"), Caller::Tcp),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            target_url(&ActionRequest::default(), Caller::Tcp),
            Err(ApiError::BadRequest(_))
        ));
        // file:// only for the owner on the Unix socket.
        assert!(matches!(
            target_url(&req("file:///etc/passwd"), Caller::Tcp),
            Err(ApiError::BadRequest(m)) if m.contains("Unix socket")
        ));
        assert_eq!(
            target_url(&req("file:///etc/hosts"), Caller::Owner).unwrap(),
            "file:///etc/hosts"
        );
        // data: URLs are taken as they are; a host with a port still gets https.
        assert_eq!(
            target_url(&req("data:text/html,<title>t</title>"), Caller::Tcp).unwrap(),
            "data:text/html,<title>t</title>"
        );
        assert_eq!(
            target_url(&req("localhost:3000/x"), Caller::Tcp).unwrap(),
            "https://localhost:3000/x"
        );
    }
}
