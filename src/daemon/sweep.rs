//! The sweep: repairs what an invocation Restate gave up on left half done.
//!
//! Every bro handler has a retry policy that ends (`orchestrator::INVOCATION_MAX_ATTEMPTS`,
//! then the invocation is killed), and handlers end their sessions themselves when a step
//! fails for good. What is left is an invocation killed in the middle (a panic on every
//! attempt, a daemon down longer than the retries last): a session left `starting` or
//! `releasing`, a `live` session whose timer was lost, a slot held by a session that ended
//! or never got a record, an ended record whose `forget` was lost. Every 10 s the sweep finds
//! those that no invocation is working on any more and sends `Session/repair` (or
//! `Session/forget`), which checks again under the session's lock before it acts, so a
//! sweep that raced a running create does nothing.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::orchestrator::ingress::{Ingress, IngressError};
use crate::protocol::session::{SessionId, SessionRecord, SessionStatus};
use crate::telemetry;

/// How often the sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How far past its timeout (or its retention) a session must be before the sweep steps in
/// for a timer that did not fire.
const OVERDUE_GRACE_MS: u64 = 30_000;

/// Sweeps until `stop`.
pub async fn run(ingress: Ingress, node: String, retention_ms: u64, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    // The start's reconciliation has just run: the first sweep comes one period later.
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sweep(&ingress, &node, retention_ms).await {
            Ok(plan) if !plan.is_empty() => {
                tracing::info!(
                    repaired = plan.repair.len(),
                    forgotten = plan.forget.len(),
                    "swept"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(%err, "sweep skipped"),
        }
    }
}

#[derive(Deserialize)]
struct KeyRow {
    target_service_key: Option<String>,
}

/// One sweep: reads what Restate is working on, the records and the Pool, then sends.
async fn sweep(ingress: &Ingress, node: &str, retention_ms: u64) -> Result<Plan, IngressError> {
    // In-flight first: an invocation that starts after this read is caught by the handler's
    // own check under the lock.
    let busy: HashSet<String> = ingress
        .query::<KeyRow>(
            "SELECT DISTINCT target_service_key FROM sys_invocation \
             WHERE target_service_name = 'Session' AND status != 'completed'",
        )
        .await?
        .into_iter()
        .filter_map(|r| r.target_service_key)
        .collect();
    let all = ingress.list_all().await?;
    let unreadable: HashSet<String> = all.unreadable.iter().map(|u| u.key.clone()).collect();
    let pool = ingress.pool(node, 0, 0).await?;
    let plan = plan(&Inputs {
        records: &all.records,
        unreadable: &unreadable,
        slots: &pool.sessions,
        busy: &busy,
        node,
        now_ms: crate::now_ms(),
        retention_ms,
    });
    for holder in &plan.repair {
        match SessionId::parse(holder) {
            Ok(id) => {
                async {
                    tracing::warn!("repairing a session an invocation left half done");
                    ingress.repair(&id, node).await
                }
                .instrument(telemetry::session_span(&id))
                .await?
            }
            // A slot held by something that is not a session id (only the Pool's state says
            // it): no `Session` object can be its key, so the slot is handed back directly.
            Err(_) => {
                tracing::warn!(holder = %holder, "handing back a slot no session holds");
                ingress.release_slot(node, holder).await?
            }
        }
    }
    for id in plan
        .forget
        .iter()
        .filter_map(|id| SessionId::parse(id).ok())
    {
        ingress.forget(&id).await?;
    }
    Ok(plan)
}

/// What one sweep reads.
struct Inputs<'a> {
    records: &'a [SessionRecord],
    /// Sessions whose record is there but does not parse: never taken for missing.
    unreadable: &'a HashSet<String>,
    /// The sessions holding a slot in this node's `Pool`.
    slots: &'a [String],
    /// Sessions with an invocation not completed (running, retrying, scheduled, queued).
    busy: &'a HashSet<String>,
    node: &'a str,
    now_ms: u64,
    retention_ms: u64,
}

/// What one sweep sends.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    repair: Vec<String>,
    forget: Vec<String>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.repair.is_empty() && self.forget.is_empty()
    }
}

fn plan(input: &Inputs<'_>) -> Plan {
    let mut plan = Plan::default();
    let repair = |id: &str, plan: &mut Plan| {
        if !input.busy.contains(id) && !plan.repair.iter().any(|r| r == id) {
            plan.repair.push(id.to_string());
        }
    };
    for rec in input.records.iter().filter(|r| r.node == input.node) {
        match rec.status {
            SessionStatus::Starting | SessionStatus::Releasing => repair(&rec.id, &mut plan),
            SessionStatus::Live => {
                let overdue = rec.options.timeout_ms > 0
                    // Saturating: a record written before timeouts were bounded may hold
                    // u64::MAX.
                    && rec
                        .created_at_ms
                        .saturating_add(rec.options.timeout_ms)
                        .saturating_add(OVERDUE_GRACE_MS)
                        < input.now_ms;
                if overdue {
                    repair(&rec.id, &mut plan);
                }
            }
            SessionStatus::Released | SessionStatus::Failed => {
                let forgotten = input.retention_ms > 0
                    && rec.ended_at_ms.is_some_and(|end| {
                        end.saturating_add(input.retention_ms)
                            .saturating_add(OVERDUE_GRACE_MS)
                            < input.now_ms
                    });
                if forgotten && !input.busy.contains(rec.id.as_str()) {
                    plan.forget.push(rec.id.to_string());
                }
            }
        }
    }
    for id in input.slots {
        let holder = input.records.iter().find(|r| r.id == id.as_str());
        let over = match holder {
            Some(rec) => rec.status.is_final(),
            None => !input.unreadable.contains(id),
        };
        if over {
            repair(id, &mut plan);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::SessionOptions;

    /// The same id for the same name, within one test thread: the plan speaks in ids, the
    /// test in names.
    fn id(name: &str) -> SessionId {
        thread_local! {
            static IDS: std::cell::RefCell<std::collections::HashMap<String, SessionId>> =
                Default::default();
        }
        IDS.with(|ids| {
            ids.borrow_mut()
                .entry(name.to_string())
                .or_insert_with(SessionId::random)
                .clone()
        })
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| id(n).to_string()).collect()
    }

    fn rec(name: &str, status: SessionStatus, created: u64, timeout: u64) -> SessionRecord {
        SessionRecord {
            id: id(name),
            status,
            node: "local".into(),
            created_at_ms: created,
            ended_at_ms: status.is_final().then_some(created + 1_000),
            options: SessionOptions {
                timeout_ms: timeout,
                ..Default::default()
            },
            worker: None,
            reason: None,
            proxy_bytes: None,
            refused: false,
        }
    }

    #[test]
    fn only_what_no_invocation_works_on_is_repaired() {
        let now = 10_000_000;
        let records = vec![
            rec("starting-dead", SessionStatus::Starting, now - 5_000, 0),
            rec("starting-busy", SessionStatus::Starting, now - 5_000, 0),
            rec("releasing-dead", SessionStatus::Releasing, now - 5_000, 0),
            rec("live-overdue", SessionStatus::Live, 1_000, 60_000),
            rec("live-overdue-busy", SessionStatus::Live, 1_000, 60_000),
            rec("live-in-time", SessionStatus::Live, now - 1_000, 60_000),
            rec("live-no-timeout", SessionStatus::Live, 1_000, 0),
            rec("ended-holding", SessionStatus::Released, now - 5_000, 0),
            rec("ended-old", SessionStatus::Failed, 1_000, 0),
            SessionRecord {
                node: "other".into(),
                ..rec("other-node", SessionStatus::Starting, 1_000, 0)
            },
        ];
        let busy: HashSet<String> = ids(&["starting-busy", "live-overdue-busy"])
            .into_iter()
            .collect();
        let unreadable: HashSet<String> = ids(&["garbled"]).into_iter().collect();
        let slots = ids(&["starting-dead", "ended-holding", "no-record", "garbled"]);
        let plan = plan(&Inputs {
            records: &records,
            unreadable: &unreadable,
            slots: &slots,
            busy: &busy,
            node: "local",
            now_ms: now,
            retention_ms: 3_600_000,
        });
        assert_eq!(
            plan.repair,
            ids(&[
                "starting-dead",
                "releasing-dead",
                "live-overdue",
                "ended-holding",
                "no-record"
            ])
        );
        assert_eq!(plan.forget, ids(&["ended-old"]));
    }
}
