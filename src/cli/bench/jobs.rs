//! `bro bench`'s job benchmark: the figure users feel, jobs per second. A job is "fresh
//! browser, open a local page, read its title, take a screenshot, close", run by the real
//! playwright-core (pinned by `install.sh`) either through bro (create a session,
//! `connectOverCDP`, release) or with Playwright's own `chromium.launch` of the same
//! Chromium. Both run in one bench, in turns (bro, Playwright, Playwright, bro) so both see
//! the same machine; at each level of concurrency asked, cold (creates that never take a warm
//! browser) and, with a warm pool, warm: every figure of the table comes from one run. The
//! page is served by the bench itself on loopback.

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

/// Levels of concurrency measured when `--job-concurrency` is not given: one job at a time
/// (each job's own cost) and four (a machine kept busy).
pub const DEFAULT_CONCURRENCY: [u32; 2] = [1, 4];

/// The levels of `--job-concurrency` to measure: each once, in the order given (the default
/// when none is).
pub fn levels(asked: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::with_capacity(asked.len());
    for &c in asked {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.extend(DEFAULT_CONCURRENCY);
    }
    out
}

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
    /// CPU seconds the whole machine spent busy during the turn (measured by the bench, not
    /// printed by the driver): the driver, the browsers, and for bro the daemon and
    /// restate-server.
    #[serde(skip)]
    cpu_s: Option<f64>,
}

/// One side's figures over its turns.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub jobs: usize,
    pub failures: usize,
    pub jobs_per_s: f64,
    pub job_ms: Stats,
    /// The machine's busy CPU seconds over the side's turns per job done (everything that
    /// ran counts: meaningful on a machine left to the bench); null when not measured.
    pub cpu_s_per_job: Option<f64>,
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
            cpu_s_per_job: runs
                .iter()
                .map(|r| r.cpu_s)
                .sum::<Option<f64>>()
                // Failed jobs' CPU would count for the others: none then, like the ratio.
                .filter(|_| !done.is_empty() && runs.iter().all(|r| r.failures == 0))
                .map(|cpu| cpu / done.len() as f64),
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

/// bro's jobs/s over Playwright's, or why there is none. A side with failed jobs ran fewer
/// jobs in its time (a job that fails early is quick): its rate is not comparable, so the
/// ratio is withheld and the failures said, as a benchmark does with a run that erred.
fn verdict(bro: &Side, pw: &Side) -> std::result::Result<f64, String> {
    let failed = |n: usize, who: &str| match n {
        0 => None,
        1 => Some(format!("1 {who} job failed")),
        n => Some(format!("{n} {who} jobs failed")),
    };
    let why: Vec<String> = [
        failed(bro.failures, "bro"),
        failed(pw.failures, "Playwright"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !why.is_empty() {
        return Err(why.join(", "));
    }
    ratio(bro.jobs_per_s, pw.jobs_per_s).ok_or_else(|| "Playwright ran no job".to_string())
}

/// bro's creates that ended live, by where their browser came from, as the daemon counts
/// them (`bro_session_create_seconds_count` by `kind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
struct Creates {
    warm: u64,
    cold: u64,
}

impl Creates {
    /// Reads the counts from a `/metrics` text (every node's lines summed).
    fn parse(text: &str) -> Creates {
        let mut c = Creates::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(CREATE_COUNT) else {
                continue;
            };
            let Some((labels, value)) = rest.strip_prefix('{').and_then(|r| r.split_once('}'))
            else {
                continue;
            };
            let n = value.trim().parse::<f64>().unwrap_or(0.0).max(0.0) as u64;
            if labels.split(',').any(|l| l == "kind=\"warm\"") {
                c.warm = c.warm.saturating_add(n);
            } else if labels.split(',').any(|l| l == "kind=\"cold\"") {
                c.cold = c.cold.saturating_add(n);
            }
        }
        c
    }

    /// The creates counted between `before` and `after`.
    fn since(after: Creates, before: Creates) -> Creates {
        Creates {
            warm: after.warm.saturating_sub(before.warm),
            cold: after.cold.saturating_sub(before.cold),
        }
    }
}

/// Sample count of the create latency histogram, labelled by kind.
const CREATE_COUNT: &str = "bro_session_create_seconds_count";

/// How long a scrape of `/metrics` may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most of a `/metrics` answer read (a daemon's is tens of KB, restate-server's lines
/// included).
const SCRAPE_MAX: usize = 8 << 20;

/// The daemon's create counts now; `None` when its `/metrics` cannot be read, in time and
/// within [`SCRAPE_MAX`].
async fn creates(http: &reqwest::Client, api: &str) -> Option<Creates> {
    let mut resp = http
        .get(format!("{api}/metrics"))
        .timeout(SCRAPE_TIMEOUT)
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.ok()? {
        if body.len() + chunk.len() > SCRAPE_MAX {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(Creates::parse(&String::from_utf8_lossy(&body)))
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
    /// Levels of concurrency, each measured cold and warm (see [`levels`]).
    pub concurrency: Vec<u32>,
    /// The page bro's jobs work in.
    pub page: JobPage,
    /// The daemon's warm target (0: no warm pass).
    pub warm: u32,
    /// The daemon's `browser_nice`.
    pub browser_nice: u32,
}

/// The page a bro job works in (`--job-page`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobPage {
    /// The session's first page, in its default context.
    Default,
    /// `browser.newPage()`: a page in a new context, as Playwright's side opens.
    New,
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
    let http = reqwest::Client::new();
    let mut cells = Vec::new();
    for &c in &b.concurrency {
        output::progress(&format!(
            "jobs, {c} at a time, cold: {} through bro and {} with Playwright's own launch, in turns",
            b.jobs, b.jobs
        ));
        cells.push(pass(b, &http, page, c, false).await?);
        if b.warm > 0 {
            output::progress(&format!(
                "jobs, {c} at a time, warm pool of {}: the same",
                b.warm
            ));
            cells.push(pass(b, &http, page, c, true).await?);
        }
    }
    Ok(json!({
        // What each side really ran in each cell: two turns of half the jobs, rounded up.
        "n": 2 * turn_jobs(b.jobs),
        "concurrency": b.concurrency,
        "warm_pool": b.warm,
        "playwright_core": b.driver.version,
        // Both sides run the same binary: the one bro execs (Debian's wrapper skipped).
        "chromium": crate::worker::chromium::direct(b.chromium).0,
        // Whether a side's browsers could raise their threads' priority (root keeping
        // CAP_SYS_NICE, or an RLIMIT_NICE); `bro bench` drops both, as the daemon does for its
        // browsers.
        "priority_boost": crate::worker::process::children_may_boost_priority(),
        // bro's browsers run this much below its daemon (`browser_nice`); Playwright's at
        // its own default, the driver's priority.
        "browser_nice": b.browser_nice,
        // `new`: bro's jobs open their page with `browser.newPage()`, as Playwright's do;
        // `default`: they use the session's first page.
        "bro_page": b.page,
        "cells": cells,
    }))
}

/// One cell of the table: `concurrency` jobs at a time, cold or warm; bro, Playwright,
/// Playwright, bro, each turn half the jobs. With a warm pool every turn (either side's, cold
/// or warm) starts with a full pool and a settled machine, so no refill of an earlier turn
/// launches during it. Around each bro turn the daemon's create counts are read: how many of
/// its creates took a warm browser (with `--home`, other clients' creates count too).
async fn pass(
    b: &Bench<'_>,
    http: &reqwest::Client,
    page: &str,
    concurrency: u32,
    warm: bool,
) -> Result<Value> {
    // Dimensions are a launch flag: cold creates never take a warm browser.
    let body = match warm {
        true => json!({}),
        false => json!({ "dimensions": { "width": 1280, "height": 720 } }),
    };
    let n = turn_jobs(b.jobs);
    let (mut bro, mut pw) = (Vec::new(), Vec::new());
    let mut counted = Some(Creates::default());
    for turn in ["bro", "playwright", "playwright", "bro"] {
        if b.warm > 0 {
            super::wait_pool_full(b.daemon, b.warm).await?;
            tokio::time::sleep(SETTLE).await;
        }
        if turn == "bro" {
            let before = creates(http, b.api).await;
            let mut run = drive(b, page, "bro", &body, n, concurrency).await?;
            let after = creates(http, b.api).await;
            if b.warm > 0 {
                // The refills of the browsers this turn took are part of its cost: its CPU
                // runs until the pool is full again.
                let refilling = crate::worker::load::machine_busy_seconds();
                super::wait_pool_full(b.daemon, b.warm).await?;
                let refilled = crate::worker::load::machine_busy_seconds();
                run.cpu_s = run
                    .cpu_s
                    .zip(refilling.zip(refilled))
                    .map(|(cpu, (a, b))| cpu + (b - a).max(0.0));
            }
            bro.push(run);
            counted = match (counted, before, after) {
                (Some(sum), Some(before), Some(after)) => {
                    let turn = Creates::since(after, before);
                    Some(Creates {
                        warm: sum.warm + turn.warm,
                        cold: sum.cold + turn.cold,
                    })
                }
                _ => None,
            };
        } else {
            pw.push(drive(b, page, "playwright", &body, n, concurrency).await?);
        }
    }
    let (bro, pw) = (Side::of(&bro), Side::of(&pw));
    let (ratio, invalid) = match verdict(&bro, &pw) {
        Ok(r) => (Some(r), None),
        Err(why) => (None, Some(why)),
    };
    Ok(json!({
        "concurrency": concurrency,
        "pass": if warm { "warm" } else { "cold" },
        "bro": bro,
        "playwright": pw,
        // null when a side had failures (or Playwright ran nothing); `ratio_invalid` says why.
        "bro_over_playwright": ratio,
        "ratio_invalid": invalid,
        // null when the daemon's /metrics could not be read.
        "bro_creates": counted,
    }))
}

/// One turn: the driver in node, in its own process group, bounded in time.
async fn drive(
    b: &Bench<'_>,
    page: &str,
    mode: &str,
    body: &Value,
    jobs: u32,
    concurrency: u32,
) -> Result<Run> {
    let config = json!({
        "playwright": b.driver.playwright,
        "mode": mode,
        "api": b.api,
        // Playwright launches what bro launches: the real binary and the wrapper's flags bro
        // keeps, so neither side pays Debian's wrapper script.
        "chromium": crate::worker::chromium::direct(b.chromium).0,
        "chromium_args": crate::worker::chromium::direct(b.chromium).1,
        "page": page,
        "bro_page": b.page,
        "title": TITLE,
        "body": body,
        "jobs": jobs,
        "concurrency": concurrency,
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
    let busy_before = crate::worker::load::machine_busy_seconds();
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
    let limit = Duration::from_secs(120 + 240 * u64::from(jobs.div_ceil(concurrency.max(1))));
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
    let busy_after = crate::worker::load::machine_busy_seconds();
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
    let mut run: Run =
        serde_json::from_str(line).with_context(|| format!("the job driver printed {line:?}"))?;
    run.cpu_s = busy_before.zip(busy_after).map(|(a, b)| (b - a).max(0.0));
    Ok(run)
}

/// The rows of the human table: per cell, jobs/s of each side, the ratio (or why there is
/// none), each side's step medians, failures and bro's warm hits; then each failed side's
/// first error.
pub fn print(r: &Value) {
    if r.is_null() {
        return;
    }
    let cells = r["cells"].as_array().map(Vec::as_slice).unwrap_or_default();
    let f = |v: &Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.2}"));
    let steps = |s: &Value| {
        let ms = |k: &str| s["steps_p50_ms"][k].as_f64().unwrap_or(0.0);
        format!(
            "{:.0}/{:.0}/{:.0}/{:.0}",
            ms("start"),
            ms("page"),
            ms("work"),
            ms("close")
        )
    };
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for cell in cells {
        let name = match cell["pass"].as_str() {
            Some("warm") => format!(
                "{} at a time, warm pool of {}",
                cell["concurrency"], r["warm_pool"]
            ),
            _ => format!("{} at a time, cold", cell["concurrency"]),
        };
        let ratio = match cell["ratio_invalid"].as_str() {
            Some(why) => format!("n/a: {why}"),
            None => f(&cell["bro_over_playwright"]),
        };
        let c = &cell["bro_creates"];
        let hits = match (c["warm"].as_u64(), c["cold"].as_u64()) {
            (Some(w), Some(k)) => format!("{w}/{}", w + k),
            _ => "?".to_string(),
        };
        rows.push(vec![
            name.clone(),
            f(&cell["bro"]["jobs_per_s"]),
            f(&cell["playwright"]["jobs_per_s"]),
            ratio,
            steps(&cell["bro"]),
            steps(&cell["playwright"]),
            format!(
                "{}/{}",
                cell["bro"]["failures"], cell["playwright"]["failures"]
            ),
            hits,
            format!(
                "{}/{}",
                f(&cell["bro"]["cpu_s_per_job"]),
                f(&cell["playwright"]["cpu_s_per_job"])
            ),
        ]);
        for side in ["bro", "playwright"] {
            if let Some(e) = cell[side]["errors"].get(0).and_then(Value::as_str) {
                notes.push(format!("{name}, {side}: first error: {e}"));
            }
        }
    }
    output::line("");
    output::line(&format!(
        "jobs: {} per side in each row (fresh browser, open a local page, title, screenshot, close; playwright-core {}; both sides run {}, bro with its switches, Playwright with its own defaults; {}; {}; {}; CPU: the machine's busy seconds per job, so leave it to the bench)",
        r["n"],
        r["playwright_core"].as_str().unwrap_or("?"),
        r["chromium"].as_str().unwrap_or("?"),
        match r["bro_page"].as_str() {
            Some("new") => "both sides' jobs open their page with browser.newPage()",
            _ => "bro's jobs use the session's first page, Playwright's browser.newPage()",
        },
        if r["priority_boost"].as_bool() == Some(true) {
            "the browsers may raise their threads' priority (CAP_SYS_NICE or RLIMIT_NICE)"
        } else {
            "no side's browsers may raise their threads' priority, as for a user who is not root"
        },
        match r["browser_nice"].as_u64() {
            Some(0) | None => "both sides' browsers at their driver's priority".to_string(),
            Some(n) => format!(
                "bro's browsers at nice +{n} over its daemon (browser_nice), Playwright's at its driver's priority"
            ),
        }
    ));
    output::line(&output::table(
        &[
            "jobs",
            "bro/s",
            "playwright/s",
            "bro ÷ playwright",
            "bro p50 start/page/work/close ms",
            "playwright p50 ms",
            "failed bro/pw",
            "warm hits",
            "CPU s/job bro/pw",
        ],
        &rows,
    ));
    for note in notes {
        output::line(&note);
    }
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
        assert_eq!(idle.cpu_s_per_job, None);
        // CPU per job over both turns; one turn not measured leaves the side unmeasured.
        let measured = |wall, totals: &[f64], cpu| Run {
            cpu_s: Some(cpu),
            ..run(wall, totals)
        };
        let side = Side::of(&[
            measured(1000.0, &[100.0, 300.0], 1.0),
            measured(1000.0, &[100.0, 300.0], 3.0),
        ]);
        assert_eq!(side.cpu_s_per_job, Some(1.0));
        let side = Side::of(&[measured(1000.0, &[100.0], 1.0), run(1000.0, &[100.0])]);
        assert_eq!(side.cpu_s_per_job, None);
        assert_eq!(ratio(2.0, 1.0), Some(2.0));
        assert_eq!(ratio(2.0, 0.0), None);
    }

    #[test]
    fn a_ratio_is_withheld_when_a_side_failed() {
        let ok = Side::of(&[run(1000.0, &[100.0, 300.0])]);
        let mut broken = ok.clone();
        broken.failures = 2;
        assert_eq!(verdict(&ok, &ok), Ok(1.0));
        assert_eq!(verdict(&broken, &ok), Err("2 bro jobs failed".to_string()));
        let mut one = ok.clone();
        one.failures = 1;
        assert_eq!(
            verdict(&broken, &one),
            Err("2 bro jobs failed, 1 Playwright job failed".to_string())
        );
        // A side that ran nothing, without a failure counted, gives no ratio either.
        let idle = Side::of(&[]);
        assert!(verdict(&ok, &idle).is_err());
    }

    #[test]
    fn concurrency_levels_keep_their_order_once_each() {
        assert_eq!(levels(&[4, 1, 4, 2, 1]), vec![4, 1, 2]);
        assert_eq!(levels(&[1]), vec![1]);
        assert_eq!(levels(&[]), DEFAULT_CONCURRENCY.to_vec());
    }

    /// `bro bench`'s arguments parsed from `args`.
    fn bench_args(args: &[&str]) -> Result<super::super::BenchArgs, clap::Error> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: super::super::BenchArgs,
        }
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn job_concurrency_takes_a_bounded_list() {
        let parse = |a: &[&str]| bench_args(a).map(|b| b.job_concurrency);
        assert_eq!(parse(&[]).unwrap(), DEFAULT_CONCURRENCY.to_vec());
        assert_eq!(
            parse(&["--job-concurrency", "4,1,4"]).unwrap(),
            vec![4, 1, 4]
        );
        assert_eq!(parse(&["--job-concurrency", "2"]).unwrap(), vec![2]);
        for bad in ["0", "1,33", "1,,4", "", "-1", "x", "99999999999"] {
            assert!(parse(&["--job-concurrency", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn warm_and_cold_creates_are_read_from_metrics() {
        let text = "# TYPE bro_session_create_seconds histogram\n\
            bro_session_create_seconds_bucket{node=\"local\",kind=\"warm\",le=\"0.5\"} 9\n\
            bro_session_create_seconds_count{node=\"local\",kind=\"warm\"} 22\n\
            bro_session_create_seconds_count{node=\"local\",kind=\"cold\"} 2\n\
            bro_session_create_seconds_count{node=\"b\",kind=\"cold\"} 1\n\
            bro_session_create_seconds_sum{node=\"local\",kind=\"cold\"} 7.5\n\
            bro_session_create_seconds_count{node=\"local\",kind=\"warmish\"} 100\n\
            bro_session_create_seconds_count{node=\"local\",kind=\"cold\"} NaN\n\
            bro_session_create_seconds_count{node=\"local\",kind=\"cold\"} -5\n\
            bro_session_create_seconds_count 3\n";
        let c = Creates::parse(text);
        assert_eq!(c, Creates { warm: 22, cold: 3 });
        let before = Creates { warm: 20, cold: 5 };
        assert_eq!(Creates::since(c, before), Creates { warm: 2, cold: 0 });
        assert_eq!(Creates::parse(""), Creates::default());
    }

    /// A playwright-core stand-in: connecting to bro fails when the websocket URL says so,
    /// a launched browser's page fails or its close does, as the page URL says. Only a
    /// connected browser's first page and a launched browser's `newPage` have the job's title,
    /// so a job shows which page it used.
    const FAKE_PLAYWRIGHT: &str = r#"
        const page = (title) => ({ goto: async (u) => { if (u.includes('page-fails')) throw new Error('page boom'); },
                                   title: async () => title, screenshot: async () => {} });
        const first = page('bro bench job');
        const browser = (closeFails, connected) => ({
          contexts: () => [{ pages: () => [connected ? first : page('not a new page')] }],
          newPage: async () => connected ? page('a new page') : first,
          close: async () => { if (closeFails) throw new Error('close boom'); } });
        exports.chromium = {
          connectOverCDP: async (url) => { if (url.includes('refuse')) throw new Error('connect refused'); return browser(false, true); },
          launch: async () => browser(process.env.BRO_BENCH_JOBS.includes('close-fails'), false),
        };"#;

    /// Runs the driver against a fake API whose release answers `release`, with the fake
    /// playwright; each side's errors.
    async fn errors_of(mode: &str, ws: &str, release: u16, page: &str) -> Vec<String> {
        errors_in(JobPage::Default, mode, ws, release, page).await
    }

    /// [`errors_of`], bro's jobs working in `bro_page`.
    async fn errors_in(
        bro_page: JobPage,
        mode: &str,
        ws: &str,
        release: u16,
        page: &str,
    ) -> Vec<String> {
        use axum::routing::post;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.js"), FAKE_PLAYWRIGHT).unwrap();
        std::fs::write(
            dir.path().join("package.json"),
            r#"{"name":"playwright-core","version":"0","main":"index.js"}"#,
        )
        .unwrap();
        let created = json!({ "id": "s1", "websocketUrl": ws });
        let app = axum::Router::new()
            .route(
                "/v1/sessions",
                post(move || async move { axum::Json(created) }),
            )
            .route(
                "/v1/sessions/s1/release",
                post(move || async move { axum::http::StatusCode::from_u16(release).unwrap() }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let driver = Driver {
            playwright: dir.path().to_path_buf(),
            version: "0".into(),
        };
        let daemon = DaemonClient::new(dir.path().join("none.sock"));
        let b = Bench {
            driver: &driver,
            daemon: &daemon,
            api: &api,
            chromium: Path::new("/nonexistent/chromium"),
            jobs: 1,
            concurrency: vec![1],
            page: bro_page,
            warm: 0,
            browser_nice: 0,
        };
        let run = drive(&b, page, mode, &json!({}), 1, 1).await.unwrap();
        server.abort();
        assert_eq!(run.failures, run.errors.len(), "{run:?}");
        run.errors
    }

    #[tokio::test]
    async fn a_cleanup_failure_never_hides_the_jobs_own_error() {
        if crate::worker::chromium::search_path("node").is_none() {
            eprintln!("skipped: no node on PATH (the job driver's tests need it)");
            return;
        }
        let page = "http://127.0.0.1:9/";
        // The job failed and so did the release: the job's error, the release's beside it.
        let e = errors_of("bro", "ws://refuse", 500, page).await;
        assert_eq!(e, ["connect refused (and then release: HTTP 500)"]);
        // Only the job failed.
        let e = errors_of("bro", "ws://refuse", 200, page).await;
        assert_eq!(e, ["connect refused"]);
        // Only the release failed.
        let e = errors_of("bro", "ws://ok", 500, page).await;
        assert_eq!(e, ["release: HTTP 500"]);
        assert!(errors_of("bro", "ws://ok", 200, page).await.is_empty());
        // Playwright's side: its browser's close.
        let e = errors_of("playwright", "", 200, "http://x/page-fails/close-fails").await;
        assert_eq!(e, ["page boom (and then close: close boom)"]);
        let e = errors_of("playwright", "", 200, "http://x/close-fails").await;
        assert_eq!(e, ["close: close boom"]);
    }

    #[tokio::test]
    async fn bro_jobs_work_in_the_page_asked_for() {
        if crate::worker::chromium::search_path("node").is_none() {
            eprintln!("skipped: no node on PATH (the job driver's tests need it)");
            return;
        }
        let page = "http://127.0.0.1:9/";
        let first = errors_in(JobPage::Default, "bro", "ws://ok", 200, page).await;
        assert!(first.is_empty(), "{first:?}");
        let new = errors_in(JobPage::New, "bro", "ws://ok", 200, page).await;
        assert_eq!(new, ["title \"a new page\""]);
        // Playwright's side always opens a new page, whatever bro's use.
        let pw = errors_in(JobPage::New, "playwright", "", 200, page).await;
        assert!(pw.is_empty(), "{pw:?}");
    }

    #[test]
    fn job_page_is_default_or_new() {
        let parse = |a: &[&str]| bench_args(a).map(|b| b.job_page);
        assert_eq!(parse(&[]).unwrap(), JobPage::Default);
        assert_eq!(parse(&["--job-page", "new"]).unwrap(), JobPage::New);
        assert_eq!(parse(&["--job-page", "default"]).unwrap(), JobPage::Default);
        for bad in ["", "first", "NEW ", "newPage"] {
            assert!(parse(&["--job-page", bad]).is_err(), "{bad:?}");
        }
        assert_eq!(serde_json::to_value(JobPage::New).unwrap(), "new");
        assert_eq!(serde_json::to_value(JobPage::Default).unwrap(), "default");
    }

    #[test]
    fn the_playwright_version_is_the_one_install_sh_and_compat_pin() {
        let install = include_str!("../../../install.sh");
        assert!(
            install.contains(&format!("\nPLAYWRIGHT_VERSION=\"{PLAYWRIGHT_VERSION}\"\n")),
            "install.sh pins another playwright-core than {PLAYWRIGHT_VERSION}"
        );
        let package: Value =
            serde_json::from_str(include_str!("../../../tests/compat/package.json")).unwrap();
        assert_eq!(
            package["devDependencies"]["playwright-core"]
                .as_str()
                .or(package["dependencies"]["playwright-core"].as_str()),
            Some(PLAYWRIGHT_VERSION),
            "tests/compat/package.json"
        );
        let lock: Value =
            serde_json::from_str(include_str!("../../../tests/compat/package-lock.json")).unwrap();
        assert_eq!(
            lock["packages"]["node_modules/playwright-core"]["version"], PLAYWRIGHT_VERSION,
            "tests/compat/package-lock.json"
        );
    }

    #[tokio::test]
    async fn an_oversized_metrics_answer_is_not_read() {
        async fn serve(body: String) -> Option<Creates> {
            let app = axum::Router::new()
                .route("/metrics", axum::routing::get(move || async move { body }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let api = format!("http://{}", listener.local_addr().unwrap());
            let server = tokio::spawn(async move { axum::serve(listener, app).await });
            let got = creates(&reqwest::Client::new(), &api).await;
            server.abort();
            got
        }
        let line = "bro_session_create_seconds_count{node=\"local\",kind=\"warm\"} 3\n";
        assert_eq!(
            serve(line.to_string()).await,
            Some(Creates { warm: 3, cold: 0 })
        );
        let huge = format!("{line}{}", "#".repeat(SCRAPE_MAX));
        assert_eq!(serve(huge).await, None);
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
