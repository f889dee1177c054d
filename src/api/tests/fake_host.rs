//! A [`WorkerHost`] without browsers: every call is recorded (`method detail`), answers are
//! fixed, and a test may make one method fail with a [`HostErrorKind`] of its choice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use crate::host::{
    BrowserPages, ByteStream, CastInput, CastOutput, CastSpec, Claim, FileEntry, FileListing,
    FileRead, FilesOf, HostError, HostErrorKind, LaunchSpec, PageOutput, PageWork, Preview,
    RecordingPage, RecordingQuery, SessionDir, Usage, WorkerHost,
};
use crate::protocol::live::PageInfo;
use crate::protocol::session::{ProxyBytes, SessionOptions, WorkerInfo};
use crate::protocol::steel::SessionContext;

/// Memory, CPU and processes the fake reports for every pid.
pub(super) const USAGE: Usage = Usage {
    mem_kib: 2048,
    cpu_ticks: 7,
    processes: 3,
};

/// The calls made and the failures scripted.
#[derive(Default)]
pub(super) struct FakeHost {
    calls: Mutex<Vec<String>>,
    failures: Mutex<HashMap<&'static str, HostError>>,
    /// Viewer messages the fake's screencasts received, and how many run now.
    cast_inputs: std::sync::Arc<Mutex<Vec<CastInput>>>,
    casts_open: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl FakeHost {
    /// From now on, `method` fails with `kind` and `message`.
    pub(super) fn fail(&self, method: &'static str, kind: HostErrorKind, message: &str) {
        let err = HostError::new(kind, message);
        self.failures.lock().unwrap().insert(method, err);
    }

    /// Viewer messages the fake's screencasts received so far.
    pub(super) fn cast_inputs(&self) -> Vec<CastInput> {
        self.cast_inputs.lock().unwrap().clone()
    }

    /// Screencasts of the fake running now.
    pub(super) fn casts_open(&self) -> u32 {
        self.casts_open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every call so far, as `method detail`.
    pub(super) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// Records the call; its scripted failure, if any.
    fn enter(&self, method: &'static str, detail: impl std::fmt::Display) -> Result<(), HostError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{method} {detail}"));
        match self.failures.lock().unwrap().get(method) {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }

    /// A call the API never makes: recorded, and refused.
    fn unused<T>(&self, method: &'static str) -> Result<T, HostError> {
        self.enter(method, "")?;
        Err(HostError::new(
            HostErrorKind::Permanent,
            format!("the fake host does not {method}"),
        ))
    }
}

/// The pages the fake's browsers show.
pub(super) fn pages() -> BrowserPages {
    BrowserPages {
        pages: vec![
            PageInfo {
                id: Some("P1".into()),
                url: Some("https://example.com/".into()),
                title: Some("Example".into()),
                favicon: Some("https://example.com/favicon.ico".into()),
            },
            PageInfo::default(),
        ],
        user_agent: Some("FakeChrome/1.0".into()),
        browser_version: Some("Chrome/1.0".into()),
        viewers: 0,
    }
}

/// The context the fake's browsers hold.
pub(super) fn context() -> SessionContext {
    SessionContext {
        cookies: vec![serde_json::json!({"name": "k", "value": "v", "domain": "example.com"})],
        ..Default::default()
    }
}

/// The one file every session of the fake has.
pub(super) fn file() -> FileEntry {
    FileEntry {
        path: "dl/report.txt".into(),
        size: 5,
        modified_ms: 1_700_000_000_123,
    }
}

fn bytes(data: &'static [u8]) -> ByteStream {
    futures_util::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed()
}

impl WorkerHost for FakeHost {
    fn launch(&self, _spec: LaunchSpec) -> BoxFuture<'_, Result<WorkerInfo, HostError>> {
        async move { self.unused("launch") }.boxed()
    }

    fn claim(&self, _claim: Claim) -> BoxFuture<'_, Result<WorkerInfo, HostError>> {
        async move { self.unused("claim") }.boxed()
    }

    fn stop(&self, _worker: WorkerInfo) -> BoxFuture<'_, Result<Option<ProxyBytes>, HostError>> {
        async move { self.unused("stop") }.boxed()
    }

    fn probe(&self, worker: WorkerInfo, _timeout: Duration) -> BoxFuture<'_, bool> {
        async move { self.enter("probe", worker.pid).is_ok() }.boxed()
    }

    fn alive(&self, worker: &WorkerInfo) -> bool {
        self.enter("alive", worker.pid).is_ok()
    }

    fn resume(
        &self,
        _worker: WorkerInfo,
        _options: SessionOptions,
    ) -> BoxFuture<'_, Result<(), HostError>> {
        async move { self.unused("resume") }.boxed()
    }

    fn context(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<SessionContext, HostError>> {
        async move { self.enter("context", worker.pid).map(|()| context()) }.boxed()
    }

    fn pages(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<BrowserPages, HostError>> {
        async move { self.enter("pages", worker.pid).map(|()| pages()) }.boxed()
    }

    fn preview(
        &self,
        worker: WorkerInfo,
        max_width: u32,
    ) -> BoxFuture<'_, Result<Preview, HostError>> {
        let detail = format!("{} {max_width}", worker.pid);
        async move {
            self.enter("preview", detail)?;
            Ok(Preview {
                url: "https://example.com/".into(),
                title: "Example".into(),
                jpeg: "/9j/".into(),
            })
        }
        .boxed()
    }

    fn screencast(
        &self,
        spec: CastSpec,
        mut input: futures_util::stream::BoxStream<'static, CastInput>,
    ) -> BoxFuture<'_, Result<futures_util::stream::BoxStream<'static, CastOutput>, HostError>>
    {
        let detail = format!("{} {:?} {}", spec.worker.pid, spec.page, spec.interactive);
        async move {
            self.enter("screencast", detail)?;
            // One frame, then every message recorded until the viewer goes.
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let frame = CastOutput::Frame(crate::protocol::cast::CastFrame {
                page_id: "P1".into(),
                url: "https://example.com/".into(),
                title: "Example".into(),
                favicon: None,
                data: "/9j/".into(),
            });
            let _ = tx.try_send(frame);
            let (inputs, open) = (self.cast_inputs.clone(), self.casts_open.clone());
            open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tx.closed() => break,
                        msg = input.next() => match msg {
                            Some(msg) => inputs.lock().unwrap().push(msg),
                            None => break,
                        },
                    }
                }
                open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
            let out = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|o| (o, rx))
            });
            Ok(out.boxed())
        }
        .boxed()
    }

    fn act(
        &self,
        worker: WorkerInfo,
        work: PageWork,
    ) -> BoxFuture<'_, Result<PageOutput, HostError>> {
        async move {
            self.enter("act", format!("{} {}", worker.pid, work.url))?;
            Ok(PageOutput {
                status_code: 200,
                scraped: work
                    .scrape
                    .map(|_| serde_json::json!({"content": {"html": "<p>hi</p>"}})),
                screenshot: work.screenshot.then(|| b"jpeg".to_vec()),
                pdf: work.pdf.then(|| b"%PDF".to_vec()),
            })
        }
        .boxed()
    }

    fn usage(&self, pids: Vec<u32>) -> BoxFuture<'_, HashMap<u32, Usage>> {
        async move {
            let _ = self.enter("usage", format!("{pids:?}"));
            pids.into_iter().map(|pid| (pid, USAGE)).collect()
        }
        .boxed()
    }

    fn session_dirs(&self) -> Vec<SessionDir> {
        Vec::new()
    }

    fn is_busy(&self, _id: &str) -> bool {
        false
    }

    fn is_stopping(&self, _pid: u32) -> bool {
        false
    }

    fn reap(&self, _id: String) -> BoxFuture<'_, Result<(), HostError>> {
        async move { self.unused("reap") }.boxed()
    }

    fn quarantine(&self, _id: String, _reason: String) -> BoxFuture<'_, Result<String, HostError>> {
        async move { self.unused("quarantine") }.boxed()
    }

    fn sweep_strays(&self, _keep: Vec<String>) -> usize {
        0
    }

    fn files(&self, of: FilesOf) -> BoxFuture<'_, Result<FileListing, HostError>> {
        async move {
            self.enter("files", of.session_id)?;
            Ok(FileListing {
                entries: vec![file()],
                used: 5,
                quota: 1 << 20,
                downloads_stopped: None,
            })
        }
        .boxed()
    }

    fn read_file(&self, of: FilesOf, path: String) -> BoxFuture<'_, Result<FileRead, HostError>> {
        async move {
            self.enter("read_file", format!("{} {path}", of.session_id))?;
            let entry = file();
            Ok(FileRead {
                path: entry.path,
                size: entry.size,
                modified_ms: Some(entry.modified_ms),
                body: bytes(b"hello"),
            })
        }
        .boxed()
    }

    fn upload_file(
        &self,
        of: FilesOf,
        min_size: Option<u64>,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<String, HostError>> {
        async move {
            self.enter("upload_file", format!("{} {min_size:?}", of.session_id))?;
            // Read it all, as a host that writes it would.
            let chunks: Vec<_> = body.collect().await;
            let size: usize = chunks.iter().flatten().map(Bytes::len).sum();
            Ok(format!("upload-{size}"))
        }
        .boxed()
    }

    fn place_upload(
        &self,
        of: FilesOf,
        upload: String,
        path: String,
    ) -> BoxFuture<'_, Result<FileEntry, HostError>> {
        async move {
            self.enter("place_upload", format!("{} {upload} {path}", of.session_id))?;
            Ok(FileEntry { path, ..file() })
        }
        .boxed()
    }

    fn discard_upload(&self, of: FilesOf, upload: String) -> BoxFuture<'_, ()> {
        async move {
            let _ = self.enter("discard_upload", format!("{} {upload}", of.session_id));
        }
        .boxed()
    }

    fn delete_file(&self, of: FilesOf, path: String) -> BoxFuture<'_, Result<(), HostError>> {
        async move { self.enter("delete_file", format!("{} {path}", of.session_id)) }.boxed()
    }

    fn clear_files(&self, of: FilesOf) -> BoxFuture<'_, Result<(), HostError>> {
        async move { self.enter("clear_files", of.session_id) }.boxed()
    }

    fn zip_files(&self, of: FilesOf) -> BoxFuture<'_, Result<ByteStream, HostError>> {
        async move {
            self.enter("zip_files", of.session_id)?;
            Ok(bytes(b"PK\x05\x06"))
        }
        .boxed()
    }

    fn recording(&self, q: RecordingQuery) -> BoxFuture<'_, Result<RecordingPage, HostError>> {
        async move {
            self.enter(
                "recording",
                format!("{} {} {}", q.session_id, q.from, q.limit),
            )?;
            Ok(recording_page(q.from))
        }
        .boxed()
    }
}

/// Two rrweb events (a Meta and a FullSnapshot), then a second page from `from` 1 on.
pub(super) fn recording_page(from: u64) -> RecordingPage {
    let raw = |t: &str| serde_json::value::RawValue::from_string(t.to_string()).unwrap();
    match from {
        0 => RecordingPage {
            events: vec![
                raw(
                    r#"{"type":4,"data":{"href":"https://example.com/","width":800,"height":600},"timestamp":1,"pageId":"P1"}"#,
                ),
                raw(
                    r#"{"type":2,"data":{"node":{"type":0,"childNodes":[],"id":1},"initialOffset":{"left":0,"top":0}},"timestamp":2,"pageId":"P1"}"#,
                ),
            ],
            next: Some(1),
        },
        _ => RecordingPage {
            events: vec![raw(
                r#"{"type":3,"data":{"source":0},"timestamp":3,"pageId":"P1"}"#,
            )],
            next: None,
        },
    }
}
