//! `DaemonClient`: the CLI's (and later the TUI's) only way to the daemon, HTTP over the Unix
//! socket with hyperlocal. `ensure_daemon` starts a daemon when none answers.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector, Uri};
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::paths::Paths;
use crate::protocol::cluster::{ClusterStatus, NODE_HEADER};
use crate::protocol::control::{
    DaemonStatus, Dashboard, JournalEntry, Preview, ShutdownRequest, ShutdownResponse,
};
use crate::protocol::session::SessionStatus;
use crate::protocol::steel::{
    CreateSessionRequest, ErrorBody, MultipleSessions, NO_WAIT_HEADER, ReleaseAllResponse,
    ReleaseSessionResponse, SessionDetails,
};
use crate::settings::Settings;
use crate::wait::{Poll, wait_for};

/// How long a starting daemon may take to answer (a first restate-server start included).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no bro daemon answers on {0}; start one with `bro daemon start`")]
    NotRunning(String),
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("talking to the daemon: {0}")]
    Transport(String),
    #[error("the daemon did not start: {0}")]
    StartFailed(String),
}

impl ClientError {
    /// True for a 404 from the API.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }
}

/// A client of one daemon's control socket.
#[derive(Clone)]
pub struct DaemonClient {
    socket: PathBuf,
    http: Client<UnixConnector, Full<Bytes>>,
}

impl DaemonClient {
    pub fn new(socket: PathBuf) -> Self {
        DaemonClient {
            socket,
            http: Client::unix(),
        }
    }

    /// `GET /bro/v1/status`.
    pub async fn status(&self) -> Result<DaemonStatus, ClientError> {
        self.request(Method::GET, "/bro/v1/status", None::<&()>)
            .await
    }

    /// `GET /bro/v1/dashboard`.
    pub async fn dashboard(&self) -> Result<Dashboard, ClientError> {
        self.request(Method::GET, "/bro/v1/dashboard", None::<&()>)
            .await
    }

    /// `POST /bro/v1/shutdown`.
    pub async fn shutdown(&self, keep_sessions: bool) -> Result<ShutdownResponse, ClientError> {
        let body = ShutdownRequest { keep_sessions };
        self.request(Method::POST, "/bro/v1/shutdown", Some(&body))
            .await
    }

    /// `GET /bro/v1/sessions/{id}/preview?width=W`.
    pub async fn preview(&self, id: &str, width: u32) -> Result<Preview, ClientError> {
        let path = format!("/bro/v1/sessions/{id}/preview?width={width}");
        self.request(Method::GET, &path, None::<&()>).await
    }

    /// `GET /bro/v1/invocations/{id}/journal`.
    pub async fn journal(&self, invocation_id: &str) -> Result<Vec<JournalEntry>, ClientError> {
        let path = format!("/bro/v1/invocations/{invocation_id}/journal");
        self.request(Method::GET, &path, None::<&()>).await
    }

    /// `GET /bro/v1/cluster`: every node of the cluster, or this one alone when it is not
    /// clustered. A daemon older than clusters answers 404 ([`ClientError::is_not_found`]).
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        self.request(Method::GET, "/bro/v1/cluster", None::<&()>)
            .await
    }

    /// `POST /bro/v1/cluster/nodes/{node}/forget`: drops a removed node's heartbeat record.
    pub async fn forget_node(&self, node: &str) -> Result<serde_json::Value, ClientError> {
        let path = format!("/bro/v1/cluster/nodes/{node}/forget");
        self.request(Method::POST, &path, None::<&()>).await
    }

    /// `POST /v1/sessions`. With `no_wait`, a full node answers 429 at once instead of
    /// queueing the create.
    pub async fn create_session(
        &self,
        req: &CreateSessionRequest,
        no_wait: bool,
    ) -> Result<SessionDetails, ClientError> {
        self.create_session_on(req, no_wait, None).await
    }

    /// `POST /v1/sessions` with the `x-bro-node` header when `node` is given: the daemon
    /// creates the session on that node of its cluster instead of the one it picks (the one
    /// with the most free slots).
    pub async fn create_session_on(
        &self,
        req: &CreateSessionRequest,
        no_wait: bool,
        node: Option<&str>,
    ) -> Result<SessionDetails, ClientError> {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if no_wait {
            headers.push((NO_WAIT_HEADER, "1"));
        }
        if let Some(node) = node {
            headers.push((NODE_HEADER, node));
        }
        self.request_with(Method::POST, "/v1/sessions", Some(req), &headers)
            .await
    }

    /// `GET /v1/sessions[?status=S]`.
    pub async fn list_sessions(
        &self,
        status: Option<SessionStatus>,
    ) -> Result<MultipleSessions, ClientError> {
        let path = match status {
            Some(s) => format!("/v1/sessions?status={s}"),
            None => "/v1/sessions".to_string(),
        };
        self.request(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn get_session(&self, id: &str) -> Result<SessionDetails, ClientError> {
        self.request(Method::GET, &format!("/v1/sessions/{id}"), None::<&()>)
            .await
    }

    /// `POST /v1/sessions/{id}/release`.
    pub async fn release_session(&self, id: &str) -> Result<ReleaseSessionResponse, ClientError> {
        self.request(
            Method::POST,
            &format!("/v1/sessions/{id}/release"),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/sessions/release`.
    pub async fn release_all(&self) -> Result<ReleaseAllResponse, ClientError> {
        self.request(Method::POST, "/v1/sessions/release", None::<&()>)
            .await
    }

    async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.request_with(method, path, body, &[]).await
    }

    async fn request_with<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Transport(e.to_string()))?,
            None => Vec::new(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(Uri::new(&self.socket, path))
            .header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let resp = self.http.request(req).await.map_err(|e| {
            if self.socket.exists() && !is_refused(&e) {
                ClientError::Transport(e.to_string())
            } else {
                ClientError::NotRunning(self.socket.display().to_string())
            }
        })?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| ClientError::Transport(format!("unexpected answer: {e}")));
        }
        Err(api_error(status, &body))
    }
}

fn is_refused(err: &hyper_util::client::legacy::Error) -> bool {
    let text = format!("{err:?}");
    text.contains("ConnectionRefused") || text.contains("NotFound")
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.message)
        .unwrap_or_else(|_| format!("{status}: {}", String::from_utf8_lossy(body)));
    ClientError::Api {
        status: status.as_u16(),
        message,
    }
}

/// A client of the running daemon; starts one (with default options) when none answers.
pub async fn ensure_daemon(paths: &Paths) -> Result<DaemonClient, ClientError> {
    let client = DaemonClient::new(paths.socket());
    if let Ok(status) = client.status().await {
        warn_on_version_skew(&status);
        return Ok(client);
    }
    paths
        .create_all()
        .map_err(|e| ClientError::StartFailed(e.to_string()))?;
    // One CLI starts the daemon; the others wait on the lock and then find it running.
    let _guard = start_lock(paths).map_err(|e| ClientError::StartFailed(e.to_string()))?;
    if client.status().await.is_ok() {
        return Ok(client);
    }
    eprintln!(
        "bro: starting the daemon (log: {})",
        paths.daemon_log().display()
    );
    start_daemon(paths, None).await?;
    Ok(client)
}

/// Takes the start lock of `paths`, waiting while another CLI holds it: one CLI starts the
/// daemon, the others then find it running. Dropping the guard (or exiting) releases it.
pub fn start_lock(paths: &Paths) -> std::io::Result<Flock<File>> {
    let path = paths.start_lock();
    let failed = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(failed)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| failed(errno.into()))
}

/// Says so when the running daemon is another version of bro than this CLI.
fn warn_on_version_skew(status: &DaemonStatus) {
    if status.version != crate::VERSION || status.protocol != crate::protocol::PROTOCOL_VERSION {
        eprintln!(
            "bro: warning: the running daemon is bro {} (this is {}); restart it with \
             `bro daemon stop --keep-sessions && bro daemon start`",
            status.version,
            crate::VERSION
        );
    }
}

/// Spawns `bro daemon` in the background (own process group, output to the daemon log) and
/// waits until it answers on its socket. With `settings`, the daemon gets them resolved, as
/// JSON on its stdin: nothing is rebuilt as flags, and the API key is on no command line and in
/// no environment that `ps` shows. Without, it resolves its own from its environment and
/// `config.toml`, as `bro daemon` in the foreground does (a key in `BRO_API_KEY` then stays in
/// its environment, readable by its user only; the daemon passes it to no child).
pub async fn start_daemon(
    paths: &Paths,
    settings: Option<&Settings>,
) -> Result<DaemonStatus, ClientError> {
    let exe = std::env::current_exe().map_err(|e| ClientError::StartFailed(e.to_string()))?;
    let handoff = settings
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|e| ClientError::StartFailed(e.to_string()))?;
    let log_path = paths.daemon_log();
    crate::paths::rotate_log(
        &log_path,
        crate::paths::LOG_MAX_BYTES,
        crate::paths::LOG_KEEP,
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| ClientError::StartFailed(format!("{}: {e}", log_path.display())))?;
    let log_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let log_err = log
        .try_clone()
        .map_err(|e| ClientError::StartFailed(e.to_string()))?;
    let mut cmd = std::process::Command::new(exe);
    if let Some(home) = &paths.home {
        cmd.env("BRO_HOME", home);
    }
    cmd.arg("daemon");
    if handoff.is_some() {
        // The key is in the settings; a copy inherited from this shell is not passed on.
        cmd.arg("--settings-stdin")
            .env_remove("BRO_API_KEY")
            .stdin(Stdio::piped());
    } else {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| ClientError::StartFailed(e.to_string()))?;
    if let (Some(json), Some(mut stdin)) = (handoff, child.stdin.take()) {
        // A daemon that exits before reading is reported below, with its log.
        let _ = stdin.write_all(&json);
    }
    let client = DaemonClient::new(paths.socket());
    let poll = Poll::new(START_TIMEOUT, Duration::from_millis(50));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = log_since(&log_path, log_len);
            return Err(ClientError::StartFailed(format!(
                "it exited ({status}): {tail}"
            )));
        }
        if let Ok(status) = client.status().await
            && status.pid == child.id()
        {
            return Ok(status);
        }
        if !poll.again().await {
            // Not left starting on its own: told to stop (its ordered shutdown stops what it
            // started), killed if it has not within the grace.
            let stopped = stop_child(&mut child).await;
            return Err(ClientError::StartFailed(format!(
                "no answer within {START_TIMEOUT:?}, so it was {stopped}; see {}",
                log_path.display()
            )));
        }
    }
}

/// Stops a daemon child that did not come up: SIGTERM, up to [`STOP_GRACE`] for it to exit,
/// then SIGKILL. Says which it took.
async fn stop_child(child: &mut std::process::Child) -> &'static str {
    use nix::sys::signal::{Signal, kill};
    const STOP_GRACE: Duration = Duration::from_secs(30);
    // Our own unreaped child: its pid cannot have been reused.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let exited = || matches!(child.try_wait(), Ok(Some(_)));
    if wait_for(STOP_GRACE, Duration::from_millis(100), exited).await {
        return "stopped";
    }
    let _ = child.kill();
    let _ = child.wait();
    "killed"
}

/// What the daemon logged since `offset`: its last error lines, for a failed start.
fn log_since(path: &Path, offset: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let new = String::from_utf8_lossy(&text[(offset as usize).min(text.len())..]).into_owned();
    let errors: Vec<&str> = new.lines().filter(|l| l.starts_with("error: ")).collect();
    let lines: Vec<&str> = if errors.is_empty() {
        new.lines().collect()
    } else {
        errors
    };
    lines[lines.len().saturating_sub(3)..]
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The head of the one request a fake daemon on `socket` receives; it answers 404.
    async fn head_of(socket: &Path, call: impl std::future::Future<Output = ()>) -> String {
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"message":"no","statusCode":404,"error":"Not Found"}"#;
            let answer = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&head).to_lowercase()
        });
        call.await;
        server.await.unwrap()
    }

    #[tokio::test]
    async fn a_create_names_its_node_in_the_node_header() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bro.sock");
        let client = DaemonClient::new(socket.clone());
        let req = CreateSessionRequest::default();
        let head = head_of(&socket, async {
            let err = client
                .create_session_on(&req, true, Some("node-b"))
                .await
                .unwrap_err();
            assert!(err.is_not_found(), "{err:?}");
        })
        .await;
        assert!(head.starts_with("post /v1/sessions "), "{head}");
        assert!(
            head.contains(&format!("{NODE_HEADER}: node-b\r\n")),
            "{head}"
        );
        assert!(head.contains(&format!("{NO_WAIT_HEADER}: 1\r\n")), "{head}");

        std::fs::remove_file(&socket).unwrap();
        let head = head_of(&socket, async {
            let _ = client.create_session(&req, false).await;
        })
        .await;
        assert!(!head.contains(NODE_HEADER), "{head}");
    }

    #[tokio::test]
    async fn cluster_status_asks_its_route() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bro.sock");
        let client = DaemonClient::new(socket.clone());
        let head = head_of(&socket, async {
            let err = client.cluster_status().await.unwrap_err();
            assert!(err.is_not_found(), "a daemon older than clusters: {err:?}");
        })
        .await;
        assert!(head.starts_with("get /bro/v1/cluster "), "{head}");
    }
}
