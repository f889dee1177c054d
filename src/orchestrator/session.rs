//! The `Session` virtual object, keyed by session id (a UUID). Its one state value, the
//! [`SessionRecord`], is the truth about the session; the browser is a side effect of it.

use std::sync::Arc;
use std::time::Duration;

use restate_sdk::context::RunRetryPolicy;
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use crate::orchestrator::pool::{AcquireRequest, Acquired, PoolObjectClient};
use crate::orchestrator::warm::{self, WarmObjectClient};
use crate::orchestrator::{Deps, now_ms};
use crate::protocol::session::WorkerInfo;
use crate::protocol::session::{RECORD_KEY, SessionOptions, SessionRecord, SessionStatus};
use crate::protocol::steel::SessionContext;
use crate::worker::{Claim, LaunchSpec, WorkerError};

/// Input of `Session/create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateCommand {
    pub options: SessionOptions,
    /// Cookies and localStorage to put in before the session is handed out.
    #[serde(default)]
    pub context: Option<SessionContext>,
    /// Wait in the node's queue when it is full (up to the queue's bounds), rather than
    /// failing at once.
    #[serde(default = "yes")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

/// Input of `Session/worker_exited`: which browser exited and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerExited {
    pub pid: u32,
    pub reason: String,
    /// The browser exited on purpose (status 0): the session ends `released`, not `failed`.
    #[serde(default)]
    pub clean: bool,
}

/// HTTP-like codes of the terminal errors the API maps to statuses.
pub const CODE_NOT_FOUND: u16 = 404;
pub const CODE_AT_CAPACITY: u16 = 429;

/// The `Session` object.
pub struct SessionObject {
    pub deps: Arc<Deps>,
}

#[restate_sdk::object(name = "Session")]
impl SessionObject {
    /// Takes a ready browser from the node's warm pool and claims it for the session; `None`
    /// when the pool is empty or the browser it gave is unusable (then stopped).
    async fn claim_warm(
        &self,
        ctx: &ObjectContext<'_>,
        rec: &SessionRecord,
        context: Option<SessionContext>,
    ) -> HandlerResult<Option<WorkerInfo>> {
        let taken = ctx
            .object_client::<WarmObjectClient<'_>>(rec.node.clone())
            .take()
            .call()
            .await?;
        let Some(entry) = taken.0 else {
            return Ok(None);
        };
        let host = Arc::clone(&self.deps.host);
        let claim = Claim {
            session_id: rec.id.clone(),
            worker: entry.worker.clone(),
            options: rec.options.clone(),
            context,
        };
        let claimed = ctx
            .run(|| async move { host.claim(claim).await.map(Json).map_err(worker_error) })
            .name("claim_warm_browser")
            .retry_policy(RunRetryPolicy::default().max_attempts(1))
            .await;
        // The pool refills once the claim is done, so its next launch does not compete with
        // this create for the CPU.
        ctx.object_client::<WarmObjectClient<'_>>(rec.node.clone())
            .fill()
            .send();
        match claimed {
            Ok(Json(worker)) => Ok(Some(worker)),
            Err(err) => {
                tracing::warn!(session_id = %rec.id, error = %err.message(), "a warm browser was unusable; launching cold");
                let host = Arc::clone(&self.deps.host);
                ctx.run(|| async move {
                    host.stop(entry.worker)
                        .await
                        .map(drop)
                        .map_err(worker_error)
                })
                .name("stop_chromium")
                .await?;
                Ok(None)
            }
        }
    }

    /// Creates the session: a slot from the node's `Pool`, a browser, state `live`, and a
    /// durable timer for the timeout. Idempotent: an existing session is returned as it is.
    #[handler(name = "create")]
    async fn create(
        &self,
        ctx: ObjectContext<'_>,
        cmd: Json<CreateCommand>,
    ) -> HandlerResult<Json<SessionRecord>> {
        if let Some(Json(existing)) = ctx.get::<Json<SessionRecord>>(RECORD_KEY).await? {
            return Ok(Json(existing));
        }
        let id = ctx.key().to_string();
        let node = self.deps.node.clone();
        // A create that may wait parks on an awakeable the Pool resolves when a slot is its.
        let (awakeable_id, slot) = if cmd.0.wait && self.deps.max_queue > 0 {
            let (awakeable_id, slot) = ctx.awakeable::<bool>();
            (Some(awakeable_id), Some(slot))
        } else {
            (None, None)
        };
        let acquired = ctx
            .object_client::<PoolObjectClient<'_>>(node.clone())
            .acquire(Json(AcquireRequest {
                session_id: id.clone(),
                awakeable_id,
            }))
            .call()
            .await?;
        match (acquired.0, slot) {
            (Acquired::Granted, _) => {}
            (Acquired::Queued, Some(slot)) => {
                slot.await?;
            }
            (Acquired::Queued | Acquired::Full, _) => {
                return Err(TerminalError::new_with_code(
                    CODE_AT_CAPACITY,
                    format!(
                        "at capacity: all {} session slots are in use{}",
                        self.deps.max_sessions,
                        if cmd.0.wait && self.deps.max_queue > 0 {
                            format!(" and {} creates are waiting", self.deps.max_queue)
                        } else {
                            String::new()
                        }
                    ),
                )
                .into());
            }
        }
        let created_at_ms = clock(&ctx).await?;
        let mut rec = SessionRecord {
            id: id.clone(),
            status: SessionStatus::Starting,
            node,
            created_at_ms,
            ended_at_ms: None,
            options: cmd.0.options.clone(),
            worker: None,
            reason: None,
            proxy_bytes: None,
        };
        ctx.set(RECORD_KEY, Json(rec.clone()));

        let context = cmd.0.context;
        let warm = match self.deps.warm > 0 && warm::fits(&rec.options) {
            true => self.claim_warm(&ctx, &rec, context.clone()).await?,
            false => None,
        };
        let launched = match warm {
            Some(worker) => Ok(Json(worker)),
            None => {
                let host = Arc::clone(&self.deps.host);
                let spec = LaunchSpec {
                    session_id: id.clone(),
                    options: rec.options.clone(),
                    context,
                    warm: false,
                };
                ctx.run(|| async move { host.launch(spec).await.map(Json).map_err(worker_error) })
                    .name("launch_chromium")
                    .retry_policy(
                        RunRetryPolicy::default()
                            .initial_delay(Duration::from_millis(200))
                            .max_attempts(3),
                    )
                    .await
            }
        };
        match launched {
            Ok(Json(worker)) => {
                rec.worker = Some(worker);
                rec.status = SessionStatus::Live;
                ctx.set(RECORD_KEY, Json(rec.clone()));
                if rec.options.timeout_ms > 0 {
                    ctx.object_client::<SessionObjectClient<'_>>(id)
                        .expire()
                        .send_after(Duration::from_millis(rec.options.timeout_ms));
                }
                Ok(Json(rec))
            }
            Err(err) => {
                let reason = format!("launch failed: {}", err.message());
                Ok(Json(
                    self.finish(&ctx, rec, SessionStatus::Failed, reason)
                        .await?,
                ))
            }
        }
    }

    /// Ends the session on request: browser stopped, dir removed, slot returned. Idempotent.
    #[handler(name = "release")]
    async fn release(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<SessionRecord>> {
        let rec = load(&ctx).await?;
        if rec.status.is_final() {
            return Ok(Json(rec));
        }
        Ok(Json(
            self.finish(&ctx, rec, SessionStatus::Released, "released".into())
                .await?,
        ))
    }

    /// Fired by the durable timer set at create; ends a session whose timeout passed.
    #[handler(name = "expire")]
    async fn expire(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        let Some(Json(rec)) = ctx.get::<Json<SessionRecord>>(RECORD_KEY).await? else {
            return Ok(());
        };
        if !rec.status.is_final() {
            self.finish(&ctx, rec, SessionStatus::Released, "timeout".into())
                .await?;
        }
        Ok(())
    }

    /// Sent by the worker supervisor when the session had no CDP traffic for its
    /// `inactivityTimeout`.
    #[handler(name = "idle")]
    async fn idle(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<SessionRecord>> {
        let rec = load(&ctx).await?;
        if rec.status.is_final() {
            return Ok(Json(rec));
        }
        let reason = "inactivity timeout".to_string();
        Ok(Json(
            self.finish(&ctx, rec, SessionStatus::Released, reason)
                .await?,
        ))
    }

    /// Reported by the worker supervisor when the session's browser died or was not found
    /// after a daemon restart: the session becomes `failed`. Ignored for another browser.
    #[handler(name = "worker_exited")]
    async fn worker_exited(
        &self,
        ctx: ObjectContext<'_>,
        exit: Json<WorkerExited>,
    ) -> HandlerResult<()> {
        let Some(Json(rec)) = ctx.get::<Json<SessionRecord>>(RECORD_KEY).await? else {
            return Ok(());
        };
        let same_browser = rec.worker.as_ref().is_some_and(|w| w.pid == exit.0.pid);
        if !rec.status.is_final() && same_browser {
            let status = if exit.0.clean {
                SessionStatus::Released
            } else {
                SessionStatus::Failed
            };
            self.finish(&ctx, rec, status, exit.0.reason).await?;
        }
        Ok(())
    }

    /// Fired a retention period after the session ended: clears its record.
    #[handler(name = "forget")]
    async fn forget(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        if let Some(Json(rec)) = ctx.get::<Json<SessionRecord>>(RECORD_KEY).await?
            && rec.status.is_final()
        {
            ctx.clear_all();
        }
        Ok(())
    }

    /// The session's record; 404 for an id never created (or cleared after retention).
    #[handler(name = "get")]
    async fn get(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<Json<SessionRecord>> {
        match ctx.get::<Json<SessionRecord>>(RECORD_KEY).await? {
            Some(rec) => Ok(rec),
            None => Err(not_found(ctx.key())),
        }
    }
}

impl SessionObject {
    /// The one teardown path: browser stopped (inside `ctx.run`), slot returned, final status.
    async fn finish(
        &self,
        ctx: &ObjectContext<'_>,
        mut rec: SessionRecord,
        status: SessionStatus,
        reason: String,
    ) -> HandlerResult<SessionRecord> {
        rec.status = SessionStatus::Releasing;
        ctx.set(RECORD_KEY, Json(rec.clone()));
        let host = Arc::clone(&self.deps.host);
        let sockets = Arc::clone(&self.deps.sockets);
        let (id, worker) = (rec.id.clone(), rec.worker.clone());
        let Json(proxy_bytes) = ctx
            .run(|| async move {
                sockets.close(&id);
                match worker {
                    Some(w) => host.stop(w).await.map(Json).map_err(worker_error),
                    None => Ok(Json(None)),
                }
            })
            .name("stop_chromium")
            .await?;
        rec.proxy_bytes = proxy_bytes;
        ctx.object_client::<PoolObjectClient<'_>>(rec.node.clone())
            .release(rec.id.clone())
            .call()
            .await?;
        rec.ended_at_ms = Some(clock(ctx).await?);
        rec.status = status;
        rec.reason = Some(reason);
        ctx.set(RECORD_KEY, Json(rec.clone()));
        if self.deps.retention_ms > 0 {
            ctx.object_client::<SessionObjectClient<'_>>(rec.id.clone())
                .forget()
                .send_after(Duration::from_millis(self.deps.retention_ms));
        }
        Ok(rec)
    }
}

async fn load(ctx: &ObjectContext<'_>) -> HandlerResult<SessionRecord> {
    match ctx.get::<Json<SessionRecord>>(RECORD_KEY).await? {
        Some(Json(rec)) => Ok(rec),
        None => Err(not_found(ctx.key())),
    }
}

/// The wall clock, journaled so replays see the same time.
async fn clock(ctx: &ObjectContext<'_>) -> Result<u64, TerminalError> {
    ctx.run(|| async { Ok(now_ms()) }).name("clock").await
}

fn not_found(id: &str) -> HandlerError {
    TerminalError::new_with_code(CODE_NOT_FOUND, format!("session {id} not found")).into()
}

/// A missing binary is terminal; everything else is retried by Restate.
pub(crate) fn worker_error(err: WorkerError) -> HandlerError {
    if err.is_permanent() {
        TerminalError::new(err.to_string()).into()
    } else {
        HandlerError::from(err)
    }
}
