//! `config.toml` in bro's config dir: the daemon's settings, below flags and environment
//! variables in precedence (flags > `BRO_*` env > file > built-in defaults). Loaded once.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::protocol::size::parse_size;

/// The built-in defaults, as the documentation gives them.
pub const DEFAULT_PORT: u16 = 3000;
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const DEFAULT_MAX_SESSIONS: u32 = 16;
pub const DEFAULT_NODE: &str = "local";
pub const DEFAULT_RETENTION_MS: u64 = 24 * 3600 * 1000;
pub const DEFAULT_MAX_QUEUE: u32 = 64;
pub const DEFAULT_QUEUE_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_WARM: u32 = 0;

/// The bounds of each setting: a value past one is refused at start with a message that names
/// it, never taken on and then failed on at run time.
pub const MAX_SESSIONS_LIMIT: u32 = 10_000;
pub const MAX_QUEUE_LIMIT: u32 = 100_000;
pub const MAX_WARM: u32 = 1_000;
/// Each count setting with its least and most value.
const COUNTS: [(&str, u32, u32); 3] = [
    ("max_sessions", 1, MAX_SESSIONS_LIMIT),
    ("max_queue", 0, MAX_QUEUE_LIMIT),
    ("warm", 0, MAX_WARM),
];
/// The longest `queue_timeout`: 1 hour.
pub const MAX_QUEUE_TIMEOUT_MS: u64 = 3600 * 1000;
/// The longest `default_timeout`: 7 days, as for a session's own `timeout`.
pub const MAX_DEFAULT_TIMEOUT_MS: u64 = crate::protocol::session::MAX_TIMEOUT_MS;
/// The longest `retention`: 90 days.
pub const MAX_RETENTION_MS: u64 = 90 * 24 * 3600 * 1000;
/// The longest node name, in bytes.
pub const MAX_NODE_LEN: usize = 64;
/// Bytes a session's files (uploads and the browser's downloads) may take: 1 GiB.
pub const DEFAULT_FILES_QUOTA: u64 = 1 << 30;
/// The smallest files quota: below it a single ordinary download would not fit.
pub const MIN_FILES_QUOTA: u64 = 1 << 20;
/// The largest files quota (16 TiB): a bound that still catches a typo of a few zeros.
pub const MAX_FILES_QUOTA: u64 = 16 << 40;
/// Bytes the screenshots and PDFs handed out by URL may take on one node: 256 MiB.
pub const DEFAULT_ARTIFACTS_QUOTA: u64 = 256 << 20;
/// The default `recordings_quota`: sixteen recordings at the default cap.
pub const DEFAULT_RECORDINGS_QUOTA: u64 = 1 << 30;
/// Bytes a session's recording may take by default. Measured for one minute: a busy page
/// (a dozen DOM changes 20 times a second, the mouse moving) recorded 1.8 MB; a page
/// rewriting 50 table cells and a feed on every animation frame (60 a second) 22 MB. So
/// this holds about 35 minutes of the first and 3 of the worst, and hours of an ordinary
/// page.
pub const DEFAULT_RECORD_MAX_BYTES: u64 = 64 << 20;
/// The smallest `record_max_bytes`: room for a full snapshot of a modest page.
pub const MIN_RECORD_MAX_BYTES: u64 = 1 << 20;
/// The largest `record_max_bytes`.
pub const MAX_RECORD_MAX_BYTES: u64 = 4 << 30;
/// `[cluster] name` when not given: Restate's cluster name.
pub const DEFAULT_CLUSTER_NAME: &str = "bro";
/// `[cluster] fabric_port` when not given: restate-server's own default fabric port.
pub const DEFAULT_FABRIC_PORT: u16 = 5122;
/// `[cluster] sdk_port` when not given.
pub const DEFAULT_SDK_PORT: u16 = 9081;
/// The most members a cluster may list.
pub const MAX_CLUSTER_MEMBERS: usize = 64;

/// An example file with every key, for the documentation and `bro doctor`.
pub const EXAMPLE: &str = r#"# ~/.config/bro/config.toml (or $BRO_HOME/config/config.toml)
port = 3000                 # steel API and CDP proxy; 0 picks a free port
bind = "127.0.0.1"          # keep it on loopback unless api_key is set
max_sessions = 16           # live sessions at once on this machine
max_queue = 64              # creates that wait for a slot when all are taken; 0 = none
queue_timeout = "30s"       # how long a create waits for a slot before it gets 429
warm = 2                    # browsers kept launched and ready for creates; 0 = none
default_timeout = "5m"      # for sessions created without a timeout; "0" = none
retention = "24h"           # ended sessions stay retrievable this long; "0" = forever
chromium = "/usr/bin/chromium"
chromium_flags = ["--lang=en-US"]   # added to every browser's command line
api_key = "change-me"       # required from TCP clients when set
node = "local"              # this machine's node name in Restate
files_quota = "1GiB"        # bytes of uploads and downloads each session may keep
artifacts_quota = "256MiB"  # bytes of screenshots and PDFs served by URL; oldest evicted past it
record = false              # record sessions (rrweb) unless a create says otherwise
record_max_bytes = "64MiB"  # past this a session's recording stops (and says it was cut)
recordings_quota = "1GiB"   # all recordings on this node; the oldest ended ones evicted past it
max_session_memory = "1GiB" # memory each browser may use (and the most a create may ask); unset = none
cpu_share = 100             # each browser's CPU weight (1-10000) unless its create says
min_free_memory = "512MiB"  # no create when free memory would drop below this; unset = none
limits_mode = "auto"        # auto (cgroup, else measurement), cgroup, measure or off
browser_nice = 5            # browsers' nice over the daemon's (0-19): bro and Restate run first
# otlp_endpoint = "http://127.0.0.1:4317"  # OTLP/gRPC receiver of traces (default: none)

# Several machines as one cluster: uncomment on every node. Each node sets its own `node`
# (not "local") and `bind` (one of `members`, so not 127.0.0.1 and an api_key is needed).
# [cluster]
# members = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]   # every node's bind, this one's included;
#                                                  # the first one provisions the cluster once
#                                                  # and must keep its data dir
# secret_file = "/etc/bro/cluster.key"    # absolute; the same on every node; mode 0600
# name = "bro"                # Restate's cluster name, the same on every node
# fabric_port = 5122          # restate-server's node-to-node port, on <bind>
# sdk_port = 9081             # the daemon's SDK endpoint on 127.0.0.1, the same on every node
"#;

/// The `limits_mode` setting: which enforcement to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitsMode {
    /// A cgroup mode when the machine allows one, else measurement.
    #[default]
    Auto,
    /// A cgroup mode, or the daemon does not start.
    Cgroup,
    /// (`measurement` too, as the CLI takes it.)
    #[serde(alias = "measurement")]
    Measure,
    Off,
}

impl std::str::FromStr for LimitsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(LimitsMode::Auto),
            "cgroup" => Ok(LimitsMode::Cgroup),
            "measure" | "measurement" => Ok(LimitsMode::Measure),
            "off" => Ok(LimitsMode::Off),
            _ => Err(format!(
                "'{s}' is not a limits mode (auto, cgroup, measure or off)"
            )),
        }
    }
}

/// The settings a `config.toml` may hold; unknown keys are an error, so typos do not pass.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub port: Option<u16>,
    pub bind: Option<IpAddr>,
    pub max_sessions: Option<u32>,
    pub max_queue: Option<u32>,
    pub warm: Option<u32>,
    /// A duration such as `"30s"`.
    pub queue_timeout: Option<String>,
    /// A duration such as `"90s"`, `"10m"`; `"0"` means no timeout.
    pub default_timeout: Option<String>,
    /// How long ended sessions stay retrievable; `"0"` keeps them.
    pub retention: Option<String>,
    pub chromium: Option<PathBuf>,
    #[serde(default)]
    pub chromium_flags: Vec<String>,
    pub restate_server: Option<PathBuf>,
    pub api_key: Option<String>,
    pub node: Option<String>,
    /// Bytes per session's files: `"512MiB"`, `"1GiB"`, or a number of bytes.
    pub files_quota: Option<Size>,
    /// Bytes of the screenshots and PDFs served by URL, written as `files_quota` is.
    pub artifacts_quota: Option<Size>,
    /// Record sessions whose create does not say (`record` on create).
    pub record: Option<bool>,
    /// Bytes per session's recording: `"64MiB"`, or a number of bytes.
    pub record_max_bytes: Option<Size>,
    /// Bytes of all recordings on this node, written as `files_quota` is.
    pub recordings_quota: Option<Size>,
    /// Where to export traces (OTLP/gRPC); `""` = off.
    pub otlp_endpoint: Option<String>,
    /// Bytes of memory each session's browser may use, and the most a create may ask for,
    /// written as `files_quota` is.
    pub max_session_memory: Option<Size>,
    /// Each session's CPU weight when its create does not say (1–10000, 100 = even).
    pub cpu_share: Option<u32>,
    /// No create when free memory would drop below this, written as `files_quota` is.
    pub min_free_memory: Option<Size>,
    /// How limits are enforced: `auto`, `cgroup`, `measure` or `off`.
    pub limits_mode: Option<LimitsMode>,
    /// The browsers' nice value over the daemon's (0–19).
    pub browser_nice: Option<u32>,
    /// The `[cluster]` table: this node is one of several forming one cluster.
    pub cluster: Option<ClusterConfig>,
}

/// The `[cluster]` table as written; [`crate::settings::ClusterSettings`] once merged.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Every node's address, this one's (`bind`) included.
    #[serde(default)]
    pub members: Vec<IpAddr>,
    /// The cluster secret's file: an absolute path, required.
    pub secret_file: Option<PathBuf>,
    /// Restate's cluster name; [`DEFAULT_CLUSTER_NAME`] when not given.
    pub name: Option<String>,
    /// restate-server's fabric port; [`DEFAULT_FABRIC_PORT`] when not given.
    pub fabric_port: Option<u16>,
    /// The SDK endpoint's loopback port; [`DEFAULT_SDK_PORT`] when not given.
    pub sdk_port: Option<u16>,
}

/// A size in `config.toml`: a number of bytes, or a string such as `"512MiB"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, String> {
        check_files_quota(self.raw()?)
    }

    fn raw(&self) -> Result<u64, String> {
        match self {
            Size::Bytes(n) => Ok(*n),
            Size::Text(s) => parse_size(s),
        }
    }
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// The file at `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            message: e.to_string().trim().to_string(),
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        type Parse = fn(&str) -> Result<u64, String>;
        let durations: [(&str, &Option<String>, Parse); 3] = [
            (
                "default_timeout",
                &self.default_timeout,
                parse_default_timeout,
            ),
            ("retention", &self.retention, parse_retention),
            ("queue_timeout", &self.queue_timeout, parse_queue_timeout),
        ];
        for (key, value, parse) in durations {
            if let Some(v) = value {
                parse(v).map_err(|e| format!("{key}: {e}"))?;
            }
        }
        check_chromium_flags(&self.chromium_flags)?;
        let counts = [
            ("max_sessions", self.max_sessions),
            ("max_queue", self.max_queue),
            ("warm", self.warm),
        ];
        for (key, value) in counts {
            if let Some(n) = value {
                check_named_count(key, n)?;
            }
        }
        if let Some(node) = &self.node {
            check_node(node).map_err(|e| format!("node: {e}"))?;
        }
        if let Some(size) = &self.files_quota {
            size.bytes().map_err(|e| format!("files_quota: {e}"))?;
        }
        if let Some(size) = &self.artifacts_quota {
            size.bytes().map_err(|e| format!("artifacts_quota: {e}"))?;
        }
        if let Some(size) = &self.recordings_quota {
            size.bytes().map_err(|e| format!("recordings_quota: {e}"))?;
        }
        if let Some(size) = &self.record_max_bytes {
            size.raw()
                .and_then(check_record_max_bytes)
                .map_err(|e| format!("record_max_bytes: {e}"))?;
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            check_otlp_endpoint(endpoint)?;
        }
        if let Some(size) = &self.max_session_memory {
            size.raw()
                .and_then(crate::protocol::session::check_memory_limit)
                .map_err(|e| format!("max_session_memory: {e}"))?;
        }
        if let Some(size) = &self.min_free_memory {
            size.raw()
                .and_then(check_min_free_memory)
                .map_err(|e| format!("min_free_memory: {e}"))?;
        }
        if let Some(share) = self.cpu_share {
            check_cpu_share(share)?;
        }
        if let Some(nice) = self.browser_nice {
            check_browser_nice(nice)?;
        }
        if let Some(cluster) = &self.cluster {
            cluster.check()?;
        }
        Ok(())
    }

    /// `max_session_memory` in bytes, if set.
    pub fn max_session_memory(&self) -> Option<u64> {
        self.max_session_memory.as_ref().and_then(|s| {
            s.raw()
                .and_then(crate::protocol::session::check_memory_limit)
                .ok()
        })
    }

    /// `min_free_memory` in bytes, if set.
    pub fn min_free_memory(&self) -> Option<u64> {
        self.min_free_memory
            .as_ref()
            .and_then(|s| s.raw().and_then(check_min_free_memory).ok())
    }

    /// `retention` in milliseconds, if set.
    pub fn retention_ms(&self) -> Option<u64> {
        self.retention
            .as_deref()
            .and_then(|t| parse_timeout_ms(t).ok())
    }

    /// `queue_timeout` in milliseconds, if set.
    pub fn queue_timeout_ms(&self) -> Option<u64> {
        self.queue_timeout
            .as_deref()
            .and_then(|t| parse_timeout_ms(t).ok())
    }

    /// `default_timeout` in milliseconds, if set.
    pub fn default_timeout_ms(&self) -> Option<u64> {
        self.default_timeout
            .as_deref()
            .and_then(|t| parse_timeout_ms(t).ok())
    }

    /// `files_quota` in bytes, if set.
    pub fn files_quota(&self) -> Option<u64> {
        self.files_quota.as_ref().and_then(|s| s.bytes().ok())
    }

    /// `artifacts_quota` in bytes, if set.
    pub fn artifacts_quota(&self) -> Option<u64> {
        self.artifacts_quota.as_ref().and_then(|s| s.bytes().ok())
    }

    /// `recordings_quota` in bytes, if set.
    pub fn recordings_quota(&self) -> Option<u64> {
        self.recordings_quota.as_ref().and_then(|s| s.bytes().ok())
    }

    /// `record_max_bytes` in bytes, if set.
    pub fn record_max_bytes(&self) -> Option<u64> {
        self.record_max_bytes
            .as_ref()
            .and_then(|s| s.raw().and_then(check_record_max_bytes).ok())
    }
}

impl ClusterConfig {
    /// The checks the table allows on its own; those that need `bind` and `node` as well
    /// are made on the merged settings ([`check_cluster`]).
    fn check(&self) -> Result<(), String> {
        check_members(&self.members)?;
        check_secret_file(self.secret_file.as_deref())?;
        if let Some(name) = &self.name {
            check_cluster_name(name)?;
        }
        for (key, port) in [
            ("fabric_port", self.fabric_port),
            ("sdk_port", self.sdk_port),
        ] {
            if port == Some(0) {
                return Err(format!("cluster.{key} must not be 0"));
            }
        }
        Ok(())
    }
}

/// A cluster's members: 1 to [`MAX_CLUSTER_MEMBERS`] addresses, none twice, each one a
/// machine can have ([`not_a_machine`]).
pub fn check_members(members: &[IpAddr]) -> Result<(), String> {
    if members.is_empty() {
        return Err(
            "cluster.members is empty: list every node's address, this one's included".into(),
        );
    }
    if members.len() > MAX_CLUSTER_MEMBERS {
        return Err(format!(
            "cluster.members lists {} addresses; a cluster has at most {MAX_CLUSTER_MEMBERS}",
            members.len()
        ));
    }
    for (i, member) in members.iter().enumerate() {
        if members[..i].contains(member) {
            return Err(format!("cluster.members lists {member} twice"));
        }
        if let Some(why) = not_a_machine(*member) {
            return Err(format!(
                "cluster.members lists {member}, {why}: list each node's own address (the \
                 bind of that node)"
            ));
        }
    }
    Ok(())
}

/// Why `ip` cannot be one machine's address, if it cannot: the unspecified address
/// (`0.0.0.0`, `::`: every interface, and to a client, its own machine), a multicast address,
/// or the IPv4 broadcast address. IPv4-mapped IPv6 addresses are judged as IPv4.
pub fn not_a_machine(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        ip if ip.is_unspecified() => {
            Some("the unspecified address (it means every interface of a machine, not one machine)")
        }
        ip if ip.is_multicast() => Some("a multicast address (a group, not one machine)"),
        IpAddr::V4(v4) if v4.is_broadcast() => {
            Some("the broadcast address (every machine on the network)")
        }
        _ => None,
    }
}

/// The secret file's path: given, and absolute (a relative one would depend on the
/// directory each daemon happens to start in).
pub fn check_secret_file(path: Option<&Path>) -> Result<(), String> {
    match path {
        Some(p) if p.is_absolute() => Ok(()),
        Some(p) if !p.as_os_str().is_empty() => Err(format!(
            "cluster.secret_file must be an absolute path, got '{}'",
            p.display()
        )),
        _ => Err(
            "cluster.secret_file must be given: the file holding the cluster secret (the \
                  same on every node, mode 0600)"
                .into(),
        ),
    }
}

/// The longest `otlp_endpoint`.
pub const MAX_OTLP_ENDPOINT_LEN: usize = 256;

/// An OTLP/gRPC endpoint: `http://HOST:PORT` and nothing more (no user, path or query),
/// since it is also written into restate-server's config, and written in its plain form, so
/// bro and restate-server read the same receiver from it; `""` turns traces off. Not
/// `https://`: bro's exporter is built without TLS, and would fail only at daemon start.
pub fn check_otlp_endpoint(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| {
        let shown: String = text.chars().take(MAX_OTLP_ENDPOINT_LEN).collect();
        Err(format!(
            "otlp_endpoint: '{shown}' {why}: expected http://HOST:PORT (an OTLP/gRPC \
             receiver, e.g. http://127.0.0.1:4317), or \"\" for none"
        ))
    };
    if text.len() > MAX_OTLP_ENDPOINT_LEN {
        return bad(&format!("is longer than {MAX_OTLP_ENDPOINT_LEN} bytes"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._:/[]".contains(c);
    if !text.chars().all(allowed) {
        return bad("has characters a host and port do not");
    }
    let Ok(url) = url::Url::parse(text) else {
        return bad("is not a URL");
    };
    if url.scheme() == "https" {
        return bad("uses TLS, which bro's exporter does not have (use a local Collector)");
    }
    if url.scheme() != "http" || url.host().is_none() {
        return bad("is not an http URL with a host");
    }
    if matches!(url.port(), None | Some(0)) || !matches!(url.path(), "" | "/") {
        return bad("needs a port (not 0) and no path");
    }
    let plain = url.as_str();
    if text != plain && format!("{text}/") != plain {
        return bad(&format!(
            "is not written plainly (write {})",
            plain.trim_end_matches('/')
        ));
    }
    Ok(())
}

/// Restate's cluster name: the same characters as a node name (it is written into
/// restate-server's config and sent to the SDK endpoint as a header).
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    check_node(name)
        .map_err(|_| format!("cluster.name: '{name}' is not a cluster name: 1 to {MAX_NODE_LEN} letters, digits, '-', '_' or '.'"))
}

/// The checks of a cluster that need this node's `bind` and `node` as well as the table:
/// `bind` is one of the members (the others reach this node there), and the node has a name
/// of its own (the default `local` would be the same on every node, and Restate's node names
/// must be unique).
pub fn check_cluster(members: &[IpAddr], bind: IpAddr, node: &str) -> Result<(), String> {
    if let Some(why) = not_a_machine(bind) {
        return Err(format!(
            "bind {bind} is {why}: a cluster node binds to its own address among \
             cluster.members"
        ));
    }
    check_members(members)?;
    if !members.contains(&bind) {
        let list: Vec<String> = members.iter().map(ToString::to_string).collect();
        return Err(format!(
            "bind {bind} is not one of cluster.members [{}]: set bind to this node's address \
             in that list",
            list.join(", ")
        ));
    }
    if node == DEFAULT_NODE {
        return Err(format!(
            "a cluster node needs a name of its own: set node (it is '{DEFAULT_NODE}', the \
             default, which every node would share)"
        ));
    }
    check_node(node).map_err(|e| format!("node: {e}"))
}

/// A recording cap from its text, within [`MIN_RECORD_MAX_BYTES`]..=[`MAX_RECORD_MAX_BYTES`].
pub fn parse_record_max_bytes(s: &str) -> Result<u64, String> {
    check_record_max_bytes(parse_size(s)?)
}

/// A recording cap within [`MIN_RECORD_MAX_BYTES`]..=[`MAX_RECORD_MAX_BYTES`].
pub fn check_record_max_bytes(bytes: u64) -> Result<u64, String> {
    check_size_in(
        "recording cap",
        bytes,
        MIN_RECORD_MAX_BYTES,
        MAX_RECORD_MAX_BYTES,
    )
}

/// The largest `min_free_memory` (16 TiB).
pub const MAX_MIN_FREE_MEMORY: u64 = 16 << 40;

/// A session memory limit from its text (`--max-session-memory`), 64 MiB to 1 TiB.
pub fn parse_memory_limit(s: &str) -> Result<u64, String> {
    crate::protocol::session::check_memory_limit(parse_size(s)?)
}

/// A free memory floor from its text (`--min-free-memory`), at most 16 TiB.
pub fn parse_min_free_memory(s: &str) -> Result<u64, String> {
    check_min_free_memory(parse_size(s)?)
}

/// A free memory floor within 0..=[`MAX_MIN_FREE_MEMORY`].
pub fn check_min_free_memory(bytes: u64) -> Result<u64, String> {
    check_size_in("free memory floor", bytes, 0, MAX_MIN_FREE_MEMORY)
}

/// `browser_nice` when not given: browsers a little below the daemon and restate-server.
pub const DEFAULT_BROWSER_NICE: u32 = 5;
/// The highest nice value over the daemon's (19 is the lowest priority there is).
pub const MAX_BROWSER_NICE: u32 = 19;

/// A `browser_nice` within 0..=19.
pub fn check_browser_nice(nice: u32) -> Result<u32, String> {
    if nice > MAX_BROWSER_NICE {
        return Err(format!(
            "browser_nice must be between 0 and {MAX_BROWSER_NICE}, got {nice}"
        ));
    }
    Ok(nice)
}

/// `--browser-nice`: a number within 0..=19.
pub fn parse_browser_nice(s: &str) -> Result<u32, String> {
    check_browser_nice(parse_whole(
        s,
        "a nice value (a whole number from 0 to 19)",
    )?)
}

/// A whole number from its text; the error says it is not `what`.
fn parse_whole(s: &str, what: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .map_err(|_| format!("'{s}' is not {what}"))
}

/// A CPU share (`cpu_share`) within 1..=10000.
pub fn check_cpu_share(share: u32) -> Result<u32, String> {
    use crate::protocol::session::{MAX_CPU_SHARE, MIN_CPU_SHARE};
    if (MIN_CPU_SHARE..=MAX_CPU_SHARE).contains(&share) {
        Ok(share)
    } else {
        Err(format!(
            "cpu_share must be between {MIN_CPU_SHARE} and {MAX_CPU_SHARE}, got {share}"
        ))
    }
}

/// A CPU share from its text (`--cpu-share`).
pub fn parse_cpu_share(s: &str) -> Result<u32, String> {
    check_cpu_share(parse_whole(s, "a CPU share (a whole number, 1 to 10000)")?)
}

/// A files quota from its text, within [`MIN_FILES_QUOTA`]..=[`MAX_FILES_QUOTA`].
pub fn parse_files_quota(s: &str) -> Result<u64, String> {
    check_files_quota(parse_size(s)?)
}

/// A files quota within [`MIN_FILES_QUOTA`]..=[`MAX_FILES_QUOTA`].
pub fn check_files_quota(bytes: u64) -> Result<u64, String> {
    check_size_in("files quota", bytes, MIN_FILES_QUOTA, MAX_FILES_QUOTA)
}

/// `bytes` when within `min..=max`; otherwise a message naming `what` and the range.
fn check_size_in(what: &str, bytes: u64, min: u64, max: u64) -> Result<u64, String> {
    if (min..=max).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!(
            "a {what} of {} is out of range: it must be between {} and {}",
            format_size(bytes),
            format_size(min),
            format_size(max)
        ))
    }
}

/// `1073741824` → `"1 GiB"`, `1572864` → `"1.5 MiB"`, `100` → `"100 B"`: for messages.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut value = bytes as f64;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{:.1} {}", value, UNITS[unit])
    }
}

/// `"10m"` → 600000; `"0"` → 0.
pub fn parse_timeout_ms(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("'{s}' is not a duration: {e} (examples: 90s, 10m, 2h, 0 for none)")
    })?;
    u64::try_from(d.as_millis()).map_err(|_| format!("'{s}' is far too long"))
}

/// A duration no longer than `max_ms`.
fn parse_bounded_ms(s: &str, max_ms: u64) -> Result<u64, String> {
    let ms = parse_timeout_ms(s)?;
    if ms > max_ms {
        return Err(format!(
            "'{s}' is longer than the most bro takes, {}",
            crate::protocol::session::human_ms(max_ms)
        ));
    }
    Ok(ms)
}

/// `queue_timeout` / `--queue-timeout`: up to [`MAX_QUEUE_TIMEOUT_MS`].
pub fn parse_queue_timeout(s: &str) -> Result<u64, String> {
    parse_bounded_ms(s, MAX_QUEUE_TIMEOUT_MS)
}

/// `default_timeout` / `--default-timeout`: up to [`MAX_DEFAULT_TIMEOUT_MS`]; 0 = none.
pub fn parse_default_timeout(s: &str) -> Result<u64, String> {
    parse_bounded_ms(s, MAX_DEFAULT_TIMEOUT_MS)
}

/// `retention` / `--retention`: up to [`MAX_RETENTION_MS`]; 0 = forever.
pub fn parse_retention(s: &str) -> Result<u64, String> {
    parse_bounded_ms(s, MAX_RETENTION_MS)
}

/// A count within `min..=max`.
pub fn check_count(n: u32, min: u32, max: u32) -> Result<(), String> {
    if !(min..=max).contains(&n) {
        return Err(format!("must be from {min} to {max}, got {n}"));
    }
    Ok(())
}

/// The count setting `key` within its bound (see `COUNTS`); the message names both.
pub fn check_named_count(key: &str, n: u32) -> Result<(), String> {
    let (min, max) = COUNTS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or((0, u32::MAX), |(_, min, max)| (*min, *max));
    check_count(n, min, max).map_err(|e| format!("{key}: {e}"))
}

/// Extra Chromium flags: each one a `--flag`.
pub fn check_chromium_flags(flags: &[String]) -> Result<(), String> {
    match flags.iter().find(|f| !f.starts_with("--")) {
        Some(flag) => Err(format!(
            "chromium_flags: '{flag}' is not a flag (flags start with --)"
        )),
        None => Ok(()),
    }
}

/// A node name: 1 to [`MAX_NODE_LEN`] letters, digits, `-`, `_` or `.` (it is a key in Restate
/// and part of its URLs).
pub fn check_node(node: &str) -> Result<(), String> {
    let ok_chars = node
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if node.is_empty() || node.len() > MAX_NODE_LEN || !ok_chars {
        return Err(format!(
            "'{node}' is not a node name: 1 to {MAX_NODE_LEN} letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// The config file of a bro home.
pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("config.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let c: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(c.port, Some(3000));
        assert_eq!(c.default_timeout_ms(), Some(300_000));
        assert_eq!(c.chromium_flags, vec!["--lang=en-US"]);
        assert_eq!(c.files_quota(), Some(DEFAULT_FILES_QUOTA));
        assert_eq!(c.otlp_endpoint, None);
        c.check().unwrap();
        // Its commented otlp_endpoint line is one that passes the check once uncommented.
        let line = EXAMPLE
            .lines()
            .find_map(|l| l.strip_prefix("# otlp_endpoint"))
            .unwrap();
        let c: Config = toml::from_str(&format!("otlp_endpoint{line}")).unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        c.check().unwrap();
    }

    /// The commented `[cluster]` table of the example parses once uncommented, with every
    /// key it documents.
    #[test]
    fn the_documented_cluster_table_parses() {
        let table: String = EXAMPLE
            .lines()
            .skip_while(|l| *l != "# [cluster]")
            .map(|l| l.strip_prefix("# ").unwrap_or(""))
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let c: Config = toml::from_str(&table).unwrap();
        let cluster = c.cluster.clone().unwrap();
        assert_eq!(cluster.members.len(), 3);
        assert_eq!(cluster.name.as_deref(), Some(DEFAULT_CLUSTER_NAME));
        assert_eq!(cluster.fabric_port, Some(DEFAULT_FABRIC_PORT));
        assert_eq!(cluster.sdk_port, Some(DEFAULT_SDK_PORT));
        assert_eq!(
            cluster.secret_file.as_deref(),
            Some(Path::new("/etc/bro/cluster.key"))
        );
        c.check().unwrap();
    }

    /// Each check of the `[cluster]` table alone, with its message.
    #[test]
    fn a_bad_cluster_table_is_an_error_naming_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("config.toml");
        let ok = "secret_file = \"/k\"\nmembers = [\"10.0.0.1\"]\n";
        let many: Vec<String> = (0..65).map(|i| format!("\"10.0.1.{i}\"")).collect();
        let many = format!("secret_file = \"/k\"\nmembers = [{}]\n", many.join(","));
        for (table, want) in [
            ("secret_file = \"/k\"\n", "cluster.members is empty"),
            (
                "secret_file = \"/k\"\nmembers = []\n",
                "cluster.members is empty",
            ),
            (
                many.as_str(),
                "lists 65 addresses; a cluster has at most 64",
            ),
            (
                "secret_file = \"/k\"\nmembers = [\"10.0.0.1\", \"10.0.0.2\", \"10.0.0.1\"]\n",
                "cluster.members lists 10.0.0.1 twice",
            ),
            (
                "secret_file = \"/k\"\nmembers = [\"10.0.0.1\", \"0.0.0.0\"]\n",
                "cluster.members lists 0.0.0.0, the unspecified address",
            ),
            (
                "members = [\"10.0.0.1\"]\n",
                "cluster.secret_file must be given",
            ),
            (
                "members = [\"10.0.0.1\"]\nsecret_file = \"\"\n",
                "cluster.secret_file must be given",
            ),
            (
                "members = [\"10.0.0.1\"]\nsecret_file = \"cluster.key\"\n",
                "cluster.secret_file must be an absolute path, got 'cluster.key'",
            ),
            (
                &format!("{ok}fabric_port = 0\n"),
                "cluster.fabric_port must not be 0",
            ),
            (
                &format!("{ok}sdk_port = 0\n"),
                "cluster.sdk_port must not be 0",
            ),
            (
                &format!("{ok}name = \"a b\"\n"),
                "cluster.name: 'a b' is not a cluster name",
            ),
            (&format!("{ok}memberz = []\n"), "unknown field `memberz`"),
            ("members = [\"10.0.0.300\"]\n", "invalid IP address"),
        ] {
            std::fs::write(&file, format!("[cluster]\n{table}")).unwrap();
            let err = Config::load(&file).unwrap_err().to_string();
            assert!(
                err.contains(want) && err.contains("config.toml"),
                "{table}: {err}"
            );
        }
        std::fs::write(&file, format!("[cluster]\n{ok}")).unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.cluster.unwrap().members, [IpAddr::from([10, 0, 0, 1])]);
    }

    /// The checks that need this node's `bind` and `node` besides the table.
    #[test]
    fn a_cluster_node_binds_to_a_member_and_has_a_name_of_its_own() {
        let members = [IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])];
        check_cluster(&members, members[1], "n2").unwrap();
        let err = check_cluster(&members, IpAddr::from([10, 0, 0, 9]), "n2").unwrap_err();
        assert!(
            err.contains("bind 10.0.0.9 is not one of cluster.members [10.0.0.1, 10.0.0.2]"),
            "{err}"
        );
        let err = check_cluster(&members, members[0], DEFAULT_NODE).unwrap_err();
        assert!(err.contains("needs a name of its own: set node"), "{err}");
        let err = check_cluster(&members, members[0], "a/b").unwrap_err();
        assert!(err.contains("node: 'a/b' is not a node name"), "{err}");
        assert!(check_cluster(&[], members[0], "n1").is_err());
    }

    #[test]
    fn members_and_bind_must_be_addresses_of_one_machine() {
        for (bad, why) in [
            ("0.0.0.0", "the unspecified address"),
            ("::", "the unspecified address"),
            ("::ffff:0.0.0.0", "the unspecified address"),
            ("224.0.0.1", "a multicast address"),
            ("239.1.2.3", "a multicast address"),
            ("ff02::1", "a multicast address"),
            ("255.255.255.255", "the broadcast address"),
            ("::ffff:255.255.255.255", "the broadcast address"),
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            let members = [IpAddr::from([10, 0, 0, 1]), ip];
            let err = check_members(&members).unwrap_err();
            assert!(
                err.contains(&format!("cluster.members lists {ip}, {why}")),
                "{bad}: {err}"
            );
            let err = check_cluster(&members, ip, "n2").unwrap_err();
            assert!(err.contains(&format!("bind {ip} is {why}")), "{bad}: {err}");
        }
        for good in [
            "10.0.0.1",
            "192.168.1.255",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert_eq!(check_members(&[ip]), Ok(()), "{good}");
            assert_eq!(not_a_machine(ip), None, "{good}");
        }
    }

    #[test]
    fn sizes_format_in_binary_units() {
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(3 << 19), "1.5 MiB");
        assert_eq!(format_size(100), "100 B");
    }

    #[test]
    fn the_recording_cap_is_bounded() {
        assert_eq!(
            parse_record_max_bytes("64MiB"),
            Ok(DEFAULT_RECORD_MAX_BYTES)
        );
        assert!(parse_record_max_bytes("1KiB").is_err());
        assert!(parse_record_max_bytes("5GiB").is_err());
        let c: Config = toml::from_str("record = true\nrecord_max_bytes = \"2MiB\"\n").unwrap();
        assert_eq!(
            (c.record, c.record_max_bytes()),
            (Some(true), Some(2 << 20))
        );
        let c: Config = toml::from_str("record_max_bytes = 10\n").unwrap();
        assert!(c.check().unwrap_err().starts_with("record_max_bytes:"));
    }

    #[test]
    fn the_files_quota_is_bounded() {
        assert_eq!(parse_files_quota("1GiB"), Ok(DEFAULT_FILES_QUOTA));
        let small = parse_files_quota("1KiB").unwrap_err();
        assert!(small.contains("between 1 MiB and 16 TiB"), "{small}");
        assert!(parse_files_quota("17TiB").is_err());
        let c: Config = toml::from_str("files_quota = 2097152\n").unwrap();
        assert_eq!(c.files_quota(), Some(2 << 20));
        let c: Config = toml::from_str("files_quota = \"4MiB\"\n").unwrap();
        assert_eq!(c.files_quota(), Some(4 << 20));
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("config.toml");
        std::fs::write(&file, "files_quota = \"10\"\n").unwrap();
        let err = Config::load(&file).unwrap_err().to_string();
        assert!(
            err.contains("files_quota") && err.contains("out of range"),
            "{err}"
        );
    }

    /// Every number and duration has a bound, and the error names it.
    #[test]
    fn settings_past_their_bounds_are_errors_naming_the_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("config.toml");
        for (text, want) in [
            (
                "max_sessions = 10001",
                "max_sessions: must be from 1 to 10000",
            ),
            ("max_sessions = 0", "max_sessions: must be from 1 to 10000"),
            ("max_queue = 100001", "max_queue: must be from 0 to 100000"),
            ("warm = 4294967295", "warm: must be from 0 to 1000"),
            (
                "queue_timeout = \"61m\"",
                "queue_timeout: '61m' is longer than the most bro takes, 1h",
            ),
            (
                "default_timeout = \"8d\"",
                "default_timeout: '8d' is longer than the most bro takes, 7days",
            ),
            (
                "retention = \"91d\"",
                "retention: '91d' is longer than the most bro takes",
            ),
            (
                "retention = \"999999999999y\"",
                "retention: '999999999999y'",
            ),
            ("node = \"a/b\"", "node: 'a/b' is not a node name"),
            (
                "browser_nice = 20",
                "browser_nice must be between 0 and 19, got 20",
            ),
        ] {
            std::fs::write(&file, format!("{text}\n")).unwrap();
            let err = Config::load(&file).unwrap_err().to_string();
            assert!(
                err.contains(want) && err.contains("config.toml"),
                "{text}: {err}"
            );
        }
        for text in [
            "max_sessions = 10000",
            "max_queue = 100000",
            "warm = 1000",
            "queue_timeout = \"1h\"",
            "default_timeout = \"7d\"",
            "retention = \"90d\"",
            "node = \"rack-1.a_b\"",
            "browser_nice = 19",
            "browser_nice = 0",
        ] {
            std::fs::write(&file, format!("{text}\n")).unwrap();
            Config::load(&file).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        assert_eq!(parse_browser_nice("19"), Ok(19));
        assert_eq!(parse_browser_nice(" 0 "), Ok(0));
        for bad in ["20", "-1", "", "five", "4294967296"] {
            assert!(parse_browser_nice(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_default_timeout("7d"), Ok(MAX_DEFAULT_TIMEOUT_MS));
        assert!(parse_default_timeout("7d 1ms").is_err());
    }

    #[test]
    fn typos_and_bad_values_are_errors_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("config.toml");
        assert_eq!(Config::load(&file).unwrap(), Config::default());
        std::fs::write(&file, "prot = 1\n").unwrap();
        let err = Config::load(&file).unwrap_err().to_string();
        assert!(err.contains("config.toml") && err.contains("prot"), "{err}");
        std::fs::write(&file, "default_timeout = \"soon\"\n").unwrap();
        assert!(
            Config::load(&file)
                .unwrap_err()
                .to_string()
                .contains("not a duration")
        );
        std::fs::write(&file, "chromium_flags = [\"lang=en\"]\n").unwrap();
        assert!(
            Config::load(&file)
                .unwrap_err()
                .to_string()
                .contains("not a flag")
        );
    }

    #[test]
    fn an_otlp_endpoint_is_a_host_and_port_and_nothing_else() {
        for ok in [
            "",
            "http://127.0.0.1:4317",
            "http://collector.example:4317/",
            "http://[::1]:4317",
        ] {
            assert_eq!(check_otlp_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1:4317",
            "ftp://127.0.0.1:4317",
            "http://127.0.0.1",
            "http://127.0.0.1:4317/v1/traces",
            "http://user:pw@127.0.0.1:4317",
            "http://127.0.0.1:4317?x=1",
            "http://127.0.0.1:4317\"\nbind-address = \"0.0.0.0:1\"",
            "https://collector.example:4317",
            "http://127.0.0.1:0",
            "http://127.1:4317",
            "http://LOCALHOST:4317",
            "http://[0:0::1]:4317",
        ] {
            let err = check_otlp_endpoint(bad).unwrap_err();
            assert!(err.starts_with("otlp_endpoint: "), "{bad}: {err}");
        }
        let long = format!("http://{}.example:4317", "a".repeat(MAX_OTLP_ENDPOINT_LEN));
        assert!(
            check_otlp_endpoint(&long)
                .unwrap_err()
                .contains("longer than 256")
        );
        let file: Config = toml::from_str("otlp_endpoint = \"http://x:1/v1\"").unwrap();
        assert!(file.check().unwrap_err().contains("no path"));
    }
}
