//! `bro bench`'s job benchmark: the figure users feel, jobs per second. A job is "fresh
//! browser, open a local page, read its title, take a screenshot, close", run by the real
//! playwright-core (pinned by `install.sh`) either through bro (create a session,
//! `connectOverCDP`, release) or with Playwright's own `chromium.launch` of the same
//! Chromium. Both run in one bench, in turns (bro, Playwright, Playwright, bro) so both see
//! the same machine; cold (creates that never take a warm browser) and, with a warm pool,
//! warm. The page is served by the bench itself on loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Stats;
use crate::client::DaemonClient;
use crate::output;
use crate::paths::Paths;

/// The playwright-core version `install.sh` installs (the one `tests/compat` pins).
pub const PLAYWRIGHT_VERSION: &str = "1.65.1";

/// Jobs each side runs when `--jobs` is not given.
pub const DEFAULT_JOBS: u32 = 24;

/// Oldest node playwright-core 1.65 runs on (its `engines`).
const NODE_MAJOR: u32 = 20;

/// Most jobs one side runs, and most at once.
pub const MAX_JOBS: u32 = 1000;
pub const MAX_CONCURRENCY: u32 = 32;

/// Title of the bench's page; a job that reads another fails.
const TITLE: &str = "bro bench job";
const PAGE: &str = "<!doctype html><html><head><title>bro bench job</title></head>\
    <body style=\"font:16px sans-serif\"><h1>bro bench</h1><p>A page for jobs: open it, read \
    its title, take a screenshot.</p><ul><li>one</li><li>two</li><li>three</li></ul></body></html>";

/// What the driver needs: node and a playwright-core package dir.
#[derive(Debug, Clone)]
pub struct Driver {
    pub playwright: PathBuf,
    pub version: String,
}

/// Finds playwright-core: `--playwright` / `BRO_PLAYWRIGHT` (the package dir, or a dir with
/// `node_modules/playwright-core`), else where `install.sh` puts it; and checks that node
/// runs. Each miss says what to install.
pub fn driver(flag: Option<&Path>, paths: &Paths) -> Result<Driver> {
    let candidates: Vec<PathBuf> = match flag {
        Some(dir) => vec![dir.to_path_buf(), dir.join("node_modules/playwright-core")],
        None => paths.playwright_install_candidates(),
    };
    let Some(playwright) = candidates
        .iter()
        .find(|d| package_version(d).is_some())
        .cloned()
    else {
        bail!(
            "playwright-core not found (looked in {}). The job benchmark drives it: run \
             ./install.sh (it installs playwright-core {PLAYWRIGHT_VERSION} beside rrweb), or pass \
             --playwright DIR (a playwright-core package, or a dir with node_modules/playwright-core; \
             env BRO_PLAYWRIGHT); --jobs 0 skips the job benchmark",
            candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let version = package_version(&playwright).unwrap_or_default();
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    let major = node
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| node_major(&String::from_utf8_lossy(&o.stdout)));
    match major {
        None => bail!(
            "node not found: the job benchmark runs playwright-core in node {NODE_MAJOR} or \
             later (nodejs.org or your distribution's newer nodejs); --jobs 0 skips the job \
             benchmark"
        ),
        Some(m) if m < NODE_MAJOR => bail!(
            "node {m} is too old: playwright-core {PLAYWRIGHT_VERSION} needs node {NODE_MAJOR} or \
             later (nodejs.org); --jobs 0 skips the job benchmark"
        ),
        Some(_) => {}
    }
    Ok(Driver {
        playwright: std::fs::canonicalize(&playwright).unwrap_or(playwright),
        version,
    })
}

/// The major version in `node --version`'s `v20.11.1`.
fn node_major(version: &str) -> Option<u32> {
    version
        .trim()
        .strip_prefix('v')?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The version in `dir/package.json` when `dir` is the playwright-core package.
fn package_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
    let pkg: Value = serde_json::from_str(&text).ok()?;
    (pkg["name"] == "playwright-core").then(|| pkg["version"].as_str().unwrap_or("").to_string())
}

/// One job's steps as the driver timed them (ms): browser up, page ready, page work
/// (goto, title, screenshot), close (and release), whole job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Steps {
    start: f64,
    page: f64,
    work: f64,
    close: f64,
    total: f64,
}

/// What one run of the driver printed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Run {
    wall_ms: f64,
    done: Vec<Steps>,
    errors: Vec<String>,
    failures: usize,
}

/// One side's figures over its turns.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub jobs: usize,
    pub failures: usize,
    pub jobs_per_s: f64,
    pub job_ms: Stats,
    /// Median of each step, ms.
    pub steps_p50_ms: Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Side {
    /// Jobs done over the summed wall time of the turns.
    fn of(runs: &[Run]) -> Side {
        let wall_s: f64 = runs.iter().map(|r| r.wall_ms).sum::<f64>() / 1000.0;
        let done: Vec<&Steps> = runs.iter().flat_map(|r| &r.done).collect();
        let p50 = |f: fn(&Steps) -> f64| Stats::of(done.iter().map(|s| f(s)).collect()).p50;
        Side {
            jobs: done.len(),
            failures: runs.iter().map(|r| r.failures).sum(),
            jobs_per_s: per_second(done.len(), wall_s),
            job_ms: Stats::of(done.iter().map(|s| s.total).collect()),
            steps_p50_ms: json!({
                "start": p50(|s| s.start), "page": p50(|s| s.page), "work": p50(|s| s.work),
                "close": p50(|s| s.close),
            }),
            errors: runs.iter().flat_map(|r| r.errors.clone()).take(5).collect(),
        }
    }
}

/// `n` over `secs`, 0 for no time.
fn per_second(n: usize, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// `a` over `b`, `None` when `b` did nothing.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// Pause after the pool is full before a turn: the last refill's browser settles.
const SETTLE: Duration = Duration::from_secs(1);

/// A dir removed with everything in it when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long node may take to close Playwright's browsers after SIGTERM.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// Jobs per turn: half of `jobs` each (each side runs two turns), at least one.
fn turn_jobs(jobs: u32) -> u32 {
    jobs.div_ceil(2).max(1)
}

/// What the job benchmark needs from the bench.
pub struct Bench<'a> {
    pub driver: &'a Driver,
    pub daemon: &'a DaemonClient,
    pub api: &'a str,
    pub chromium: &'a Path,
    pub jobs: u32,
    pub concurrency: u32,
    /// The daemon's warm target (0: no warm pass).
    pub warm: u32,
}

/// Runs the cold pass and, with a warm pool, the warm one; the `jobs` figures.
pub async fn measure(b: &Bench<'_>) -> Result<Value> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let page = format!("http://{}/", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(PAGE) }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let result = passes(b, &page).await;
    server.abort();
    result
}

async fn passes(b: &Bench<'_>, page: &str) -> Result<Value> {
    // Dimensions are a launch flag: these creates never take a warm browser.
    let cold_body = json!({ "dimensions": { "width": 1280, "height": 720 } });
    output::progress(&format!(
        "jobs, cold: {} through bro and {} with Playwright's own launch, {} at a time, in turns",
        b.jobs, b.jobs, b.concurrency
    ));
    let cold = pass(b, page, &cold_body).await?;
    let warm = if b.warm > 0 {
        output::progress(&format!("jobs, warm pool of {}: the same", b.warm));
        Some(pass(b, page, &json!({})).await?)
    } else {
        None
    };
    Ok(json!({
        // What each side really ran: two turns of half the jobs each, rounded up.
        "n": 2 * turn_jobs(b.jobs),
        "concurrency": b.concurrency,
        "playwright_core": b.driver.version,
        // Both sides run the same binary: the one bro execs (Debian's wrapper skipped).
        "chromium": crate::worker::chromium::direct(b.chromium).0,
        "cold": cold,
        "warm": warm,
    }))
}

/// bro, Playwright, Playwright, bro; each turn half the jobs. With a warm pool every turn
/// (either side's, cold or warm) starts with a full pool and a settled machine, so no
/// refill of an earlier turn launches during it.
async fn pass(b: &Bench<'_>, page: &str, body: &Value) -> Result<Value> {
    let n = turn_jobs(b.jobs);
    let (mut bro, mut pw) = (Vec::new(), Vec::new());
    for turn in ["bro", "playwright", "playwright", "bro"] {
        if b.warm > 0 {
            super::wait_pool_full(b.daemon, b.warm).await?;
            tokio::time::sleep(SETTLE).await;
        }
        if turn == "bro" {
            bro.push(drive(b, page, "bro", body, n).await?);
        } else {
            pw.push(drive(b, page, "playwright", body, n).await?);
        }
    }
    let (bro, pw) = (Side::of(&bro), Side::of(&pw));
    let r = ratio(bro.jobs_per_s, pw.jobs_per_s);
    Ok(json!({ "bro": bro, "playwright": pw, "bro_over_playwright": r }))
}

/// One turn: the driver in node, in its own process group, bounded in time.
async fn drive(b: &Bench<'_>, page: &str, mode: &str, body: &Value, jobs: u32) -> Result<Run> {
    let config = json!({
        "playwright": b.driver.playwright,
        "mode": mode,
        "api": b.api,
        // Playwright launches what bro launches: the real binary and the wrapper's flags bro
        // keeps, so neither side pays Debian's wrapper script.
        "chromium": crate::worker::chromium::direct(b.chromium).0,
        "chromium_args": crate::worker::chromium::direct(b.chromium).1,
        "page": page,
        "title": TITLE,
        "body": body,
        "jobs": jobs,
        "concurrency": b.concurrency,
    });
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("-e")
        .arg(include_str!("jobs.cjs"))
        .env("BRO_BENCH_JOBS", config.to_string())
        // Never fetch a browser: the driver only launches the Chromium bro uses.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .env("PLAYWRIGHT_BROWSERS_PATH", "0")
        .env_remove("BRO_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Playwright's temporary profiles go inside a dir of the bench's, removed after the turn.
    let tmp =
        TempDir(std::env::temp_dir().join(format!("bro-bench-node-{}", uuid::Uuid::new_v4())));
    crate::paths::create_private_dir(&tmp.0).context("cannot create the driver's temporary dir")?;
    cmd.env("TMPDIR", &tmp.0);
    let mut child = cmd.spawn().context("cannot run node")?;
    let pgid = child.id();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let read = async move {
        use tokio::io::AsyncReadExt;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        if let Some(mut s) = stdout {
            s.read_to_end(&mut out).await?;
        }
        if let Some(mut s) = stderr {
            s.read_to_end(&mut err).await?;
        }
        std::io::Result::Ok((out, err))
    };
    // Each job is bounded by the driver (60 s a step); this bounds the whole turn.
    let limit = Duration::from_secs(120 + 240 * u64::from(jobs.div_ceil(b.concurrency.max(1))));
    let done = tokio::time::timeout(limit, async {
        let (out, err) = read.await?;
        std::io::Result::Ok((child.wait().await?, out, err))
    })
    .await;
    let Ok(done) = done else {
        // Playwright launches its browsers detached (their own process groups): SIGTERM
        // lets node's Playwright kill them, then the group goes.
        if let Some(pgid) = pgid {
            let pid = nix::unistd::Pid::from_raw(pgid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = tokio::time::timeout(TERM_GRACE, child.wait()).await;
            crate::worker::process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        }
        bail!(
            "the job driver ({mode}) did not finish within {} s",
            limit.as_secs()
        );
    };
    let (status, stdout, stderr) = done?;
    let out = std::process::Output {
        status,
        stdout,
        stderr,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        bail!(
            "the job driver ({mode}) failed ({}):\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("the job driver printed {line:?}"))
}

/// The rows of the human table: jobs/s of each side and the ratio, per pass.
pub fn print(r: &Value) {
    if r.is_null() {
        return;
    }
    let mut rows = Vec::new();
    for pass in ["cold", "warm"] {
        let p = &r[pass];
        if p.is_null() {
            continue;
        }
        let f = |v: &Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.2}"));
        let steps = |side: &str| {
            let s = &p[side]["steps_p50_ms"];
            format!(
                "{:.0}/{:.0}/{:.0}/{:.0}",
                s["start"].as_f64().unwrap_or(0.0),
                s["page"].as_f64().unwrap_or(0.0),
                s["work"].as_f64().unwrap_or(0.0),
                s["close"].as_f64().unwrap_or(0.0)
            )
        };
        rows.push(vec![
            pass.to_string(),
            f(&p["bro"]["jobs_per_s"]),
            f(&p["playwright"]["jobs_per_s"]),
            f(&p["bro_over_playwright"]),
            steps("bro"),
            steps("playwright"),
            format!("{}/{}", p["bro"]["failures"], p["playwright"]["failures"]),
        ]);
    }
    output::line("");
    output::line(&format!(
        "jobs: {} per side, {} at a time (fresh browser, open a local page, title, screenshot, close; playwright-core {}; both sides run {})",
        r["n"],
        r["concurrency"],
        r["playwright_core"].as_str().unwrap_or("?"),
        r["chromium"].as_str().unwrap_or("?")
    ));
    output::line(&output::table(
        &[
            "jobs",
            "bro/s",
            "playwright/s",
            "bro ÷ playwright",
            "bro p50 start/page/work/close ms",
            "playwright p50 ms",
            "failed",
        ],
        &rows,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(wall_ms: f64, totals: &[f64]) -> Run {
        Run {
            wall_ms,
            done: totals
                .iter()
                .map(|&t| Steps {
                    total: t,
                    start: t / 2.0,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn jobs_per_second_are_summed_over_turns() {
        let side = Side::of(&[run(1000.0, &[100.0, 300.0]), run(3000.0, &[200.0, 400.0])]);
        assert_eq!(side.jobs, 4);
        assert!((side.jobs_per_s - 1.0).abs() < 1e-9, "{}", side.jobs_per_s);
        assert_eq!(side.job_ms.p50, 200.0);
        assert_eq!(side.steps_p50_ms["start"], 100.0);
        let idle = Side::of(&[]);
        assert_eq!((idle.jobs, idle.jobs_per_s), (0, 0.0));
        assert_eq!(ratio(2.0, 1.0), Some(2.0));
        assert_eq!(ratio(2.0, 0.0), None);
    }

    #[test]
    fn each_turn_runs_half_the_jobs_and_at_least_one() {
        assert_eq!(turn_jobs(24), 12);
        assert_eq!(turn_jobs(3), 2);
        assert_eq!(turn_jobs(1), 1);
        assert_eq!(turn_jobs(0), 1);
    }

    #[test]
    fn node_versions_are_read() {
        assert_eq!(node_major("v20.11.1\n"), Some(20));
        assert_eq!(node_major("v18.19.0"), Some(18));
        assert_eq!(node_major("20.1.0"), None);
        assert_eq!(node_major("vx"), None);
    }

    #[test]
    fn a_missing_playwright_says_what_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        let err = driver(Some(tmp.path()), &Paths::under(tmp.path().to_path_buf()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("install.sh") && err.contains("--playwright") && err.contains("--jobs 0"),
            "{err}"
        );
        // A package of another name is not playwright-core.
        std::fs::write(
            tmp.path().join("package.json"),
            r#"{"name":"evil","version":"1"}"#,
        )
        .unwrap();
        assert!(driver(Some(tmp.path()), &Paths::under(tmp.path().to_path_buf())).is_err());
    }
}
