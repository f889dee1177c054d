//! Recordings on disk: the rrweb events of a session, one JSON object a line, in
//! `<data dir>/recordings/<session id>.ndjson` (0600 in a 0700 dir), apart from the session
//! dir, which goes when the session stops. A recording stays after its session for the
//! daemon's `retention` and is removed by [`RecordingStore::sweep`] after it. All of them
//! together stay within the store's quota (`recordings_quota`): when a recording starts, and at
//! each sweep, the ones last written longest ago are removed until the rest fit, never one
//! still being written nor one of a session that is not over (the caller says which: a
//! session dir still there, e.g. one not yet resumed after a `--keep-sessions` restart, or
//! one whose recorder ended early).
//!
//! A page decides what it records, so every bound is here: a line is at most
//! [`MAX_EVENT_BYTES`], a recording at most the store's cap (`record_max_bytes`); the line
//! that would pass the cap is replaced by a [`CUT_TAG`] marker and nothing is written after
//! it. A line is checked to be one JSON object with a numeric `type` and `timestamp`, its
//! `data` kept as the page wrote it (never built into a tree).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::host::RecordingPage;
use crate::protocol::session::SessionId;

/// The largest event a page may record, in bytes: a bigger one is dropped. Every event the
/// page's emitter lets through fits (its [`EMIT_MAX_CHARS`](super::agent::EMIT_MAX_CHARS)
/// UTF-16 units take at most 3 bytes each in UTF-8), so a page is never cut here without the
/// note of the drop the emitter records.
pub const MAX_EVENT_BYTES: usize = 3 * super::agent::EMIT_MAX_CHARS;
/// The rrweb custom-event tag of the last line of a recording that reached its cap.
pub const CUT_TAG: &str = "bro.recording-cut";
/// The rrweb custom-event tag of the last line of a recording whose page agent lost the
/// browser while it lived on: nothing after it was recorded.
pub const STOPPED_TAG: &str = "bro.recording-stopped";
/// The longest line a reader takes: any the writer writes fits; a longer one is skipped.
const MAX_LINE_BYTES: u64 = MAX_EVENT_BYTES as u64 + 1024;
/// Room kept below the cap for the [`CUT_TAG`] line.
const CUT_RESERVE: u64 = 256;
/// The most events one read returns, and what it returns when the caller does not say.
pub const MAX_READ_EVENTS: usize = 10_000;
/// The most bytes of events one read returns (a single bigger event is returned alone).
pub const MAX_READ_BYTES: usize = 16 << 20;

/// Where a session's recording is kept, how large it may grow.
#[derive(Debug, Clone)]
pub struct RecordingStore {
    dir: PathBuf,
    max_bytes: u64,
    /// The most bytes all recordings together may hold.
    quota: u64,
    /// The sessions whose recording has a [`Recorder`] open (how many): never evicted. Held
    /// while a file is checked and removed, so a writer starting then finds it gone, never
    /// writes into a removed file.
    writing: Writing,
}

/// How many recorders each recording has open.
type Writing = Arc<Mutex<HashMap<SessionId, usize>>>;

/// One count in [`Writing`], given back at drop.
struct WritingMark {
    writing: Writing,
    id: SessionId,
}

impl WritingMark {
    fn new(writing: &Writing, id: &SessionId) -> Self {
        *lock(writing).entry(id.clone()).or_default() += 1;
        WritingMark {
            writing: Arc::clone(writing),
            id: id.clone(),
        }
    }
}

impl Drop for WritingMark {
    fn drop(&mut self) {
        let mut writing = lock(&self.writing);
        if let Some(n) = writing.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                writing.remove(&self.id);
            }
        }
    }
}

/// An rrweb event as a page sends it: checked, its `data` left as written.
#[derive(Deserialize)]
struct PageEvent<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(borrow)]
    data: &'a RawValue,
    timestamp: serde_json::Number,
}

/// A checked event as it is stored, with the page it came from.
#[derive(Serialize)]
struct StoredEvent<'a> {
    #[serde(rename = "type")]
    kind: u8,
    data: &'a RawValue,
    timestamp: &'a serde_json::Number,
    #[serde(rename = "pageId")]
    page_id: &'a str,
}

impl RecordingStore {
    /// Recordings under `dir`, each at most `max_bytes`, all together at most `quota`.
    pub fn new(dir: PathBuf, max_bytes: u64, quota: u64) -> Self {
        RecordingStore {
            dir,
            max_bytes,
            quota,
            writing: Arc::default(),
        }
    }

    /// The file of session `id` (an id is a canonical UUID, so the name stays in the dir).
    pub fn path(&self, id: &SessionId) -> PathBuf {
        self.dir.join(format!("{}.ndjson", id.as_str()))
    }

    /// A writer appending to session `id`'s recording (a resumed session goes on where it
    /// stopped). Making room for it never removes the recording of a session `live` names
    /// (one not over).
    pub fn writer(
        &self,
        id: &SessionId,
        live: &dyn Fn(&SessionId) -> bool,
    ) -> io::Result<Recorder> {
        use std::os::unix::fs::OpenOptionsExt;
        crate::paths::create_private_dir(&self.dir)?;
        // Counted before anything is removed or opened: from here no sweep removes it.
        let mark = WritingMark::new(&self.writing, id);
        // Room for this one to reach its cap.
        let keep = |s: &SessionId| s == id || live(s);
        let evicted = self.evict(self.quota.saturating_sub(self.max_bytes), &keep);
        if evicted > 0 {
            tracing::info!(
                evicted,
                quota = self.quota,
                "recordings past the quota (recordings_quota): the oldest were removed"
            );
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(self.path(id))?;
        // A line half written when the disk filled or the daemon was killed is cut off, so
        // the next one starts a line of its own.
        let written = drop_partial_line(&file)?;
        let cut = written + CUT_RESERVE >= self.max_bytes || ends_cut(&self.path(id), written);
        Ok(Recorder {
            file,
            written,
            max_bytes: self.max_bytes,
            cut,
            _mark: mark,
        })
    }

    /// Up to `limit` events of session `id` from byte `from` on (at most [`MAX_READ_BYTES`]);
    /// an empty page when it recorded nothing. `from` comes from a previous page's `next`:
    /// one that is not at a line's start gives an error.
    pub fn read(&self, id: &SessionId, from: u64, limit: usize) -> io::Result<RecordingPage> {
        let file = match File::open(self.path(id)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(RecordingPage {
                    events: Vec::new(),
                    next: None,
                });
            }
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let mut reader = BufReader::new(file);
        if from > 0 {
            if from > len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "pointer past the end",
                ));
            }
            reader.seek(SeekFrom::Start(from - 1))?;
            let mut before = [0u8];
            std::io::Read::read_exact(&mut reader, &mut before)?;
            if before[0] != b'\n' {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a pointer"));
            }
        }
        let limit = limit.clamp(1, MAX_READ_EVENTS);
        let (mut events, mut bytes, mut at) = (Vec::new(), 0usize, from);
        // True when this page stopped before the last whole line.
        let mut more = false;
        let mut line = Vec::new();
        loop {
            line.clear();
            // A line is bounded by what the writer took.
            let n = io::Read::take(&mut reader, MAX_LINE_BYTES).read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                // The last line, half written: no event, and no page after it.
                if (n as u64) < MAX_LINE_BYTES {
                    break;
                }
                // A line the writer did not write (longer than any it does): skipped.
                match skip_line(&mut reader)? {
                    Some(rest) => {
                        at += n as u64 + rest;
                        continue;
                    }
                    None => break,
                }
            }
            if !events.is_empty() && (events.len() >= limit || bytes + n > MAX_READ_BYTES) {
                more = true;
                break;
            }
            at += n as u64;
            bytes += n;
            if let Ok(text) = std::str::from_utf8(&line[..n - 1])
                && let Ok(raw) = RawValue::from_string(text.to_string())
            {
                events.push(raw);
            }
        }
        let next = more.then_some(at);
        Ok(RecordingPage { events, next })
    }

    /// Removes the recordings last written more than `retention` ago, except those `keep`
    /// names (sessions still recording: an idle page writes nothing); how many.
    pub fn sweep(&self, retention: Duration, keep: &dyn Fn(&SessionId) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".ndjson"))
                .and_then(|n| SessionId::parse(n).ok())
            else {
                continue;
            };
            let old = entry
                .metadata()
                .ok()
                .filter(std::fs::Metadata::is_file)
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > retention);
            if old && !keep(&id) && self.remove_unless_writing(&id, &entry.path()) {
                removed += 1;
            }
        }
        removed + self.evict(self.quota, keep)
    }

    /// Removes recordings, those last written longest ago first, until all hold at most
    /// `target` bytes; never one `keep` names or one being written. How many.
    fn evict(&self, target: u64, keep: &dyn Fn(&SessionId) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut all: Vec<(SystemTime, u64, SessionId, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let id = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".ndjson"))
                    .and_then(|n| SessionId::parse(n).ok())?;
                let meta = entry.metadata().ok().filter(std::fs::Metadata::is_file)?;
                Some((meta.modified().ok()?, meta.len(), id, entry.path()))
            })
            .collect();
        let mut total: u64 = all.iter().map(|r| r.1).sum();
        if total <= target {
            return 0;
        }
        all.sort_by_key(|r| r.0);
        let mut removed = 0;
        for (_, len, id, path) in all {
            if total <= target {
                break;
            }
            if keep(&id) {
                continue;
            }
            if self.remove_unless_writing(&id, &path) {
                total = total.saturating_sub(len);
                removed += 1;
            }
        }
        removed
    }

    /// Removes recording `path` of session `id` unless a [`Recorder`] of it is open or
    /// opening (checked and removed under the lock a starting writer takes); true if removed.
    fn remove_unless_writing(&self, id: &SessionId, path: &Path) -> bool {
        let writing = lock(&self.writing);
        !writing.contains_key(id) && std::fs::remove_file(path).is_ok()
    }

    /// The dir recordings are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Appends one session's events, up to its cap.
pub struct Recorder {
    file: File,
    written: u64,
    max_bytes: u64,
    cut: bool,
    /// This recording's count among those being written: given back at drop.
    _mark: WritingMark,
}

impl Recorder {
    /// Appends the event `payload` (a page's JSON text) of page `page_id`. A payload that is
    /// not an rrweb event or is too large is dropped; false once the recording reached its
    /// cap (nothing more is written).
    pub fn append(&mut self, page_id: &str, payload: &str) -> io::Result<bool> {
        if self.cut {
            return Ok(false);
        }
        if payload.len() > MAX_EVENT_BYTES {
            return Ok(true);
        }
        let Ok(ev) = serde_json::from_str::<PageEvent<'_>>(payload) else {
            return Ok(true);
        };
        let stored = StoredEvent {
            kind: ev.kind,
            data: ev.data,
            timestamp: &ev.timestamp,
            page_id: truncate(page_id, 64),
        };
        let mut line = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.written + line.len() as u64 + CUT_RESERVE > self.max_bytes {
            self.cut = true;
            let marker = cut_marker(self.max_bytes, &ev.timestamp);
            self.file.write_all(marker.as_bytes())?;
            self.written += marker.len() as u64;
            return Ok(false);
        }
        self.file.write_all(&line)?;
        self.written += line.len() as u64;
        Ok(true)
    }

    /// Ends the recording with a [`STOPPED_TAG`] event saying why (cut to 150 bytes), so a
    /// replay shows where and why it stops; nothing is written after it.
    pub fn stop(&mut self, reason: &str) -> io::Result<()> {
        if self.cut {
            return Ok(());
        }
        self.cut = true;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let event = serde_json::json!({
            "type": 5,
            "data": {"tag": STOPPED_TAG, "payload": {"reason": truncate(reason, 150)}},
            "timestamp": now,
        });
        // Within the room kept for a marker.
        self.file.write_all(format!("{event}\n").as_bytes())
    }

    /// True once the recording reached its cap.
    pub fn is_cut(&self) -> bool {
        self.cut
    }
}

/// The rrweb custom event (type 5) that ends a recording cut at `max_bytes`.
fn cut_marker(max_bytes: u64, timestamp: &serde_json::Number) -> String {
    let event = serde_json::json!({
        "type": 5,
        "data": {"tag": CUT_TAG, "payload": {"maxBytes": max_bytes,
            "message": "the recording reached its size cap (record_max_bytes) and stopped here"}},
        "timestamp": timestamp,
    });
    format!("{event}\n")
}

/// True when the recording at `path` (`len` bytes, ending in a whole line) ends with the
/// [`CUT_TAG`] line bro wrote: its last line is parsed, so a page event that merely holds
/// the text (a page keeping it in its DOM) is not taken for it; a page's events carry a
/// `pageId`, bro's markers none.
fn ends_cut(path: &Path, len: u64) -> bool {
    use std::os::unix::fs::FileExt;
    /// bro's marker line, as far as it is read here.
    #[derive(Deserialize)]
    struct Marker {
        #[serde(rename = "type")]
        kind: u8,
        data: MarkerData,
        #[serde(rename = "pageId")]
        page_id: Option<serde::de::IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct MarkerData {
        tag: Option<String>,
    }
    // A marker is shorter than the room kept for it; a longer last line is not one.
    let start = len.saturating_sub(CUT_RESERVE + 1);
    let mut tail = vec![0u8; (len - start) as usize];
    let Ok(file) = File::open(path) else {
        return false;
    };
    if file.read_exact_at(&mut tail, start).is_err() {
        return false;
    }
    let Some(body) = tail.strip_suffix(b"\n") else {
        return false;
    };
    let last = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => &body[i + 1..],
        None if start == 0 => body,
        None => return false,
    };
    serde_json::from_slice::<Marker>(last)
        .is_ok_and(|m| m.kind == 5 && m.page_id.is_none() && m.data.tag.as_deref() == Some(CUT_TAG))
}

/// Cuts `file` back to just after its last `\n` when it does not end with one (a line half
/// written); its length after.
fn drop_partial_line(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
            }
            return Ok(keep);
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
    }
    Ok(0)
}

/// Reads past the rest of a line; the bytes skipped with its `\n`, or `None` at the end
/// before one.
fn skip_line(reader: &mut impl BufRead) -> io::Result<Option<u64>> {
    let mut skipped = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            reader.consume(i + 1);
            return Ok(Some(skipped + i as u64 + 1));
        }
        let n = buf.len();
        reader.consume(n);
        skipped += n as u64;
    }
}

/// Locks a std mutex, recovering the data if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SessionId {
        SessionId::parse("0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69").unwrap()
    }

    fn event(i: usize, pad: usize) -> String {
        format!(
            r#"{{"type":3,"data":{{"source":0,"i":{i},"pad":"{}"}},"timestamp":{}}}"#,
            "x".repeat(pad),
            1000 + i
        )
    }

    #[test]
    fn events_are_kept_and_read_in_pages() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordingStore::new(tmp.path().join("recordings"), 1 << 20, 1 << 30);
        let mut rec = store.writer(&id(), &|_| false).unwrap();
        for i in 0..25 {
            assert!(rec.append("T1", &event(i, 10)).unwrap());
        }
        // Not events: dropped, the recording goes on.
        for junk in [
            "",
            "null",
            "[1]",
            "{\"type\":\"x\"}",
            "{\"type\":2,\"data\":{",
            "\u{0}",
        ] {
            assert!(rec.append("T1", junk).unwrap());
        }
        let mode = std::fs::metadata(store.path(&id())).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        let page = store.read(&id(), 0, 10).unwrap();
        assert_eq!(page.events.len(), 10);
        let first: serde_json::Value = serde_json::from_str(page.events[0].get()).unwrap();
        assert_eq!(first["type"], 3);
        assert_eq!(first["pageId"], "T1");
        assert_eq!(first["data"]["i"], 0);
        let mut all = page.events.len();
        let mut next = page.next;
        while let Some(from) = next {
            let page = store.read(&id(), from, 10).unwrap();
            all += page.events.len();
            next = page.next;
        }
        assert_eq!(all, 25);
        // A pointer that is not one, and an unknown session.
        assert!(store.read(&id(), 3, 10).is_err());
        assert!(store.read(&id(), 1 << 40, 10).is_err());
        let other = SessionId::random();
        assert!(store.read(&other, 0, 10).unwrap().events.is_empty());
    }

    #[test]
    fn a_recording_stops_at_its_cap_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let cap = 64 << 10;
        let store = RecordingStore::new(tmp.path().to_path_buf(), cap, 1 << 30);
        let mut rec = store.writer(&id(), &|_| false).unwrap();
        let mut i = 0;
        while rec.append("T", &event(i, 1000)).unwrap() {
            i += 1;
            assert!(i < 1000);
        }
        assert!(rec.is_cut());
        // Huge payloads after the cut change nothing.
        let huge = event(0, MAX_EVENT_BYTES * 2);
        for _ in 0..3 {
            assert!(!rec.append("T", &huge).unwrap());
        }
        let len = std::fs::metadata(store.path(&id())).unwrap().len();
        assert!(len <= cap, "{len} > {cap}");
        let page = store.read(&id(), 0, MAX_READ_EVENTS).unwrap();
        let last: serde_json::Value =
            serde_json::from_str(page.events.last().unwrap().get()).unwrap();
        assert_eq!(last["data"]["tag"], CUT_TAG);
        // A writer reopened on a full recording writes nothing more.
        let mut again = store.writer(&id(), &|_| false).unwrap();
        assert!(!again.append("T", &event(1, 1)).unwrap());
        assert_eq!(std::fs::metadata(store.path(&id())).unwrap().len(), len);
    }

    #[test]
    fn a_stopped_recording_says_why_last() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordingStore::new(tmp.path().to_path_buf(), 1 << 20, 1 << 30);
        let mut rec = store.writer(&id(), &|_| false).unwrap();
        assert!(rec.append("T", &event(0, 1)).unwrap());
        rec.stop(&"x".repeat(10_000)).unwrap();
        assert!(!rec.append("T", &event(1, 1)).unwrap());
        rec.stop("again").unwrap();
        let page = store.read(&id(), 0, 10).unwrap();
        assert_eq!(page.events.len(), 2);
        let last: serde_json::Value = serde_json::from_str(page.events[1].get()).unwrap();
        assert_eq!(last["data"]["tag"], STOPPED_TAG);
        assert_eq!(
            last["data"]["payload"]["reason"].as_str().unwrap().len(),
            150
        );
    }

    #[test]
    fn an_oversized_event_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordingStore::new(tmp.path().to_path_buf(), 64 << 20, 1 << 30);
        let mut rec = store.writer(&id(), &|_| false).unwrap();
        assert!(rec.append("T", &event(0, MAX_EVENT_BYTES)).unwrap());
        assert!(rec.append("T", &event(1, 10)).unwrap());
        let page = store.read(&id(), 0, 10).unwrap();
        assert_eq!(page.events.len(), 1);
    }

    #[test]
    fn old_recordings_are_swept_unless_still_recording() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordingStore::new(tmp.path().to_path_buf(), 1 << 20, 1 << 30);
        let (a, b) = (SessionId::random(), SessionId::random());
        for s in [&a, &b] {
            store
                .writer(s, &|_| false)
                .unwrap()
                .append("T", &event(0, 1))
                .unwrap();
        }
        // One being written is never swept, however old.
        let (c, mut open) = (SessionId::random(), None);
        open.replace(store.writer(&c, &|_| false).unwrap());
        std::fs::write(tmp.path().join("not-a-recording.ndjson"), "").unwrap();
        assert_eq!(store.sweep(Duration::from_secs(3600), &|_| false), 0);
        std::thread::sleep(Duration::from_millis(20));
        let keep_b = |s: &SessionId| *s == b;
        assert_eq!(store.sweep(Duration::from_millis(1), &keep_b), 1);
        assert!(!store.path(&a).exists());
        assert!(store.path(&b).exists());
        assert!(store.path(&c).exists());
        assert!(tmp.path().join("not-a-recording.ndjson").exists());
        drop(open);
        assert_eq!(store.sweep(Duration::from_millis(1), &keep_b), 1);
        assert!(!store.path(&c).exists());
    }

    #[test]
    fn past_the_quota_the_oldest_ended_recordings_go_never_one_being_written() {
        let tmp = tempfile::tempdir().unwrap();
        // Each recording may reach 64 KiB; all together 200 KiB.
        let store = RecordingStore::new(tmp.path().to_path_buf(), 64 << 10, 200 << 10);
        let fill = |rec: &mut Recorder| while rec.append("T", &event(0, 1000)).unwrap() {};
        // The oldest of all is still being written (a long session).
        let live = SessionId::random();
        let mut live_rec = store.writer(&live, &|_| false).unwrap();
        fill(&mut live_rec);
        let ended: Vec<SessionId> = (0..4).map(|_| SessionId::random()).collect();
        for id in &ended {
            std::thread::sleep(Duration::from_millis(15));
            fill(&mut store.writer(id, &|_| false).unwrap());
        }
        let total = |store: &RecordingStore| -> u64 {
            std::fs::read_dir(store.dir())
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        // Starting ended[3] made room for it: ended[0] went, the live one stayed.
        assert!(store.path(&live).exists());
        assert!(!store.path(&ended[0]).exists());
        assert!(total(&store) <= 200 << 10, "{}", total(&store));
        // A sweep (nothing past its retention) keeps the total within the quota.
        std::thread::sleep(Duration::from_millis(15));
        let next = SessionId::random();
        fill(&mut store.writer(&next, &|_| false).unwrap());
        store.sweep(Duration::from_secs(3600), &|_| false);
        assert!(total(&store) <= 200 << 10, "{}", total(&store));
        assert!(store.path(&live).exists() && store.path(&next).exists());
        // Once it ends, the long session's recording is the oldest and goes first.
        drop(live_rec);
        let newer = SessionId::random();
        fill(&mut store.writer(&newer, &|_| false).unwrap());
        assert!(!store.path(&live).exists());
        assert!(store.path(&newer).exists() && store.path(&next).exists());
    }

    /// Making room for a new recording never removes one of a session that is not over (its
    /// recorder gone: not yet resumed, or cut), and a recording with two recorders stays
    /// protected until both are gone.
    #[test]
    fn making_room_never_removes_a_live_sessions_recording() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordingStore::new(tmp.path().to_path_buf(), 64 << 10, 128 << 10);
        let fill = |rec: &mut Recorder| while rec.append("T", &event(0, 1000)).unwrap() {};
        let (paused, ended) = (SessionId::random(), SessionId::random());
        fill(&mut store.writer(&paused, &|_| false).unwrap());
        std::thread::sleep(Duration::from_millis(15));
        fill(&mut store.writer(&ended, &|_| false).unwrap());
        // `paused` is the oldest but its session lives on: `ended` goes instead.
        let live = |s: &SessionId| *s == paused;
        let new = SessionId::random();
        let _rec = store.writer(&new, &live).unwrap();
        assert!(store.path(&paused).exists());
        assert!(!store.path(&ended).exists());

        // Two recorders of one id: dropping one leaves it protected.
        let twice = SessionId::random();
        let first = store.writer(&twice, &|_| false).unwrap();
        let second = store.writer(&twice, &|_| false).unwrap();
        drop(first);
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(store.sweep(Duration::from_millis(1), &live), 0);
        assert!(store.path(&twice).exists());
        drop(second);
        assert!(!lock(&store.writing).contains_key(&twice));
        assert_eq!(store.sweep(Duration::from_millis(1), &live), 1);
        assert!(!store.path(&twice).exists());
    }

    /// A line half written (disk full, daemon killed) neither stops the reading nor spoils
    /// the next line: a writer cuts it off, a reader gives no page after it, and a line too
    /// long for any writer is skipped.
    #[test]
    fn a_half_written_or_overlong_line_does_not_stop_paging() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordingStore::new(tmp.path().to_path_buf(), 64 << 20, 1 << 30);
        let line = |i: usize| {
            let mut l = event(i, 10);
            l.push('\n');
            l
        };
        let overlong = format!("{{\"pad\":\"{}\"}}\n", "y".repeat(MAX_LINE_BYTES as usize));
        let text = format!("{}{overlong}{}{{\"type\":3,\"da", line(0), line(1));
        std::fs::write(store.path(&id()), &text).unwrap();
        // A reader skips the overlong line and gives no pointer to the partial one.
        let page = store.read(&id(), 0, 10).unwrap();
        assert_eq!(page.events.len(), 2);
        assert_eq!(page.next, None);
        let page = store.read(&id(), 0, 1).unwrap();
        assert_eq!(page.events.len(), 1);
        let rest = store.read(&id(), page.next.unwrap(), 10).unwrap();
        assert_eq!((rest.events.len(), rest.next), (1, None));
        // A writer cuts the partial line off and goes on on a line of its own.
        let mut rec = store.writer(&id(), &|_| false).unwrap();
        assert!(rec.append("T", &event(2, 10)).unwrap());
        let page = store.read(&id(), 0, 10).unwrap();
        assert_eq!(page.events.len(), 3);
        let last: serde_json::Value = serde_json::from_str(page.events[2].get()).unwrap();
        assert_eq!(last["data"]["i"], 2);
        // A file with no whole line at all is emptied.
        let other = SessionId::random();
        std::fs::write(store.path(&other), "{\"type\"").unwrap();
        drop(store.writer(&other, &|_| false).unwrap());
        assert_eq!(std::fs::metadata(store.path(&other)).unwrap().len(), 0);
    }

    /// Only bro's own last marker line ends a recording for good, not a page event that
    /// holds its text.
    #[test]
    fn a_page_holding_the_cut_tag_does_not_end_its_recording() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordingStore::new(tmp.path().to_path_buf(), 1 << 20, 1 << 30);
        let mut rec = store.writer(&id(), &|_| false).unwrap();
        let fake =
            format!(r#"{{"type":5,"data":{{"tag":"{CUT_TAG}","payload":{{}}}},"timestamp":1}}"#);
        assert!(rec.append("T", &fake).unwrap());
        let text = format!(r#"{{"type":3,"data":{{"text":"{CUT_TAG}"}},"timestamp":2}}"#);
        assert!(rec.append("T", &text).unwrap());
        drop(rec);
        let mut again = store.writer(&id(), &|_| false).unwrap();
        assert!(!again.is_cut());
        assert!(again.append("T", &fake).unwrap());
        drop(again);
        assert!(!store.writer(&id(), &|_| false).unwrap().is_cut());
        // bro's own marker does.
        let marker = cut_marker(1 << 20, &serde_json::Number::from(3));
        std::fs::OpenOptions::new()
            .append(true)
            .open(store.path(&id()))
            .unwrap()
            .write_all(marker.as_bytes())
            .unwrap();
        assert!(store.writer(&id(), &|_| false).unwrap().is_cut());
    }
}
