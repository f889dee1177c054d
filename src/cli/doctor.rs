//! `bro doctor`: checks what bro needs, one line each, with the command that fixes a failure.
//! The checks of a `[cluster]` are in `doctor/cluster.rs`.

mod cluster;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::cli::DaemonArgs;
use crate::client::DaemonClient;
use crate::daemon::restate::{self, RESTATE_VERSION};
use crate::host::LaunchSpec;
use crate::output;
use crate::paths::Paths;
use crate::protocol::session::{SessionId, SessionOptions};
use crate::worker::chromium;
use crate::worker::quarantine;

/// Free disk below which profiles may not fit (an idle profile is ~10 MB, a busy one far more).
const MIN_FREE_BYTES: u64 = 1 << 30;
/// How long the OTLP receiver check waits for a TCP connection (name lookup included).
const OTLP_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    /// Passed, but degraded: bro works, the fix is advised (a cluster member down while a
    /// majority is up). Only on `ok` checks; absent from the JSON when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warn: bool,
    pub detail: String,
    /// The command or step that fixes a failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The file or dir the check is about (a quarantined session dir).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

fn pass(check: &'static str, detail: impl Into<String>) -> Check {
    Check {
        check,
        ok: true,
        warn: false,
        detail: detail.into(),
        fix: None,
        path: None,
    }
}

fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check,
        ok: true,
        warn: true,
        detail: detail.into(),
        fix: Some(fix.into()),
        path: None,
    }
}

fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check,
        ok: false,
        warn: false,
        detail: detail.into(),
        fix: Some(fix.into()),
        path: None,
    }
}

/// How session limits are enforced: the running daemon's mode, else the mode a daemon would
/// pick now (probed read-only); and the browsers' priority (`browser_nice`: the daemon's, else
/// `nice` from the settings).
fn check_limits(
    paths: &Paths,
    wanted: crate::config::LimitsMode,
    nice: u32,
    status: Option<&crate::protocol::control::DaemonStatus>,
) -> Check {
    use crate::worker::limits;
    let running = status.and_then(|s| s.limits.as_ref());
    // A running daemon's, where an older one that does not say ran its browsers at its own.
    let nice = running.map_or(nice, |l| l.browser_nice.unwrap_or(0));
    let (mode, why, forced) = match running {
        Some(l) => (l.mode.clone(), l.why.clone(), l.forced),
        None => {
            let name = limits::parent_name(&paths.sessions_dir());
            // Read-only: a daemon of this home may be starting and own the parent.
            match limits::detect(&limits::Sys::here(), wanted, &name, false) {
                Ok(d) => (d.mode.label().to_string(), d.why, d.forced),
                Err(e) => {
                    return fail(
                        "limits",
                        e.to_string(),
                        "set limits_mode = auto (or measure), or run bro where it may create \
                         cgroups (cgroup v1 as root, or a cgroup v2 with memory and cpu delegated: \
                         systemd-run --scope -p Delegate=yes)",
                    );
                }
            }
        }
    };
    let priority = match nice {
        0 => "browsers at the daemon's priority".to_string(),
        n => format!("browsers at nice +{n} over the daemon's"),
    };
    let detail = format!("{mode}: {why}; {priority}");
    // Measurement a setting asked for is no fault; one picked for want of cgroups is.
    if mode == limits::Mode::Measure.label() && !forced {
        return warn(
            "limits",
            detail,
            "memory limits are measured (PSS) and CPU shares not enforced; run bro where it may \
             create cgroups (cgroup v1 as root, or a cgroup v2 with memory and cpu delegated: \
             systemd-run --scope -p Delegate=yes) to enforce both",
        );
    }
    pass("limits", detail)
}

/// Runs every check; fails (exit 1) when one fails.
pub async fn run(paths: Paths, args: DaemonArgs, json: bool) -> Result<()> {
    let mut checks = Vec::new();
    let cluster_args = args.clone();
    let opts = match super::daemon::settings(&paths, args) {
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
            opts.as_ref()
                .map_or(crate::config::DEFAULT_BROWSER_NICE, |o| o.browser_nice),
        )
        .await,
    );
    let restate_flag = opts.as_ref().and_then(|o| o.restate_server.clone());
    checks.push(check_restate(&paths, restate_flag.as_deref()));
    checks.push(check_rrweb(&paths, opts.as_ref().is_some_and(|o| o.record)));
    let status = DaemonClient::new(paths.socket()).status().await.ok();
    if let Some(o) = &opts {
        checks.push(check_port(o.bind, o.port, status.as_ref()));
    }
    checks.push(check_private_dir(&paths.runtime_dir));
    checks.push(check_disk(&paths));
    checks.extend(check_daemon(status.as_ref()).await);
    if let Some(o) = &opts {
        checks.push(check_limits(
            &paths,
            o.limits_mode,
            o.browser_nice,
            status.as_ref(),
        ));
    }
    if let Some(endpoint) = opts.as_ref().and_then(|o| o.otlp_endpoint.as_deref()) {
        checks.push(check_otlp(endpoint, OTLP_CONNECT_TIMEOUT).await);
    }
    let daemon = status.is_some().then(|| DaemonClient::new(paths.socket()));
    checks.extend(check_cluster(&paths, &cluster_args, daemon.as_ref()).await);
    checks.extend(check_quarantine(&paths));

    let failed = checks.iter().filter(|c| !c.ok).count();
    output::doctor(&checks, json);
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}

/// The cluster checks when `config.toml` has a `[cluster]`; none without.
async fn check_cluster(
    paths: &Paths,
    args: &DaemonArgs,
    daemon: Option<&DaemonClient>,
) -> Vec<Check> {
    let file = crate::config::path(&paths.config_dir);
    match cluster::setup(&file, args) {
        Ok(Some(setup)) => cluster::checks(&setup, daemon).await,
        Ok(None) => Vec::new(),
        Err(e) => vec![fail(
            "cluster",
            e,
            format!("fix [cluster] in {}", file.display()),
        )],
    }
}

async fn check_chromium(
    paths: &Paths,
    flag: Option<&std::path::Path>,
    flags: Option<Vec<String>>,
    browser_nice: u32,
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
    let host = crate::worker::scratch_host(path, flags.unwrap_or_default(), browser_nice, &scratch);
    let spec = LaunchSpec {
        session_id: SessionId::random(),
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

/// rrweb, which sessions record with: a failure when the daemon records by default
/// (`record`), a warning otherwise (only creates asking to record need it).
fn check_rrweb(paths: &Paths, record: bool) -> Check {
    match paths.rrweb_dir() {
        Some(dir) => pass("rrweb", format!("{} (session recordings)", dir.display())),
        None => {
            let detail = "not installed: sessions cannot record (\"record\": true is refused)";
            if record {
                fail("rrweb", detail, "./install.sh")
            } else {
                warn("rrweb", detail, "./install.sh")
            }
        }
    }
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
    // bro's own restate-server answers on a Unix socket inside the 0700 restate dir.
    let admin = match crate::orchestrator::ingress::RestateAddr::parse(&st.restate.admin_url) {
        Ok(admin) => admin,
        Err(e) => {
            out.push(fail("restate", e, "bro daemon stop && bro daemon start"));
            return out;
        }
    };
    let url = admin.url("/health");
    let http = admin.client();
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

/// The OTLP receiver (`otlp_endpoint`) takes a TCP connection within `bound`; nothing is
/// sent. A receiver that is down costs the traces, not bro's work: a warning, not a failure.
async fn check_otlp(endpoint: &str, bound: Duration) -> Check {
    const FIX: &str = "start the OTLP receiver (an OpenTelemetry Collector, Jaeger, Tempo) there, \
                       or set otlp_endpoint to one that is up (\"\" for no traces)";
    let target = url::Url::parse(endpoint)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port()?)));
    let Some(target) = target else {
        return fail(
            "otlp receiver",
            format!("{endpoint}: not http://HOST:PORT"),
            "set otlp_endpoint to http://HOST:PORT",
        );
    };
    let started = Instant::now();
    match tokio::time::timeout(bound, tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_stream)) => pass(
            "otlp receiver",
            format!(
                "{endpoint} takes connections ({} ms)",
                started.elapsed().as_millis()
            ),
        ),
        Ok(Err(e)) => warn(
            "otlp receiver",
            format!("{endpoint}: cannot connect: {e} (spans are dropped)"),
            FIX,
        ),
        Err(_) => warn(
            "otlp receiver",
            format!("{endpoint}: cannot connect: no answer within {bound:?} (spans are dropped)"),
            FIX,
        ),
    }
}

/// `text` as one POSIX shell word: single-quoted, with each `'` written `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The session dirs the reaper moved aside for lack of evidence, and the Restate records the
/// daemon could not parse: each is a ✗ until a human has looked.
fn check_quarantine(paths: &Paths) -> Vec<Check> {
    let root = paths.quarantine_dir();
    let mut out = Vec::new();
    for q in quarantine::list(&root) {
        let shown = q.path.display().to_string();
        let detail = match &q.note {
            Some(note) => {
                let at = std::time::UNIX_EPOCH
                    + Duration::from_millis(note.at_ms.min(crate::protocol::steel::MAX_TIME_MS));
                format!(
                    "{shown}: {} was moved aside at {}: {}",
                    note.from.display(),
                    humantime::format_rfc3339_seconds(at),
                    note.reason
                )
            }
            None => format!("{shown}: moved aside (no note)"),
        };
        let fix = format!(
            "its profile and files (uploads, downloads: {shown}/files) are kept; when you are sure \
             nothing in it is needed: rm -rf {}",
            shell_quote(&shown)
        );
        let mut check = fail("quarantine", detail, fix);
        check.path = Some(shown);
        out.push(check);
    }
    let sessions = paths.sessions_dir();
    for bad in quarantine::read_unreadable(&root) {
        let id = bad.what.strip_prefix("Session ").unwrap_or_default();
        let fix = if id.is_empty() {
            "it was written by another bro version: run that version, or stop the daemon with \
             its sessions released and start again"
                .to_string()
        } else {
            format!(
                "it was written by another bro version: run that version to end the session; \
                 until then bro leaves {} and its browser alone",
                sessions.join(id).display()
            )
        };
        out.push(fail(
            "restate record",
            format!("{} does not parse: {}", bad.what, bad.error),
            fix,
        ));
    }
    if out.is_empty() {
        out.push(pass(
            "quarantine",
            format!("nothing quarantined ({})", root.display()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listening receiver passes; a closed port and a silent (black-holed) address are
    /// warnings saying why, each within the bound.
    #[tokio::test]
    async fn the_otlp_receiver_is_checked_by_connecting_within_a_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = format!("http://{}", listener.local_addr().unwrap());
        let c = check_otlp(&open, Duration::from_secs(2)).await;
        assert!(c.ok && !c.warn, "{c:?}");
        assert!(c.detail.contains("takes connections"), "{c:?}");
        // Nothing was sent: the accepted stream has no bytes and is closed.
        let (mut accepted, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut accepted, &mut buf)
            .await
            .unwrap();
        assert!(buf.is_empty());

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let c = check_otlp(&closed, Duration::from_secs(2)).await;
        assert!(c.ok && c.warn, "{c:?}");
        assert!(c.detail.contains("cannot connect"), "{c:?}");
        assert!(c.fix.is_some(), "{c:?}");
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["check"], "otlp receiver");
        assert_eq!(json["warn"], true);

        // A non-routable address (TEST-NET-1) does not answer: given up at the bound.
        let started = Instant::now();
        let c = check_otlp("http://192.0.2.1:4317", Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{c:?}");
        assert!(
            c.ok && c.warn && c.detail.contains("cannot connect"),
            "{c:?}"
        );
    }

    #[test]
    fn a_measurement_mode_the_setting_asked_for_is_no_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::under(tmp.path().to_path_buf());
        for wanted in [
            crate::config::LimitsMode::Measure,
            crate::config::LimitsMode::Off,
        ] {
            let check = check_limits(&paths, wanted, 5, None);
            assert!(check.ok && !check.warn, "{check:?}");
            assert!(
                check
                    .detail
                    .ends_with("; browsers at nice +5 over the daemon's")
            );
        }
    }

    #[test]
    fn quoted_paths_stay_one_shell_word() {
        assert_eq!(shell_quote("/a b"), "'/a b'");
        assert_eq!(shell_quote("/x'y"), r"'/x'\''y'");
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("printf %s {}", shell_quote("/x'; echo pwned '")),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/x'; echo pwned '");
    }

    #[test]
    fn quarantined_dirs_and_unreadable_records_are_failed_checks_with_a_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::under(tmp.path().to_path_buf());
        let checks = check_quarantine(&paths);
        assert_eq!(checks.len(), 1);
        assert!(checks[0].ok, "{checks:?}");

        let id = "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69";
        let dir = paths.sessions_dir().join(id);
        std::fs::create_dir_all(dir.join("files")).unwrap();
        let moved = quarantine::move_aside(&dir, &paths.quarantine_dir(), "no record").unwrap();
        let bad = quarantine::Unreadable::state_of("Session", id, "unknown variant `hibernating`");
        quarantine::write_unreadable(&paths.quarantine_dir(), &[bad]).unwrap();

        let checks = check_quarantine(&paths);
        assert_eq!(checks.len(), 2, "{checks:?}");
        let q = &checks[0];
        assert_eq!((q.check, q.ok), ("quarantine", false));
        let shown = moved.display().to_string();
        assert_eq!(q.path.as_deref(), Some(shown.as_str()));
        assert!(q.detail.contains("no record"), "{q:?}");
        assert!(
            q.fix
                .as_deref()
                .unwrap()
                .contains(&format!("rm -rf {}", shell_quote(&shown))),
            "{q:?}"
        );
        let r = &checks[1];
        assert_eq!((r.check, r.ok), ("restate record", false));
        assert!(r.detail.contains("hibernating"), "{r:?}");
        assert!(r.fix.as_deref().unwrap().contains(id), "{r:?}");
        let json = serde_json::to_value(&checks).unwrap();
        assert_eq!(json[0]["path"], shown.as_str());
        assert!(json[1].get("path").is_none());
    }
}
