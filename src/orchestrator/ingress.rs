//! Typed calls into Restate: the orchestrator's handlers through the ingress, with the
//! clients restate-sdk generates from the handler definitions (so a handler's name and its
//! caller cannot drift), and listings through the admin SQL introspection API. The API uses
//! this and never touches Chromium itself.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use restate_sdk::ingress::{CallResponse, ClientError, SendResponse};
use restate_sdk::serde::Json;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::orchestrator::node::NodeObjectIngressClient;
use crate::orchestrator::pool::{
    MEMORY_CAP, MemoryRoom, PoolConfig, PoolObjectIngressClient, Waiter,
};
use crate::orchestrator::session::{
    CODE_AT_CAPACITY, CODE_BAD_INPUT, CODE_NOT_FOUND, CODE_REFUSED, CreateCommand,
    SessionObjectIngressClient, WorkerExited,
};
use crate::orchestrator::warm::{WarmObjectIngressClient, WarmStatus};
use crate::protocol::cluster::{NodeBeat, NodeRecord};
use crate::protocol::control::{InvocationRow, JournalEntry, PoolUsage};
use crate::protocol::session::{SessionId, SessionOptions, SessionRecord, SessionStatus};
use crate::protocol::steel::SessionContext;

/// Why a call into Restate failed, by kind: the API maps each to one HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngressError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AtCapacity(String),
    /// A handler refused its input (a terminal error with code 400): the caller's fault.
    #[error("{0}")]
    BadInput(String),
    /// The browser refused what the client sent (a `sessionContext`): the client's fault too,
    /// but well-formed input.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
    #[error("restate is unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The generated clients over [`Http`].
type Transport = restate_sdk::ingress::Client<Http>;

/// The generated clients' HTTP transport: reqwest over the ingress's Unix socket or URL.
/// (restate-sdk's own `reqwest-client` feature would pull in reqwest's TLS stack.)
#[derive(Clone)]
pub struct Http(reqwest::Client);

impl restate_sdk::ingress::RequestExecutor for Http {
    type Error = reqwest::Error;

    async fn execute(
        &self,
        mut request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, reqwest::Error> {
        // restate-server continues the caller's trace (when traces are exported).
        crate::telemetry::otlp::inject(request.headers_mut());
        let request = reqwest::Request::try_from(request)?;
        let response = self.0.execute(request).await?;
        let mut out = http::Response::builder()
            .status(response.status())
            .version(response.version());
        if let Some(headers) = out.headers_mut() {
            *headers = response.headers().clone();
        }
        let body = response.bytes().await?;
        // Status, version and headers came from a valid response: the builder cannot fail.
        Ok(out.body(body).unwrap_or_default())
    }
}

/// Where one of Restate's HTTP APIs listens: a Unix socket (bro's own restate-server, which
/// opens no TCP port: only processes of bro's user that can enter its 0700 dir reach it) or
/// a URL (an external Restate given by `--restate-admin-url`/`--restate-ingress-url`).
/// Written `unix:/abs/path.sock` or `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestateAddr {
    Unix(PathBuf),
    Http(String),
}

impl RestateAddr {
    /// Parses `unix:/abs/path` or an `http(s)://` URL.
    pub fn parse(text: &str) -> Result<RestateAddr, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!("{text}: a unix: address needs an absolute path"));
            }
            return Ok(RestateAddr::Unix(path));
        }
        let url = url::Url::parse(text).map_err(|e| format!("{text}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!(
                "{text}: expected http://HOST:PORT, https://… or unix:/path/to.sock"
            ));
        }
        Ok(RestateAddr::Http(text.trim_end_matches('/').to_string()))
    }

    /// The URL of `path` (which starts with `/`) on this API.
    pub fn url(&self, path: &str) -> String {
        match self {
            // The host is only the `Host` header; the connection goes to the socket.
            RestateAddr::Unix(_) => format!("http://localhost{path}"),
            RestateAddr::Http(base) => format!("{base}{path}"),
        }
    }

    /// An HTTP client that reaches this API.
    pub fn client(&self) -> reqwest::Client {
        let builder = reqwest::Client::builder();
        let builder = match self {
            RestateAddr::Unix(path) => builder.unix_socket(path.clone()),
            RestateAddr::Http(_) => builder,
        };
        builder.build().unwrap_or_default()
    }
}

impl std::fmt::Display for RestateAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestateAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            RestateAddr::Http(url) => f.write_str(url),
        }
    }
}

/// Client of one Restate's ingress and admin APIs.
#[derive(Clone)]
pub struct Ingress {
    transport: Transport,
    admin_http: reqwest::Client,
    pub ingress: RestateAddr,
    pub admin: RestateAddr,
}

#[derive(Deserialize)]
struct RestateErrorBody {
    message: String,
}

#[derive(Deserialize)]
struct QueryRows<T> {
    rows: Vec<T>,
}

#[derive(Deserialize)]
struct StateRow {
    value_utf8: Option<String>,
}

#[derive(Deserialize)]
struct KeyedStateRow {
    service_name: String,
    key: String,
    value_utf8: Option<String>,
}

/// The `Warm` object's state among `rows`.
fn warm_status(rows: &[KeyedStateRow]) -> WarmStatus {
    WarmStatus {
        target: 0,
        ready: state_value(rows, "Warm", "ready").unwrap_or_default(),
        filling: state_value(rows, "Warm", "filling").unwrap_or_default(),
    }
}

/// Why one object's state key among `rows` does not parse as a `T`; `None` when it does or
/// is not there.
fn state_error<T: DeserializeOwned>(
    rows: &[KeyedStateRow],
    service: &str,
    key: &str,
) -> Option<String> {
    let row = rows
        .iter()
        .find(|r| r.service_name == service && r.key == key)?;
    let text = match row.value_utf8.as_deref() {
        Some(text) => text,
        None => return Some(format!("{service} state '{key}' is not UTF-8")),
    };
    serde_json::from_str::<T>(text)
        .err()
        .map(|e| format!("{service} state '{key}' does not parse: {e}"))
}

#[derive(Debug, Deserialize)]
struct ServiceStateRow {
    service_name: String,
    service_key: String,
    key: String,
    value_utf8: Option<String>,
}

/// One node's `Node` and `Pool` state, as [`Ingress::cluster_state`] reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    /// Its heartbeat record; `None` for a node that has a `Pool` but never beat (a single
    /// node, or one of an older bro).
    pub record: Option<NodeRecord>,
    /// Its `Pool`'s bounds, once it configured them.
    pub config: Option<PoolConfig>,
    pub used: u32,
    pub queued: u32,
    /// The sessions holding or waiting for its slots.
    pub sessions: Vec<String>,
    /// The most sessions its free memory allows (`--min-free-memory`), when it has a floor.
    pub memory_cap: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct KeyedValueRow {
    service_key: String,
    value_utf8: Option<String>,
}

/// Session records as Restate holds them: those that parse, and those that do not.
#[derive(Debug, Default)]
pub struct Records {
    pub records: Vec<SessionRecord>,
    pub unreadable: Vec<UnreadableRecord>,
}

/// A session record that exists but cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRecord {
    /// The `Session` object's key: the session id.
    pub key: String,
    pub error: String,
}

fn parse_records(rows: Vec<KeyedValueRow>) -> Records {
    let mut out = Records::default();
    for row in rows {
        let parsed = match row.value_utf8.as_deref() {
            Some(text) => serde_json::from_str(text).map_err(|e| e.to_string()),
            None => Err("the value is not UTF-8".to_string()),
        };
        match parsed {
            Ok(rec) => out.records.push(rec),
            Err(error) => out.unreadable.push(UnreadableRecord {
                key: row.service_key,
                error,
            }),
        }
    }
    out
}

/// The value of one object's state key among `rows`, parsed.
fn state_value<T: DeserializeOwned>(rows: &[KeyedStateRow], service: &str, key: &str) -> Option<T> {
    let row = rows
        .iter()
        .find(|r| r.service_name == service && r.key == key)?;
    serde_json::from_str(row.value_utf8.as_deref()?).ok()
}

impl Ingress {
    /// A client of the ingress and admin APIs at these addresses; an ingress URL the
    /// generated clients cannot take as their base (one with a query) is refused.
    pub fn new(ingress: RestateAddr, admin: RestateAddr) -> Result<Self, String> {
        let base: http::Uri = ingress
            .url("/")
            .parse()
            .map_err(|e| format!("restate ingress {ingress}: {e}"))?;
        let transport = Transport::new(base, Http(ingress.client()))
            .map_err(|e| format!("restate ingress {ingress}: {e}"))?;
        Ok(Ingress {
            transport,
            admin_http: admin.client(),
            ingress,
            admin,
        })
    }

    fn session(&self, id: &SessionId) -> SessionObjectIngressClient<Http> {
        SessionObjectIngressClient::from_client(self.transport.clone(), id.as_str())
    }

    fn pool_of(&self, node: &str) -> PoolObjectIngressClient<Http> {
        PoolObjectIngressClient::from_client(self.transport.clone(), node)
    }

    fn warm_of(&self, node: &str) -> WarmObjectIngressClient<Http> {
        WarmObjectIngressClient::from_client(self.transport.clone(), node)
    }

    /// `Session/create`: launches the session's browser, or returns the existing session.
    /// With `wait`, a full node queues the create for up to that long; without, it is 429.
    /// `warm`: whether this daemon keeps a warm pool (a browser is taken from the node's when
    /// one fits).
    /// A session that ended `failed` is an error: [`IngressError::Refused`] when the browser
    /// refused the client's context, else [`IngressError::Failed`].
    pub async fn create(
        &self,
        id: &SessionId,
        options: SessionOptions,
        context: Option<SessionContext>,
        wait: Option<Duration>,
        node: Option<String>,
        warm: bool,
    ) -> Result<SessionRecord, IngressError> {
        let cmd = CreateCommand {
            options,
            context,
            wait: wait.is_some(),
            node,
            requested_at_ms: Some(crate::orchestrator::now_ms()),
            warm: Some(warm),
        };
        let timeout = Duration::from_secs(180) + wait.unwrap_or_default();
        let rec = self
            .call(timeout, self.session(id).create(Json(cmd)).call())
            .await?
            .into_inner();
        if rec.status != SessionStatus::Failed {
            return Ok(rec);
        }
        let reason = rec.reason.as_deref().unwrap_or("unknown reason");
        let message = format!("session {id} failed: {reason}");
        Err(if rec.refused {
            IngressError::Refused(message)
        } else {
            IngressError::Failed(message)
        })
    }

    /// Sends `Pool/leave`: the client of a waiting create hung up.
    pub async fn leave_queue(&self, node: &str, id: &SessionId) -> Result<(), IngressError> {
        self.send(self.pool_of(node).leave(id.to_string()).send())
            .await
    }

    /// Sends `Pool/release`: hands back a slot whose holder no `Session` object can speak for.
    pub async fn release_slot(&self, node: &str, holder: &str) -> Result<(), IngressError> {
        self.send(self.pool_of(node).release(holder.to_string()).send())
            .await
    }

    /// `Pool/clear_queue`: ends the waits of a previous daemon's clients; how many there were.
    pub async fn clear_queue(&self, node: &str) -> Result<u32, IngressError> {
        let call = self.pool_of(node).clear_queue().call();
        Ok(self.call(Duration::from_secs(30), call).await?.into_inner())
    }

    /// `Session/release`.
    pub async fn release(&self, id: &SessionId) -> Result<SessionRecord, IngressError> {
        let call = self.session(id).release().call();
        Ok(self.call(Duration::from_secs(60), call).await?.into_inner())
    }

    /// `Session/idle`: ends a session left without CDP traffic past its `inactivityTimeout`.
    pub async fn idle(&self, id: &SessionId) -> Result<SessionRecord, IngressError> {
        let call = self.session(id).idle().call();
        Ok(self.call(Duration::from_secs(60), call).await?.into_inner())
    }

    /// The invocations that are not completed, and the latest completed ones, newest first.
    pub async fn invocations(&self, limit: usize) -> Result<Vec<InvocationRow>, IngressError> {
        let sql = format!(
            "SELECT id, target, status, retry_count, last_failure, created_at FROM sys_invocation \
             ORDER BY CASE WHEN status = 'completed' THEN 1 ELSE 0 END, created_at DESC LIMIT {limit}"
        );
        self.query(&sql).await
    }

    /// The journal of one invocation, in order.
    pub async fn journal(&self, invocation_id: &str) -> Result<Vec<JournalEntry>, IngressError> {
        if !invocation_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT index, entry_type, name FROM sys_journal WHERE id = '{invocation_id}' ORDER BY index"
        );
        self.query_attempts(&sql, 1).await
    }

    /// The sessions holding `node`'s capacity, read from the `Pool` object's state (a read
    /// through introspection: polling it creates no invocations).
    pub async fn pool(
        &self,
        node: &str,
        capacity: u32,
        max_queue: u32,
    ) -> Result<PoolUsage, IngressError> {
        Ok(self.pool_and_warm(node, capacity, max_queue).await?.0)
    }

    /// [`Ingress::pool`] and the warm pool's browsers, from one query.
    pub async fn pool_and_warm(
        &self,
        node: &str,
        capacity: u32,
        max_queue: u32,
    ) -> Result<(PoolUsage, WarmStatus), IngressError> {
        // Status answers must stay quick when Restate is down: one attempt, no retries.
        let rows = self.node_state(node, 1).await?;
        let sessions: Vec<String> = state_value(&rows, "Pool", "sessions").unwrap_or_default();
        let queued: Vec<String> = state_value::<Vec<Waiter>>(&rows, "Pool", "queue")
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.session_id)
            .collect();
        let warm = warm_status(&rows);
        let usage = PoolUsage {
            capacity,
            used: sessions.len() as u32,
            sessions,
            max_queue,
            queued,
            warm_ready: warm.ready.iter().map(|e| e.id.clone()).collect(),
        };
        Ok((usage, warm))
    }

    /// The node's warm pool as its `Warm` object holds it (read through introspection).
    pub async fn warm(&self, node: &str) -> Result<WarmStatus, IngressError> {
        Ok(self.warm_checked(node).await?.0)
    }

    /// [`Ingress::warm`], with why the `Warm` state does not parse when it does not (an
    /// unreadable pool must not pass for an empty one).
    pub async fn warm_checked(
        &self,
        node: &str,
    ) -> Result<(WarmStatus, Option<String>), IngressError> {
        let rows = self.node_state(node, 10).await?;
        let error =
            state_error::<Vec<crate::orchestrator::warm::WarmEntry>>(&rows, "Warm", "ready")
                .or_else(|| state_error::<Vec<String>>(&rows, "Warm", "filling"));
        Ok((warm_status(&rows), error))
    }

    /// `Warm/configure`: `node`'s warm target, set by that node; the pool fills to it.
    pub async fn warm_configure(&self, node: &str, target: u32) -> Result<(), IngressError> {
        let call = self.warm_of(node).configure(target).call();
        self.call(Duration::from_secs(30), call).await
    }

    /// `Warm/fill`, sent: the warm pool launches up to its target.
    pub async fn warm_fill(&self, node: &str) -> Result<(), IngressError> {
        self.send(self.warm_of(node).fill().send()).await
    }

    /// `Warm/discard`, sent: a ready browser died.
    pub async fn warm_discard(&self, node: &str, id: &str) -> Result<(), IngressError> {
        self.send(self.warm_of(node).discard(id.to_string()).send())
            .await
    }

    /// `Warm/drain`: stops every ready browser; how many there were.
    pub async fn warm_drain(&self, node: &str) -> Result<u32, IngressError> {
        let call = self.warm_of(node).drain().call();
        Ok(self.call(Duration::from_secs(60), call).await?.into_inner())
    }

    /// The state of the node's `Pool` and `Warm` objects, as rows.
    async fn node_state(
        &self,
        node: &str,
        attempts: u64,
    ) -> Result<Vec<KeyedStateRow>, IngressError> {
        let node = node.replace('\'', "''");
        let sql = format!(
            "SELECT service_name, key, value_utf8 FROM state \
             WHERE service_name IN ('Pool', 'Warm') AND service_key = '{node}'"
        );
        self.query_attempts(&sql, attempts).await
    }

    /// `Node/beat`: this node is alive, with what it tells the cluster.
    pub async fn beat(&self, beat: NodeBeat) -> Result<(), IngressError> {
        let call = NodeObjectIngressClient::from_client(self.transport.clone(), &beat.name)
            .beat(Json(beat.clone()))
            .call();
        self.call(Duration::from_secs(10), call).await
    }

    /// `Node/forget`: drops a removed node's heartbeat record (bad input while it beats).
    pub async fn forget_node(&self, node: &str) -> Result<(), IngressError> {
        let call = NodeObjectIngressClient::from_client(self.transport.clone(), node)
            .forget()
            .call();
        self.call(Duration::from_secs(10), call).await
    }

    /// `Pool/memory_room`: how many more sessions `node`'s free memory allows (`None`: no
    /// floor), sent by that node's daemon.
    pub async fn pool_memory_room(
        &self,
        node: &str,
        room: Option<MemoryRoom>,
    ) -> Result<(), IngressError> {
        let call = self.pool_of(node).memory_room(Json(room)).call();
        self.call(Duration::from_secs(10), call).await
    }

    /// `Pool/configure`: the bounds of `node`'s `Pool`, set by that node.
    pub async fn configure_pool(&self, node: &str, config: PoolConfig) -> Result<(), IngressError> {
        let call = self.pool_of(node).configure(Json(config)).call();
        self.call(Duration::from_secs(30), call).await
    }

    /// The `Node` and `Pool` state of every node, from one introspection query (one attempt:
    /// it is polled).
    pub async fn cluster_state(&self) -> Result<Vec<NodeState>, IngressError> {
        let sql = "SELECT service_name, service_key, key, value_utf8 FROM state \
                   WHERE service_name IN ('Node', 'Pool')";
        let rows: Vec<ServiceStateRow> = self.query_attempts(sql, 1).await?;
        let mut nodes: Vec<NodeState> = Vec::new();
        for row in rows {
            let Some(value) = row.value_utf8.as_deref() else {
                continue;
            };
            let i = match nodes.iter().position(|n| n.name == row.service_key) {
                Some(i) => i,
                None => {
                    nodes.push(NodeState {
                        name: row.service_key.clone(),
                        ..NodeState::default()
                    });
                    nodes.len() - 1
                }
            };
            let n = &mut nodes[i];
            match (row.service_name.as_str(), row.key.as_str()) {
                ("Node", "record") => n.record = serde_json::from_str(value).ok(),
                ("Pool", "sessions") => {
                    let ids: Vec<String> = serde_json::from_str(value).unwrap_or_default();
                    n.used = ids.len() as u32;
                    n.sessions.extend(ids);
                }
                ("Pool", "queue") => {
                    let waiters: Vec<Waiter> = serde_json::from_str(value).unwrap_or_default();
                    n.queued = waiters.len() as u32;
                    n.sessions.extend(waiters.into_iter().map(|w| w.session_id));
                }
                ("Pool", "config") => n.config = serde_json::from_str(value).ok(),
                ("Pool", MEMORY_CAP) => n.memory_cap = serde_json::from_str(value).ok(),
                _ => {}
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nodes)
    }

    /// `Session/get`.
    pub async fn get(&self, id: &SessionId) -> Result<SessionRecord, IngressError> {
        let call = self.session(id).get().call();
        Ok(self.call(Duration::from_secs(10), call).await?.into_inner())
    }

    /// Sends `Session/worker_exited` without waiting for it to run.
    pub async fn worker_exited(
        &self,
        id: &SessionId,
        pid: u32,
        reason: String,
        clean: bool,
    ) -> Result<(), IngressError> {
        let exit = WorkerExited { pid, reason, clean };
        self.send(self.session(id).worker_exited(Json(exit)).send())
            .await
    }

    /// Sends `Session/repair` (see `daemon::sweep`) without waiting for it to run.
    pub async fn repair(&self, id: &SessionId, node: &str) -> Result<(), IngressError> {
        self.send(self.session(id).repair(node.to_string()).send())
            .await
    }

    /// Sends `Session/forget`: clears an ended session's record.
    pub async fn forget(&self, id: &SessionId) -> Result<(), IngressError> {
        self.send(self.session(id).forget().send()).await
    }

    /// Enqueues a one-way call without waiting for it to run.
    async fn send<Res>(
        &self,
        send: impl Future<Output = Result<SendResponse<Http, Res>, ClientError>>,
    ) -> Result<(), IngressError> {
        match tokio::time::timeout(Duration::from_secs(10), send).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(self.client_error(err)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// One session's record, read through introspection (no invocation: for polling).
    pub async fn record(&self, id: &SessionId) -> Result<SessionRecord, IngressError> {
        // A `SessionId` is a UUID: nothing in it can end the SQL string.
        let key = id.as_str();
        let sql = format!(
            "SELECT value_utf8 FROM state WHERE service_name = 'Session' AND service_key = '{key}' AND key = 'record'"
        );
        let rows: Vec<StateRow> = self.query_attempts(&sql, 1).await?;
        rows.into_iter()
            .find_map(|r| serde_json::from_str(r.value_utf8.as_deref()?).ok())
            .ok_or_else(|| IngressError::NotFound(format!("session {id} not found")))
    }

    /// Every session record in Restate state (any status) that parses. The ones that do not
    /// are left out here (logged at debug); the supervisor reports them ([`Ingress::list_all`]).
    pub async fn list(&self) -> Result<Vec<SessionRecord>, IngressError> {
        let all = self.list_all().await?;
        for bad in &all.unreadable {
            tracing::debug!(session_id = %bad.key, error = %bad.error, "a session record does not parse");
        }
        Ok(all.records)
    }

    /// Every session record in Restate state, and the ones this bro cannot parse (another
    /// version's format, say): a record that does not parse must never pass for a missing
    /// one, or its session's dir would look orphaned.
    pub async fn list_all(&self) -> Result<Records, IngressError> {
        let sql = "SELECT service_key, value_utf8 FROM state WHERE service_name = 'Session' AND key = 'record'";
        let rows: Vec<KeyedValueRow> = self.query(sql).await?;
        Ok(parse_records(rows))
    }

    /// Runs an introspection query; retried briefly because right after a restart the
    /// query engine can answer "node lookup for partition N failed" (restate-notes §4.6).
    pub async fn query<T: DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, IngressError> {
        self.query_attempts(sql, 10).await
    }

    /// [`Ingress::query`] with at most `attempts` tries (1: an answer now or none).
    pub async fn query_attempts<T: DeserializeOwned>(
        &self,
        sql: &str,
        attempts: u64,
    ) -> Result<Vec<T>, IngressError> {
        let url = self.admin.url("/query");
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            let resp = self
                .admin_http
                .post(&url)
                .header("accept", "application/json")
                .json(&serde_json::json!({ "query": sql }))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match resp {
                // A body cut short (restate-server dying mid-answer) is retried like the rest.
                Ok(r) if r.status().is_success() => match r.json::<QueryRows<T>>().await {
                    Ok(rows) => return Ok(rows.rows),
                    Err(e) => last = format!("unreadable answer: {e}"),
                },
                Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(IngressError::Unreachable {
            url: self.admin.to_string(),
            reason: last,
        })
    }

    /// Runs a call within `timeout` and reads its answer.
    async fn call<Res: restate_sdk::serde::Deserialize>(
        &self,
        timeout: Duration,
        call: impl Future<Output = Result<CallResponse<Http, Res>, ClientError>>,
    ) -> Result<Res, IngressError> {
        let answer = match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer,
            Err(_) => return Err(self.timed_out()),
        };
        answer
            .and_then(CallResponse::into_body)
            .map_err(|err| self.client_error(err))
    }

    /// What a failed call means: the handler's terminal error code picks the kind. An answer
    /// Restate gave without reaching a handler (no `x-restate-id`: an unknown service before
    /// registration, say) is read the same way, by its status and message.
    fn client_error(&self, err: ClientError) -> IngressError {
        let reason = err.to_string();
        match err {
            // Restate's own 404 (a service not registered, say) is not a session that is not
            // there.
            ClientError::Protocol { response, .. } if response.status().as_u16() == 404 => {
                IngressError::Failed(format!(
                    "restate: {}",
                    String::from_utf8_lossy(response.body())
                ))
            }
            ClientError::Status { response, .. } | ClientError::Protocol { response, .. }
                if !response.status().is_success() =>
            {
                let message = serde_json::from_slice::<RestateErrorBody>(response.body())
                    .map(|b| b.message)
                    .unwrap_or_else(|_| String::from_utf8_lossy(response.body()).into_owned());
                match response.status().as_u16() {
                    CODE_NOT_FOUND => IngressError::NotFound(message),
                    CODE_BAD_INPUT => IngressError::BadInput(message),
                    CODE_AT_CAPACITY => IngressError::AtCapacity(message),
                    CODE_REFUSED => IngressError::Refused(message),
                    _ => IngressError::Failed(message),
                }
            }
            ClientError::Transport { .. } => IngressError::Unreachable {
                url: self.ingress.to_string(),
                reason,
            },
            _ => IngressError::Failed(format!("bad answer from restate: {reason}")),
        }
    }

    fn timed_out(&self) -> IngressError {
        IngressError::Unreachable {
            url: self.ingress.to_string(),
            reason: "no answer in time".into(),
        }
    }
}

#[cfg(test)]
mod record_parsing_tests {
    use super::*;

    #[test]
    fn records_that_do_not_parse_are_reported_not_dropped() {
        let id = "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69";
        let good = format!(
            r#"{{"id":"{id}","status":"live","node":"local","createdAtMs":1,"options":{{"timeoutMs":0}}}}"#
        );
        let rows = vec![
            KeyedValueRow {
                service_key: id.into(),
                value_utf8: Some(good),
            },
            // An id that is not a session's never passes for one.
            KeyedValueRow {
                service_key: "d".into(),
                value_utf8: Some(r#"{"id":"../d","status":"live","node":"local","createdAtMs":1,"options":{"timeoutMs":0}}"#.into()),
            },
            KeyedValueRow {
                service_key: "b".into(),
                value_utf8: Some(r#"{"id":"b","status":"hibernating"}"#.into()),
            },
            KeyedValueRow {
                service_key: "c".into(),
                value_utf8: None,
            },
        ];
        let parsed = parse_records(rows);
        assert_eq!(parsed.records.len(), 1, "{parsed:?}");
        assert_eq!(parsed.records[0].id, id);
        let keys: Vec<&str> = parsed.unreadable.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["d", "b", "c"]);
        assert!(!parsed.unreadable[0].error.is_empty());
    }

    #[test]
    fn a_warm_state_that_does_not_parse_says_so() {
        let row = |key: &str, value: &str| KeyedStateRow {
            service_name: "Warm".into(),
            key: key.into(),
            value_utf8: Some(value.into()),
        };
        let ok = [row("ready", "[]"), row("filling", r#"["x"]"#)];
        assert_eq!(state_error::<Vec<String>>(&ok, "Warm", "filling"), None);
        assert_eq!(state_error::<Vec<String>>(&ok, "Warm", "absent"), None);
        let bad = [row("filling", r#"{"new":"format"}"#)];
        let err = state_error::<Vec<String>>(&bad, "Warm", "filling").unwrap();
        assert!(err.contains("filling"), "{err}");
    }
}
