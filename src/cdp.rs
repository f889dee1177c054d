//! A minimal CDP client over one browser-level websocket, with flat sessions: enough for
//! what the daemon itself asks a browser (close it, read or write cookies and storage).
//! Client traffic never passes through here; it is spliced by `cdp_proxy`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Why a CDP call failed.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    #[error("CDP connection failed: {0}")]
    Connect(String),
    #[error("CDP {method} failed: {message}")]
    Call { method: String, message: String },
    #[error("CDP {0} timed out")]
    Timeout(String),
    #[error("the browser closed the CDP connection")]
    Closed,
}

/// One browser-level CDP connection.
pub struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    timeout: Duration,
    /// Events that arrived while a call waited for its answer, for [`Cdp::event`].
    events: std::collections::VecDeque<Value>,
}

impl Cdp {
    /// Connects to `ws://127.0.0.1:PORT/devtools/browser/<guid>`.
    pub async fn connect(url: &str) -> Result<Self, CdpError> {
        Self::connect_with(url, None).await
    }

    /// [`Cdp::connect`] with an 8 KiB read buffer instead of 128 KiB, for a connection held
    /// for a browser's whole life that carries few and small messages (`worker::downloads`
    /// keeps one per browser): with many sessions the default buffers add up.
    pub async fn connect_lean(url: &str) -> Result<Self, CdpError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(8 << 10)
            .write_buffer_size(0);
        Self::connect_with(url, Some(config)).await
    }

    async fn connect_with(url: &str, config: Option<WebSocketConfig>) -> Result<Self, CdpError> {
        let connect = tokio_tungstenite::connect_async_with_config(url, config, false);
        let (ws, _) = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| CdpError::Timeout("connect".into()))?
            .map_err(|e| CdpError::Connect(e.to_string()))?;
        Ok(Cdp {
            ws,
            next_id: 0,
            timeout: Duration::from_secs(30),
            events: Default::default(),
        })
    }

    /// Calls `method` on the browser (no session) and returns its `result`.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, CdpError> {
        self.call_in(None, method, params).await
    }

    /// Sends `method` without waiting for its answer (which is then skipped). For commands
    /// that answer only after events the caller must handle first, like a `Page.navigate`
    /// whose request `Fetch` holds. Returns the message id.
    pub async fn send_in(
        &mut self,
        session_id: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<u64, CdpError> {
        self.next_id += 1;
        let mut msg = json!({ "id": self.next_id, "method": method, "params": params });
        if let Some(s) = session_id {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|_| CdpError::Closed)?;
        Ok(self.next_id)
    }

    /// Calls `method` in the flat session `session_id` (from `Target.attachToTarget`).
    pub async fn call_in(
        &mut self,
        session_id: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, CdpError> {
        let id = self.send_in(session_id, method, params).await?;
        let reply = self
            .read_until(self.timeout, method, |m| m["id"] == id)
            .await?;
        if let Some(err) = reply.get("error") {
            let message = err["message"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string();
            return Err(CdpError::Call {
                method: method.to_string(),
                message,
            });
        }
        Ok(reply["result"].clone())
    }

    /// Waits for the next event named `method` in `session_id`, up to `limit`; returns its
    /// params.
    pub async fn event(
        &mut self,
        session_id: Option<&str>,
        method: &str,
        limit: Duration,
    ) -> Result<Value, CdpError> {
        let wanted = |ev: &Value| ev["method"] == method && ev["sessionId"].as_str() == session_id;
        let ev = self.read_until(limit, method, wanted).await?;
        Ok(ev["params"].clone())
    }

    /// The next event of `session_id`, whatever its method.
    pub async fn next_event(
        &mut self,
        session_id: Option<&str>,
        limit: Duration,
    ) -> Result<Value, CdpError> {
        let wanted =
            |ev: &Value| ev.get("method").is_some() && ev["sessionId"].as_str() == session_id;
        self.read_until(limit, "waiting for an event", wanted).await
    }

    /// The first message `pick` takes, from the buffered events first, then from the socket;
    /// events it leaves are buffered (up to 1000), answers it leaves are dropped.
    async fn read_until(
        &mut self,
        limit: Duration,
        what: &str,
        pick: impl Fn(&Value) -> bool,
    ) -> Result<Value, CdpError> {
        if let Some(pos) = self.events.iter().position(&pick) {
            return Ok(self.events.remove(pos).unwrap_or_default());
        }
        let wait = async {
            while let Some(frame) = self.ws.next().await {
                let Ok(Message::Text(text)) = frame else {
                    continue;
                };
                let Ok(msg) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if pick(&msg) {
                    return Ok(msg);
                }
                if msg.get("method").is_some() && self.events.len() < 1000 {
                    self.events.push_back(msg);
                }
            }
            Err(CdpError::Closed)
        };
        tokio::time::timeout(limit, wait)
            .await
            .map_err(|_| CdpError::Timeout(what.to_string()))?
    }

    /// Opens a page target and attaches to it; returns `(target_id, session_id)`.
    pub async fn open_page(&mut self, url: &str) -> Result<(String, String), CdpError> {
        let target = self
            .call("Target.createTarget", json!({ "url": url }))
            .await?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_string();
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session_id = attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok((target_id, session_id))
    }

    /// Attaches to an existing target; returns the flat session id.
    pub async fn attach(&mut self, target_id: &str) -> Result<String, CdpError> {
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        Ok(attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Closes a page target.
    pub async fn close_page(&mut self, target_id: &str) -> Result<(), CdpError> {
        self.call("Target.closeTarget", json!({ "targetId": target_id }))
            .await
            .map(|_| ())
    }
}
