//! Who may talk to the TCP port: not a web page in the user's own browser (a non-loopback
//! `Origin` is refused, but for bro's own pages: an origin equal to the `Host` asked for),
//! not a DNS-rebound name (a `Host` that is neither a loopback name nor
//! the address bro listens on is refused), and no body over the limit.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::{ApiError, AppState};

/// Largest request body on every route but file uploads, which the session's files quota
/// bounds instead, as the host writes them (`api::files`).
pub const MAX_BODY: u64 = 1 << 20;

/// Refuses foreign origins and hosts, and bodies over the limit, before any handler runs.
pub async fn guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(origin) = req
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        && !is_loopback_origin(origin)
        && !same_origin(origin, host)
    {
        let msg = format!("requests from the web origin {origin} are refused");
        return ApiError::Forbidden(msg).into_response();
    }
    if !host_allowed(host, st.bind) {
        return ApiError::Forbidden(format!("the Host '{host}' is not this bro's address"))
            .into_response();
    }
    let upload = req.uri().path().contains("/files");
    let length = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if !upload && length.is_some_and(|n| n > MAX_BODY) {
        return ApiError::TooLarge(format!("request bodies are limited to {MAX_BODY} bytes"))
            .into_response();
    }
    next.run(req).await
}

/// `http(s)://localhost[:port]`, `http://127.x.y.z[:port]`, `http://[::1][:port]`.
fn is_loopback_origin(origin: &str) -> bool {
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    is_loopback_host(rest.trim_end_matches('/'))
}

/// True when `origin` is bro's own page: the authority the request was sent to (the live
/// viewer, served from a LAN address, opening its websocket). The `Host` check below still
/// applies, so a rebound name does not pass by being its own origin.
fn same_origin(origin: &str, host: &str) -> bool {
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    !host.is_empty() && authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// A `Host` (or origin authority) naming loopback, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = strip_port(host);
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Loopback names always; the bound address too; anything when bound to all interfaces
/// (then an API key is required, which a rebound page does not have).
fn host_allowed(host: &str, bind: IpAddr) -> bool {
    if host.is_empty() || bind.is_unspecified() || is_loopback_host(host) {
        return true;
    }
    strip_port(host)
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip == bind)
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://[::1]:8443",
            "http://app.localhost",
        ] {
            assert!(is_loopback_origin(ok), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://127.0.0.1.evil.example",
            "null",
            "http://10.0.0.1",
        ] {
            assert!(!is_loopback_origin(bad), "{bad}");
        }
    }

    #[test]
    fn a_page_of_bros_own_origin_is_not_foreign() {
        assert!(same_origin("http://192.168.1.5:3000", "192.168.1.5:3000"));
        assert!(!same_origin("http://192.168.1.5:3000", "192.168.1.5:3001"));
        assert!(!same_origin("https://evil.example", "192.168.1.5:3000"));
        assert!(!same_origin("null", ""));
        assert!(!same_origin("ftp://a:1", "a:1"));
    }

    #[test]
    fn hosts() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        assert!(host_allowed("127.0.0.1:3000", lo));
        assert!(host_allowed("localhost", lo));
        assert!(!host_allowed("evil.example:3000", lo));
        let lan: IpAddr = [192, 168, 1, 5].into();
        assert!(host_allowed("192.168.1.5:3000", lan));
        assert!(!host_allowed("rebound.example", lan));
        assert!(host_allowed("anything", [0, 0, 0, 0].into()));
    }
}
