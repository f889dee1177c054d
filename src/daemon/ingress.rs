//! Typed calls into Restate: the `Session` handlers through the ingress, and listings
//! through the admin SQL introspection API. The API handlers use this and never touch
//! Chromium themselves.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::orchestrator::pool::Waiter;
use crate::orchestrator::session::{CODE_AT_CAPACITY, CODE_NOT_FOUND, CreateCommand, WorkerExited};
use crate::orchestrator::warm::WarmStatus;
use crate::protocol::control::{InvocationRow, JournalEntry, PoolUsage};
use crate::protocol::session::{SessionOptions, SessionRecord};
use crate::protocol::steel::SessionContext;

/// Why a call into Restate failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngressError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AtCapacity(String),
    #[error("{0}")]
    Failed(String),
    #[error("restate is unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// Client of one Restate's ingress and admin APIs.
#[derive(Clone)]
pub struct Ingress {
    http: reqwest::Client,
    pub ingress_url: String,
    pub admin_url: String,
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

/// The value of one object's state key among `rows`, parsed.
fn state_value<T: DeserializeOwned>(rows: &[KeyedStateRow], service: &str, key: &str) -> Option<T> {
    let row = rows
        .iter()
        .find(|r| r.service_name == service && r.key == key)?;
    serde_json::from_str(row.value_utf8.as_deref()?).ok()
}

impl Ingress {
    pub fn new(ingress_url: String, admin_url: String) -> Self {
        Ingress {
            http: reqwest::Client::new(),
            ingress_url,
            admin_url,
        }
    }

    /// `Session/create`: launches the session's browser, or returns the existing session.
    /// With `wait`, a full node queues the create for up to that long; without, it is 429.
    pub async fn create(
        &self,
        id: &str,
        options: SessionOptions,
        context: Option<SessionContext>,
        wait: Option<Duration>,
    ) -> Result<SessionRecord, IngressError> {
        let cmd = CreateCommand {
            options,
            context,
            wait: wait.is_some(),
        };
        let timeout = Duration::from_secs(180) + wait.unwrap_or_default();
        self.call(&format!("Session/{id}/create"), Some(&cmd), timeout)
            .await
    }

    /// Sends `Pool/leave`: the client of a waiting create hung up.
    pub async fn leave_queue(&self, node: &str, id: &str) -> Result<(), IngressError> {
        self.send(&format!("Pool/{node}/leave"), Some(&id)).await
    }

    /// `Pool/clear_queue`: ends the waits of a previous daemon's clients; how many there were.
    pub async fn clear_queue(&self, node: &str) -> Result<u32, IngressError> {
        self.call(
            &format!("Pool/{node}/clear_queue"),
            None::<&()>,
            Duration::from_secs(30),
        )
        .await
    }

    /// `Session/release`.
    pub async fn release(&self, id: &str) -> Result<SessionRecord, IngressError> {
        self.call(
            &format!("Session/{id}/release"),
            None::<&()>,
            Duration::from_secs(60),
        )
        .await
    }

    /// `Session/idle`: ends a session left without CDP traffic past its `inactivityTimeout`.
    pub async fn idle(&self, id: &str) -> Result<SessionRecord, IngressError> {
        self.call(
            &format!("Session/{id}/idle"),
            None::<&()>,
            Duration::from_secs(60),
        )
        .await
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
        Ok(warm_status(&self.node_state(node, 10).await?))
    }

    /// `Warm/fill`, sent: the warm pool launches up to its target.
    pub async fn warm_fill(&self, node: &str) -> Result<(), IngressError> {
        self.send(&format!("Warm/{node}/fill"), None::<&()>).await
    }

    /// `Warm/discard`, sent: a ready browser died.
    pub async fn warm_discard(&self, node: &str, id: &str) -> Result<(), IngressError> {
        self.send(&format!("Warm/{node}/discard"), Some(&id)).await
    }

    /// `Warm/drain`: stops every ready browser; how many there were.
    pub async fn warm_drain(&self, node: &str) -> Result<u32, IngressError> {
        self.call(
            &format!("Warm/{node}/drain"),
            None::<&()>,
            Duration::from_secs(60),
        )
        .await
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

    /// `Session/get`.
    pub async fn get(&self, id: &str) -> Result<SessionRecord, IngressError> {
        self.call(
            &format!("Session/{id}/get"),
            None::<&()>,
            Duration::from_secs(10),
        )
        .await
    }

    /// Sends `Session/worker_exited` without waiting for it to run.
    pub async fn worker_exited(
        &self,
        id: &str,
        pid: u32,
        reason: String,
        clean: bool,
    ) -> Result<(), IngressError> {
        let exit = WorkerExited { pid, reason, clean };
        self.send(&format!("Session/{id}/worker_exited"), Some(&exit))
            .await
    }

    /// Enqueues a one-way call to `path` without waiting for it to run.
    async fn send<B: serde::Serialize>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), IngressError> {
        let url = format!("{}/{path}/send", self.ingress_url);
        let mut req = self.http.post(&url).timeout(Duration::from_secs(10));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(IngressError::Failed(format!("{path}: {}", resp.status())))
        }
    }

    /// One session's record, read through introspection (no invocation: for polling).
    pub async fn record(&self, id: &str) -> Result<SessionRecord, IngressError> {
        let key = id.replace('\'', "''");
        let sql = format!(
            "SELECT value_utf8 FROM state WHERE service_name = 'Session' AND service_key = '{key}' AND key = 'record'"
        );
        let rows: Vec<StateRow> = self.query_attempts(&sql, 1).await?;
        rows.into_iter()
            .find_map(|r| serde_json::from_str(r.value_utf8.as_deref()?).ok())
            .ok_or_else(|| IngressError::NotFound(format!("session {id} not found")))
    }

    /// Every session record in Restate state (any status).
    pub async fn list(&self) -> Result<Vec<SessionRecord>, IngressError> {
        let sql = "SELECT value_utf8 FROM state WHERE service_name = 'Session' AND key = 'record'";
        let rows: Vec<StateRow> = self.query(sql).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| serde_json::from_str(r.value_utf8.as_deref()?).ok())
            .collect())
    }

    /// Runs an introspection query; retried briefly because right after a restart the
    /// query engine can answer "node lookup for partition N failed" (restate-notes §4.6).
    pub async fn query<T: DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, IngressError> {
        self.query_attempts(sql, 10).await
    }

    async fn query_attempts<T: DeserializeOwned>(
        &self,
        sql: &str,
        attempts: u64,
    ) -> Result<Vec<T>, IngressError> {
        let url = format!("{}/query", self.admin_url);
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            let resp = self
                .http
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
        Err(IngressError::Unreachable { url, reason: last })
    }

    async fn call<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, IngressError> {
        let url = format!("{}/{path}", self.ingress_url);
        // Handlers without input want no body and no content type.
        let mut req = self.http.post(&url).timeout(timeout);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| IngressError::Failed(format!("bad answer from {path}: {e}")));
        }
        let message = serde_json::from_slice::<RestateErrorBody>(&bytes)
            .map(|b| b.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        Err(match status.as_u16() {
            CODE_NOT_FOUND => IngressError::NotFound(message),
            CODE_AT_CAPACITY => IngressError::AtCapacity(message),
            _ => IngressError::Failed(message),
        })
    }

    fn unreachable(&self, err: &reqwest::Error) -> IngressError {
        IngressError::Unreachable {
            url: self.ingress_url.clone(),
            reason: err.to_string(),
        }
    }
}
