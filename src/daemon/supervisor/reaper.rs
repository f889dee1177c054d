//! The supervisor's hands for orphans: it acts on the [`evidence`](super::evidence) verdicts
//! (reap, quarantine, keep), kills stray browsers whose dir is gone, and reports the state
//! it could not parse.

use std::collections::HashMap;
use std::time::Instant;

use super::evidence::{self, DirFacts, Evidence, Verdict};
use super::{QUARANTINE_CONFIRM, Reconciled, Supervisor};
use crate::orchestrator::ingress::UnreadableRecord;
use crate::worker::quarantine::{self, Unreadable};

impl Supervisor {
    /// Judges every session dir of the host and acts on the verdict.
    pub(super) async fn judge_dirs(&mut self, ev: &Evidence, done: &mut Reconciled) {
        let mut suspects = HashMap::new();
        for dir in self.host.session_dirs() {
            let id = dir.id;
            let facts = DirFacts {
                name: &id,
                owner: dir.owner,
                busy: dir.busy,
            };
            match evidence::decide(ev, &facts) {
                Verdict::Keep => {}
                Verdict::Reap(why) => {
                    tracing::info!(session_id = %id, why, "reaping a session dir");
                    match self.host.reap(id.clone()).await {
                        Ok(()) => done.reaped += 1,
                        // Its browser cannot be killed: not retried every few seconds.
                        Err(err) if err.is_permanent() => {
                            let reason = format!("{why}, but {err}");
                            self.quarantine(&id, reason).await;
                            done.quarantined += 1;
                        }
                        Err(err) => tracing::warn!(session_id = %id, %err, "reaping failed"),
                    }
                }
                Verdict::Quarantine(reason) => {
                    let since = self.suspects.get(&id).copied().unwrap_or_else(Instant::now);
                    if since.elapsed() < QUARANTINE_CONFIRM {
                        tracing::debug!(session_id = %id, %reason, "a dir without evidence; quarantined if that still holds in a few seconds");
                        suspects.insert(id, since);
                        continue;
                    }
                    self.quarantine(&id, reason).await;
                    done.quarantined += 1;
                }
            }
        }
        // A verdict that did not hold this pass starts over.
        self.suspects = suspects;
    }

    /// Has the host stop the browser of dir `id` (only if provably its) and move the dir into
    /// its quarantine with a note saying why.
    async fn quarantine(&self, id: &str, reason: String) {
        match self.host.quarantine(id.to_string(), reason.clone()).await {
            Ok(to) => tracing::error!(
                session_id = %id,
                %to,
                %reason,
                "quarantined a session dir instead of deleting it (`bro doctor` lists it)"
            ),
            Err(err) => tracing::error!(
                session_id = %id,
                %err,
                %reason,
                "could not move a session dir into quarantine; it stays where it is"
            ),
        }
    }

    /// Logs the state that does not parse (at error, once per value and daemon) and writes
    /// it where `bro doctor` reads it.
    pub(super) fn report_unreadable(
        &mut self,
        records: &[UnreadableRecord],
        warm_error: Option<&str>,
    ) {
        let mut now: Vec<Unreadable> = records
            .iter()
            .map(|u| Unreadable::state_of("Session", &u.key, u.error.clone()))
            .collect();
        if let Some(error) = warm_error {
            now.push(Unreadable::state_of("Warm", &self.node, error));
        }
        let first = self.unreadable.is_none();
        let before = self.unreadable.take().unwrap_or_default();
        for u in now.iter().filter(|u| !before.contains(u)) {
            tracing::error!(
                what = %u.what,
                error = %u.error,
                "a Restate record does not parse: the dirs and browsers it may own are left \
                 alone (`bro doctor` lists it)"
            );
        }
        if (now != before || first)
            && let Err(err) = quarantine::write_unreadable(&self.quarantine_dir, &now)
        {
            tracing::warn!(%err, "could not write the list of unreadable records");
        }
        self.unreadable = Some(now);
    }
}
