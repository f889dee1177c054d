//! Serving axum routers until told to stop: the SDK endpoint, the TCP API, the control
//! socket; and the small helpers of their addresses.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::pin::Pin;
use std::task::Poll;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::Request;
use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio_util::sync::CancellationToken;

use crate::paths::Paths;
use crate::telemetry::otlp;

/// Serves the SDK endpoint: every path goes to the Restate endpoint ([`handle_sdk`]).
pub(super) async fn serve_sdk(
    listener: TcpListener,
    endpoint: restate_sdk::endpoint::Endpoint,
    stop: CancellationToken,
) {
    let app = Router::new().fallback(move |req: Request| {
        let endpoint = endpoint.clone();
        async move { handle_sdk(&endpoint, req, otlp::remote_parent) }
    });
    serve(listener.tap_io(nodelay), app, stop).await;
}

/// One request restate-server sends to the SDK endpoint (one attempt of an invocation).
///
/// When traces are exported (`parent_of` gives a context), an answered request gets a span
/// continuing the `traceparent` it carries, and the response body, where the SDK runs the
/// handler, is polled inside it: the SDK's span of the attempt, the handler's and the
/// launch's join the trace of the create that caused them. A request the endpoint refuses
/// (unsigned: any local process can send one) gets no span, so it cannot put spans of its
/// choosing into the export queue.
fn handle_sdk(
    endpoint: &restate_sdk::endpoint::Endpoint,
    req: Request,
    parent_of: impl FnOnce(&http::HeaderMap) -> Option<opentelemetry::Context>,
) -> http::Response<axum::body::Body> {
    let parent = parent_of(req.headers());
    let response = endpoint.handle(req);
    match parent {
        Some(parent) if response.status().is_success() => response.map(|body| {
            axum::body::Body::new(InSpan {
                body: axum::body::Body::new(body),
                span: otlp::child_of(parent, || tracing::info_span!("restate_attempt")),
            })
        }),
        _ => response.map(axum::body::Body::new),
    }
}

/// A response body polled inside `span`, so what the SDK does while streaming it is there.
struct InSpan {
    body: axum::body::Body,
    span: tracing::Span,
}

impl http_body::Body for InSpan {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Listens on `127.0.0.1:<port>` with SO_REUSEPORT: other daemons of the same user (cluster
/// nodes sharing one machine) may listen on the same port, and the kernel spreads new
/// connections over all of them.
pub(super) fn bind_reuseport(port: u16) -> Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseport(true)?;
    socket.bind((std::net::Ipv4Addr::LOCALHOST, port).into())?;
    Ok(socket.listen(1024)?)
}

pub(super) fn nodelay(tcp: &mut tokio::net::TcpStream) {
    // Without it every Restate call pays ~44 ms of Nagle + delayed ACK (restate-notes §4.2).
    let _ = tcp.set_nodelay(true);
}

pub(super) async fn serve<L>(listener: L, app: Router, stop: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(err) = result {
        tracing::error!(%err, "server stopped with an error");
    }
}

/// Binds the control socket, 0600 inside the 0700 runtime dir, replacing a stale one.
pub(super) fn bind_socket(paths: &Paths) -> Result<UnixListener> {
    let path = paths.socket();
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The host part of the advertised URL: a wildcard bind is reached on loopback.
pub(super) fn url_host(bind: IpAddr) -> String {
    match bind {
        IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".into(),
        IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".into(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::span::{Attributes, Id};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;

    /// The names of the spans opened while it is the subscriber.
    #[derive(Clone, Default)]
    struct Opened(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Opened {
        fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _cx: Context<'_, S>) {
            self.0
                .lock()
                .unwrap()
                .push(attrs.metadata().name().to_string());
        }
    }

    /// restate-sdk's own test key: requests not signed with its private half are refused.
    const IDENTITY_KEY: &str = "publickeyv1_ChjENKeMvCtRnqG2mrBK1HmPKufgFUc98K8B3ononQvp";

    fn discover(traceparent: &str) -> Request {
        Request::builder()
            .uri("/discover")
            .header(
                http::header::ACCEPT,
                "application/vnd.restate.endpointmanifest.v2+json",
            )
            .header("traceparent", traceparent)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    /// An unsigned request, whatever `traceparent` it brings, is refused with no span; the
    /// same request to an endpoint that takes it gets its span.
    #[tokio::test]
    async fn an_unsigned_request_gets_no_span() {
        let opened = Opened::default();
        let _default =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(opened.clone()));
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let traced = |_: &http::HeaderMap| Some(opentelemetry::Context::new());

        let signed_only = restate_sdk::endpoint::Endpoint::builder()
            .identity_key(IDENTITY_KEY)
            .unwrap()
            .build();
        let refused = handle_sdk(&signed_only, discover(traceparent), traced);
        assert_eq!(refused.status(), 401);
        let _ = axum::body::to_bytes(refused.into_body(), 1 << 20).await;
        assert!(
            !opened
                .0
                .lock()
                .unwrap()
                .contains(&"restate_attempt".to_string())
        );

        let open = restate_sdk::endpoint::Endpoint::builder().build();
        let answered = handle_sdk(&open, discover(traceparent), traced);
        assert!(answered.status().is_success(), "{}", answered.status());
        let _ = axum::body::to_bytes(answered.into_body(), 1 << 20).await;
        assert!(
            opened
                .0
                .lock()
                .unwrap()
                .contains(&"restate_attempt".to_string())
        );
    }
}
