//! The `Session` virtual object, keyed by session id (a UUID). Its one state value, the
//! [`SessionRecord`], is the truth about the session; the browser is a side effect of it.

use std::sync::Arc;
use std::time::Duration;

use restate_sdk::context::RunRetryPolicy;
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::host::{Claim, HostError, HostErrorKind, LaunchSpec};
use crate::orchestrator::node::{NodeLost, NodeObjectClient};
use crate::orchestrator::pool::{AcquireRequest, Acquired, PoolObjectClient};
use crate::orchestrator::warm::{self, WarmObjectClient};
use crate::orchestrator::{Deps, now_ms};
use crate::protocol::session::{
    MAX_TIMEOUT_MS, RECORD_KEY, SessionId, SessionOptions, SessionRecord, SessionStatus, WorkerInfo,
};
use crate::protocol::steel::{MAX_TIME_MS, SessionContext};
use crate::telemetry;

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
    /// The node to create on (placement chose it, or the client named it); `None` is the
    /// node of the daemon serving the call.
    #[serde(default)]
    pub node: Option<String>,
    /// When the serving daemon sent the create (its wall clock, ms since the epoch): the
    /// session's `created_at` when a slot is free at once, so no step of the create's journal
    /// is spent reading the clock. `None` (an older daemon's create), or a time no clock set
    /// right could show ([`CreateCommand::request_time`]): read in the handler.
    #[serde(default)]
    pub requested_at_ms: Option<u64>,
    /// Whether the serving daemon keeps a warm pool (`--warm` above 0; the nodes of a cluster
    /// are meant to share it), carried so no journal step is spent reading it. `None` (an
    /// older daemon's create): read in the handler.
    #[serde(default)]
    pub warm: Option<bool>,
}

/// The earliest request time taken as one (2020-01-01T00:00:00Z): before it, the sending
/// daemon's clock is not set.
const EARLIEST_REQUEST_MS: u64 = 1_577_836_800_000;

impl CreateCommand {
    /// [`CreateCommand::requested_at_ms`] when a clock set right could show it (from 2020 to
    /// the latest time bro shows); else `None`, and the handler reads its own clock. A session
    /// dated 1970 would be overdue at the node's next sweep.
    pub fn request_time(&self) -> Option<u64> {
        self.requested_at_ms
            .filter(|at| (EARLIEST_REQUEST_MS..=MAX_TIME_MS).contains(at))
    }
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
pub const CODE_BAD_INPUT: u16 = 400;
pub const CODE_NOT_FOUND: u16 = 404;
pub const CODE_AT_CAPACITY: u16 = 429;
/// The browser refused what the client sent (a `sessionContext`).
pub const CODE_REFUSED: u16 = 422;

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
    ) -> Result<Option<WorkerInfo>, TerminalError> {
        let taken = ctx
            .object_client::<WarmObjectClient<'_>>(rec.node.clone())
            .take()
            .call()
            .await?;
        let Some(entry) = taken.0 else {
            return Ok(None);
        };
        let hosts = Arc::clone(&self.deps.hosts);
        let node = rec.node.clone();
        let stopping = self.deps.stopping_for(&rec.node);
        let claim = Claim {
            session_id: rec.id.clone(),
            worker: entry.worker.clone(),
            options: rec.options.clone(),
            context,
        };
        let claimed = ctx
            .run(|| async move {
                let host = hosts.of(&node).map_err(worker_error)?;
                let claimed = host.claim(claim);
                bounded(&stopping, CLAIM_LIMIT, "claiming a warm browser", claimed)
                    .await
                    .map(Json)
            })
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
                tracing::warn!(error = %err.message(), "a warm browser was unusable; launching cold");
                // Out of the pool's state already: the reaper stops what is left of it.
                warm::stop(ctx, &self.deps, &rec.node, entry.worker).await;
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
        let span = telemetry::session_span(&ctx.key());
        // Where a create's time goes, at debug level (RUST_LOG=bro=debug): wall clock of this
        // attempt, so a replay's figures are its own.
        let began = std::time::Instant::now();
        async {
            if let Some(Json(existing)) = ctx.get::<Json<SessionRecord>>(RECORD_KEY).await? {
                return Ok(Json(existing));
            }
            // The key names the session's dir: only a UUID may become one.
            let id = SessionId::parse(ctx.key())
                .map_err(|message| TerminalError::new_with_code(CODE_BAD_INPUT, message))?;
            // Input past a bound (a timer too far out, say) would fail on every retry while the
            // object is held: refuse it before anything is taken.
            if let Err(message) = cmd.0.options.check() {
                return Err(TerminalError::new_with_code(CODE_BAD_INPUT, message).into());
            }
            let node = match cmd.0.node.clone() {
                Some(node) => {
                    crate::config::check_node(&node).map_err(|message| {
                        TerminalError::new_with_code(CODE_BAD_INPUT, format!("node: {message}"))
                    })?;
                    node
                }
                // Journaled: a replay may run on another node's daemon.
                None => {
                    let own = self.deps.node.clone();
                    ctx.run(|| async move { Ok(own) }).name("this_node").await?
                }
            };
            // A create that may wait parks on an awakeable the Pool resolves when a slot is its
            // (the Pool answers `Full` instead when it keeps no queue).
            let (awakeable_id, slot) = if cmd.0.wait {
                let (awakeable_id, slot) = ctx.awakeable::<bool>();
                (Some(awakeable_id), Some(slot))
            } else {
                (None, None)
            };
            let acquired = ctx
                .object_client::<PoolObjectClient<'_>>(node.clone())
                .acquire(Json(AcquireRequest {
                    session_id: id.to_string(),
                    awakeable_id,
                }))
                .call()
                .await?;
            // Granted at once, the session is as old as its request; after a wait, as its
            // slot (the queue wait is `created_at` less the request's start).
            let granted_at_ms = match (acquired.0, slot) {
                (Acquired::Granted, _) => cmd.0.request_time(),
                (Acquired::Queued, Some(slot)) => {
                    slot.await?;
                    None
                }
                (Acquired::Queued | Acquired::Full, _) => {
                    let pool = ctx
                        .object_client::<PoolObjectClient<'_>>(node.clone())
                        .status()
                        .call()
                        .await?
                        .0;
                    if pool.lost {
                        return Err(TerminalError::new_with_code(
                            CODE_AT_CAPACITY,
                            format!("at capacity: node {node} is lost; try again"),
                        )
                        .into());
                    }
                    if pool.memory_bound && pool.sessions.len() as u32 >= pool.capacity {
                        return Err(TerminalError::new_with_code(
                            CODE_AT_CAPACITY,
                            format!(
                                "at capacity: node {node} has too little free memory for one \
                                 more session (its min_free_memory floor); try again later"
                            ),
                        )
                        .into());
                    }
                    return Err(TerminalError::new_with_code(
                        CODE_AT_CAPACITY,
                        format!(
                            "at capacity: all {} session slots of node {node} are in use{}",
                            pool.capacity,
                            if cmd.0.wait && pool.max_queue > 0 {
                                format!(" and {} creates are waiting", pool.max_queue)
                            } else {
                                String::new()
                            }
                        ),
                    )
                    .into());
                }
            };
            let created_at_ms = match granted_at_ms {
                Some(at) => at,
                None => clock(&ctx).await?,
            };
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
                refused: false,
            };
            ctx.set(RECORD_KEY, Json(rec.clone()));

            // The session holds a slot from here: whatever goes wrong ends it `failed` with its
            // reason and its slot freed, never an invocation failing with it left `starting`.
            let slot_ms = began.elapsed().as_millis();
            let started = self
                .start_browser(&ctx, &rec, cmd.0.warm, cmd.0.context)
                .await;
            tracing::debug!(
                slot_ms,
                browser_ms = began.elapsed().as_millis() - slot_ms,
                ok = started.is_ok(),
                "create: slot, then browser"
            );
            match started {
                Ok(worker) => {
                    rec.worker = Some(worker);
                    rec.status = SessionStatus::Live;
                    ctx.set(RECORD_KEY, Json(rec.clone()));
                    if rec.options.timeout_ms > 0 {
                        ctx.object_client::<SessionObjectClient<'_>>(id.to_string())
                            .expire()
                            .send_after(Duration::from_millis(
                                rec.options.timeout_ms.min(MAX_TIMEOUT_MS),
                            ));
                    }
                    Ok(Json(rec))
                }
                Err(failure) => {
                    rec.refused = failure.refused;
                    Ok(Json(
                        self.finish(&ctx, rec, SessionStatus::Failed, failure.reason)
                            .await?,
                    ))
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Ends the session on request: browser stopped, dir removed, slot returned. Idempotent.
    #[handler(name = "release")]
    async fn release(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<SessionRecord>> {
        let span = telemetry::session_span(&ctx.key());
        async {
            let rec = load(&ctx).await?;
            if rec.status.is_final() {
                return Ok(Json(rec));
            }
            Ok(Json(
                self.finish(&ctx, rec, SessionStatus::Released, "released".into())
                    .await?,
            ))
        }
        .instrument(span)
        .await
    }

    /// Fired by the durable timer set at create; ends a session whose timeout passed.
    #[handler(name = "expire")]
    async fn expire(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        let span = telemetry::session_span(&ctx.key());
        async {
            let Some(Json(rec)) = ctx.get::<Json<SessionRecord>>(RECORD_KEY).await? else {
                return Ok(());
            };
            if !rec.status.is_final() {
                self.finish(&ctx, rec, SessionStatus::Released, "timeout".into())
                    .await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Sent by the worker supervisor when the session had no CDP traffic for its
    /// `inactivityTimeout`.
    #[handler(name = "idle")]
    async fn idle(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<SessionRecord>> {
        let span = telemetry::session_span(&ctx.key());
        async {
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
        .instrument(span)
        .await
    }

    /// Reported by the worker supervisor when the session's browser died or was not found
    /// after a daemon restart: the session becomes `failed`. Ignored for another browser.
    #[handler(name = "worker_exited")]
    async fn worker_exited(
        &self,
        ctx: ObjectContext<'_>,
        exit: Json<WorkerExited>,
    ) -> HandlerResult<()> {
        let span = telemetry::session_span(&ctx.key());
        async {
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
        .instrument(span)
        .await
    }

    /// Sent by the `Node` object when the session's node stopped beating: the session becomes
    /// `failed` with reason `node <name> lost`, without a call to the lost node (its browser
    /// is reaped when the node returns). Ignored for a session of another node, one that
    /// ended, or when the node beat again since (this call may have waited behind a long
    /// create or release).
    #[handler(name = "node_lost")]
    async fn node_lost(&self, ctx: ObjectContext<'_>, lost: Json<NodeLost>) -> HandlerResult<()> {
        let span = telemetry::session_span(&ctx.key());
        async {
            let NodeLost { node, beats } = lost.0;
            let Some(Json(rec)) = ctx.get::<Json<SessionRecord>>(RECORD_KEY).await? else {
                return Ok(());
            };
            if rec.node != node || rec.status.is_final() {
                return Ok(());
            }
            let now = ctx
                .object_client::<NodeObjectClient<'_>>(node.clone())
                .get()
                .call()
                .await?
                .0;
            // A node forgotten since is gone for good: still lost.
            let still_lost = now.is_none_or(|n| n.lost && n.beats == beats);
            if still_lost {
                let reason = format!("node {node} lost");
                self.end(&ctx, rec, SessionStatus::Failed, reason, false)
                    .await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Sent by the daemon's sweep for a session that a killed invocation (Restate gave up on
    /// it after its retries) may have left half done. Runs with the object's lock, so no other
    /// invocation of the session is under way: a session still `starting` or `releasing` is
    /// abandoned (`failed`, slot freed; the reaper stops a browser left in its dir), a `live`
    /// one past its timeout is released, and the slot of one that ended or never was is
    /// returned. Anything else is left as it is. `node` is the node whose sweep sent it (the
    /// `Pool` a session without a record may hold a slot of).
    #[handler(name = "repair")]
    async fn repair(&self, ctx: ObjectContext<'_>, node: String) -> HandlerResult<()> {
        let span = telemetry::session_span(&ctx.key());
        async {
            let id = ctx.key().to_string();
            let Some(Json(rec)) = ctx.get::<Json<SessionRecord>>(RECORD_KEY).await? else {
                // Its create was killed before it wrote a record: at most a slot to return.
                ctx.object_client::<PoolObjectClient<'_>>(node)
                    .release(id)
                    .call()
                    .await?;
                return Ok(());
            };
            match rec.status {
                SessionStatus::Starting | SessionStatus::Releasing => {
                    let what = match rec.status {
                        SessionStatus::Starting => "start",
                        _ => "release",
                    };
                    tracing::warn!("abandoning a session whose {what} was given up");
                    let reason = format!(
                        "abandoned: its {what} failed and was given up after repeated retries \
                         (see the daemon log)"
                    );
                    self.finish(&ctx, rec, SessionStatus::Failed, reason)
                        .await?;
                }
                SessionStatus::Live => {
                    let now = clock(&ctx).await?;
                    if rec.time_left_ms(now) == Some(0) {
                        self.finish(&ctx, rec, SessionStatus::Released, "timeout".into())
                            .await?;
                    }
                }
                SessionStatus::Released | SessionStatus::Failed => {
                    ctx.object_client::<PoolObjectClient<'_>>(rec.node)
                        .release(id)
                        .call()
                        .await?;
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Fired a retention period after the session ended: clears its record.
    #[handler(name = "forget")]
    async fn forget(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        let span = telemetry::session_span(&ctx.key());
        async {
            if let Some(Json(rec)) = ctx.get::<Json<SessionRecord>>(RECORD_KEY).await?
                && rec.status.is_final()
            {
                ctx.clear_all();
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// The session's record; 404 for an id never created (or cleared after retention).
    #[handler(name = "get")]
    async fn get(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<Json<SessionRecord>> {
        let span = telemetry::session_span(&ctx.key());
        async {
            match ctx.get::<Json<SessionRecord>>(RECORD_KEY).await? {
                Some(rec) => Ok(rec),
                None => Err(not_found(ctx.key())),
            }
        }
        .instrument(span)
        .await
    }
}

impl SessionObject {
    /// The session's browser: a warm one when one fits, else a cold launch. `Err` says why
    /// there is none (the launch's bounded retries spent, the daemon stopping, a callee that
    /// failed for good); the caller ends the session with it.
    async fn start_browser(
        &self,
        ctx: &ObjectContext<'_>,
        rec: &SessionRecord,
        warm: Option<bool>,
        context: Option<SessionContext>,
    ) -> Result<WorkerInfo, Failure> {
        // The serving daemon's `--warm`, from the command; for an older daemon's command, this
        // daemon's, journaled: a replay may run on another node's daemon (the nodes of a
        // cluster are meant to share it; a node without a pool answers `None`).
        let warm = match warm {
            Some(warm) => warm,
            None => {
                let warm = self.deps.warm > 0;
                ctx.run(|| async move { Ok(warm) })
                    .name("warm_enabled")
                    .await
                    .map_err(|err| Failure::of("reading the warm setting failed", &err))?
            }
        };
        if warm && warm::fits(&rec.options) {
            match self.claim_warm(ctx, rec, context.clone()).await {
                Ok(Some(worker)) => return Ok(worker),
                Ok(None) => {}
                Err(err) => return Err(Failure::of("taking a warm browser failed", &err)),
            }
        }
        let hosts = Arc::clone(&self.deps.hosts);
        let node = rec.node.clone();
        let stopping = self.deps.stopping_for(&rec.node);
        let spec = LaunchSpec {
            session_id: rec.id.clone(),
            options: rec.options.clone(),
            context,
            warm: false,
        };
        ctx.run(|| async move {
            let host = hosts.of(&node).map_err(worker_error)?;
            let launched = host.launch(spec);
            bounded(&stopping, LAUNCH_LIMIT, "launching Chromium", launched)
                .await
                .map(Json)
        })
        .name("launch_chromium")
        .retry_policy(launch_policy())
        .await
        .map(|Json(worker)| worker)
        .map_err(|err| Failure::of("launch failed", &err))
    }

    /// The one teardown path: browser stopped (inside `ctx.run`), slot returned, final status.
    /// It always ends the session: a browser that cannot be stopped makes it `failed` (the
    /// reaper kills what is left once no open session owns its dir), and a slot that cannot be
    /// returned is said in the reason (the sweep returns it later).
    async fn finish(
        &self,
        ctx: &ObjectContext<'_>,
        rec: SessionRecord,
        status: SessionStatus,
        reason: String,
    ) -> HandlerResult<SessionRecord> {
        self.end(ctx, rec, status, reason, true).await
    }

    /// [`SessionObject::finish`]; with `stop` false the browser is left to its node (a lost
    /// node, which reaps it when it returns).
    async fn end(
        &self,
        ctx: &ObjectContext<'_>,
        mut rec: SessionRecord,
        mut status: SessionStatus,
        mut reason: String,
        stop: bool,
    ) -> HandlerResult<SessionRecord> {
        let began = std::time::Instant::now();
        rec.status = SessionStatus::Releasing;
        ctx.set(RECORD_KEY, Json(rec.clone()));
        let hosts = Arc::clone(&self.deps.hosts);
        let events = Arc::clone(&self.deps.events);
        let node = rec.node.clone();
        let (id, worker) = (rec.id.clone(), rec.worker.clone().filter(|_| stop));
        let stopped = ctx
            .run(|| async move {
                events.ended(&id);
                match worker {
                    Some(w) => {
                        let host = hosts.of(&node).map_err(worker_error)?;
                        timed(STOP_LIMIT, "stopping Chromium", host.stop(w))
                            .await
                            .map(Json)
                    }
                    None => Ok(Json(None)),
                }
            })
            .name("stop_chromium")
            .retry_policy(stop_policy())
            .await;
        let stop_ms = began.elapsed().as_millis();
        match stopped {
            Ok(Json(proxy_bytes)) => rec.proxy_bytes = proxy_bytes,
            Err(err) => {
                tracing::error!(error = %err.message(), "stopping a browser failed for good");
                status = SessionStatus::Failed;
                reason = format!("{reason}; stopping its browser failed: {}", err.message());
            }
        }
        if let Err(err) = ctx
            .object_client::<PoolObjectClient<'_>>(rec.node.clone())
            .release(rec.id.to_string())
            .call()
            .await
        {
            tracing::error!(error = %err.message(), "returning a slot failed");
            reason = format!("{reason}; returning its slot failed: {}", err.message());
        }
        let slot_ms = began.elapsed().as_millis() - stop_ms;
        // The end time and this daemon's retention in one journal entry (one round trip to
        // Restate): a replay sees the same time, and may run on another node's daemon. The
        // end is counted in the same side effect, with the final status whether the stop
        // worked or not: a replay does not run it again, so it is counted once unless the
        // daemon dies before Restate journals it (at least once), by the daemon that ran it.
        let retention_ms = self.deps.retention_ms;
        let ending = status.as_str();
        let (ended_at_ms, retention_ms) = ctx
            .run(|| async move {
                metrics::counter!(crate::prometheus::ENDS, "status" => ending).increment(1);
                Ok(Json((now_ms(), retention_ms)))
            })
            .name("ended")
            .await?
            .0;
        rec.ended_at_ms = Some(ended_at_ms);
        rec.status = status;
        rec.reason = Some(reason);
        ctx.set(RECORD_KEY, Json(rec.clone()));
        if retention_ms > 0 {
            ctx.object_client::<SessionObjectClient<'_>>(rec.id.to_string())
                .forget()
                .send_after(Duration::from_millis(
                    retention_ms.min(crate::config::MAX_RETENTION_MS),
                ));
        }
        tracing::debug!(
            stop_ms,
            slot_ms,
            rest_ms = began.elapsed().as_millis() - stop_ms - slot_ms,
            status = rec.status.as_str(),
            "end: browser stopped, slot returned, record written"
        );
        Ok(rec)
    }
}

/// Why a session got no browser.
struct Failure {
    reason: String,
    /// The browser refused the client's context: the client's fault.
    refused: bool,
}

impl Failure {
    fn of(what: &str, err: &TerminalError) -> Self {
        Failure {
            reason: format!("{what}: {}", err.message()),
            refused: err.code() == CODE_REFUSED,
        }
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

/// How long one launch may take inside its `ctx.run` (Chromium's own start is bounded by
/// `READY_TIMEOUT`): a `ctx.run` that never returned would hold the session until Restate
/// aborted the attempt, and then run again.
const LAUNCH_LIMIT: Duration = Duration::from_secs(60);
/// How long one stop may take (SIGKILL, the group gone, the dir removed).
pub(crate) const STOP_LIMIT: Duration = Duration::from_secs(20);
/// How long claiming a warm browser may take (a probe, the context over CDP).
const CLAIM_LIMIT: Duration = Duration::from_secs(40);

/// A launch is tried 3 times, 200 ms then 400 ms apart; then the session is `failed`.
fn launch_policy() -> RunRetryPolicy {
    RunRetryPolicy::default()
        .initial_delay(Duration::from_millis(200))
        .max_attempts(3)
}

/// A stop is tried up to 5 times within a minute; then the session is `failed` and the reaper
/// has what is left.
pub(crate) fn stop_policy() -> RunRetryPolicy {
    RunRetryPolicy::default()
        .initial_delay(Duration::from_millis(200))
        .max_attempts(5)
        .max_duration(Duration::from_secs(60))
}

/// `work` within `limit`; a timeout is a retryable error.
pub(crate) async fn timed<T>(
    limit: Duration,
    what: &str,
    work: impl std::future::Future<Output = Result<T, HostError>>,
) -> Result<T, HandlerError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result.map_err(worker_error),
        Err(_) => Err(HandlerError::from(format!(
            "{what} did not finish within {limit:?}"
        ))),
    }
}

/// [`timed`], and given up (for good: no retry) when the daemon stops. The work gets
/// [`STOPPING_GRACE`] to end by itself first: this node's host ends its launches at the same
/// token through their own error path (browser killed, dir removed; each launch is its own
/// task, so one that outlasts the grace still ends so). What ends in the grace is returned as
/// it is: a landed launch's browser is released with its session (the stop lists the open
/// sessions until none is left) or drained with the warm pool, not left behind. A claim is
/// not cut short (it takes milliseconds), and another node's work is never stopped here.
pub(crate) async fn bounded<T>(
    stopping: &CancellationToken,
    limit: Duration,
    what: &str,
    work: impl std::future::Future<Output = Result<T, HostError>>,
) -> Result<T, HandlerError> {
    let gave_up =
        || -> HandlerError { TerminalError::new(format!("{what}: the daemon is stopping")).into() };
    if stopping.is_cancelled() {
        return Err(gave_up());
    }
    let work = timed(limit, what, work);
    tokio::pin!(work);
    tokio::select! {
        biased;
        result = &mut work => result,
        () = stopping.cancelled() => {
            // Its own answer when it ends in the grace: a landed launch, or its error as it is
            // (a retry finds the daemon stopping and gives up for good; a refused context
            // stays refused).
            tokio::time::timeout(STOPPING_GRACE, work)
                .await
                .unwrap_or_else(|_| Err(gave_up()))
        }
    }
}

/// How long work under way gets to end by itself once the daemon stops (see [`bounded`]).
pub(crate) const STOPPING_GRACE: Duration = Duration::from_secs(5);

/// What no retry can fix (a missing binary, a refused context) is terminal; everything else is
/// retried.
pub(crate) fn worker_error(err: HostError) -> HandlerError {
    match err.kind {
        HostErrorKind::Refused => TerminalError::new_with_code(CODE_REFUSED, err.message).into(),
        HostErrorKind::Retryable | HostErrorKind::Busy => HandlerError::from(err),
        HostErrorKind::Permanent
        | HostErrorKind::NotFound
        | HostErrorKind::BadInput
        | HostErrorKind::TooLarge => TerminalError::new(err.message).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An older daemon's create (no request time, no warm flag) still reads, and its handler
    /// then reads both itself; so does one whose request time no clock set right could show.
    #[test]
    fn create_commands_of_older_daemons_read_and_odd_request_times_are_not_used() {
        let old: CreateCommand =
            serde_json::from_str(r#"{"options":{"timeoutMs":0},"wait":false,"node":"local"}"#)
                .unwrap();
        assert_eq!((old.requested_at_ms, old.warm), (None, None));
        assert_eq!(old.request_time(), None);
        let now: CreateCommand = serde_json::from_str(
            r#"{"options":{"timeoutMs":0},"requested_at_ms":1795768602668,"warm":true}"#,
        )
        .unwrap();
        assert_eq!(now.warm, Some(true));
        assert_eq!(now.request_time(), Some(1_795_768_602_668));
        for (odd, used) in [
            (0, None),
            (EARLIEST_REQUEST_MS - 1, None),
            (EARLIEST_REQUEST_MS, Some(EARLIEST_REQUEST_MS)),
            (MAX_TIME_MS, Some(MAX_TIME_MS)),
            (MAX_TIME_MS + 1, None),
            (u64::MAX, None),
        ] {
            let cmd = CreateCommand {
                requested_at_ms: Some(odd),
                ..now.clone()
            };
            assert_eq!(cmd.request_time(), used, "{odd}");
        }
    }

    fn text(err: &HandlerError) -> String {
        let err: &(dyn std::error::Error + Send + Sync) = err.as_ref();
        err.to_string()
    }

    /// A stop lets the work under way end by itself (the host cleans up on the same token):
    /// a launch that lands in the grace is kept, one that fails says its own error, one that
    /// outlasts the grace is given up for good, and once stopped no work starts.
    #[tokio::test(start_paused = true)]
    async fn a_stop_gives_work_under_way_its_grace() {
        let limit = Duration::from_secs(60);
        let stopped_after = |ms, answer: Result<u32, HostError>| {
            let stopping = CancellationToken::new();
            let token = stopping.clone();
            async move {
                bounded(&stopping, limit, "launching", async move {
                    token.cancel();
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    answer
                })
                .await
            }
        };
        assert_eq!(stopped_after(50, Ok(7)).await.ok(), Some(7));
        let busy = HostError::new(HostErrorKind::Retryable, "busy");
        let failed = stopped_after(50, Err(busy)).await.unwrap_err();
        assert_eq!(text(&failed), "Retryable error: busy");
        let began = tokio::time::Instant::now();
        let cut = stopped_after(3_600_000, Ok(1)).await.unwrap_err();
        assert_eq!(began.elapsed(), STOPPING_GRACE);
        assert_eq!(
            text(&cut),
            "Terminal error [500]: launching: the daemon is stopping"
        );

        let stopping = CancellationToken::new();
        stopping.cancel();
        let polled = std::sync::atomic::AtomicBool::new(false);
        let none = bounded(&stopping, limit, "launching", async {
            polled.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, HostError>(1)
        })
        .await;
        assert!(none.is_err());
        assert!(!polled.load(std::sync::atomic::Ordering::SeqCst));
    }
}
