//! `bro daemon`: reads top to bottom as the startup order, then the ordered shutdown. The
//! phases live in `startup.rs`, the shutdown that undoes them in `shutdown.rs`.
//!
//! 1. take the lock of this bro home;
//! 2. preflight: refuse unsafe settings, find Chromium, bind the API port (first of all);
//! 3. Restate: start (or adopt) restate-server;
//! 4. orchestrator: serve the SDK endpoint and register it;
//! 5. recovery: reconcile state with the browsers that run, fill the warm pool, start the
//!    background tasks;
//! 6. API: serve the TCP API and the Unix socket;
//! 7. on SIGTERM or a shutdown request, the shutdown in reverse: release the sessions (unless
//!    asked to keep them), stop serving, stop the browsers left, stop restate.

pub mod cluster;
pub mod fabric_tls;
pub mod identity;
pub mod lifecycle;
pub mod memory_floor;
pub mod restate;
mod serve;
mod shutdown;
mod started;
mod startup;
pub mod supervisor;
pub mod sweep;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::paths::Paths;
use crate::settings::Settings;
use started::Started;

/// Runs the daemon until SIGTERM/SIGINT or `POST /bro/v1/shutdown`. A start that fails at any
/// step stops what it had started (restate-server, the browsers it launched) before it
/// returns the error.
pub async fn run(paths: Paths, settings: Settings) -> Result<()> {
    start(paths, settings, Stop::Signals).await
}

/// [`run`] for a daemon inside another program (the integration tests): it stops when `stop`
/// is cancelled (`POST /bro/v1/shutdown` cancels it too) and leaves the process's signals
/// alone, since a signal handler, once installed, stays for the life of the process.
pub async fn run_until(paths: Paths, settings: Settings, stop: CancellationToken) -> Result<()> {
    start(paths, settings, Stop::Token(stop)).await
}

/// What stops a daemon, besides a shutdown request.
pub(crate) enum Stop {
    /// SIGTERM or SIGINT: the `bro daemon` process.
    Signals,
    /// This token: a daemon run in-process.
    Token(CancellationToken),
}

async fn start(paths: Paths, settings: Settings, stop: Stop) -> Result<()> {
    settings.check().map_err(anyhow::Error::msg)?;
    crate::prometheus::install(&settings.node);
    paths.create_all().context("creating bro's directories")?;
    // Held until the undo of a failed start is done, so no other daemon of this home can
    // adopt the restate-server or the browsers the undo is about to stop.
    let _lock = lifecycle::lock(&paths)?;
    let mut started = Started::new(&paths);
    let result = run_inner(&paths, &settings, stop, &mut started).await;
    if result.is_err() {
        started.undo().await;
    }
    result
}

/// The phases in order, each handing on what the next and the shutdown need; then, once
/// told to stop, the shutdown undoes them in reverse.
async fn run_inner(
    paths: &Paths,
    settings: &Settings,
    stop: Stop,
    started: &mut Started,
) -> Result<()> {
    let pre = startup::preflight(settings, stop).await?;
    let stop = pre.shutdown.clone();
    // A stop asked for while starting (a cluster node may wait minutes for the others) ends
    // the start: what it started is stopped by the caller's undo.
    let phases = async {
        let restate = startup::restate(paths, settings, started).await?;
        let (orch, exits) =
            startup::orchestrator(paths, settings, pre.chromium.clone(), &restate, started).await?;
        let api_url = pre.api_url(settings)?;
        let background =
            startup::recovery(paths, settings, &restate, &orch, exits, started, &api_url).await?;
        let api = startup::api(paths, settings, pre, &restate, &orch, started)?;
        Ok::<_, anyhow::Error>((restate, orch, background, api))
    };
    let (restate, orch, mut background, api) = tokio::select! {
        phases = phases => phases?,
        () = stop.cancelled() => anyhow::bail!("asked to stop before the start finished"),
    };

    stop.cancelled().await;
    background.push(orch.sdk_task);
    shutdown::shutdown(
        paths,
        &settings.node,
        &restate.ingress,
        api,
        background,
        started,
    )
    .await;
    Ok(())
}
