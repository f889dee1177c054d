//! `bro daemon [start|stop|status]`.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::{DaemonAction, DaemonArgs, DaemonCommand};
use crate::client::{self, ClientError, DaemonClient};
use crate::config;
use crate::daemon::{self, DaemonOptions, lifecycle};
use crate::output;
use crate::paths::Paths;
use crate::protocol::steel::DEFAULT_TIMEOUT_MS;
use crate::worker::process;

/// Runs `bro daemon ...`.
pub async fn run(paths: Paths, cmd: DaemonCommand) -> Result<()> {
    match cmd.action {
        None => {
            let opts = options(&paths, cmd.args)?;
            daemon::run(paths, opts).await
        }
        Some(DaemonAction::Start(args)) => start(&paths, &args).await,
        Some(DaemonAction::Stop { keep_sessions }) => stop(&paths, keep_sessions).await,
        Some(DaemonAction::Status { json }) => status(&paths, json).await,
        Some(DaemonAction::Logs { follow, lines }) => super::logs::run(&paths, lines, follow).await,
    }
}

/// The daemon's options: each from its flag or `BRO_*` variable, else `config.toml`, else the
/// built-in default.
pub(crate) fn options(paths: &Paths, args: DaemonArgs) -> Result<DaemonOptions> {
    let file = config::Config::load(&config::path(&paths.config_dir))?;
    Ok(DaemonOptions {
        port: args.port.or(file.port).unwrap_or(config::DEFAULT_PORT),
        bind: args
            .bind
            .or(file.bind)
            .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        max_sessions: args
            .max_sessions
            .or(file.max_sessions)
            .unwrap_or(config::DEFAULT_MAX_SESSIONS),
        warm: args.warm.or(file.warm).unwrap_or(0),
        max_queue: args
            .max_queue
            .or(file.max_queue)
            .unwrap_or(config::DEFAULT_MAX_QUEUE),
        queue_timeout_ms: args
            .queue_timeout
            .or(file.queue_timeout_ms())
            .unwrap_or(config::DEFAULT_QUEUE_TIMEOUT_MS),
        default_timeout_ms: args
            .default_timeout
            .or(file.default_timeout_ms())
            .unwrap_or(DEFAULT_TIMEOUT_MS),
        retention_ms: args
            .retention
            .or(file.retention_ms())
            .unwrap_or(config::DEFAULT_RETENTION_MS),
        files_quota: args
            .files_quota
            .or(file.files_quota())
            .unwrap_or(config::DEFAULT_FILES_QUOTA),
        node: args
            .node
            .or(file.node)
            .unwrap_or_else(|| config::DEFAULT_NODE.to_string()),
        chromium: args.chromium.or(file.chromium),
        chromium_flags: file.chromium_flags,
        restate_server: args.restate_server.or(file.restate_server),
        restate_admin_url: args.restate_admin_url,
        restate_ingress_url: args.restate_ingress_url,
        api_key: args.api_key.or(file.api_key),
    })
}

/// The flags that give a background daemon the options given here; what is not given, it
/// resolves itself from its environment and `config.toml`. The API key goes by environment,
/// not on a command line every user can read.
fn to_args(a: &DaemonArgs) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            out.push(format!("--{name}={v}"));
        }
    };
    push("port", a.port.map(|p| p.to_string()));
    push("bind", a.bind.map(|b| b.to_string()));
    push("max-sessions", a.max_sessions.map(|m| m.to_string()));
    push("max-queue", a.max_queue.map(|m| m.to_string()));
    push("warm", a.warm.map(|w| w.to_string()));
    push("queue-timeout", a.queue_timeout.map(|t| format!("{t}ms")));
    push(
        "default-timeout",
        a.default_timeout.map(|t| format!("{t}ms")),
    );
    push("retention", a.retention.map(|t| format!("{t}ms")));
    push("files-quota", a.files_quota.map(|b| b.to_string()));
    push("node", a.node.clone());
    push(
        "chromium",
        a.chromium.as_ref().map(|p| p.display().to_string()),
    );
    push(
        "restate-server",
        a.restate_server.as_ref().map(|p| p.display().to_string()),
    );
    push("restate-admin-url", a.restate_admin_url.clone());
    push("restate-ingress-url", a.restate_ingress_url.clone());
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
    let _guard = client::start_lock(paths)?;
    output::progress("starting the bro daemon");
    let status = client::start_daemon(paths, &to_args(args), args.api_key.as_deref()).await?;
    output::daemon_started(&status);
    Ok(())
}

/// How long `bro daemon stop` waits for the daemon to answer on its socket.
const STOP_ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it waits for the daemon to exit. The daemon bounds its own shutdown at about
/// 30 s: releases through Restate, then the browsers left directly, then restate-server.
const STOP_WAIT: Duration = Duration::from_secs(60);

async fn stop(paths: &Paths, keep_sessions: bool) -> Result<()> {
    let client = DaemonClient::new(paths.socket());
    let wedged = |what: &str| {
        let pid = lifecycle::read_info(paths).map_or("?".to_string(), |i| i.pid.to_string());
        anyhow::anyhow!(
            "the daemon (pid {pid}) did not answer {what} within {}s on {}; `kill {pid}` stops \
             it (releasing its sessions), or `kill -KILL {pid}` if it does not exit; the next \
             `bro daemon start` takes over or cleans up what it left",
            STOP_ASK_TIMEOUT.as_secs(),
            paths.socket().display()
        )
    };
    let status = match tokio::time::timeout(STOP_ASK_TIMEOUT, client.status()).await {
        Ok(Ok(st)) => st,
        Ok(Err(ClientError::NotRunning(_))) => {
            output::line("no bro daemon is running");
            return Ok(());
        }
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(wedged("a status request")),
    };
    let start = process::start_time(status.pid);
    match tokio::time::timeout(STOP_ASK_TIMEOUT, client.shutdown(keep_sessions)).await {
        Ok(answer) => {
            answer?;
        }
        Err(_) => return Err(wedged("the stop request")),
    }
    let gone = process::wait_until(STOP_WAIT, || {
        start.is_none_or(|s| !process::is_alive(status.pid, s))
    })
    .await;
    if !gone {
        bail!(
            "the daemon (pid {pid}) is still running {}s after the stop request; `kill -KILL \
             {pid}` ends it; the next `bro daemon start` takes over or cleans up what it \
             left",
            STOP_WAIT.as_secs(),
            pid = status.pid
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
