//! `bro bench`: measures, in one run so the ratios are fair, what a session costs over a raw
//! Chromium launch, what the proxy costs over a direct CDP socket, and what bro's processes
//! weigh. It starts its own daemon in a temporary home (or uses `--home`).

mod cluster;
mod jobs;

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams,
};
use chromiumoxide::cdp::browser_protocol::target::{SessionId, TargetId};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::types::Command;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::DaemonArgs;
use crate::client::{self, DaemonClient};
use crate::config;
use crate::host::{LaunchSpec, WorkerHost};
use crate::output;
use crate::paths::Paths;
use crate::protocol::session::{self, SessionOptions, SessionStatus, WorkerInfo};
use crate::settings::{Overrides, Settings};
use crate::wait::wait_until;
use crate::worker::cdp::Cdp;
use crate::worker::page::{by_value, clip};
use crate::worker::{chromium, process};

/// Options of `bro bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Samples of each sequential measurement.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Clients creating sessions at once in the concurrency test.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Sessions created in the concurrency test.
    #[arg(long, default_value_t = 12)]
    pub sessions: usize,
    /// Live sessions for the memory figures.
    #[arg(long, default_value_t = 10)]
    pub live: usize,
    /// CDP round trips measured, direct and through the proxy.
    #[arg(long, default_value_t = 500)]
    pub round_trips: usize,
    /// Full-page screenshots (about 8 MB each) fetched, direct and through the proxy.
    #[arg(long, default_value_t = 5)]
    pub screenshots: usize,
    /// Warm browsers of the daemon bench starts (`--warm`); warm creates are measured when
    /// the daemon has any.
    #[arg(long, default_value_t = 2)]
    pub warm: u32,
    /// Jobs each side runs in each row of the job benchmark: a fresh browser opens a local
    /// page, reads its title, takes a screenshot and closes, through bro and with Playwright's
    /// own launch of the same Chromium, in turns; cold, and warm with a warm pool. Needs node and
    /// playwright-core (install.sh installs it). 0 skips it. [default: 24; without --jobs
    /// or --playwright, skipped with a notice when node or playwright-core is missing]
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=jobs::MAX_JOBS as i64))]
    pub jobs: Option<u32>,
    /// Jobs running at once in the job benchmark: a comma-separated list, each level measured
    /// in the same run (cold, then warm), in the order given; repeats are dropped.
    #[arg(long, value_name = "C,…", value_delimiter = ',', default_value = "1,4",
          value_parser = clap::value_parser!(u32).range(1..=jobs::MAX_CONCURRENCY as i64))]
    pub job_concurrency: Vec<u32>,
    /// The page bro's jobs work in: `default` (the session's own first page,
    /// `browser.contexts()[0].pages()[0]`, as steel's examples do: it is open when the create
    /// returns, but Playwright emulates no viewport there, so its screenshot first injects its
    /// utility script) or `new` (`browser.newPage()`, the very call Playwright's side makes: a
    /// new context and renderer, with a viewport).
    #[arg(long, value_enum, default_value_t = jobs::JobPage::Default)]
    pub job_page: jobs::JobPage,
    /// playwright-core for the job benchmark: its package dir, or a dir with
    /// node_modules/playwright-core [default: where install.sh puts it]
    #[arg(long, env = "BRO_PLAYWRIGHT", value_name = "DIR")]
    pub playwright: Option<std::path::PathBuf>,
    /// Use the daemon of this bro home instead of starting one.
    #[arg(long, value_name = "DIR", conflicts_with = "cluster")]
    pub home: Option<std::path::PathBuf>,
    /// Compare creates through one node of a 3-node cluster (on 127.0.0.2-4, in temporary
    /// homes) with a single node, in turns; uses --runs, --concurrency and --sessions.
    #[arg(long)]
    pub cluster: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Percentiles of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    fn of(mut ms: Vec<f64>) -> Stats {
        ms.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| {
            ms.get(
                ((q * ms.len() as f64).ceil() as usize)
                    .saturating_sub(1)
                    .min(ms.len().saturating_sub(1)),
            )
            .copied()
            .unwrap_or(0.0)
        };
        Stats {
            n: ms.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: ms.last().copied().unwrap_or(0.0),
        }
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Runs the benchmark and prints its table (or JSON).
pub async fn run(args: BenchArgs) -> Result<()> {
    if args.cluster {
        return cluster::run(&args).await;
    }
    let temp = match &args.home {
        Some(_) => None,
        None => Some(private_temp_dir("bro-bench")?),
    };
    let paths = match (&args.home, &temp) {
        (Some(home), _) => Paths::under(home.clone()),
        (None, Some(dir)) => Paths::under(dir.clone()),
        _ => bail!("no home"),
    };
    let started_here = temp.is_some();
    // Before any daemon starts: a missing node or playwright-core is said at once.
    // Asked for (--jobs or --playwright): a miss is an error; by default, a notice.
    let driver = match (args.jobs, &args.playwright) {
        (Some(0), _) => None,
        (None, None) => match jobs::driver(None, &paths) {
            Ok(d) => Some(d),
            Err(e) => {
                output::progress(&format!("skipping the job benchmark: {e:#}"));
                None
            }
        },
        _ => Some(jobs::driver(args.playwright.as_deref(), &paths)?),
    };
    if started_here {
        paths.create_all()?;
        output::progress("starting a daemon in a temporary home");
        // bench's own choices over the `BRO_*` variables, over the (empty) home's file.
        let mut over: Overrides = DaemonArgs::from_env()?.into();
        over.port = Some(0);
        let most = args
            .sessions
            .max(args.live)
            .max(args.job_concurrency.iter().copied().max().unwrap_or(1) as usize);
        over.max_sessions = Some(u32::try_from(most + 2).unwrap_or(u32::MAX));
        over.warm = Some(args.warm);
        over.default_timeout = Some(Duration::from_secs(600));
        let file = config::Config::load(&config::path(&paths.config_dir))?;
        let settings = Settings::merge(over, file).map_err(anyhow::Error::msg)?;
        client::start_daemon(&paths, Some(&settings)).await?;
    }
    let result = measure(&paths, &args, driver.as_ref()).await;
    if started_here {
        let _ = DaemonClient::new(paths.socket()).shutdown(false).await;
        let gone = crate::wait::wait_for(Duration::from_secs(30), process::EXIT_POLL, || {
            !paths.socket().exists()
        })
        .await;
        if gone && let Some(dir) = &temp {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let report = result?;
    if args.json {
        output::json(&report);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// A new directory only this user can enter, under the temp dir, named `prefix-<random>`:
/// never one that exists already (another user could have made it, with a config of theirs
/// in it).
pub(crate) fn private_temp_dir(prefix: &str) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("{prefix}-{name}"));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

async fn measure(paths: &Paths, args: &BenchArgs, driver: Option<&jobs::Driver>) -> Result<Value> {
    let status = DaemonClient::new(paths.socket())
        .status()
        .await
        .context("the daemon does not answer")?;
    let api = status.api_url.clone();
    let http = reqwest::Client::new();
    let chromium_path = std::path::PathBuf::from(&status.chromium);
    // The daemon's (an older daemon does not say: its browsers ran at its own priority).
    let browser_nice = status
        .limits
        .as_ref()
        .and_then(|l| l.browser_nice)
        .unwrap_or(0);

    // Dimensions are a launch flag: these creates never take a warm browser. The raw
    // launches get the same flag, so both launch the same browser.
    let (width, height) = COLD_SIZE;
    let cold = json!({ "dimensions": { "width": width, "height": height } });
    let daemon = DaemonClient::new(paths.socket());

    // Idle: before this run has created anything.
    let idle_daemon = rss_kib(status.pid);
    let idle_restate = status.restate.pid.map(rss_kib).unwrap_or(0);

    // Raw launches and creates alternate, so both see the same machine.
    output::progress("raw Chromium launches and sequential creates, alternating");
    let raw_host = RawHost::new(&chromium_path, browser_nice, paths)?;
    let (mut raw, mut create, mut release) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs {
        raw.push(raw_host.launch_and_stop().await?);
        let t = Instant::now();
        let s = create_session(&http, &api, &cold).await?;
        create.push(ms_since(t));
        let t = Instant::now();
        release_session(&http, &api, &s).await?;
        release.push(ms_since(t));
    }
    drop(raw_host);
    // Each create against the raw launch just before it: the machine's drift over the run
    // (other tenants of a shared VM) cancels out of these ratios.
    let paired = Stats::of(
        create
            .iter()
            .zip(&raw)
            .map(|(c, r)| c / r.max(0.001))
            .collect(),
    );
    let raw = Stats::of(raw);

    let warm = match status.warm {
        0 => None,
        n => {
            output::progress("sequential creates from the warm pool");
            Some(warm_creates(&daemon, &http, &api, n, args.runs).await?)
        }
    };

    output::progress("CDP round trips, direct and through the proxy");
    // On a quiet machine: one session of its own, before the concurrency test fills it.
    let rec = create_session(&http, &api, &cold).await?;
    let probe_id = rec["id"].as_str().unwrap_or_default().to_string();
    let worker = worker_of(paths, &probe_id)?;
    let direct_url = crate::worker::page::browser_url(&worker);
    let proxy_url = rec["websocketUrl"].as_str().unwrap_or_default();
    let mut pair = CdpPair::open(&direct_url, proxy_url, "about:blank").await?;
    let (direct, proxied) = pair.round_trips(args.round_trips).await?;
    pair.close().await;

    output::progress("full-page screenshots, direct and through the proxy");
    let mut pair = CdpPair::open(&direct_url, proxy_url, NOISE_PAGE).await?;
    let (shots_direct, shots_proxied) = pair.screenshots(args.screenshots).await?;
    pair.close().await;

    release_session(&http, &api, &rec).await?;

    output::progress("concurrent creates");
    let t = Instant::now();
    let per_client = args.sessions.div_ceil(args.concurrency.max(1));
    let clients = (0..args.concurrency.max(1)).map(|_| {
        let (http, api, cold) = (http.clone(), api.clone(), cold.clone());
        async move {
            let mut out = Vec::new();
            for _ in 0..per_client {
                let t = Instant::now();
                let r = http
                    .post(format!("{api}/v1/sessions"))
                    .json(&cold)
                    .send()
                    .await;
                let ok = matches!(&r, Ok(r) if r.status().is_success());
                let id = match r {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_string)),
                    Err(_) => None,
                };
                out.push((ms_since(t), ok, id));
            }
            out
        }
    });
    let results: Vec<(f64, bool, Option<String>)> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    let wall = t.elapsed().as_secs_f64();
    let failures = results.iter().filter(|r| !r.1).count();
    let concurrent = Stats::of(results.iter().map(|r| r.0).collect());
    let created: Vec<String> = results.into_iter().filter_map(|r| r.2).collect();
    let throughput = created.len() as f64 / wall;

    output::progress("memory with live sessions");
    let mut live = created.clone();
    while live.len() < args.live {
        let s = create_session(&http, &api, &json!({})).await?;
        live.push(s["id"].as_str().unwrap_or_default().to_string());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dash = daemon.dashboard().await?;
    let browsers_kib: u64 = dash
        .sessions
        .iter()
        .filter(|r| live.contains(&r.session.id))
        .map(|r| r.mem_kib)
        .sum();
    let all_live = dash
        .sessions
        .iter()
        .filter(|r| r.session.status == SessionStatus::Live)
        .count();
    let busy_daemon = rss_kib(status.pid);
    let busy_restate = status.restate.pid.map(rss_kib).unwrap_or(0);
    http.post(format!("{api}/v1/sessions/release"))
        .send()
        .await?;

    let jobs = match driver {
        Some(driver) => {
            // After the release above: the jobs start on a quiet daemon with a full pool.
            let b = jobs::Bench {
                driver,
                daemon: &daemon,
                api: &api,
                chromium: &chromium_path,
                jobs: args.jobs.unwrap_or(jobs::DEFAULT_JOBS),
                concurrency: jobs::levels(&args.job_concurrency),
                page: args.job_page,
                warm: status.warm,
                browser_nice,
            };
            jobs::measure(&b).await?
        }
        None => Value::Null,
    };

    let raw_p50 = raw.p50.max(0.001);
    let create_s = Stats::of(create);
    Ok(json!({
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                     "priority_boost": crate::worker::process::children_may_boost_priority(),
                     "browser_nice": browser_nice },
        "raw_launch_ms": raw,
        "create_ms": create_s,
        "release_ms": Stats::of(release),
        "concurrent": { "clients": args.concurrency, "sessions": args.sessions, "failures": failures,
                        "per_second": throughput, "latency_ms": concurrent },
        "warm_create_ms": warm,
        "cdp_round_trip_ms": { "direct": direct, "proxy": proxied },
        "screenshot": { "direct": shots_direct, "proxy": shots_proxied },
        "memory_kib": { "daemon_idle": idle_daemon, "restate_idle": idle_restate,
                        "live_sessions": all_live, "daemon_busy": busy_daemon, "restate_busy": busy_restate,
                        "browsers_pss": browsers_kib, "per_session_pss": browsers_kib / live.len().max(1) as u64 },
        "jobs": jobs,
        "ratios": { "create_p50_over_raw_p50": create_s.p50 / raw_p50,
                    "create_over_raw_paired_p50": paired.p50,
                    "warm_create_p50_over_raw_p50": warm.map(|w| w.p50 / raw_p50),
                    "proxy_p50_minus_direct_p50_ms": proxied.p50 - direct.p50,
                    "screenshot_proxy_over_direct_throughput":
                        shots_proxied.mb_per_s / shots_direct.mb_per_s.max(0.001) },
    }))
}

/// The window of the cold creates and of the raw launches they are compared with: a launch
/// flag, so those creates never take a warm browser.
const COLD_SIZE: (u32, u32) = (1280, 800);

/// Launches with bro's own code path (spawn, DevToolsActivePort, /json/version) and stops.
/// Launches browsers with bro's flags outside any daemon: the baseline.
struct RawHost {
    host: std::sync::Arc<dyn WorkerHost>,
    scratch: std::path::PathBuf,
}

impl RawHost {
    /// Its browsers run at the daemon's `browser_nice`, as the creates' do.
    fn new(chromium_path: &std::path::Path, browser_nice: u32, paths: &Paths) -> Result<RawHost> {
        let scratch = paths.runtime_dir.join("bench-raw");
        let host = crate::worker::scratch_host(
            chromium::executable(chromium_path).context("chromium")?,
            Vec::new(),
            browser_nice,
            &scratch,
        );
        Ok(RawHost { host, scratch })
    }

    /// Milliseconds from spawn to CDP ready; the browser is stopped after.
    async fn launch_and_stop(&self) -> Result<f64> {
        let (width, height) = COLD_SIZE;
        let spec = LaunchSpec {
            session_id: session::SessionId::random(),
            options: SessionOptions {
                dimensions: Some(session::Dimensions { width, height }),
                ..SessionOptions::default()
            },
            context: None,
            warm: false,
        };
        let t = Instant::now();
        let w = self.host.launch(spec).await?;
        let ms = ms_since(t);
        self.host.stop(w).await?;
        Ok(ms)
    }
}

impl Drop for RawHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// A page of random pixels: its PNG does not compress, so each screenshot is about 8 MB.
const NOISE_PAGE: &str = "data:text/html,<body style=margin:0><canvas id=c width=1280 height=1600>\
    </canvas><script>const c=document.getElementById('c').getContext('2d');\
    const d=c.createImageData(1280,1600);crypto.getRandomValues(d.data.subarray(0,65536));\
    for(let i=65536;i<d.data.length;i+=65536)d.data.copyWithin(i,0,65536);\
    for(let i=3;i<d.data.length;i+=4)d.data[i]=255;c.putImageData(d,0,0);</script>";

/// One page of one browser, reached twice: straight over its DevTools socket and through
/// bro's proxy. Measurements alternate between the two, so both see the same page and load.
struct CdpPair {
    direct: (Cdp, SessionId),
    proxy: (Cdp, SessionId),
    target: TargetId,
}

impl CdpPair {
    async fn open(direct_url: &str, proxy_url: &str, page: &str) -> Result<CdpPair> {
        let mut direct = Cdp::connect(direct_url).await?;
        let (target, direct_session) = direct.open_page(page).await?;
        let mut loaded = EvaluateParams::new(
            "new Promise(r => document.readyState === 'complete' ? r(1) : addEventListener('load', () => r(1)))",
        );
        loaded.await_promise = Some(true);
        direct.call_in(Some(&direct_session), loaded).await?;
        let mut proxy = Cdp::connect(proxy_url).await?;
        let proxy_session = proxy.attach(&target).await?;
        Ok(CdpPair {
            direct: (direct, direct_session),
            proxy: (proxy, proxy_session),
            target,
        })
    }

    /// Times one call on each side; returns (direct ms, proxy ms) and the proxy's answer.
    async fn both<C: Command + Clone>(&mut self, cmd: &C) -> Result<(f64, f64, C::Response)> {
        let (cdp, session) = &mut self.direct;
        let t = Instant::now();
        cdp.call_in(Some(&*session), cmd.clone()).await?;
        let direct = ms_since(t);
        let (cdp, session) = &mut self.proxy;
        let t = Instant::now();
        let answer = cdp.call_in(Some(&*session), cmd.clone()).await?;
        Ok((direct, ms_since(t), answer))
    }

    /// `Runtime.evaluate` round trips, alternating.
    async fn round_trips(&mut self, n: usize) -> Result<(Stats, Stats)> {
        let eval = by_value("1+1");
        for _ in 0..10 {
            self.both(&eval).await?;
        }
        let (mut direct, mut proxy) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let (d, p, _) = self.both(&eval).await?;
            direct.push(d);
            proxy.push(p);
        }
        Ok((Stats::of(direct), Stats::of(proxy)))
    }

    /// Full-page PNG screenshots, alternating.
    async fn screenshots(&mut self, n: usize) -> Result<(Throughput, Throughput)> {
        let shot = CaptureScreenshotParams {
            format: Some(CaptureScreenshotFormat::Png),
            capture_beyond_viewport: Some(true),
            clip: clip(1280.0, 1600.0, 1.0),
            ..Default::default()
        };
        self.both(&shot).await?;
        let (mut direct, mut proxy, mut bytes) = (Vec::new(), Vec::new(), 0);
        for _ in 0..n.max(1) {
            let (d, p, answer) = self.both(&shot).await?;
            direct.push(d);
            proxy.push(p);
            bytes = AsRef::<str>::as_ref(&answer.data).len();
        }
        let mb = bytes as f64 / 1e6;
        Ok((Throughput::of(mb, direct), Throughput::of(mb, proxy)))
    }

    async fn close(mut self) {
        let _ = self.direct.0.close_page(&self.target).await;
    }
}

/// `POST /v1/sessions` with `body`; the session's JSON.
async fn create_session(http: &reqwest::Client, api: &str, body: &Value) -> Result<Value> {
    Ok(http
        .post(format!("{api}/v1/sessions"))
        .json(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// `POST /v1/sessions/{id}/release` for a session's JSON.
async fn release_session(http: &reqwest::Client, api: &str, session: &Value) -> Result<()> {
    let id = session["id"].as_str().unwrap_or_default();
    http.post(format!("{api}/v1/sessions/{id}/release"))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Creates that fit the warm pool, each once the pool is full again (so every one is a hit).
async fn warm_creates(
    daemon: &DaemonClient,
    http: &reqwest::Client,
    api: &str,
    target: u32,
    runs: usize,
) -> Result<Stats> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        wait_pool_full(daemon, target).await?;
        // A browser that has just come up still starts its helper processes: measure against
        // a settled pool, as a pool between bursts of creates is.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let t = Instant::now();
        let s = create_session(http, api, &json!({})).await?;
        samples.push(ms_since(t));
        release_session(http, api, &s).await?;
    }
    Ok(Stats::of(samples))
}

/// Waits (up to 30 s) until the daemon's warm pool holds `target` ready browsers.
async fn wait_pool_full(daemon: &DaemonClient, target: u32) -> Result<()> {
    // A refill may wait for spare CPU, then launch: each refill's longest, so a pool that
    // is only slow to refill is not taken for a broken one.
    let budget = crate::worker::load::REFILL_WAIT + crate::worker::chromium::READY_TIMEOUT;
    let full = wait_until(budget, Duration::from_millis(50), || async move {
        let ready = daemon
            .status()
            .await
            .ok()
            .and_then(|s| s.pool)
            .is_some_and(|p| p.warm_ready.len() >= target as usize);
        if ready {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await;
    if full.is_continue() {
        bail!("the warm pool did not refill within {} s", budget.as_secs());
    }
    Ok(())
}

/// Throughput of large CDP messages: full-page PNG screenshots of a page of noise.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Throughput {
    pub n: usize,
    /// Size of one answer, in MB (10^6 bytes).
    pub mb: f64,
    pub p50_ms: f64,
    /// `mb` over the median time.
    pub mb_per_s: f64,
}

impl Throughput {
    fn of(mb: f64, ms: Vec<f64>) -> Throughput {
        let stats = Stats::of(ms);
        Throughput {
            n: stats.n,
            mb,
            p50_ms: stats.p50,
            mb_per_s: mb / (stats.p50 / 1000.0).max(1e-6),
        }
    }
}

fn worker_of(paths: &Paths, id: &str) -> Result<WorkerInfo> {
    crate::worker::worker_in(&paths.sessions_dir().join(id))
        .with_context(|| format!("no browser recorded for session {id}"))
}

fn rss_kib(pid: u32) -> u64 {
    process::kib(pid, "status", "VmRSS").unwrap_or(0)
}

fn print_table(r: &Value) {
    let row = |name: &str, s: &Value| {
        vec![
            name.to_string(),
            format!("{:.1}", s["p50"].as_f64().unwrap_or(0.0)),
            format!("{:.1}", s["p95"].as_f64().unwrap_or(0.0)),
            format!("{:.1}", s["p99"].as_f64().unwrap_or(0.0)),
            s["n"].to_string(),
        ]
    };
    let mut rows = vec![
        row(
            &format!(
                "raw Chromium launch → CDP ready, {}×{}",
                COLD_SIZE.0, COLD_SIZE.1
            ),
            &r["raw_launch_ms"],
        ),
        row(
            &format!(
                "POST /v1/sessions → live, cold, {}×{}",
                COLD_SIZE.0, COLD_SIZE.1
            ),
            &r["create_ms"],
        ),
        row("release", &r["release_ms"]),
        row(
            &format!("create, {} clients at once", r["concurrent"]["clients"]),
            &r["concurrent"]["latency_ms"],
        ),
        row("CDP round trip, direct", &r["cdp_round_trip_ms"]["direct"]),
        row(
            "CDP round trip, through bro",
            &r["cdp_round_trip_ms"]["proxy"],
        ),
    ];
    if !r["warm_create_ms"].is_null() {
        rows.insert(
            2,
            row("POST /v1/sessions → live, warm pool", &r["warm_create_ms"]),
        );
    }
    output::line(&output::table(&["ms", "p50", "p95", "p99", "n"], &rows));
    let m = &r["memory_kib"];
    let mib = |v: &Value| v.as_u64().unwrap_or(0) / 1024;
    output::line("");
    output::line(&format!(
        "concurrent: {} sessions, {:.1}/s, {} failed",
        r["concurrent"]["sessions"],
        r["concurrent"]["per_second"].as_f64().unwrap_or(0.0),
        r["concurrent"]["failures"]
    ));
    output::line(&format!(
        "memory: daemon {} MiB idle, {} MiB with {} live; restate-server {} MiB idle, {} MiB busy; browsers {} MiB PSS ({} MiB per session)",
        mib(&m["daemon_idle"]),
        mib(&m["daemon_busy"]),
        m["live_sessions"],
        mib(&m["restate_idle"]),
        mib(&m["restate_busy"]),
        mib(&m["browsers_pss"]),
        mib(&m["per_session_pss"])
    ));
    let shot = |k: &str| {
        let t = &r["screenshot"][k];
        format!(
            "{:.1} MB in {:.1} ms = {:.0} MB/s",
            t["mb"].as_f64().unwrap_or(0.0),
            t["p50_ms"].as_f64().unwrap_or(0.0),
            t["mb_per_s"].as_f64().unwrap_or(0.0)
        )
    };
    output::line(&format!(
        "screenshot: direct {}; through bro {}",
        shot("direct"),
        shot("proxy")
    ));
    let ratio = |k: &str| r["ratios"][k].as_f64().unwrap_or(f64::NAN);
    let warm = match r["ratios"]["warm_create_p50_over_raw_p50"].as_f64() {
        Some(w) => format!("{w:.3}"),
        None => "n/a (no warm pool)".to_string(),
    };
    output::line(&format!(
        "ratios: cold create p50 / raw launch p50 = {:.2} (p50 of each create over the raw launch \
         just before it: {:.2}); warm create p50 / raw launch p50 = {warm}; \
         proxy p50 − direct p50 = {:.3} ms; screenshot throughput proxy / direct = {:.2}",
        ratio("create_p50_over_raw_p50"),
        ratio("create_over_raw_paired_p50"),
        ratio("proxy_p50_minus_direct_p50_ms"),
        ratio("screenshot_proxy_over_direct_throughput"),
    ));
    jobs::print(&r["jobs"]);
}
