//! The ordered shutdown, undoing the phases of the start in reverse: the sessions are
//! released through Restate (unless kept) while everything still serves, then the API, the
//! background tasks and the SDK endpoint stop, then the browsers left, then restate-server,
//! then the published files. Every step has its budget, so a stop ends whatever state the
//! sessions are in.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::started::{PARENTS_WAIT, Started};
use super::startup::ApiPhase;
use crate::orchestrator::ingress::Ingress;
use crate::paths::Paths;

/// How long a stopping daemon spends releasing its sessions through Restate before it stops
/// their browsers itself.
///
/// It covers a launch's [`STOPPING_GRACE`](crate::orchestrator::session::STOPPING_GRACE)
/// and the stops after it.
const RELEASE_BUDGET: Duration = Duration::from_secs(15);
/// How long the servers and background tasks get to finish once told to stop.
const TASKS_BUDGET: Duration = Duration::from_secs(3);

/// Stops what the start brought up, in reverse order. `background` holds the tasks of
/// recovery and the orchestrator's SDK endpoint; all are joined within one [`TASKS_BUDGET`].
pub(super) async fn shutdown(
    paths: &Paths,
    node: &str,
    ingress: &Ingress,
    api: ApiPhase,
    background: Vec<JoinHandle<()>>,
    started: &mut Started,
) {
    // Bounded whatever state the sessions are in: the releases through Restate get
    // RELEASE_BUDGET, then every browser left is stopped directly by its pid.
    let keep = api.state.control.keep_sessions.load(Ordering::SeqCst);
    if !keep {
        // Launches under way end now through their own error path (their sessions end
        // `failed`, the warm refills are forgotten); none starts.
        started.stopping.cancel();
        let released = tokio::time::timeout(RELEASE_BUDGET, async {
            // Side by side: a release that takes long does not keep the pool from draining.
            tokio::join!(
                release_open_sessions(ingress, node),
                stop_warm_pool(ingress, node)
            );
        })
        .await;
        if released.is_err() {
            tracing::warn!(
                "releasing the sessions through Restate took longer than {RELEASE_BUDGET:?}; \
                 stopping their browsers directly"
            );
        }
    }
    started.servers.cancel();
    started.background.cancel();
    let mut tasks = api.tasks;
    tasks.extend(background);
    join_within(tasks, TASKS_BUDGET).await;
    if !keep {
        started.settle_launches().await;
        let left = started.stop_browsers(true).await;
        if left > 0 {
            tracing::warn!(
                browser_dirs = left,
                "stopped the browsers Restate had not released"
            );
        }
    }
    // bro's parent cgroups go with the last session (kept sessions keep them); the
    // sessions' cgroups are removed in the background as their processes leave.
    let wait = if keep { Duration::ZERO } else { PARENTS_WAIT };
    started.remove_cgroup_parents(wait).await;
    started.stop_restate().await;
    let _ = std::fs::remove_file(paths.socket());
    let _ = std::fs::remove_file(paths.daemon_info());
    tracing::info!("bro daemon stopped");
}

/// Waits for `tasks` up to `budget`, then aborts those still running.
async fn join_within(tasks: Vec<JoinHandle<()>>, budget: Duration) {
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    if tokio::time::timeout(budget, futures_util::future::join_all(tasks))
        .await
        .is_err()
    {
        tracing::warn!("servers still busy after {budget:?}; closing them");
        for a in aborts {
            a.abort();
        }
    }
}

/// Releases every open session of this node, so a stopped daemon leaves no browser behind.
/// (In a cluster, the other nodes' sessions are theirs: they stay live.) Lists again until
/// no open session is listed: one whose create landed after a listing (a launch that ended in
/// its stop's grace, a record the listing did not show yet) is released too. The caller
/// bounds it.
async fn release_open_sessions(ingress: &Ingress, node: &str) {
    loop {
        let open = match ingress.list().await {
            Ok(records) => records
                .into_iter()
                .filter(|r| !r.status.is_final() && r.node == node)
                .collect::<Vec<_>>(),
            Err(err) => {
                tracing::error!(%err, "cannot list sessions to release them");
                return;
            }
        };
        if open.is_empty() {
            return;
        }
        // `releasing` ones too: a release waits behind one under way and ends one whose
        // invocation was lost (idempotent either way).
        let releases = open.iter().map(|r| ingress.release(&r.id));
        for result in futures_util::future::join_all(releases).await {
            if let Err(err) = result {
                tracing::error!(%err, "releasing a session at shutdown failed");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Stops the warm browsers, once the launches under way have landed in the pool (up to 12 s),
/// so none is left running without a record.
async fn stop_warm_pool(ingress: &Ingress, node: &str) {
    // Within RELEASE_BUDGET, leaving the drain time to run.
    let (limit, every) = (
        RELEASE_BUDGET.saturating_sub(Duration::from_secs(3)),
        Duration::from_millis(100),
    );
    let landed = crate::wait::wait_until(limit, every, || async move {
        match ingress.warm(node).await {
            Ok(w) if w.filling.is_empty() => std::ops::ControlFlow::Break(Ok(())),
            Ok(_) => std::ops::ControlFlow::Continue(()),
            Err(err) => std::ops::ControlFlow::Break(Err(err)),
        }
    })
    .await;
    if let std::ops::ControlFlow::Break(Err(err)) = landed {
        tracing::error!(%err, "cannot read the warm pool to stop it");
        return;
    }
    match ingress.warm_drain(node).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(stopped = n, "stopped the warm browsers"),
        Err(err) => tracing::error!(%err, "stopping the warm browsers failed"),
    }
}
