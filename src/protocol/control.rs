//! bro-only messages served on the Unix socket under `/bro/v1/`.

use serde::{Deserialize, Serialize};

/// Answer of `GET /bro/v1/status`, printed by `bro daemon status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    /// Base URL of the steel API and CDP proxy, `http://127.0.0.1:3000`.
    pub api_url: String,
    pub socket: String,
    /// The node name: key of this daemon's `Pool` and part of every session's state.
    pub node: String,
    pub max_sessions: u32,
    /// Most creates waiting for a slot at once; 0 = a full node answers 429 at once.
    #[serde(default)]
    pub max_queue: u32,
    /// How long a create waits for a slot before it gets 429.
    #[serde(default)]
    pub queue_timeout_ms: u64,
    /// Ready browsers the warm pool keeps (`--warm`).
    #[serde(default)]
    pub warm: u32,
    pub chromium: String,
    pub home: String,
    pub restate: RestateStatus,
    /// This node's capacity and the sessions holding it, from its `Pool` object (absent when
    /// Restate does not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolUsage>,
    /// How this node enforces session limits, and its settings (absent from older daemons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsStatus>,
}

/// How a node enforces per-session limits (`bro doctor`, `bro status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsStatus {
    /// `cgroup v2`, `cgroup v1`, `measurement` or `off`.
    pub mode: String,
    /// Why this mode: what was found, and why not a cgroup mode.
    pub why: String,
    /// The mode is the one `limits_mode` named, not one picked for want of cgroups.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_memory: Option<u64>,
    /// The browsers' nice value over the daemon's (`browser_nice`; absent from older daemons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_nice: Option<u32>,
}

/// Answer of `GET /bro/v1/dashboard`: everything `bro tui` shows, in one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    pub status: DaemonStatus,
    /// Unix ms when the snapshot was taken.
    pub taken_at_ms: u64,
    pub sessions: Vec<SessionRow>,
    pub invocations: Vec<InvocationRow>,
    /// False when Restate did not answer (sessions and invocations are then empty).
    pub restate_ok: bool,
    /// The browsers running on this node: live sessions' and the warm pool's.
    #[serde(default)]
    pub workers: Vec<WorkerRow>,
}

/// One browser process group and what it weighs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    pub pid: u32,
    pub port: u16,
    /// The session it serves; `None` for a warm browser waiting in the pool.
    pub session: Option<String>,
    pub processes: u32,
    /// Proportional memory (PSS) of the group, in KiB.
    pub mem_kib: u64,
    /// CPU time of the group so far, in clock ticks.
    pub cpu_ticks: u64,
}

/// One session with its browser's process figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    pub session: crate::protocol::steel::SessionDetails,
    pub node: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// Proportional memory (PSS) of the browser's whole process group, in KiB.
    pub mem_kib: u64,
    /// CPU time of the group so far, in clock ticks (the TUI turns deltas into %).
    pub cpu_ticks: u64,
    pub processes: u32,
    /// Proxied CDP connections open now.
    pub clients: u32,
}

/// One Restate invocation, from `sys_invocation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationRow {
    pub id: String,
    pub target: String,
    pub status: InvocationStatus,
    #[serde(default)]
    pub retry_count: Option<u64>,
    #[serde(default)]
    pub last_failure: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// The status of a Restate invocation, as `sys_invocation` names it.
///
/// A status this bro does not know (a newer Restate's) is kept as its text in
/// [`InvocationStatus::Other`], so the dashboard still parses and shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationStatus {
    Pending,
    Scheduled,
    Ready,
    Running,
    Suspended,
    BackingOff,
    Paused,
    Completed,
    /// Older Restate's name for an invocation waiting behind another on the same key.
    Inboxed,
    Other(String),
}

impl InvocationStatus {
    /// The wire name (`running`, `backing-off`, ...), or the unknown status's own text.
    pub fn as_str(&self) -> &str {
        match self {
            InvocationStatus::Pending => "pending",
            InvocationStatus::Scheduled => "scheduled",
            InvocationStatus::Ready => "ready",
            InvocationStatus::Running => "running",
            InvocationStatus::Suspended => "suspended",
            InvocationStatus::BackingOff => "backing-off",
            InvocationStatus::Paused => "paused",
            InvocationStatus::Completed => "completed",
            InvocationStatus::Inboxed => "inboxed",
            InvocationStatus::Other(text) => text,
        }
    }
}

impl From<String> for InvocationStatus {
    fn from(text: String) -> Self {
        match text.as_str() {
            "pending" => InvocationStatus::Pending,
            "scheduled" => InvocationStatus::Scheduled,
            "ready" => InvocationStatus::Ready,
            "running" => InvocationStatus::Running,
            "suspended" => InvocationStatus::Suspended,
            "backing-off" => InvocationStatus::BackingOff,
            "paused" => InvocationStatus::Paused,
            "completed" => InvocationStatus::Completed,
            "inboxed" => InvocationStatus::Inboxed,
            _ => InvocationStatus::Other(text),
        }
    }
}

impl std::fmt::Display for InvocationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for InvocationStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for InvocationStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(InvocationStatus::from)
    }
}

/// A node's capacity as its `Pool` object holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolUsage {
    pub capacity: u32,
    pub used: u32,
    pub sessions: Vec<String>,
    /// Most creates that may wait for a slot; 0 = no queue.
    #[serde(default)]
    pub max_queue: u32,
    /// Sessions whose creates wait for a slot, first in line first.
    #[serde(default)]
    pub queued: Vec<String>,
    /// Warm browsers ready to be taken now, by id (the name of their dir), oldest first.
    #[serde(default)]
    pub warm_ready: Vec<String>,
}

/// The Restate the daemon uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestateStatus {
    pub admin_url: String,
    pub ingress_url: String,
    /// The public key restate-server signs its calls to the SDK endpoint with.
    #[serde(default)]
    pub identity_key: String,
    /// Pid of the supervised restate-server; `None` when an existing Restate is used.
    pub pid: Option<u32>,
    pub supervised: bool,
    /// How often the supervisor has restarted restate-server since the daemon started.
    pub restarts: u32,
    /// The URL restate-server calls the daemon's services on.
    pub endpoint_url: String,
}

/// One entry of an invocation's journal, from `sys_journal` (for `bro tui`'s details).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub index: u64,
    /// `Command: Run`, `Notification: Call`, ...
    pub entry_type: String,
    /// The name given to a `ctx.run`, a call's target, ...
    #[serde(default)]
    pub name: Option<String>,
}

/// Body of `POST /bro/v1/shutdown`; an empty or unreadable body counts as the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownRequest {
    /// Leave the sessions' browsers running, for the next daemon to take over.
    #[serde(default)]
    pub keep_sessions: bool,
}

/// Answer of `POST /bro/v1/shutdown`: `{"status": "stopping"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShutdownResponse {
    pub status: String,
}

/// Answer of `GET /bro/v1/sessions/{id}/preview`: what a session's browser shows now, its
/// first page's URL and title and a JPEG of its viewport (for `bro tui`'s preview pane).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub url: String,
    pub title: String,
    /// Base64 of the JPEG; empty when the browser has no page.
    pub jpeg: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_statuses_keep_their_text() {
        for name in [
            "pending",
            "scheduled",
            "ready",
            "running",
            "suspended",
            "backing-off",
            "paused",
            "completed",
            "inboxed",
            "a-status-of-restate-2",
        ] {
            let json = format!("\"{name}\"");
            let st: InvocationStatus = serde_json::from_str(&json).unwrap();
            assert_eq!(st.as_str(), name);
            assert_eq!(serde_json::to_string(&st).unwrap(), json);
        }
        let st: InvocationStatus = serde_json::from_str("\"backing-off\"").unwrap();
        assert_eq!(st, InvocationStatus::BackingOff);
        let st: InvocationStatus = serde_json::from_str("\"new\"").unwrap();
        assert_eq!(st, InvocationStatus::Other("new".into()));
    }
}
