//! The daemon's own CDP client: one browser-level websocket with flat sessions, speaking
//! chromiumoxide's typed protocol. Commands are `chromiumoxide::cdp` params structs, answers
//! decode into their `Command::Response`, and events into chromiumoxide's event structs.
//! Client traffic never passes through here; it is spliced by `cdp_proxy`.
//!
//! chromiumoxide's `Browser` is not used: its `Handler` always turns target discovery on and
//! attaches to every page of the browser, sending each its init commands
//! (`Target.setAutoAttach` with `waitForDebuggerOnStart`, `Page.enable`, an isolated world,
//! `Security.setIgnoreCertificateErrors`...) and closing a page whose init times out. On a
//! session's browser that would change the pages of the user's own Playwright or Puppeteer,
//! and no `HandlerConfig` turns it off. Nor is `chromiumoxide::conn::Connection`: it has no
//! connect timeout and a fixed 128 KiB read buffer, where [`Cdp::connect_lean`] needs 8 KiB
//! (`worker::downloads` holds one connection per live browser). So the transport is
//! tokio-tungstenite, as for the proxy, and there is no handler task to outlive a call.

use std::collections::VecDeque;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::target::{
    AttachToTargetParams, CloseTargetParams, CreateTargetParams, DetachFromTargetParams, SessionId,
    TargetId,
};
use chromiumoxide::types::{CallId, Command, Message, MethodCall, MethodType, Response};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most handshakes tried within [`CONNECT_TIMEOUT`] (see [`Cdp::connect_with`]).
const CONNECT_TRIES: u32 = 3;

/// The peer closed or reset the connection before the handshake's answer.
fn hung_up(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        Error::Protocol(ProtocolError::HandshakeIncomplete) => true,
        Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}
/// How long a call may wait for its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The biggest message (and frame: Chromium sends a message as one frame) a page connection
/// takes: tungstenite's message limit, 64 MiB. A full-page screenshot or PDF is one base64
/// message, 30+ MB for a long page, past tungstenite's 16 MiB a frame. Not more: a message
/// is copied a few times while it is decoded, and a page can make itself as tall as it likes,
/// so this bounds what one quick action can cost the daemon.
const MAX_MESSAGE: usize = 64 << 20;
/// Events kept for later while a call waits for its answer.
const MAX_BUFFERED_EVENTS: usize = 1000;

/// Logs that events of `method` do not decode, once per method and daemon: a newer
/// Chromium's event would otherwise log on every occurrence.
fn warn_once(method: &str, err: &CdpError) {
    static WARNED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::LazyLock::new(Default::default);
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.len() < 64 && warned.insert(method.to_string()) {
        tracing::warn!(%err, "a CDP event did not decode (said once per method)");
    }
}

/// Why a CDP call failed.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    #[error("CDP connection failed: {0}")]
    Connect(String),
    /// The browser answered with an error, or refused what it was given: the input is at
    /// fault, not the connection.
    #[error("CDP {method} failed: {message}")]
    Call { method: String, message: String },
    /// The browser's answer does not fit chromiumoxide's type for it (a protocol mismatch).
    #[error("CDP {method}: unexpected answer: {message}")]
    Protocol { method: String, message: String },
    #[error("CDP {0} timed out")]
    Timeout(String),
    #[error("the browser closed the CDP connection")]
    Closed,
}

/// An event as it came; [`Event::decode`] makes its params the typed event. Decoding waits
/// until an event is wanted, so an event of a newer protocol does not hide the others.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Event {
    pub method: String,
    #[serde(rename = "sessionId")]
    pub session_id: Option<String>,
    #[serde(default)]
    pub params: Value,
}

impl Event {
    /// True when this is an `E` event.
    pub fn is<E: MethodType>(&self) -> bool {
        self.method == E::method_id()
    }

    /// The event as an `E`, when it is one and it decodes.
    pub fn decode<E: MethodType + DeserializeOwned>(&self) -> Option<E> {
        if !self.is::<E>() {
            return None;
        }
        self.params::<E>()
            .inspect_err(|err| warn_once(&self.method, err))
            .ok()
    }

    fn params<E: DeserializeOwned>(&self) -> Result<E, CdpError> {
        E::deserialize(&self.params).map_err(|e| CdpError::Protocol {
            method: self.method.clone(),
            message: e.to_string(),
        })
    }

    fn in_session(&self, session: Option<&SessionId>) -> bool {
        self.session_id.as_deref() == session.map(|s| s.as_ref())
    }
}

/// One browser-level CDP connection.
pub struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: usize,
    /// Events that arrived while a call waited for its answer, for [`Cdp::event`].
    events: VecDeque<Event>,
}

impl Cdp {
    /// Connects to `ws://127.0.0.1:PORT/devtools/browser/<guid>`.
    pub async fn connect(url: &str) -> Result<Self, CdpError> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        Self::connect_with(url, config).await
    }

    /// [`Cdp::connect`] with an 8 KiB read buffer instead of 128 KiB, for a connection held
    /// for a browser's whole life that carries few and small messages (`worker::downloads`
    /// keeps one per browser): with many sessions the default buffers add up.
    pub async fn connect_lean(url: &str) -> Result<Self, CdpError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(8 << 10)
            .write_buffer_size(0);
        Self::connect_with(url, config).await
    }

    /// [`Cdp::connect_lean`] taking messages up to `max` bytes: for a connection whose
    /// events carry what a page wrote (the page agent's recorder events).
    pub async fn connect_limited(url: &str, max: usize) -> Result<Self, CdpError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(8 << 10)
            .write_buffer_size(0)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        Self::connect_with(url, config).await
    }

    /// Connects within [`CONNECT_TIMEOUT`] in all; a handshake the browser closed or reset before it
    /// answered (seen once under a loaded CI machine, right after a launch) is tried again
    /// after a short pause, at most [`CONNECT_TRIES`] times. Any other failure is final.
    async fn connect_with(url: &str, config: WebSocketConfig) -> Result<Self, CdpError> {
        let attempts = async {
            let mut tries = 0;
            loop {
                tries += 1;
                match tokio_tungstenite::connect_async_with_config(url, Some(config), false).await {
                    Ok((ws, _)) => return Ok(ws),
                    Err(e) if tries < CONNECT_TRIES && hung_up(&e) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(CdpError::Connect(e.to_string())),
                }
            }
        };
        let ws = tokio::time::timeout(CONNECT_TIMEOUT, attempts)
            .await
            .map_err(|_| CdpError::Timeout("connect".into()))??;
        Ok(Cdp {
            ws,
            next_id: 0,
            events: VecDeque::new(),
        })
    }

    /// Calls `cmd` on the browser (no session) and returns its typed answer.
    pub async fn call<C: Command>(&mut self, cmd: C) -> Result<C::Response, CdpError> {
        self.call_in(None, cmd).await
    }

    /// Calls `cmd` in the flat session `session` (from `Target.attachToTarget`).
    pub async fn call_in<C: Command>(
        &mut self,
        session: Option<&SessionId>,
        cmd: C,
    ) -> Result<C::Response, CdpError> {
        let method = cmd.identifier().to_string();
        let result = self.call_json(session, cmd).await?;
        C::response_from_value(result).map_err(|e| CdpError::Protocol {
            method,
            message: e.to_string(),
        })
    }

    /// Calls `cmd` and returns its `result` as the browser wrote it: for answers passed on to
    /// bro's client unchanged (cookies), which a typed round trip could alter.
    pub async fn call_json<C: Command>(
        &mut self,
        session: Option<&SessionId>,
        cmd: C,
    ) -> Result<Value, CdpError> {
        let method = cmd.identifier().to_string();
        let id = self.send_in(session, cmd).await?;
        let reply = self.response(id, &method).await?;
        if let Some(err) = reply.error {
            return Err(CdpError::Call {
                method,
                message: err.message,
            });
        }
        Ok(reply
            .result
            .unwrap_or_else(|| Value::Object(Default::default())))
    }

    /// Sends `cmd` without waiting for its answer (which is then skipped). For commands that
    /// answer only after events the caller must handle first, like a `Page.navigate` whose
    /// request `Fetch` holds.
    pub async fn send_in<C: Command>(
        &mut self,
        session: Option<&SessionId>,
        cmd: C,
    ) -> Result<CallId, CdpError> {
        let method = cmd.identifier();
        let params = serde_json::to_value(cmd).map_err(|e| CdpError::Protocol {
            method: method.to_string(),
            message: e.to_string(),
        })?;
        self.next_id += 1;
        let id = CallId::new(self.next_id);
        let call = MethodCall {
            id,
            method,
            session_id: session.map(|s| s.inner().clone()),
            params,
        };
        let text = serde_json::to_string(&call).map_err(|e| CdpError::Protocol {
            method: call.method.to_string(),
            message: e.to_string(),
        })?;
        self.ws
            .send(WsMessage::text(text))
            .await
            .map_err(|_| CdpError::Closed)?;
        Ok(id)
    }

    /// Waits for the next `E` event of `session`, up to `limit`.
    pub async fn event<E: MethodType + DeserializeOwned>(
        &mut self,
        session: Option<&SessionId>,
        limit: Duration,
    ) -> Result<E, CdpError> {
        let method = E::method_id();
        let ev = self
            .event_where(limit, &method, |ev| ev.is::<E>() && ev.in_session(session))
            .await?;
        ev.params()
    }

    /// The next event of `session`, whatever its method.
    pub async fn next_event(
        &mut self,
        session: Option<&SessionId>,
        limit: Duration,
    ) -> Result<Event, CdpError> {
        self.event_where(limit, "waiting for an event", |ev| ev.in_session(session))
            .await
    }

    /// The next event of any session or of the browser, whatever its method, up to `limit`
    /// (a screencast watches its page's frames and the browser's target events on one
    /// connection; a page agent the events of every page it attached to).
    pub async fn next_any(&mut self, limit: Duration) -> Result<Event, CdpError> {
        self.event_where(limit, "waiting for an event", |_| true)
            .await
    }

    /// The answer to call `id`; events read meanwhile are buffered (up to
    /// [`MAX_BUFFERED_EVENTS`]), other answers dropped.
    async fn response(&mut self, id: CallId, what: &str) -> Result<Response, CdpError> {
        let wait = async {
            loop {
                match self.recv().await? {
                    Message::Response(reply) if reply.id == id => return Ok(reply),
                    Message::Response(_) => {}
                    Message::Event(ev) => self.buffer(ev),
                }
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, wait)
            .await
            .map_err(|_| CdpError::Timeout(what.to_string()))?
    }

    /// The first event `pick` takes, from the buffered events first, then from the socket;
    /// events it leaves are buffered, answers dropped.
    async fn event_where(
        &mut self,
        limit: Duration,
        what: &str,
        pick: impl Fn(&Event) -> bool,
    ) -> Result<Event, CdpError> {
        if let Some(ev) = self
            .events
            .iter()
            .position(&pick)
            .and_then(|pos| self.events.remove(pos))
        {
            return Ok(ev);
        }
        let wait = async {
            loop {
                match self.recv().await? {
                    Message::Event(ev) if pick(&ev) => return Ok(ev),
                    Message::Event(ev) => self.buffer(ev),
                    Message::Response(_) => {}
                }
            }
        };
        tokio::time::timeout(limit, wait)
            .await
            .map_err(|_| CdpError::Timeout(what.to_string()))?
    }

    fn buffer(&mut self, ev: Event) {
        if self.events.len() < MAX_BUFFERED_EVENTS {
            self.events.push_back(ev);
        }
    }

    /// The next message from the socket that is an answer or an event; anything else
    /// (binary frames, pings, text that is neither) is skipped.
    async fn recv(&mut self) -> Result<Message<Event>, CdpError> {
        while let Some(frame) = self.ws.next().await {
            let Ok(WsMessage::Text(text)) = frame else {
                continue;
            };
            if let Ok(msg) = serde_json::from_str::<Message<Event>>(&text) {
                return Ok(msg);
            }
        }
        Err(CdpError::Closed)
    }

    /// Opens a page target and attaches to it.
    pub async fn open_page(&mut self, url: &str) -> Result<(TargetId, SessionId), CdpError> {
        let target = self.call(CreateTargetParams::new(url)).await?.target_id;
        let session = self.attach(&target).await?;
        Ok((target, session))
    }

    /// Attaches to an existing target; returns the flat session id.
    pub async fn attach(&mut self, target: &TargetId) -> Result<SessionId, CdpError> {
        let mut params = AttachToTargetParams::new(target.clone());
        params.flatten = Some(true);
        Ok(self.call(params).await?.session_id)
    }

    /// Detaches a session, leaving its target as it is.
    pub async fn detach(&mut self, session: &SessionId) -> Result<(), CdpError> {
        let params = DetachFromTargetParams {
            session_id: Some(session.clone()),
        };
        self.call(params).await.map(|_| ())
    }

    /// Closes a page target.
    pub async fn close_page(&mut self, target: &TargetId) -> Result<(), CdpError> {
        self.call(CloseTargetParams::new(target.clone()))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chromiumoxide::Method;

    /// A listener that hangs up on the first `hang_ups` connections, then speaks WebSocket.
    async fn flaky_server(hang_ups: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/devtools/browser/x", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                if n < hang_ups {
                    // Reads the request, then closes: the handshake's answer never comes.
                    let mut conn = conn;
                    let mut buf = [0u8; 1024];
                    let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn).await;
                } else {
                    tokio::spawn(async move {
                        let ws = tokio_tungstenite::accept_async(conn).await;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        drop(ws);
                    });
                }
            }
        });
        url
    }

    #[tokio::test]
    async fn a_handshake_closed_early_is_tried_again_a_bounded_number_of_times() {
        let first = Cdp::connect(&flaky_server(2).await).await;
        assert!(first.is_ok(), "{:?}", first.err());
        let err = Cdp::connect(&flaky_server(usize::MAX).await)
            .await
            .err()
            .expect("never answered");
        assert!(matches!(err, CdpError::Connect(_)), "{err}");
    }
    use chromiumoxide::cdp::browser_protocol::browser::{
        EventDownloadProgress, EventDownloadWillBegin,
    };
    use serde_json::json;

    #[test]
    fn commands_go_out_as_cdp_wrote_them() {
        let mut params = AttachToTargetParams::new(TargetId::new("T1"));
        params.flatten = Some(true);
        let call = MethodCall {
            id: CallId::new(7),
            method: params.identifier(),
            session_id: Some("S1".into()),
            params: serde_json::to_value(params).unwrap(),
        };
        assert_eq!(
            serde_json::to_value(&call).unwrap(),
            json!({"id": 7, "method": "Target.attachToTarget", "sessionId": "S1",
                   "params": {"targetId": "T1", "flatten": true}})
        );
    }

    #[test]
    fn answers_and_events_are_told_apart_and_decoded_on_demand() {
        let answer = r#"{"id":3,"result":{"targetId":"T"}}"#;
        let Message::Response(r) = serde_json::from_str::<Message<Event>>(answer).unwrap() else {
            panic!("not an answer");
        };
        assert_eq!(r.id, CallId::new(3));
        let refused = r#"{"id":4,"error":{"code":-32602,"message":"Invalid parameters"}}"#;
        let Message::Response(r) = serde_json::from_str::<Message<Event>>(refused).unwrap() else {
            panic!("not an answer");
        };
        assert_eq!(r.error.unwrap().message, "Invalid parameters");

        let event = r#"{"method":"Browser.downloadWillBegin","params":{"frameId":"F","guid":"g","url":"https://a/b","suggestedFilename":"b.zip"}}"#;
        let Message::Event(ev) = serde_json::from_str::<Message<Event>>(event).unwrap() else {
            panic!("not an event");
        };
        assert!(ev.in_session(None));
        assert!(ev.decode::<EventDownloadProgress>().is_none());
        let begin = ev.decode::<EventDownloadWillBegin>().unwrap();
        assert_eq!(
            (begin.guid.as_str(), begin.suggested_filename.as_str()),
            ("g", "b.zip")
        );

        // An event of a newer protocol is kept, just not decoded.
        let newer = r#"{"method":"Browser.downloadProgress","sessionId":"S","params":{"guid":"g","state":"paused"}}"#;
        let Message::Event(ev) = serde_json::from_str::<Message<Event>>(newer).unwrap() else {
            panic!("not an event");
        };
        assert!(ev.in_session(Some(&SessionId::new("S"))));
        assert!(ev.is::<EventDownloadProgress>());
        assert!(ev.decode::<EventDownloadProgress>().is_none());
    }
}
