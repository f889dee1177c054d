//! The one door to browsers: [`WorkerHost`].
//!
//! Everything the orchestrator, the API and the supervisor do to a browser or its files goes
//! through this trait: launch, claim, stop, probe, reap, the session's context, its pages, a
//! preview, quick actions, files and usage figures. Today its one implementation runs the
//! browsers as child processes of this daemon (`worker::LocalWorkerHost`); with several
//! machines, a remote host will forward the same calls to the daemon of the node that owns the
//! session. So every input and output here is plain data that serializes (no borrowed
//! handles, no paths the caller opens itself), and errors carry a [`HostErrorKind`] rather than
//! a local error type.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use crate::protocol::cast::{CastInput, CastOutput, CastSpec};
pub use crate::protocol::control::Preview;
pub use crate::protocol::live::BrowserPages;
use crate::protocol::session::{ProxyBytes, SessionId, SessionOptions, WorkerInfo};
use crate::protocol::steel::SessionContext;

/// What kind of failure a host reports: what decides a retry and an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostErrorKind {
    /// The browser refused what the client sent (a context it would not take, a URL that did
    /// not load): the client's to fix, and no retry helps.
    Refused,
    /// No retry can help (the Chromium binary is missing, a process survives SIGKILL, an id
    /// that is not one of bro's session dirs).
    Permanent,
    /// It may work when tried again (a browser not ready yet, a lost CDP connection).
    Retryable,
    /// What the client named is not there (a file, or the files of a session that ended).
    NotFound,
    /// The client sent what no host takes (a file name that would leave the files dir).
    BadInput,
    /// It does not fit in the session's files quota.
    TooLarge,
    /// The host does as much of this at once as it will: it may work when tried again.
    Busy,
}

/// A failure of a [`WorkerHost`] call, as it would cross the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    pub kind: HostErrorKind,
    pub message: String,
}

impl HostError {
    pub fn new(kind: HostErrorKind, message: impl Into<String>) -> Self {
        HostError {
            kind,
            message: message.into(),
        }
    }

    /// True when no retry can help.
    pub fn is_permanent(&self) -> bool {
        !matches!(self.kind, HostErrorKind::Retryable | HostErrorKind::Busy)
    }
}

/// What to launch: the session id, its options, and a context to put in first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub session_id: SessionId,
    pub options: SessionOptions,
    #[serde(default)]
    pub context: Option<SessionContext>,
    /// A warm pool browser: no session yet, so the supervisor does not watch it until a
    /// session [claims](WorkerHost::claim) it.
    #[serde(default)]
    pub warm: bool,
}

/// A warm browser taken by a session: [`WorkerHost::claim`]'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub session_id: SessionId,
    pub worker: WorkerInfo,
    pub options: SessionOptions,
    pub context: Option<SessionContext>,
}

/// What a host tells the supervisor of its node about its browsers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WorkerEvent {
    /// A browser is up for session `session_id`: watch it.
    Launched {
        session_id: SessionId,
        worker: WorkerInfo,
        /// Boxed: the options are most of the event's size.
        options: Box<SessionOptions>,
    },
    /// A browser exited while it was not being stopped.
    Exited(WorkerExit),
    /// A browser was stopped on purpose: stop watching it.
    Stopped { pid: u32 },
}

/// A browser that exited while it was not being stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerExit {
    pub session_id: SessionId,
    pub pid: u32,
    pub reason: String,
    /// Exited with status 0: closed on purpose (a client's `Browser.close`).
    pub clean: bool,
}

/// A quick action: load `url` in a new tab, wait `delay_ms`, then take what is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageWork {
    pub url: String,
    pub delay_ms: u64,
    /// Scrape the page in these formats (`html`, `markdown`, …).
    pub scrape: Option<Vec<String>>,
    /// A JPEG screenshot; `full_page` for all of it, not only the viewport.
    pub screenshot: bool,
    pub full_page: bool,
    pub pdf: bool,
}

/// What a quick action took from the page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PageOutput {
    /// HTTP status of the page's document (0 when it had none, as for `data:`).
    pub status_code: u16,
    /// The scrape: content per format, metadata and links.
    pub scraped: Option<serde_json::Value>,
    pub screenshot: Option<Vec<u8>>,
    pub pdf: Option<Vec<u8>>,
}

/// Memory, CPU time and process count of one browser's process group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub mem_kib: u64,
    pub cpu_ticks: u64,
    pub processes: u32,
}

/// A session dir on a host, as the supervisor judges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDir {
    /// The dir's name: a session or warm browser id.
    pub id: String,
    pub owner: DirOwner,
    /// A launch or stop of it runs, or it is too young to judge: leave it alone.
    pub busy: bool,
}

/// Whom a session dir says it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirOwner {
    /// It serves this session.
    Session(String),
    /// A warm browser no session has claimed: nothing in it was ever a client's.
    Warm,
    /// It does not say (no or an unreadable `worker.json`): the session of its name, if any.
    Unknown,
}

/// Bytes on their way to or from a host's disk. Across a network it is an HTTP body.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Whose files a file call is about: the session, and the browser serving it, whose dir holds
/// them (a warm browser's dir is not named after the session it serves).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilesOf {
    pub session_id: SessionId,
    pub worker: WorkerInfo,
}

/// One file of a session's files dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the files dir, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Unix milliseconds.
    pub modified_ms: u64,
}

/// A session's files, newest first, and where they stand against its files quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileListing {
    /// Uploads still arriving are left out.
    pub entries: Vec<FileEntry>,
    /// Bytes in use, uploads still arriving and downloads in progress included.
    pub used: u64,
    /// Bytes the session's files may take.
    pub quota: u64,
    /// Why the browser's downloads are refused, while they are.
    pub downloads_stopped: Option<String>,
}

/// One file being read: what it is, then its bytes. Across a network the metadata would be
/// headers and the body the HTTP body, so it is not serialized as a whole.
pub struct FileRead {
    /// The file's name as the host resolved it (relative, `/`-separated).
    pub path: String,
    /// Bytes the body carries: a file still growing (a download) is cut there.
    pub size: u64,
    /// Unix milliseconds, when the file system knows.
    pub modified_ms: Option<u64>,
    pub body: ByteStream,
}

/// Which events of a session's recording to read: [`WorkerHost::recording`]'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingQuery {
    pub session_id: SessionId,
    /// A byte offset: 0, or a previous page's [`RecordingPage::next`].
    pub from: u64,
    /// The most events to return.
    pub limit: u32,
}

/// One page of a session's recording.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordingPage {
    /// The rrweb events as recorded, each with the `pageId` of its tab.
    pub events: Vec<Box<serde_json::value::RawValue>>,
    /// Where the next page starts, when more events are there now.
    pub next: Option<u64>,
}

/// Finds the [`WorkerHost`] of a node: this daemon's own for its node, a remote one (which
/// forwards each call to that node's daemon) for another node of the cluster.
pub trait HostRouter: Send + Sync + 'static {
    /// The host of `node`; an error when no node of that name is known here (retryable: a
    /// node that just joined may not be known yet).
    fn of(&self, node: &str) -> Result<std::sync::Arc<dyn WorkerHost>, HostError>;
}

/// The router of a single machine: one node, one host.
pub struct OneNode {
    pub node: String,
    pub host: std::sync::Arc<dyn WorkerHost>,
}

impl HostRouter for OneNode {
    fn of(&self, node: &str) -> Result<std::sync::Arc<dyn WorkerHost>, HostError> {
        if node == self.node {
            Ok(std::sync::Arc::clone(&self.host))
        } else {
            Err(HostError::new(
                HostErrorKind::Permanent,
                format!(
                    "node {node} is not this node ({}), and this daemon runs alone (no [cluster] in its config)",
                    self.node
                ),
            ))
        }
    }
}

/// Launches, stops and reaches into the browsers of one node. Launch and stop are idempotent
/// per session id.
pub trait WorkerHost: Send + Sync + 'static {
    /// Starts the session's browser and waits until its CDP endpoint answers. A leftover
    /// browser of the same session (from a launch retried after a crash) is killed first, so a
    /// retry never leaves two browsers.
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<WorkerInfo, HostError>>;

    /// Hands a warm browser to a session: checks that it still answers, puts the session's
    /// context in, and watches it as the session's from now on. An error means the browser is
    /// unusable; the caller stops it and launches cold.
    fn claim(&self, claim: Claim) -> BoxFuture<'_, Result<WorkerInfo, HostError>>;

    /// Stops the browser and removes the session directory. Only a browser that is provably
    /// the session's is killed. Returns the bytes its proxy hop carried, if it had one.
    fn stop(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<Option<ProxyBytes>, HostError>>;

    /// True when the browser's CDP endpoint answers within `timeout`. No process check: a
    /// caller that needs one pairs it with [`WorkerHost::alive`] (the supervisor checks both
    /// for every browser twice a second, so neither does the other's work).
    fn probe(&self, worker: WorkerInfo, timeout: Duration) -> BoxFuture<'_, bool>;

    /// True when the browser's process runs (same pid and start time); no CDP call.
    fn alive(&self, worker: &WorkerInfo) -> bool;

    /// Takes up a browser this host did not launch in this life (adopted after a daemon
    /// restart): reopens its proxy hop, on the port it was launched with.
    fn resume(
        &self,
        worker: WorkerInfo,
        options: SessionOptions,
    ) -> BoxFuture<'_, Result<(), HostError>>;

    /// The browser's cookies and the storage of its pages.
    fn context(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<SessionContext, HostError>>;

    /// The browser's pages and version.
    fn pages(&self, worker: WorkerInfo) -> BoxFuture<'_, Result<BrowserPages, HostError>>;

    /// A [`Preview`] of the browser's first page, over a connection of the host's own (not
    /// client traffic: it neither keeps the session from idling nor shows as a client).
    fn preview(
        &self,
        worker: WorkerInfo,
        max_width: u32,
    ) -> BoxFuture<'_, Result<Preview, HostError>>;

    /// A live viewer's socket: screencasts `spec.page` (or, without one, lists the session's
    /// tabs as they change) and hands the viewer's `input` to the page, over a connection of
    /// the host's own (not client traffic: it does not keep the session from idling).
    /// Dropping the returned stream, or ending `input`, stops it; it ends by itself when the
    /// page or the browser goes. Past the sockets a session may have it is
    /// [`HostErrorKind::Busy`]; a page that is not there is [`HostErrorKind::NotFound`].
    fn screencast(
        &self,
        spec: CastSpec,
        input: BoxStream<'static, CastInput>,
    ) -> BoxFuture<'_, Result<BoxStream<'static, CastOutput>, HostError>>;

    /// Runs a quick action in a new tab of the browser; the tab is closed afterwards. A page
    /// that does not load is [`HostErrorKind::Refused`].
    fn act(
        &self,
        worker: WorkerInfo,
        work: PageWork,
    ) -> BoxFuture<'_, Result<PageOutput, HostError>>;

    /// The figures of each browser named by its pid (the leader of its process group).
    fn usage(&self, pids: Vec<u32>) -> BoxFuture<'_, HashMap<u32, Usage>>;

    /// Every session dir on this host, for the supervisor to judge.
    fn session_dirs(&self) -> Vec<SessionDir>;

    /// True while a launch or stop of `id` runs on this host.
    fn is_busy(&self, id: &str) -> bool;

    /// True while the browser `pid` is being stopped on purpose.
    fn is_stopping(&self, pid: u32) -> bool;

    /// Kills whatever browser the session dir `id` records and removes the dir: for dirs whose
    /// session is provably over.
    fn reap(&self, id: String) -> BoxFuture<'_, Result<(), HostError>>;

    /// Stops the browser of dir `id` (only if provably its) and moves the dir aside into the
    /// host's quarantine with a note saying why; where it went.
    fn quarantine(&self, id: String, reason: String) -> BoxFuture<'_, Result<String, HostError>>;

    /// Kills the browsers whose session dir is gone unless `keep` names their id, and removes
    /// browser temp dirs whose session dir is gone; how many of both.
    fn sweep_strays(&self, keep: Vec<String>) -> usize;

    /// The pids of the browsers among `workers` that their memory limit stopped or that are
    /// over it (an OOM kill in their cgroup, or their measured PSS past it): their sessions
    /// end with reason `memory limit`. A host that enforces no limits has none.
    fn over_limit(&self, workers: Vec<WorkerInfo>) -> BoxFuture<'_, Vec<u32>> {
        let _ = workers;
        Box::pin(async { Vec::new() })
    }

    /// The files of session `of`. A session that ended is [`HostErrorKind::NotFound`].
    fn files(&self, of: FilesOf) -> BoxFuture<'_, Result<FileListing, HostError>>;

    /// Opens the file `path` (a client's relative name) of session `of` for
    /// reading. A name that would leave the files dir, or goes through a symlink, is
    /// [`HostErrorKind::BadInput`].
    fn read_file(&self, of: FilesOf, path: String) -> BoxFuture<'_, Result<FileRead, HostError>>;

    /// Writes `body` under a hidden temporary name into the files of session `of`, within
    /// its files quota, and returns that name's id for
    /// [`place_upload`](WorkerHost::place_upload). Two steps because a multipart upload may
    /// name the file only after its bytes. `min_size`, when the client announced that many
    /// bytes, is refused at once if it cannot fit ([`HostErrorKind::TooLarge`], as is a body
    /// that grows past the quota); the body is not read before the checks pass. An error in
    /// `body` ends the upload and removes what was written.
    fn upload_file(
        &self,
        of: FilesOf,
        min_size: Option<u64>,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<String, HostError>>;

    /// Moves the upload `upload` to the client's name `path` (directories on the way made,
    /// a file there replaced); the upload is removed when it cannot be placed.
    fn place_upload(
        &self,
        of: FilesOf,
        upload: String,
        path: String,
    ) -> BoxFuture<'_, Result<FileEntry, HostError>>;

    /// Removes the upload `upload` that will not be placed.
    fn discard_upload(&self, of: FilesOf, upload: String) -> BoxFuture<'_, ()>;

    /// Deletes the file `path` of session `of`; the browser's downloads resume if
    /// they were stopped and the files fit again.
    fn delete_file(&self, of: FilesOf, path: String) -> BoxFuture<'_, Result<(), HostError>>;

    /// Deletes every file of session `of` (downloads resume, as above).
    fn clear_files(&self, of: FilesOf) -> BoxFuture<'_, Result<(), HostError>>;

    /// A zip of every file of session `of`, written as the caller reads it. The
    /// host writes a few at once; past that it is [`HostErrorKind::Busy`].
    fn zip_files(&self, of: FilesOf) -> BoxFuture<'_, Result<ByteStream, HostError>>;

    /// A page of the recording of a session this host ran (live, or ended within the
    /// retention period): empty when it recorded nothing. A `from` that is not the start of
    /// an event is [`HostErrorKind::BadInput`].
    fn recording(&self, query: RecordingQuery) -> BoxFuture<'_, Result<RecordingPage, HostError>>;
}
