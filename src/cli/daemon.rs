//! `bro daemon [start|stop|status]`.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::{DaemonAction, DaemonArgs, DaemonCommand};
use crate::client::{self, ClientError, DaemonClient};
use crate::daemon::{self, DaemonOptions, lifecycle};
use crate::output;
use crate::paths::Paths;
use crate::worker::process;

/// Runs `bro daemon ...`.
pub async fn run(paths: Paths, cmd: DaemonCommand) -> Result<()> {
    match cmd.action {
        None => daemon::run(paths, options(cmd.args)).await,
        Some(DaemonAction::Start(args)) => start(&paths, &args).await,
        Some(DaemonAction::Stop { keep_sessions }) => stop(&paths, keep_sessions).await,
        Some(DaemonAction::Status { json }) => status(&paths, json).await,
    }
}

fn options(args: DaemonArgs) -> DaemonOptions {
    DaemonOptions {
        port: args.port,
        bind: args.bind,
        max_sessions: args.max_sessions,
        node: args.node,
        chromium: args.chromium,
        restate_server: args.restate_server,
        restate_admin_url: args.restate_admin_url,
        restate_ingress_url: args.restate_ingress_url,
        api_key: args.api_key,
    }
}

/// The flags that give a background daemon the same options (the API key goes by
/// environment, not on a command line every user can read).
fn to_args(a: &DaemonArgs) -> Vec<String> {
    let mut out = vec![
        format!("--port={}", a.port),
        format!("--bind={}", a.bind),
        format!("--max-sessions={}", a.max_sessions),
        format!("--node={}", a.node),
    ];
    if let Some(p) = &a.chromium {
        out.push(format!("--chromium={}", p.display()));
    }
    if let Some(p) = &a.restate_server {
        out.push(format!("--restate-server={}", p.display()));
    }
    if let Some(u) = &a.restate_admin_url {
        out.push(format!("--restate-admin-url={u}"));
    }
    if let Some(u) = &a.restate_ingress_url {
        out.push(format!("--restate-ingress-url={u}"));
    }
    out
}

async fn start(paths: &Paths, args: &DaemonArgs) -> Result<()> {
    paths.create_all().context("creating bro's directories")?;
    let existing = DaemonClient::new(paths.socket());
    if let Ok(st) = existing.status().await {
        bail!(
            "a bro daemon is already running (pid {}, api {}, socket {})",
            st.pid,
            st.api_url,
            st.socket
        );
    }
    let _guard = lifecycle::lock_blocking(&paths.start_lock())?;
    output::progress("starting the bro daemon");
    let status = client::start_daemon(paths, &to_args(args), args.api_key.as_deref()).await?;
    output::daemon_started(&status);
    Ok(())
}

async fn stop(paths: &Paths, keep_sessions: bool) -> Result<()> {
    let client = DaemonClient::new(paths.socket());
    let status = match client.status().await {
        Ok(st) => st,
        Err(ClientError::NotRunning(_)) => {
            output::line("no bro daemon is running");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let start = process::start_time(status.pid);
    client.shutdown(keep_sessions).await?;
    let gone = process::wait_until(Duration::from_secs(60), || {
        start.is_none_or(|s| !process::is_alive(status.pid, s))
    })
    .await;
    if !gone {
        bail!(
            "the daemon (pid {}) is still running 60 s after the stop request",
            status.pid
        );
    }
    output::line(&format!("bro daemon stopped (pid {})", status.pid));
    Ok(())
}

async fn status(paths: &Paths, json: bool) -> Result<()> {
    match DaemonClient::new(paths.socket()).status().await {
        Ok(st) => {
            output::daemon_status(&st, json);
            Ok(())
        }
        Err(ClientError::NotRunning(sock)) => {
            if json {
                output::json(&serde_json::json!({ "running": false, "socket": sock }));
            }
            bail!("no bro daemon is running (socket {sock}); start one with `bro daemon start`")
        }
        Err(e) => Err(e.into()),
    }
}
