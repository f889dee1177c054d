//! [`RemoteWorkerHost`]: a [`WorkerHost`] whose browsers run on another node, reached through
//! that node's [`serve`](super::serve) routes with requests signed by the cluster secret.
//!
//! A call that cannot reach the node, or that the node does not finish in time, is
//! [`HostErrorKind::Retryable`] ("node NAME unreachable: ..."); a refused signature is
//! [`HostErrorKind::Permanent`]; any other failure is the node's own [`HostError`], kind and
//! message as they were. Every call has an end: plain calls a total timeout, streams an idle
//! timeout between chunks.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::host::{
    BrowserPages, ByteStream, Claim, FileEntry, FileListing, FileRead, FilesOf, HostError,
    HostErrorKind, LaunchSpec, PageOutput, PageWork, Preview, RecordingPage, RecordingQuery,
    SessionDir, Usage, WorkerHost,
};
use crate::node::auth::{Content, Signed, sign, unix_now};
use crate::node::secret::ClusterSecret;
use crate::node::wire::{
    self, ACT_ANSWER_LIMIT, ActRequest, CONTEXT_ANSWER_LIMIT, DiscardUploadRequest, ERROR_LIMIT,
    FILES_OF_HEADER, FileRequest, JSON_LIMIT, MIN_SIZE_HEADER, PlaceUploadRequest, PreviewRequest,
    ProbeRequest, QuarantineRequest, ReapRequest, ResumeRequest, UsageRequest,
};
use crate::protocol::session::{ProxyBytes, SessionOptions, WorkerInfo};
use crate::protocol::steel::SessionContext;

mod streams;

/// Longest wait for a TCP connection to a node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The HTTP client for calls to other nodes: straight to the node (no proxy from the
/// environment, which would see the signed requests), no redirects (which would carry a
/// signature made for another target), [`CONNECT_TIMEOUT`] to connect, no Nagle delay.
pub fn node_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The upload headers of a streamed request: the [`FILES_OF_HEADER`] value and, when
/// announced, the [`MIN_SIZE_HEADER`] value. The signature covers both.
pub(crate) struct UploadHeaders {
    pub(crate) files_of: String,
    pub(crate) min_size: Option<String>,
}

/// How long calls to a node may take. [`Timeouts::default`] is what a cluster uses; tests
/// shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest a plain call may take, answer included (a launch waits for its browser's CDP).
    pub call: Duration,
    /// What a remote probe may take beyond the probe's own timeout.
    pub probe_grace: Duration,
    /// Longest a `usage` call may take: the supervisor asks often, and a late answer is useless.
    pub usage: Duration,
    /// Longest a file stream may stand still: the wait for a stream's answer, between two
    /// chunks of a download, and, in an upload, the node taking no bytes while the caller has
    /// some (or not answering after the last one).
    pub stream_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            call: Duration::from_secs(120),
            probe_grace: Duration::from_secs(2),
            usage: Duration::from_secs(10),
            stream_idle: Duration::from_secs(60),
        }
    }
}

/// Why a [`RemoteWorkerHost`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The node's API base is not a plain `http://host:port` URL.
    #[error("node {node}: API base {base} is not an http:// URL with a host and no query")]
    BadBase {
        /// The node's name.
        node: String,
        /// The URL given.
        base: String,
    },
    /// The HTTP client could not be built.
    #[error("node {node}: HTTP client: {source}")]
    Client {
        /// The node's name.
        node: String,
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
}

/// A [`WorkerHost`] whose browsers run on another node: every call crosses to that node.
///
/// The supervisor-only methods ([`alive`](WorkerHost::alive),
/// [`session_dirs`](WorkerHost::session_dirs), [`is_busy`](WorkerHost::is_busy),
/// [`is_stopping`](WorkerHost::is_stopping), [`sweep_strays`](WorkerHost::sweep_strays)) are
/// synchronous and cannot cross a network; each node's supervisor calls them on its own local
/// host only, so here they answer what leaves a remote browser alone.
pub struct RemoteWorkerHost {
    node: String,
    /// The node's API base.
    base: Url,
    /// The path of `base` without its trailing slash: what comes before each route.
    prefix: String,
    secret: ClusterSecret,
    client: reqwest::Client,
    timeouts: Timeouts,
}

impl std::fmt::Debug for RemoteWorkerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWorkerHost")
            .field("node", &self.node)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl RemoteWorkerHost {
    /// A host for node `node`, whose daemon answers at `api_base` (`http://127.0.0.2:3000`;
    /// a path is kept as a prefix), signing with `secret`. Nothing is sent yet.
    pub fn new(
        node: String,
        api_base: Url,
        secret: ClusterSecret,
    ) -> Result<RemoteWorkerHost, RemoteError> {
        let usable = api_base.scheme() == "http"
            && api_base.host_str().is_some()
            && api_base.query().is_none()
            && api_base.fragment().is_none()
            && api_base.username().is_empty()
            && api_base.password().is_none();
        if !usable {
            return Err(RemoteError::BadBase {
                node,
                base: api_base.to_string(),
            });
        }
        let prefix = api_base.path().trim_end_matches('/').to_owned();
        let client = node_client().map_err(|source| RemoteError::Client {
            node: node.clone(),
            source,
        })?;
        Ok(RemoteWorkerHost {
            node,
            base: api_base,
            prefix,
            secret,
            client,
            timeouts: Timeouts::default(),
        })
    }

    /// The same host with other [`Timeouts`].
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> RemoteWorkerHost {
        self.timeouts = timeouts;
        self
    }

    /// The node's name, as given to [`RemoteWorkerHost::new`].
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A POST to the route of `method`, signed for this node with a body of `content` and,
    /// for an upload, its `upload` headers (which it carries).
    fn post(
        &self,
        method: &str,
        content: Content,
        upload: Option<&UploadHeaders>,
    ) -> Result<reqwest::RequestBuilder, HostError> {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{}", self.prefix, wire::host_path(method)));
        let signed = Signed {
            target: &self.node,
            method: &Method::POST,
            path_and_query: url.path(),
            content,
            files_of: upload.map(|u| u.files_of.as_bytes()),
            min_size: upload.and_then(|u| u.min_size.as_deref().map(str::as_bytes)),
        };
        let headers = sign(&self.secret, &signed, unix_now()).map_err(|e| {
            HostError::new(
                HostErrorKind::Retryable,
                format!("{method} for node {}: {e}", self.node),
            )
        })?;
        let mut request = self.client.post(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        // The owning node continues the caller's trace (when traces are exported). Not
        // covered by the signature: it only places the node's spans in a trace, and a
        // forged one can do no more than that (the owner resamples and drops tracestate).
        let mut trace = http::HeaderMap::new();
        crate::telemetry::otlp::inject(&mut trace);
        request = request.headers(trace);
        if let Some(upload) = upload {
            request = request.header(FILES_OF_HEADER, upload.files_of.as_str());
            if let Some(size) = &upload.min_size {
                request = request.header(MIN_SIZE_HEADER, size.as_str());
            }
        }
        Ok(request)
    }

    /// A signed POST to the route of `method` with `request` as its JSON body.
    fn post_json<Req: Serialize>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<reqwest::RequestBuilder, HostError> {
        let body = serde_json::to_vec(request).map_err(|e| {
            HostError::new(
                HostErrorKind::BadInput,
                format!("{method} for node {}: {e}", self.node),
            )
        })?;
        Ok(self
            .post(method, Content::of_body(&body), None)?
            .header(header::CONTENT_TYPE, "application/json")
            .body(body))
    }

    /// The failure of a call that did not get through.
    fn unreachable(&self, err: &dyn std::error::Error) -> HostError {
        let mut message = format!("node {} unreachable: {err}", self.node);
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        HostError::new(HostErrorKind::Retryable, message)
    }

    /// Calls `method` with `request` and reads its JSON answer of at most `limit` bytes, all
    /// within `timeout`.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        request: &Req,
        timeout: Duration,
        limit: usize,
    ) -> Result<Resp, HostError> {
        let response = self
            .post_json(method, request)?
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let response = self.check(method, response).await?;
        let body = self.body(method, response, limit).await?;
        serde_json::from_slice(&body).map_err(|e| {
            HostError::new(
                HostErrorKind::Permanent,
                format!(
                    "node {} answered {method} with unreadable JSON: {e}",
                    self.node
                ),
            )
        })
    }

    /// The body of `response`, of at most `limit` bytes.
    async fn body(
        &self,
        method: &str,
        mut response: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, HostError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
            if body.len() + chunk.len() > limit {
                return Err(HostError::new(
                    HostErrorKind::Permanent,
                    format!(
                        "node {} answered {method} with more than {limit} bytes",
                        self.node
                    ),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// `response` when it is a success; otherwise the error it carries: the node's
    /// [`HostError`] when the body is one, else one made from the status.
    async fn check(
        &self,
        method: &str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, HostError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = self
            .body(method, response, ERROR_LIMIT)
            .await
            .unwrap_or_default();
        if let Ok(err) = serde_json::from_slice::<HostError>(&body) {
            return Err(err);
        }
        let text = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        let node = &self.node;
        Err(match status {
            StatusCode::UNAUTHORIZED => HostError::new(
                HostErrorKind::Permanent,
                format!("node {node} refused this node's signature: {text}"),
            ),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => HostError::new(
                HostErrorKind::Retryable,
                format!("node {node} answered {method} with {s}: {text}"),
            ),
            s => HostError::new(
                HostErrorKind::Permanent,
                format!("node {node} answered {method} with {s}: {text}"),
            ),
        })
    }
}

impl WorkerHost for RemoteWorkerHost {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<WorkerInfo, HostError>> {
        async move {
            self.call("launch", &spec, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    fn claim(&self, claim: Claim) -> BoxFuture<'_, Result<WorkerInfo, HostError>> {
        async move {
            self.call("claim", &claim, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    fn stop(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<Option<ProxyBytes>, HostError>> {
        async move {
            self.call("stop", &worker, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    /// False when the node does not answer either.
    fn probe(&self, worker: WorkerInfo, timeout: Duration) -> BoxFuture<'_, bool> {
        async move {
            let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            let request = ProbeRequest { worker, timeout_ms };
            let within = timeout.saturating_add(self.timeouts.probe_grace);
            self.call("probe", &request, within, JSON_LIMIT)
                .await
                .unwrap_or(false)
        }
        .boxed()
    }

    /// Always true: a process on another machine cannot be checked from here; that node's
    /// own supervisor checks it.
    fn alive(&self, _worker: &WorkerInfo) -> bool {
        true
    }

    fn resume(
        &self,
        worker: WorkerInfo,
        options: SessionOptions,
    ) -> BoxFuture<'_, Result<(), HostError>> {
        async move {
            let request = ResumeRequest { worker, options };
            self.call("resume", &request, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    fn context(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<SessionContext, HostError>> {
        async move {
            self.call("context", &worker, self.timeouts.call, CONTEXT_ANSWER_LIMIT)
                .await
        }
        .boxed()
    }

    fn pages(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<BrowserPages, HostError>> {
        async move {
            self.call("pages", &worker, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    fn preview(
        &self,
        worker: WorkerInfo,
        max_width: u32,
    ) -> BoxFuture<'_, Result<Preview, HostError>> {
        async move {
            let request = PreviewRequest { worker, max_width };
            self.call(
                "preview",
                &request,
                self.timeouts.call,
                CONTEXT_ANSWER_LIMIT,
            )
            .await
        }
        .boxed()
    }

    /// Not forwarded as a host call: a viewer's socket for another node's session is spliced
    /// to that node's API, which runs the screencast on its own host (`api::viewer`).
    fn screencast(
        &self,
        _spec: crate::host::CastSpec,
        _input: futures_util::stream::BoxStream<'static, crate::host::CastInput>,
    ) -> BoxFuture<
        '_,
        Result<futures_util::stream::BoxStream<'static, crate::host::CastOutput>, HostError>,
    > {
        let node = self.node.clone();
        Box::pin(async move {
            Err(HostError::new(
                HostErrorKind::Permanent,
                format!(
                    "a screencast of node {node}'s session runs on node {node}: its viewer \
                     socket is spliced to that node's API, not forwarded as a host call"
                ),
            ))
        })
    }

    fn act(
        &self,
        worker: WorkerInfo,
        work: PageWork,
    ) -> BoxFuture<'_, Result<PageOutput, HostError>> {
        async move {
            let within = self
                .timeouts
                .call
                .saturating_add(Duration::from_millis(work.delay_ms));
            let request = ActRequest { worker, work };
            self.call("act", &request, within, ACT_ANSWER_LIMIT).await
        }
        .boxed()
    }

    /// An empty map when the node does not answer.
    fn usage(&self, pids: Vec<u32>) -> BoxFuture<'_, HashMap<u32, Usage>> {
        async move {
            let request = UsageRequest { pids };
            match self
                .call("usage", &request, self.timeouts.usage, JSON_LIMIT)
                .await
            {
                Ok(usage) => usage,
                Err(err) => {
                    tracing::debug!(node = %self.node, error = %err, "no usage from node");
                    HashMap::new()
                }
            }
        }
        .boxed()
    }

    /// Always empty: a node's supervisor judges only its own dirs.
    fn session_dirs(&self) -> Vec<SessionDir> {
        Vec::new()
    }

    /// Always false: only the owning node knows, and only its supervisor asks.
    fn is_busy(&self, _id: &str) -> bool {
        false
    }

    /// Always false: only the owning node knows, and only its supervisor asks.
    fn is_stopping(&self, _pid: u32) -> bool {
        false
    }

    fn reap(&self, id: String) -> BoxFuture<'_, Result<(), HostError>> {
        async move {
            let request = ReapRequest { id };
            self.call("reap", &request, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    fn quarantine(&self, id: String, reason: String) -> BoxFuture<'_, Result<String, HostError>> {
        async move {
            let request = QuarantineRequest { id, reason };
            self.call("quarantine", &request, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    /// Always 0, killing nothing: a node sweeps only its own strays.
    fn sweep_strays(&self, _keep: Vec<String>) -> usize {
        0
    }

    fn files(&self, of: FilesOf) -> BoxFuture<'_, Result<FileListing, HostError>> {
        async move {
            self.call("files", &of, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    fn read_file(&self, of: FilesOf, path: String) -> BoxFuture<'_, Result<FileRead, HostError>> {
        async move {
            let request = self.post_json("read_file", &FileRequest { of, path })?;
            let response = self.open_stream("read_file", request).await?;
            self.file_read(response)
        }
        .boxed()
    }

    fn upload_file(
        &self,
        of: FilesOf,
        min_size: Option<u64>,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<String, HostError>> {
        async move { self.upload(&of, min_size, body).await }.boxed()
    }

    fn place_upload(
        &self,
        of: FilesOf,
        upload: String,
        path: String,
    ) -> BoxFuture<'_, Result<FileEntry, HostError>> {
        async move {
            let request = PlaceUploadRequest { of, upload, path };
            self.call("place_upload", &request, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    /// A failure is logged, not returned: the trait has no error here, as the caller could do
    /// nothing about it.
    fn discard_upload(&self, of: FilesOf, upload: String) -> BoxFuture<'_, ()> {
        async move {
            let request = DiscardUploadRequest { of, upload };
            let done: Result<(), HostError> = self
                .call("discard_upload", &request, self.timeouts.call, JSON_LIMIT)
                .await;
            if let Err(err) = done {
                tracing::warn!(node = %self.node, error = %err, "could not discard an upload");
            }
        }
        .boxed()
    }

    fn delete_file(&self, of: FilesOf, path: String) -> BoxFuture<'_, Result<(), HostError>> {
        async move {
            let request = FileRequest { of, path };
            self.call("delete_file", &request, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    fn clear_files(&self, of: FilesOf) -> BoxFuture<'_, Result<(), HostError>> {
        async move {
            self.call("clear_files", &of, self.timeouts.call, JSON_LIMIT)
                .await
        }
        .boxed()
    }

    fn zip_files(&self, of: FilesOf) -> BoxFuture<'_, Result<ByteStream, HostError>> {
        async move {
            let request = self.post_json("zip_files", &of)?;
            let response = self.open_stream("zip_files", request).await?;
            Ok(self.download(response))
        }
        .boxed()
    }

    fn recording(&self, query: RecordingQuery) -> BoxFuture<'_, Result<RecordingPage, HostError>> {
        async move {
            // A page is at most 16 MiB of events (`worker::recording::MAX_READ_BYTES`).
            self.call(
                "recording",
                &query,
                self.timeouts.call,
                CONTEXT_ANSWER_LIMIT,
            )
            .await
        }
        .boxed()
    }
}
