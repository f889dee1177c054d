//! The CDP websocket proxy. A client's upgrade is forwarded to the session's browser with
//! the path rewritten to `/devtools/browser/<guid>`, `Host` set to the browser's own address
//! and `Origin` dropped (Chromium rejects foreign ones); after the two `101`s the bytes are
//! spliced both ways untouched, so there is no frame parsing and no message-size limit (a
//! full-page screenshot is one 30+ MB message). Ending a session closes its sockets.
//!
//! Compression is not passed on: a client's offer of extensions (`permessage-deflate`, the
//! only one in use) is dropped, so the socket runs uncompressed. Playwright offers it on every
//! `connectOverCDP`, and Chromium, once it is agreed, deflates every message it sends (each
//! CDP event and screenshot, in the browser process) while the client inflates them all and
//! deflates its large commands (Playwright's 340 KB utility script): CPU spent on both sides
//! of the machine the browsers run on. It saves bytes on the wire, which only a client on a
//! slow remote link would miss.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::prometheus;

/// Headers of the websocket handshake passed through in each direction. Not
/// `Sec-WebSocket-Extensions`: no extension is offered upstream (see the module's doc), and an
/// upstream that answers with one anyway is refused, as RFC 6455 (4.1) has a client do: its
/// frames would not be what the client agreed to. (A subprotocol is the client's to check:
/// its offer is passed on, and the answer back.)
const REQUEST_HEADERS: [HeaderName; 3] = [
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
];
const RESPONSE_HEADERS: [HeaderName; 4] = [
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_PROTOCOL,
];

/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the upstream may take to answer the upgrade.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why an upgrade could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("not a websocket upgrade request")]
    NotUpgrade,
    #[error("the session's browser (or its node) failed the upgrade: {0}")]
    Upstream(String),
}

/// Where a CDP socket goes: the session's browser on this machine, or, in a cluster, the
/// API of the node that owns the session (which splices it on to its browser).
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `ip:port` to connect to; also the `Host` sent.
    pub addr: String,
    /// Path (and query) of the upgrade request.
    pub ws_path: String,
    /// Headers added to the upgrade request (the node-to-node signature).
    pub headers: Vec<(HeaderName, http::HeaderValue)>,
}

impl Upstream {
    /// The browser on this machine listening on `port`.
    pub fn browser(port: u16, ws_path: String) -> Self {
        Upstream {
            addr: format!("127.0.0.1:{port}"),
            ws_path,
            headers: Vec::new(),
        }
    }
}

/// Proxied sockets per session: releasing a session closes them, and their traffic marks
/// the session active (for `inactivityTimeout`).
#[derive(Default)]
pub struct Sockets {
    links: Mutex<HashMap<String, Link>>,
}

/// What the sockets of one session share.
#[derive(Clone, Default)]
pub struct Link {
    /// Cancelled when the session ends.
    pub closed: CancellationToken,
    /// Unix ms of the last byte either way; 0 before any traffic.
    pub last_activity: Arc<AtomicU64>,
    /// Sockets open now.
    pub open: Arc<AtomicU64>,
}

impl Sockets {
    /// The link of session `id`, for a new socket.
    pub fn link(&self, id: &str) -> Link {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.entry(id.to_string()).or_default().clone()
    }

    /// How many CDP sockets of session `id` are open.
    pub fn open_count(&self, id: &str) -> u64 {
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.get(id).map_or(0, |l| l.open.load(Ordering::Relaxed))
    }

    /// When session `id` last had CDP traffic, if it had any.
    pub fn last_activity(&self, id: &str) -> Option<u64> {
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links
            .get(id)
            .map(|l| l.last_activity.load(Ordering::Relaxed))
            .filter(|t| *t > 0)
    }

    /// Closes every proxied socket of session `id`.
    pub fn close(&self, id: &str) {
        let link = self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(link) = link {
            link.closed.cancel();
        }
    }
}

/// True when `headers` ask for a websocket upgrade.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Forwards the upgrade in `req` to `up`, answers the client's `101` and splices the two
/// connections until either side closes or `cancel` fires.
pub async fn splice(
    mut req: http::Request<Body>,
    up: Upstream,
    link: Link,
) -> Result<http::Response<Body>, ProxyError> {
    if !is_upgrade(req.headers()) || !req.headers().contains_key(header::SEC_WEBSOCKET_KEY) {
        return Err(ProxyError::NotUpgrade);
    }
    let upstream_err = |e: &dyn std::fmt::Display| ProxyError::Upstream(e.to_string());
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(up.addr.as_str()))
        .await
        .map_err(|_| {
            ProxyError::Upstream(format!(
                "no connection to {} within {CONNECT_TIMEOUT:?}",
                up.addr
            ))
        })?
        .map_err(|e| upstream_err(&e))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
            .await
            .map_err(|e| upstream_err(&e))?;
    tokio::spawn(conn.with_upgrades());

    let mut up_req = http::Request::get(&up.ws_path)
        .header(header::HOST, up.addr.as_str())
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade");
    for (name, value) in &up.headers {
        up_req = up_req.header(name, value);
    }
    for name in REQUEST_HEADERS {
        if let Some(value) = req.headers().get(&name) {
            up_req = up_req.header(name, value);
        }
    }
    let up_req = up_req.body(Empty::new()).map_err(|e| upstream_err(&e))?;
    let mut up_resp = tokio::time::timeout(HANDSHAKE_TIMEOUT, sender.send_request(up_req))
        .await
        .map_err(|_| {
            ProxyError::Upstream(format!(
                "{} did not answer the upgrade within {HANDSHAKE_TIMEOUT:?}",
                up.addr
            ))
        })?
        .map_err(|e| upstream_err(&e))?;
    if up_resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(ProxyError::Upstream(format!(
            "{} answered {}",
            up.addr,
            up_resp.status()
        )));
    }
    let agreed_to_an_extension = up_resp
        .headers()
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().is_empty());
    if agreed_to_an_extension {
        return Err(ProxyError::Upstream(format!(
            "{} agreed to a websocket extension that was not offered",
            up.addr
        )));
    }

    let mut resp = http::Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for name in RESPONSE_HEADERS {
        if let Some(value) = up_resp.headers().get(&name) {
            resp = resp.header(name, value.clone());
        }
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let upstream_upgrade = hyper::upgrade::on(&mut up_resp);
    tokio::spawn(async move {
        let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) else {
            return;
        };
        let (client_rx, client_tx) = tokio::io::split(TokioIo::new(client));
        let (upstream_rx, upstream_tx) = tokio::io::split(TokioIo::new(upstream));
        let activity = &link.last_activity;
        // Counted open until dropped: a task cut short (a panic, the runtime's shutdown)
        // leaves no socket counted forever.
        let _open = OpenSocket::new(&link.open);
        // Handles taken once: a chunk costs one atomic add more.
        let to_browser = metrics::counter!(prometheus::CDP_BYTES, "direction" => "to_browser");
        let to_client = metrics::counter!(prometheus::CDP_BYTES, "direction" => "to_client");
        let both = async {
            tokio::join!(
                pump(client_rx, upstream_tx, activity, to_browser),
                pump(upstream_rx, client_tx, activity, to_client)
            )
        };
        tokio::select! {
            _ = both => {}
            _ = link.closed.cancelled() => {}
        }
    });
    resp.body(Body::empty()).map_err(|e| upstream_err(&e))
}

/// One spliced socket in the link's count and in [`prometheus::CDP_CONNECTIONS`], until it
/// is dropped.
struct OpenSocket<'a> {
    count: &'a AtomicU64,
    gauge: metrics::Gauge,
}

impl<'a> OpenSocket<'a> {
    fn new(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        let gauge = metrics::gauge!(prometheus::CDP_CONNECTIONS);
        gauge.increment(1.0);
        OpenSocket { count, gauge }
    }
}

impl Drop for OpenSocket<'_> {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Copies bytes from `r` to `w` until either side ends, stamping `activity` and counting
/// `bytes` on every chunk, and then closes `w`. No framing (see [`crate::pump`]).
async fn pump<R, W>(mut r: R, mut w: W, activity: &AtomicU64, bytes: metrics::Counter)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let stamp = |n: usize| {
        activity.store(crate::now_ms(), Ordering::Relaxed);
        bytes.increment(n as u64);
    };
    if crate::pump::pump(&mut r, &mut w, stamp).await.is_err() {
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
    }
}

/// The session id a CDP request names: `?sessionId=` (extra query keys such as `apiKey` are
/// fine), or a path `/devtools/browser/<id>`.
pub fn session_id_of(uri: &http::Uri) -> Option<String> {
    let from_query = uri.query().and_then(|q| {
        q.split('&').find_map(|pair| match pair.split_once('=') {
            Some(("sessionId", v)) if !v.is_empty() => Some(v.to_string()),
            _ => None,
        })
    });
    from_query.or_else(|| {
        uri.path()
            .strip_prefix("/devtools/browser/")
            .map(|rest| rest.trim_end_matches('/').to_string())
            .filter(|id| !id.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_id() {
        let id = |s: &str| session_id_of(&s.parse::<http::Uri>().unwrap());
        assert_eq!(id("/?sessionId=abc"), Some("abc".into()));
        assert_eq!(id("/?sessionId=abc&apiKey=k"), Some("abc".into()));
        assert_eq!(id("/?apiKey=k&sessionId=abc"), Some("abc".into()));
        assert_eq!(id("/devtools/browser/abc"), Some("abc".into()));
        assert_eq!(id("/"), None);
        assert_eq!(id("/?sessionId="), None);
    }

    /// A fake upstream: records the upgrade request it gets and answers `101` with `extra`
    /// headers. The recorded request, lowercased.
    async fn fake_upstream(extra: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                assert!(n > 0, "the proxy closed before its request ended");
                head.extend_from_slice(&buf[..n]);
            }
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: abc\r\n{extra}\r\n"
            );
            sock.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap().to_ascii_lowercase()
        });
        (port, task)
    }

    /// A client's upgrade offering compression.
    fn deflating_upgrade() -> http::Request<Body> {
        http::Request::get("/devtools/browser/s1")
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(
                header::SEC_WEBSOCKET_EXTENSIONS,
                "permessage-deflate; client_max_window_bits",
            )
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn compression_is_not_offered_upstream() {
        let (port, upstream) = fake_upstream("").await;
        let up = Upstream::browser(port, "/devtools/browser/guid".into());
        let resp = splice(deflating_upgrade(), up, Link::default())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(resp.headers()[header::SEC_WEBSOCKET_ACCEPT], "abc");
        let head = upstream.await.unwrap();
        assert!(
            head.starts_with("get /devtools/browser/guid http/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n"),
            "{head}"
        );
        assert!(!head.contains("sec-websocket-extensions"), "{head}");
        assert!(!head.contains("deflate"), "{head}");
    }

    #[tokio::test]
    async fn an_upstream_agreeing_to_an_extension_never_offered_is_refused() {
        let (port, upstream) =
            fake_upstream("Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
        let up = Upstream::browser(port, "/devtools/browser/guid".into());
        let err = splice(deflating_upgrade(), up, Link::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("extension that was not offered"),
            "{err}"
        );
        assert!(!upstream.await.unwrap().contains("deflate"));
    }

    #[test]
    fn release_cancels_the_sessions_sockets() {
        let sockets = Sockets::default();
        let link = sockets.link("a");
        let other = sockets.link("b");
        assert_eq!(sockets.last_activity("a"), None);
        link.last_activity.store(42, Ordering::Relaxed);
        assert_eq!(sockets.last_activity("a"), Some(42));
        sockets.close("a");
        assert!(link.closed.is_cancelled());
        assert!(!other.closed.is_cancelled());
    }
}
