//! The worker supervisor: reports browsers that die or stop answering CDP, releases sessions
//! idle past their `inactivityTimeout`, re-adopts or fails the sessions state says are live
//! after a restart, and reaps browsers and dirs no live session owns.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cdp_proxy::Sockets;
use crate::daemon::ingress::{Ingress, IngressError};
use crate::protocol::session::{SessionOptions, SessionStatus, WorkerInfo};
use crate::worker::{LocalWorkerHost, WorkerEvent, WorkerExit, chromium, process};

/// Why a watched session ends.
enum Ending {
    Exited(String),
    Idle,
}

/// How often the watched browsers are checked (pid, CDP probe, idleness).
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// A CDP probe slower than this is a miss.
const PROBE_TIMEOUT: Duration = Duration::from_millis(600);
/// Misses in a row after which a browser counts as hung: detected within ~2 s.
const MAX_MISSES: u32 = 3;
/// How often state and the sessions dir are reconciled.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// A session dir younger than this is never reaped: its session's state may not be visible
/// to introspection yet. (A launch under way in this daemon is protected on its own.)
const REAP_GRACE: Duration = Duration::from_secs(10);

/// Supervises the browsers of one node.
pub struct Supervisor {
    host: Arc<LocalWorkerHost>,
    /// This daemon's node name: the key of its `Warm` object.
    node: String,
    ingress: Ingress,
    sockets: Arc<Sockets>,
    http: reqwest::Client,
    /// Live sessions whose browser is watched.
    watched: HashMap<String, Watched>,
}

/// One watched browser.
#[derive(Debug, Clone)]
struct Watched {
    worker: WorkerInfo,
    /// Release after this long without CDP traffic; 0 = never.
    inactivity_ms: u64,
    /// When watching began: the idle clock starts here until traffic arrives.
    since_ms: u64,
    /// CDP probes missed in a row.
    misses: u32,
}

impl Watched {
    fn new(worker: WorkerInfo, options: &SessionOptions) -> Self {
        Watched {
            worker,
            inactivity_ms: options.inactivity_timeout_ms,
            since_ms: crate::now_ms(),
            misses: 0,
        }
    }
}

/// What one reconciliation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub adopted: usize,
    pub failed: usize,
    pub reaped: usize,
}

impl Supervisor {
    pub fn new(
        host: Arc<LocalWorkerHost>,
        node: String,
        ingress: Ingress,
        sockets: Arc<Sockets>,
    ) -> Self {
        let http = reqwest::Client::new();
        Supervisor {
            host,
            node,
            ingress,
            sockets,
            http,
            watched: HashMap::new(),
        }
    }

    /// Re-adopts every session state says is live whose browser still runs (same pid and
    /// start time, CDP answering), fails the others, and reaps browsers and dirs that no
    /// open session owns.
    pub async fn reconcile(&mut self) -> Result<Reconciled, IngressError> {
        let records = self.ingress.list().await?;
        let warm = self.ingress.warm(&self.node).await?;
        let mut done = Reconciled::default();
        // The names of the dirs under the sessions dir that are spoken for: open sessions'
        // (a session that took a warm browser lives in that browser's dir), ready warm
        // browsers and warm launches under way.
        let mut owned: HashSet<String> = HashSet::new();
        for entry in &warm.ready {
            owned.insert(entry.id.clone());
            if !process::is_alive(entry.worker.pid, entry.worker.start_time) {
                tracing::warn!(warm_id = %entry.id, "a ready warm browser is gone");
                self.ingress.warm_discard(&self.node, &entry.id).await?;
            }
        }
        owned.extend(warm.filling.iter().cloned());
        for rec in &records {
            if !rec.status.is_final() {
                owned.insert(rec.id.clone());
                if let Some(name) = rec.worker.as_ref().and_then(|w| w.dir.file_name()) {
                    owned.insert(name.to_string_lossy().into_owned());
                }
            }
            let (SessionStatus::Live, Some(worker)) = (rec.status, &rec.worker) else {
                self.watched.remove(&rec.id);
                continue;
            };
            if self.watched.contains_key(&rec.id) {
                continue;
            }
            let adopted = match self.host.probe(worker).await {
                true => self
                    .host
                    .resume(worker, &rec.options)
                    .await
                    .map_err(|e| format!("browser adopted, but {e}")),
                false => Err("browser gone after a daemon restart".to_string()),
            };
            if let Err(reason) = adopted {
                self.ingress
                    .worker_exited(&rec.id, worker.pid, reason, false)
                    .await?;
                done.failed += 1;
            } else {
                self.watched
                    .insert(rec.id.clone(), Watched::new(worker.clone(), &rec.options));
                done.adopted += 1;
            }
        }
        for (id, dir) in self.host.session_dirs() {
            if owned.contains(id.as_str())
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
        done.reaped += chromium::sweep_tmp_dirs(&chromium::tmp_base(), REAP_GRACE);
        Ok(done)
    }

    /// Kills Chromium processes whose profile is under the sessions dir but whose session is
    /// not open (a browser whose dir is already gone, or that was started but never recorded).
    fn kill_stray_browsers(&self, owned: &HashSet<String>) -> usize {
        let prefix = format!("--user-data-dir={}/", self.host.sessions_dir().display());
        let mut killed = 0;
        for (pid, arg) in process::with_arg_prefix(&prefix) {
            let id = arg[prefix.len()..].split('/').next().unwrap_or_default();
            if owned.contains(id) || self.host.is_launching(id) {
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

    /// Checks every watched browser: gone, hung (three missed CDP probes) or idle past its
    /// `inactivityTimeout`.
    async fn check_watched(&mut self) {
        let probes = self.watched.iter().map(|(id, w)| {
            let url = format!("http://127.0.0.1:{}/json/version", w.worker.port);
            let req = self.http.get(url).timeout(PROBE_TIMEOUT).send();
            async move {
                (
                    id.clone(),
                    matches!(req.await, Ok(r) if r.status().is_success()),
                )
            }
        });
        let answers = futures_util::future::join_all(probes).await;
        let now = crate::now_ms();
        let mut ended = Vec::new();
        for (id, answered) in answers {
            let Some(w) = self.watched.get_mut(&id) else {
                continue;
            };
            w.misses = if answered { 0 } else { w.misses + 1 };
            let idle_since = self
                .sockets
                .last_activity(&id)
                .unwrap_or(w.since_ms)
                .max(w.since_ms);
            if self.host.is_stopping(w.worker.pid) {
                continue; // its session is ending it
            }
            if !process::is_alive(w.worker.pid, w.worker.start_time) {
                ended.push((id, Ending::Exited("browser exited".into())));
            } else if w.misses >= MAX_MISSES {
                ended.push((
                    id,
                    Ending::Exited(format!(
                        "browser stopped answering CDP ({MAX_MISSES} probes missed)"
                    )),
                ));
            } else if w.inactivity_ms > 0 && now.saturating_sub(idle_since) > w.inactivity_ms {
                ended.push((id, Ending::Idle));
            }
        }
        for (id, ending) in ended {
            let Some(w) = self.watched.remove(&id) else {
                continue;
            };
            match ending {
                Ending::Exited(reason) => {
                    let exit = WorkerExit {
                        session_id: id,
                        pid: w.worker.pid,
                        reason,
                        clean: false,
                    };
                    self.report(exit).await;
                }
                Ending::Idle => {
                    tracing::info!(session_id = %id, "no CDP traffic for {} ms; releasing", w.inactivity_ms);
                    if let Err(err) = self.ingress.idle(&id).await {
                        tracing::error!(session_id = %id, %err, "could not release an idle session");
                    }
                }
            }
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

    /// Runs until `stop`: watches browsers as they launch, reports exits as they happen,
    /// checks the watched every 500 ms and reconciles every 5 seconds.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<WorkerEvent>,
        stop: CancellationToken,
    ) {
        let mut watch = tokio::time::interval(WATCH_EVERY);
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        reconcile.reset();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(event) = events.recv() => match event {
                    WorkerEvent::Launched { session_id, worker, options } => {
                        self.watched.insert(session_id, Watched::new(worker, &options));
                    }
                    WorkerEvent::Stopped { pid } => {
                        self.watched.retain(|_, w| w.worker.pid != pid);
                    }
                    WorkerEvent::Exited(mut exit) => {
                        // A browser taken from the warm pool runs in a dir named after its
                        // warm id: the session it serves is the one watching its pid.
                        let owner = self
                            .watched
                            .iter()
                            .find(|(_, w)| w.worker.pid == exit.pid)
                            .map(|(id, _)| id.clone());
                        if let Some(id) = owner {
                            exit.session_id = id;
                        }
                        self.watched.remove(&exit.session_id);
                        self.report(exit).await;
                    }
                },
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
