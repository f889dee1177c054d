//! The daemon's part in a cluster (`[cluster]` in its config): the cluster secret, this
//! daemon's [`ClusterView`], the [`HostRouter`] that sends another node's work to that node,
//! and the heartbeat that tells the cluster this node is alive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::host::{HostError, HostErrorKind, HostRouter, WorkerHost};
use crate::node::auth::NodeVerifier;
use crate::node::remote::RemoteWorkerHost;
use crate::node::secret::ClusterSecret;
use crate::orchestrator::cluster::ClusterView;
use crate::orchestrator::ingress::Ingress;
use crate::orchestrator::node::BEAT_EVERY;
use crate::protocol::cluster::NodeBeat;
use crate::settings::{ClusterSettings, Settings};

/// How often the view of the cluster is read again.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// What a clustered daemon holds.
pub struct Cluster {
    pub settings: ClusterSettings,
    pub secret: ClusterSecret,
    /// Checks the other nodes' signed requests to this node, with one replay cache shared by
    /// the node routes and the API key check.
    pub verifier: Arc<NodeVerifier>,
    pub view: Arc<ClusterView>,
    pub hosts: Arc<ClusterHosts>,
}

impl Cluster {
    /// The cluster parts of a daemon whose settings have `[cluster]` (and so a `secret`);
    /// `None` without.
    pub fn new(
        settings: &Settings,
        secret: Option<ClusterSecret>,
        ingress: &Ingress,
        local: Arc<dyn WorkerHost>,
    ) -> Option<Cluster> {
        let (Some(cs), Some(secret)) = (&settings.cluster, secret) else {
            return None;
        };
        let view = Arc::new(ClusterView::new(
            ingress.clone(),
            settings.node.clone(),
            cs.name.clone(),
            cs.members.iter().map(|m| m.to_string()).collect(),
        ));
        let hosts = Arc::new(ClusterHosts {
            node: settings.node.clone(),
            local,
            view: Arc::clone(&view),
            secret: secret.clone(),
            remotes: Mutex::new(HashMap::new()),
        });
        Some(Cluster {
            settings: cs.clone(),
            verifier: Arc::new(NodeVerifier::new(secret.clone(), settings.node.clone())),
            secret,
            view,
            hosts,
        })
    }
}

/// This node's host for its own node, a [`RemoteWorkerHost`] (made once per node and
/// address) for the others, found by their last heartbeat.
pub struct ClusterHosts {
    node: String,
    local: Arc<dyn WorkerHost>,
    view: Arc<ClusterView>,
    secret: ClusterSecret,
    /// Node name → the address its host was made for, and the host.
    remotes: Mutex<HashMap<String, Remote>>,
}

/// A remote host and the API address it calls.
type Remote = (String, Arc<dyn WorkerHost>);

impl HostRouter for ClusterHosts {
    fn of(&self, node: &str) -> Result<Arc<dyn WorkerHost>, HostError> {
        if node == self.node {
            return Ok(Arc::clone(&self.local));
        }
        let api = self.view.api_of(node).ok_or_else(|| {
            HostError::new(
                HostErrorKind::Retryable,
                format!("node {node} is not known here (no heartbeat of it seen yet)"),
            )
        })?;
        let mut remotes = self.remotes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, host)) = remotes.get(node)
            && *at == api
        {
            return Ok(Arc::clone(host));
        }
        let base = url::Url::parse(&api).map_err(|e| {
            HostError::new(
                HostErrorKind::Permanent,
                format!("node {node} beats with an unusable address {api:?}: {e}"),
            )
        })?;
        let host: Arc<dyn WorkerHost> = Arc::new(
            RemoteWorkerHost::new(node.to_string(), base, self.secret.clone())
                .map_err(|e| HostError::new(HostErrorKind::Permanent, e.to_string()))?,
        );
        remotes.insert(node.to_string(), (api, Arc::clone(&host)));
        Ok(host)
    }
}

/// Beats every [`BEAT_EVERY`] and reads the cluster again every [`REFRESH_EVERY`], until
/// `stop`. A failed beat is logged (once per run of failures) and tried again next time.
pub async fn run(
    ingress: Ingress,
    view: Arc<ClusterView>,
    beat: NodeBeat,
    stop: CancellationToken,
) {
    // Apart, so a slow read of the cluster (a query stalled while partitions fail over) never
    // holds a beat back: a node whose beats stop for LOST_AFTER is declared lost.
    tokio::join!(
        beat_loop(&ingress, &beat, &stop),
        refresh_loop(&view, &stop)
    );
}

async fn beat_loop(ingress: &Ingress, beat: &NodeBeat, stop: &CancellationToken) {
    let mut beats = tokio::time::interval(BEAT_EVERY);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = beats.tick() => {}
        }
        let sent = tokio::select! {
            () = stop.cancelled() => return,
            sent = ingress.beat(beat.clone()) => sent,
        };
        match sent {
            Ok(()) if failing => {
                tracing::info!("heartbeats reach the cluster again");
                failing = false;
            }
            Ok(()) => {}
            Err(err) if !failing => {
                tracing::warn!(error = %err, "a heartbeat failed; the cluster declares this node lost after missing them for a while");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

async fn refresh_loop(view: &ClusterView, stop: &CancellationToken) {
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = refresh.tick() => {}
        }
        let read = tokio::select! {
            () = stop.cancelled() => return,
            read = view.refresh() => read,
        };
        if let Err(err) = read {
            tracing::debug!(error = %err, "reading the cluster's state failed");
        }
    }
}

/// Issues this node a new fabric certificate every [`fabric_tls::REISSUE_EVERY`] (each is
/// valid for a week; restate-server reads the files again every hour), until `stop`.
pub async fn reissue_fabric_certificates(
    dir: std::path::PathBuf,
    secret: ClusterSecret,
    settings: ClusterSettings,
    node: String,
    bind: std::net::IpAddr,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(super::fabric_tls::REISSUE_EVERY) => {}
        }
        match super::fabric_tls::write(&dir, &secret, &settings.name, &node, bind) {
            Ok(_) => tracing::info!("issued this node a new fabric certificate"),
            Err(err) => {
                tracing::error!(%err, "issuing this node a new fabric certificate failed; the current one expires within a week")
            }
        }
    }
}
