//! The worker supervisor: reports browsers that die, re-adopts or fails the sessions state
//! says are live after a restart, and reaps browsers and dirs no live session owns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::daemon::ingress::{Ingress, IngressError};
use crate::protocol::session::{SessionStatus, WorkerInfo};
use crate::worker::{LocalWorkerHost, WorkerExit, process};

/// How often the watched browsers' pids are checked.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How often state and the sessions dir are reconciled.
const RECONCILE_EVERY: Duration = Duration::from_secs(15);
/// A session dir younger than this is never reaped: its session's state may not be visible
/// to introspection yet.
const REAP_GRACE: Duration = Duration::from_secs(60);

/// Supervises the browsers of one node.
pub struct Supervisor {
    host: Arc<LocalWorkerHost>,
    ingress: Ingress,
    /// Live sessions whose browser is watched by pid.
    watched: HashMap<String, WorkerInfo>,
}

/// What one reconciliation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub adopted: usize,
    pub failed: usize,
    pub reaped: usize,
}

impl Supervisor {
    pub fn new(host: Arc<LocalWorkerHost>, ingress: Ingress) -> Self {
        Supervisor {
            host,
            ingress,
            watched: HashMap::new(),
        }
    }

    /// Re-adopts every session state says is live whose browser still runs (same pid and
    /// start time, CDP answering), fails the others, and reaps browsers and dirs that no
    /// open session owns.
    pub async fn reconcile(&mut self) -> Result<Reconciled, IngressError> {
        let records = self.ingress.list().await?;
        let mut done = Reconciled::default();
        let mut owned: HashMap<&str, SessionStatus> = HashMap::new();
        for rec in &records {
            if !rec.status.is_final() {
                owned.insert(&rec.id, rec.status);
            }
            let (SessionStatus::Live, Some(worker)) = (rec.status, &rec.worker) else {
                self.watched.remove(&rec.id);
                continue;
            };
            if self.watched.contains_key(&rec.id) {
                continue;
            }
            if self.host.probe(worker).await {
                self.watched.insert(rec.id.clone(), worker.clone());
                done.adopted += 1;
            } else {
                let reason = "browser gone after a daemon restart".to_string();
                self.ingress
                    .worker_exited(&rec.id, worker.pid, reason, false)
                    .await?;
                done.failed += 1;
            }
        }
        for (id, dir) in self.host.session_dirs() {
            if owned.contains_key(id.as_str())
                || self.host.is_launching(&id)
                || younger_than(&dir, REAP_GRACE)
            {
                continue;
            }
            tracing::info!(session_id = %id, "reaping a session dir no open session owns");
            if let Err(err) = self.host.reap_dir(&dir).await {
                tracing::warn!(session_id = %id, %err, "reaping failed");
            }
            done.reaped += 1;
        }
        done.reaped += self.kill_stray_browsers(&owned);
        Ok(done)
    }

    /// Kills Chromium processes whose profile is under the sessions dir but whose session is
    /// not open (a browser whose dir is already gone, or that was started but never recorded).
    fn kill_stray_browsers(&self, owned: &HashMap<&str, SessionStatus>) -> usize {
        let prefix = format!("--user-data-dir={}/", self.host.sessions_dir().display());
        let mut killed = 0;
        for (pid, arg) in process::with_arg_prefix(&prefix) {
            let id = arg[prefix.len()..].split('/').next().unwrap_or_default();
            if owned.contains_key(id) || self.host.is_launching(id) {
                continue;
            }
            let Some(st) = process::stat(pid) else {
                continue;
            };
            if younger_than(&self.host.session_dir(id), REAP_GRACE) {
                continue;
            }
            tracing::info!(pid, session_id = %id, "killing a browser no open session owns");
            process::signal_group(st.pgrp, Signal::SIGKILL);
            killed += 1;
        }
        killed
    }

    /// Reports watched browsers that are gone.
    async fn check_watched(&mut self) {
        let gone: Vec<(String, WorkerInfo)> = self
            .watched
            .iter()
            .filter(|(_, w)| !process::is_alive(w.pid, w.start_time))
            .map(|(id, w)| (id.clone(), w.clone()))
            .collect();
        for (id, worker) in gone {
            self.watched.remove(&id);
            self.report(WorkerExit {
                session_id: id,
                pid: worker.pid,
                reason: "browser exited".into(),
                clean: false,
            })
            .await;
        }
    }

    async fn report(&self, exit: WorkerExit) {
        tracing::warn!(session_id = %exit.session_id, pid = exit.pid, reason = %exit.reason, "browser exited");
        if let Err(err) = self
            .ingress
            .worker_exited(&exit.session_id, exit.pid, exit.reason, exit.clean)
            .await
        {
            tracing::error!(%err, "could not report a browser exit");
        }
    }

    /// Runs until `stop`: reports exits of child browsers as they happen, checks watched
    /// pids every second and reconciles every 15 seconds.
    pub async fn run(
        mut self,
        mut exits: mpsc::UnboundedReceiver<WorkerExit>,
        stop: CancellationToken,
    ) {
        let mut watch = tokio::time::interval(WATCH_EVERY);
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        reconcile.reset();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(exit) = exits.recv() => {
                    self.watched.remove(&exit.session_id);
                    self.report(exit).await;
                }
                _ = watch.tick() => self.check_watched().await,
                _ = reconcile.tick() => {
                    if let Err(err) = self.reconcile().await {
                        tracing::warn!(%err, "reconciliation failed");
                    }
                }
            }
        }
    }
}

fn younger_than(path: &std::path::Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|elapsed| elapsed < age)
}
