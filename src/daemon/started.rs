//! What a start has brought up so far ([`Started`]), so that a start failing at any phase
//! stops what it started, and the shutdown stops the rest. Owns the reap budget.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::restate;
use crate::paths::Paths;
use crate::worker::LocalWorkerHost;

/// How long killing the browsers left in the sessions dir may take.
const REAP_BUDGET: Duration = Duration::from_secs(6);

/// How long a stop (or a failed start) waits for the launches under way to end: a kill
/// (`KILL_WAIT`, 5 s) and the dir's removal, with room to spare.
const SETTLE_BUDGET: Duration = Duration::from_secs(8);

/// How long a stop (or a failed start) waits for the sessions' cgroups to go, so bro's
/// parent cgroups can go after them.
pub(super) const PARENTS_WAIT: Duration = Duration::from_secs(3);

/// What a start has brought up so far, undone when a later step fails.
pub(super) struct Started {
    pub(super) restate: Option<restate::Supervised>,
    pub(super) host: Option<Arc<LocalWorkerHost>>,
    /// Handed to the services as [`crate::orchestrator::Deps::stopping`].
    pub(super) stopping: CancellationToken,
    /// Stops the servers (API, socket, SDK endpoint).
    pub(super) servers: CancellationToken,
    /// Stops the background tasks (supervisor, download watcher, sweep).
    pub(super) background: CancellationToken,
    /// The session dirs there before this start (a previous daemon's kept sessions): a failed
    /// start leaves them alone.
    pub(super) before: HashSet<String>,
}

/// What the daemon reads of the supervised restate-server that [`Started`] holds.
pub(super) struct RestateHandle {
    pub(super) pid: Arc<AtomicU32>,
    pub(super) restarts: Arc<AtomicU32>,
}

impl Started {
    pub(super) fn new(paths: &Paths) -> Self {
        let before = std::fs::read_dir(paths.sessions_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        Started {
            restate: None,
            host: None,
            stopping: CancellationToken::new(),
            servers: CancellationToken::new(),
            background: CancellationToken::new(),
            before,
        }
    }

    /// Keeps the supervised restate-server, so a failed start stops it.
    pub(super) fn hold(&mut self, sup: Option<restate::Supervised>) -> Option<RestateHandle> {
        let handle = sup.as_ref().map(|s| RestateHandle {
            pid: Arc::clone(&s.pid),
            restarts: Arc::clone(&s.restarts),
        });
        self.restate = sup;
        handle
    }

    pub(super) async fn stop_restate(&mut self) {
        if let Some(sup) = self.restate.take() {
            sup.stop().await;
        }
    }

    /// Kills the browsers under the sessions dir (all of them, or only those this start
    /// launched), each directly by the pid its dir records (and only when that pid is still
    /// the dir's browser). The dirs stay: the next start's reconciliation removes or
    /// quarantines each as its record says.
    pub(super) async fn stop_browsers(&self, all: bool) -> usize {
        let Some(host) = &self.host else {
            return 0;
        };
        let dirs: Vec<_> = host
            .dirs()
            .into_iter()
            .filter(|(name, _)| all || !self.before.contains(name))
            .collect();
        let stops = dirs.iter().map(|(name, dir)| async move {
            if let Err(err) = host.stop_orphan(dir).await {
                tracing::error!(session = %name, %err, "stopping a browser failed");
            }
        });
        if tokio::time::timeout(REAP_BUDGET, futures_util::future::join_all(stops))
            .await
            .is_err()
        {
            tracing::error!("stopping the browsers left took longer than {REAP_BUDGET:?}");
        }
        dirs.len()
    }

    /// After a failed start: launches under way give up, restate-server stops, and the
    /// browsers this start launched are stopped.
    pub(super) async fn undo(&mut self) {
        self.stopping.cancel();
        self.servers.cancel();
        self.background.cancel();
        self.settle_launches().await;
        self.stop_restate().await;
        let stopped = self.stop_browsers(false).await;
        // Its browsers' cgroups, then bro's parents, once those browsers have left them.
        self.remove_cgroup_parents(PARENTS_WAIT).await;
        tracing::info!(
            browser_dirs = stopped,
            "the start failed; stopped what it had started"
        );
    }

    /// Waits (up to [`SETTLE_BUDGET`]) for the launches under way, told to stop, to end
    /// through their own error path: each kills its browser and removes its dir, which the
    /// browsers' stop after this would otherwise find half made.
    pub(super) async fn settle_launches(&self) {
        if let Some(host) = &self.host
            && !host.settle_launches(SETTLE_BUDGET).await
        {
            tracing::warn!(
                "launches still under way after {SETTLE_BUDGET:?}; stopping their browsers"
            );
        }
    }

    /// Removes bro's parent cgroups once empty, waiting up to `wait` for the sessions'
    /// cgroups (removed in the background as their killed processes leave) to go first.
    pub(super) async fn remove_cgroup_parents(&self, wait: Duration) {
        let Some(host) = &self.host else {
            return;
        };
        let limits = host.limits();
        let _ = crate::wait::wait_until(wait, Duration::from_millis(50), || async {
            if limits.detected().remove_parents() {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .await;
    }
}
