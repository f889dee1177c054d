//! The API key check of the TCP port: the `steel-api-key` header, or the `apiKey` query
//! parameter that steel's examples append to websocket and `/json/version` URLs. Off unless
//! the daemon has a key; the Unix socket is guarded by its file mode instead.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::{ApiError, AppState};

/// Rejects requests without the daemon's key (when it has one); `/v1/health` stays open.
pub async fn require_key(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = st.api_key.as_deref() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/v1/health" || presented_key(&req).is_some_and(|k| same(k, key)) {
        return next.run(req).await;
    }
    ApiError::Unauthorized("missing or wrong API key: send it in the steel-api-key header".into())
        .into_response()
}

/// The key a request carries, header first.
fn presented_key(req: &Request) -> Option<&str> {
    if let Some(v) = req
        .headers()
        .get("steel-api-key")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v);
    }
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
}
