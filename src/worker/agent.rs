//! The page agent: for a browser whose session records (rrweb) or blocks
//! (`optimizeBandwidth`), one CDP connection of the host's own that attaches to every page,
//! those open and those to come (tabs, popups), before their scripts run.
//!
//! On the browser it sets `Target.setAutoAttach` (flat sessions, `waitForDebuggerOnStart`),
//! so Chromium attaches it to each existing page and holds each new one until the agent has
//! set it up and let it run (`Runtime.runIfWaitingForDebugger`). In each page it sends, without
//! waiting for answers (a session runs its commands in order, and the agent never waits on
//! the page):
//! - to record: `Runtime.addBinding` and `Page.addScriptToEvaluateOnNewDocument` (also run at
//!   once in the open documents), both in an isolated world ([`WORLD`]): the page's own
//!   scripts can neither see, call nor change the recorder or its binding. The recorder is
//!   rrweb's bundle plus an emitter that drops events past [`EMIT_MAX_CHARS`]; each event
//!   arrives as `Runtime.bindingCalled` and is appended to the session's recording
//!   ([`recording`](super::recording)), which bounds it again;
//! - to block: `Fetch.enable` with the [`Blocker`]'s patterns and
//!   `Network.setBypassServiceWorker` (a service worker's own fetches are not paused, so it
//!   must not serve the page); each paused request is failed (`BlockedByClient`) or
//!   continued.
//!
//! Recording needs the Page and Runtime domains on in the agent's own session (Chromium runs
//! a world's new-document scripts and puts bindings into new contexts only then); blocking
//! needs neither. Nothing else is asked of a page, so a client's Playwright or Puppeteer
//! sees its pages as it would without the agent. (One difference a client may notice: with
//! the Page domain on, a JavaScript dialog waits for a CDP client to answer it, as it does
//! for any Playwright or Puppeteer client; the agent never answers it.) If the agent's
//! connection goes, Chromium releases what it held: waiting pages run, paused requests
//! continue. The agent starts at launch, claim and resume, and ends at stop or when the
//! browser goes. It does not reconnect: if its connection ends while the browser lives (a
//! page can end it, e.g. with a console message past [`MAX_MESSAGE`], as the Runtime domain
//! is on), recording and blocking stop for the rest of the session. That is made visible
//! rather than hidden: a warning in the log and a last `bro.recording-stopped` custom event
//! (with the reason) in the recording. (Reconnecting would set every page up again while
//! the old recorders still run in their worlds with a binding gone: not done.)

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::fetch::{
    self, ContinueRequestParams, EventRequestPaused, FailRequestParams,
};
use chromiumoxide::cdp::browser_protocol::network::{
    ErrorReason, ResourceType, SetBypassServiceWorkerParams,
};
use chromiumoxide::cdp::browser_protocol::page::{
    self as cdp_page, AddScriptToEvaluateOnNewDocumentParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    DetachFromTargetParams, EventAttachedToTarget, EventDetachedFromTarget,
    SessionId as CdpSession, SetAutoAttachParams,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    self, AddBindingParams, EventBindingCalled, RunIfWaitingForDebuggerParams,
};
use tokio_util::sync::CancellationToken;

use crate::protocol::session::{SessionId, SessionOptions, WorkerInfo};
use crate::worker::block::Blocker;
use crate::worker::cdp::{Cdp, CdpError, Event};
use crate::worker::page;
use crate::worker::recording::{Recorder, RecordingStore};

/// The isolated world the recorder runs in.
pub const WORLD: &str = "bro-recorder";
/// The binding the recorder calls, in [`WORLD`] only.
pub const BINDING: &str = "__broRecord";
/// Events whose JSON is longer than this (UTF-16 units) are dropped in the page; a note of
/// the drop is recorded instead. As large as the agent's connection carries (a unit takes at
/// most 6 bytes escaped in a CDP message, and 4 KiB is kept for the message around it), so
/// a CSS-heavy full snapshot (some MiB) is kept; the daemon's per-event cap
/// ([`MAX_EVENT_BYTES`](super::recording::MAX_EVENT_BYTES)) takes any such event.
pub const EMIT_MAX_CHARS: usize = (MAX_MESSAGE - 4096) / 6;
/// The biggest CDP message the agent reads: an event of [`EMIT_MAX_CHARS`] escaped. A bigger
/// one ends the connection (and so the agent), never the daemon's memory.
const MAX_MESSAGE: usize = 16 << 20;
const _: () = assert!(EMIT_MAX_CHARS * 6 + 4096 <= MAX_MESSAGE);
/// The most pages one agent follows at once.
const MAX_PAGES: usize = 4096;

/// What the agent of one browser does.
struct Plan {
    session: SessionId,
    /// The recorder script, when the session records.
    script: Option<Arc<str>>,
    blocker: Option<Blocker>,
}

/// The agents of a host's browsers, by session dir name.
pub struct Agents {
    store: RecordingStore,
    /// Where rrweb is installed (`install.sh`), if it is.
    rrweb_dir: Option<PathBuf>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    /// Numbers the agents, so one that ends leaves its successor's entry alone.
    started: std::sync::atomic::AtomicU64,
}

struct Running {
    session: SessionId,
    stop: CancellationToken,
    serial: u64,
}

impl Agents {
    /// Agents recording into `store` with the rrweb of `rrweb_dir`.
    pub fn new(store: RecordingStore, rrweb_dir: Option<PathBuf>) -> Self {
        Agents {
            store,
            rrweb_dir,
            running: Arc::default(),
            started: Default::default(),
        }
    }

    /// Where recordings are kept.
    pub fn store(&self) -> &RecordingStore {
        &self.store
    }

    /// True while an agent records session `id`.
    pub fn records(&self, id: &SessionId) -> bool {
        lock(&self.running).values().any(|r| &r.session == id)
    }

    /// Starts the agent of `worker` for session `session` if its options ask for one (an
    /// agent already there is replaced); returns once every open page is set up, so a client
    /// connecting afterwards finds its pages recorded and filtered. `live` are the sessions
    /// not over on this host, whose recordings making room for this one leaves alone.
    pub async fn start(
        &self,
        worker: &WorkerInfo,
        session: &SessionId,
        options: &SessionOptions,
        live: HashSet<SessionId>,
    ) -> Result<(), CdpError> {
        let key = dir_key(worker);
        self.stop(&key);
        let blocker = Blocker::of(&options.optimize_bandwidth);
        let script = if options.record {
            self.script().await
        } else {
            None
        };
        if script.is_none() && blocker.is_none() {
            return Ok(());
        }
        let recorder = match &script {
            Some(_) => match self.store.writer(session, &|id| live.contains(id)) {
                Ok(r) => Some(r),
                Err(err) => {
                    tracing::warn!(session_id = %session, %err, "cannot open the recording; not recording");
                    None
                }
            },
            None => None,
        };
        // A recording already at its cap (a resumed session) records nothing more: its pages
        // get no recorder.
        let recorder = recorder.filter(|r| !r.is_cut());
        let plan = Plan {
            session: session.clone(),
            script: recorder.as_ref().and(script),
            blocker,
        };
        let mut cdp = Cdp::connect_limited(&page::browser_url(worker), MAX_MESSAGE).await?;
        let mut auto = SetAutoAttachParams::new(true, true);
        auto.flatten = Some(true);
        cdp.call(auto).await?;
        let stop = CancellationToken::new();
        let serial = self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.running).insert(
            key.clone(),
            Running {
                session: session.clone(),
                stop: stop.clone(),
                serial,
            },
        );
        let agent = Agent {
            cdp,
            plan,
            recorder,
            pages: HashMap::new(),
        };
        let running = Arc::clone(&self.running);
        tokio::spawn(async move {
            agent.run(stop).await;
            let mut running = lock(&running);
            if running.get(&key).is_some_and(|r| r.serial == serial) {
                running.remove(&key);
            }
        });
        Ok(())
    }

    /// Ends the agent of the browser in session dir `key`, if it has one.
    pub fn stop(&self, key: &str) {
        if let Some(r) = lock(&self.running).remove(key) {
            r.stop.cancel();
        }
    }

    /// The recorder script: rrweb's bundle and bro's emitter; `None` without rrweb.
    async fn script(&self) -> Option<Arc<str>> {
        let path = self.rrweb_dir.as_ref()?.join(crate::paths::RRWEB_RECORD_JS);
        match tokio::fs::read_to_string(&path).await {
            Ok(bundle) => Some(recorder_script(&bundle).into()),
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "rrweb's recorder is missing (run install.sh); not recording");
                None
            }
        }
    }
}

/// The session dir name of `worker`: what its agent is known by.
pub fn dir_key(worker: &WorkerInfo) -> String {
    dir_key_of(&worker.dir)
}

/// The name of session dir `dir`.
pub fn dir_key_of(dir: &std::path::Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// rrweb's `bundle` run in the top frame only, once, sending each event through [`BINDING`].
fn recorder_script(bundle: &str) -> String {
    format!(
        "if (window.top === window && !window.__broRecording) {{ window.__broRecording = true;\n\
         {bundle}\n;(function () {{\n\
           const MAX = {EMIT_MAX_CHARS};\n\
           rrweb.record({{\n\
             emit(event) {{\n\
               let text;\n\
               try {{ text = JSON.stringify(event); }} catch (_) {{ return; }}\n\
               if (text.length > MAX) text = JSON.stringify({{type: 5, timestamp: event.timestamp,\n\
                 data: {{tag: 'bro.event-dropped', payload: {{type: event.type, length: text.length}}}}}});\n\
               globalThis.{BINDING}(text);\n\
             }},\n\
             sampling: {{mousemove: 50, scroll: 150, input: 'last'}},\n\
             recordCanvas: false, collectFonts: false, inlineImages: false,\n\
           }});\n\
         }})();\n}}\n"
    )
}

/// One browser's agent.
struct Agent {
    cdp: Cdp,
    plan: Plan,
    recorder: Option<Recorder>,
    /// The pages followed: flat session → target id.
    pages: HashMap<String, String>,
}

impl Agent {
    async fn run(mut self, stop: CancellationToken) {
        let result = loop {
            let event = tokio::select! {
                () = stop.cancelled() => break Ok(()),
                ev = self.cdp.next_any(Duration::from_secs(3600)) => ev,
            };
            match event {
                Ok(ev) => {
                    if let Err(err) = self.on_event(&ev).await {
                        break Err(err);
                    }
                }
                Err(CdpError::Timeout(_)) => {}
                Err(err) => break Err(err),
            }
        };
        if let Err(err) = result {
            // Also what a browser that exits looks like: then no one replays past it anyway.
            tracing::warn!(session_id = %self.plan.session, %err, blocking = self.plan.blocker.is_some(), recording = self.recorder.is_some(),
                "the page agent lost its connection to the browser: recording and blocking stop for this session");
            if let Some(rec) = &mut self.recorder {
                let reason = format!("the page agent's connection to the browser ended: {err}");
                if let Err(err) = rec.stop(&reason) {
                    tracing::warn!(session_id = %self.plan.session, %err, "could not note the recording's end");
                }
            }
        }
    }

    async fn on_event(&mut self, ev: &Event) -> Result<(), CdpError> {
        if ev.is::<EventAttachedToTarget>() {
            // A target Chromium holds must be let run even when chromiumoxide cannot decode
            // the event (an enum value newer than it): then the raw fields are used.
            return match attached_target(ev) {
                Some(target) => self.attached(target).await,
                None => Ok(()),
            };
        }
        if ev.is::<EventDetachedFromTarget>() {
            if let Some(gone) = raw_str(&ev.params, "sessionId") {
                self.pages.remove(gone);
            }
            return Ok(());
        }
        let Some(session) = ev.session_id.as_deref() else {
            return Ok(());
        };
        if ev.is::<EventBindingCalled>() {
            if let (Some(call), Some(rec)) = (ev.decode::<EventBindingCalled>(), &mut self.recorder)
                && call.name == BINDING
            {
                let page = self.pages.get(session).map_or("", String::as_str);
                let ended = match rec.append(page, &call.payload) {
                    Ok(true) => false,
                    Ok(false) => {
                        tracing::info!(session_id = %self.plan.session, "the recording reached its cap (record_max_bytes) and stopped");
                        true
                    }
                    Err(err) => {
                        tracing::warn!(session_id = %self.plan.session, %err, "writing the recording failed; recording stops");
                        true
                    }
                };
                if ended {
                    self.recorder = None;
                    self.stop_recording().await?;
                }
            }
            return Ok(());
        }
        if ev.is::<EventRequestPaused>() {
            // A paused request must be answered even when chromiumoxide cannot decode the
            // event (a `resourceType` newer than it): then it is decided on its URL alone.
            let Some((request_id, url, kind)) = paused_request(ev) else {
                return Ok(());
            };
            let s = Some(CdpSession::new(session));
            let blocked = self
                .plan
                .blocker
                .as_ref()
                .is_some_and(|b| b.blocks(&url, &kind));
            if blocked {
                let fail = FailRequestParams::new(request_id, ErrorReason::BlockedByClient);
                self.cdp.send_in(s.as_ref(), fail).await?;
            } else {
                let go = ContinueRequestParams::new(request_id);
                self.cdp.send_in(s.as_ref(), go).await?;
            }
        }
        Ok(())
    }

    /// Ends the recording work once nothing more is recorded: new pages get no recorder, and
    /// the pages followed stop running it in new documents and sending it events (the Page
    /// and Runtime domains, on for recording only, go off in the agent's sessions).
    async fn stop_recording(&mut self) -> Result<(), CdpError> {
        if self.plan.script.take().is_none() {
            return Ok(());
        }
        for session in self.pages.keys() {
            let s = Some(CdpSession::new(session.as_str()));
            self.cdp
                .send_in(s.as_ref(), runtime::DisableParams::default())
                .await?;
            self.cdp
                .send_in(s.as_ref(), cdp_page::DisableParams::default())
                .await?;
        }
        Ok(())
    }

    /// Sets up a page Chromium attached the agent to, then lets it run; leaves other targets
    /// (workers) at once.
    async fn attached(&mut self, ev: Attached) -> Result<(), CdpError> {
        let session = CdpSession::new(ev.session_id);
        let s = Some(&session);
        let is_page = ev.target_info.kind == "page" && self.pages.len() < MAX_PAGES;
        if is_page {
            self.pages
                .insert(session.as_ref().to_string(), ev.target_info.target_id);
            if let Some(script) = &self.plan.script {
                // Chromium runs a world's new-document scripts only with the Page domain on,
                // and puts bindings into new contexts only with the Runtime domain on.
                self.cdp
                    .send_in(s, cdp_page::EnableParams::default())
                    .await?;
                self.cdp
                    .send_in(s, runtime::EnableParams::default())
                    .await?;
                let mut binding = AddBindingParams::new(BINDING);
                binding.execution_context_name = Some(WORLD.into());
                self.cdp.send_in(s, binding).await?;
                let mut add = AddScriptToEvaluateOnNewDocumentParams::new(script.to_string());
                add.world_name = Some(WORLD.into());
                add.run_immediately = Some(true);
                self.cdp.send_in(s, add).await?;
            }
            if let Some(blocker) = &self.plan.blocker {
                let enable = fetch::EnableParams {
                    patterns: Some(blocker.patterns()),
                    handle_auth_requests: None,
                };
                self.cdp.send_in(s, enable).await?;
                // A service worker's fetches are not the page's: without this one could
                // answer the page's blocked requests from the network itself.
                self.cdp
                    .send_in(s, SetBypassServiceWorkerParams::new(true))
                    .await?;
            }
        }
        if ev.waiting_for_debugger {
            self.cdp
                .send_in(s, RunIfWaitingForDebuggerParams::default())
                .await?;
        }
        if !is_page {
            let detach = DetachFromTargetParams {
                session_id: Some(session.clone()),
            };
            self.cdp.send_in(None, detach).await?;
        }
        Ok(())
    }
}

/// The fields of `Target.attachedToTarget` the agent acts on, read from the raw event when
/// chromiumoxide cannot decode it.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attached {
    session_id: String,
    target_info: RawTargetInfo,
    #[serde(default)]
    waiting_for_debugger: bool,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTargetInfo {
    target_id: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The target of a `Target.attachedToTarget` event `ev`: decoded, or read from its raw
/// params when chromiumoxide cannot decode it.
fn attached_target(ev: &Event) -> Option<Attached> {
    match ev.decode::<EventAttachedToTarget>() {
        Some(a) => Some(Attached {
            session_id: a.session_id.as_ref().to_string(),
            target_info: RawTargetInfo {
                target_id: a.target_info.target_id.as_ref().to_string(),
                kind: a.target_info.r#type,
            },
            waiting_for_debugger: a.waiting_for_debugger,
        }),
        None => serde_json::from_value::<Attached>(ev.params.clone()).ok(),
    }
}

/// The request id, URL and type of a `Fetch.requestPaused` event `ev`: decoded, or its raw
/// `requestId` and `request.url` (type `Other`) when chromiumoxide cannot decode it.
fn paused_request(ev: &Event) -> Option<(fetch::RequestId, String, ResourceType)> {
    if let Some(p) = ev.decode::<EventRequestPaused>() {
        return Some((p.request_id, p.request.url, p.resource_type));
    }
    let id = raw_str(&ev.params, "requestId")?;
    let url = ev.params.get("request").and_then(|r| raw_str(r, "url"));
    Some((
        fetch::RequestId::new(id),
        url.unwrap_or_default().to_string(),
        ResourceType::Other,
    ))
}

/// The string field `key` of a raw event's params.
fn raw_str<'a>(params: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    params.get(key).and_then(serde_json::Value::as_str)
}

/// Locks a std mutex, recovering the data if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_runs_in_the_top_frame_and_calls_its_binding() {
        let script = recorder_script("var rrweb = {record() {}};\n//# sourceMappingURL=x.map");
        assert!(script.starts_with("if (window.top === window"));
        assert!(script.contains("globalThis.__broRecord(text)"));
        // The bundle's last line comment does not swallow the emitter.
        assert!(script.contains("x.map\n;(function"));
        assert!(script.contains(&format!("const MAX = {EMIT_MAX_CHARS};")));
    }

    /// Events chromiumoxide cannot decode (an enum value newer than it) still give what the
    /// agent needs to let the page run and answer the request.
    #[test]
    fn undecodable_events_fail_open_on_their_raw_ids() {
        let paused = Event {
            method: "Fetch.requestPaused".into(),
            session_id: Some("S1".into()),
            params: serde_json::json!({
                "requestId": "interception-7",
                "request": {"url": "https://ads.example.com/x", "method": "GET",
                    "headers": {}, "initialPriority": "Brand-New", "referrerPolicy": "new"},
                "frameId": "F", "resourceType": "BrandNewType"}),
        };
        assert!(paused.decode::<EventRequestPaused>().is_none());
        let (id, url, kind) = paused_request(&paused).unwrap();
        assert_eq!(id.as_ref(), "interception-7");
        assert_eq!(url, "https://ads.example.com/x");
        assert_eq!(kind, ResourceType::Other);

        let attached = Event {
            method: "Target.attachedToTarget".into(),
            session_id: None,
            params: serde_json::json!({
                "sessionId": "S2", "waitingForDebugger": true,
                "targetInfo": {"targetId": "T2", "type": "page", "title": "", "url": "",
                    "attached": true, "canAccessOpener": false, "subtype": 7,
                    "openerFrameId": {}}}),
        };
        assert!(attached.decode::<EventAttachedToTarget>().is_none());
        let a = attached_target(&attached).unwrap();
        assert_eq!(
            (a.session_id.as_str(), a.target_info.target_id.as_str()),
            ("S2", "T2")
        );
        assert!(a.waiting_for_debugger && a.target_info.kind == "page");
    }
}
