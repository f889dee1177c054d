//! `bro cluster status`: ask the running daemon what its cluster knows, print it. Starts no
//! daemon (as `bro daemon status`): a status of a daemon started to answer it would say
//! nothing about the cluster that was there.

use anyhow::{Result, bail};

use crate::cli::ClusterCommand;
use crate::client::{ClientError, DaemonClient};
use crate::output;
use crate::paths::Paths;

/// Runs `bro cluster ...`.
pub async fn run(paths: Paths, cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Status { json } => status(&paths, json).await,
        ClusterCommand::Forget { node } => {
            crate::config::check_node(&node).map_err(anyhow::Error::msg)?;
            DaemonClient::new(paths.socket()).forget_node(&node).await?;
            println!("forgot node {node}");
            Ok(())
        }
    }
}

/// `bro cluster status [--json]`: exit 0 whenever the daemon answered, whatever the nodes'
/// health (scripts read `healthy` in the JSON).
async fn status(paths: &Paths, json: bool) -> Result<()> {
    let client = DaemonClient::new(paths.socket());
    match client.cluster_status().await {
        Ok(st) => {
            output::cluster_status(&st, json);
            Ok(())
        }
        Err(ClientError::NotRunning(sock)) => {
            if json {
                output::json(&serde_json::json!({ "running": false, "socket": sock }));
            }
            bail!("no bro daemon is running (socket {sock}); start one with `bro daemon start`")
        }
        Err(e) if e.is_not_found() => {
            let version = client.status().await.map_or_else(
                |_| "an older bro".to_string(),
                |st| format!("bro {}", st.version),
            );
            bail!(
                "the running daemon ({version}) does not serve the cluster status; restart it \
                 with this bro ({}): `bro daemon stop --keep-sessions && bro daemon start`",
                crate::VERSION
            )
        }
        Err(e) => Err(e.into()),
    }
}
