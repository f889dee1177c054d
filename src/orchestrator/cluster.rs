//! This daemon's view of the cluster: every node's heartbeat record and `Pool` usage, read
//! from Restate state (one introspection query, refreshed by the daemon about once a second),
//! and placement from it: a create goes to the healthy node with the most free slots, ties
//! going to the node that got it.
//!
//! The view is a cache: it remembers the creates it placed until their node's `Pool` shows
//! them (or 10 s pass), so a burst of creates through one node spreads over the cluster
//! instead of piling on the node that looked emptiest a second ago; and when the cluster
//! looks full it reads the state again before it decides. Two nodes placing at once may
//! still pick the same node; its `Pool` then queues the extra create (a `Pool` is the only
//! judge of its slots). A full cluster queues a create on the node that got it: each node's
//! queue is its `Pool`'s, served as that node's slots free.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::orchestrator::ingress::{Ingress, IngressError, NodeState};
use crate::orchestrator::node::LOST_AFTER;
use crate::protocol::cluster::{NodeRecord, NodeStatus};

/// Why a create cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// The client named a node the cluster does not know.
    #[error("node {0:?} is not a node of this cluster (see bro cluster status)")]
    Unknown(String),
    /// The client named a node that is lost or not beating.
    #[error("node {0} is not healthy (lost, or no heartbeat lately); see bro cluster status")]
    Unhealthy(String),
}

/// How long a placed create counts against its node before its `Pool` shows it.
const PENDING_FOR: Duration = Duration::from_secs(10);

/// One node as the view holds it.
#[derive(Debug, Clone)]
struct Entry {
    state: NodeState,
    /// When this daemon first saw the node's current beat count, by this machine's clock
    /// (unix ms): the nodes' clocks may differ, so a beat's own time is not compared.
    seen_here_ms: u64,
    /// Creates placed on it that its `Pool` did not show yet, and when.
    placed: Vec<(String, Instant)>,
}

impl Entry {
    /// Its slots: its `Pool`'s capacity, lowered by its free memory floor (a node short of
    /// memory is placed on as a full one).
    fn capacity(&self) -> u32 {
        let configured = self
            .state
            .config
            .map(|c| c.capacity)
            .or(self.state.record.as_ref().map(|r| r.beat.capacity))
            .unwrap_or(0);
        configured.min(self.state.memory_cap.unwrap_or(u32::MAX))
    }

    fn free(&self) -> u32 {
        let pending = self.placed.len() as u32;
        self.capacity()
            .saturating_sub(self.state.used.saturating_add(pending))
    }

    fn healthy(&self, now_ms: u64) -> bool {
        self.state
            .record
            .as_ref()
            .is_some_and(|r| healthy(r, self.seen_here_ms, now_ms))
    }
}

/// A heartbeat record that is not lost, and whose beat count changed within [`LOST_AFTER`]
/// (`seen_here_ms`, by this machine's clock).
fn healthy(rec: &NodeRecord, seen_here_ms: u64, now_ms: u64) -> bool {
    !rec.lost && now_ms.saturating_sub(seen_here_ms) < LOST_AFTER.as_millis() as u64
}

/// The cluster as this daemon last read it.
pub struct ClusterView {
    ingress: Ingress,
    /// This daemon's node.
    node: String,
    /// Restate's cluster name.
    pub name: String,
    /// The members of the config (addresses), as written.
    pub members: Vec<String>,
    entries: Mutex<Vec<Entry>>,
}

impl ClusterView {
    pub fn new(ingress: Ingress, node: String, name: String, members: Vec<String>) -> Self {
        ClusterView {
            ingress,
            node,
            name,
            members,
            entries: Mutex::new(Vec::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the cluster's state again; on an error the last view stays.
    pub async fn refresh(&self) -> Result<(), IngressError> {
        let nodes = self.ingress.cluster_state().await?;
        let now_ms = crate::now_ms();
        let mut entries = self.entries();
        let beats = |e: &Entry| e.state.record.as_ref().map(|r| r.beats);
        let seen: Vec<(String, Option<u64>, u64)> = entries
            .iter()
            .map(|e| (e.state.name.clone(), beats(e), e.seen_here_ms))
            .collect();
        let mut placed: Vec<(String, Vec<(String, Instant)>)> = entries
            .drain(..)
            .map(|e| (e.state.name, e.placed))
            .collect();
        *entries = nodes
            .into_iter()
            .map(|state| {
                let count = state.record.as_ref().map(|r| r.beats);
                let seen_here_ms = seen
                    .iter()
                    .find(|(name, b, _)| *name == state.name && *b == count)
                    .map_or(now_ms, |(_, _, at)| *at);
                let pending = placed
                    .iter_mut()
                    .find(|(name, _)| *name == state.name)
                    .map(|(_, p)| std::mem::take(p))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(id, at)| at.elapsed() < PENDING_FOR && !state.sessions.contains(id))
                    .collect();
                Entry {
                    state,
                    seen_here_ms,
                    placed: pending,
                }
            })
            .collect();
        Ok(())
    }

    /// [`ClusterView::place_now`], reading the state again first when the view says every
    /// healthy node is full (a slot may have come free since the last read).
    pub async fn place(&self, asked: Option<&str>, id: &str) -> Result<String, PlaceError> {
        let full = asked.is_none()
            && self
                .entries()
                .iter()
                .all(|e| !e.healthy(crate::now_ms()) || e.free() == 0);
        if full && let Err(err) = self.refresh().await {
            tracing::debug!(error = %err, "reading the cluster's state failed");
        }
        self.place_now(asked, id, crate::now_ms())
    }

    /// The node the create of session `id` goes to: `asked` when the client named one (it
    /// must be known and healthy), else the healthy node with the most free slots, ties (and
    /// a full cluster) going to this node. The pick counts against its node until its
    /// `Pool` shows the session.
    pub fn place_now(
        &self,
        asked: Option<&str>,
        id: &str,
        now_ms: u64,
    ) -> Result<String, PlaceError> {
        let mut entries = self.entries();
        let pending = (id.to_string(), Instant::now());
        if let Some(asked) = asked {
            if asked == self.node {
                return Ok(asked.to_string());
            }
            let entry = entries
                .iter_mut()
                .find(|e| e.state.name == asked && e.state.record.is_some())
                .ok_or_else(|| PlaceError::Unknown(asked.to_string()))?;
            if !entry.healthy(now_ms) {
                return Err(PlaceError::Unhealthy(asked.to_string()));
            }
            entry.placed.push(pending);
            return Ok(asked.to_string());
        }
        let own_free = entries
            .iter()
            .find(|e| e.state.name == self.node)
            .map(Entry::free);
        let best = entries
            .iter_mut()
            .filter(|e| e.healthy(now_ms) && e.state.name != self.node)
            .max_by(|a, b| {
                a.free()
                    .cmp(&b.free())
                    .then(b.state.name.cmp(&a.state.name))
            });
        match best {
            Some(e) if e.free() > own_free.unwrap_or(0) => {
                e.placed.push(pending);
                Ok(e.state.name.clone())
            }
            _ => {
                if let Some(own) = entries.iter_mut().find(|e| e.state.name == self.node) {
                    own.placed.push(pending);
                }
                Ok(self.node.clone())
            }
        }
    }

    /// The API address (`http://ip:port`) of `node`, from its last heartbeat.
    pub fn api_of(&self, node: &str) -> Option<String> {
        self.entries()
            .iter()
            .find(|e| e.state.name == node)
            .and_then(|e| e.state.record.as_ref())
            .map(|r| r.beat.api.clone())
    }

    /// Every node that ever beat, for `bro cluster status`.
    pub fn status(&self, now_ms: u64) -> Vec<NodeStatus> {
        self.entries()
            .iter()
            .filter_map(|e| {
                let rec = e.state.record.as_ref()?;
                Some(NodeStatus {
                    name: e.state.name.clone(),
                    address: rec.beat.api.clone(),
                    healthy: healthy(rec, e.seen_here_ms, now_ms),
                    capacity: e.capacity(),
                    used: e.state.used,
                    queued: e.state.queued,
                    last_seen_ms: now_ms.saturating_sub(e.seen_here_ms),
                    // A beat goes through the node's own restate-server: beats arriving say
                    // it runs and reaches the cluster.
                    restate: if healthy(rec, e.seen_here_ms, now_ms) {
                        "alive"
                    } else {
                        "silent"
                    }
                    .into(),
                    this: e.state.name == self.node,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::ingress::RestateAddr;
    use crate::orchestrator::pool::PoolConfig;
    use crate::protocol::cluster::NodeBeat;

    fn node(name: &str, capacity: u32, used: u32, seen_ms: u64, lost: bool) -> Entry {
        Entry {
            state: NodeState {
                name: name.into(),
                record: Some(NodeRecord {
                    beat: NodeBeat {
                        name: name.into(),
                        api: format!("http://{name}:3000"),
                        fabric: String::new(),
                        capacity,
                        version: String::new(),
                    },
                    beats: 1,
                    seen_ms,
                    lost,
                }),
                config: Some(PoolConfig {
                    capacity,
                    max_queue: 4,
                    queue_timeout_ms: 1000,
                }),
                used,
                queued: 0,
                sessions: (0..used).map(|i| format!("{name}-{i}")).collect(),
                memory_cap: None,
            },
            seen_here_ms: seen_ms,
            placed: Vec::new(),
        }
    }

    fn view(entries: Vec<Entry>) -> ClusterView {
        let addr = RestateAddr::parse("http://127.0.0.1:1").unwrap();
        let ingress = Ingress::new(addr.clone(), addr).unwrap();
        let v = ClusterView::new(ingress, "n1".into(), "bro".into(), Vec::new());
        *v.entries() = entries;
        v
    }

    #[test]
    fn creates_go_to_the_most_free_healthy_node_ties_to_this_one() {
        let now = 100_000;
        let v = view(vec![
            node("n1", 2, 0, now, false),
            node("n2", 2, 0, now, false),
            node("n3", 2, 0, now, false),
        ]);
        // All equal: this node, then the others as this one fills.
        let picks: Vec<String> = (0..6)
            .map(|i| v.place_now(None, &format!("s{i}"), now).unwrap())
            .collect();
        assert_eq!(picks, ["n1", "n2", "n3", "n1", "n2", "n3"]);
        // A full cluster queues on this node.
        assert_eq!(v.place_now(None, "s6", now).unwrap(), "n1");
    }

    #[test]
    fn a_node_short_of_memory_is_placed_on_as_a_full_one() {
        let mut short = node("a", 8, 1, 0, false);
        short.state.memory_cap = Some(1);
        assert_eq!(short.capacity(), 1);
        assert_eq!(short.free(), 0);
        short.state.memory_cap = Some(20);
        assert_eq!(short.capacity(), 8, "the floor never raises the capacity");
    }

    #[test]
    fn lost_and_silent_nodes_get_no_creates_unless_named() {
        let now = 100_000;
        let stale = now - LOST_AFTER.as_millis() as u64 - 1;
        let v = view(vec![
            node("n1", 2, 2, now, false),
            node("n2", 9, 0, now, true),
            node("n3", 9, 0, stale, false),
        ]);
        assert_eq!(v.place_now(None, "a", now).unwrap(), "n1");
        assert_eq!(
            v.place_now(Some("n2"), "b", now),
            Err(PlaceError::Unhealthy("n2".into()))
        );
        assert_eq!(
            v.place_now(Some("n9"), "c", now),
            Err(PlaceError::Unknown("n9".into()))
        );
        assert_eq!(v.place_now(Some("n1"), "d", now).unwrap(), "n1");
        let status = v.status(now);
        assert_eq!(
            status
                .iter()
                .map(|s| (s.name.as_str(), s.healthy))
                .collect::<Vec<_>>(),
            [("n1", true), ("n2", false), ("n3", false)]
        );
        assert_eq!(v.api_of("n3").as_deref(), Some("http://n3:3000"));
    }
}
