//! Serving axum routers until told to stop: the SDK endpoint, the TCP API, the control
//! socket; and the small helpers of their addresses.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::Request;
use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio_util::sync::CancellationToken;

use crate::paths::Paths;

/// Serves the SDK endpoint: every path goes to the Restate endpoint.
pub(super) async fn serve_sdk(
    listener: TcpListener,
    endpoint: restate_sdk::endpoint::Endpoint,
    stop: CancellationToken,
) {
    let app = Router::new().fallback(move |req: Request| {
        let endpoint = endpoint.clone();
        async move { endpoint.handle(req).map(axum::body::Body::new) }
    });
    serve(listener.tap_io(nodelay), app, stop).await;
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
