//! Router tests: `tcp_router`/`unix_router` driven with `oneshot`, in front of a fake
//! [`WorkerHost`](crate::host::WorkerHost) and a fake Restate on a temp Unix socket. No
//! spawned binary, no Chromium, no real Restate: each test pins a route's statuses, error
//! bodies and shapes, and the calls it makes (or does not make). The real-process tests in
//! `tests/it/` stay, for the whole stack.

mod actions;
mod auth;
mod cdp;
mod control;
mod fake_host;
mod fake_restate;
mod files;
mod metrics;
mod recordings;
mod replay;
mod sessions;
mod viewer;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use self::fake_host::FakeHost;
use self::fake_restate::{FakeRestate, live_record};
use crate::api::control::ControlState;
use crate::api::{AppState, tcp_router, unix_router};
use crate::cdp_proxy::Sockets;
use crate::protocol::control::{DaemonStatus, RestateStatus};
use crate::protocol::session::{SessionId, SessionRecord};

/// Base URL of the fake daemon's TCP API.
const API_BASE: &str = "http://127.0.0.1:3000";

/// The state the routes share, over the fakes.
struct Harness {
    state: Arc<AppState>,
    host: Arc<FakeHost>,
    restate: FakeRestate,
    /// Holds the artifacts dir.
    artifacts_home: tempfile::TempDir,
}

impl Harness {
    /// Routes in front of a fake host and a fake Restate that answers.
    async fn new() -> Self {
        Harness::over(FakeRestate::start().await)
    }

    /// Routes in front of a fake host, with no Restate listening.
    fn without_restate() -> Self {
        Harness::over(FakeRestate::absent())
    }

    /// Routes in front of the fakes, the TCP port guarded by `key`.
    async fn with_key(key: &str) -> Self {
        Harness::build(FakeRestate::start().await, Some(key.to_string()))
    }

    fn over(restate: FakeRestate) -> Self {
        Harness::build(restate, None)
    }

    fn build(restate: FakeRestate, api_key: Option<String>) -> Self {
        let host = Arc::new(FakeHost::default());
        let artifacts_home = tempfile::tempdir().unwrap();
        let artifacts = crate::artifacts::ArtifactStore::open(
            artifacts_home.path().join("artifacts"),
            1 << 20,
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let state = Arc::new(AppState {
            ingress: restate.ingress(),
            hosts: Arc::new(crate::host::OneNode {
                node: "local".into(),
                host: Arc::clone(&host) as Arc<dyn crate::host::WorkerHost>,
            }),
            node: "local".into(),
            cluster: None,
            node_auth: None,
            sockets: Arc::new(Sockets::default()),
            api_base: API_BASE.into(),
            control: ControlState {
                base: status(),
                restate_pid: None,
                restate_restarts: None,
                shutdown: CancellationToken::new(),
                keep_sessions: AtomicBool::new(false),
            },
            api_key,
            http: reqwest::Client::new(),
            node_http: crate::node::remote::node_client().unwrap(),
            default_timeout_ms: 300_000,
            limits: crate::api::LimitDefaults::default(),
            recording: crate::api::RecordingDefaults {
                record: false,
                installed: true,
            },
            bind: [127, 0, 0, 1].into(),
            rrweb_player: Some(replay::fake_player()),
            artifacts: Arc::new(artifacts),
        });
        Harness {
            state,
            host,
            restate,
            artifacts_home,
        }
    }

    /// Sets the daemon's recording defaults (`--record`, rrweb installed).
    fn set_recording(&mut self, record: bool, installed: bool) {
        let state = Arc::get_mut(&mut self.state).expect("no request in flight");
        state.recording = crate::api::RecordingDefaults { record, installed };
    }

    /// A live session the fake Restate knows.
    fn live(&self) -> SessionRecord {
        let rec = live_record(&SessionId::random());
        self.restate.put(rec.clone());
        rec
    }

    /// `req` through the TCP port's router.
    async fn tcp(&self, req: Request<Body>) -> Reply {
        send(tcp_router(Arc::clone(&self.state)), req).await
    }

    /// `req` through the Unix socket's router.
    async fn unix(&self, req: Request<Body>) -> Reply {
        send(unix_router(Arc::clone(&self.state)), req).await
    }
}

/// The daemon's status as of start.
fn status() -> DaemonStatus {
    DaemonStatus {
        limits: None,
        pid: 4000,
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: 1,
        api_url: API_BASE.into(),
        socket: "/run/bro/bro.sock".into(),
        node: "local".into(),
        max_sessions: 4,
        max_queue: 0,
        queue_timeout_ms: 0,
        warm: 0,
        chromium: "/usr/bin/chromium".into(),
        home: "/nonexistent/bro".into(),
        restate: RestateStatus {
            admin_url: "unix:/nonexistent/admin.sock".into(),
            ingress_url: "unix:/nonexistent/ingress.sock".into(),
            identity_key: String::new(),
            pid: None,
            supervised: false,
            restarts: 0,
            endpoint_url: "http://127.0.0.1:9080/".into(),
        },
        pool: None,
    }
}

/// A router's answer, its body read.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts steel's error body with `status`, its message containing `part`.
    fn assert_error(&self, status: u16, part: &str) {
        let body = self.json();
        assert_eq!(self.status.as_u16(), status, "{body}");
        let reason = StatusCode::from_u16(status).unwrap().canonical_reason();
        assert_eq!(body["statusCode"], status, "{body}");
        assert_eq!(body["error"], reason.unwrap(), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(part), "{message:?} lacks {part:?}");
        assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    }
}

async fn send(router: Router, req: Request<Body>) -> Reply {
    let resp = router.oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn delete(uri: &str) -> Request<Body> {
    Request::delete(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: Value) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}
