//! `bro doctor`: checks what bro needs, one line each, with the command that fixes a failure.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::cli::DaemonArgs;
use crate::client::DaemonClient;
use crate::daemon::restate::{self, RESTATE_VERSION};
use crate::output;
use crate::paths::Paths;
use crate::protocol::session::SessionOptions;
use crate::worker::{LaunchSpec, LocalWorkerHost, WorkerHost, chromium};

/// Free disk below which profiles may not fit (an idle profile is ~10 MB, a busy one far more).
const MIN_FREE_BYTES: u64 = 1 << 30;

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
    /// The command or step that fixes a failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn pass(check: &'static str, detail: impl Into<String>) -> Check {
    Check {
        check,
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Runs every check; fails (exit 1) when one fails.
pub async fn run(paths: Paths, args: DaemonArgs, json: bool) -> Result<()> {
    let mut checks = Vec::new();
    let opts = match super::daemon::options(&paths, args) {
        Ok(o) => {
            let file = crate::config::path(&paths.config_dir);
            let detail = if file.exists() {
                file.display().to_string()
            } else {
                format!("no {} (built-in defaults)", file.display())
            };
            checks.push(pass("config", detail));
            Some(o)
        }
        Err(e) => {
            let file = crate::config::path(&paths.config_dir);
            checks.push(fail(
                "config",
                format!("{e:#}"),
                format!("fix or remove {}", file.display()),
            ));
            None
        }
    };
    let chromium_flag = opts.as_ref().and_then(|o| o.chromium.clone());
    checks.extend(
        check_chromium(
            &paths,
            chromium_flag.as_deref(),
            opts.as_ref().map(|o| o.chromium_flags.clone()),
        )
        .await,
    );
    let restate_flag = opts.as_ref().and_then(|o| o.restate_server.clone());
    checks.push(check_restate(&paths, restate_flag.as_deref()));
    let status = DaemonClient::new(paths.socket()).status().await.ok();
    if let Some(o) = &opts {
        checks.push(check_port(o.bind, o.port, status.as_ref()));
    }
    checks.push(check_private_dir(&paths.runtime_dir));
    checks.push(check_disk(&paths));
    checks.extend(check_daemon(status.as_ref()).await);

    let failed = checks.iter().filter(|c| !c.ok).count();
    output::doctor(&checks, json);
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}

async fn check_chromium(
    paths: &Paths,
    flag: Option<&std::path::Path>,
    flags: Option<Vec<String>>,
) -> Vec<Check> {
    let path = match chromium::find(flag) {
        Ok(p) => p,
        Err(e) => {
            return vec![fail(
                "chromium",
                e.to_string(),
                "./install.sh (or apt-get install chromium), or pass --chromium PATH",
            )];
        }
    };
    let version = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut out = vec![pass("chromium", format!("{} ({version})", path.display()))];

    // A real launch, with bro's flags, in a throwaway sessions dir.
    let scratch = paths
        .runtime_dir
        .join(format!("doctor-{}", std::process::id()));
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let host = LocalWorkerHost::new(path, flags.unwrap_or_default(), scratch.clone(), tx);
    let spec = LaunchSpec {
        session_id: "doctor".into(),
        options: SessionOptions::default(),
        context: None,
        warm: false,
    };
    let started = Instant::now();
    out.push(match host.launch(spec).await {
        Ok(worker) => {
            let ms = started.elapsed().as_millis();
            let _ = host.stop(worker).await;
            pass("chromium launch", format!("headless, CDP ready in {ms} ms"))
        }
        Err(e) => fail(
            "chromium launch",
            e.to_string(),
            "check the browser's output above; as root bro adds --no-sandbox",
        ),
    });
    let _ = std::fs::remove_dir_all(&scratch);
    out
}

fn check_restate(paths: &Paths, flag: Option<&std::path::Path>) -> Check {
    let path = match restate::find_binary(flag, paths) {
        Ok(p) => p,
        Err(e) => return fail("restate-server", e.to_string(), "./install.sh"),
    };
    let version = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if version.contains(RESTATE_VERSION) {
        pass("restate-server", format!("{} ({version})", path.display()))
    } else {
        fail(
            "restate-server",
            format!(
                "{} is '{version}', bro is tested with {RESTATE_VERSION}",
                path.display()
            ),
            "./install.sh",
        )
    }
}

fn check_port(
    bind: std::net::IpAddr,
    port: u16,
    status: Option<&crate::protocol::control::DaemonStatus>,
) -> Check {
    if let Some(st) = status
        && st.api_url.ends_with(&format!(":{port}"))
    {
        return pass(
            "port",
            format!("{bind}:{port} is held by this bro (pid {})", st.pid),
        );
    }
    if port == 0 {
        return pass("port", "0: a free port is picked at start");
    }
    match std::net::TcpListener::bind((bind, port)) {
        Ok(_) => pass("port", format!("{bind}:{port} is free")),
        Err(e) => fail(
            "port",
            format!("{bind}:{port}: {e}"),
            "pass --port N (or set port in config.toml)",
        ),
    }
}

fn check_private_dir(dir: &std::path::Path) -> Check {
    let Ok(meta) = std::fs::metadata(dir) else {
        return pass(
            "runtime dir",
            format!("{} (created at first start, 0700)", dir.display()),
        );
    };
    let mode = meta.permissions().mode() & 0o777;
    let mine = meta.uid() == nix::unistd::geteuid().as_raw();
    if mode == 0o700 && mine {
        pass(
            "runtime dir",
            format!("{} is 0700 and yours", dir.display()),
        )
    } else {
        fail(
            "runtime dir",
            format!("{} is {mode:o}", dir.display()),
            format!("chmod 700 {}", dir.display()),
        )
    }
}

fn check_disk(paths: &Paths) -> Check {
    let dir =
        std::iter::successors(Some(paths.data_dir.as_path()), |p| p.parent()).find(|p| p.exists());
    let Some(dir) = dir else {
        return fail(
            "disk",
            "no existing parent of the data dir",
            "set BRO_HOME to a writable dir",
        );
    };
    match nix::sys::statvfs::statvfs(dir) {
        Ok(st) => {
            let free = st.blocks_available() * st.fragment_size();
            let gib = free as f64 / f64::from(1u32 << 30);
            if free >= MIN_FREE_BYTES {
                pass(
                    "disk",
                    format!("{gib:.1} GiB free for profiles in {}", dir.display()),
                )
            } else {
                fail(
                    "disk",
                    format!("only {gib:.2} GiB free in {}", dir.display()),
                    format!("free space in {}", dir.display()),
                )
            }
        }
        Err(e) => fail("disk", e.to_string(), "set BRO_HOME to a writable dir"),
    }
}

async fn check_daemon(status: Option<&crate::protocol::control::DaemonStatus>) -> Vec<Check> {
    let Some(st) = status else {
        return vec![pass("daemon", "not running (session commands start it)")];
    };
    let mut out = vec![pass(
        "daemon",
        format!("running, pid {}, api {}", st.pid, st.api_url),
    )];
    let url = format!("{}/health", st.restate.admin_url);
    let http = reqwest::Client::new();
    out.push(
        match http.get(&url).timeout(Duration::from_secs(3)).send().await {
            Ok(r) if r.status().is_success() => {
                pass("restate", format!("healthy at {}", st.restate.admin_url))
            }
            Ok(r) => fail(
                "restate",
                format!("{url} answered {}", r.status()),
                "bro daemon stop && bro daemon start",
            ),
            Err(e) => fail(
                "restate",
                format!("{url}: {e}"),
                "bro daemon stop && bro daemon start",
            ),
        },
    );
    out
}
