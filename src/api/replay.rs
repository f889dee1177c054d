//! The replay page of a recorded session (`GET /v1/sessions/{id}/replay`) and the rrweb-player
//! it runs (`GET /v1/assets/rrweb-player.{js,css}`).
//!
//! The page is embedded in the binary; the player comes from the install (`install.sh` puts
//! it, pinned, in bro's data dir) and is read by the daemon at start, handed here as bytes:
//! this module reads no files. The page asks `GET /v1/sessions/{id}/events` for the recording
//! (a JSON array of rrweb events) and plays it; an API key in the page's URL (`apiKey`, where
//! a browser cannot send a header) goes with that request in the `steel-api-key` header. The
//! player's files are the same public code for everyone and need no key (see
//! [`auth`](super::auth)), so no key is ever put in their URLs.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::api::sessions::parse_id;
use crate::api::{ApiError, AppState};

/// The replay page: HTML, CSS and script in one file, no build step.
const PAGE: &str = include_str!("replay/page.html");

/// What the page may load and reach. A recording is page-shaped DOM an attacker may have
/// written, replayed in rrweb's iframe (sandboxed without scripts, and under this policy,
/// which it inherits): scripts run only with the response's nonce (the page's own and the
/// player it loads); pictures, styles, fonts and media come from bro, `https:`, `data:` or
/// `blob:` only, so a replay never has the viewer's browser send requests to plain-http
/// addresses of the viewer's LAN or loopback; no plugins, forms or framing by others.
/// Styles stay `'unsafe-inline'`: recorded pages carry inline styles, and CSS runs no script.
fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'nonce-{nonce}'; \
         style-src 'self' 'unsafe-inline' https: data: blob:; img-src 'self' https: data: blob:; \
         font-src 'self' https: data:; media-src 'self' https: data: blob:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'self'"
    )
}

/// How long a browser may keep the player without asking again (a day; an upgrade of bro
/// that pins another rrweb changes the `ETag`, and the browser asks again after this). The
/// assets need no API key, but one may come along in an old link's URL: `private` keeps
/// shared caches from storing such an answer.
const ASSET_MAX_AGE: &str = "private, max-age=86400";

/// The rrweb-player files the daemon serves, read from the install at start.
#[derive(Debug, Clone)]
pub struct PlayerAssets {
    pub js: Asset,
    pub css: Asset,
}

/// One file's bytes and its entity tag.
#[derive(Debug, Clone)]
pub struct Asset {
    bytes: bytes::Bytes,
    etag: String,
}

impl Asset {
    /// The file's bytes, tagged with their digest.
    pub fn new(bytes: impl Into<bytes::Bytes>) -> Self {
        let bytes = bytes.into();
        let digest = Sha256::digest(&bytes);
        let etag = format!("\"{}\"", hex16(&digest));
        Asset { bytes, etag }
    }
}

/// The first 16 bytes of a digest in hex: enough to tell two versions of a file apart.
fn hex16(digest: &[u8]) -> String {
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The replay routes (the TCP port's: browsers do not reach the Unix socket).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/sessions/{id}/replay", get(page))
        .route("/v1/assets/rrweb-player.js", get(player_js))
        .route("/v1/assets/rrweb-player.css", get(player_css))
}

/// The answer when rrweb is not installed.
fn not_installed() -> ApiError {
    ApiError::Unavailable(
        "rrweb-player is not installed, so bro cannot replay recordings: run `bash install.sh` \
         (it installs rrweb and rrweb-player from npm into bro's data dir), then restart the \
         daemon"
            .into(),
    )
}

/// `GET /v1/sessions/{id}/replay`: the page that plays the session's recording.
async fn page(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    parse_id(&id)?;
    if st.rrweb_player.is_none() {
        return Err(not_installed());
    }
    let nonce = crate::api::html::nonce();
    let html = PAGE.replace("{{nonce}}", &nonce);
    Ok(crate::api::html::page(html, &page_csp(&nonce)))
}

/// `GET /v1/assets/rrweb-player.js`.
async fn player_js(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match &st.rrweb_player {
        Some(p) => asset(&p.js, "text/javascript; charset=utf-8", &headers),
        None => not_installed().into_response(),
    }
}

/// `GET /v1/assets/rrweb-player.css`.
async fn player_css(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match &st.rrweb_player {
        Some(p) => asset(&p.css, "text/css; charset=utf-8", &headers),
        None => not_installed().into_response(),
    }
}

/// A static file with its type and caching headers; 304 when the browser has it already.
fn asset(file: &Asset, content_type: &'static str, req: &HeaderMap) -> Response {
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == file.etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Body::from(file.bytes.clone()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let headers = resp.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(ASSET_MAX_AGE),
    );
    if let Ok(tag) = HeaderValue::from_str(&file.etag) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
