//! The cluster as bro's nodes see it: each node's heartbeat (kept in Restate by the `Node`
//! virtual object) and the status `bro cluster status` shows.

use serde::{Deserialize, Serialize};

/// The header a client names the node a create should go to with (`--node` on the CLI).
pub const NODE_HEADER: &str = "x-bro-node";

/// What one node tells the cluster about itself, every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBeat {
    /// The node's name (its `Pool` key).
    pub name: String,
    /// Where its API (steel routes, CDP proxy and node-to-node routes) listens:
    /// `http://<bind>:<port>`.
    pub api: String,
    /// Its restate-server's fabric address, `http://<bind>:<fabric port>/`.
    pub fabric: String,
    /// Sessions it may hold (`--max-sessions`).
    pub capacity: u32,
    /// bro's version on the node.
    pub version: String,
}

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    #[serde(flatten)]
    pub beat: NodeBeat,
    /// Heartbeats received; a check that finds it unchanged since the last one declares the
    /// node lost.
    pub beats: u64,
    /// When the last heartbeat arrived (unix ms).
    pub seen_ms: u64,
    /// The node missed its heartbeats: its sessions were failed, it gets no creates until it
    /// beats again.
    pub lost: bool,
}

/// One node in `bro cluster status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    /// Its API address (`http://<bind>:<port>`).
    pub address: String,
    /// Heartbeating and not lost.
    pub healthy: bool,
    pub capacity: u32,
    /// Slots in use.
    pub used: u32,
    /// Creates waiting in its queue.
    pub queued: u32,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms: u64,
    /// Its restate-server, as this node's daemon sees it: `alive`, `unreachable`, or
    /// `unknown` when not asked.
    pub restate: String,
    /// This is the node that answered.
    pub this: bool,
}

/// `GET /bro/v1/cluster`: every node the cluster knows, and whether it is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// False on a single node (no `[cluster]` in its config).
    pub clustered: bool,
    /// Restate's cluster name.
    pub cluster: String,
    /// The node that answered.
    pub node: String,
    /// The members of the config (addresses).
    pub members: Vec<String>,
    pub nodes: Vec<NodeStatus>,
}
