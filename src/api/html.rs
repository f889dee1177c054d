//! What bro's own HTML pages (the live viewer, the replay page) share: a per-response nonce
//! for their inline script, and the headers every such page is served with.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

/// A fresh random nonce for one response's `script-src 'nonce-…'`: inline script carrying it
/// runs, any other (injected markup, recorded content) does not.
pub fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// An HTML page with content security policy `csp`. Its URL may carry the API key, so it is
/// never sent on as a referrer nor kept by any cache.
pub fn page(html: String, csp: &str) -> Response {
    let mut resp = html.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn nonces_differ_and_fit_a_header() {
        let (a, b) = (super::nonce(), super::nonce());
        assert_ne!(a, b);
        assert!(a.len() >= 32 && a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
