//! The worker supervisor: reports browsers that die or stop answering CDP, releases sessions
//! idle past their `inactivityTimeout`, re-adopts or fails the sessions state says are live
//! after a restart, and reaps browsers and dirs whose session is provably over, or moves
//! them aside when nothing proves it ([`evidence`], [`quarantine`]).

pub mod evidence;
mod reaper;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cdp_proxy::Sockets;
use crate::host::{WorkerEvent, WorkerExit, WorkerHost};
use crate::orchestrator::ingress::{Ingress, IngressError};
use crate::protocol::session::{SessionId, SessionOptions, SessionStatus, WorkerInfo};
use crate::telemetry;
use crate::worker::limits::MEMORY_LIMIT_REASON;
use crate::worker::quarantine;

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
/// How long a CDP probe of an adopted browser may take.
const ADOPT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Supervises the browsers of one node.
pub struct Supervisor {
    host: Arc<dyn WorkerHost>,
    /// This daemon's node name: the key of its `Warm` object.
    node: String,
    ingress: Ingress,
    sockets: Arc<Sockets>,
    /// Live sessions whose browser is watched.
    watched: HashMap<SessionId, Watched>,
    /// Where the list of records that do not parse is written ([`quarantine`]).
    quarantine_dir: std::path::PathBuf,
    /// The unparsable state last reported (`None` before the first reconciliation).
    unreadable: Option<Vec<quarantine::Unreadable>>,
    /// Dirs judged for quarantine, and when first: acted on only once the verdict has held
    /// for [`QUARANTINE_CONFIRM`] over several passes, so one odd answer from Restate (an
    /// empty listing right after it restarted, say) cannot stop every live browser.
    suspects: HashMap<String, std::time::Instant>,
}

/// How long a quarantine verdict must hold, over later reconciliations, before it is acted on.
pub(crate) const QUARANTINE_CONFIRM: std::time::Duration = std::time::Duration::from_secs(12);

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
    pub quarantined: usize,
}

impl Supervisor {
    pub fn new(
        host: Arc<dyn WorkerHost>,
        node: String,
        ingress: Ingress,
        sockets: Arc<Sockets>,
        quarantine_dir: std::path::PathBuf,
    ) -> Self {
        Supervisor {
            host,
            node,
            ingress,
            sockets,
            watched: HashMap::new(),
            quarantine_dir,
            unreadable: None,
            suspects: HashMap::new(),
        }
    }

    /// Re-adopts every session state says is live whose browser still runs (same pid and
    /// start time, CDP answering), fails the others, reaps the browsers and dirs whose
    /// session is provably over and quarantines those nothing proves anything about (see
    /// [`evidence`]). A query that fails changes nothing.
    pub async fn reconcile(&mut self) -> Result<Reconciled, IngressError> {
        let listing = self.ingress.list_all().await?;
        let (warm, warm_error) = self.ingress.warm_checked(&self.node).await?;
        self.report_unreadable(&listing.unreadable, warm_error.as_deref());
        let records = &listing.records;
        let mut done = Reconciled::default();
        for entry in &warm.ready {
            if !self.host.alive(&entry.worker) {
                tracing::warn!(warm_id = %entry.id, "a ready warm browser is gone");
                self.ingress.warm_discard(&self.node, &entry.id).await?;
            }
        }
        // Another node's sessions are that node's to watch: their pids mean nothing here.
        for rec in records.iter().filter(|r| r.node == self.node) {
            let (SessionStatus::Live, Some(worker)) = (rec.status, &rec.worker) else {
                self.watched.remove(&rec.id);
                continue;
            };
            if self.watched.contains_key(&rec.id) {
                continue;
            }
            let runs = self.host.alive(worker)
                && self.host.probe(worker.clone(), ADOPT_PROBE_TIMEOUT).await;
            let adopted = match runs {
                true => self
                    .host
                    .resume(worker.clone(), rec.options.clone())
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
        let warm = warm_error.is_none().then_some(&warm);
        let ev = evidence::Evidence::new(records, &listing.unreadable, warm);
        self.judge_dirs(&ev, &mut done).await;
        // Blocking work (a /proc scan, cgroup and dir removals under a lock): off the runtime.
        let (host, kept) = (Arc::clone(&self.host), ev.kept());
        match tokio::task::spawn_blocking(move || host.sweep_strays(kept)).await {
            Ok(reaped) => done.reaped += reaped,
            Err(err) => tracing::error!(%err, "the sweep of stray browsers and dirs failed"),
        }
        Ok(done)
    }

    /// Checks every watched browser: over its memory limit, gone, hung (three missed CDP
    /// probes) or idle past its `inactivityTimeout`.
    async fn check_watched(&mut self) {
        let workers = self.watched.values().map(|w| w.worker.clone()).collect();
        let over = self.host.over_limit(workers).await;
        let probes = self.watched.iter().map(|(id, w)| {
            let probe = self.host.probe(w.worker.clone(), PROBE_TIMEOUT);
            async move { (id.clone(), probe.await) }
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
            if over.contains(&w.worker.pid) {
                ended.push((id, Ending::Exited(MEMORY_LIMIT_REASON.into())));
            } else if !self.host.alive(&w.worker) {
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
        // A browser found dead or hung may have been killed by its memory limit since the
        // check above (an OOM kill is counted before the process dies): say so.
        let dead: Vec<WorkerInfo> = ended
            .iter()
            .filter(|(_, e)| matches!(e, Ending::Exited(r) if r != MEMORY_LIMIT_REASON))
            .filter_map(|(id, _)| self.watched.get(id).map(|w| w.worker.clone()))
            .collect();
        let oom = if dead.is_empty() {
            Vec::new()
        } else {
            self.host.over_limit(dead).await
        };
        for (id, mut ending) in ended {
            let Some(w) = self.watched.remove(&id) else {
                continue;
            };
            if oom.contains(&w.worker.pid) {
                ending = Ending::Exited(MEMORY_LIMIT_REASON.into());
            }
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
                    async {
                        tracing::info!("no CDP traffic for {} ms; releasing", w.inactivity_ms);
                        if let Err(err) = self.ingress.idle(&id).await {
                            tracing::error!(%err, "could not release an idle session");
                        }
                    }
                    .instrument(telemetry::session_span(&id))
                    .await;
                }
            }
        }
    }

    async fn report(&self, exit: WorkerExit) {
        let span = telemetry::session_span(&exit.session_id);
        async {
            tracing::warn!(pid = exit.pid, reason = %exit.reason, "browser exited");
            if let Err(err) = self
                .ingress
                .worker_exited(&exit.session_id, exit.pid, exit.reason, exit.clean)
                .await
            {
                tracing::error!(%err, "could not report a browser exit");
            }
        }
        .instrument(span)
        .await
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
                        // Only the watch on this browser goes: an exit of another browser
                        // of the session (an abandoned launch's, killed by the retry) leaves
                        // the watch on the one that serves it.
                        if let Some(id) = owner {
                            self.watched.remove(&id);
                            exit.session_id = id;
                        }
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
