//! `bro bench --cluster`: creates through one node of a 3-node cluster against a single node,
//! on this machine, in one run. Loopback addresses 127.0.0.2, .3 and .4 stand in for three
//! machines (each node with its own temporary home, like the integration test); the single
//! node runs beside them. The two are measured in turns (single, cluster, cluster, single),
//! so both see the same machine.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{BenchArgs, Stats, create_session, ms_since, release_session};
use crate::cli::DaemonArgs;
use crate::client::{self, DaemonClient};
use crate::config;
use crate::output;
use crate::paths::Paths;
use crate::settings::{Overrides, Settings};

/// The stand-in machines.
const ADDRS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

/// A daemon bench started, in its own temporary home.
struct Node {
    paths: Paths,
    api: String,
}

/// Runs the comparison and prints its table (or JSON).
pub async fn run(args: &BenchArgs) -> Result<()> {
    let dir = super::private_temp_dir("bro-bench-cluster")?;
    let mut started = Vec::new();
    // Ctrl-C stops the nodes too (they run in process groups of their own): taken from
    // here on, acted on once every start has come back (a start cut short could leave a
    // daemon no one knows of).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let result = match start_nodes(&dir, args, &mut started).await {
        Ok(()) => tokio::select! {
            result = compare(&started, args) => result,
            _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted")),
        },
        Err(err) => Err(err),
    };
    output::progress("stopping the nodes");
    if stop_all(&started).await {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!(
            "bro: a node did not stop within 60 s; its home is left in {}",
            dir.display()
        );
    }
    let report = result?;
    if args.json {
        output::json(&report);
    } else {
        print(&report);
    }
    Ok(())
}

/// Starts the nodes, each into `started` as soon as it runs, for the caller to stop.
async fn start_nodes(dir: &Path, args: &BenchArgs, started: &mut Vec<Node>) -> Result<()> {
    let capacity = u32::try_from(args.sessions + 2).unwrap_or(u32::MAX);
    output::progress("starting a single node and a 3-node cluster in temporary homes");
    let single = start_single(&dir.join("single"), capacity).await?;
    started.push(single);
    start_cluster(dir, capacity, started).await
}

/// Measures the single node (`started[0]`) and the cluster through n2 (`started[2]`).
async fn compare(started: &[Node], args: &BenchArgs) -> Result<Value> {
    {
        // Through n2: not the node that provisioned the cluster.
        let (single, cluster) = (&started[0], &started[2]);
        let http = reqwest::Client::builder().no_proxy().build()?;
        let (mut seq_single, mut seq_cluster) = (Vec::new(), Vec::new());
        let (mut conc_single, mut conc_cluster) = (Vec::new(), Vec::new());
        for (i, on_single) in [true, false, false, true].into_iter().enumerate() {
            let (name, node) = match on_single {
                true => ("single node", single),
                false => ("cluster", cluster),
            };
            output::progress(&format!("turn {} of 4: {name}", i + 1));
            let seq = sequential(&http, &node.api, args.runs.div_ceil(2)).await?;
            let conc = concurrent(&http, &node.api, args.concurrency, args.sessions).await?;
            let (s, c) = match on_single {
                true => (&mut seq_single, &mut conc_single),
                false => (&mut seq_cluster, &mut conc_cluster),
            };
            s.extend(seq);
            c.push(conc);
        }
        let per_second = |runs: &[f64]| runs.iter().sum::<f64>() / runs.len().max(1) as f64;
        let (ps_single, ps_cluster) = (per_second(&conc_single), per_second(&conc_cluster));
        let (seq_single, seq_cluster) = (Stats::of(seq_single), Stats::of(seq_cluster));
        Ok(json!({
            "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
            "create_release_ms": { "single": seq_single, "cluster": seq_cluster },
            "creates_per_second": { "clients": args.concurrency, "sessions": args.sessions,
                                    "single": ps_single, "cluster": ps_cluster },
            "ratios": { "cluster_over_single_per_second": ps_cluster / ps_single.max(0.001),
                        "cluster_over_single_p50": seq_cluster.p50 / seq_single.p50.max(0.001) },
        }))
    }
}

/// `runs` creates and releases one after the other: each create's time.
async fn sequential(http: &reqwest::Client, api: &str, runs: usize) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let s = create_session(http, api, &json!({})).await?;
        out.push(ms_since(t));
        release_session(http, api, &s).await?;
    }
    Ok(out)
}

/// `sessions` creates from `clients` clients at once; creates per second. All are released
/// after.
async fn concurrent(
    http: &reqwest::Client,
    api: &str,
    clients: usize,
    sessions: usize,
) -> Result<f64> {
    let per_client = sessions.div_ceil(clients.max(1));
    let t = Instant::now();
    let runs = (0..clients.max(1)).map(|_| async move {
        let mut made = Vec::new();
        for _ in 0..per_client {
            made.push(create_session(http, api, &json!({})).await?);
        }
        Ok::<_, anyhow::Error>(made)
    });
    let made: Vec<Value> = futures_util::future::try_join_all(runs)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let per_second = made.len() as f64 / t.elapsed().as_secs_f64();
    for s in &made {
        release_session(http, api, s).await?;
    }
    Ok(per_second)
}

/// Settings for a home of bench's: its config file, under bench's own choices.
fn settings(paths: &Paths, capacity: u32) -> Result<Settings> {
    let mut over: Overrides = DaemonArgs::from_env()?.into();
    over.port = Some(0);
    over.max_sessions = Some(capacity);
    over.warm = Some(0);
    over.default_timeout = Some(Duration::from_secs(600));
    let file = config::Config::load(&config::path(&paths.config_dir))?;
    Settings::merge(over, file).map_err(anyhow::Error::msg)
}

async fn start_single(home: &Path, capacity: u32) -> Result<Node> {
    let paths = Paths::under(home.to_path_buf());
    paths.create_all()?;
    let status = client::start_daemon(&paths, Some(&settings(&paths, capacity)?)).await?;
    Ok(Node {
        api: status.api_url,
        paths,
    })
}

/// Starts the three nodes at once (each waits for the others to form the cluster), into
/// `started`.
async fn start_cluster(dir: &Path, capacity: u32, started: &mut Vec<Node>) -> Result<()> {
    let secret = dir.join("cluster.key");
    let mut bytes = [0u8; 48];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret)?;
        file.write_all(hex(&bytes).as_bytes())?;
    }
    let (fabric, sdk) = (shared_port()?, shared_port()?);
    let members = ADDRS.map(|a| format!("{a:?}")).join(", ");
    let mut homes = Vec::new();
    for (i, addr) in ADDRS.iter().enumerate() {
        let paths = Paths::under(dir.join(format!("n{}", i + 1)));
        paths.create_all()?;
        let config = format!(
            "node = \"n{}\"\nbind = \"{addr}\"\n\n[cluster]\nmembers = [{members}]\n\
             secret_file = {}\nfabric_port = {fabric}\nsdk_port = {sdk}\n",
            i + 1,
            toml::Value::String(secret.display().to_string()),
        );
        std::fs::write(config::path(&paths.config_dir), config)?;
        homes.push(paths);
    }
    let starts = homes.iter().map(|paths| async move {
        let settings = settings(paths, capacity)?;
        client::start_daemon(paths, Some(&settings))
            .await
            .with_context(|| format!("starting the node of {}", paths.display_home()))
    });
    let statuses = futures_util::future::join_all(starts).await;
    let mut failed = None;
    for (paths, status) in homes.into_iter().zip(statuses) {
        // A node that failed to start may still be running: the caller stops it too.
        let api = match status {
            Ok(status) => status.api_url,
            Err(err) => {
                failed.get_or_insert(err);
                String::new()
            }
        };
        started.push(Node { api, paths });
    }
    if let Some(err) = failed {
        return Err(err);
    }
    // Every node must see the others before creates are placed.
    let client = DaemonClient::new(started[2].paths.socket());
    let formed = crate::wait::wait_until(
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let healthy = client
                .cluster_status()
                .await
                .is_ok_and(|st| st.nodes.iter().filter(|n| n.healthy).count() == ADDRS.len());
            if healthy {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .await;
    if formed.is_continue() {
        bail!("the 3 nodes did not all become healthy within 60 s");
    }
    Ok(())
}

/// Stops every node bench started (their sessions are released), and waits for them to go;
/// false when one did not within 60 s.
async fn stop_all(nodes: &[Node]) -> bool {
    let stops = nodes.iter().map(|n| async move {
        let _ = DaemonClient::new(n.paths.socket()).shutdown(false).await;
        crate::wait::wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
            !n.paths.socket().exists()
        })
        .await
    });
    futures_util::future::join_all(stops)
        .await
        .into_iter()
        .all(|gone| gone)
}

/// A TCP port free on 127.0.0.1 and on every stand-in address.
fn shared_port() -> Result<u16> {
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if ADDRS
            .iter()
            .all(|a| std::net::TcpListener::bind((*a, port)).is_ok())
        {
            return Ok(port);
        }
    }
    bail!("no port free on every loopback address")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print(r: &Value) {
    let f = |v: &Value| format!("{:.1}", v.as_f64().unwrap_or(0.0));
    let seq = &r["create_release_ms"];
    let conc = &r["creates_per_second"];
    println!("creates through one node: a 3-node cluster against a single node, one run\n");
    let rows = vec![
        vec![
            "create → live, one at a time, p50 (ms)".to_string(),
            f(&seq["single"]["p50"]),
            f(&seq["cluster"]["p50"]),
            format!(
                "{:.2}",
                r["ratios"]["cluster_over_single_p50"]
                    .as_f64()
                    .unwrap_or(0.0)
            ),
        ],
        vec![
            "create → live, one at a time, p95 (ms)".to_string(),
            f(&seq["single"]["p95"]),
            f(&seq["cluster"]["p95"]),
            String::new(),
        ],
        vec![
            format!("creates per second, {} clients at once", conc["clients"]),
            f(&conc["single"]),
            f(&conc["cluster"]),
            format!(
                "{:.2}",
                r["ratios"]["cluster_over_single_per_second"]
                    .as_f64()
                    .unwrap_or(0.0)
            ),
        ],
    ];
    println!(
        "{}",
        output::table(&["", "SINGLE", "CLUSTER", "RATIO"], &rows)
    );
}
