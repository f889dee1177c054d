//! The three calls of [`RemoteWorkerHost`] whose bytes are the HTTP body: `read_file` and
//! `zip_files` downloads, ended when they stand still, and `upload_file`, watched so that a
//! node that stops taking bytes ends the upload rather than hanging it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header;

use super::{RemoteWorkerHost, UploadHeaders};
use crate::host::{ByteStream, FileRead, FilesOf, HostError, HostErrorKind};
use crate::node::auth::Content;
use crate::node::wire::{
    self, FILE_MODIFIED_HEADER, FILE_PATH_HEADER, FILE_SIZE_HEADER, JSON_LIMIT,
};

impl RemoteWorkerHost {
    /// Sends a stream call and checks its answer, within [`Timeouts::stream_idle`](super::Timeouts::stream_idle).
    pub(super) async fn open_stream(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, HostError> {
        let open = async {
            let response = request.send().await.map_err(|e| self.unreachable(&e))?;
            self.check(method, response).await
        };
        tokio::time::timeout(self.timeouts.stream_idle, open)
            .await
            .map_err(|_| self.silent(method))?
    }

    /// The failure of a stream that stood still for [`Timeouts::stream_idle`](super::Timeouts::stream_idle).
    fn silent(&self, method: &str) -> HostError {
        HostError::new(
            HostErrorKind::Retryable,
            format!(
                "node {} unreachable: {method} stood still for {:.1} s",
                self.node,
                self.timeouts.stream_idle.as_secs_f32()
            ),
        )
    }

    /// The body of a stream answer, ended by an error when it stands still too long.
    pub(super) fn download(&self, response: reqwest::Response) -> ByteStream {
        let node = self.node.clone();
        let idle = self.timeouts.stream_idle;
        let chunks = response.bytes_stream().boxed();
        futures_util::stream::unfold(Some(chunks), move |chunks| {
            let node = node.clone();
            async move {
                let mut chunks = chunks?;
                match tokio::time::timeout(idle, chunks.next()).await {
                    Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(chunks))),
                    Ok(Some(Err(e))) => {
                        let err = io::Error::other(format!("node {node}: {e}"));
                        Some((Err(err), None))
                    }
                    Ok(None) => None,
                    Err(_) => {
                        let secs = idle.as_secs_f32();
                        let err = io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("node {node} sent nothing for {secs:.1} s"),
                        );
                        Some((Err(err), None))
                    }
                }
            }
        })
        .boxed()
    }

    /// Sends `body` as an upload and reads the upload's id. The body is streamed, so it is
    /// signed as unsigned payload; the signature covers the upload's headers.
    pub(super) async fn upload(
        &self,
        of: &FilesOf,
        min_size: Option<u64>,
        body: ByteStream,
    ) -> Result<String, HostError> {
        let upload = UploadHeaders {
            files_of: wire::encode_files_of(of)?,
            min_size: min_size.map(|size| size.to_string()),
        };
        let request = self
            .post("upload_file", Content::Unsigned, Some(&upload))?
            .header(header::CONTENT_TYPE, "application/octet-stream");
        let progress = Arc::new(Mutex::new(Progress::new()));
        let watched = Watched {
            inner: body,
            progress: progress.clone(),
        };
        let send = request.body(reqwest::Body::wrap_stream(watched)).send();
        let sent = tokio::select! {
            sent = send => sent,
            () = stalled(progress.clone(), self.timeouts.stream_idle) => return Err(self.silent("upload_file")),
        };
        let source_failed = progress.lock().ok().and_then(|p| p.source_error.clone());
        let response = match (sent, source_failed) {
            (Ok(response), _) => response,
            // The caller's body failed, not the node: the node removed what it had.
            (Err(_), Some(err)) => {
                return Err(HostError::new(
                    HostErrorKind::BadInput,
                    format!("the upload ended early: {err}"),
                ));
            }
            (Err(e), None) => return Err(self.unreachable(&e)),
        };
        let answer = async {
            let response = self.check("upload_file", response).await?;
            self.body("upload_file", response, JSON_LIMIT).await
        };
        let body = tokio::time::timeout(self.timeouts.stream_idle, answer)
            .await
            .map_err(|_| self.silent("upload_file"))??;
        serde_json::from_slice(&body).map_err(|e| {
            HostError::new(
                HostErrorKind::Permanent,
                format!(
                    "node {} answered upload_file with unreadable JSON: {e}",
                    self.node
                ),
            )
        })
    }

    /// The [`FileRead`] of a `read_file` answer.
    pub(super) fn file_read(&self, response: reqwest::Response) -> Result<FileRead, HostError> {
        let headers = response.headers();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let bad = |what: &str| {
            HostError::new(
                HostErrorKind::Permanent,
                format!(
                    "node {} answered read_file without a readable {what}",
                    self.node
                ),
            )
        };
        let path = text(FILE_PATH_HEADER)
            .and_then(|v| wire::decode_path(v).ok())
            .ok_or_else(|| bad(FILE_PATH_HEADER))?;
        let size = text(FILE_SIZE_HEADER)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad(FILE_SIZE_HEADER))?;
        let modified_ms = match text(FILE_MODIFIED_HEADER) {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| bad(FILE_MODIFIED_HEADER))?),
        };
        Ok(FileRead {
            path,
            size,
            modified_ms,
            body: self.download(response),
        })
    }
}

/// Where an upload's body stands, for [`stalled`].
struct Progress {
    /// When the body was last polled.
    at: Instant,
    /// The last poll found the caller's body not ready: the wait is the caller's, not the node's.
    on_source: bool,
    /// The caller's body failed with this.
    source_error: Option<String>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            at: Instant::now(),
            on_source: false,
            source_error: None,
        }
    }
}

/// An upload's body, noting each poll in its [`Progress`].
struct Watched {
    inner: ByteStream,
    progress: Arc<Mutex<Progress>>,
}

impl Stream for Watched {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let poll = self.inner.poll_next_unpin(cx);
        if let Ok(mut progress) = self.progress.lock() {
            progress.at = Instant::now();
            progress.on_source = poll.is_pending();
            if let Poll::Ready(Some(Err(err))) = &poll {
                progress.source_error = Some(err.to_string());
            }
        }
        poll
    }
}

/// Ends when the node has taken no bytes of an upload for `idle` while the caller had some
/// (or, after the last byte, has not answered in that time).
async fn stalled(progress: Arc<Mutex<Progress>>, idle: Duration) {
    let tick = (idle / 4).min(Duration::from_millis(500));
    loop {
        tokio::time::sleep(tick).await;
        let stalled = progress
            .lock()
            .map(|p| !p.on_source && p.at.elapsed() > idle)
            .unwrap_or(false);
        if stalled {
            return;
        }
    }
}
