//! `Settings`: what a daemon runs with, merged once (flag > `BRO_*` variable > `config.toml` >
//! built-in default) and checked against every bound in one place.
//!
//! A background daemon is handed its settings already resolved, as JSON on its stdin: never
//! rebuilt as flags, and never with the API key on a command line or in an environment that
//! `ps` shows. Depends on `config` and `protocol` only, never on the daemon, API or worker.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{self, Config};
use crate::protocol::session::check_ms;
use crate::protocol::steel::DEFAULT_TIMEOUT_MS;

/// Everything `bro daemon` runs with, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// TCP port of the steel API and CDP proxy; 0 picks a free one.
    pub port: u16,
    pub bind: IpAddr,
    pub max_sessions: u32,
    /// Most creates waiting for a slot; 0 = no queue.
    pub max_queue: u32,
    /// Ready browsers to keep; 0 = none.
    pub warm: u32,
    /// How long a create waits for a slot.
    pub queue_timeout: Duration,
    /// Timeout of sessions created without one; zero means none.
    pub default_timeout: Duration,
    /// How long ended sessions stay retrievable; zero means forever.
    pub retention: Duration,
    /// Bytes each session's files dir may hold (uploads and the browser's downloads).
    pub files_quota: u64,
    /// Bytes the screenshots and PDFs served by URL may take on this node; past it the
    /// oldest are evicted.
    #[serde(default = "default_artifacts_quota")]
    pub artifacts_quota: u64,
    /// Record sessions whose create does not say.
    #[serde(default)]
    pub record: bool,
    /// Bytes each session's recording may take; past it recording stops.
    #[serde(default = "default_record_max_bytes")]
    pub record_max_bytes: u64,
    /// Bytes all recordings on this node may take together; past it the oldest ended ones
    /// are evicted.
    #[serde(default = "default_recordings_quota")]
    pub recordings_quota: u64,
    /// Bytes of memory each session's browser may use, and the most a create may ask for;
    /// `None` = no limit unless a create asks.
    #[serde(default)]
    pub max_session_memory: Option<u64>,
    /// CPU weight of sessions whose create does not say (cgroup modes only).
    #[serde(default)]
    pub cpu_share: Option<u32>,
    /// No create when free memory would drop below this many bytes.
    #[serde(default)]
    pub min_free_memory: Option<u64>,
    /// How limits are enforced.
    #[serde(default)]
    pub limits_mode: config::LimitsMode,
    /// The browsers' nice value over the daemon's: the daemon and restate-server run ahead
    /// of them.
    #[serde(default = "default_browser_nice")]
    pub browser_nice: u32,
    pub node: String,
    pub chromium: Option<PathBuf>,
    /// Added to every browser's command line.
    pub chromium_flags: Vec<String>,
    pub restate_server: Option<PathBuf>,
    pub restate_admin_url: Option<String>,
    pub restate_ingress_url: Option<String>,
    /// Required from TCP clients when set.
    pub api_key: Option<Secret>,
    /// This node's part in a cluster of nodes (`[cluster]` in `config.toml`); `None` on a
    /// single machine.
    pub cluster: Option<ClusterSettings>,
    /// The OTLP/gRPC receiver bro and restate-server export traces to; `None` = no traces.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

fn default_browser_nice() -> u32 {
    config::DEFAULT_BROWSER_NICE
}

fn default_record_max_bytes() -> u64 {
    config::DEFAULT_RECORD_MAX_BYTES
}

fn default_recordings_quota() -> u64 {
    config::DEFAULT_RECORDINGS_QUOTA
}

/// The `[cluster]` table: the nodes that form one bro cluster on one Restate cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Restate's cluster name (`name`, default `bro`): the same on every node.
    pub name: String,
    /// Every node's address, this one's (`bind`) included; the first one provisions the
    /// Restate cluster.
    pub members: Vec<IpAddr>,
    /// The file holding the cluster secret (0600, the same on every node).
    pub secret_file: PathBuf,
    /// The TCP port of each node's restate-server fabric, on its `bind` address (the same on
    /// every node).
    pub fabric_port: u16,
    /// The loopback TCP port of each node's SDK endpoint (the same on every node: Restate
    /// calls `http://127.0.0.1:<sdk_port>/` from whichever node leads a partition, which is
    /// that node's own daemon).
    pub sdk_port: u16,
}

impl ClusterSettings {
    /// The `[cluster]` table with its defaults filled in (a missing `secret_file` stays
    /// empty, which [`ClusterSettings::check`] refuses).
    pub fn from_config(c: config::ClusterConfig) -> ClusterSettings {
        ClusterSettings {
            name: c
                .name
                .unwrap_or_else(|| config::DEFAULT_CLUSTER_NAME.to_string()),
            members: c.members,
            secret_file: c.secret_file.unwrap_or_default(),
            fabric_port: c.fabric_port.unwrap_or(config::DEFAULT_FABRIC_PORT),
            sdk_port: c.sdk_port.unwrap_or(config::DEFAULT_SDK_PORT),
        }
    }

    /// Every check of a cluster: the members, the secret file's path, the name, the ports,
    /// and that this node (`bind`, `node`) can be one of them.
    pub fn check(&self, bind: IpAddr, node: &str) -> Result<(), String> {
        config::check_cluster(&self.members, bind, node)?;
        config::check_secret_file(Some(&self.secret_file))?;
        config::check_cluster_name(&self.name)?;
        for (key, port) in [
            ("fabric_port", self.fabric_port),
            ("sdk_port", self.sdk_port),
        ] {
            if port == 0 {
                return Err(format!("cluster.{key} must not be 0"));
            }
        }
        Ok(())
    }

    /// True on the one node that provisions the Restate cluster: the first member.
    pub fn provisions(&self, bind: IpAddr) -> bool {
        self.members.first() == Some(&bind)
    }
}

/// A secret (the API key): kept out of `Debug` output, so no log line shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The settings given on the command line, each from its flag or else its `BRO_*` variable
/// (clap merges those two); `None` leaves it to `config.toml` and then the default.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub port: Option<u16>,
    pub bind: Option<IpAddr>,
    pub max_sessions: Option<u32>,
    pub max_queue: Option<u32>,
    pub warm: Option<u32>,
    pub queue_timeout: Option<Duration>,
    pub default_timeout: Option<Duration>,
    pub retention: Option<Duration>,
    pub files_quota: Option<u64>,
    pub artifacts_quota: Option<u64>,
    pub record: Option<bool>,
    pub record_max_bytes: Option<u64>,
    pub recordings_quota: Option<u64>,
    pub max_session_memory: Option<u64>,
    pub cpu_share: Option<u32>,
    pub min_free_memory: Option<u64>,
    pub limits_mode: Option<config::LimitsMode>,
    pub browser_nice: Option<u32>,
    pub node: Option<String>,
    pub chromium: Option<PathBuf>,
    pub restate_server: Option<PathBuf>,
    pub restate_admin_url: Option<String>,
    pub restate_ingress_url: Option<String>,
    pub api_key: Option<String>,
    pub otlp_endpoint: Option<String>,
}

fn default_artifacts_quota() -> u64 {
    config::DEFAULT_ARTIFACTS_QUOTA
}

impl Settings {
    /// The one merge: each setting from `over` (flag or `BRO_*`), else `file`, else the
    /// default; then every bound is checked.
    pub fn merge(over: Overrides, file: Config) -> Result<Settings, String> {
        let ms = |v: Option<u64>| v.map(Duration::from_millis);
        let settings = Settings {
            port: over.port.or(file.port).unwrap_or(config::DEFAULT_PORT),
            bind: over.bind.or(file.bind).unwrap_or(config::DEFAULT_BIND),
            max_sessions: over
                .max_sessions
                .or(file.max_sessions)
                .unwrap_or(config::DEFAULT_MAX_SESSIONS),
            max_queue: over
                .max_queue
                .or(file.max_queue)
                .unwrap_or(config::DEFAULT_MAX_QUEUE),
            warm: over.warm.or(file.warm).unwrap_or(config::DEFAULT_WARM),
            queue_timeout: over
                .queue_timeout
                .or(ms(file.queue_timeout_ms()))
                .unwrap_or(Duration::from_millis(config::DEFAULT_QUEUE_TIMEOUT_MS)),
            default_timeout: over
                .default_timeout
                .or(ms(file.default_timeout_ms()))
                .unwrap_or(Duration::from_millis(DEFAULT_TIMEOUT_MS)),
            retention: over
                .retention
                .or(ms(file.retention_ms()))
                .unwrap_or(Duration::from_millis(config::DEFAULT_RETENTION_MS)),
            files_quota: over
                .files_quota
                .or(file.files_quota())
                .unwrap_or(config::DEFAULT_FILES_QUOTA),
            artifacts_quota: over
                .artifacts_quota
                .or(file.artifacts_quota())
                .unwrap_or(config::DEFAULT_ARTIFACTS_QUOTA),
            record: over.record.or(file.record).unwrap_or(false),
            record_max_bytes: over
                .record_max_bytes
                .or(file.record_max_bytes())
                .unwrap_or(config::DEFAULT_RECORD_MAX_BYTES),
            recordings_quota: over
                .recordings_quota
                .or(file.recordings_quota())
                .unwrap_or(config::DEFAULT_RECORDINGS_QUOTA),
            max_session_memory: over.max_session_memory.or(file.max_session_memory()),
            cpu_share: over.cpu_share.or(file.cpu_share),
            min_free_memory: over.min_free_memory.or(file.min_free_memory()),
            limits_mode: over.limits_mode.or(file.limits_mode).unwrap_or_default(),
            browser_nice: over
                .browser_nice
                .or(file.browser_nice)
                .unwrap_or(config::DEFAULT_BROWSER_NICE),
            node: over
                .node
                .or(file.node)
                .unwrap_or_else(|| config::DEFAULT_NODE.to_string()),
            chromium: over.chromium.or(file.chromium),
            chromium_flags: file.chromium_flags,
            restate_server: over.restate_server.or(file.restate_server),
            restate_admin_url: over.restate_admin_url,
            restate_ingress_url: over.restate_ingress_url,
            api_key: over.api_key.or(file.api_key).map(Secret),
            cluster: file.cluster.map(ClusterSettings::from_config),
            // `""` (flag, variable or file) turns traces off.
            otlp_endpoint: over
                .otlp_endpoint
                .or(file.otlp_endpoint)
                .filter(|e| !e.is_empty()),
        };
        settings.check()?;
        Ok(settings)
    }

    /// Every setting within the bound bro can honour. Flags and `config.toml` are checked as
    /// they are read; this covers every other way in (the library, the JSON a background
    /// daemon reads). The message names the setting and its bound.
    pub fn check(&self) -> Result<(), String> {
        for (key, value) in [
            ("max_sessions", self.max_sessions),
            ("max_queue", self.max_queue),
            ("warm", self.warm),
        ] {
            config::check_named_count(key, value)?;
        }
        for (key, value, max) in [
            (
                "queue_timeout",
                self.queue_timeout,
                config::MAX_QUEUE_TIMEOUT_MS,
            ),
            (
                "default_timeout",
                self.default_timeout,
                config::MAX_DEFAULT_TIMEOUT_MS,
            ),
            ("retention", self.retention, config::MAX_RETENTION_MS),
        ] {
            check_ms(key, millis(value), max)?;
        }
        config::check_node(&self.node).map_err(|e| format!("node: {e}"))?;
        config::check_files_quota(self.files_quota).map_err(|e| format!("files_quota: {e}"))?;
        config::check_files_quota(self.artifacts_quota)
            .map_err(|e| format!("artifacts_quota: {e}"))?;
        config::check_record_max_bytes(self.record_max_bytes)
            .map_err(|e| format!("record_max_bytes: {e}"))?;
        config::check_files_quota(self.recordings_quota)
            .map_err(|e| format!("recordings_quota: {e}"))?;
        // Below the cap, making room for one recording would remove every ended one.
        if self.recordings_quota < self.record_max_bytes {
            return Err(format!(
                "recordings_quota ({}) is below record_max_bytes ({}): all recordings together \
                 must hold at least one whole recording; raise recordings_quota or lower \
                 record_max_bytes",
                config::format_size(self.recordings_quota),
                config::format_size(self.record_max_bytes)
            ));
        }
        if let Some(bytes) = self.max_session_memory {
            crate::protocol::session::check_memory_limit(bytes)
                .map_err(|e| format!("max_session_memory: {e}"))?;
        }
        if let Some(bytes) = self.min_free_memory {
            config::check_min_free_memory(bytes).map_err(|e| format!("min_free_memory: {e}"))?;
        }
        if let Some(share) = self.cpu_share {
            config::check_cpu_share(share)?;
        }
        config::check_browser_nice(self.browser_nice)?;
        config::check_chromium_flags(&self.chromium_flags)?;
        if let Some(endpoint) = &self.otlp_endpoint {
            config::check_otlp_endpoint(endpoint)?;
        }
        if let Some(cluster) = &self.cluster {
            cluster.check(self.bind, &self.node)?;
            if self.warm > 0 {
                return Err(format!(
                    "warm: the warm pool is not supported in a cluster yet (warm = {} with \
                     [cluster]); set warm = 0",
                    self.warm
                ));
            }
        }
        Ok(())
    }

    /// The API key, for the structs that hold it as a plain string.
    pub fn api_key(&self) -> Option<String> {
        self.api_key.as_ref().map(|k| k.expose().to_string())
    }
}

/// `d` in whole milliseconds, for the structs that count in ms (saturating: every bound is far
/// below `u64::MAX` ms).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn nothing_given_is_the_documented_defaults() {
        let s = Settings::merge(Overrides::default(), Config::default()).unwrap();
        assert_eq!(s.port, 3000);
        assert_eq!(s.bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.max_sessions, 16);
        assert_eq!(s.max_queue, 64);
        assert_eq!(s.warm, 0);
        assert_eq!(s.queue_timeout, Duration::from_secs(30));
        assert_eq!(s.default_timeout, Duration::from_secs(300));
        assert_eq!(s.retention, Duration::from_secs(24 * 3600));
        assert_eq!(s.files_quota, 1 << 30);
        assert_eq!(s.artifacts_quota, 256 << 20);
        assert_eq!(s.node, "local");
        assert_eq!(s.browser_nice, 5);
        assert_eq!(
            (s.chromium, s.restate_server, s.api_key),
            (None, None, None)
        );
    }

    /// A flag (or its `BRO_*` variable, which clap puts in the same place) beats the file,
    /// which beats the default; durations arrive as durations.
    #[test]
    fn a_flag_beats_the_file_which_beats_the_default() {
        let f = file(
            "port = 4000\nmax_sessions = 3\nqueue_timeout = \"2m\"\nretention = \"0\"\n\
             default_timeout = \"90s\"\nnode = \"from-file\"\napi_key = \"from-the-file-key\"\n\
             chromium = \"/file/chromium\"\nchromium_flags = [\"--lang=de\"]\n",
        );
        let over = Overrides {
            port: Some(5000),
            queue_timeout: Some(Duration::from_millis(1500)),
            node: Some("from-flag".into()),
            chromium: Some("/flag/chromium".into()),
            ..Overrides::default()
        };
        let s = Settings::merge(over.clone(), f.clone()).unwrap();
        let nice = |file: Option<u32>, flag: Option<u32>| {
            let f = Config {
                browser_nice: file,
                ..f.clone()
            };
            let over = Overrides {
                browser_nice: flag,
                ..over.clone()
            };
            Settings::merge(over, f).unwrap().browser_nice
        };
        assert_eq!(nice(None, None), 5);
        assert_eq!(nice(Some(9), None), 9);
        assert_eq!(nice(Some(9), Some(0)), 0);
        assert_eq!(s.port, 5000);
        assert_eq!(s.max_sessions, 3);
        assert_eq!(s.max_queue, config::DEFAULT_MAX_QUEUE);
        assert_eq!(s.queue_timeout, Duration::from_millis(1500));
        assert_eq!(s.default_timeout, Duration::from_secs(90));
        assert_eq!(s.retention, Duration::ZERO);
        assert_eq!(s.node, "from-flag");
        assert_eq!(s.chromium, Some(PathBuf::from("/flag/chromium")));
        assert_eq!(s.chromium_flags, vec!["--lang=de"]);
        assert_eq!(s.api_key(), Some("from-the-file-key".into()));
    }

    /// The bounds of settings that arrive by neither flag nor file (a library caller, the
    /// JSON a background daemon reads), each refused with a message naming it and its bound.
    #[test]
    fn each_bound_is_checked_with_its_message() {
        let ok = Settings::merge(Overrides::default(), Config::default()).unwrap();
        let cases: Vec<(Settings, &str)> = vec![
            (
                Settings {
                    max_sessions: 0,
                    ..ok.clone()
                },
                "max_sessions: must be from 1 to 10000, got 0",
            ),
            (
                Settings {
                    max_sessions: 10_001,
                    ..ok.clone()
                },
                "max_sessions: must be from 1 to 10000, got 10001",
            ),
            (
                Settings {
                    max_queue: 100_001,
                    ..ok.clone()
                },
                "max_queue: must be from 0 to 100000, got 100001",
            ),
            (
                Settings {
                    warm: 1_001,
                    ..ok.clone()
                },
                "warm: must be from 0 to 1000, got 1001",
            ),
            (
                Settings {
                    browser_nice: 20,
                    ..ok.clone()
                },
                "browser_nice must be between 0 and 19, got 20",
            ),
            (
                Settings {
                    queue_timeout: Duration::from_millis(3_600_001),
                    ..ok.clone()
                },
                "queue_timeout must be at most 3600000 ms (1h), got 3600001",
            ),
            (
                Settings {
                    default_timeout: Duration::from_millis(604_800_001),
                    ..ok.clone()
                },
                "default_timeout must be at most 604800000 ms (7days), got 604800001",
            ),
            (
                Settings {
                    retention: Duration::from_secs(91 * 24 * 3600),
                    ..ok.clone()
                },
                "retention must be at most 7776000000 ms (2months 29days 2h 52m 48s), got 7862400000",
            ),
            (
                Settings {
                    retention: Duration::MAX,
                    ..ok.clone()
                },
                "retention must be at most 7776000000 ms",
            ),
            (
                Settings {
                    node: "a/b".into(),
                    ..ok.clone()
                },
                "node: 'a/b' is not a node name",
            ),
            (
                Settings {
                    files_quota: 10,
                    ..ok.clone()
                },
                "files_quota: a files quota of 10 B is out of range",
            ),
            (
                Settings {
                    artifacts_quota: 17 << 40,
                    ..ok.clone()
                },
                "artifacts_quota: a files quota of 17 TiB is out of range",
            ),
            (
                Settings {
                    chromium_flags: vec!["lang=en".into()],
                    ..ok.clone()
                },
                "chromium_flags: 'lang=en' is not a flag",
            ),
        ];
        for (settings, want) in cases {
            let err = settings.check().unwrap_err();
            assert!(err.contains(want), "want {want:?}, got {err:?}");
        }
        let at_bounds = Settings {
            max_sessions: 10_000,
            max_queue: 100_000,
            warm: 1_000,
            queue_timeout: Duration::from_secs(3600),
            default_timeout: Duration::from_secs(7 * 24 * 3600),
            retention: Duration::from_secs(90 * 24 * 3600),
            ..ok
        };
        at_bounds.check().unwrap();
    }

    /// `[cluster]` is merged with its defaults and checked against `bind` and `node`,
    /// whether they come from the file or a flag.
    #[test]
    fn a_cluster_table_is_merged_with_its_defaults_and_checked() {
        let table = "bind = \"10.0.0.2\"\nnode = \"n2\"\napi_key = \"a-key-of-sixteen-or-more\"\n\
                     [cluster]\nmembers = [\"10.0.0.1\", \"10.0.0.2\", \"10.0.0.3\"]\n\
                     secret_file = \"/etc/bro/cluster.key\"\n";
        let s = Settings::merge(Overrides::default(), file(table)).unwrap();
        let c = s.cluster.clone().unwrap();
        assert_eq!(c.name, config::DEFAULT_CLUSTER_NAME);
        assert_eq!(c.fabric_port, config::DEFAULT_FABRIC_PORT);
        assert_eq!(c.sdk_port, config::DEFAULT_SDK_PORT);
        assert_eq!(c.secret_file, PathBuf::from("/etc/bro/cluster.key"));
        assert_eq!(c.members.len(), 3);
        assert!(!c.provisions(s.bind));
        assert!(c.provisions(IpAddr::from([10, 0, 0, 1])));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), s);

        let bad_bind = Overrides {
            bind: Some(IpAddr::from([10, 0, 0, 9])),
            ..Overrides::default()
        };
        let err = Settings::merge(bad_bind, file(table)).unwrap_err();
        assert!(
            err.contains("bind 10.0.0.9 is not one of cluster.members"),
            "{err}"
        );
        let default_node = table.replace("node = \"n2\"\n", "");
        let err = Settings::merge(Overrides::default(), file(&default_node)).unwrap_err();
        assert!(err.contains("needs a name of its own"), "{err}");
        // Settings that arrive by another way (the JSON a background daemon reads) are
        // checked as well: no secret file, a port of 0.
        for (cluster, want) in [
            (
                ClusterSettings {
                    secret_file: PathBuf::new(),
                    ..c.clone()
                },
                "cluster.secret_file must be given",
            ),
            (
                ClusterSettings {
                    sdk_port: 0,
                    ..c.clone()
                },
                "cluster.sdk_port must not be 0",
            ),
            (
                ClusterSettings {
                    members: vec![],
                    ..c.clone()
                },
                "cluster.members is empty",
            ),
        ] {
            let settings = Settings {
                cluster: Some(cluster),
                ..s.clone()
            };
            let err = settings.check().unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    /// A quota below the cap would wipe every ended recording each time one starts.
    #[test]
    fn a_recordings_quota_below_the_cap_is_refused() {
        let over = Overrides {
            record_max_bytes: Some(64 << 20),
            recordings_quota: Some(32 << 20),
            ..Overrides::default()
        };
        let err = Settings::merge(over, Config::default()).unwrap_err();
        assert!(
            err.contains("recordings_quota (32 MiB)") && err.contains("record_max_bytes (64 MiB)"),
            "{err}"
        );
        let equal = Overrides {
            record_max_bytes: Some(64 << 20),
            recordings_quota: Some(64 << 20),
            ..Overrides::default()
        };
        Settings::merge(equal, Config::default()).unwrap();
    }

    #[test]
    fn the_merge_refuses_a_bad_value_from_any_source() {
        let over = Overrides {
            max_sessions: Some(0),
            ..Overrides::default()
        };
        let err = Settings::merge(over, Config::default()).unwrap_err();
        assert!(err.contains("max_sessions: must be from 1"), "{err}");
    }

    /// The JSON a background daemon reads gives back the same settings, and `Debug` (what a
    /// log line would show) never holds the API key.
    #[test]
    fn settings_survive_the_handoff_and_hide_the_key() {
        let over = Overrides {
            api_key: Some("a-key-of-sixteen-or-more".into()),
            default_timeout: Some(Duration::from_millis(1234)),
            ..Overrides::default()
        };
        let s = Settings::merge(over, Config::default()).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), s);
        assert!(!format!("{s:?}").contains("sixteen"));
    }

    #[test]
    fn otlp_endpoint_from_flag_or_file_and_empty_is_off() {
        let file = |text: &str| toml::from_str::<Config>(text).unwrap();
        let merged = |over: Option<&str>, text: &str| {
            let over = Overrides {
                otlp_endpoint: over.map(str::to_string),
                ..Overrides::default()
            };
            Settings::merge(over, file(text)).map(|s| s.otlp_endpoint)
        };
        assert_eq!(merged(None, ""), Ok(None));
        let in_file = "otlp_endpoint = \"http://127.0.0.1:4317\"";
        assert_eq!(
            merged(None, in_file),
            Ok(Some("http://127.0.0.1:4317".into()))
        );
        assert_eq!(
            merged(Some("http://10.0.0.1:4317"), in_file),
            Ok(Some("http://10.0.0.1:4317".into()))
        );
        // An empty flag turns off what the file set.
        assert_eq!(merged(Some(""), in_file), Ok(None));
        let ok = Settings::merge(Overrides::default(), Config::default()).unwrap();
        let bad = Settings {
            otlp_endpoint: Some("http://x:1/\"".into()),
            ..ok
        };
        assert!(bad.check().unwrap_err().starts_with("otlp_endpoint: "));
    }
}
