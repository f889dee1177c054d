//! `bro session create|list|get|kill`: build the request, call the daemon, print.

use anyhow::{Result, bail};

use crate::cli::{CreateArgs, SessionCommand};
use crate::client::{self, ClientError};
use crate::output;
use crate::paths::Paths;
use crate::protocol::session::Dimensions;
use crate::protocol::steel::{CreateSessionRequest, MemoryLimit};

/// Runs `bro session ...`, starting the daemon when none runs.
pub async fn run(paths: Paths, cmd: SessionCommand) -> Result<()> {
    let client = client::ensure_daemon(&paths).await?;
    match cmd {
        SessionCommand::Create(args) => {
            let (json, no_wait, node) = (args.json, args.no_wait, args.node.clone());
            // The note reads this node's pool: it says nothing of another node's.
            if !no_wait
                && let Ok(st) = client.status().await
                && node.as_deref().is_none_or(|n| n == st.node)
                && let Some(pool) = st.pool.filter(|p| p.used >= p.capacity)
            {
                output::progress(&format!(
                    "all {} session slots are in use: waiting in the queue ({} ahead, up to {})",
                    pool.capacity,
                    pool.queued.len(),
                    output::duration(st.queue_timeout_ms)
                ));
            }
            let details = client
                .create_session_on(&request(args), no_wait, node.as_deref())
                .await?;
            output::session_created(&details, json);
        }
        SessionCommand::List { status, json } => {
            let list = client.list_sessions(status).await?;
            output::session_list(&list, json);
        }
        SessionCommand::Get { id, json } => match client.get_session(&id).await {
            Ok(details) => output::session(&details, json),
            Err(e) if e.is_not_found() => bail!("no session with id {id}"),
            Err(e) => return Err(e.into()),
        },
        SessionCommand::Kill { ids, all, json } => kill(&client, ids, all, json).await?,
    }
    Ok(())
}

fn request(args: CreateArgs) -> CreateSessionRequest {
    CreateSessionRequest {
        session_id: args.session_id,
        dimensions: args
            .width
            .zip(args.height)
            .map(|(width, height)| Dimensions { width, height }),
        user_agent: args.user_agent,
        proxy_url: args.proxy,
        timeout: args.timeout,
        inactivity_timeout: args.inactivity_timeout,
        record: match (args.record, args.no_record) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        memory_limit: args.memory_limit.map(MemoryLimit::Bytes),
        cpu_share: args.cpu_share,
        ..Default::default()
    }
}

async fn kill(
    client: &client::DaemonClient,
    ids: Vec<String>,
    all: bool,
    json: bool,
) -> Result<()> {
    if all {
        let resp = client.release_all().await?;
        output::released_all(&resp, json);
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut released = Vec::new();
    for id in ids {
        match client.release_session(&id).await {
            Ok(resp) => released.push(resp),
            Err(ClientError::Api { status: 404, .. }) => missing.push(id),
            Err(e) => return Err(e.into()),
        }
    }
    output::released(&released, json);
    match missing.as_slice() {
        [] => Ok(()),
        [one] => bail!("no session with id {one}"),
        many => bail!("no sessions with ids {}", many.join(", ")),
    }
}
