//! `bro daemon [start|stop|status]`.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::{DaemonAction, DaemonArgs, DaemonCommand};
use crate::client::{self, ClientError, DaemonClient};
use crate::config;
use crate::daemon::{self, lifecycle};
use crate::output;
use crate::paths::Paths;
use crate::settings::Settings;
use crate::telemetry;
use crate::worker::process;

/// Runs `bro daemon ...`; the daemon itself logs at `level` (unless `RUST_LOG` says
/// otherwise) and sets up its logging here, once its settings say whether to export traces.
pub async fn run(paths: Paths, cmd: DaemonCommand, level: &str) -> Result<()> {
    match cmd.action {
        None => {
            let settings = if cmd.settings_stdin {
                settings_from_stdin().await?
            } else {
                settings(&paths, cmd.args)?
            };
            let export =
                telemetry::init_daemon(level, settings.otlp_endpoint.as_deref(), &settings.node)
                    .map_err(anyhow::Error::msg)?;
            let result = daemon::run(paths, settings).await;
            if let Some(export) = export {
                // Blocking, bounded: the last spans (the shutdown's among them) go out.
                let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
            }
            result
        }
        Some(DaemonAction::Start(args)) => start(&paths, *args).await,
        Some(DaemonAction::Stop { keep_sessions }) => stop(&paths, keep_sessions).await,
        Some(DaemonAction::Status { json }) => status(&paths, json).await,
        Some(DaemonAction::Logs { follow, lines }) => super::logs::run(&paths, lines, follow).await,
    }
}

/// The daemon's settings: each from its flag or `BRO_*` variable (in `args`), else
/// `config.toml`, else the built-in default. `bro daemon`, `bro daemon start` and
/// `bro doctor` all resolve through here.
pub(crate) fn settings(paths: &Paths, args: DaemonArgs) -> Result<Settings> {
    let file = config::Config::load(&config::path(&paths.config_dir))?;
    Settings::merge(args.into(), file).map_err(anyhow::Error::msg)
}

/// Most bytes of settings a spawned daemon reads on its stdin (they take about 1 KiB).
const MAX_SETTINGS_BYTES: u64 = 1 << 20;

/// The settings `bro daemon start` wrote on this daemon's stdin, read once.
async fn settings_from_stdin() -> Result<Settings> {
    use tokio::io::AsyncReadExt;
    let mut json = Vec::new();
    tokio::io::stdin()
        .take(MAX_SETTINGS_BYTES)
        .read_to_end(&mut json)
        .await
        .context("reading the settings on stdin")?;
    serde_json::from_slice(&json).context("reading the settings on stdin")
}

async fn start(paths: &Paths, args: DaemonArgs) -> Result<()> {
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
    let settings = settings(paths, args)?;
    let _guard = client::start_lock(paths)?;
    output::progress("starting the bro daemon");
    let status = client::start_daemon(paths, Some(&settings)).await?;
    output::daemon_started(&status);
    Ok(())
}

/// How long `bro daemon stop` waits for the daemon to answer on its socket.
const STOP_ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it waits for the daemon to exit. The daemon bounds its own shutdown at about
/// 50 s: releases through Restate, then the browsers left directly, then restate-server.
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
    let gone = crate::wait::wait_for(STOP_WAIT, process::EXIT_POLL, || {
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
