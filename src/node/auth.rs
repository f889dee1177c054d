//! Signing and checking node-to-node requests with the cluster secret.
//!
//! A signed request carries [`NODE_AUTH_HEADER`]: `<unix_seconds>.<nonce>.<mac>`, where the
//! nonce is 16 random bytes and the MAC 32 bytes, both in lower-case hex, and
//! [`CONTENT_SHA256_HEADER`]: the hex SHA-256 of the body, or [`UNSIGNED_PAYLOAD`] for a
//! streamed body. The MAC is HMAC-SHA256 under the cluster secret of these lines joined by
//! `\n` (no final newline):
//!
//! ```text
//! bro-node-v2
//! {unix_seconds}
//! {nonce}
//! {target node name}
//! {METHOD}
//! {path_and_query}
//! {content: the CONTENT_SHA256_HEADER value}
//! {x-bro-files-of value, empty when absent}
//! {x-bro-min-size value, empty when absent}
//! ```
//!
//! No field can hold a newline (node names, request targets and header values cannot), so
//! the lines cannot be confused. The receiver ([`NodeVerifier`]) recomputes the MAC with its
//! own node name as the target, compares in constant time, refuses a timestamp more than
//! [`MAX_SKEW_SECS`] away from its clock, and refuses a nonce it has already admitted within
//! that window. What reads a buffered body checks it against the signed digest
//! ([`Content::check_body`]) before using it. The signature authenticates; it does not
//! encrypt: the requests and their answers cross the network in the clear. This module knows
//! nothing of what the routes do.

mod nonces;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::node::secret::ClusterSecret;
use crate::node::wire::{FILES_OF_HEADER, MIN_SIZE_HEADER};

pub use nonces::MAX_NONCES;
use nonces::Nonces;

/// The header that carries a node-to-node request's signature.
pub const NODE_AUTH_HEADER: &str = "x-bro-node-auth";

/// The header that carries the signed digest of a request's body (or [`UNSIGNED_PAYLOAD`]).
pub const CONTENT_SHA256_HEADER: &str = "x-bro-content-sha256";

/// The [`CONTENT_SHA256_HEADER`] value of a streamed body, which is not digested: the MAC
/// then covers the upload's headers ([`FILES_OF_HEADER`], [`MIN_SIZE_HEADER`]) but not its
/// bytes.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The first line of every signed string: another layout gets another tag.
pub const SIGNATURE_VERSION: &str = "bro-node-v2";

/// Most seconds a signature's timestamp may be away from the receiver's clock, either way.
pub const MAX_SKEW_SECS: u64 = 30;

/// Most digits a timestamp may have (`u64::MAX` has 20).
const MAX_TIMESTAMP_LEN: usize = 20;

/// Bytes of a nonce.
const NONCE_LEN: usize = 16;

/// Why a node-to-node request was refused, or could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request has no [`NODE_AUTH_HEADER`].
    #[error("no {NODE_AUTH_HEADER} header")]
    Missing,
    /// The signature header is not `<digits>.<32 hex digits>.<64 hex digits>`, or a signed
    /// header is repeated, empty or unreadable.
    #[error("malformed {NODE_AUTH_HEADER}, {CONTENT_SHA256_HEADER} or upload header")]
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
    /// The MAC does not match: another secret, another target node, or another method, path,
    /// body digest or upload header than was signed.
    #[error(
        "{NODE_AUTH_HEADER} signature does not match (another cluster secret, or signed for \
         another node or request?)"
    )]
    BadSignature,
    /// The nonce was already used within the window: a replayed request.
    #[error("{NODE_AUTH_HEADER} nonce was already used: a replayed request")]
    Replayed,
    /// The body is not the one whose digest was signed (or a buffered body came with
    /// [`UNSIGNED_PAYLOAD`], or a streamed one with a digest).
    #[error("the request body does not match its signed {CONTENT_SHA256_HEADER}")]
    BodyMismatch,
    /// The replay cache holds [`MAX_NONCES`] unexpired nonces; the request may be retried.
    #[error("too many recent node-to-node requests ({0} in {MAX_SKEW_SECS} s); try again")]
    Full(usize),
    /// The signer could not draw a nonce from the system's random source.
    #[error("no random nonce for a node-to-node signature: {0}")]
    NoRandom(String),
}

impl AuthError {
    /// The status a refusal is answered with: 503 when the replay cache is full (the caller
    /// may retry), 500 for a signer without randomness, 401 for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::NoRandom(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// What the signature says of a request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// The SHA-256 of the whole body (of no bytes, for an empty one).
    Digest([u8; 32]),
    /// A streamed body, not digested ([`UNSIGNED_PAYLOAD`]).
    Unsigned,
}

impl Content {
    /// The digest of `body`.
    pub fn of_body(body: &[u8]) -> Content {
        Content::Digest(Sha256::digest(body).into())
    }

    /// The digest of an empty body: what a GET signs.
    pub fn empty() -> Content {
        Content::of_body(&[])
    }

    /// The [`CONTENT_SHA256_HEADER`] value, as it is signed.
    pub fn header_value(&self) -> String {
        match self {
            Content::Digest(digest) => hex(digest),
            Content::Unsigned => UNSIGNED_PAYLOAD.to_owned(),
        }
    }

    /// A [`CONTENT_SHA256_HEADER`] value: 64 lower-case hex digits or [`UNSIGNED_PAYLOAD`].
    fn parse(value: &[u8]) -> Option<Content> {
        if value == UNSIGNED_PAYLOAD.as_bytes() {
            return Some(Content::Unsigned);
        }
        parse_hex::<32>(value).map(Content::Digest)
    }

    /// Checks that `body`, read whole, is the one whose digest was signed; a signature
    /// without a digest ([`Content::Unsigned`]) never passes for a buffered body.
    pub fn check_body(&self, body: &[u8]) -> Result<(), AuthError> {
        match self {
            Content::Digest(_) if *self == Content::of_body(body) => Ok(()),
            _ => Err(AuthError::BodyMismatch),
        }
    }
}

/// What a signature covers besides its timestamp and nonce.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The name of the node the request is for.
    pub target: &'a str,
    /// The request's method.
    pub method: &'a Method,
    /// The request target as sent on the request line, query included.
    pub path_and_query: &'a str,
    /// The body's digest, or [`Content::Unsigned`] for a streamed one.
    pub content: Content,
    /// The [`FILES_OF_HEADER`] value the request carries, if any.
    pub files_of: Option<&'a [u8]>,
    /// The [`MIN_SIZE_HEADER`] value the request carries, if any.
    pub min_size: Option<&'a [u8]>,
}

/// Seconds since the Unix epoch by this machine's clock (0 for a clock before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The string the MAC is taken over (see the module documentation).
fn message(signed: &Signed<'_>, secs: u64, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let secs = secs.to_string();
    let nonce = hex(nonce);
    let content = signed.content.header_value();
    let lines: [&[u8]; 9] = [
        SIGNATURE_VERSION.as_bytes(),
        secs.as_bytes(),
        nonce.as_bytes(),
        signed.target.as_bytes(),
        signed.method.as_str().as_bytes(),
        signed.path_and_query.as_bytes(),
        content.as_bytes(),
        signed.files_of.unwrap_or_default(),
        signed.min_size.unwrap_or_default(),
    ];
    lines.join(&b'\n')
}

/// The headers that sign the request `signed` at `now_secs` with a fresh random nonce:
/// [`NODE_AUTH_HEADER`] and [`CONTENT_SHA256_HEADER`]. The caller sends the upload headers
/// named in `signed` itself, with exactly those values.
pub fn sign(
    secret: &ClusterSecret,
    signed: &Signed<'_>,
    now_secs: u64,
) -> Result<[(HeaderName, HeaderValue); 2], AuthError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| AuthError::NoRandom(e.to_string()))?;
    Ok(sign_with_nonce(secret, signed, now_secs, nonce))
}

/// [`sign`] with a given nonce.
fn sign_with_nonce(
    secret: &ClusterSecret,
    signed: &Signed<'_>,
    now_secs: u64,
    nonce: [u8; NONCE_LEN],
) -> [(HeaderName, HeaderValue); 2] {
    let mac = secret.mac(&message(signed, now_secs, &nonce));
    let auth = format!("{now_secs}.{}.{}", hex(&nonce), hex(&mac));
    let valid = "digits, dots, hex digits and UNSIGNED-PAYLOAD are valid in a header";
    [
        (
            HeaderName::from_static(NODE_AUTH_HEADER),
            HeaderValue::try_from(auth).unwrap_or_else(|_| unreachable!("{valid}")),
        ),
        (
            HeaderName::from_static(CONTENT_SHA256_HEADER),
            HeaderValue::try_from(signed.content.header_value())
                .unwrap_or_else(|_| unreachable!("{valid}")),
        ),
    ]
}

/// The checker of the requests signed for one node: the cluster secret, this node's name,
/// and the nonces admitted within the last window. One per process, shared by every route
/// that admits node signatures, so a nonce admitted by one is refused by all.
pub struct NodeVerifier {
    secret: ClusterSecret,
    node: String,
    nonces: Mutex<Nonces>,
}

impl std::fmt::Debug for NodeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeVerifier")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl NodeVerifier {
    /// The verifier of node `node`, remembering at most [`MAX_NONCES`] nonces.
    pub fn new(secret: ClusterSecret, node: String) -> NodeVerifier {
        NodeVerifier::with_capacity(secret, node, MAX_NONCES)
    }

    /// The verifier of node `node`, remembering at most `capacity` nonces.
    pub fn with_capacity(secret: ClusterSecret, node: String, capacity: usize) -> NodeVerifier {
        NodeVerifier {
            secret,
            node,
            nonces: Mutex::new(Nonces::new(capacity)),
        }
    }

    /// The cluster secret, for signing this node's own calls.
    pub fn secret(&self) -> &ClusterSecret {
        &self.secret
    }

    /// This node's name: the target every admitted signature names.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Checks the signature of a request to this node (`method`, `path_and_query` as sent,
    /// `headers`) at `now_secs`, and admits its nonce. Returns what the signature says of the
    /// body, which whoever reads the body must check ([`Content::check_body`]).
    ///
    /// The nonce is remembered only once the MAC matches, so unsigned requests cannot fill
    /// the cache; a nonce already remembered is [`AuthError::Replayed`], and a full cache
    /// [`AuthError::Full`].
    pub fn verify(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        now_secs: u64,
    ) -> Result<Content, AuthError> {
        let value = single(headers, NODE_AUTH_HEADER)?.ok_or(AuthError::Missing)?;
        let (secs, nonce, mac) = parse(value).ok_or(AuthError::Malformed)?;
        if secs.abs_diff(now_secs) > MAX_SKEW_SECS {
            return Err(AuthError::Skewed {
                signed: secs,
                now: now_secs,
            });
        }
        let content = match single(headers, CONTENT_SHA256_HEADER)? {
            None => Content::empty(),
            Some(value) => Content::parse(value).ok_or(AuthError::Malformed)?,
        };
        let signed = Signed {
            target: &self.node,
            method,
            path_and_query,
            content,
            files_of: single(headers, FILES_OF_HEADER)?,
            min_size: single(headers, MIN_SIZE_HEADER)?,
        };
        let expected = self.secret.mac(&message(&signed, secs, &nonce));
        if !bool::from(expected.ct_eq(&mac)) {
            return Err(AuthError::BadSignature);
        }
        let mut nonces = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        nonces.admit(nonce, secs.saturating_add(MAX_SKEW_SECS), now_secs)?;
        Ok(content)
    }
}

/// The one value of header `name`, if any; a repeated or empty one is
/// [`AuthError::Malformed`] (so a signed header cannot be read one way here and another way
/// by a handler, and an empty one is not taken for an absent one).
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h [u8]>, AuthError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) if !value.is_empty() => Ok(Some(value.as_bytes())),
        _ => Err(AuthError::Malformed),
    }
}

/// `<digits>.<32 hex digits>.<64 hex digits>` → the timestamp, nonce and MAC; `None` for
/// anything else.
fn parse(value: &[u8]) -> Option<(u64, [u8; NONCE_LEN], [u8; 32])> {
    let mut parts = value.split(|b| *b == b'.');
    let (digits, nonce, mac) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || digits.is_empty()
        || digits.len() > MAX_TIMESTAMP_LEN
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let secs = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
    Some((secs, parse_hex(nonce)?, parse_hex(mac)?))
}

/// Exactly `2 * N` lower-case hex digits → `N` bytes.
fn parse_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// The answer to a refused request: [`AuthError::status`] and a JSON `{"message": ...}` body.
pub fn refusal(err: &AuthError) -> Response {
    let body = serde_json::json!({ "message": err.to_string() });
    (err.status(), Json(body)).into_response()
}

/// Axum middleware refusing requests whose signature does not check out
/// ([`NodeVerifier::verify`]) with [`refusal`]; use it as
/// `axum::middleware::from_fn_with_state(verifier, require_node_auth)`. An admitted request
/// carries its [`Content`] as an extension, for the handler that reads the body.
///
/// It checks the URI as the client sent it ([`OriginalUri`]), so it holds under a nested
/// router too. Refusals are logged at debug: anyone who reaches the port can cause them.
pub async fn require_node_auth(
    State(verifier): State<Arc<NodeVerifier>>,
    mut request: Request,
    next: Next,
) -> Response {
    let uri = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().clone(), |original| original.0.clone());
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    match verifier.verify(
        request.method(),
        path_and_query,
        request.headers(),
        unix_now(),
    ) {
        Ok(content) => {
            request.extensions_mut().insert(content);
            next.run(request).await
        }
        Err(err) => {
            tracing::debug!(path = uri.path(), error = %err, "refused a node-to-node request");
            refusal(&err)
        }
    }
}

#[cfg(test)]
mod tests;
