//! The session record: the one value the `Session` virtual object keeps in Restate state.
//!
//! Everything the daemon knows about a session lives here, so a daemon that restarts can
//! re-adopt or reap the session's browser from state alone.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Lifecycle of a session. `starting` and `releasing` are transient; `released` and `failed`
/// are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Starting,
    Live,
    Releasing,
    Released,
    Failed,
}

impl SessionStatus {
    /// The lowercase wire name (`live`, `released`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Starting => "starting",
            SessionStatus::Live => "live",
            SessionStatus::Releasing => "releasing",
            SessionStatus::Released => "released",
            SessionStatus::Failed => "failed",
        }
    }

    /// True once nothing runs for the session any more.
    pub fn is_final(self) -> bool {
        matches!(self, SessionStatus::Released | SessionStatus::Failed)
    }

    /// Every status, in lifecycle order (for `--status` help and parsing).
    pub const ALL: [SessionStatus; 5] = [
        SessionStatus::Starting,
        SessionStatus::Live,
        SessionStatus::Releasing,
        SessionStatus::Released,
        SessionStatus::Failed,
    ];
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SessionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = SessionStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown status '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// A session's id: a UUID in its canonical form (lowercase, hyphenated). It names the
/// session's `Session` object in Restate and its dir on disk, so nothing else may be one: a
/// value that is not a canonical UUID never deserializes into a `SessionId`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    /// A new random id.
    pub fn random() -> Self {
        SessionId(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// `text` when it is a UUID in its canonical form; ids from Restate keys, state and dir
    /// names are checked with this.
    pub fn parse(text: &str) -> Result<Self, String> {
        match uuid::Uuid::parse_str(text) {
            Ok(u) if u.hyphenated().to_string() == text => Ok(SessionId(text.to_string())),
            _ => Err(format!("session id must be a UUID, got {text:?}")),
        }
    }

    /// A client's id in any form a UUID may be written in (upper case, no hyphens, braces),
    /// made canonical.
    pub fn from_client(text: &str) -> Result<Self, String> {
        uuid::Uuid::parse_str(text)
            .map(|u| SessionId(u.hyphenated().to_string()))
            .map_err(|_| format!("session id must be a UUID, got '{text}'"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionId {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        SessionId::parse(&text)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for SessionId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for SessionId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SessionId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Browser window size in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dimensions {
    #[schema(minimum = 1, maximum = 10_000)]
    pub width: u32,
    #[schema(minimum = 1, maximum = 10_000)]
    pub height: u32,
}

impl Default for Dimensions {
    fn default() -> Self {
        Dimensions {
            width: 1920,
            height: 1080,
        }
    }
}

/// The launch options of a session, as accepted by `POST /v1/sessions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<Dimensions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    /// Milliseconds until the session is released by itself; 0 means never.
    pub timeout_ms: u64,
    /// Milliseconds without CDP traffic after which the session is released; 0 means never.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inactivity_timeout_ms: u64,
    /// Resolve a list of ad and tracker hosts to nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub block_ads: bool,
    /// What the browser does not load, to save bandwidth (`optimizeBandwidth`).
    #[serde(default, skip_serializing_if = "OptimizeBandwidth::is_off")]
    pub optimize_bandwidth: OptimizeBandwidth,
    /// Record the session's pages (rrweb), served at `GET /v1/sessions/{id}/events`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
    /// Bytes of memory the browser may use; past them the session fails with reason
    /// `memory limit`. Filled with the daemon's `max_session_memory` when not asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// The browser's CPU weight against other sessions' (1–10000; 100 is an even share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<u32>,
    /// Options the client sent that bro accepted but does not act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

/// The most a session's `timeout` and `inactivityTimeout` may be: 7 days, in milliseconds.
/// Longer durable timers are refused rather than half-honoured.
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;
/// Bounds of each of a session's window `dimensions`, in pixels. (Chromium draws its headless
/// window at least 500 px wide whatever is asked.)
pub const MIN_DIMENSION: u32 = 1;
pub const MAX_DIMENSION: u32 = 10_000;
/// The longest `userAgent` and `proxyUrl`, in bytes.
pub const MAX_USER_AGENT_LEN: usize = 1024;
pub const MAX_PROXY_URL_LEN: usize = 2048;
/// Bounds of a session's `memoryLimit`: below 64 MiB Chromium does not start; 1 TiB catches
/// a typo of a few zeros.
pub const MIN_MEMORY_LIMIT: u64 = 64 << 20;
pub const MAX_MEMORY_LIMIT: u64 = 1 << 40;
/// Bounds of a session's `cpuShare` (cgroup v2's `cpu.weight`).
pub const MIN_CPU_SHARE: u32 = 1;
pub const MAX_CPU_SHARE: u32 = 10_000;

impl SessionOptions {
    /// Checks every option against the bound bro can honour; the message names the option
    /// and its bound. The API answers it as a 400, and `Session/create` refuses input that
    /// slipped past the API with a terminal error rather than failing on every retry.
    pub fn check(&self) -> Result<(), String> {
        check_ms("timeout", self.timeout_ms, MAX_TIMEOUT_MS)?;
        check_ms(
            "inactivityTimeout",
            self.inactivity_timeout_ms,
            MAX_TIMEOUT_MS,
        )?;
        if let Some(d) = self.dimensions {
            check_dimension("dimensions.width", u64::from(d.width))?;
            check_dimension("dimensions.height", u64::from(d.height))?;
        }
        if let Some(ua) = &self.user_agent {
            check_text("userAgent", ua, MAX_USER_AGENT_LEN)?;
        }
        if let Some(proxy) = &self.proxy_url {
            check_text("proxyUrl", proxy, MAX_PROXY_URL_LEN)?;
        }
        if let Some(bytes) = self.memory_limit {
            check_memory_limit(bytes).map_err(|e| format!("memoryLimit: {e}"))?;
        }
        if let Some(share) = self.cpu_share
            && !(MIN_CPU_SHARE..=MAX_CPU_SHARE).contains(&share)
        {
            return Err(format!(
                "cpuShare must be between {MIN_CPU_SHARE} and {MAX_CPU_SHARE}, got {share}"
            ));
        }
        self.optimize_bandwidth.check()
    }
}

/// The most `optimizeBandwidth.blockHosts` and `.blockUrlPatterns` entries, and the longest.
pub const MAX_BLOCK_ENTRIES: usize = 256;
pub const MAX_BLOCK_ENTRY_LEN: usize = 1024;

/// `optimizeBandwidth`: what the session's pages do not load. Clients send it as this object
/// or as a boolean (`true` means images, media and stylesheets); answers carry the object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OptimizeBandwidth {
    #[serde(default)]
    pub block_images: bool,
    #[serde(default)]
    pub block_media: bool,
    #[serde(default)]
    pub block_stylesheets: bool,
    /// Hosts whose requests fail (a name also blocks its subdomains).
    #[serde(default)]
    pub block_hosts: Vec<String>,
    /// URL patterns whose requests fail (`*` matches any run of characters).
    #[serde(default)]
    pub block_url_patterns: Vec<String>,
}

impl OptimizeBandwidth {
    /// What `optimizeBandwidth: true` means, as in Steel's API.
    pub fn all_types() -> Self {
        OptimizeBandwidth {
            block_images: true,
            block_media: true,
            block_stylesheets: true,
            ..OptimizeBandwidth::default()
        }
    }

    /// True when nothing is blocked.
    pub fn is_off(&self) -> bool {
        *self == OptimizeBandwidth::default()
    }

    /// Bounds: at most [`MAX_BLOCK_ENTRIES`] hosts and patterns, each non-empty and at most
    /// [`MAX_BLOCK_ENTRY_LEN`] bytes with no control characters; each host a host name (or
    /// IP address), not a URL, pattern or `host:port`.
    pub fn check(&self) -> Result<(), String> {
        for (name, list) in [
            ("optimizeBandwidth.blockHosts", &self.block_hosts),
            (
                "optimizeBandwidth.blockUrlPatterns",
                &self.block_url_patterns,
            ),
        ] {
            if list.len() > MAX_BLOCK_ENTRIES {
                return Err(format!(
                    "{name} takes at most {MAX_BLOCK_ENTRIES} entries, got {}",
                    list.len()
                ));
            }
            for (i, entry) in list.iter().enumerate() {
                if entry.is_empty() {
                    return Err(format!("{name}[{i}] is empty"));
                }
                check_text(&format!("{name}[{i}]"), entry, MAX_BLOCK_ENTRY_LEN)?;
            }
        }
        for (i, entry) in self.block_hosts.iter().enumerate() {
            check_block_host(entry).map_err(|why| {
                format!(
                    "optimizeBandwidth.blockHosts[{i}] must be a host name such as \
                     ads.example.com (it also blocks its subdomains; use blockUrlPatterns for \
                     URLs and wildcards): {entry:?} {why}"
                )
            })?;
        }
        Ok(())
    }
}

/// Why `entry` is not a host name (or IP address) a block can match: a scheme, path, port,
/// wildcard or space would make it match nothing.
fn check_block_host(entry: &str) -> Result<(), &'static str> {
    if entry.contains("://") {
        return Err("has a scheme");
    }
    if entry.contains(char::is_whitespace) {
        return Err("has a space");
    }
    if entry.contains('*') {
        return Err("has a wildcard");
    }
    if entry.contains(['/', '?', '#', '\\']) {
        return Err("has a path");
    }
    if entry.contains('@') {
        return Err("has a user name");
    }
    // Only an IPv6 address in brackets holds a colon.
    if entry.contains(':') && !(entry.starts_with('[') && entry.ends_with(']')) {
        return Err("has a port");
    }
    let host = entry.strip_suffix('.').unwrap_or(entry);
    match url::Host::parse(host) {
        Ok(_) if !host.is_empty() && !host.starts_with('.') => Ok(()),
        _ => Err("is not a valid host name"),
    }
}

/// `name` in milliseconds must be within `0..=max` (0 meaning none).
pub fn check_ms(name: &str, ms: u64, max: u64) -> Result<(), String> {
    if ms > max {
        return Err(format!(
            "{name} must be at most {max} ms ({}), got {ms}",
            human_ms(max)
        ));
    }
    Ok(())
}

/// A window dimension must be within `MIN_DIMENSION..=MAX_DIMENSION`.
pub fn check_dimension(name: &str, px: u64) -> Result<(), String> {
    if !(u64::from(MIN_DIMENSION)..=u64::from(MAX_DIMENSION)).contains(&px) {
        return Err(format!(
            "{name} must be from {MIN_DIMENSION} to {MAX_DIMENSION} pixels, got {px}"
        ));
    }
    Ok(())
}

/// A memory limit within [`MIN_MEMORY_LIMIT`]..=[`MAX_MEMORY_LIMIT`] bytes.
pub fn check_memory_limit(bytes: u64) -> Result<u64, String> {
    if (MIN_MEMORY_LIMIT..=MAX_MEMORY_LIMIT).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!(
            "a memory limit of {bytes} bytes is out of range: it must be between 64 MiB and \
             1 TiB"
        ))
    }
}

/// A string option must be at most `max` bytes and free of control characters (it ends up on
/// the browser's command line).
fn check_text(name: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!(
            "{name} must be at most {max} bytes, got {}",
            text.len()
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{name} must not contain control characters"));
    }
    Ok(())
}

/// `604800000` → `7d`, for messages that name a bound.
pub fn human_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// What the daemon needs to find, probe and kill a session's browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerInfo {
    /// Pid of the browser process, which is also its process group id.
    pub pid: u32,
    /// Start time of the pid in clock ticks since boot (`/proc/PID/stat` field 22), so a
    /// recycled pid is never mistaken for the browser.
    pub start_time: u64,
    /// The browser's DevTools port on 127.0.0.1.
    pub port: u16,
    /// Path of the browser-level CDP target, `/devtools/browser/<guid>`.
    pub ws_path: String,
    /// The session directory (profile, tmp, home) removed on teardown.
    pub dir: PathBuf,
}

impl WorkerInfo {
    /// The URL of `path` (`/json/version`, `/json/list`) on the browser's DevTools endpoint.
    pub fn devtools_url(&self, path: &str) -> String {
        devtools_url(self.port, path)
    }
}

/// The URL of `path` on the DevTools endpoint at `port` on loopback, where every browser of
/// bro's listens.
pub fn devtools_url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The state of one session, stored under [`RECORD_KEY`] in its `Session` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub id: SessionId,
    pub status: SessionStatus,
    /// Name of the node whose `Pool` holds the session's capacity.
    pub node: String,
    /// Unix time in milliseconds.
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    pub options: SessionOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerInfo>,
    /// Why the session failed or ended (`timeout`, `released`, `browser exited`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes through the local hop to the session's http:// proxy, counted since the
    /// session (or, after a daemon restart, its adoption) began; set when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_bytes: Option<ProxyBytes>,
    /// It failed because the browser refused what the client sent (its `sessionContext`):
    /// the client's fault, not bro's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

/// Bytes a session's browser sent to (`tx`) and got from (`rx`) its upstream proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyBytes {
    pub tx: u64,
    pub rx: u64,
}

/// The Restate state key holding a [`SessionRecord`].
pub const RECORD_KEY: &str = "record";

impl SessionRecord {
    /// Milliseconds the session has lasted at `now_ms` (final once it ended).
    pub fn duration_ms(&self, now_ms: u64) -> u64 {
        self.ended_at_ms
            .unwrap_or(now_ms)
            .saturating_sub(self.created_at_ms)
    }

    /// Milliseconds left before the timeout releases the session, if it has one and is live.
    pub fn time_left_ms(&self, now_ms: u64) -> Option<u64> {
        if self.options.timeout_ms == 0 || self.status.is_final() {
            return None;
        }
        Some(
            self.created_at_ms
                .saturating_add(self.options.timeout_ms)
                .saturating_sub(now_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_its_name() {
        for st in SessionStatus::ALL {
            assert_eq!(st.as_str().parse::<SessionStatus>().unwrap(), st);
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
        }
        let err = "alive".parse::<SessionStatus>().unwrap_err();
        assert!(err.contains("live, releasing"), "{err}");
    }

    #[test]
    fn only_canonical_uuids_are_session_ids() {
        let id = "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69";
        assert_eq!(SessionId::parse(id).unwrap().as_str(), id);
        for bad in [
            "",
            "/etc",
            "..",
            "../../tmp",
            "0B9C1C4E-7D2F-4A51-9B0E-3F1D2C4B5A69",
            "0b9c1c4e7d2f4a519b0e3f1d2c4b5a69",
            "{0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69}",
            "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69/..",
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?}");
            assert!(
                serde_json::from_value::<SessionId>(bad.into()).is_err(),
                "{bad:?}"
            );
        }
        // A client may write it any way a UUID is written; it is made canonical.
        let upper = SessionId::from_client("0B9C1C4E-7D2F-4A51-9B0E-3F1D2C4B5A69").unwrap();
        assert_eq!(upper.as_str(), id);
        assert!(SessionId::from_client("../x").is_err());
        assert_eq!(serde_json::to_string(&upper).unwrap(), format!("\"{id}\""));
    }

    #[test]
    fn durations_and_time_left() {
        let rec = SessionRecord {
            id: SessionId::random(),
            status: SessionStatus::Live,
            node: "local".into(),
            created_at_ms: 1_000,
            ended_at_ms: None,
            options: SessionOptions {
                timeout_ms: 5_000,
                ..Default::default()
            },
            worker: None,
            reason: None,
            proxy_bytes: None,
            refused: false,
        };
        assert_eq!(rec.duration_ms(3_000), 2_000);
        assert_eq!(rec.time_left_ms(3_000), Some(3_000));
        assert_eq!(rec.time_left_ms(9_000), Some(0));
        let ended = SessionRecord {
            status: SessionStatus::Released,
            ended_at_ms: Some(4_000),
            ..rec
        };
        assert_eq!(ended.duration_ms(10_000), 3_000);
        assert_eq!(ended.time_left_ms(3_000), None);
    }

    /// `blockHosts` takes host names only: a URL, pattern or `host:port` would match
    /// nothing, so it is refused rather than silently let through.
    #[test]
    fn block_hosts_must_be_host_names() {
        let with = |host: &str| OptimizeBandwidth {
            block_hosts: vec!["ok.example".into(), host.into()],
            ..OptimizeBandwidth::default()
        };
        for good in [
            "ads.example.com",
            "ads.example.com.",
            "Bücher.example",
            "localhost",
            "10.0.0.7",
            "[::1]",
        ] {
            with(good).check().unwrap();
        }
        for (bad, why) in [
            ("https://ads.example.com", "has a scheme"),
            ("ads.example.com/x", "has a path"),
            ("ads.example.com:8080", "has a port"),
            ("*.ads.example.com", "has a wildcard"),
            ("ads example.com", "has a space"),
            ("user@ads.example.com", "has a user name"),
            (".", "is not a valid host name"),
            ("[nope]", "is not a valid host name"),
        ] {
            let err = with(bad).check().unwrap_err();
            assert!(
                err.starts_with("optimizeBandwidth.blockHosts[1] must be a host name")
                    && err.ends_with(why),
                "{bad}: {err}"
            );
        }
    }
}
