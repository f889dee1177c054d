//! Signing and checking node-to-node requests with the cluster secret.
//!
//! A request carries [`NODE_AUTH_HEADER`]: `<unix_seconds>.<hex hmac>`, where the MAC is
//! HMAC-SHA256 under the cluster secret of `"bro-node\n{unix_seconds}\n{METHOD}\n{path_and_query}"`.
//! The receiver recomputes it, compares in constant time, and refuses a timestamp more than
//! [`MAX_SKEW_SECS`] away from its own clock. The MAC proves the caller holds the secret and
//! names this method and path; it does not cover the body or headers, and a captured header can
//! be replayed to the same method and path within the window. This module knows nothing of what
//! the routes do.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode};
use subtle::ConstantTimeEq;

use crate::node::secret::ClusterSecret;

/// The header that carries a node-to-node request's signature.
pub const NODE_AUTH_HEADER: &str = "x-bro-node-auth";

/// Most seconds a signature's timestamp may be away from the receiver's clock, either way.
pub const MAX_SKEW_SECS: u64 = 60;

/// Most digits a timestamp may have (`u64::MAX` has 20).
const MAX_TIMESTAMP_LEN: usize = 20;

/// Why a node-to-node request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request has no [`NODE_AUTH_HEADER`].
    #[error("no {NODE_AUTH_HEADER} header")]
    Missing,
    /// The header is not `<unix_seconds>.<64 hex digits>`.
    #[error("malformed {NODE_AUTH_HEADER} header")]
    Malformed,
    /// The timestamp is more than [`MAX_SKEW_SECS`] away from this node's clock.
    #[error(
        "{NODE_AUTH_HEADER} timestamp {signed} is more than {MAX_SKEW_SECS} s away from this \
         node's clock ({now}); check the clocks of both nodes"
    )]
    Skewed {
        /// The timestamp the request was signed with.
        signed: u64,
        /// This node's clock when it checked.
        now: u64,
    },
    /// The MAC does not match: another secret, or another method or path than was signed.
    #[error("{NODE_AUTH_HEADER} signature does not match (another cluster secret?)")]
    BadSignature,
}

/// Seconds since the Unix epoch by this machine's clock (0 for a clock before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The MAC of a request to `method` `path_and_query` signed at `secs`.
fn mac(secret: &ClusterSecret, method: &Method, path_and_query: &str, secs: u64) -> [u8; 32] {
    let message = format!("bro-node\n{secs}\n{}\n{path_and_query}", method.as_str());
    secret.mac(message.as_bytes())
}

/// The [`NODE_AUTH_HEADER`] value for a request to `method` `path_and_query` (as sent on the
/// request line, query included) at `now_secs`.
pub fn sign(
    secret: &ClusterSecret,
    method: &Method,
    path_and_query: &str,
    now_secs: u64,
) -> HeaderValue {
    let mut value = format!("{now_secs}.");
    for byte in mac(secret, method, path_and_query, now_secs) {
        value.push_str(&format!("{byte:02x}"));
    }
    HeaderValue::try_from(value)
        .unwrap_or_else(|_| unreachable!("digits, a dot and hex digits are valid in a header"))
}

/// Checks the [`NODE_AUTH_HEADER`] value `header` of a request to `method` `path_and_query`
/// against the secret and the clock `now_secs`.
pub fn verify(
    secret: &ClusterSecret,
    method: &Method,
    path_and_query: &str,
    header: Option<&HeaderValue>,
    now_secs: u64,
) -> Result<(), AuthError> {
    let value = header.ok_or(AuthError::Missing)?.as_bytes();
    let (secs, hex) = parse(value).ok_or(AuthError::Malformed)?;
    if secs.abs_diff(now_secs) > MAX_SKEW_SECS {
        return Err(AuthError::Skewed {
            signed: secs,
            now: now_secs,
        });
    }
    let expected = mac(secret, method, path_and_query, secs);
    if bool::from(expected.ct_eq(&hex)) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// `<digits>.<64 hex digits>` → the timestamp and the MAC; `None` for anything else.
fn parse(value: &[u8]) -> Option<(u64, [u8; 32])> {
    let dot = value.iter().position(|b| *b == b'.')?;
    let (digits, hex) = (&value[..dot], &value[dot + 1..]);
    if digits.is_empty()
        || digits.len() > MAX_TIMESTAMP_LEN
        || !digits.iter().all(u8::is_ascii_digit)
        || hex.len() != 64
    {
        return None;
    }
    let secs = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some((secs, out))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Axum middleware refusing requests whose [`NODE_AUTH_HEADER`] does not check out, with a 401
/// and a JSON `{"message": ...}` body; use it as
/// `axum::middleware::from_fn_with_state(secret, require_node_auth)`.
///
/// It checks the URI as the client sent it ([`OriginalUri`]), so it holds under a nested
/// router too.
pub async fn require_node_auth(
    State(secret): State<ClusterSecret>,
    request: Request,
    next: Next,
) -> Response {
    let uri = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().clone(), |original| original.0.clone());
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let header = request.headers().get(NODE_AUTH_HEADER);
    match verify(
        &secret,
        request.method(),
        path_and_query,
        header,
        unix_now(),
    ) {
        Ok(()) => next.run(request).await,
        Err(err) => {
            tracing::warn!(path = uri.path(), error = %err, "refused a node-to-node request");
            let body = serde_json::json!({ "message": err.to_string() });
            (StatusCode::UNAUTHORIZED, Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const PATH: &str = "/bro/node/v1/host/launch?x=1";

    fn secret(fill: u8) -> ClusterSecret {
        ClusterSecret::from_bytes(vec![fill; 32]).unwrap()
    }

    fn check(header: Option<&HeaderValue>) -> Result<(), AuthError> {
        verify(&secret(b'a'), &Method::POST, PATH, header, NOW)
    }

    #[test]
    fn a_good_signature_passes_within_the_window() {
        let header = sign(&secret(b'a'), &Method::POST, PATH, NOW);
        assert_eq!(check(Some(&header)), Ok(()));
        for at in [NOW - MAX_SKEW_SECS, NOW + MAX_SKEW_SECS] {
            let header = sign(&secret(b'a'), &Method::POST, PATH, at);
            assert_eq!(check(Some(&header)), Ok(()));
        }
        // Upper-case hex is the same MAC.
        let upper = HeaderValue::try_from(header.to_str().unwrap().to_uppercase()).unwrap();
        assert_eq!(check(Some(&upper)), Ok(()));
    }

    #[test]
    fn another_secret_method_or_path_fails() {
        let bad = AuthError::BadSignature;
        let other_secret = sign(&secret(b'b'), &Method::POST, PATH, NOW);
        assert_eq!(check(Some(&other_secret)), Err(bad.clone()));
        let other_path = sign(&secret(b'a'), &Method::POST, "/bro/node/v1/host/stop", NOW);
        assert_eq!(check(Some(&other_path)), Err(bad.clone()));
        let other_query = sign(
            &secret(b'a'),
            &Method::POST,
            "/bro/node/v1/host/launch",
            NOW,
        );
        assert_eq!(check(Some(&other_query)), Err(bad.clone()));
        let other_method = sign(&secret(b'a'), &Method::GET, PATH, NOW);
        assert_eq!(check(Some(&other_method)), Err(bad.clone()));
        // A timestamp changed after signing.
        let signed = sign(&secret(b'a'), &Method::POST, PATH, NOW)
            .to_str()
            .unwrap()[10..]
            .to_owned();
        let moved = HeaderValue::try_from(format!("{}{signed}", NOW + 1)).unwrap();
        assert_eq!(check(Some(&moved)), Err(bad));
    }

    #[test]
    fn an_old_or_future_timestamp_fails() {
        for at in [NOW - MAX_SKEW_SECS - 1, NOW + MAX_SKEW_SECS + 1, 0] {
            let header = sign(&secret(b'a'), &Method::POST, PATH, at);
            assert_eq!(
                check(Some(&header)),
                Err(AuthError::Skewed {
                    signed: at,
                    now: NOW
                })
            );
        }
    }

    #[test]
    fn a_missing_or_garbage_header_fails() {
        assert_eq!(check(None), Err(AuthError::Missing));
        let good = sign(&secret(b'a'), &Method::POST, PATH, NOW);
        let hex = &good.to_str().unwrap()[11..];
        let garbage = [
            String::new(),
            ".".into(),
            "garbage".into(),
            format!("{NOW}"),
            format!("{NOW}."),
            format!(".{hex}"),
            format!("-{NOW}.{hex}"),
            format!("+{NOW}.{hex}"),
            format!(" {NOW}.{hex}"),
            format!("{NOW}.{hex}0"),
            format!("{NOW}.{}", &hex[1..]),
            format!("{NOW}.{}g", &hex[1..]),
            format!("{}{NOW}.{hex}", "0".repeat(11)),
            format!("99999999999999999999.{hex}"),
            format!("{NOW}.{hex}.{hex}"),
        ];
        for value in garbage {
            let header = HeaderValue::try_from(value.as_str()).unwrap();
            assert_eq!(check(Some(&header)), Err(AuthError::Malformed), "{value:?}");
        }
    }
}
