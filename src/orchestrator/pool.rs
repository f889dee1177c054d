//! The `Pool` virtual object, keyed by node name: the capacity of one node and the set of
//! sessions holding it. A session holds a slot from `acquire` until its `release`.

use std::sync::Arc;

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use crate::orchestrator::Deps;

const SESSIONS: &str = "sessions";

/// Answer of `Pool/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolStatus {
    pub capacity: u32,
    pub sessions: Vec<String>,
}

/// The `Pool` object; capacity comes from the daemon serving it.
pub struct PoolObject {
    pub deps: Arc<Deps>,
}

#[restate_sdk::object(name = "Pool")]
impl PoolObject {
    /// Takes a slot for `session_id`; `false` when the node is full. Idempotent per session.
    #[handler(name = "acquire")]
    async fn acquire(
        &self,
        ctx: ObjectContext<'_>,
        session_id: String,
    ) -> HandlerResult<Json<bool>> {
        let mut sessions = load(&ctx).await?;
        if sessions.contains(&session_id) {
            return Ok(Json(true));
        }
        if sessions.len() as u32 >= self.deps.max_sessions {
            return Ok(Json(false));
        }
        sessions.push(session_id);
        ctx.set(SESSIONS, Json(sessions));
        Ok(Json(true))
    }

    /// Gives the slot of `session_id` back. Idempotent.
    #[handler(name = "release")]
    async fn release(&self, ctx: ObjectContext<'_>, session_id: String) -> HandlerResult<()> {
        let mut sessions = load(&ctx).await?;
        sessions.retain(|s| *s != session_id);
        ctx.set(SESSIONS, Json(sessions));
        Ok(())
    }

    /// Capacity and the sessions holding it.
    #[handler(name = "status")]
    async fn status(&self, ctx: SharedObjectContext<'_>) -> HandlerResult<Json<PoolStatus>> {
        let sessions = ctx
            .get::<Json<Vec<String>>>(SESSIONS)
            .await?
            .map(|j| j.0)
            .unwrap_or_default();
        Ok(Json(PoolStatus {
            capacity: self.deps.max_sessions,
            sessions,
        }))
    }
}

async fn load(ctx: &ObjectContext<'_>) -> HandlerResult<Vec<String>> {
    Ok(ctx
        .get::<Json<Vec<String>>>(SESSIONS)
        .await?
        .map(|j| j.0)
        .unwrap_or_default())
}
