//! The daemon's HTTP surface. One set of steel routes is served on the TCP port (with the CDP
//! proxy) and on the Unix socket (with bro's control routes), so the handlers exist once.

pub mod access;
pub mod actions;
pub mod auth;
pub mod cdp;
pub mod control;
pub mod error;
pub mod files;
mod html;
pub mod metrics;
pub mod openapi;
pub mod recordings;
pub mod replay;
pub mod sessions;
#[cfg(test)]
mod tests;
pub mod viewer;

use std::sync::Arc;

use axum::Router;

use crate::artifacts::ArtifactStore;
use crate::cdp_proxy::Sockets;
use crate::host::{HostRouter, WorkerHost};
use crate::orchestrator::cluster::{ClusterView, PlaceError};
use crate::orchestrator::ingress::Ingress;
use crate::protocol::session::SessionId;

pub use error::ApiError;

/// What every handler shares.
pub struct AppState {
    pub ingress: Ingress,
    /// The doors to the browsers (pages, context, previews, quick actions, files, usage):
    /// this node's host, and in a cluster the remote hosts of the other nodes.
    pub hosts: Arc<dyn HostRouter>,
    /// This daemon's node name.
    pub node: String,
    /// The cluster as this daemon sees it (placement, other nodes' addresses); `None` on a
    /// single machine.
    pub cluster: Option<Arc<ClusterView>>,
    /// The cluster secret, this node's name and its replay cache: signs this node's calls to
    /// the others (a CDP connection spliced to the owning node) and admits theirs. The same
    /// verifier guards the node routes, so a nonce is admitted once per process.
    pub node_auth: Option<Arc<crate::node::auth::NodeVerifier>>,
    pub sockets: Arc<Sockets>,
    /// Base URL clients reach the TCP API at, `http://127.0.0.1:3000`.
    pub api_base: String,
    pub control: control::ControlState,
    /// When set, TCP requests must carry it (`steel-api-key` header or `apiKey` query).
    pub api_key: Option<String>,
    /// For the daemon's own requests to browsers (`/json/...`).
    pub http: reqwest::Client,
    /// For signed requests to other nodes (`/json/...` of their sessions): no proxy, no
    /// redirects ([`node_client`](crate::node::remote::node_client)).
    pub node_http: reqwest::Client,
    /// Timeout of sessions created without one.
    pub default_timeout_ms: u64,
    /// Whether sessions record when their create does not say, and whether they can.
    pub recording: RecordingDefaults,
    /// The daemon's session limits, as the create route applies them.
    pub limits: LimitDefaults,
    /// The address the TCP port is bound to (for the `Host` check).
    pub bind: std::net::IpAddr,
    /// rrweb-player for the replay page, read from the install at start; `None` when rrweb is
    /// not installed (the replay routes then say to run `install.sh`).
    pub rrweb_player: Option<replay::PlayerAssets>,
    /// Screenshots and PDFs handed out by URL, served at `/v1/artifacts/{name}`.
    pub artifacts: Arc<ArtifactStore>,
}

impl AppState {
    /// The host of the node that owns a session (`rec.node`).
    pub fn host_of(&self, node: &str) -> Result<Arc<dyn WorkerHost>, ApiError> {
        Ok(self.hosts.of(node)?)
    }

    /// The node a new session goes to: the one the client named (`x-bro-node`), else, in a
    /// cluster, the healthy node with the most free slots (see [`ClusterView::place`]).
    pub async fn place(&self, asked: Option<&str>, id: &SessionId) -> Result<String, ApiError> {
        match &self.cluster {
            Some(view) => view
                .place(asked, id.as_str())
                .await
                .map_err(|err| match err {
                    PlaceError::Unknown(_) => ApiError::BadRequest(err.to_string()),
                    PlaceError::Unhealthy(_) => ApiError::Unavailable(err.to_string()),
                }),
            None => match asked {
                Some(node) if node != self.node => Err(ApiError::BadRequest(format!(
                    "node {node:?} is not this node ({}), and this daemon runs alone (no \
                     [cluster] in its config)",
                    self.node
                ))),
                _ => Ok(self.node.clone()),
            },
        }
    }
}

/// The daemon's session limits, as the create route applies them.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitDefaults {
    /// `--max-session-memory`: the limit of a session that does not ask, and the most one
    /// may ask for.
    pub max_memory: Option<u64>,
    /// `--cpu-share`: the CPU weight of a session that does not ask.
    pub cpu_share: Option<u32>,
    /// Memory limits are enforced here (not `limits_mode = off`).
    pub memory: bool,
    /// CPU shares are enforced here (a cgroup mode).
    pub cpu: bool,
}

/// The daemon's recording defaults, as the create route applies them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordingDefaults {
    /// `--record`: sessions record unless their create says otherwise.
    pub record: bool,
    /// rrweb is installed on this node (`install.sh`): a create asking to record without it
    /// is refused.
    pub installed: bool,
}

/// The router of the TCP port: steel routes and the CDP proxy.
pub fn tcp_router(state: Arc<AppState>) -> Router {
    sessions::routes()
        .merge(recordings::routes())
        .merge(actions::routes())
        .merge(files::routes())
        .merge(cdp::routes())
        .merge(replay::routes())
        .merge(viewer::routes())
        .merge(metrics::routes())
        .fallback(cdp::upgrade_or_not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_key,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            access::guard,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            access::MAX_BODY as usize,
        ))
        .with_state(state)
}

/// Who sent a request, by the door it came in: the owner on the 0600 Unix socket, or anyone
/// who can reach the TCP port. A few things (loading `file://` URLs) are the owner's only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Owner,
    Tcp,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        // Only the Unix router inserts it; a TCP request cannot forge an extension.
        Ok(parts
            .extensions
            .get::<Caller>()
            .copied()
            .unwrap_or(Caller::Tcp))
    }
}

/// The router of the Unix socket: steel routes and `/bro/v1/...`.
pub fn unix_router(state: Arc<AppState>) -> Router {
    sessions::routes()
        .merge(recordings::routes())
        .merge(actions::routes())
        .merge(files::routes())
        .merge(control::routes())
        .merge(metrics::routes())
        .fallback(sessions::not_found)
        .layer(axum::Extension(Caller::Owner))
        .layer(axum::extract::DefaultBodyLimit::max(
            access::MAX_BODY as usize,
        ))
        .with_state(state)
}
