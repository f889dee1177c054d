//! A small Restate on a temp Unix socket: the ingress calls the routes make
//! (`/restate/call/Session/{id}/{handler}`, one-way sends) and the admin SQL reads
//! (`POST /query`), answered from a map of session records. A test may script the next
//! answers of a handler (a record, or an error status with Restate's `{"message"}` body), and
//! reads back every call it got.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;

use crate::orchestrator::ingress::{Ingress, RestateAddr};
use crate::orchestrator::session::CreateCommand;
use crate::protocol::session::{SessionId, SessionRecord, SessionStatus, WorkerInfo};

/// A scripted answer of a `Session` handler.
#[derive(Debug, Clone)]
pub(super) enum Answer {
    Record(Box<SessionRecord>),
    /// Restate's answer to a handler's terminal error: its code and `{"message": …}`.
    Error(u16, String),
}

impl Answer {
    /// An answer with `rec` (boxed: a record is much larger than an error).
    pub(super) fn record(rec: SessionRecord) -> Self {
        Answer::Record(Box::new(rec))
    }
}

/// One call the fake got: the handler (`get`, `create`, …, or `query`), the object key (the
/// SQL for `query`) and the JSON body.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub handler: String,
    pub key: String,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    records: Mutex<HashMap<String, SessionRecord>>,
    scripted: Mutex<HashMap<String, VecDeque<Answer>>>,
    calls: Mutex<Vec<Call>>,
}

/// The fake; its socket goes with it.
pub(super) struct FakeRestate {
    dir: TempDir,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

impl FakeRestate {
    /// A fake that answers on its socket.
    pub(super) async fn start() -> Self {
        let mut fake = FakeRestate::absent();
        let listener = tokio::net::UnixListener::bind(fake.socket()).expect("bind the socket");
        let app = Router::new()
            .route("/query", post(query))
            .fallback(object_call)
            .with_state(Arc::clone(&fake.shared));
        fake.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        fake
    }

    /// No Restate at all: nothing listens on the socket path.
    pub(super) fn absent() -> Self {
        FakeRestate {
            dir: tempfile::tempdir().expect("a temp dir"),
            shared: Arc::default(),
            server: None,
        }
    }

    pub(super) fn socket(&self) -> PathBuf {
        self.dir.path().join("restate.sock")
    }

    /// An ingress and admin client of this fake, as the daemon builds one.
    pub(super) fn ingress(&self) -> Ingress {
        let addr = RestateAddr::Unix(self.socket());
        Ingress::new(addr.clone(), addr).expect("an ingress client")
    }

    /// Stores `rec` as its session's record.
    pub(super) fn put(&self, rec: SessionRecord) {
        let mut records = self.shared.records.lock().unwrap();
        records.insert(rec.id.to_string(), rec);
    }

    /// The next call of `handler` answers `answer` (in the order scripted), whatever is stored.
    pub(super) fn script(&self, handler: &str, answer: Answer) {
        let mut scripted = self.shared.scripted.lock().unwrap();
        scripted
            .entry(handler.to_string())
            .or_default()
            .push_back(answer);
    }

    /// Every call so far, in order.
    pub(super) fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// The handlers called so far, in order, as `handler key` (`query` without its SQL).
    pub(super) fn handlers(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .map(|c| match c.handler.as_str() {
                "query" => c.handler,
                _ => format!("{} {}", c.handler, c.key),
            })
            .collect()
    }
}

impl Drop for FakeRestate {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A live session's record, with a browser.
pub(super) fn live_record(id: &SessionId) -> SessionRecord {
    SessionRecord {
        id: id.clone(),
        status: SessionStatus::Live,
        node: "local".into(),
        created_at_ms: crate::now_ms(),
        ended_at_ms: None,
        options: Default::default(),
        worker: Some(WorkerInfo {
            pid: 4242,
            start_time: 77,
            port: 9333,
            ws_path: "/devtools/browser/guid".into(),
            dir: PathBuf::from("/nonexistent/sessions").join(id.as_str()),
        }),
        reason: None,
        proxy_bytes: None,
        refused: false,
    }
}

/// `rec`, ended with `status` for `reason`.
pub(super) fn ended(rec: SessionRecord, status: SessionStatus, reason: &str) -> SessionRecord {
    SessionRecord {
        status,
        ended_at_ms: Some(rec.created_at_ms + 1_000),
        worker: None,
        reason: Some(reason.into()),
        ..rec
    }
}

/// The id of every invocation the fake answers.
const INVOCATION_ID: &str = "inv_1fake";

/// `/restate/{call,send}/{Service}/{key}/{handler}`.
async fn object_call(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let segments: Vec<&str> = uri.path().rsplitn(4, '/').collect();
    let (handler, key, service) = match segments.as_slice() {
        [handler, key, service, _] => (*handler, *key, *service),
        _ => return (StatusCode::NOT_FOUND, "no such target").into_response(),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.calls.lock().unwrap().push(Call {
        handler: handler.into(),
        key: key.into(),
        body: body.clone(),
    });
    if uri.path().starts_with("/restate/send/") {
        let ack = json!({"invocationId": INVOCATION_ID, "status": "Accepted"});
        return (StatusCode::ACCEPTED, Json(ack)).into_response();
    }
    if service != "Session" {
        return error(500, &format!("the fake has no {service}"));
    }
    let scripted = shared
        .scripted
        .lock()
        .unwrap()
        .get_mut(handler)
        .and_then(VecDeque::pop_front);
    let answer = scripted.unwrap_or_else(|| stored_answer(&shared, handler, key, body));
    let mut resp = match answer {
        Answer::Record(rec) => Json(*rec).into_response(),
        Answer::Error(code, message) => error(code, &message),
    };
    // Restate names the invocation on every answer of a call; the SDK's client requires it.
    let id = axum::http::HeaderValue::from_static(INVOCATION_ID);
    resp.headers_mut().insert("x-restate-id", id);
    resp
}

/// What the `Session` object would answer from the stored records.
fn stored_answer(shared: &Shared, handler: &str, key: &str, body: Value) -> Answer {
    let mut records = shared.records.lock().unwrap();
    let not_found = Answer::Error(404, format!("session {key} not found"));
    match handler {
        "get" => records.get(key).cloned().map_or(not_found, Answer::record),
        "create" => {
            let cmd: CreateCommand = serde_json::from_value(body).expect("a CreateCommand");
            let id = SessionId::parse(key).expect("a session key");
            let rec = SessionRecord {
                options: cmd.options,
                ..live_record(&id)
            };
            records.insert(key.into(), rec.clone());
            Answer::record(rec)
        }
        "release" => match records.get(key).cloned() {
            Some(rec) => {
                let rec = ended(rec, SessionStatus::Released, "released");
                records.insert(key.into(), rec.clone());
                Answer::record(rec)
            }
            None => not_found,
        },
        _ => Answer::Error(500, format!("the fake has no Session/{handler}")),
    }
}

fn error(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "message": message }))).into_response()
}

/// `POST /query`: the introspection reads, told apart by their SQL. The `Pool` holds the
/// sessions of the map that are not over, the `Warm` state and the invocations are empty;
/// session records come from the map.
async fn query(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Json<Value> {
    let sql = body["query"].as_str().unwrap_or_default().to_string();
    shared.calls.lock().unwrap().push(Call {
        handler: "query".into(),
        key: sql.clone(),
        body,
    });
    let records = shared.records.lock().unwrap();
    let row = |rec: &SessionRecord| {
        json!({
            "service_key": rec.id.as_str(),
            "value_utf8": serde_json::to_string(rec).unwrap(),
        })
    };
    let rows: Vec<Value> = if sql.contains("service_name IN ('Pool', 'Warm')") {
        // The node's pool holds a slot for each of its sessions that is not over.
        let node = sql
            .split_once("service_key = '")
            .and_then(|(_, rest)| rest.split('\'').next())
            .unwrap_or_default();
        let held: Vec<&str> = records
            .values()
            .filter(|r| r.node == node && !r.status.is_final())
            .map(|r| r.id.as_str())
            .collect();
        vec![json!({
            "service_name": "Pool",
            "key": "sessions",
            "value_utf8": serde_json::to_string(&held).unwrap(),
        })]
    } else if !sql.contains("service_name = 'Session'") {
        Vec::new()
    } else if sql.contains("COUNT(*)") {
        // The metrics' count of records by status and node.
        let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for rec in records.values() {
            *counts
                .entry((rec.status.as_str().to_string(), rec.node.clone()))
                .or_default() += 1;
        }
        counts
            .into_iter()
            .map(|((status, node), n)| json!({ "status": status, "node": node, "n": n }))
            .collect()
    } else if let Some((_, rest)) = sql.split_once("service_key IN (") {
        let list = rest.split(')').next().unwrap_or_default();
        list.split(", ")
            .filter_map(|k| records.get(k.trim_matches('\'')).map(row))
            .collect()
    } else if let Some((_, rest)) = sql.split_once("service_key = '") {
        let key = rest.split('\'').next().unwrap_or_default();
        records.get(key).map(row).into_iter().collect()
    } else {
        records.values().map(row).collect()
    };
    Json(json!({ "rows": rows }))
}
