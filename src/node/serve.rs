//! The routes through which other nodes reach this node's [`WorkerHost`]: one POST route per
//! method under [`HOST_PREFIX`](super::wire::HOST_PREFIX), all behind
//! [`require_node_auth`]. Plain methods take and answer JSON; `read_file`, `upload_file` and
//! `zip_files` carry the file bytes as the HTTP body. A JSON body is checked against the
//! digest its signature names before it is parsed; `upload_file`'s streamed body must be
//! signed as [`UNSIGNED_PAYLOAD`](crate::node::auth::UNSIGNED_PAYLOAD), its headers being
//! what the signature covers. A [`HostError`] is answered with the
//! status of its kind ([`status_of`](super::wire::status_of)) and itself as the JSON body, so the caller rebuilds it
//! exactly. This module only translates HTTP to calls; what a call does is the host's.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::host::{
    Claim, FileRead, FilesOf, HostError, HostErrorKind, LaunchSpec, RecordingQuery, Usage,
    WorkerHost,
};
use crate::node::auth::{AuthError, Content, NodeVerifier, refusal, require_node_auth};
use crate::node::wire::{
    self, ActRequest, CONTEXT_LIMIT, DiscardUploadRequest, FILE_MODIFIED_HEADER, FILE_PATH_HEADER,
    FILE_SIZE_HEADER, FILES_OF_HEADER, FileRequest, JSON_LIMIT, MIN_SIZE_HEADER,
    PlaceUploadRequest, PreviewRequest, ProbeRequest, QuarantineRequest, ReapRequest,
    ResumeRequest, UsageRequest, host_path,
};
use crate::protocol::session::WorkerInfo;
use crate::telemetry::otlp;

type Host = Arc<dyn WorkerHost>;

/// A failed call on its way out as a response: the one place its status is chosen. A
/// [`HostError`] goes out with its kind's status and itself as the body; a body that is not
/// the signed one as [`refusal`] does.
enum Failure {
    Host(HostError),
    Auth(AuthError),
}

impl From<HostError> for Failure {
    fn from(err: HostError) -> Self {
        Failure::Host(err)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Host(err) => {
                tracing::debug!(kind = ?err.kind, message = %err.message, "node host call failed");
                (wire::status_of(err.kind), Json(err)).into_response()
            }
            Failure::Auth(err) => {
                tracing::debug!(error = %err, "refused a node-to-node request body");
                refusal(&err)
            }
        }
    }
}

/// Every remote-able [`WorkerHost`] method of `host`, behind `verifier` (the cluster secret
/// and this node's name and replay cache).
pub fn routes(host: Arc<dyn WorkerHost>, verifier: Arc<NodeVerifier>) -> Router {
    Router::new()
        .route(
            &host_path("launch"),
            plain(CONTEXT_LIMIT, |h: Host, spec: LaunchSpec| async move {
                h.launch(spec).await
            }),
        )
        .route(
            &host_path("claim"),
            plain(CONTEXT_LIMIT, |h: Host, claim: Claim| async move {
                h.claim(claim).await
            }),
        )
        .route(
            &host_path("stop"),
            plain(JSON_LIMIT, |h: Host, w: WorkerInfo| async move {
                h.stop(w).await
            }),
        )
        .route(
            &host_path("probe"),
            plain(JSON_LIMIT, |h: Host, r: ProbeRequest| async move {
                Ok(h.probe(r.worker, Duration::from_millis(r.timeout_ms)).await)
            }),
        )
        .route(
            &host_path("resume"),
            plain(JSON_LIMIT, |h: Host, r: ResumeRequest| async move {
                h.resume(r.worker, r.options).await
            }),
        )
        .route(
            &host_path("context"),
            plain(JSON_LIMIT, |h: Host, w: WorkerInfo| async move {
                h.context(w).await
            }),
        )
        .route(
            &host_path("pages"),
            plain(JSON_LIMIT, |h: Host, w: WorkerInfo| async move {
                h.pages(w).await
            }),
        )
        .route(
            &host_path("preview"),
            plain(JSON_LIMIT, |h: Host, r: PreviewRequest| async move {
                h.preview(r.worker, r.max_width).await
            }),
        )
        .route(
            &host_path("act"),
            plain(JSON_LIMIT, |h: Host, r: ActRequest| async move {
                h.act(r.worker, r.work).await
            }),
        )
        .route(
            &host_path("usage"),
            plain(JSON_LIMIT, |h: Host, r: UsageRequest| async move {
                Ok::<HashMap<u32, Usage>, HostError>(h.usage(r.pids).await)
            }),
        )
        .route(
            &host_path("reap"),
            plain(JSON_LIMIT, |h: Host, r: ReapRequest| async move {
                h.reap(r.id).await
            }),
        )
        .route(
            &host_path("quarantine"),
            plain(JSON_LIMIT, |h: Host, r: QuarantineRequest| async move {
                h.quarantine(r.id, r.reason).await
            }),
        )
        .route(
            &host_path("recording"),
            plain(JSON_LIMIT, |h: Host, q: RecordingQuery| async move {
                h.recording(q).await
            }),
        )
        .merge(file_routes())
        // Inside the check: only a verified node's request joins a trace.
        .route_layer(axum::middleware::from_fn(in_callers_trace))
        .route_layer(axum::middleware::from_fn_with_state(
            verifier,
            require_node_auth,
        ))
        .with_state(host)
}

/// Runs a node's call in a span continuing the calling node's trace (its `traceparent`),
/// when traces are exported: a launch on another node stays in the create's trace.
async fn in_callers_trace(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let span = otlp::continue_from(
        req.headers(),
        || tracing::info_span!("node_call", path = %req.uri().path()),
    );
    next.run(req).instrument(span).await
}

/// The routes of a session's files.
fn file_routes() -> Router<Host> {
    Router::new()
        .route(
            &host_path("files"),
            plain(JSON_LIMIT, |h: Host, of: FilesOf| async move {
                h.files(of).await
            }),
        )
        .route(&host_path("read_file"), post(read_file))
        .route(&host_path("upload_file"), post(upload_file))
        .route(
            &host_path("place_upload"),
            plain(JSON_LIMIT, |h: Host, r: PlaceUploadRequest| async move {
                h.place_upload(r.of, r.upload, r.path).await
            }),
        )
        .route(
            &host_path("discard_upload"),
            plain(JSON_LIMIT, |h: Host, r: DiscardUploadRequest| async move {
                h.discard_upload(r.of, r.upload).await;
                Ok::<(), HostError>(())
            }),
        )
        .route(
            &host_path("delete_file"),
            plain(JSON_LIMIT, |h: Host, r: FileRequest| async move {
                h.delete_file(r.of, r.path).await
            }),
        )
        .route(
            &host_path("clear_files"),
            plain(JSON_LIMIT, |h: Host, of: FilesOf| async move {
                h.clear_files(of).await
            }),
        )
        .route(&host_path("zip_files"), post(zip_files))
}

/// A POST route that reads a JSON `Req` of at most `limit` bytes (checked against its signed
/// digest), runs `call` and answers its value as JSON or its error as a [`Failure`].
fn plain<Req, Resp, F, Fut>(limit: usize, call: F) -> MethodRouter<Host>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Host, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, HostError>> + Send + 'static,
{
    post(
        move |State(host): State<Host>, Extension(content): Extension<Content>, body: Body| async move {
            let request: Req = json_body(body, content, limit).await?;
            let value = call(host, request).await?;
            Ok::<_, Failure>(Json(value))
        },
    )
}

/// The JSON of a request body of at most `limit` bytes, once the bytes are found to be the
/// ones whose digest was signed (`content`, from [`require_node_auth`]).
async fn json_body<T: DeserializeOwned>(
    body: Body,
    content: Content,
    limit: usize,
) -> Result<T, Failure> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        HostError::new(
            HostErrorKind::TooLarge,
            format!("request body past {limit} bytes or cut: {e}"),
        )
    })?;
    content.check_body(&bytes).map_err(Failure::Auth)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::Host(HostError::new(
            HostErrorKind::BadInput,
            format!("request body: {e}"),
        ))
    })
}

/// `read_file`: the file's bytes as the body, what it is in headers.
async fn read_file(
    State(host): State<Host>,
    Extension(content): Extension<Content>,
    body: Body,
) -> Result<Response, Failure> {
    let request: FileRequest = json_body(body, content, JSON_LIMIT).await?;
    let FileRead {
        path,
        size,
        modified_ms,
        body,
    } = host.read_file(request.of, request.path).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(FILE_SIZE_HEADER, HeaderValue::from(size));
    if let Some(ms) = modified_ms {
        headers.insert(FILE_MODIFIED_HEADER, HeaderValue::from(ms));
    }
    let path = HeaderValue::try_from(wire::encode_path(&path))
        .map_err(|e| HostError::new(HostErrorKind::Permanent, format!("file name header: {e}")))?;
    headers.insert(FILE_PATH_HEADER, path);
    Ok((headers, Body::from_stream(body)).into_response())
}

/// `upload_file`: the body is the file, signed as unsigned payload; whose files and the
/// announced size come in headers, which the signature covers.
async fn upload_file(
    State(host): State<Host>,
    Extension(content): Extension<Content>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<String>, Failure> {
    if content != Content::Unsigned {
        // A digest could only be checked once the host had taken the bytes.
        return Err(Failure::Auth(AuthError::BodyMismatch));
    }
    let bad = |message: String| Failure::Host(HostError::new(HostErrorKind::BadInput, message));
    let of = headers
        .get(FILES_OF_HEADER)
        .ok_or_else(|| bad(format!("no {FILES_OF_HEADER} header")))?;
    let of = wire::decode_files_of(of.as_bytes()).map_err(bad)?;
    let min_size = match headers.get(MIN_SIZE_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| bad(format!("{MIN_SIZE_HEADER} is not a number")))?,
        ),
    };
    let stream = body.into_data_stream().map_err(io::Error::other).boxed();
    Ok(Json(host.upload_file(of, min_size, stream).await?))
}

/// `zip_files`: the zip as the body, written as the caller reads it.
async fn zip_files(
    State(host): State<Host>,
    Extension(content): Extension<Content>,
    body: Body,
) -> Result<Response, Failure> {
    let of: FilesOf = json_body(body, content, JSON_LIMIT).await?;
    let zip = host.zip_files(of).await?;
    let content_type = [(header::CONTENT_TYPE, "application/zip")];
    Ok((content_type, Body::from_stream(zip)).into_response())
}
