//! The warm pool: `--warm N` ready browsers per node, launched with the default options, so a
//! create that fits takes one in milliseconds instead of launching Chromium.
//!
//! The `Warm` virtual object (key: node name) holds the ready browsers and the launches under
//! way, so a crash leaks none of them: the reaper counts both as owned, and a daemon that
//! restarts finds its ready browsers in state. Launches run in the `WarmLauncher` service,
//! never inside `Warm`'s own handlers, so a `take` never waits behind a launch.

use std::sync::Arc;
use std::time::Duration;

use restate_sdk::context::RunRetryPolicy;
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::host::LaunchSpec;
use crate::orchestrator::Deps;
use crate::orchestrator::pool::PoolObjectClient;
use crate::orchestrator::session::{STOP_LIMIT, bounded, stop_policy, timed, worker_error};
use crate::protocol::session::{SessionId, SessionOptions, WorkerInfo};
use crate::telemetry;

const READY: &str = "ready";
const FILLING: &str = "filling";
/// The node's target, set by its daemon (`Warm/configure`).
const TARGET: &str = "target";

/// One ready browser: its id (the name of its dir under the sessions dir) and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmEntry {
    pub id: String,
    pub worker: WorkerInfo,
}

/// Answer of `Warm/status`, and what the reaper reads from state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmStatus {
    pub target: u32,
    pub ready: Vec<WarmEntry>,
    pub filling: Vec<String>,
}

/// True when a session with these options can take a warm browser: nothing it asks for
/// needs a launch flag. (Timeouts are bro's; cookies and localStorage go in over CDP.)
pub fn fits(options: &SessionOptions) -> bool {
    options.dimensions.is_none()
        && options.user_agent.is_none()
        && options.proxy_url.is_none()
        && !options.block_ads
}

/// The `Warm` object.
pub struct WarmObject {
    pub deps: Arc<Deps>,
}

#[restate_sdk::object(name = "Warm")]
impl WarmObject {
    /// Hands out the oldest ready browser (its dir touched first, so the reaper leaves it
    /// alone until the session that takes it is recorded). The taker asks for the refill once
    /// its browser is claimed, and the refill's launch waits for CPU to spare (see
    /// `WarmLauncher/launch`), so the pool never competes with the sessions for the CPU.
    #[handler(name = "take")]
    async fn take(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<Option<WarmEntry>>> {
        let mut ready = load::<WarmEntry>(&ctx, READY).await?;
        if ready.is_empty() {
            return Ok(Json(None));
        }
        let entry = ready.remove(0);
        let dir = entry.worker.dir.clone();
        ctx.run(|| async move {
            touch(&dir);
            Ok(())
        })
        .name("touch_dir")
        .await?;
        ctx.set(READY, Json(ready));
        Ok(Json(Some(entry)))
    }

    /// Sets the node's target (its daemon's `--warm`, at every start) and fills to it.
    #[handler(name = "configure")]
    async fn configure(&self, ctx: ObjectContext<'_>, target: u32) -> HandlerResult<()> {
        ctx.set(TARGET, target);
        ctx.object_client::<WarmObjectClient<'_>>(ctx.key())
            .fill()
            .send();
        Ok(())
    }

    /// Starts launches until ready + launching reach the target; stops ready browsers above
    /// it (after a restart with a smaller `--warm`).
    #[handler(name = "fill")]
    async fn fill(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        let mut ready = load::<WarmEntry>(&ctx, READY).await?;
        let mut filling = load::<String>(&ctx, FILLING).await?;
        let mut target = self.target(&ctx).await? as usize;
        // A node at its free memory floor launches no more warm browsers (ready ones stay);
        // the next fill, at the next take, looks again.
        if ready.len() + filling.len() < target {
            let pool = ctx
                .object_client::<PoolObjectClient<'_>>(ctx.key())
                .status()
                .call()
                .await?
                .0;
            if pool.memory_bound && pool.sessions.len() >= pool.capacity as usize {
                target = ready.len() + filling.len();
            }
        }
        while ready.len() + filling.len() < target {
            let id = ctx
                .run(|| async { Ok(uuid::Uuid::new_v4().to_string()) })
                .name("warm_id")
                .await?;
            ctx.service_client::<WarmLauncherServiceClient<'_>>()
                .launch(Json(LaunchRequest {
                    node: ctx.key().to_string(),
                    id: id.clone(),
                }))
                .send();
            filling.push(id);
        }
        let extra = ready.split_off(target.min(ready.len()));
        ctx.set(READY, Json(ready));
        ctx.set(FILLING, Json(filling));
        for entry in extra {
            let span = telemetry::warm_span(&entry.id);
            stop(&ctx, &self.deps, ctx.key(), entry.worker)
                .instrument(span)
                .await;
        }
        Ok(())
    }

    /// A launch finished: the browser joins the ready ones.
    #[handler(name = "add")]
    async fn add(&self, ctx: ObjectContext<'_>, entry: Json<WarmEntry>) -> HandlerResult<()> {
        let entry = entry.0;
        let span = telemetry::warm_span(&entry.id);
        async {
            let mut filling = load::<String>(&ctx, FILLING).await?;
            filling.retain(|id| *id != entry.id);
            ctx.set(FILLING, Json(filling));
            let mut ready = load::<WarmEntry>(&ctx, READY).await?;
            if ready.len() < self.target(&ctx).await? as usize {
                ready.push(entry);
                ctx.set(READY, Json(ready));
            } else {
                stop(&ctx, &self.deps, ctx.key(), entry.worker).await;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// A launch failed for good: forget it, and try again a little later.
    #[handler(name = "failed")]
    async fn failed(&self, ctx: ObjectContext<'_>, id: String) -> HandlerResult<()> {
        let mut filling = load::<String>(&ctx, FILLING).await?;
        filling.retain(|f| *f != id);
        ctx.set(FILLING, Json(filling));
        ctx.object_client::<WarmObjectClient<'_>>(ctx.key())
            .fill()
            .send_after(Duration::from_secs(10));
        Ok(())
    }

    /// Drops a ready browser that died or went deaf (found by the reaper) and refills.
    #[handler(name = "discard")]
    async fn discard(&self, ctx: ObjectContext<'_>, id: String) -> HandlerResult<()> {
        let mut ready = load::<WarmEntry>(&ctx, READY).await?;
        if let Some(i) = ready.iter().position(|e| e.id == id) {
            // Out of the list before its dir goes. Restate applies the write when its entry
            // commits, which may be after the stop: a reader can still see it for a moment.
            let entry = ready.remove(i);
            ctx.set(READY, Json(ready));
            let span = telemetry::warm_span(&entry.id);
            stop(&ctx, &self.deps, ctx.key(), entry.worker)
                .instrument(span)
                .await;
            ctx.object_client::<WarmObjectClient<'_>>(ctx.key())
                .fill()
                .send();
        }
        Ok(())
    }

    /// Stops every ready browser (a daemon stopping with its sessions); returns how many.
    #[handler(name = "drain")]
    async fn drain(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<u32>> {
        let ready = load::<WarmEntry>(&ctx, READY).await?;
        ctx.set(READY, Json(Vec::<WarmEntry>::new()));
        for entry in &ready {
            let span = telemetry::warm_span(&entry.id);
            stop(&ctx, &self.deps, ctx.key(), entry.worker.clone())
                .instrument(span)
                .await;
        }
        Ok(Json(ready.len() as u32))
    }

    /// The target, the ready browsers and the launches under way.
    #[handler(name = "status")]
    async fn status(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<Json<WarmStatus>> {
        let ready = ctx.get::<Json<Vec<WarmEntry>>>(READY).await?;
        let filling = ctx.get::<Json<Vec<String>>>(FILLING).await?;
        let target = ctx.get::<u32>(TARGET).await?.unwrap_or(self.deps.warm);
        Ok(Json(WarmStatus {
            target,
            ready: ready.map(|j| j.0).unwrap_or_default(),
            filling: filling.map(|j| j.0).unwrap_or_default(),
        }))
    }
}

impl WarmObject {
    /// The node's target: its own (`Warm/configure`), else this daemon's `--warm` (in a
    /// cluster a node's `Warm` may run on any node's daemon).
    async fn target(&self, ctx: &ObjectContext<'_>) -> Result<u32, TerminalError> {
        Ok(ctx.get::<u32>(TARGET).await?.unwrap_or(self.deps.warm))
    }
}

/// Input of `WarmLauncher/launch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchRequest {
    pub node: String,
    pub id: String,
}

/// The `WarmLauncher` service: launches one warm browser and hands it to its node's `Warm`.
pub struct WarmLauncherService {
    pub deps: Arc<Deps>,
}

#[restate_sdk::service(name = "WarmLauncher")]
impl WarmLauncherService {
    #[handler(name = "launch")]
    async fn launch(&self, ctx: Context<'_>, req: Json<LaunchRequest>) -> HandlerResult<()> {
        let LaunchRequest { node, id } = req.0;
        let span = telemetry::warm_span(&id);
        async move {
            // The id names the browser's dir: only a UUID may become one.
            let Ok(session_id) = SessionId::parse(&id) else {
                return Err(TerminalError::new(format!(
                    "warm browser id must be a UUID, got {id:?}"
                ))
                .into());
            };
            let hosts = Arc::clone(&self.deps.hosts);
            let on = node.clone();
            let spec = LaunchSpec {
                session_id,
                options: SessionOptions::default(),
                context: None,
                warm: true,
            };
            let stopping = self.deps.stopping_for(&node);
            let launched = ctx
                .run(|| async move {
                    let host = hosts.of(&on).map_err(worker_error)?;
                    let launched = host.launch(spec);
                    bounded(&stopping, LAUNCH_LIMIT, "launching Chromium", launched)
                        .await
                        .map(Json)
                })
                .name("launch_chromium")
                .retry_policy(
                    RunRetryPolicy::default()
                        .initial_delay(Duration::from_millis(500))
                        .max_attempts(3),
                )
                .await;
            let warm = ctx.object_client::<WarmObjectClient<'_>>(node);
            match launched {
                Ok(Json(worker)) => {
                    warm.add(Json(WarmEntry { id, worker })).send();
                }
                Err(err) => {
                    tracing::warn!(error = %err.message(), "a warm browser failed to launch");
                    warm.failed(id).send();
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// How long one warm launch may take inside its `ctx.run` (the host's wait for CPU to spare
/// included: `worker::load`).
const LAUNCH_LIMIT: Duration = Duration::from_secs(60);

/// Stops a warm browser without ceremony (no client ever saw it), inside `ctx.run`, with
/// bounded retries. A browser that cannot be stopped is out of the pool's state by now, so
/// the reaper stops it: the handler goes on.
pub(crate) async fn stop(ctx: &ObjectContext<'_>, deps: &Deps, node: &str, worker: WorkerInfo) {
    let hosts = Arc::clone(&deps.hosts);
    let node = node.to_string();
    let pid = worker.pid;
    let stopped = ctx
        .run(|| async move {
            let host = hosts.of(&node).map_err(worker_error)?;
            timed(STOP_LIMIT, "stopping Chromium", host.stop(worker))
                .await
                .map(drop)
        })
        .name("stop_chromium")
        .retry_policy(stop_policy())
        .await;
    if let Err(err) = stopped {
        tracing::error!(pid, error = %err.message(), "stopping a warm browser failed; the reaper will");
    }
}

async fn load<T: serde::de::DeserializeOwned + Serialize + 'static>(
    ctx: &ObjectContext<'_>,
    key: &str,
) -> HandlerResult<Vec<T>> {
    Ok(ctx
        .get::<Json<Vec<T>>>(key)
        .await?
        .map(|j| j.0)
        .unwrap_or_default())
}

/// Sets a dir's mtime to now (the reaper spares dirs touched within its grace period).
fn touch(dir: &std::path::Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::Dimensions;

    #[test]
    fn only_options_without_launch_flags_fit_a_warm_browser() {
        let plain = SessionOptions {
            timeout_ms: 60_000,
            inactivity_timeout_ms: 5_000,
            ..Default::default()
        };
        assert!(fits(&plain));
        let sized = SessionOptions {
            dimensions: Some(Dimensions {
                width: 800,
                height: 600,
            }),
            ..plain.clone()
        };
        assert!(!fits(&sized));
        let proxied = SessionOptions {
            proxy_url: Some("http://proxy:3128".into()),
            ..plain.clone()
        };
        assert!(!fits(&proxied));
        let agent = SessionOptions {
            user_agent: Some("bot/1".into()),
            ..plain.clone()
        };
        assert!(!fits(&agent));
        let ads = SessionOptions {
            block_ads: true,
            ..plain
        };
        assert!(!fits(&ads));
    }
}
