//! [`RemoteWorkerHost`] against [`routes`] served on a real loopback listener, with a fake
//! [`WorkerHost`] behind them: what one node asks arrives whole, and what the other answers
//! comes back as it was.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use url::Url;

use crate::host::{
    BrowserPages, ByteStream, Claim, FileEntry, FileListing, FileRead, FilesOf, HostError,
    HostErrorKind, LaunchSpec, PageOutput, PageWork, Preview, RecordingPage, RecordingQuery,
    SessionDir, Usage, WorkerHost,
};
use crate::node::auth::{
    CONTENT_SHA256_HEADER, Content, MAX_SKEW_SECS, NodeVerifier, Signed, sign, unix_now,
};
use crate::node::remote::{RemoteWorkerHost, Timeouts};
use crate::node::secret::ClusterSecret;
use crate::node::serve::routes;
use crate::node::wire::{FILES_OF_HEADER, MIN_SIZE_HEADER, encode_files_of, host_path};
use crate::protocol::live::PageInfo;
use crate::protocol::session::{ProxyBytes, SessionId, SessionOptions, WorkerInfo};
use crate::protocol::steel::SessionContext;

const KINDS: [HostErrorKind; 7] = [
    HostErrorKind::Refused,
    HostErrorKind::Permanent,
    HostErrorKind::Retryable,
    HostErrorKind::NotFound,
    HostErrorKind::BadInput,
    HostErrorKind::TooLarge,
    HostErrorKind::Busy,
];

/// Bytes an upload of the fake may announce before it is refused at once.
const FAKE_QUOTA: u64 = 1 << 30;

/// A host without browsers: records every call, answers fixed values, and fails every call
/// with the scripted error while there is one.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    failure: Mutex<Option<HostError>>,
    uploaded: Mutex<Vec<u8>>,
}

impl Fake {
    fn fail(&self, err: Option<HostError>) {
        *self.failure.lock().unwrap() = err;
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn enter(&self, call: String) -> Result<(), HostError> {
        self.calls.lock().unwrap().push(call);
        match self.failure.lock().unwrap().clone() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

fn worker() -> WorkerInfo {
    WorkerInfo {
        pid: 4242,
        start_time: 987_654_321_012,
        port: 9333,
        ws_path: "/devtools/browser/0f1e-\u{e9}".into(),
        dir: "/var/lib/bro/sessions/a b\u{e9}".into(),
    }
}

fn files_of() -> FilesOf {
    FilesOf {
        session_id: SessionId::random(),
        worker: worker(),
    }
}

fn context() -> SessionContext {
    let big = "v".repeat(2 * 1024 * 1024);
    let mut context = SessionContext {
        cookies: vec![serde_json::json!({"name": "k", "value": "v", "domain": "example.com"})],
        ..Default::default()
    };
    context
        .local_storage
        .entry("https://example.com".into())
        .or_default()
        .insert("big".into(), big);
    context
}

fn pages() -> BrowserPages {
    BrowserPages {
        pages: vec![PageInfo {
            id: Some("P1".into()),
            url: Some("https://example.com/".into()),
            title: Some("Example".into()),
            favicon: None,
        }],
        user_agent: Some("FakeChrome/1.0".into()),
        browser_version: None,
        viewers: 2,
    }
}

fn entry() -> FileEntry {
    FileEntry {
        path: "dl/r\u{e9}port 100%.txt".into(),
        size: 3 * 1024 * 1024 + 17,
        modified_ms: 1_700_000_000_123,
    }
}

/// `len` bytes that differ from any shifted copy of themselves.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) % 251) as u8 ^ seed)
        .collect()
}

/// `data` in chunks of 64 KiB.
fn chunked(data: Vec<u8>) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(chunks).boxed()
}

async fn collect(mut body: ByteStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

impl WorkerHost for Fake {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<WorkerInfo, HostError>> {
        async move {
            let big = spec.context.as_ref().map_or(0, |c| {
                c.local_storage
                    .values()
                    .flat_map(|m| m.values())
                    .map(String::len)
                    .sum::<usize>()
            });
            self.enter(format!("launch warm={} storage={big}", spec.warm))?;
            Ok(worker())
        }
        .boxed()
    }

    fn claim(&self, claim: Claim) -> BoxFuture<'_, Result<WorkerInfo, HostError>> {
        async move {
            self.enter(format!("claim {}", claim.worker.pid))?;
            Ok(claim.worker)
        }
        .boxed()
    }

    fn stop(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<Option<ProxyBytes>, HostError>> {
        async move {
            self.enter(format!("stop {}", worker.pid))?;
            Ok(Some(ProxyBytes { tx: 1, rx: 2 }))
        }
        .boxed()
    }

    fn probe(&self, worker: WorkerInfo, timeout: Duration) -> BoxFuture<'_, bool> {
        async move {
            let ms = timeout.as_millis();
            self.enter(format!("probe {} {ms}", worker.pid)).is_ok()
        }
        .boxed()
    }

    fn alive(&self, _worker: &WorkerInfo) -> bool {
        true
    }

    fn resume(
        &self,
        worker: WorkerInfo,
        options: SessionOptions,
    ) -> BoxFuture<'_, Result<(), HostError>> {
        async move { self.enter(format!("resume {} {}", worker.pid, options.timeout_ms)) }.boxed()
    }

    fn context(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<SessionContext, HostError>> {
        async move {
            self.enter(format!("context {}", worker.pid))?;
            Ok(context())
        }
        .boxed()
    }

    fn pages(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<BrowserPages, HostError>> {
        async move {
            self.enter(format!("pages {}", worker.pid))?;
            Ok(pages())
        }
        .boxed()
    }

    fn preview(
        &self,
        worker: WorkerInfo,
        max_width: u32,
    ) -> BoxFuture<'_, Result<Preview, HostError>> {
        async move {
            self.enter(format!("preview {} {max_width}", worker.pid))?;
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
        spec: crate::host::CastSpec,
        _input: futures_util::stream::BoxStream<'static, crate::host::CastInput>,
    ) -> BoxFuture<
        '_,
        Result<futures_util::stream::BoxStream<'static, crate::host::CastOutput>, HostError>,
    > {
        async move {
            self.enter(format!("screencast {}", spec.worker.pid))?;
            Ok(futures_util::stream::empty().boxed())
        }
        .boxed()
    }

    fn act(
        &self,
        worker: WorkerInfo,
        work: PageWork,
    ) -> BoxFuture<'_, Result<PageOutput, HostError>> {
        async move {
            self.enter(format!("act {} {}", worker.pid, work.url))?;
            Ok(PageOutput {
                status_code: 200,
                scraped: Some(serde_json::json!({"html": "<p>hi</p>"})),
                screenshot: Some(pattern(100_000, 1)),
                pdf: None,
            })
        }
        .boxed()
    }

    fn usage(&self, pids: Vec<u32>) -> BoxFuture<'_, HashMap<u32, Usage>> {
        async move {
            if self.enter(format!("usage {pids:?}")).is_err() {
                return HashMap::new();
            }
            let usage = Usage {
                mem_kib: 2048,
                cpu_ticks: 7,
                processes: 3,
            };
            pids.into_iter().map(|pid| (pid, usage)).collect()
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

    fn reap(&self, id: String) -> BoxFuture<'_, Result<(), HostError>> {
        async move { self.enter(format!("reap {id}")) }.boxed()
    }

    fn quarantine(&self, id: String, reason: String) -> BoxFuture<'_, Result<String, HostError>> {
        async move {
            self.enter(format!("quarantine {id} {reason}"))?;
            Ok(format!("/quarantine/{id}"))
        }
        .boxed()
    }

    fn sweep_strays(&self, _keep: Vec<String>) -> usize {
        0
    }

    fn files(&self, of: FilesOf) -> BoxFuture<'_, Result<FileListing, HostError>> {
        async move {
            self.enter(format!("files {}", of.worker.pid))?;
            Ok(FileListing {
                entries: vec![entry()],
                used: entry().size,
                quota: FAKE_QUOTA,
                downloads_stopped: Some("full".into()),
            })
        }
        .boxed()
    }

    fn read_file(&self, of: FilesOf, path: String) -> BoxFuture<'_, Result<FileRead, HostError>> {
        async move {
            self.enter(format!("read_file {} {path}", of.worker.pid))?;
            let size = entry().size;
            if path == "broken" {
                // A disk error halfway, once the headers are out: the reader must not take the
                // half for the whole.
                let first = futures_util::stream::once(async { Ok(Bytes::from(vec![7; 1024])) });
                let failing = futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Err(std::io::Error::other("disk error"))
                });
                let body = first.chain(failing).boxed();
                return Ok(FileRead {
                    path,
                    size,
                    modified_ms: None,
                    body,
                });
            }
            Ok(FileRead {
                path,
                size,
                modified_ms: Some(entry().modified_ms),
                body: chunked(pattern(size as usize, 2)),
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
            self.enter(format!("upload_file {} {min_size:?}", of.worker.pid))?;
            if min_size.is_some_and(|size| size > FAKE_QUOTA) {
                return Err(HostError::new(HostErrorKind::TooLarge, "past the quota"));
            }
            let data = collect(body)
                .await
                .map_err(|e| HostError::new(HostErrorKind::BadInput, e.to_string()))?;
            let id = format!("up-{}", data.len());
            *self.uploaded.lock().unwrap() = data;
            Ok(id)
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
            self.enter(format!("place_upload {} {upload} {path}", of.worker.pid))?;
            Ok(entry())
        }
        .boxed()
    }

    fn discard_upload(&self, of: FilesOf, upload: String) -> BoxFuture<'_, ()> {
        async move {
            let _ = self.enter(format!("discard_upload {} {upload}", of.worker.pid));
        }
        .boxed()
    }

    fn delete_file(&self, of: FilesOf, path: String) -> BoxFuture<'_, Result<(), HostError>> {
        async move { self.enter(format!("delete_file {} {path}", of.worker.pid)) }.boxed()
    }

    fn clear_files(&self, of: FilesOf) -> BoxFuture<'_, Result<(), HostError>> {
        async move { self.enter(format!("clear_files {}", of.worker.pid)) }.boxed()
    }

    fn zip_files(&self, of: FilesOf) -> BoxFuture<'_, Result<ByteStream, HostError>> {
        async move {
            self.enter(format!("zip_files {}", of.worker.pid))?;
            Ok(chunked(pattern(2 * 1024 * 1024 + 5, 3)))
        }
        .boxed()
    }

    fn recording(&self, q: RecordingQuery) -> BoxFuture<'_, Result<RecordingPage, HostError>> {
        async move {
            self.enter(format!("recording {} {} {}", q.session_id, q.from, q.limit))?;
            Ok(recording_page(q.from))
        }
        .boxed()
    }
}

fn secret() -> ClusterSecret {
    ClusterSecret::from_bytes(vec![b'k'; 40]).unwrap()
}

/// A node serving a [`Fake`] on a loopback port; the server stops on drop.
struct Node {
    addr: SocketAddr,
    fake: Arc<Fake>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Node {
    /// Node `n2`, as the remotes of [`Node::remote`] call it.
    async fn start() -> Node {
        Node::with_verifier(NodeVerifier::new(secret(), "n2".into())).await
    }

    async fn with_verifier(verifier: NodeVerifier) -> Node {
        let fake = Arc::new(Fake::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = routes(fake.clone(), Arc::new(verifier));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Node { addr, fake, server }
    }

    fn remote(&self, secret: ClusterSecret) -> RemoteWorkerHost {
        let base = Url::parse(&format!("http://{}", self.addr)).unwrap();
        RemoteWorkerHost::new("n2".into(), base, secret).unwrap()
    }
}

fn spec() -> LaunchSpec {
    LaunchSpec {
        session_id: SessionId::random(),
        options: SessionOptions::default(),
        context: Some(context()),
        warm: true,
    }
}

#[tokio::test]
async fn a_launch_keeps_the_exact_worker_info() {
    let node = Node::start().await;
    let remote = node.remote(secret());
    assert_eq!(remote.launch(spec()).await.unwrap(), worker());
    assert_eq!(node.fake.calls(), ["launch warm=true storage=2097152"]);
}

#[tokio::test]
async fn every_plain_method_crosses_and_answers_as_it_was() {
    let node = Node::start().await;
    let remote = node.remote(secret());
    let w = worker();
    let claim = Claim {
        session_id: SessionId::random(),
        worker: w.clone(),
        options: SessionOptions::default(),
        context: None,
    };
    assert_eq!(remote.claim(claim).await.unwrap(), w);
    let stopped = remote.stop(w.clone()).await.unwrap();
    assert_eq!(stopped, Some(ProxyBytes { tx: 1, rx: 2 }));
    assert!(remote.probe(w.clone(), Duration::from_millis(1500)).await);
    let options = SessionOptions {
        timeout_ms: 5000,
        ..Default::default()
    };
    remote.resume(w.clone(), options).await.unwrap();
    assert_eq!(remote.context(w.clone()).await.unwrap(), context());
    assert_eq!(remote.pages(w.clone()).await.unwrap(), pages());
    assert_eq!(remote.preview(w.clone(), 640).await.unwrap().jpeg, "/9j/");
    let work = PageWork {
        url: "https://example.com/".into(),
        delay_ms: 0,
        scrape: None,
        screenshot: true,
        full_page: false,
        pdf: false,
    };
    let output = remote.act(w.clone(), work).await.unwrap();
    assert_eq!(output.screenshot, Some(pattern(100_000, 1)));
    let usage = remote.usage(vec![1, 2]).await;
    assert_eq!(usage.len(), 2);
    assert_eq!(usage[&2].mem_kib, 2048);
    remote.reap("r1".into()).await.unwrap();
    let moved = remote.quarantine("q1".into(), "odd".into()).await;
    assert_eq!(moved.unwrap(), "/quarantine/q1");
    let listing = remote.files(files_of()).await.unwrap();
    assert_eq!(listing.entries, [entry()]);
    assert_eq!(listing.downloads_stopped.as_deref(), Some("full"));
    let placed = remote
        .place_upload(files_of(), "u1".into(), "a/b".into())
        .await;
    assert_eq!(placed.unwrap(), entry());
    remote.discard_upload(files_of(), "u2".into()).await;
    remote.delete_file(files_of(), "a/b".into()).await.unwrap();
    remote.clear_files(files_of()).await.unwrap();
    let sid = SessionId::parse("0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69").unwrap();
    let query = crate::host::RecordingQuery {
        session_id: sid.clone(),
        from: 0,
        limit: 7,
    };
    let page = remote.recording(query).await.unwrap();
    let want = recording_page(0);
    let sent: Vec<&str> = want.events.iter().map(|e| e.get()).collect();
    let came: Vec<&str> = page.events.iter().map(|e| e.get()).collect();
    assert_eq!((came, page.next), (sent, Some(1)));
    assert_eq!(
        node.fake.calls(),
        [
            "claim 4242",
            "stop 4242",
            "probe 4242 1500",
            "resume 4242 5000",
            "context 4242",
            "pages 4242",
            "preview 4242 640",
            "act 4242 https://example.com/",
            "usage [1, 2]",
            "reap r1",
            "quarantine q1 odd",
            "files 4242",
            "place_upload 4242 u1 a/b",
            "discard_upload 4242 u2",
            "delete_file 4242 a/b",
            "clear_files 4242",
            "recording 0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69 0 7",
        ]
    );
}

#[tokio::test]
async fn each_error_kind_comes_back_with_its_message() {
    let node = Node::start().await;
    let remote = node.remote(secret());
    for kind in KINDS {
        let err = HostError::new(kind, format!("it failed as {kind:?} \u{e9}"));
        node.fake.fail(Some(err.clone()));
        assert_eq!(remote.launch(spec()).await.unwrap_err(), err);
        assert_eq!(remote.files(files_of()).await.unwrap_err(), err);
        assert_eq!(remote.zip_files(files_of()).await.err(), Some(err.clone()));
        let read = remote.read_file(files_of(), "x".into()).await;
        assert_eq!(read.err(), Some(err.clone()));
        let upload = remote
            .upload_file(files_of(), None, chunked(vec![1; 10]))
            .await;
        assert_eq!(upload.unwrap_err(), err);
    }
    node.fake
        .fail(Some(HostError::new(HostErrorKind::Retryable, "down")));
    assert!(!remote.probe(worker(), Duration::from_secs(1)).await);
    assert!(remote.usage(vec![1]).await.is_empty());
}

#[tokio::test]
async fn an_upload_of_a_few_mib_arrives_whole() {
    let node = Node::start().await;
    let remote = node.remote(secret());
    let data = pattern(5 * 1024 * 1024 + 3, 4);
    let size = data.len() as u64;
    let id = remote
        .upload_file(files_of(), Some(size), chunked(data.clone()))
        .await
        .unwrap();
    assert_eq!(id, format!("up-{size}"));
    assert!(*node.fake.uploaded.lock().unwrap() == data);
    assert_eq!(
        node.fake.calls(),
        [format!("upload_file 4242 Some({size})")]
    );
}

#[tokio::test]
async fn an_upload_refused_before_its_body_is_read_keeps_its_error() {
    let node = Node::start().await;
    let remote = node.remote(secret());
    let data = pattern(8 * 1024 * 1024, 5);
    let err = remote
        .upload_file(files_of(), Some(FAKE_QUOTA + 1), chunked(data))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HostError::new(HostErrorKind::TooLarge, "past the quota")
    );
}

#[tokio::test]
async fn an_upload_whose_body_fails_is_bad_input() {
    let node = Node::start().await;
    let remote = node.remote(secret());
    let failing = futures_util::stream::iter(vec![
        Ok(Bytes::from(vec![1; 1024])),
        Err(std::io::Error::other("client went away")),
    ])
    .boxed();
    let err = remote
        .upload_file(files_of(), None, failing)
        .await
        .unwrap_err();
    assert_eq!(err.kind, HostErrorKind::BadInput, "{err:?}");
    assert!(err.message.contains("client went away"), "{err:?}");
}

#[tokio::test]
async fn read_file_and_zip_streams_come_back_whole() {
    let node = Node::start().await;
    let remote = node.remote(secret());
    let read = remote.read_file(files_of(), entry().path).await.unwrap();
    assert_eq!(read.path, entry().path);
    assert_eq!(read.size, entry().size);
    assert_eq!(read.modified_ms, Some(entry().modified_ms));
    let body = collect(read.body).await.unwrap();
    assert!(body == pattern(entry().size as usize, 2));
    let zip = collect(remote.zip_files(files_of()).await.unwrap())
        .await
        .unwrap();
    assert!(zip == pattern(2 * 1024 * 1024 + 5, 3));
}

#[tokio::test]
async fn a_read_cut_short_on_the_node_ends_in_an_error() {
    let node = Node::start().await;
    let remote = node.remote(secret());
    let read = remote.read_file(files_of(), "broken".into()).await.unwrap();
    assert_eq!(read.modified_ms, None);
    assert!(collect(read.body).await.is_err());
}

#[tokio::test]
async fn without_the_secret_a_request_gets_401_and_reaches_nothing() {
    let node = Node::start().await;
    let other = ClusterSecret::from_bytes(vec![b'o'; 40]).unwrap();
    let wrong = node.remote(other);
    let err = wrong.launch(spec()).await.unwrap_err();
    assert_eq!(err.kind, HostErrorKind::Permanent, "{err:?}");
    assert!(
        err.message.contains("refused this node's signature"),
        "{err:?}"
    );
    let upload = wrong
        .upload_file(files_of(), None, chunked(vec![1; 10]))
        .await;
    assert_eq!(upload.unwrap_err().kind, HostErrorKind::Permanent);
    assert!(!wrong.probe(worker(), Duration::from_secs(1)).await);

    let client = reqwest::Client::new();
    let path = host_path("launch");
    let url = format!("http://{}{path}", node.addr);
    let bare = client.post(&url).json(&spec()).send().await.unwrap();
    assert_eq!(bare.status(), 401);
    let body: serde_json::Value = bare.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no x-bro-node-auth")
    );
    // Signed for another path.
    let body = serde_json::to_vec(&spec()).unwrap();
    let moved = signed_post(&node, "stop", &body, "n2", unix_now())
        .url(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 401);
    assert!(node.fake.calls().is_empty());
}

/// A signed POST of `body` to the route of `method` on `node`, signed for node `target` at
/// `at`. (`url` replaces the route; `send` sends it.)
fn signed_post(node: &Node, method: &str, body: &[u8], target: &str, at: u64) -> Post {
    let path = host_path(method);
    let signed = Signed {
        target,
        method: &http::Method::POST,
        path_and_query: &path,
        content: Content::of_body(body),
        files_of: None,
        min_size: None,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in sign(&secret(), &signed, at).unwrap() {
        headers.insert(name, value);
    }
    Post {
        url: format!("http://{}{path}", node.addr),
        headers,
        body: body.to_vec(),
    }
}

/// A request made by [`signed_post`], to send as it is or changed.
#[derive(Clone)]
struct Post {
    url: String,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Post {
    fn url(mut self, url: &str) -> Post {
        url.clone_into(&mut self.url);
        self
    }

    fn body(mut self, body: &[u8]) -> Post {
        self.body = body.to_vec();
        self
    }

    async fn send(self) -> reqwest::Result<reqwest::Response> {
        reqwest::Client::new()
            .post(self.url)
            .headers(self.headers)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(self.body)
            .send()
            .await
    }
}

/// The status and `message` of a refusal.
async fn refused(post: Post) -> (u16, String) {
    let response = post.send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (
        status,
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_replayed_request_is_refused_the_second_time() {
    let node = Node::start().await;
    let body = serde_json::to_vec(&spec()).unwrap();
    let post = signed_post(&node, "launch", &body, "n2", unix_now());
    let first = post.clone().send().await.unwrap();
    assert_eq!(first.status(), 200);
    let (status, message) = refused(post).await;
    assert_eq!(status, 401);
    assert!(message.contains("already used"), "{message}");
    assert_eq!(node.fake.calls().len(), 1);
}

#[tokio::test]
async fn a_valid_header_with_another_body_is_refused() {
    let node = Node::start().await;
    let body = serde_json::to_vec(&spec()).unwrap();
    let mut other = spec();
    other.warm = false;
    let other = serde_json::to_vec(&other).unwrap();
    let post = signed_post(&node, "launch", &body, "n2", unix_now()).body(&other);
    let (status, message) = refused(post).await;
    assert_eq!(status, 401);
    assert!(message.contains("does not match its signed"), "{message}");
    // The digest header changed to fit the new body: the MAC no longer matches.
    let mut post = signed_post(&node, "launch", &body, "n2", unix_now()).body(&other);
    let digest = Content::of_body(&other).header_value();
    post.headers
        .insert(CONTENT_SHA256_HEADER, digest.parse().unwrap());
    let (status, message) = refused(post).await;
    assert_eq!(status, 401);
    assert!(message.contains("signature does not match"), "{message}");
    assert!(node.fake.calls().is_empty());
}

#[tokio::test]
async fn a_header_signed_for_one_node_is_refused_by_another() {
    let node_b = Node::start().await;
    let body = serde_json::to_vec(&spec()).unwrap();
    let for_a = signed_post(&node_b, "launch", &body, "n1", unix_now());
    let (status, message) = refused(for_a).await;
    assert_eq!(status, 401);
    assert!(message.contains("signature does not match"), "{message}");
    // A remote for node n1 pointed at n2's address is refused as well.
    let base = Url::parse(&format!("http://{}", node_b.addr)).unwrap();
    let misdirected = RemoteWorkerHost::new("n1".into(), base, secret()).unwrap();
    let err = misdirected.launch(spec()).await.unwrap_err();
    assert!(
        err.message.contains("refused this node's signature"),
        "{err:?}"
    );
    assert!(node_b.fake.calls().is_empty());
}

#[tokio::test]
async fn an_upload_with_a_changed_header_is_refused() {
    let node = Node::start().await;
    let path = host_path("upload_file");
    let files_of = encode_files_of(&files_of()).unwrap();
    let signed = Signed {
        target: "n2",
        method: &http::Method::POST,
        path_and_query: &path,
        content: Content::Unsigned,
        files_of: Some(files_of.as_bytes()),
        min_size: Some(b"10"),
    };
    let upload = |of: &str, size: &str| {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in sign(&secret(), &signed, unix_now()).unwrap() {
            headers.insert(name, value);
        }
        headers.insert(FILES_OF_HEADER, of.parse().unwrap());
        headers.insert(MIN_SIZE_HEADER, size.parse().unwrap());
        Post {
            url: format!("http://{}{path}", node.addr),
            headers,
            body: vec![7; 10],
        }
    };
    let other_of = encode_files_of(&self::files_of()).unwrap();
    for (of, size) in [(other_of.as_str(), "10"), (files_of.as_str(), "11")] {
        let (status, message) = refused(upload(of, size)).await;
        assert_eq!(status, 401);
        assert!(message.contains("signature does not match"), "{message}");
    }
    assert!(node.fake.calls().is_empty());
    let good = upload(&files_of, "10").send().await.unwrap();
    assert_eq!(good.status(), 200);
    assert_eq!(node.fake.calls(), ["upload_file 4242 Some(10)"]);
    // A JSON route does not take an unsigned payload.
    let mut unsigned =
        upload(&files_of, "10").url(&format!("http://{}{}", node.addr, host_path("files")));
    unsigned.body = serde_json::to_vec(&self::files_of()).unwrap();
    let (status, _) = refused(unsigned).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_signature_older_or_newer_than_30_s_is_refused() {
    let node = Node::start().await;
    let body = serde_json::to_vec(&spec()).unwrap();
    for at in [
        unix_now() - MAX_SKEW_SECS - 5,
        unix_now() + MAX_SKEW_SECS + 5,
    ] {
        let (status, message) = refused(signed_post(&node, "launch", &body, "n2", at)).await;
        assert_eq!(status, 401);
        assert!(message.contains("more than 30 s away"), "{message}");
    }
    assert!(node.fake.calls().is_empty());
}

#[tokio::test]
async fn a_node_whose_replay_cache_is_full_answers_503_and_retryable() {
    let node = Node::with_verifier(NodeVerifier::with_capacity(secret(), "n2".into(), 1)).await;
    let remote = node.remote(secret());
    remote.launch(spec()).await.unwrap();
    let err = remote.launch(spec()).await.unwrap_err();
    assert_eq!(err.kind, HostErrorKind::Retryable, "{err:?}");
    assert!(err.message.contains("503"), "{err:?}");
    assert_eq!(node.fake.calls().len(), 1);
}

#[tokio::test]
async fn a_stopped_node_is_retryable_at_once() {
    let mut node = Node::start().await;
    let remote = node.remote(secret());
    node.server.abort();
    let _ = (&mut node.server).await;
    let started = Instant::now();
    let err = remote.launch(spec()).await.unwrap_err();
    assert_eq!(err.kind, HostErrorKind::Retryable, "{err:?}");
    assert!(err.message.starts_with("node n2 unreachable: "), "{err:?}");
    let upload = remote
        .upload_file(files_of(), None, chunked(vec![1; 10]))
        .await;
    assert_eq!(upload.unwrap_err().kind, HostErrorKind::Retryable);
    let read = remote.read_file(files_of(), "x".into()).await;
    assert_eq!(read.err().map(|e| e.kind), Some(HostErrorKind::Retryable));
    assert!(!remote.probe(worker(), Duration::from_secs(1)).await);
    assert!(remote.usage(vec![1]).await.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_base_that_is_not_plain_http_is_refused() {
    for base in [
        "https://h:1",
        "http://h:1/?q=1",
        "http://u:p@h:1",
        "unix:/run/bro",
    ] {
        let url = Url::parse(base).unwrap();
        assert!(
            RemoteWorkerHost::new("n".into(), url, secret()).is_err(),
            "{base}"
        );
    }
    let prefixed = Url::parse("http://h:1/api/").unwrap();
    assert!(RemoteWorkerHost::new("n".into(), prefixed, secret()).is_ok());
}

/// Timeouts short enough for a test to wait them out.
fn short() -> Timeouts {
    Timeouts {
        call: Duration::from_millis(500),
        probe_grace: Duration::from_millis(200),
        usage: Duration::from_millis(500),
        stream_idle: Duration::from_millis(500),
    }
}

/// A node that takes connections and then neither reads nor answers; it stops on drop.
struct BlackHole {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlackHole {
    async fn start() -> BlackHole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        BlackHole { addr, task }
    }

    fn remote(&self) -> RemoteWorkerHost {
        let base = Url::parse(&format!("http://{}", self.addr)).unwrap();
        RemoteWorkerHost::new("n3".into(), base, secret())
            .unwrap()
            .with_timeouts(short())
    }
}

#[tokio::test]
async fn a_node_that_stands_still_ends_every_call_in_time() {
    let hole = BlackHole::start().await;
    let remote = hole.remote();
    let started = Instant::now();
    let err = remote.launch(spec()).await.unwrap_err();
    assert_eq!(err.kind, HostErrorKind::Retryable, "{err:?}");
    assert!(!remote.probe(worker(), Duration::from_millis(100)).await);
    assert!(remote.usage(vec![1]).await.is_empty());
    let read = remote.read_file(files_of(), "x".into()).await;
    assert_eq!(read.err().map(|e| e.kind), Some(HostErrorKind::Retryable));
    let zip = remote.zip_files(files_of()).await;
    assert_eq!(zip.err().map(|e| e.kind), Some(HostErrorKind::Retryable));
    // More than the socket buffers hold, so the node's silence shows as bytes not taken.
    let mib = Bytes::from(vec![9; 1024 * 1024]);
    let endless = futures_util::stream::repeat_with(move || Ok(mib.clone()))
        .take(256)
        .boxed();
    let err = remote
        .upload_file(files_of(), None, endless)
        .await
        .unwrap_err();
    assert_eq!(err.kind, HostErrorKind::Retryable, "{err:?}");
    assert!(err.message.contains("stood still"), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_uploader_is_not_taken_for_a_stalled_node() {
    let node = Node::start().await;
    let remote = node.remote(secret()).with_timeouts(short());
    let slow = futures_util::stream::iter(0..3u8)
        .then(|i| async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            Ok(Bytes::from(vec![i; 10]))
        })
        .boxed();
    let id = remote.upload_file(files_of(), None, slow).await.unwrap();
    assert_eq!(id, "up-30");
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
