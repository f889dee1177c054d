//! The supervisor's hands for orphans: it acts on the [`evidence`](super::evidence) verdicts
//! (reap, quarantine, keep), kills stray browsers whose dir is gone, and reports the state
//! it could not parse.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::evidence::{self, DirFacts, Evidence, Verdict};
use super::quarantine::{self, Unreadable};
use super::{QUARANTINE_CONFIRM, REAP_GRACE, Reconciled, Supervisor, younger_than};
use crate::daemon::ingress::UnreadableRecord;
use crate::worker::{is_session_id, process};

impl Supervisor {
    /// Judges every dir under the sessions dir and acts on the verdict.
    pub(super) async fn judge_dirs(&mut self, ev: &Evidence, done: &mut Reconciled) {
        let mut suspects = HashMap::new();
        for (id, dir) in self.host.session_dirs() {
            // Only `<uuid>` dirs (not files, not symlinks) are bro's; the rest is not touched.
            let real_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
            if !is_session_id(&id) || !real_dir {
                tracing::debug!(dir = %dir.display(), "not a session dir of bro's; left alone");
                continue;
            }
            let facts = DirFacts {
                name: &id,
                owner: self.host.dir_owner(&dir),
                busy: self.host.is_launching(&id) || younger_than(&dir, REAP_GRACE),
            };
            match evidence::decide(ev, &facts) {
                Verdict::Keep => {}
                Verdict::Reap(why) => {
                    tracing::info!(session_id = %id, why, "reaping a session dir");
                    match self.host.reap_dir(&dir).await {
                        Ok(()) => done.reaped += 1,
                        // Its browser cannot be killed: not retried every few seconds.
                        Err(err) if err.is_permanent() => {
                            let reason = format!("{why}, but {err}");
                            self.quarantine(&id, &dir, reason).await;
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
                    self.quarantine(&id, &dir, reason).await;
                    done.quarantined += 1;
                }
            }
        }
        // A verdict that did not hold this pass starts over.
        self.suspects = suspects;
    }

    /// Stops the browser of `dir` (only if provably its) and moves the dir into the
    /// quarantine dir with a note saying why.
    async fn quarantine(&self, id: &str, dir: &Path, mut reason: String) {
        if let Err(err) = self.host.stop_orphan(dir).await {
            reason = format!("{reason}; its browser could not be stopped: {err}");
        }
        match quarantine::move_aside(dir, &self.quarantine_dir, &reason) {
            Ok(to) => tracing::error!(
                session_id = %id,
                from = %dir.display(),
                to = %to.display(),
                %reason,
                "quarantined a session dir instead of deleting it (`bro doctor` lists it)"
            ),
            Err(err) => tracing::error!(
                session_id = %id,
                dir = %dir.display(),
                %err,
                %reason,
                "could not move a session dir into quarantine; it stays where it is"
            ),
        }
    }

    /// Kills Chromium processes whose profile is under the sessions dir when their dir is
    /// gone and no open session or the warm pool names it (a dir deleted or quarantined
    /// under a browser that outlived it). A browser whose dir exists is judged with its dir.
    pub(super) fn kill_stray_browsers(&self, ev: &Evidence) -> usize {
        let sessions = self.host.sessions_dir();
        let prefix = format!("--user-data-dir={}/", sessions.display());
        let mut killed = 0;
        for (pid, arg) in process::with_arg_prefix(&prefix) {
            let id = arg[prefix.len()..].split('/').next().unwrap_or_default();
            if ev.owns(id)
                || ev.unreadable.contains(id)
                || self.host.is_launching(id)
                || sessions.join(id).exists()
            {
                continue;
            }
            let Some(st) = process::stat(pid) else {
                continue;
            };
            // Its command line names a profile under the sessions dir, so it is one of bro's
            // browsers: its group goes with it when it leads one (as bro starts browsers),
            // otherwise it goes alone.
            let sent = if st.pgrp == pid {
                process::try_signal_group(pid, Signal::SIGKILL)
            } else {
                process::try_signal(pid, Signal::SIGKILL)
            };
            match sent {
                Ok(()) => {
                    tracing::info!(pid, session_id = %id, "killed a browser whose dir is gone");
                    killed += 1;
                }
                Err(err) => {
                    tracing::warn!(pid, session_id = %id, %err, "cannot kill a browser whose dir is gone")
                }
            }
        }
        killed
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
            .map(|u| Unreadable {
                what: format!("Session {}", u.key),
                error: u.error.clone(),
            })
            .collect();
        if let Some(error) = warm_error {
            now.push(Unreadable {
                what: format!("Warm {}", self.node),
                error: error.to_string(),
            });
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
