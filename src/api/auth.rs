//! The API key check of the TCP port: the `steel-api-key` header, an `Authorization: Bearer`
//! token, or the `apiKey` query parameter that steel's examples append to websocket and
//! `/json/version` URLs. Off unless
//! the daemon has a key; the Unix socket is guarded by its file mode instead.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::Method;

use crate::api::{ApiError, AppState};
use crate::node::auth::{self as node_auth, AuthError, Content};

/// The shortest API key bro accepts: a key is the only thing between the TCP port and the
/// browsers (and the files they can read), so `""` or `"abc"` must not count as one.
pub const MIN_API_KEY_LEN: usize = 16;

/// The paths served without a key: the health check, and rrweb-player's files (public code,
/// the same for every daemon; keyless, so their URLs never carry the key into a browser's
/// cache or history). Exact paths only: anything else, the CDP fallback included, needs it.
const OPEN_PATHS: [&str; 3] = [
    "/v1/health",
    "/v1/assets/rrweb-player.js",
    "/v1/assets/rrweb-player.css",
];

/// Checks a configured API key: present means at least [`MIN_API_KEY_LEN`] characters, with
/// no whitespace or control characters (which a header could not carry intact).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.chars().count() < MIN_API_KEY_LEN {
        return Err(format!(
            "the API key is too short ({} characters): use at least {MIN_API_KEY_LEN}, e.g. \
             `openssl rand -hex 24`; leave it unset for no key on a loopback port",
            key.chars().count()
        ));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the API key may not hold spaces or control characters".into());
    }
    Ok(())
}

/// Rejects requests without the daemon's key (when it has one). `/v1/health` stays open, and
/// so do the replay page's static files ([`OPEN_PATHS`]) and artifact URLs ([`is_artifact`]).
pub async fn require_key(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = st.api_key.as_deref() else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if OPEN_PATHS.contains(&path) || is_artifact(path) || presents(&req, key) {
        return next.run(req).await;
    }
    // Another node of the cluster, forwarding a client's request for a session of this node
    // (a CDP socket, `/json/version`): its signature stands for the client's key, which that
    // node checked. Such requests are GETs without a body.
    if let Some(verifier) = &st.node_auth
        && req.method() == Method::GET
        && req.headers().contains_key(node_auth::NODE_AUTH_HEADER)
    {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        match verifier.verify(req.method(), path, req.headers(), node_auth::unix_now()) {
            Ok(content) if content == Content::empty() => return next.run(req).await,
            Ok(_) => tracing::debug!(path, "refused a node signature of a GET with a body"),
            Err(err @ AuthError::Full(_)) => {
                return ApiError::Unavailable(err.to_string()).into_response();
            }
            Err(err) => tracing::debug!(path, error = %err, "refused a node signature"),
        }
    }
    ApiError::Unauthorized(
        "missing or wrong API key: send it in the steel-api-key header (or as \
         `Authorization: Bearer KEY`)"
            .into(),
    )
    .into_response()
}

/// A screenshot or PDF handed out by URL (`/v1/artifacts/<uuid>.<ext>`): like Steel Cloud's,
/// the URL is the credential (122 random bits, kept for the retention), so a client fetches
/// it as it got it, without the key. The Host and Origin checks still apply.
fn is_artifact(path: &str) -> bool {
    path.strip_prefix("/v1/artifacts/")
        .is_some_and(|name| crate::artifacts::ArtifactName::parse(name).is_some())
}

/// True when the request carries `key`: in the `steel-api-key` header, as an
/// `Authorization: Bearer` token (what Prometheus sends from `authorization.credentials_file`,
/// so the key never shows in its scrape URLs), or in the `apiKey` query parameter as sent or
/// percent-decoded (a browser's `URLSearchParams` writes `%2B`, `%2F`, `%3D` for the `+`,
/// `/`, `=` of a key from `openssl rand -base64`; `+` stays `+`, as keys hold no spaces).
/// Any one of them carrying the key lets the request through: a client may send its own
/// `Authorization` for something else beside a right `apiKey`.
fn presents(req: &Request, key: &str) -> bool {
    let in_header = header_key(req).is_some_and(|k| same(k, key));
    let as_bearer = bearer_key(req).is_some_and(|k| same(k, key));
    let in_query = header_key(req).is_none()
        && query_key(req).is_some_and(|k| {
            same(k, key)
                || same(
                    &percent_encoding::percent_decode_str(k).decode_utf8_lossy(),
                    key,
                )
        });
    in_header || as_bearer || in_query
}

/// The key a request carries, header first, then the bearer token, then the query.
#[cfg(test)]
fn presented_key(req: &Request) -> Option<&str> {
    header_key(req)
        .or_else(|| bearer_key(req))
        .or_else(|| query_key(req))
}

fn header_key(req: &Request) -> Option<&str> {
    req.headers()
        .get("steel-api-key")
        .and_then(|v| v.to_str().ok())
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, one space, RFC
/// 6750); `None` for any other scheme or shape.
fn bearer_key(req: &Request) -> Option<&str> {
    let value = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

fn query_key(req: &Request) -> Option<&str> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some(("apiKey", v)) => Some(v),
            _ => None,
        })
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_short_and_odd_keys_are_refused() {
        for bad in [
            "",
            "abc",
            "fifteen-chars-x",
            "sixteen chars xx",
            "sixteen-chars\nxx",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key("sixteen-chars-xx").is_ok());
        assert!(check_key("").unwrap_err().contains("at least 16"));
    }

    #[test]
    fn a_percent_encoded_key_in_the_query_is_the_key() {
        let key = "abc+def/ghi=jkl0123";
        for uri in [
            "/?apiKey=abc%2Bdef%2Fghi%3Djkl0123",
            "/?apiKey=abc+def/ghi=jkl0123",
            "/?x=1&apiKey=abc%2bdef%2fghi%3djkl0123",
        ] {
            let req = Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            assert!(presents(&req, key), "{uri}");
        }
        for uri in ["/?apiKey=abc%20def%2Fghi%3Djkl0123", "/?apiKey=abc"] {
            let req = Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            assert!(!presents(&req, key), "{uri}");
        }
    }

    #[test]
    fn keys_come_from_header_or_query() {
        let req = Request::builder()
            .uri("/?sessionId=a&apiKey=k1")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(presented_key(&req), Some("k1"));
        let req = Request::builder()
            .uri("/v1/sessions")
            .header("Steel-Api-Key", "k2")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(presented_key(&req), Some("k2"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    fn with_auth(value: &str) -> Request {
        Request::builder()
            .uri("/metrics")
            .header("Authorization", value)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn a_bearer_token_is_the_key_and_nothing_else_shaped_like_it() {
        let key = "0123456789abcdef-test-key";
        for ok in [format!("Bearer {key}"), format!("bearer {key}")] {
            assert!(presents(&with_auth(&ok), key), "{ok}");
        }
        for bad in [
            "Bearer 0123456789abcdef-test-kez".to_string(),
            format!("Basic {key}"),
            format!("Bearer  {key}"),
            format!("Bearer {key} x"),
            format!("Bearer{key}"),
            "Bearer ".to_string(),
            key.to_string(),
        ] {
            assert!(!presents(&with_auth(&bad), key), "{bad}");
        }
        // Another `Authorization` beside a right `apiKey` is fine.
        let req = Request::builder()
            .uri(format!("/?apiKey={key}"))
            .header("Authorization", "Bearer something-else")
            .body(axum::body::Body::empty())
            .unwrap();
        assert!(presents(&req, key));
    }
}
