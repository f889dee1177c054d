//! The `Node` virtual object, keyed by node name: the heartbeats of one bro node of a cluster,
//! and what happens when they stop. Each daemon beats every [`BEAT_EVERY`]; every beat
//! schedules a durable `check` [`LOST_AFTER`] later, and a check that finds no beat since
//! its own declares the node lost: its sessions become `failed` with reason
//! `node <name> lost`, the creates waiting for its slots are refused, and placement leaves it
//! out until it beats again. Being durable timers in Restate, the checks fire on whichever
//! node leads the partition, so a lost node is found while any majority of the cluster runs.

use std::sync::Arc;
use std::time::Duration;

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use crate::orchestrator::pool::PoolObjectClient;
use crate::orchestrator::session::SessionObjectClient;
use crate::orchestrator::{Deps, now_ms};
use crate::protocol::cluster::{NodeBeat, NodeRecord};

const RECORD: &str = "record";

/// How often a daemon beats.
pub const BEAT_EVERY: Duration = Duration::from_secs(2);
/// How long after its last beat a node is declared lost. A few beats, so one slow beat
/// (a busy machine, a stalled call while the cluster fails over: about 4 s measured) is
/// not a loss.
pub const LOST_AFTER: Duration = Duration::from_secs(12);

/// Input of `Session/node_lost`: the node, lost after beat number `beats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeLost {
    pub node: String,
    pub beats: u64,
}

/// The `Node` object.
pub struct NodeObject {
    pub deps: Arc<Deps>,
}

#[restate_sdk::object(name = "Node")]
impl NodeObject {
    /// A beat from the node: recorded, and a check scheduled. A node that was lost is
    /// healthy again from here (its daemon re-adopted or reaped its browsers when it started).
    #[handler(name = "beat")]
    async fn beat(&self, ctx: ObjectContext<'_>, beat: Json<NodeBeat>) -> HandlerResult<()> {
        let beat = beat.0;
        if beat.name != ctx.key() {
            return Err(TerminalError::new_with_code(
                crate::orchestrator::session::CODE_BAD_INPUT,
                format!("a beat of node {} sent to node {}", beat.name, ctx.key()),
            )
            .into());
        }
        let seen_ms = ctx.run(|| async { Ok(now_ms()) }).name("clock").await?;
        let old = ctx.get::<Json<NodeRecord>>(RECORD).await?.map(|j| j.0);
        let beats = old.as_ref().map_or(0, |r| r.beats).wrapping_add(1);
        if old.as_ref().is_some_and(|r| r.lost) {
            tracing::info!(node = %beat.name, "a lost node beats again");
            ctx.object_client::<PoolObjectClient<'_>>(ctx.key())
                .reopen()
                .send();
        }
        ctx.set(
            RECORD,
            Json(NodeRecord {
                beat,
                beats,
                seen_ms,
                lost: false,
            }),
        );
        ctx.object_client::<NodeObjectClient<'_>>(ctx.key())
            .check(beats)
            .send_after(LOST_AFTER);
        Ok(())
    }

    /// Fired [`LOST_AFTER`] after beat number `beats`: no beat since means the node is lost.
    #[handler(name = "check")]
    async fn check(&self, ctx: ObjectContext<'_>, beats: u64) -> HandlerResult<()> {
        let Some(Json(mut rec)) = ctx.get::<Json<NodeRecord>>(RECORD).await? else {
            return Ok(());
        };
        if rec.beats != beats || rec.lost {
            return Ok(());
        }
        rec.lost = true;
        ctx.set(RECORD, Json(rec.clone()));
        let node = ctx.key().to_string();
        tracing::warn!(%node, "node lost: no heartbeat within {LOST_AFTER:?}");
        // The waiters first: a slot that a failing session frees must not go to a create
        // that would launch on the lost node.
        ctx.object_client::<PoolObjectClient<'_>>(node.clone())
            .node_lost()
            .call()
            .await?;
        let pool = ctx
            .object_client::<PoolObjectClient<'_>>(node.clone())
            .status()
            .call()
            .await?;
        for id in &pool.0.sessions {
            ctx.object_client::<SessionObjectClient<'_>>(id.clone())
                .node_lost(Json(NodeLost {
                    node: node.clone(),
                    beats,
                }))
                .send();
        }
        Ok(())
    }

    /// Leaves the cluster's view: a node removed from the cluster for good. Refused while it
    /// beats.
    #[handler(name = "forget")]
    async fn forget(&self, ctx: ObjectContext<'_>) -> HandlerResult<()> {
        if let Some(Json(rec)) = ctx.get::<Json<NodeRecord>>(RECORD).await?
            && !rec.lost
        {
            return Err(TerminalError::new_with_code(
                crate::orchestrator::session::CODE_BAD_INPUT,
                format!("node {} still beats; stop it first", ctx.key()),
            )
            .into());
        }
        ctx.clear_all();
        Ok(())
    }

    /// The node's record; `None` for a node never seen.
    #[handler(name = "get")]
    async fn get(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<Json<Option<NodeRecord>>> {
        Ok(Json(
            ctx.get::<Json<NodeRecord>>(RECORD).await?.map(|j| j.0),
        ))
    }
}
