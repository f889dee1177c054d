//! The local hop in front of a session's `http://` upstream proxy.
//!
//! Chromium's `--proxy-server` takes no `user:password@`, and answering its auth challenges
//! over CDP would intercept every request of every page. So a session whose `proxyUrl` is an
//! `http://` proxy gets a listener on 127.0.0.1 that the browser uses as its proxy. For each
//! connection the hop parses the first request head (a `CONNECT` for https sites, an
//! absolute-form request for plain http), adds `Proxy-Authorization: Basic …` when the URL has
//! credentials, sends it to the upstream and then splices bytes both ways, counting them:
//! steel's `proxyTxBytes` (browser → upstream) and `proxyRxBytes` (upstream → browser). With
//! credentials, plain http requests go one per connection (`Connection: close`), so each
//! carries them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::lock;
use crate::protocol::session::ProxyBytes;
use crate::pump::pump;

/// Longest request head the hop reads before giving up on a connection.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a request head the hop takes (Chromium sends about a dozen; a page's
/// `fetch` may add its own): a bound on what one head costs to parse.
const MAX_HEADERS: usize = 1024;

/// File in the session dir naming the hop's port, so a restarted daemon reopens it there.
const PORT_FILE: &str = "proxy-hop.json";

/// An `http://` upstream proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    host: String,
    port: u16,
    /// `Basic <base64(user:password)>`, when the URL has credentials.
    authorization: Option<String>,
}

impl Upstream {
    /// The upstream of a `proxyUrl` that goes through the hop: an `http://` one. Other
    /// proxies go to Chromium as they are.
    pub fn of(proxy_url: &str) -> Option<Upstream> {
        let url = url::Url::parse(proxy_url).ok()?;
        if url.scheme() != "http" {
            return None;
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = format!(
            "{}:{}",
            decode(url.username()),
            decode(url.password().unwrap_or(""))
        );
        Some(Upstream {
            host: url.host_str()?.trim_matches(['[', ']']).to_string(),
            port: url.port_or_known_default()?,
            authorization: (!url.username().is_empty()).then(|| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(credentials)
                )
            }),
        })
    }
}

#[derive(Debug, Default)]
struct Counters {
    tx: AtomicU64,
    rx: AtomicU64,
}

impl Counters {
    fn bytes(&self) -> ProxyBytes {
        ProxyBytes {
            tx: self.tx.load(Ordering::Relaxed),
            rx: self.rx.load(Ordering::Relaxed),
        }
    }
}

struct Hop {
    counters: Arc<Counters>,
    stop: CancellationToken,
}

/// The hops of this daemon's sessions, by session dir name.
#[derive(Default)]
pub struct ProxyHops {
    hops: Mutex<HashMap<String, Hop>>,
}

#[derive(Serialize, Deserialize)]
struct PortFile {
    port: u16,
}

impl ProxyHops {
    /// Opens the hop of session dir `dir` on `port` (0: any free port) and records the port in
    /// the dir; returns the port. A hop already open for the dir is closed first.
    pub async fn open(&self, dir: &Path, upstream: Upstream, port: u16) -> std::io::Result<u16> {
        let name = dir_name(dir);
        self.close(&name);
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let pf = serde_json::to_vec(&PortFile { port }).unwrap_or_default();
        std::fs::write(dir.join(PORT_FILE), pf)?;
        let hop = Hop {
            counters: Arc::default(),
            stop: CancellationToken::new(),
        };
        tokio::spawn(serve(
            listener,
            Arc::new(upstream),
            Arc::clone(&hop.counters),
            hop.stop.clone(),
        ));
        lock(&self.hops).insert(name, hop);
        Ok(port)
    }

    /// Reopens the hop of an adopted session on the port its dir records, unless it is open.
    pub async fn reopen(&self, dir: &Path, upstream: Upstream) -> std::io::Result<()> {
        if lock(&self.hops).contains_key(&dir_name(dir)) {
            return Ok(());
        }
        let pf: PortFile = serde_json::from_slice(&std::fs::read(dir.join(PORT_FILE))?)
            .map_err(std::io::Error::other)?;
        self.open(dir, upstream, pf.port).await.map(|_| ())
    }

    /// Closes the hop of session dir `name` (its connections end); the bytes it carried.
    pub fn close(&self, name: &str) -> Option<ProxyBytes> {
        let hop = lock(&self.hops).remove(name)?;
        hop.stop.cancel();
        Some(hop.counters.bytes())
    }
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn serve(
    listener: TcpListener,
    upstream: Arc<Upstream>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(err) => {
                    tracing::warn!(%err, "proxy hop: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (upstream, counters, stop) =
            (Arc::clone(&upstream), Arc::clone(&counters), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                result = relay(client, &upstream, &counters) => {
                    if let Err(err) = result {
                        tracing::debug!(%err, "proxy hop: connection ended");
                    }
                }
            }
        });
    }
}

/// One browser connection: its first request head goes upstream with the credentials, then
/// bytes flow both ways until either side closes.
async fn relay(
    mut client: TcpStream,
    upstream: &Upstream,
    counters: &Counters,
) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    // Where the search for the head's end goes on: each byte is looked at about once.
    let mut scanned = 0;
    let (head_len, head) = loop {
        // Blank lines before the request line are skipped (RFC 9112 §2.2), never kept.
        let blank = buf
            .iter()
            .take_while(|&&b| matches!(b, b'\r' | b'\n'))
            .count();
        if blank > 0 {
            buf.drain(..blank);
            scanned = 0;
        }
        let ended = head_ends(&buf, scanned);
        scanned = buf.len();
        let parsed = match ended {
            true => parse_head(&buf, upstream.authorization.as_deref()),
            false => Ok(None),
        };
        match parsed {
            Ok(Some(parsed)) => break parsed,
            Ok(None) => {}
            Err(httparse::Error::TooManyHeaders) => {
                client
                    .write_all(
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n",
                    )
                    .await?;
                return Ok(());
            }
            Err(err) => {
                tracing::debug!(%err, "proxy hop: invalid request head");
                client
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                    .await?;
                return Ok(());
            }
        }
        if buf.len() >= MAX_HEAD {
            client
                .write_all(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n",
                )
                .await?;
            return Ok(());
        }
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut server = match TcpStream::connect((upstream.host.as_str(), upstream.port)).await {
        Ok(server) => server,
        Err(err) => {
            let body = format!("bro: cannot reach the upstream proxy: {err}\n");
            let reply = format!(
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(reply.as_bytes()).await?;
            return Ok(());
        }
    };
    let _ = server.set_nodelay(true);
    server.write_all(&head).await?;
    server.write_all(&buf[head_len..]).await?;
    let sent = (head.len() + buf.len() - head_len) as u64;
    counters.tx.fetch_add(sent, Ordering::Relaxed);
    metrics::counter!(crate::prometheus::PROXY_BYTES, "direction" => "tx").increment(sent);

    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let up = pump(&mut client_rx, &mut server_tx, counting(&counters.tx, "tx"));
    let down = pump(&mut server_rx, &mut client_tx, counting(&counters.rx, "rx"));
    let (up, down) = tokio::join!(up, down);
    up.and(down)
}

/// Adds every chunk a pump passes to `counter`, and to the node's `bro_proxy_bytes_total` of
/// `direction` (a handle taken once: one atomic add more per chunk).
fn counting<'a>(counter: &'a AtomicU64, direction: &'static str) -> impl FnMut(usize) + 'a {
    let metric = metrics::counter!(crate::prometheus::PROXY_BYTES, "direction" => direction);
    move |n| {
        counter.fetch_add(n as u64, Ordering::Relaxed);
        metric.increment(n as u64);
    }
}

/// True when a blank line (the end of a head) is in `buf`, looking from a few bytes before
/// `from` (a line end may have been cut between two reads).
fn head_ends(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(3).min(buf.len());
    let tail = &buf[start..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// Parses the request head at the start of `buf` with `httparse`: `Ok(None)` until its blank
/// line has arrived, then its length and what goes upstream in its place. Without credentials
/// that is the head as the browser sent it.
fn parse_head(
    buf: &[u8],
    authorization: Option<&str>,
) -> Result<Option<(usize, Vec<u8>)>, httparse::Error> {
    // Every header starts after a line end, so this many suffice for a head within
    // `MAX_HEADERS`; one with more is refused (`TooManyHeaders`).
    let lines = buf.iter().filter(|&&b| b == b'\n').count();
    let mut headers = vec![httparse::EMPTY_HEADER; lines.min(MAX_HEADERS)];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = request.parse(buf)? else {
        return Ok(None);
    };
    let head = match authorization {
        Some(authorization) => with_credentials(&request, authorization),
        None => buf[..len].to_vec(),
    };
    Ok(Some((len, head)))
}

/// The parsed head with the client's own `Proxy-Authorization` (and, for plain http, its
/// connection headers) replaced by ours. Plain http requests end their connection after one
/// exchange, so that every request reaches the upstream with the credentials.
fn with_credentials(request: &httparse::Request<'_, '_>, authorization: &str) -> Vec<u8> {
    let method = request.method.unwrap_or_default();
    let connect = method == "CONNECT";
    let mut out = format!(
        "{method} {} HTTP/1.{}\r\nProxy-Authorization: {authorization}\r\n",
        request.path.unwrap_or_default(),
        request.version.unwrap_or(1)
    )
    .into_bytes();
    for header in request.headers.iter() {
        let name = header.name;
        let dropped = name.eq_ignore_ascii_case("proxy-authorization")
            || (!connect
                && (name.eq_ignore_ascii_case("connection")
                    || name.eq_ignore_ascii_case("proxy-connection")
                    || name.eq_ignore_ascii_case("keep-alive")));
        if !dropped {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(header.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    if !connect {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Length of the request head at the start of `buf`, once it is all there.
    fn find_head_end(buf: &[u8]) -> Option<usize> {
        parse_head(buf, None).unwrap().map(|(len, _)| len)
    }

    /// What goes upstream for the complete head `head`.
    fn forwarded(head: &[u8], authorization: Option<&str>) -> String {
        let (len, out) = parse_head(head, authorization).unwrap().unwrap();
        assert_eq!(len, head.len());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_end_of_a_head_is_found_across_reads_and_too_many_headers_are_refused() {
        let head = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 0..head.len() {
            // What was scanned up to `cut`, then the rest arrived.
            assert!(!head_ends(&head[..cut], 0), "{cut}");
            assert!(head_ends(head, cut), "{cut}");
        }
        assert!(head_ends(b"GET / HTTP/1.1\nHost: a\n\n", 0));
        let mut many = b"GET http://a/ HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_head(&many, Some("Basic x")),
            Err(httparse::Error::TooManyHeaders)
        );
    }

    #[test]
    fn http_proxies_go_through_the_hop_with_their_credentials() {
        let up = Upstream::of("http://us%40er:p%3Ass@proxy.example:3128").unwrap();
        assert_eq!(up.host, "proxy.example");
        assert_eq!(up.port, 3128);
        let encoded = up.authorization.unwrap();
        let encoded = encoded.strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, b"us@er:p:ss");
        assert_eq!(Upstream::of("http://u@[::1]").unwrap().port, 80);
        assert_eq!(
            Upstream::of("http://proxy:3128").unwrap().authorization,
            None
        );
        assert_eq!(Upstream::of("socks5://u:p@proxy:1080"), None);
        assert_eq!(Upstream::of("not a url"), None);
    }

    #[test]
    fn heads_get_the_credentials_and_plain_requests_close() {
        let connect = forwarded(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic old\r\n\r\n",
            Some("Basic new"),
        );
        assert_eq!(
            connect,
            "CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic new\r\nHost: example.com:443\r\nProxy-Connection: keep-alive\r\n\r\n"
        );
        let get = forwarded(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
            Some("Basic new"),
        );
        assert_eq!(
            get,
            "GET http://example.com/ HTTP/1.1\r\nProxy-Authorization: Basic new\r\nHost: example.com\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn a_clients_own_proxy_authorization_never_reaches_an_upstream_with_credentials() {
        let head = b"GET http://a.test/ HTTP/1.0\r\nproxy-authorization: Basic mine\r\nHost: a.test\r\nPROXY-AUTHORIZATION:Basic again\r\n\r\n";
        assert_eq!(
            forwarded(head, Some("Basic ours")),
            "GET http://a.test/ HTTP/1.0\r\nProxy-Authorization: Basic ours\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        );
        // Without credentials of its own, the hop passes the head on as the browser sent it.
        assert_eq!(forwarded(head, None).as_bytes(), head);
    }

    #[test]
    fn heads_are_parsed_whole_or_not_at_all() {
        let head = b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
        for cut in 0..head.len() {
            assert_eq!(parse_head(&head[..cut], Some("Basic x")), Ok(None), "{cut}");
        }
        let mut with_tunnel_bytes = head.to_vec();
        with_tunnel_bytes.extend_from_slice(b"\x16\x03\x01");
        let (len, _) = parse_head(&with_tunnel_bytes, None).unwrap().unwrap();
        assert_eq!(len, head.len());
        for invalid in [
            &b"GET http://a.test/ HTTP/9.9\r\n\r\n"[..],
            b"GET  http://a.test/ HTTP/1.1\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
        ] {
            assert!(parse_head(invalid, Some("Basic x")).is_err(), "{invalid:?}");
        }
        // Up to `MAX_HEADERS` headers fit.
        let mut many = b"GET http://a.test/ HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(find_head_end(&many), Some(many.len()));
    }

    /// Opens a hop to an upstream that takes no connections, sends `chunks` one read at a
    /// time and returns the hop's answer.
    async fn hop_answer(chunks: &[&[u8]]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let hops = ProxyHops::default();
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = Upstream::of(&format!(
            "http://u:p@127.0.0.1:{}",
            closed.local_addr().unwrap().port()
        ))
        .unwrap();
        drop(closed);
        let port = hops.open(dir.path(), upstream, 0).await.unwrap();
        let mut browser = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        send_in(&mut browser, chunks).await;
        let mut answer = String::new();
        browser.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// Writes `chunks` with a pause after each, so that the hop reads them one by one.
    async fn send_in(browser: &mut TcpStream, chunks: &[&[u8]]) {
        for chunk in chunks {
            browser.write_all(chunk).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
    }

    #[tokio::test]
    async fn a_head_split_across_reads_goes_upstream_whole() {
        let chunks: [&[u8]; 3] = [
            b"GET http://site.test/ HT",
            b"TP/1.1\r\nHost: si",
            b"te.test\r\n\r\n",
        ];
        let (head, answer, bytes, _, _dir) =
            through_a_hop_in("http://u:p@127.0.0.1", &chunks).await;
        assert_eq!(
            head,
            "GET http://site.test/ HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\nHost: site.test\r\nConnection: close\r\n\r\n"
        );
        assert!(answer.ends_with("\r\n\r\nhi"), "{answer}");
        assert_eq!(bytes.tx, head.len() as u64);
    }

    #[tokio::test]
    async fn a_head_past_the_limit_gets_431() {
        let mut head = b"GET http://site.test/ HTTP/1.1\r\nX-Long: ".to_vec();
        head.resize(MAX_HEAD, b'a');
        let answer = hop_answer(&[&head]).await;
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn an_invalid_head_gets_400_and_goes_nowhere() {
        let answer =
            hop_answer(&[b"GET http://site.test/ HTTP/1.1\r\nBad Header: x\r\n\r\n"]).await;
        assert_eq!(
            answer,
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"
        );
    }

    /// Sends one plain-http request through a hop to a fake upstream at `proxy_url`'s host
    /// (its port replaced); returns the head the upstream got, the answer, and the count.
    async fn through_a_hop(
        proxy_url: &str,
    ) -> (String, String, ProxyBytes, u16, tempfile::TempDir) {
        through_a_hop_in(
            proxy_url,
            &[b"GET http://site.test/ HTTP/1.1\r\nHost: site.test\r\n\r\n"],
        )
        .await
    }

    /// [`through_a_hop`], the request sent in `chunks`, one read at a time.
    async fn through_a_hop_in(
        proxy_url: &str,
        chunks: &[&[u8]],
    ) -> (String, String, ProxyBytes, u16, tempfile::TempDir) {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_port = upstream.local_addr().unwrap().port();
        let seen = tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut buf = Vec::new();
            while find_head_end(&buf).is_none() {
                let mut chunk = [0u8; 1024];
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
                .await
                .unwrap();
            String::from_utf8(buf).unwrap()
        });
        let dir = tempfile::tempdir().unwrap();
        let hops = ProxyHops::default();
        let upstream = Upstream::of(&format!("{proxy_url}:{up_port}")).unwrap();
        let port = hops.open(dir.path(), upstream, 0).await.unwrap();

        let mut browser = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        send_in(&mut browser, chunks).await;
        let mut answer = String::new();
        browser.read_to_string(&mut answer).await.unwrap();
        let head = seen.await.unwrap();
        let bytes = hops.close(&dir_name(dir.path())).unwrap();
        assert!(hops.close(&dir_name(dir.path())).is_none());
        (head, answer, bytes, port, dir)
    }

    #[tokio::test]
    async fn a_request_reaches_the_upstream_with_credentials_and_is_counted() {
        crate::prometheus::install("local");
        let node_bytes = |dir: &str| {
            let text = crate::prometheus::render_recorded();
            let label = format!("direction=\"{dir}\"}}");
            text.lines()
                .find(|l| l.starts_with("bro_proxy_bytes_total{") && l.contains(&label))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (tx_before, rx_before) = (node_bytes("tx"), node_bytes("rx"));
        let (head, answer, bytes, port, dir) = through_a_hop("http://user:pw@127.0.0.1").await;
        // The node's counters (which other tests add to as well) took these bytes too.
        assert!(node_bytes("tx") >= tx_before + bytes.tx, "tx");
        assert!(node_bytes("rx") >= rx_before + bytes.rx, "rx");
        assert!(answer.ends_with("\r\n\r\nhi"), "{answer}");
        assert!(
            head.contains("Proxy-Authorization: Basic dXNlcjpwdw==\r\n"),
            "{head}"
        );
        assert_eq!(bytes.rx, answer.len() as u64);
        assert_eq!(bytes.tx, head.len() as u64);
        // The port is recorded for a restarted daemon.
        let pf: PortFile =
            serde_json::from_slice(&std::fs::read(dir.path().join(PORT_FILE)).unwrap()).unwrap();
        assert_eq!(pf.port, port);
    }

    #[tokio::test]
    async fn without_credentials_the_request_passes_as_it_is_and_is_counted() {
        let (head, answer, bytes, _, _dir) = through_a_hop("http://127.0.0.1").await;
        assert_eq!(
            head,
            "GET http://site.test/ HTTP/1.1\r\nHost: site.test\r\n\r\n"
        );
        assert_eq!(bytes.rx, answer.len() as u64);
        assert_eq!(bytes.tx, head.len() as u64);
    }
}
