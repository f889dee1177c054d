//! The command line, as clap derive types. Doc comments are the help text; no I/O here.

pub mod bench;
pub mod cluster;
pub mod daemon;
pub mod doctor;
pub mod logs;
pub mod session;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

use crate::protocol::session::SessionStatus;
use crate::settings::Overrides;

/// bro: one headless Chromium per session, driven by the steel-browser API
///
/// bro runs a background daemon that starts a Chromium for every session and serves the
/// steel-browser API and CDP websockets on localhost, so Playwright, Puppeteer and steel-sdk
/// scripts work unchanged. Session state lives in Restate: a daemon killed at any moment
/// restarts and finds its sessions again.
///
/// Examples:
///   bro session create                 # prints the session id and its CDP websocket URL
///   bro session list
///   bro session kill --all
#[derive(Debug, Parser)]
#[command(
    name = "bro",
    version,
    propagate_version = true,
    max_term_width = 100,
    verbatim_doc_comment
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run, start, stop or inspect the bro daemon.
    Daemon(Box<DaemonCommand>),
    /// Create, list, inspect and kill browser sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Inspect the cluster of bro nodes this daemon belongs to.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Measure a session's cost over a raw Chromium launch, the proxy's over direct CDP,
    /// bro's memory, and jobs per second through bro against Playwright's own launch of the
    /// same Chromium; starts its own daemon in a temporary home
    ///
    /// Every figure comes from one run: the jobs table has a row per level of
    /// --job-concurrency (default 1,4), cold and warm, with bro's warm hits; a row where a
    /// side had failed jobs gives no ratio, and says why.
    ///
    /// Examples:
    ///   bro bench                   (jobs 1 and 4 at a time, cold and warm pool of 2)
    ///   bro bench --runs 20 --concurrency 10 --sessions 100 --json
    ///   bro bench --jobs 24 --job-concurrency 1,4,8 --warm 4
    ///   bro bench --jobs 0          (no job benchmark: needs no node or playwright-core)
    #[command(verbatim_doc_comment)]
    Bench(bench::BenchArgs),
    /// A live dashboard: sessions, their browsers, Restate invocations, the cluster's nodes.
    ///
    /// Keys: j/k move, tab switches pane, enter shows details, n creates a session, d kills the
    /// selected one, w shows the browsers, c the cluster's nodes ("single node" outside a
    /// cluster), / filters (by id, status, node or URL), ? shows help, q quits.
    Tui,
    /// Check that bro can run here: Chromium, restate-server, ports, permissions, disk, daemon
    ///
    /// Every failed check (✗) names the command that fixes it; exits 1 when one fails. A `!`
    /// marks a check that passed degraded: bro works, its fix is advised.
    ///
    /// With a [cluster] table in config.toml it also checks this node's part in the cluster:
    /// the secret file (a regular file, mode 0600 or stricter, at least 32 bytes), that `bind`
    /// is one of `members`, that `node` is set (not `local`), that every member accepts a TCP
    /// connection on its fabric port (default 5122) within 1 s, and, when the daemon runs,
    /// how many members are healthy: Restate needs a majority of them (2 of 3, 3 of 5).
    ///
    /// Examples:
    ///   bro doctor
    ///   bro doctor --chromium /opt/chrome/chrome --json
    #[command(verbatim_doc_comment)]
    Doctor {
        #[command(flatten)]
        args: Box<DaemonArgs>,
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script.
    ///
    /// Example: bro completions bash > ~/.local/share/bash-completion/completions/bro
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// `bro daemon` alone runs the daemon in the foreground (logs on stderr, Ctrl-C stops it).
///
/// Examples:
///   bro daemon --port 3001            # foreground
///   bro daemon start --max-sessions 20
///   bro daemon status --json
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, verbatim_doc_comment)]
pub struct DaemonCommand {
    #[command(subcommand)]
    pub action: Option<DaemonAction>,
    #[command(flatten)]
    pub args: DaemonArgs,
    /// Read the resolved settings as JSON on stdin instead (how `bro daemon start` hands them
    /// to the daemon it spawns, the API key included, which no command line may carry).
    #[arg(long, hide = true)]
    pub settings_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum DaemonAction {
    /// Start the daemon in the background; returns once it is healthy.
    Start(Box<DaemonArgs>),
    /// Stop the daemon: its sessions are released and every browser it started is stopped,
    /// unless --keep-sessions. Done within about 50 s whatever state the sessions are in;
    /// this command gives up after 60 s, naming the daemon's pid.
    Stop {
        /// Leave the browsers running; the next daemon re-adopts them.
        #[arg(long)]
        keep_sessions: bool,
    },
    /// Show the daemon's log and restate-server's, each line marked with its source
    ///
    /// Examples:
    ///   bro daemon logs -n 100
    ///   bro daemon logs -f
    #[command(verbatim_doc_comment)]
    Logs {
        /// Keep printing new lines until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines of each log to print first.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
    /// Show whether the daemon runs, its addresses and its Restate.
    Status {
        /// Print JSON (pid, api_url, socket, version, restate.admin_url, ...).
        #[arg(long)]
        json: bool,
    },
}

/// Options of the daemon. Each one comes from its flag, else its `BRO_*` variable, else
/// `config.toml` in bro's config dir, else the default shown.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// TCP port of the steel API and CDP proxy; 0 picks a free one [default: 3000].
    #[arg(long, env = "BRO_PORT")]
    pub port: Option<u16>,
    /// Address of the steel API; keep it on loopback [default: 127.0.0.1].
    #[arg(long, env = "BRO_BIND")]
    pub bind: Option<IpAddr>,
    /// Most sessions live at once on this machine [default: 16].
    #[arg(long, env = "BRO_MAX_SESSIONS", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_sessions: Option<u32>,
    /// Most creates that wait for a slot when all are in use; past it, 429 [default: 64].
    #[arg(long, env = "BRO_MAX_QUEUE", value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub max_queue: Option<u32>,
    /// How long a create waits for a slot before it gets 429, e.g. 30s; at most 1h
    /// [default: 30s].
    #[arg(long, env = "BRO_QUEUE_TIMEOUT", value_parser = crate::config::parse_queue_timeout)]
    pub queue_timeout: Option<u64>,
    /// Keep this many browsers launched and ready: a create without launch options (no
    /// dimensions, userAgent, proxyUrl or blockAds) takes one in milliseconds [default: 0].
    #[arg(long, env = "BRO_WARM", value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub warm: Option<u32>,
    /// Timeout of sessions created without one, e.g. 10m; at most 7d; 0 means none
    /// [default: 5m].
    #[arg(long, env = "BRO_DEFAULT_TIMEOUT", value_parser = crate::config::parse_default_timeout)]
    pub default_timeout: Option<u64>,
    /// How long ended sessions stay retrievable, e.g. 1h; at most 90d; 0 keeps them
    /// [default: 24h].
    #[arg(long, env = "BRO_RETENTION", value_parser = crate::config::parse_retention)]
    pub retention: Option<u64>,
    /// Bytes each session's files (uploads and the browser's downloads) may take, e.g. 512MiB
    /// or 2GiB; past it uploads get 413 and downloads are stopped [default: 1GiB].
    #[arg(long, env = "BRO_FILES_QUOTA", value_name = "SIZE", value_parser = crate::config::parse_files_quota)]
    pub files_quota: Option<u64>,
    /// Bytes the screenshots and PDFs that quick actions hand out by URL (to clients that
    /// accept only JSON, as the steel SDKs) may take on this node, e.g. 1GiB; past it the
    /// oldest are evicted. Each is kept for --retention [default: 256MiB].
    #[arg(long, env = "BRO_ARTIFACTS_QUOTA", value_name = "SIZE", value_parser = crate::config::parse_files_quota)]
    pub artifacts_quota: Option<u64>,
    /// Record sessions (rrweb; served at GET /v1/sessions/{id}/events) unless a create says
    /// otherwise ("record": false). Needs rrweb: ./install.sh installs it [default: false].
    #[arg(long, env = "BRO_RECORD", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub record: Option<bool>,
    /// Bytes each session's recording may take, e.g. 16MiB; past it the recording stops and
    /// its last event says it was cut [default: 64MiB].
    #[arg(long, env = "BRO_RECORD_MAX_BYTES", value_name = "SIZE", value_parser = crate::config::parse_record_max_bytes)]
    pub record_max_bytes: Option<u64>,
    /// Bytes all recordings on this node may take together, e.g. 4GiB, at least
    /// --record-max-bytes; past it the ones of sessions that ended longest ago are removed
    /// (never one of a session not over) [default: 1GiB].
    #[arg(long, env = "BRO_RECORDINGS_QUOTA", value_name = "SIZE", value_parser = crate::config::parse_files_quota)]
    pub recordings_quota: Option<u64>,
    /// Bytes of memory each session's browser may use, e.g. 1GiB (64MiB to 1TiB): a session
    /// past it fails with reason "memory limit". Also the most a create may ask for with
    /// memoryLimit [default: none].
    #[arg(long, env = "BRO_MAX_SESSION_MEMORY", value_name = "SIZE", value_parser = crate::config::parse_memory_limit)]
    pub max_session_memory: Option<u64>,
    /// CPU weight of each session's browser against the others' (1 to 10000; 100 is an even
    /// share) unless its create says; needs a cgroup mode (bro doctor) [default: none].
    #[arg(long, env = "BRO_CPU_SHARE", value_name = "WEIGHT", value_parser = crate::config::parse_cpu_share)]
    pub cpu_share: Option<u32>,
    /// Refuse creates (429, as a full node) while free memory minus one more session's
    /// expected cost (--max-session-memory, else 256MiB) is below this, e.g. 1GiB
    /// [default: none].
    #[arg(long, env = "BRO_MIN_FREE_MEMORY", value_name = "SIZE", value_parser = crate::config::parse_min_free_memory)]
    pub min_free_memory: Option<u64>,
    /// How session limits are enforced: auto (cgroup v2 or v1 when this machine lets bro
    /// create cgroups, else measurement of each browser's memory), cgroup (or refuse to
    /// start), measure, or off. `bro doctor` shows which one auto picks [default: auto].
    #[arg(long, env = "BRO_LIMITS_MODE", value_name = "MODE")]
    pub limits_mode: Option<crate::config::LimitsMode>,
    /// How much lower the browsers' priority is than the daemon's: their nice value over
    /// the daemon's (0 to 19). The daemon and restate-server then run ahead of the browsers'
    /// own work (browsers outside a cgroup: in one, its weight decides), so creates and the
    /// API answer promptly while browsers start or render; the browsers keep even shares among
    /// themselves. 0 runs them at the daemon's priority [default: 5].
    #[arg(long, env = "BRO_BROWSER_NICE", value_name = "N", value_parser = crate::config::parse_browser_nice)]
    pub browser_nice: Option<u32>,
    /// Chromium to launch [default: /usr/bin/chromium, then PATH].
    #[arg(long, env = "BRO_CHROMIUM", value_name = "PATH")]
    pub chromium: Option<PathBuf>,
    /// restate-server to supervise [default: bro's install dir, then PATH].
    #[arg(long, env = "BRO_RESTATE_SERVER", value_name = "PATH")]
    pub restate_server: Option<PathBuf>,
    /// Use an existing Restate's admin API instead of supervising one (with --restate-ingress-url).
    #[arg(long, value_name = "URL", requires = "restate_ingress_url")]
    pub restate_admin_url: Option<String>,
    /// Use an existing Restate's ingress (with --restate-admin-url).
    #[arg(long, value_name = "URL", requires = "restate_admin_url")]
    pub restate_ingress_url: Option<String>,
    /// This machine's node name in Restate, the key of its Pool: letters, digits, '-', '_'
    /// and '.' [default: local].
    #[arg(long, env = "BRO_NODE", value_parser = parse_node)]
    pub node: Option<String>,
    /// Require this key from TCP clients (steel-api-key header, or ?apiKey= on websockets);
    /// needed to bind a non-loopback address.
    #[arg(long, env = "BRO_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Export traces over OTLP/gRPC to this receiver, e.g. http://127.0.0.1:4317 (an
    /// OpenTelemetry Collector, Jaeger, ...); restate-server exports its own there too, so a
    /// create is one trace from the API request to the browser's launch. Plain http:// only
    /// (no TLS: put a local Collector in front of a remote one). "" = off [default: off].
    #[arg(long, env = "BRO_OTLP_ENDPOINT", value_name = "URL", value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,
}

fn parse_otlp_endpoint(text: &str) -> Result<String, String> {
    crate::config::check_otlp_endpoint(text).map(|()| text.to_string())
}

impl DaemonArgs {
    /// The settings given by `BRO_*` variables alone, parsed and checked as their flags are
    /// (for a daemon started with flags of bro's own choosing, as `bro bench` does).
    pub fn from_env() -> Result<DaemonArgs, clap::Error> {
        #[derive(Parser)]
        struct EnvOnly {
            #[command(flatten)]
            args: DaemonArgs,
        }
        EnvOnly::try_parse_from(["bro"]).map(|e| e.args)
    }
}

impl From<DaemonArgs> for Overrides {
    fn from(a: DaemonArgs) -> Self {
        let ms = |v: Option<u64>| v.map(Duration::from_millis);
        Overrides {
            port: a.port,
            bind: a.bind,
            max_sessions: a.max_sessions,
            max_queue: a.max_queue,
            warm: a.warm,
            queue_timeout: ms(a.queue_timeout),
            default_timeout: ms(a.default_timeout),
            retention: ms(a.retention),
            files_quota: a.files_quota,
            artifacts_quota: a.artifacts_quota,
            record: a.record,
            record_max_bytes: a.record_max_bytes,
            recordings_quota: a.recordings_quota,
            max_session_memory: a.max_session_memory,
            cpu_share: a.cpu_share,
            min_free_memory: a.min_free_memory,
            limits_mode: a.limits_mode,
            browser_nice: a.browser_nice,
            node: a.node,
            chromium: a.chromium,
            restate_server: a.restate_server,
            restate_admin_url: a.restate_admin_url,
            restate_ingress_url: a.restate_ingress_url,
            api_key: a.api_key,
            otlp_endpoint: a.otlp_endpoint,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Start a session: a fresh Chromium with its own profile
    ///
    /// Prints the session id and the CDP websocket URL to give to
    /// Playwright (chromium.connectOverCDP) or Puppeteer (connect({browserWSEndpoint})).
    ///
    /// Examples:
    ///   bro session create --timeout 10m
    ///   bro session create --width 1280 --height 720 --user-agent 'my-bot/1.0' --json
    ///   bro session create --node node-b     # in a cluster: on that node
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// List sessions, oldest first.
    ///
    /// Example: bro session list --status live
    List {
        /// Only sessions with this status (the exact one: live leaves out those still
        /// starting, which steel clients are shown as live).
        #[arg(long, value_parser = clap::value_parser!(SessionStatus))]
        status: Option<SessionStatus>,
        /// Print the steel-browser JSON ({"sessions": [...]}).
        #[arg(long)]
        json: bool,
    },
    /// Show one session; ended sessions stay visible.
    ///
    /// Example: bro session get 0b9c1c4e-... --json
    Get {
        /// The session id (a UUID).
        #[arg(value_parser = parse_uuid, add = ArgValueCandidates::new(live_session_ids))]
        id: String,
        /// Print the steel-browser JSON.
        #[arg(long)]
        json: bool,
    },
    /// Release sessions: their browsers are stopped and their profiles deleted
    ///
    /// Examples:
    ///   bro session kill 0b9c1c4e-...
    ///   bro session kill --all
    #[command(verbatim_doc_comment)]
    Kill {
        /// Session ids to release.
        #[arg(
            value_parser = parse_uuid,
            required_unless_present = "all",
            conflicts_with = "all",
            add = ArgValueCandidates::new(live_session_ids)
        )]
        ids: Vec<String>,
        /// Release every session that is not over.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show every node of the cluster: its health, its slots and its restate-server
    ///
    /// Asks the running daemon (over its Unix socket) what its cluster knows. Like
    /// `bro daemon status`, it starts no daemon: when none runs it says so and exits 1
    /// (start one with `bro daemon start`). It exits 0 whenever the daemon answered, even
    /// when a node is unhealthy: read the HEALTHY column, or `--json`, to decide.
    ///
    /// The first line names the Restate cluster and the node that answered, or says
    /// "single node" when the daemon has no [cluster] in its config. Then one row per node:
    ///
    ///   NODE          the node's name (`node` in its config); `*` marks the one that answered
    ///   ADDRESS       its API address, http://<bind>:<port>
    ///   HEALTHY       yes while it sends heartbeats; no once it missed them (its sessions
    ///                 were failed and it gets no creates until it beats again)
    ///   USED/CAPACITY sessions holding a slot / its max_sessions
    ///   QUEUED        creates waiting for one of its slots
    ///   LAST SEEN     time since its last heartbeat, e.g. 0.8s ago
    ///   RESTATE       its restate-server: alive while its heartbeats arrive (each goes
    ///                 through that node's own restate-server), silent once they stop;
    ///                 a single node says alive or unreachable
    ///
    /// Example:
    ///   $ bro cluster status
    ///   cluster bro, answered by node-a (2 of 3 nodes healthy, 3 members)
    ///      NODE    ADDRESS               HEALTHY  USED/CAPACITY  QUEUED  LAST SEEN  RESTATE
    ///   *  node-a  http://10.0.0.1:3000  yes      2/16           0       0.4s ago   alive
    ///      node-b  http://10.0.0.2:3000  yes      16/16          3       0.9s ago   alive
    ///      node-c  http://10.0.0.3:3000  no       0/16           0       42.0s ago  silent
    #[command(verbatim_doc_comment)]
    Status {
        /// Print the daemon's answer as JSON (clustered, cluster, node, members, nodes).
        #[arg(long)]
        json: bool,
    },
    /// Forget a node removed from the cluster for good
    ///
    /// After a node is stopped and taken out of every node's `members`, its heartbeat
    /// record stays (shown as not healthy). This removes it. Refused while the node still
    /// sends heartbeats: stop it first.
    ///
    /// Example:
    ///   bro cluster forget node-c
    #[command(verbatim_doc_comment)]
    Forget {
        /// The node's name, as `bro cluster status` shows it.
        node: String,
    },
}

/// Options of `bro session create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Release the session after this long (e.g. 90s, 10m, 2h); 0 means never
    /// [default: the daemon's default_timeout, 5m].
    #[arg(long, value_parser = parse_duration_ms)]
    pub timeout: Option<u64>,
    /// Release the session after this long without CDP traffic (e.g. 2m).
    #[arg(long, value_parser = parse_duration_ms)]
    pub inactivity_timeout: Option<u64>,
    /// Window width in pixels.
    #[arg(long, requires = "height", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub width: Option<u32>,
    /// Window height in pixels.
    #[arg(long, requires = "width", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub height: Option<u32>,
    /// User-Agent string of the browser.
    #[arg(long)]
    pub user_agent: Option<String>,
    /// Proxy for the browser's traffic (http://, https://, socks4://, socks5://); an
    /// http:// proxy may carry credentials, e.g. http://user:password@proxy.example:3128.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Fail at once (429) when every slot is in use, rather than wait in the queue.
    #[arg(long)]
    pub no_wait: bool,
    /// Record the session's pages (rrweb); read them with GET /v1/sessions/ID/events, also
    /// after release [default: the daemon's --record].
    #[arg(long, conflicts_with = "no_record")]
    pub record: bool,
    /// Do not record, whatever the daemon's --record.
    #[arg(long)]
    pub no_record: bool,
    /// Memory the browser may use, e.g. 512MiB; past it the session fails with reason
    /// "memory limit" [default: the daemon's --max-session-memory, also the most allowed].
    #[arg(long, value_name = "SIZE", value_parser = crate::config::parse_memory_limit)]
    pub memory_limit: Option<u64>,
    /// CPU weight of the browser against other sessions' (1 to 10000; 100 is even)
    /// [default: the daemon's --cpu-share].
    #[arg(long, value_name = "WEIGHT", value_parser = crate::config::parse_cpu_share)]
    pub cpu_share: Option<u32>,
    /// Use this id (a UUID); creating twice with one id returns the same session.
    #[arg(long, value_parser = parse_uuid)]
    pub session_id: Option<String>,
    /// The node to create on (in a cluster); default: the node with the most free slots.
    /// `bro cluster status` lists the nodes.
    #[arg(long, value_name = "NAME", value_parser = parse_node)]
    pub node: Option<String>,
    /// Print the steel-browser JSON.
    #[arg(long)]
    pub json: bool,
}

/// `10m` → 600000; `0` → 0.
fn parse_duration_ms(s: &str) -> Result<u64, String> {
    crate::config::parse_timeout_ms(s)
}

fn parse_node(s: &str) -> Result<String, String> {
    crate::config::check_node(s).map(|()| s.to_string())
}

fn parse_uuid(s: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.to_string())
        .map_err(|_| format!("'{s}' is not a session id (a UUID)"))
}

/// The completion files shipped in `completions/`, by shell.
pub const COMPLETION_FILES: [(clap_complete::Shell, &str); 5] = [
    (clap_complete::Shell::Bash, "bro.bash"),
    (clap_complete::Shell::Zsh, "_bro"),
    (clap_complete::Shell::Fish, "bro.fish"),
    (clap_complete::Shell::Elvish, "bro.elv"),
    (clap_complete::Shell::PowerShell, "_bro.ps1"),
];

/// The completion script for `shell`: it registers `bro` itself as the completer (`COMPLETE=
/// <shell> bro ...`), so completions follow the same definition as `--help` and session ids
/// come live from the daemon.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(completer) = clap_complete::env::Shells::builtins().completer(&shell.to_string()) {
        let _ = completer.write_registration("COMPLETE", "bro", "bro", "bro", &mut out);
    }
    out
}

/// Completion candidates for session ids: the open sessions of the running daemon (quietly
/// none when no daemon answers within a second).
fn live_session_ids() -> Vec<CompletionCandidate> {
    let Ok(paths) = crate::paths::Paths::from_env() else {
        return Vec::new();
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let client = crate::client::DaemonClient::new(paths.socket());
    let list = rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            client.list_sessions(None),
        )
        .await
    });
    let Ok(Ok(list)) = list else {
        return Vec::new();
    };
    list.sessions
        .into_iter()
        .filter(|s| !s.status.is_final())
        .map(|s| CompletionCandidate::new(s.id).help(Some(s.status.as_str().into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The files in `completions/` are current; `BRO_UPDATE_COMPLETIONS=1 cargo test` rewrites them.
    #[test]
    fn completion_files_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
        for (shell, file) in COMPLETION_FILES {
            let want = completion_script(shell);
            let path = dir.join(file);
            if std::env::var_os("BRO_UPDATE_COMPLETIONS").is_some() {
                std::fs::write(&path, &want).unwrap();
            }
            let have = std::fs::read(&path).unwrap_or_default();
            assert!(
                have == want,
                "{} is stale: run BRO_UPDATE_COMPLETIONS=1 cargo test completion",
                path.display()
            );
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_parses_timeouts_and_sizes() {
        let cli = Cli::try_parse_from([
            "bro",
            "session",
            "create",
            "--timeout",
            "10m",
            "--width",
            "800",
            "--height",
            "600",
        ])
        .unwrap();
        let Command::Session(SessionCommand::Create(args)) = cli.command else {
            panic!()
        };
        assert_eq!(args.timeout, Some(600_000));
        assert_eq!((args.width, args.height), (Some(800), Some(600)));
        let zero = Cli::try_parse_from(["bro", "session", "create", "--timeout", "0"]).unwrap();
        let Command::Session(SessionCommand::Create(args)) = zero.command else {
            panic!()
        };
        assert_eq!(args.timeout, Some(0));
        assert!(Cli::try_parse_from(["bro", "session", "create", "--width", "800"]).is_err());
        assert!(Cli::try_parse_from(["bro", "session", "create", "--timeout", "soon"]).is_err());
    }

    #[test]
    fn create_takes_a_node_name() {
        let cli = Cli::try_parse_from(["bro", "session", "create", "--node", "node-b"]).unwrap();
        let Command::Session(SessionCommand::Create(args)) = cli.command else {
            panic!()
        };
        assert_eq!(args.node.as_deref(), Some("node-b"));
        assert!(Cli::try_parse_from(["bro", "session", "create", "--node", "a b"]).is_err());
    }

    #[test]
    fn cluster_status_parses() {
        let cli = Cli::try_parse_from(["bro", "cluster", "status", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCommand::Status { json: true })
        ));
        assert!(Cli::try_parse_from(["bro", "cluster"]).is_err());
    }

    #[test]
    fn kill_needs_ids_or_all() {
        assert!(Cli::try_parse_from(["bro", "session", "kill"]).is_err());
        assert!(Cli::try_parse_from(["bro", "session", "kill", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["bro", "session", "kill", "nope"]).is_err());
        let id = "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69";
        assert!(Cli::try_parse_from(["bro", "session", "kill", id, "--all"]).is_err());
        assert!(Cli::try_parse_from(["bro", "session", "get", id, "--json"]).is_ok());
    }

    #[test]
    fn daemon_flags_work_with_and_without_start() {
        let cli = Cli::try_parse_from(["bro", "daemon", "--port", "0"]).unwrap();
        let Command::Daemon(d) = cli.command else {
            panic!()
        };
        assert!(d.action.is_none());
        assert_eq!(d.args.port, Some(0));
        let cli = Cli::try_parse_from(["bro", "daemon", "start", "--max-sessions", "3"]).unwrap();
        let Command::Daemon(d) = cli.command else {
            panic!()
        };
        let Some(DaemonAction::Start(a)) = d.action else {
            panic!()
        };
        assert_eq!(a.max_sessions, Some(3));
        assert!(Cli::try_parse_from(["bro", "daemon", "--restate-admin-url", "http://x"]).is_err());
    }
}
