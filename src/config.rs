//! `config.toml` in bro's config dir: the daemon's settings, below flags and environment
//! variables in precedence (flags > `BRO_*` env > file > built-in defaults). Loaded once.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The built-in defaults, as the documentation gives them.
pub const DEFAULT_PORT: u16 = 3000;
pub const DEFAULT_BIND: &str = "127.0.0.1";
pub const DEFAULT_MAX_SESSIONS: u32 = 16;
pub const DEFAULT_NODE: &str = "local";
pub const DEFAULT_RETENTION_MS: u64 = 24 * 3600 * 1000;
pub const DEFAULT_MAX_QUEUE: u32 = 64;
pub const DEFAULT_QUEUE_TIMEOUT_MS: u64 = 30_000;

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
"#;

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
        for t in [&self.default_timeout, &self.retention, &self.queue_timeout]
            .into_iter()
            .flatten()
        {
            parse_timeout_ms(t)?;
        }
        if let Some(flag) = self.chromium_flags.iter().find(|f| !f.starts_with("--")) {
            return Err(format!(
                "chromium_flags: '{flag}' is not a flag (flags start with --)"
            ));
        }
        if self.max_sessions == Some(0) {
            return Err("max_sessions must be at least 1".into());
        }
        Ok(())
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
}

/// `"10m"` → 600000; `"0"` → 0.
pub fn parse_timeout_ms(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    humantime::parse_duration(s.trim())
        .map(|d| d.as_millis() as u64)
        .map_err(|e| format!("'{s}' is not a duration: {e} (examples: 90s, 10m, 2h, 0 for none)"))
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
        c.check().unwrap();
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
}
