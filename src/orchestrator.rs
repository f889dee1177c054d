//! The orchestrator as Restate services: the `Session` and `Pool` virtual objects, bound on
//! one SDK [`Endpoint`]. Handlers are deterministic: clocks, process spawns, kills and file I/O
//! run only inside `ctx.run`, through the [`WorkerHost`] seam.

pub mod pool;
pub mod session;
pub mod warm;

use std::sync::Arc;

use restate_sdk::endpoint::Endpoint;

use crate::cdp_proxy::Sockets;
use crate::worker::WorkerHost;

/// What the services need from the daemon they run in.
pub struct Deps {
    pub host: Arc<dyn WorkerHost>,
    /// This daemon's node name: its `Pool` key.
    pub node: String,
    /// Capacity of this node's `Pool`.
    pub max_sessions: u32,
    /// Most creates waiting for a slot at once; 0 = no queue.
    pub max_queue: u32,
    /// How long a create waits in the queue before it gets 429.
    pub queue_timeout_ms: u64,
    /// Ready browsers kept per node (`--warm`); 0 = every create launches.
    pub warm: u32,
    /// How long an ended session's record is kept before it is cleared; 0 = forever.
    pub retention_ms: u64,
    /// Proxied CDP sockets, closed when their session ends.
    pub sockets: Arc<Sockets>,
}

/// The SDK endpoint serving every bro service.
pub fn endpoint(deps: Arc<Deps>) -> Endpoint {
    Endpoint::builder()
        .bind(session::SessionObject {
            deps: Arc::clone(&deps),
        })
        .bind(pool::PoolObject {
            deps: Arc::clone(&deps),
        })
        .bind(warm::WarmObject {
            deps: Arc::clone(&deps),
        })
        .bind(warm::WarmLauncherService { deps })
        .build()
}

/// Unix time in milliseconds; in handlers only ever called inside `ctx.run`.
pub(crate) use crate::now_ms;
