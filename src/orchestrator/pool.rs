//! The `Pool` virtual object, keyed by node name: the capacity of one node, the sessions
//! holding it, and the FIFO of creates waiting for a slot. A session holds a slot from
//! `acquire` until its `release`. A waiting create is parked on an awakeable that the Pool
//! resolves when a slot is handed to it, or rejects when it times out or its client leaves.

use std::sync::Arc;
use std::time::Duration;

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use crate::orchestrator::Deps;

const SESSIONS: &str = "sessions";
const QUEUE: &str = "queue";
const CONFIG: &str = "config";
/// Set while the node is lost: no slot of it is handed out.
const LOST: &str = "lost";
/// The most sessions the node's free memory allows (`--min-free-memory`): the sessions held
/// whose browsers the node ran or was launching when its daemon last measured, plus how many
/// more fit above the floor ([`memory_cap`]). Unset: no bound. Each grant takes one of that
/// room (the sessions held count against the cap, those granted but not launching yet too),
/// and a release gives none back (it lowers the cap): a released browser's memory is room
/// only once the next measurement sees it gone.
pub const MEMORY_CAP: &str = "memory_cap";

/// The bounds of one node's `Pool`, set by that node's daemon at every start
/// (`Pool/configure`): in a cluster a node's `Pool` may run on any node's daemon, so its
/// capacity must not come from whichever daemon serves the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolConfig {
    pub capacity: u32,
    pub max_queue: u32,
    pub queue_timeout_ms: u64,
}

/// Code of the terminal error a waiter gets when its wait is over without a slot.
pub const CODE_QUEUE_TIMEOUT: u16 = 429;
/// Code of the terminal error a waiter gets when its client hung up or the daemon restarted.
pub const CODE_LEFT_QUEUE: u16 = 499;

/// Input of `Pool/acquire`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcquireRequest {
    pub session_id: String,
    /// The awakeable to resolve when a slot is handed over; `None` asks not to wait.
    #[serde(default)]
    pub awakeable_id: Option<String>,
}

/// Answer of `Pool/acquire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acquired {
    /// The slot is the session's now.
    Granted,
    /// The session waits in the queue; its awakeable says how the wait ends.
    Queued,
    /// No slot and no room (or no wish) to wait.
    Full,
}

/// Input of `Pool/memory_room`, measured by the node's daemon (`--min-free-memory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MemoryRoom {
    /// `room` more sessions fit above the floor than the node serves: `serving` names the
    /// sessions whose browsers run or launch on it (their memory is in the measurement, or
    /// taken off the room), and may name more (a warm browser's own id, a session over whose
    /// browser outlived its stop), which count for nothing. At most [`MAX_SERVING`] are read.
    Serving { room: u32, serving: Vec<String> },
    /// An older daemon's: `room` more than the sessions the `Pool` holds.
    Room(u32),
}

/// The most names of a [`MemoryRoom::Serving`] read: every session a node may hold and as
/// many again (warm browsers, leftovers). Past it the cap only comes out lower.
pub const MAX_SERVING: usize = 2 * crate::config::MAX_SESSIONS_LIMIT as usize;

/// The cap of [`MEMORY_CAP`] from a measurement, with the `Pool` holding `holding`: the
/// sessions it holds whose browsers the measurement saw, plus the room. A session granted
/// its slot whose launch has not begun is not seen: its memory is not in the measurement,
/// so it takes one of the room. A name seen that the `Pool` does not hold gives nothing.
pub fn memory_cap(measured: &MemoryRoom, holding: &[String]) -> u32 {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    match measured {
        MemoryRoom::Serving { room, serving } => {
            let serving: std::collections::HashSet<&str> = serving
                .iter()
                .take(MAX_SERVING)
                .map(String::as_str)
                .collect();
            let seen = holding
                .iter()
                .filter(|s| serving.contains(s.as_str()))
                .count();
            count(seen).saturating_add(*room)
        }
        MemoryRoom::Room(room) => count(holding.len()).saturating_add(*room),
    }
}

/// One create waiting for a slot, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub session_id: String,
    pub awakeable_id: String,
}

/// Answer of `Pool/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolStatus {
    /// The node is lost: it hands out no slot.
    #[serde(default)]
    pub lost: bool,
    pub capacity: u32,
    pub sessions: Vec<String>,
    pub max_queue: u32,
    pub queue: Vec<String>,
    /// `capacity` is lowered by the node's free memory floor (`--min-free-memory`).
    #[serde(default)]
    pub memory_bound: bool,
}

/// The `Pool` object; capacity and queue bounds come from its state ([`PoolConfig`]), or,
/// before its node configured it, from the daemon serving it.
pub struct PoolObject {
    pub deps: Arc<Deps>,
}

impl PoolObject {
    /// The bounds in force: the node's own, else this daemon's; the capacity lowered to what
    /// the node's free memory allows, if that is less.
    async fn config(&self, ctx: &impl SharedObjectContextLike) -> HandlerResult<PoolConfig> {
        let (mut config, cap) = self.config_and_cap(ctx).await?;
        if let Some(cap) = cap {
            config.capacity = config.capacity.min(cap);
        }
        Ok(config)
    }

    /// The bounds in force and the memory cap apart (read in that order, as `config`).
    async fn config_and_cap(
        &self,
        ctx: &impl SharedObjectContextLike,
    ) -> HandlerResult<(PoolConfig, Option<u32>)> {
        let config = ctx.config().await?.unwrap_or(PoolConfig {
            capacity: self.deps.max_sessions,
            max_queue: self.deps.max_queue,
            queue_timeout_ms: self.deps.queue_timeout_ms,
        });
        Ok((config, ctx.memory_cap().await?))
    }
}

/// Reads a `Pool`'s [`PoolConfig`] and memory cap from either kind of object context.
trait SharedObjectContextLike {
    async fn config(&self) -> Result<Option<PoolConfig>, TerminalError>;
    async fn memory_cap(&self) -> Result<Option<u32>, TerminalError>;
}

impl SharedObjectContextLike for ObjectContext<'_> {
    async fn config(&self) -> Result<Option<PoolConfig>, TerminalError> {
        Ok(self.get::<Json<PoolConfig>>(CONFIG).await?.map(|j| j.0))
    }
    async fn memory_cap(&self) -> Result<Option<u32>, TerminalError> {
        self.get::<u32>(MEMORY_CAP).await
    }
}

impl SharedObjectContextLike for SharedObjectContext<'_> {
    async fn config(&self) -> Result<Option<PoolConfig>, TerminalError> {
        Ok(self.get::<Json<PoolConfig>>(CONFIG).await?.map(|j| j.0))
    }
    async fn memory_cap(&self) -> Result<Option<u32>, TerminalError> {
        self.get::<u32>(MEMORY_CAP).await
    }
}

#[restate_sdk::object(name = "Pool")]
impl PoolObject {
    /// Takes a slot for the session, or queues it (FIFO) when the node is full and the queue
    /// has room, or answers `Full`. Idempotent per session.
    #[handler(name = "acquire")]
    async fn acquire(
        &self,
        ctx: ObjectContext<'_>,
        req: Json<AcquireRequest>,
    ) -> HandlerResult<Json<Acquired>> {
        let req = req.0;
        let config = self.config(&ctx).await?;
        let mut state = State::load(&ctx).await?;
        if state.sessions.contains(&req.session_id) {
            return Ok(Json(Acquired::Granted));
        }
        if state.queue.iter().any(|w| w.session_id == req.session_id) {
            return Ok(Json(Acquired::Queued));
        }
        // A lost node's slots would launch on a machine that is not there (a create placed
        // from a view a moment old, or one naming the node).
        if ctx.get::<bool>(LOST).await?.unwrap_or(false) {
            return Ok(Json(Acquired::Full));
        }
        let free = (state.sessions.len() as u32) < config.capacity;
        let answer = if free && state.queue.is_empty() {
            state.sessions.push(req.session_id);
            Acquired::Granted
        } else {
            match req.awakeable_id {
                Some(awakeable_id) if (state.queue.len() as u32) < config.max_queue => {
                    ctx.object_client::<PoolObjectClient<'_>>(ctx.key())
                        .expire_waiter(req.session_id.clone())
                        .send_after(Duration::from_millis(
                            config
                                .queue_timeout_ms
                                .min(crate::config::MAX_QUEUE_TIMEOUT_MS),
                        ));
                    state.queue.push(Waiter {
                        session_id: req.session_id,
                        awakeable_id,
                    });
                    Acquired::Queued
                }
                _ => Acquired::Full,
            }
        };
        state.drain(&ctx, config.capacity);
        state.save(&ctx);
        Ok(Json(answer))
    }

    /// Gives the slot of `session_id` back and hands free slots to the queue's head.
    /// Idempotent.
    #[handler(name = "release")]
    async fn release(&self, ctx: ObjectContext<'_>, session_id: String) -> HandlerResult<()> {
        // The same reads in the same order as before the cap was lowered here, and its write
        // last: an invocation journaled by an older bro replays the same prefix.
        let (config, cap) = self.config_and_cap(&ctx).await?;
        let mut state = State::load(&ctx).await?;
        let held = state.sessions.len();
        state.sessions.retain(|s| *s != session_id);
        let cap = cap_after_release(cap, held - state.sessions.len());
        let capacity = cap.map_or(config.capacity, |cap| config.capacity.min(cap));
        state.drain(&ctx, capacity);
        state.save(&ctx);
        if let Some(cap) = cap {
            ctx.set(MEMORY_CAP, cap);
        }
        Ok(())
    }

    /// Takes a waiting session out of the queue: its client hung up. No-op for a session
    /// that is not waiting (it may hold a slot already; it keeps it).
    #[handler(name = "leave")]
    async fn leave(&self, ctx: ObjectContext<'_>, session_id: String) -> HandlerResult<()> {
        let mut state = State::load(&ctx).await?;
        state.reject(
            &ctx,
            &session_id,
            CODE_LEFT_QUEUE,
            "the client left the queue",
        );
        state.save(&ctx);
        Ok(())
    }

    /// Fired `queue_timeout` after a session was queued: ends its wait if it still waits.
    #[handler(name = "expire_waiter")]
    async fn expire_waiter(&self, ctx: ObjectContext<'_>, session_id: String) -> HandlerResult<()> {
        let timeout_ms = self.config(&ctx).await?.queue_timeout_ms;
        let mut state = State::load(&ctx).await?;
        let message = format!(
            "at capacity: no session slot came free within the queue timeout ({} s)",
            timeout_ms.div_ceil(1000)
        );
        state.reject(&ctx, &session_id, CODE_QUEUE_TIMEOUT, &message);
        state.save(&ctx);
        Ok(())
    }

    /// Ends every wait: called by a starting daemon, whose predecessor's clients are gone.
    #[handler(name = "clear_queue")]
    async fn clear_queue(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<u32>> {
        self.end_waits(&ctx, CODE_LEFT_QUEUE, "the daemon restarted")
            .await
    }

    /// Sets the node's bounds (its daemon, at every start) and hands out slots they free.
    #[handler(name = "configure")]
    async fn configure(
        &self,
        ctx: ObjectContext<'_>,
        config: Json<PoolConfig>,
    ) -> HandlerResult<()> {
        ctx.set(CONFIG, Json(config.0));
        ctx.clear(LOST);
        // A floor of the previous daemon no longer holds; this one measures again.
        ctx.clear(MEMORY_CAP);
        let mut state = State::load(&ctx).await?;
        state.drain(&ctx, config.0.capacity);
        state.save(&ctx);
        Ok(())
    }

    /// Sent by the node's daemon as its free memory changes (`--min-free-memory`): how many
    /// more sessions fit above the floor ([`MemoryRoom`]; `None`: no floor). A node with no
    /// room is full: creates queue or get 429 as at capacity. Measured outside the handler,
    /// so it stays deterministic.
    // Its input names up to MAX_SERVING sessions, sent as often as every second: Restate
    // keeps no journal of it once done (`default-journal-retention` would keep an hour's).
    #[handler(name = "memory_room", journal_retention = "0s")]
    async fn memory_room(
        &self,
        ctx: ObjectContext<'_>,
        room: Json<Option<MemoryRoom>>,
    ) -> HandlerResult<()> {
        let mut state = State::load(&ctx).await?;
        match room.0 {
            Some(room) => ctx.set(MEMORY_CAP, memory_cap(&room, &state.sessions)),
            None => ctx.clear(MEMORY_CAP),
        }
        let capacity = self.config(&ctx).await?.capacity;
        state.drain(&ctx, capacity);
        state.save(&ctx);
        Ok(())
    }

    /// Ends every wait of a node that was lost: no slot of it will come free soon. The
    /// waiters get 429, to be tried again (placement leaves the lost node out).
    #[handler(name = "node_lost")]
    async fn node_lost(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<u32>> {
        let message = format!(
            "at capacity: node {} was lost while this create waited for one of its slots; \
             try again",
            ctx.key()
        );
        ctx.set(LOST, true);
        self.end_waits(&ctx, CODE_QUEUE_TIMEOUT, &message).await
    }

    /// The lost node beats again: its slots are handed out again.
    #[handler(name = "reopen")]
    async fn reopen(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        ctx.clear(LOST);
        let capacity = self.config(&ctx).await?.capacity;
        let mut state = State::load(&ctx).await?;
        state.drain(&ctx, capacity);
        state.save(&ctx);
        Ok(())
    }

    /// Capacity, the sessions holding it, and the sessions waiting, in order.
    #[handler(name = "status")]
    async fn status(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<Json<PoolStatus>> {
        let sessions = ctx
            .get::<Json<Vec<String>>>(SESSIONS)
            .await?
            .map(|j| j.0)
            .unwrap_or_default();
        let queue = ctx
            .get::<Json<Vec<Waiter>>>(QUEUE)
            .await?
            .map(|j| j.0)
            .unwrap_or_default();
        let config = self.config(&ctx).await?;
        let configured = ctx
            .config()
            .await?
            .map_or(self.deps.max_sessions, |c| c.capacity);
        Ok(Json(PoolStatus {
            memory_bound: config.capacity < configured,
            lost: ctx.get::<bool>(LOST).await?.unwrap_or(false),
            capacity: config.capacity,
            sessions,
            max_queue: config.max_queue,
            queue: queue.into_iter().map(|w| w.session_id).collect(),
        }))
    }
}

impl PoolObject {
    /// Rejects every waiter with `code` and `reason`; how many there were.
    async fn end_waits(
        &self,
        ctx: &ObjectContext<'_>,
        code: u16,
        reason: &str,
    ) -> HandlerResult<Json<u32>> {
        let capacity = self.config(ctx).await?.capacity;
        let mut state = State::load(ctx).await?;
        let waiting: Vec<String> = state.queue.iter().map(|w| w.session_id.clone()).collect();
        for id in &waiting {
            state.reject(ctx, id, code, reason);
        }
        state.drain(ctx, capacity);
        state.save(ctx);
        Ok(Json(waiting.len() as u32))
    }
}

/// The Pool's state, loaded and saved whole.
struct State {
    sessions: Vec<String>,
    queue: Vec<Waiter>,
}

impl State {
    async fn load(ctx: &ObjectContext<'_>) -> HandlerResult<State> {
        Ok(State {
            sessions: ctx
                .get::<Json<Vec<String>>>(SESSIONS)
                .await?
                .map(|j| j.0)
                .unwrap_or_default(),
            queue: ctx
                .get::<Json<Vec<Waiter>>>(QUEUE)
                .await?
                .map(|j| j.0)
                .unwrap_or_default(),
        })
    }

    fn save(self, ctx: &ObjectContext<'_>) {
        ctx.set(SESSIONS, Json(self.sessions));
        ctx.set(QUEUE, Json(self.queue));
    }

    /// Hands free slots to the waiters at the queue's head, in order.
    fn drain(&mut self, ctx: &ObjectContext<'_>, capacity: u32) {
        for waiter in take_granted(&mut self.sessions, &mut self.queue, capacity) {
            ctx.resolve_awakeable(&waiter.awakeable_id, true);
        }
    }

    /// Ends one waiter's wait with an error; no-op when it does not wait.
    fn reject(&mut self, ctx: &ObjectContext<'_>, session_id: &str, code: u16, message: &str) {
        if let Some(i) = self.queue.iter().position(|w| w.session_id == session_id) {
            let waiter = self.queue.remove(i);
            ctx.reject_awakeable(
                &waiter.awakeable_id,
                TerminalError::new_with_code(code, message),
            );
        }
    }
}

/// The memory cap once `released` sessions gave their slots back: lowered as much, so their
/// slots go to no one until the next measurement sets the room again.
fn cap_after_release(cap: Option<u32>, released: usize) -> Option<u32> {
    cap.map(|c| c.saturating_sub(u32::try_from(released).unwrap_or(u32::MAX)))
}

/// Moves waiters from the queue's head into `sessions` while slots are free; returns them.
fn take_granted(sessions: &mut Vec<String>, queue: &mut Vec<Waiter>, capacity: u32) -> Vec<Waiter> {
    let free = (capacity as usize)
        .saturating_sub(sessions.len())
        .min(queue.len());
    let granted: Vec<Waiter> = queue.drain(..free).collect();
    sessions.extend(granted.iter().map(|w| w.session_id.clone()));
    granted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(id: &str) -> Waiter {
        Waiter {
            session_id: id.into(),
            awakeable_id: format!("awk-{id}"),
        }
    }

    #[test]
    fn free_slots_go_to_the_head_of_the_queue_in_order() {
        let mut sessions = vec!["a".to_string()];
        let mut queue = vec![waiter("b"), waiter("c"), waiter("d")];
        let granted = take_granted(&mut sessions, &mut queue, 3);
        assert_eq!(granted, vec![waiter("b"), waiter("c")]);
        assert_eq!(sessions, ["a", "b", "c"]);
        assert_eq!(queue, vec![waiter("d")]);
    }

    #[test]
    fn under_a_memory_cap_grants_take_room_and_releases_give_none_back() {
        // Measured with one session held and room for two more: cap 3.
        let mut cap = Some(3);
        let mut sessions = vec!["a".to_string()];
        let mut queue = vec![waiter("b"), waiter("c"), waiter("d")];
        // A burst takes the room, one grant each, and no more.
        assert_eq!(take_granted(&mut sessions, &mut queue, 3).len(), 2);
        assert_eq!(queue, vec![waiter("d")]);
        // A release before the next measurement hands its slot to no one.
        sessions.retain(|s| s != "a");
        cap = cap_after_release(cap, 1);
        assert_eq!(cap, Some(2));
        assert!(take_granted(&mut sessions, &mut queue, 2).is_empty());
        // Releasing a session it does not hold changes nothing; no cap stays none.
        assert_eq!(cap_after_release(cap, 0), Some(2));
        assert_eq!(cap_after_release(None, 1), None);
        assert_eq!(cap_after_release(Some(0), 1), Some(0));
    }

    fn names(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn granted_sessions_not_launching_yet_take_room_the_measurement_does_not_show() {
        // The daemon saw the browsers of a, b, c (and a warm one, w) and room for 2 more; the
        // Pool holds five: d and e were granted since, their launches not begun. They are the
        // room: no third grant.
        let measured = MemoryRoom::Serving {
            room: 2,
            serving: names(&["a", "b", "c", "w"]),
        };
        let mut sessions = names(&["a", "b", "c", "d", "e"]);
        assert_eq!(memory_cap(&measured, &sessions), 5);
        let mut queue = vec![waiter("f")];
        let cap = memory_cap(&measured, &sessions);
        assert!(take_granted(&mut sessions, &mut queue, cap).is_empty());
        // The same figures under the old rule (room over what the Pool holds) gave 7.
        assert_eq!(memory_cap(&MemoryRoom::Room(2), &sessions), 7);
        // Browsers the Pool holds no session of (warm ones, one that outlived its session's
        // stop) are in the measurement already: they give no room, with or without grants
        // pending.
        let leftovers = MemoryRoom::Serving {
            room: 1,
            serving: names(&["a", "b", "x", "y", "w1", "w2"]),
        };
        assert_eq!(memory_cap(&leftovers, &names(&["a", "b"])), 3);
        assert_eq!(memory_cap(&leftovers, &names(&["a", "b", "c"])), 3);
        // Saturating, and bounded in what it reads.
        let full = MemoryRoom::Serving {
            room: u32::MAX,
            serving: names(&["a"]),
        };
        assert_eq!(memory_cap(&full, &names(&["a"])), u32::MAX);
        let mut many: Vec<String> = (0..MAX_SERVING).map(|i| format!("s{i}")).collect();
        many.push("late".into());
        let long = MemoryRoom::Serving {
            room: 0,
            serving: many,
        };
        assert_eq!(memory_cap(&long, &names(&["s0", "late"])), 1);
    }

    #[test]
    fn memory_room_reads_this_daemons_and_older_daemons_input() {
        let read = |json: &str| serde_json::from_str::<Option<MemoryRoom>>(json).unwrap();
        assert_eq!(read("null"), None);
        assert_eq!(read("4"), Some(MemoryRoom::Room(4)));
        let serving = MemoryRoom::Serving {
            room: 4,
            serving: names(&["a"]),
        };
        assert_eq!(read(r#"{"room":4,"serving":["a"]}"#), Some(serving.clone()));
        let sent = serde_json::to_string(&Some(serving)).unwrap();
        assert_eq!(sent, r#"{"room":4,"serving":["a"]}"#);
        assert!(serde_json::from_str::<Option<MemoryRoom>>(r#"{"room":-1}"#).is_err());
    }

    #[test]
    fn a_full_node_grants_nothing() {
        let mut sessions = vec!["a".to_string(), "b".to_string()];
        let mut queue = vec![waiter("c")];
        // Capacity lowered below the sessions held (a restart with a smaller --max-sessions).
        assert!(take_granted(&mut sessions, &mut queue, 1).is_empty());
        assert_eq!(queue.len(), 1);
    }
}
