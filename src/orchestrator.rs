//! The orchestrator as Restate services: the `Session` and `Pool` virtual objects, bound on
//! one SDK [`Endpoint`]. Handlers are deterministic: clocks, process spawns, kills and file I/O
//! run only inside `ctx.run`, through the [`WorkerHost`] seam.

pub mod cluster;
pub mod ingress;
pub mod node;
pub mod pool;
pub mod session;
pub mod warm;

use std::sync::Arc;
use std::time::Duration;

use restate_sdk::endpoint::{Endpoint, ServiceOptions};

use crate::protocol::session::SessionId;
use restate_sdk::service::IntoServiceDefinition;
use tokio_util::sync::CancellationToken;

use crate::host::HostRouter;

/// What the services need from the daemon they run in.
pub struct Deps {
    /// The host of each node: this node's own, or a remote one that forwards to the node
    /// owning a session (in a cluster, a handler runs on whichever daemon Restate calls).
    pub hosts: Arc<dyn HostRouter>,
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
    /// Told when a session ends, before its browser is stopped (the CDP proxy closes the
    /// session's client sockets).
    pub events: Arc<dyn SessionEvents>,
    /// Cancelled when the daemon stops and releases its sessions: no launch or claim starts,
    /// and those under way get a short grace to end by themselves (this node's launches end
    /// at once through their own error path; their sessions end `failed`).
    pub stopping: CancellationToken,
}

impl Deps {
    /// What gives up the work of `node`: this daemon stopping, for its own node's
    /// browsers; nothing for another node's (a handler that happens to run here while this
    /// daemon stops is retried by Restate elsewhere, and that node's work goes on).
    pub fn stopping_for(&self, node: &str) -> CancellationToken {
        if node == self.node {
            self.stopping.clone()
        } else {
            CancellationToken::new()
        }
    }
}

/// What the services tell the rest of the daemon as sessions change.
pub trait SessionEvents: Send + Sync + 'static {
    /// Session `id` is ending: its browser is about to be stopped.
    fn ended(&self, id: &SessionId);
}

/// How Restate retries an invocation of any bro handler that fails with a retryable error
/// (a panic, a lost connection, a daemon that is down): 250 ms doubling up to 10 s, 30
/// attempts in all (about 4 minutes), then the invocation is killed, never paused: a paused
/// one would hold its `Session` or `Pool` for good. Handlers do not count on it: each
/// `ctx.run` has its own bounded policy, and a handler that gets an error after its session
/// exists marks the session `failed` and frees its slot. The periodic sweep
/// (`daemon::sweep`) repairs what a killed invocation leaves half done.
pub const INVOCATION_MAX_ATTEMPTS: u64 = 30;
/// The first retry's delay; each next one doubles, up to [`RETRY_MAX_INTERVAL`].
pub const RETRY_INITIAL_INTERVAL: Duration = Duration::from_millis(250);
pub const RETRY_MAX_INTERVAL: Duration = Duration::from_secs(10);

fn retry_policy() -> ServiceOptions {
    ServiceOptions::new()
        .retry_policy_initial_interval(RETRY_INITIAL_INTERVAL)
        .retry_policy_exponentiation_factor(2.0)
        .retry_policy_max_interval(RETRY_MAX_INTERVAL)
        .retry_policy_max_attempts(INVOCATION_MAX_ATTEMPTS)
        .retry_policy_kill_on_max_attempts()
}

/// The SDK endpoint serving every bro service, to callers that prove they are bro's
/// restate-server: requests must be signed with the private half of `identity_key` (a
/// `publickeyv1_…` key); anything else is refused before it reaches a handler.
pub fn endpoint(deps: Arc<Deps>, identity_key: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::builder()
        .identity_key(identity_key)
        .map_err(|e| anyhow::anyhow!("bro's identity key {identity_key}: {e}"))?
        .bind(
            session::SessionObject {
                deps: Arc::clone(&deps),
            }
            .into_service_definition()
            .options(retry_policy()),
        )
        .bind(
            pool::PoolObject {
                deps: Arc::clone(&deps),
            }
            .into_service_definition()
            .options(retry_policy()),
        )
        .bind(
            warm::WarmObject {
                deps: Arc::clone(&deps),
            }
            .into_service_definition()
            .options(retry_policy()),
        )
        .bind(
            node::NodeObject {
                deps: Arc::clone(&deps),
            }
            .into_service_definition()
            .options(retry_policy()),
        )
        .bind(
            warm::WarmLauncherService { deps }
                .into_service_definition()
                .options(retry_policy()),
        )
        .build())
}

/// Unix time in milliseconds; in handlers only ever called inside `ctx.run`.
pub(crate) use crate::now_ms;
