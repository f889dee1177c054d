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
    pub chromium: String,
    pub home: String,
    pub restate: RestateStatus,
    /// This node's capacity and the sessions holding it, from its `Pool` object (absent when
    /// Restate does not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolUsage>,
}

/// A node's capacity as its `Pool` object holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolUsage {
    pub capacity: u32,
    pub used: u32,
    pub sessions: Vec<String>,
}

/// The Restate the daemon uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestateStatus {
    pub admin_url: String,
    pub ingress_url: String,
    /// Pid of the supervised restate-server; `None` when an existing Restate is used.
    pub pid: Option<u32>,
    pub supervised: bool,
    /// How often the supervisor has restarted restate-server since the daemon started.
    pub restarts: u32,
    /// The URL restate-server calls the daemon's services on.
    pub endpoint_url: String,
}
