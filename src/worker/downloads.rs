//! The files quota for the browser's downloads. Chromium saves downloads into the session's
//! files dir (the profile's `download.default_directory`, see `chromium::write_preferences`);
//! nothing in Chromium bounds how much a page downloads there, so a page downloading in a loop
//! could fill the disk.
//!
//! [`watch`] keeps one browser-level CDP connection per running browser. On it bro asks for
//! download events (`Browser.setDownloadBehavior` with `behavior: "default"`, which leaves
//! Chromium's own behaviour, and `eventsEnabled`), measures the files dir every
//! [`CHECK_BUSY`] while a download runs, and once the dir holds more than the quota:
//! denies new downloads in every browser context, cancels the running ones
//! (`Browser.cancelDownload`), removes what is left of the `.crdownload` files of the ones it
//! cancelled (named from their `downloadWillBegin` event; nothing else is removed, uploads
//! never), logs a warning and writes [`STOPPED_FILE`] beside the files dir, which the files
//! listing shows.
//! Deleting files through the API removes that file ([`clear_stopped`]); downloads then resume
//! if the files dir is back under the quota, and stay stopped (the file written anew) if not.
//!
//! The connection must stay open while downloads are denied: Chromium puts back the default
//! behaviour of a context when the CDP client that changed it disconnects
//! (`BrowserHandler::Disable`). A daemon that restarts reads [`STOPPED_FILE`] and denies again.
//! A download under way before the watcher connected (within [`SCAN_EVERY`] of the browser's
//! start, or across a daemon restart) sends no events, so it cannot be cancelled; new ones are
//! still denied, but it runs to its end and its partial file is left in place (removing it
//! would only hide it: Chromium keeps writing into the unlinked file), visible and counted.
//!
//! Refused downloads are logged at most once per [`LOG_REFUSED_EVERY`] per session, with a
//! count and the URL cut to [`LOG_URL_CHARS`] (a page can refuse downloads in a loop, and a
//! `data:` URL can be megabytes).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::browser::{
    BrowserContextId, CancelDownloadParams, DownloadProgressState, EventDownloadProgress,
    EventDownloadWillBegin, SetDownloadBehaviorBehavior as Behavior, SetDownloadBehaviorParams,
};
use chromiumoxide::cdp::browser_protocol::target::GetBrowserContextsParams;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::format_size;
use crate::protocol::session::WorkerInfo;
use crate::worker::cdp::{Cdp, CdpError, Event};
use crate::worker::{chromium, files, page, process};

/// In a session dir, beside `files/`: why its downloads are stopped ([`Stopped`]).
pub const STOPPED_FILE: &str = "downloads-stopped.json";

/// How often the sessions dir is scanned for browsers to watch.
const SCAN_EVERY: Duration = Duration::from_millis(250);
/// How often the files dir is measured while a download runs: a download at 1 GB/s passes
/// the quota by at most about 100 MB before it is cancelled.
pub const CHECK_BUSY: Duration = Duration::from_millis(100);
/// How often it is measured otherwise (a download that started before the watcher connected
/// sends no events).
const CHECK_IDLE: Duration = Duration::from_secs(1);
/// How long a browser whose watcher ended (it closed, or did not answer yet) waits before the
/// next try.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// At most one log line per session this often about refused downloads.
const LOG_REFUSED_EVERY: Duration = Duration::from_secs(60);
/// Characters of a URL that go into the log.
const LOG_URL_CHARS: usize = 200;

/// Why a session's downloads are stopped, as [`STOPPED_FILE`] holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    /// The quota in bytes.
    pub quota: u64,
    /// Bytes in the files dir once the partial downloads were removed.
    pub used: u64,
    /// For the user: what happened and what to do.
    pub message: String,
}

/// The reason the downloads of the session in `session_dir` are stopped, if they are.
pub fn stopped(session_dir: &Path) -> Option<Stopped> {
    let bytes = std::fs::read(session_dir.join(STOPPED_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Lets the watcher of the session in `session_dir` resume downloads: called when the client
/// deleted files. The watcher resumes them at its next check if the files fit the quota.
pub fn clear_stopped(session_dir: &Path) {
    let _ = std::fs::remove_file(session_dir.join(STOPPED_FILE));
}

/// Watches every browser under `sessions_dir` until `stop`: one CDP connection each, opened
/// when its dir shows a running browser, closed when the browser or its dir goes.
pub async fn watch(sessions_dir: PathBuf, quota: u64, stop: CancellationToken) {
    // Per session dir: its watcher, and when that watcher ended.
    let mut watchers: HashMap<PathBuf, (JoinHandle<()>, Option<Instant>)> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(SCAN_EVERY) => {}
        }
        for (task, ended) in watchers.values_mut() {
            if ended.is_none() && task.is_finished() {
                *ended = Some(Instant::now());
            }
        }
        let skip: HashSet<PathBuf> = watchers
            .iter()
            .filter(|(_, (_, ended))| ended.is_none_or(|t| t.elapsed() < RETRY_AFTER))
            .map(|(dir, _)| dir.clone())
            .collect();
        let root = sessions_dir.clone();
        let Ok((dirs, found)) = tokio::task::spawn_blocking(move || scan(&root, &skip)).await
        else {
            continue;
        };
        watchers.retain(|dir, (task, _)| {
            let keep = dirs.contains(dir);
            if !keep {
                task.abort();
            }
            keep
        });
        for worker in found {
            let task = tokio::spawn(guard(worker.clone(), quota));
            if let Some((old, _)) = watchers.insert(worker.dir.clone(), (task, None)) {
                old.abort();
            }
        }
    }
    for (task, _) in watchers.into_values() {
        task.abort();
    }
}

/// The session dirs under `root`, and the running browsers of those not in `skip`.
fn scan(root: &Path, skip: &HashSet<PathBuf>) -> (HashSet<PathBuf>, Vec<WorkerInfo>) {
    let dirs: HashSet<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    let found = dirs
        .iter()
        .filter(|dir| !skip.contains(*dir))
        .filter_map(|dir| crate::worker::worker_in(dir))
        .filter(|w| process::is_alive(w.pid, w.start_time))
        .collect();
    (dirs, found)
}

/// Watches one browser until it closes its CDP connection.
async fn guard(worker: WorkerInfo, quota: u64) {
    let session_id = worker
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let result = async {
        let cdp = Cdp::connect_lean(&page::browser_url(&worker)).await?;
        Downloads {
            cdp,
            session_id: session_id.clone(),
            files: chromium::files_dir(&worker.dir),
            dir: worker.dir.clone(),
            quota,
            running: HashMap::new(),
            refused: RefusalLog::default(),
            stopped: false,
            denied: HashSet::new(),
        }
        .run()
        .await
    }
    .await;
    if let Err(err) = result {
        tracing::debug!(session_id = %session_id, %err, "download watcher ended");
    }
}

/// The watcher of one browser's downloads.
struct Downloads {
    cdp: Cdp,
    session_id: String,
    files: PathBuf,
    /// The session dir, where [`STOPPED_FILE`] goes.
    dir: PathBuf,
    quota: u64,
    /// The downloads under way: guid → the file name Chromium suggested.
    running: HashMap<String, String>,
    /// Refused downloads not logged yet.
    refused: RefusalLog,
    /// Downloads are stopped.
    stopped: bool,
    /// Browser contexts (besides the default one) whose downloads are denied.
    denied: HashSet<BrowserContextId>,
}

impl Downloads {
    async fn run(mut self) -> Result<(), CdpError> {
        self.set_behavior(Behavior::Default).await?;
        let files = self.files.clone();
        let _ = tokio::task::spawn_blocking(move || files::remove_stale_uploads(&files)).await;
        if stopped(&self.dir).is_some() {
            self.stopped = true;
            self.set_behavior(Behavior::Deny).await?;
        }
        let mut next_check = Instant::now();
        loop {
            let wait = next_check.saturating_duration_since(Instant::now());
            match self.cdp.next_event(None, wait).await {
                Ok(event) => {
                    if self.on_event(&event).await? {
                        next_check = next_check.min(Instant::now() + CHECK_BUSY);
                    }
                }
                Err(CdpError::Timeout(_)) => {}
                Err(err) => return Err(err),
            }
            if Instant::now() >= next_check {
                self.check().await?;
                let every = if self.running.is_empty() {
                    CHECK_IDLE
                } else {
                    CHECK_BUSY
                };
                next_check = Instant::now() + every;
            }
        }
    }

    /// Follows the downloads under way; true when one began.
    async fn on_event(&mut self, event: &Event) -> Result<bool, CdpError> {
        if let Some(begin) = event.decode::<EventDownloadWillBegin>() {
            if self.stopped {
                if let Some(count) = self.refused.note(Instant::now()) {
                    let url = shorten(&begin.url);
                    tracing::info!(session_id = %self.session_id, %url, refused_since_last_line = count, "download refused: the files quota is used up");
                }
                self.cancel(&begin.guid).await?;
            } else {
                self.running.insert(begin.guid, begin.suggested_filename);
            }
            return Ok(true);
        }
        if let Some(progress) = event.decode::<EventDownloadProgress>()
            && progress.state != DownloadProgressState::InProgress
        {
            self.running.remove(&progress.guid);
        }
        Ok(false)
    }

    /// Measures the files dir; stops downloads past the quota, resumes them once the client
    /// deleted files ([`clear_stopped`]) and the rest fits.
    async fn check(&mut self) -> Result<(), CdpError> {
        let used = self.usage().await;
        if !self.stopped {
            return if used > self.quota {
                self.stop(used).await
            } else {
                Ok(())
            };
        }
        let cleared = !tokio::fs::try_exists(self.dir.join(STOPPED_FILE))
            .await
            .unwrap_or(true);
        match (cleared, used > self.quota) {
            (true, false) => self.resume(used).await,
            // Files were deleted, but not enough.
            (true, true) => self.stop(used).await,
            // Contexts a client created since are denied too.
            (false, _) => self.set_behavior(Behavior::Deny).await,
        }
    }

    async fn stop(&mut self, used: u64) -> Result<(), CdpError> {
        self.set_behavior(Behavior::Deny).await?;
        let mut cancelled = Vec::new();
        for (guid, name) in std::mem::take(&mut self.running) {
            self.cancel(&guid).await?;
            cancelled.extend(files::partial_download(&self.files, &name));
        }
        // Chromium removes a cancelled download's partial file itself; this is in case it did
        // not. Only regular files (uploads cannot take these names).
        let _ = tokio::task::spawn_blocking(move || {
            for partial in cancelled {
                if std::fs::symlink_metadata(&partial).is_ok_and(|m| m.is_file()) {
                    let _ = std::fs::remove_file(partial);
                }
            }
        })
        .await;
        let left = self.usage().await;
        let message = format!(
            "downloads stopped: this session's files reached {} of its {} quota \
             (--files-quota); delete files to resume downloads",
            format_size(used),
            format_size(self.quota)
        );
        tracing::warn!(session_id = %self.session_id, used, quota = self.quota, "{message}");
        let record = Stopped {
            quota: self.quota,
            used: left,
            message,
        };
        let path = self.dir.join(STOPPED_FILE);
        let _ = tokio::fs::write(&path, serde_json::to_vec(&record).unwrap_or_default()).await;
        self.stopped = true;
        Ok(())
    }

    async fn resume(&mut self, used: u64) -> Result<(), CdpError> {
        self.set_behavior(Behavior::Default).await?;
        self.denied.clear();
        self.stopped = false;
        tracing::info!(session_id = %self.session_id, used, quota = self.quota, "files were deleted: downloads resume");
        Ok(())
    }

    /// Bytes in the files dir (0 when it is gone).
    async fn usage(&self) -> u64 {
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || files::usage(&files))
            .await
            .unwrap_or_default()
    }

    /// Sets the download behaviour of the default context and, for `deny`, of every other one
    /// (a client may create contexts). Events stay on: each call sets them anew.
    async fn set_behavior(&mut self, behavior: Behavior) -> Result<(), CdpError> {
        let deny = behavior == Behavior::Deny;
        let mut contexts = vec![None];
        if deny {
            contexts.extend(self.contexts().await?.into_iter().map(Some));
        } else {
            contexts.extend(self.denied.drain().map(Some).collect::<Vec<_>>());
        }
        for context in contexts {
            if deny
                && let Some(id) = &context
                && self.denied.contains(id)
            {
                continue;
            }
            let params = SetDownloadBehaviorParams {
                behavior: behavior.clone(),
                browser_context_id: context.clone(),
                download_path: None,
                events_enabled: Some(true),
            };
            match self.cdp.call(params).await {
                Ok(_) => {
                    if let Some(id) = context
                        && deny
                    {
                        self.denied.insert(id);
                    }
                }
                // A context closed meanwhile; the default one always answers.
                Err(CdpError::Call { .. }) if context.is_some() => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Cancels a download in whichever context it runs (the event does not say).
    async fn cancel(&mut self, guid: &str) -> Result<(), CdpError> {
        let mut contexts = vec![None];
        contexts.extend(self.contexts().await?.into_iter().map(Some));
        for context in contexts {
            let params = CancelDownloadParams {
                guid: guid.to_string(),
                browser_context_id: context,
            };
            match self.cdp.call(params).await {
                Ok(_) => return Ok(()),
                Err(CdpError::Call { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The browser contexts a client created (the default one is not listed).
    async fn contexts(&mut self) -> Result<Vec<BrowserContextId>, CdpError> {
        let reply = self.cdp.call(GetBrowserContextsParams::default()).await?;
        Ok(reply.browser_context_ids)
    }
}

/// Counts refused downloads and says when to log them.
#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<Instant>,
    /// Refused since the last line.
    unlogged: u64,
}

impl RefusalLog {
    /// One more refused at `now`: `Some(how many were refused since the last line, this one
    /// included)` when a line is due.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < LOG_REFUSED_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// `url` cut to [`LOG_URL_CHARS`] characters.
fn shorten(url: &str) -> String {
    match url.char_indices().nth(LOG_URL_CHARS) {
        Some((end, _)) => format!("{}… ({} bytes)", &url[..end], url.len()),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stopped_record_is_read_and_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(stopped(tmp.path()), None);
        let record = Stopped {
            quota: 1 << 20,
            used: 3 << 19,
            message: "downloads stopped".into(),
        };
        std::fs::write(
            tmp.path().join(STOPPED_FILE),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        assert_eq!(stopped(tmp.path()), Some(record));
        clear_stopped(tmp.path());
        assert_eq!(stopped(tmp.path()), None);
    }

    #[test]
    fn only_dirs_with_a_running_browser_are_watched() {
        let tmp = tempfile::tempdir().unwrap();
        let starting = tmp.path().join("starting");
        let dead = tmp.path().join("dead");
        for dir in [&starting, &dead] {
            std::fs::create_dir_all(dir.join("profile")).unwrap();
        }
        // A pid past any pid_max: no such process.
        std::fs::write(
            dead.join("worker.json"),
            r#"{"pid":4294967295,"start_time":1}"#,
        )
        .unwrap();
        std::fs::write(
            dead.join("profile/DevToolsActivePort"),
            "9\n/devtools/browser/x\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("a-file"), "").unwrap();
        let (dirs, found) = scan(tmp.path(), &HashSet::new());
        assert_eq!(dirs, HashSet::from([starting, dead]));
        assert!(found.is_empty());
    }

    #[test]
    fn refused_downloads_are_logged_rarely_and_short() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.note(t0), Some(1));
        for i in 1..1000 {
            assert_eq!(log.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.note(t0 + LOG_REFUSED_EVERY), Some(1000));
        let data = format!("data:text/plain,{}", "é".repeat(1 << 20));
        let short = shorten(&data);
        assert!(short.chars().count() < LOG_URL_CHARS + 30, "{short}");
        assert!(short.starts_with("data:text/plain,é"));
        assert_eq!(shorten("https://a/b"), "https://a/b");
    }
}
