//! Live viewer screencasts and tab lists, over CDP connections of the host's own (never the
//! client's proxied socket, so a viewer does not count as client activity for
//! `inactivityTimeout`). Each viewer socket gets one task and one browser-level connection;
//! the task ends when the viewer goes (its output stream is dropped or its input ends), when
//! the page or the browser goes, and [`Casts`] counts them per session to bound them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchKeyEventParams, DispatchKeyEventType, DispatchMouseEventParams, DispatchMouseEventType,
    MouseButton as CdpButton,
};
use chromiumoxide::cdp::browser_protocol::page::{
    EventScreencastFrame, NavigateParams, ReloadParams, ScreencastFrameAckParams,
    StartScreencastFormat, StartScreencastParams, StopScreencastParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    ActivateTargetParams, CloseTargetParams, EventTargetCrashed, EventTargetCreated,
    EventTargetDestroyed, EventTargetInfoChanged, SessionId, SetDiscoverTargetsParams, TargetId,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::host::{HostError, HostErrorKind};
use crate::protocol::cast::{
    CastEvent, CastFrame, CastInput, CastOutput, CastSpec, KeyKind, MAX_SCREENCASTS_PER_SESSION,
    MAX_TAB_WATCHERS_PER_SESSION, MouseButton, MouseInput, MouseKind, NavigationAction, PageRef,
    TabInfo, is_web_url,
};
use crate::protocol::session::WorkerInfo;
use crate::worker::cdp::{Cdp, CdpError, Event};
use crate::worker::page::{browser_url, by_value, pages};
use crate::worker::page_error;

/// Messages waiting for a slow viewer; past this, frames are dropped (the next is newer).
const OUT_BUFFER: usize = 4;
/// Input messages a viewer may send a second; past this they are dropped.
const MAX_INPUTS_PER_SECOND: u32 = 200;
/// How long the loop waits for a browser event before looking again (not an error).
const EVENT_WAIT: Duration = Duration::from_secs(30);
/// How long a tab list may wait after a target event, so a burst sends one list.
const TAB_LIST_DEBOUNCE: Duration = Duration::from_millis(200);
/// How long `getSelectedText` may take.
const SELECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take to go out to the browser, and stopping the screencast and
/// detaching at the end: a hung browser must not keep a task (and its viewer slot) alive.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a control event (tab closed, target closed, an answer) may wait for room in
/// the viewer's queue: frames may be dropped, these are not.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest favicon passed to a viewer, as a `data:` URL.
const MAX_FAVICON: usize = 32 << 10;

/// Screencasts and tab watchers open per session dir, for the bounds and for `viewers`.
pub struct Casts {
    counts: Mutex<HashMap<String, (u32, u32)>>,
    /// For `/json/list`, without kept-alive connections: Chromium's DevTools server may close
    /// one the pool would reuse, and viewers ask in bursts (eight sockets opening at once).
    http: reqwest::Client,
}

impl Default for Casts {
    fn default() -> Self {
        Casts::new()
    }
}

impl Casts {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .unwrap_or_default();
        Casts {
            counts: Mutex::default(),
            http,
        }
    }

    /// Screencasts of the browser whose dir is named `key` running now.
    pub fn viewers(&self, key: &str) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(key).map_or(0, |c| c.0)
    }

    /// Counts one more socket of `key`, or refuses it past the bound ([`HostErrorKind::Busy`]).
    fn enter(self: &Arc<Self>, key: String, screencast: bool) -> Result<CastGuard, HostError> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let c = counts.entry(key.clone()).or_default();
        let (n, max, what) = if screencast {
            (
                &mut c.0,
                MAX_SCREENCASTS_PER_SESSION,
                "viewers (screencasts)",
            )
        } else {
            (&mut c.1, MAX_TAB_WATCHERS_PER_SESSION, "tab-list sockets")
        };
        if *n >= max {
            return Err(HostError::new(
                HostErrorKind::Busy,
                format!(
                    "this session has {max} {what} open, the most bro serves at once: close one"
                ),
            ));
        }
        *n += 1;
        Ok(CastGuard {
            casts: Arc::clone(self),
            key,
            screencast,
        })
    }
}

/// One counted socket; dropping it (with its task) uncounts it.
struct CastGuard {
    casts: Arc<Casts>,
    key: String,
    screencast: bool,
}

impl Drop for CastGuard {
    fn drop(&mut self) {
        let mut counts = self.casts.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = counts.get_mut(&self.key) {
            let n = if self.screencast { &mut c.0 } else { &mut c.1 };
            *n = n.saturating_sub(1);
            if *c == (0, 0) {
                counts.remove(&self.key);
            }
        }
    }
}

/// The key [`Casts`] counts a browser under: its session dir's name.
pub fn key_of(worker: &WorkerInfo) -> String {
    worker
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Starts a viewer socket's task: a screencast of `spec.page`, or steel's tab list when
/// there is none. Errors come before the task starts: too many sockets (`Busy`), a page that
/// is not there (`NotFound`), a browser that does not answer.
pub async fn start(
    casts: &Arc<Casts>,
    spec: CastSpec,
    input: BoxStream<'static, CastInput>,
) -> Result<BoxStream<'static, CastOutput>, HostError> {
    let spec = spec.clamped();
    let http = &casts.http;
    let guard = casts.enter(key_of(&spec.worker), spec.page.is_some())?;
    let mut cdp = Cdp::connect(&browser_url(&spec.worker))
        .await
        .map_err(page_error)?;
    cdp.call(SetDiscoverTargetsParams::new(true))
        .await
        .map_err(page_error)?;
    let tabs = tabs(http, &spec.worker).await?;
    let (tx, rx) = mpsc::channel(OUT_BUFFER);
    let span = tracing::Span::current();
    match &spec.page {
        None => {
            let watch = TabWatch {
                cdp,
                http: http.clone(),
                worker: spec.worker.clone(),
                tabs,
                tx,
            };
            tokio::spawn(tracing::Instrument::instrument(
                watch.run(input, guard),
                span,
            ));
        }
        Some(page) => {
            let tab = find(&tabs, page).ok_or_else(|| {
                HostError::new(
                    HostErrorKind::NotFound,
                    format!("no page {page:?} in this session"),
                )
            })?;
            let target = TargetId::new(tab.id.clone());
            let session = cdp.attach(&target).await.map_err(page_error)?;
            // Only on a user's tab switch: bringing a page forward hides the one in front,
            // throttling it for the client and freezing another viewer of it.
            if spec.activate && spec.interactive {
                cdp.call(ActivateTargetParams::new(target.clone()))
                    .await
                    .map_err(page_error)?;
            }
            let start = StartScreencastParams {
                format: Some(StartScreencastFormat::Jpeg),
                quality: Some(i64::from(spec.quality)),
                max_width: Some(i64::from(spec.max_width)),
                max_height: Some(i64::from(spec.max_height)),
                every_nth_frame: None,
            };
            cdp.call_in(Some(&session), start)
                .await
                .map_err(page_error)?;
            let cast = Screencast {
                cdp,
                session,
                target,
                tab,
                interactive: spec.interactive,
                gap: Duration::from_millis(1000 / u64::from(spec.max_fps)),
                scale: (1.0, 1.0),
                tx,
                hung: false,
            };
            tokio::spawn(tracing::Instrument::instrument(
                cast.run(input, guard),
                span,
            ));
        }
    }
    Ok(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|out| (out, rx)) },
    )
    .boxed())
}

/// The browser's pages as tabs, in `/json/list`'s order (that of `live-details`).
async fn tabs(http: &reqwest::Client, worker: &WorkerInfo) -> Result<Vec<TabInfo>, HostError> {
    let list = pages(http, worker).await.map_err(page_error)?;
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    Ok(list
        .iter()
        .map(|p| TabInfo {
            id: text(p, "id"),
            url: text(p, "url"),
            title: text(p, "title"),
            favicon: p["faviconUrl"].as_str().and_then(favicon),
        })
        .collect())
}

/// A page's favicon as a viewer may show it: only a `data:image/…` URL of at most
/// [`MAX_FAVICON`] bytes. A URL to fetch is dropped: the viewer's browser would send a
/// request wherever the page points (its LAN, say), and the viewer's CSP allows no such
/// image anyway.
fn favicon(url: &str) -> Option<String> {
    let ok = url.len() <= MAX_FAVICON
        && url
            .get(..11)
            .is_some_and(|p| p.eq_ignore_ascii_case("data:image/"));
    ok.then(|| url.to_string())
}

fn find(tabs: &[TabInfo], page: &PageRef) -> Option<TabInfo> {
    match page {
        PageRef::Id(id) => tabs.iter().find(|t| &t.id == id).cloned(),
        PageRef::Index(i) => tabs.get(*i as usize).cloned(),
    }
}

/// What woke a task's loop.
enum Step {
    Gone,
    Input(CastInput),
    Event(Event),
    Quiet,
    Timer,
}

/// The next thing to handle: the viewer leaving or sending, a browser event, or `due`.
async fn next_step(
    cdp: &mut Cdp,
    input: &mut BoxStream<'static, CastInput>,
    tx: &mpsc::Sender<CastOutput>,
    due: Option<Instant>,
) -> Step {
    let timer = async {
        match due {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tx.closed() => Step::Gone,
        msg = input.next() => msg.map_or(Step::Gone, Step::Input),
        _ = timer => Step::Timer,
        ev = cdp.next_any(EVENT_WAIT) => match ev {
            Ok(ev) => Step::Event(ev),
            Err(CdpError::Timeout(_)) => Step::Quiet,
            Err(_) => Step::Gone,
        },
    }
}

/// A page's screencast and the input a viewer sends it.
struct Screencast {
    cdp: Cdp,
    session: SessionId,
    target: TargetId,
    tab: TabInfo,
    interactive: bool,
    /// The least time between two frames (`maxFps`).
    gap: Duration,
    /// CSS pixels per frame pixel, from the last frame.
    scale: (f64, f64),
    tx: mpsc::Sender<CastOutput>,
    /// A command could not go out in time: the browser hangs, the task ends.
    hung: bool,
}

impl Screencast {
    async fn run(mut self, mut input: BoxStream<'static, CastInput>, guard: CastGuard) {
        tracing::debug!(page = %self.tab.id, "screencast started");
        let mut ack: Option<(i64, Instant)> = None;
        let mut last_ack = Instant::now()
            .checked_sub(self.gap)
            .unwrap_or_else(Instant::now);
        let mut budget = Budget::new();
        while !self.hung {
            let due = ack.map(|(_, at)| at);
            match next_step(&mut self.cdp, &mut input, &self.tx, due).await {
                Step::Gone => break,
                Step::Quiet => {}
                Step::Timer => {
                    if let Some((frame, _)) = ack.take() {
                        last_ack = Instant::now();
                        self.ack(frame).await;
                    }
                }
                Step::Input(msg) => {
                    if budget.take() && msg.check().is_ok() {
                        self.input(msg).await;
                    }
                }
                Step::Event(ev) => {
                    if let Some(frame) = ev.decode::<EventScreencastFrame>() {
                        if ev.session_id.as_deref() != Some(self.session.as_ref()) {
                            continue;
                        }
                        self.frame(&frame);
                        // The browser sends the next frame once this one is acknowledged:
                        // holding the ack back is what keeps to `maxFps`.
                        let at = last_ack + self.gap;
                        if at <= Instant::now() {
                            last_ack = Instant::now();
                            self.ack(frame.session_id).await;
                        } else {
                            ack = Some((frame.session_id, at));
                        }
                    } else if let Some(info) = ev.decode::<EventTargetInfoChanged>() {
                        let info = info.target_info;
                        if info.target_id == self.target {
                            if info.url != self.tab.url {
                                self.tab.favicon = None;
                            }
                            self.tab.url = info.url;
                            self.tab.title = info.title;
                        }
                    } else if let Some(gone) = ev.decode::<EventTargetDestroyed>()
                        && gone.target_id == self.target
                    {
                        self.closed().await;
                        break;
                    } else if let Some(crash) = ev.decode::<EventTargetCrashed>()
                        && crash.target_id == self.target
                    {
                        // A crashed renderer sends no more frames: end rather than hold a
                        // frozen screen and a viewer slot.
                        tracing::debug!(page = %self.tab.id, status = %crash.status, "screencast page crashed");
                        self.closed().await;
                        break;
                    }
                }
            }
        }
        let _ = self.send(true, StopScreencastParams::default()).await;
        let detach = self.cdp.detach(&self.session);
        let _ = tokio::time::timeout(BROWSER_TIMEOUT, detach).await;
        drop(guard);
        tracing::debug!(page = %self.tab.id, "screencast stopped");
    }

    fn frame(&mut self, frame: &EventScreencastFrame) {
        let data: &str = frame.data.as_ref();
        if let Some((w, h)) = jpeg_size(data) {
            let m = &frame.metadata;
            self.scale = (
                m.device_width / f64::from(w),
                m.device_height / f64::from(h),
            );
        }
        let out = CastOutput::Frame(CastFrame {
            page_id: self.tab.id.clone(),
            url: self.tab.url.clone(),
            title: self.tab.title.clone(),
            favicon: self.tab.favicon.clone(),
            data: data.to_string(),
        });
        // A viewer that is behind misses this frame; a newer one follows. The last slot is
        // kept for control events, which are never dropped.
        if self.tx.capacity() > 1 {
            let _ = self.tx.try_send(out);
        }
    }

    /// Tells the viewer its page is gone (closed or crashed).
    async fn closed(&mut self) {
        let page_id = self.tab.id.clone();
        control(&self.tx, CastEvent::TargetClosed { page_id }).await;
    }

    async fn ack(&mut self, frame: i64) {
        let _ = self.send(true, ScreencastFrameAckParams::new(frame)).await;
    }

    /// Sends `cmd` in the page's session (or to the browser), giving up after
    /// [`BROWSER_TIMEOUT`]; a browser that takes no more marks the screencast hung, which
    /// ends it.
    async fn send<C: chromiumoxide::types::Command>(
        &mut self,
        in_page: bool,
        cmd: C,
    ) -> Result<(), CdpError> {
        let s = in_page.then_some(&self.session);
        match tokio::time::timeout(BROWSER_TIMEOUT, self.cdp.send_in(s, cmd)).await {
            Ok(sent) => sent.map(drop),
            Err(_) => {
                self.hung = true;
                Err(CdpError::Timeout("sending to the page".into()))
            }
        }
    }

    /// Hands a viewer's message to the page. Input is sent without waiting for its answer: a
    /// click that opens an `alert` is answered only once the dialog goes.
    async fn input(&mut self, msg: CastInput) {
        let interactive = self.interactive;
        let sent = match msg {
            CastInput::MouseEvent { event } if interactive => {
                let params = mouse(&event, self.scale);
                self.send(true, params).await
            }
            CastInput::KeyEvent { event } if interactive => {
                let kind = match (event.kind, &event.text) {
                    (KeyKind::KeyDown, None) if event.key.as_deref() != Some("Enter") => {
                        DispatchKeyEventType::RawKeyDown
                    }
                    (KeyKind::KeyDown, _) => DispatchKeyEventType::KeyDown,
                    (KeyKind::KeyUp, _) => DispatchKeyEventType::KeyUp,
                    (KeyKind::RawKeyDown, _) => DispatchKeyEventType::RawKeyDown,
                    (KeyKind::Char, _) => DispatchKeyEventType::Char,
                };
                let text = match (kind.clone(), event.key.as_deref()) {
                    (DispatchKeyEventType::KeyDown, Some("Enter")) => Some("\r".to_string()),
                    (DispatchKeyEventType::KeyDown | DispatchKeyEventType::Char, _) => {
                        event.text.clone()
                    }
                    _ => None,
                };
                let mut params = DispatchKeyEventParams::new(kind);
                params.unmodified_text.clone_from(&text);
                params.text = text;
                params.code = event.code;
                params.key = event.key;
                params.windows_virtual_key_code = event.key_code;
                params.native_virtual_key_code = event.key_code;
                params.modifiers = event.modifiers;
                self.send(true, params).await
            }
            CastInput::Navigation { event } if interactive => match (event.url, event.action) {
                // `file://` and every other scheme are the owner's only (checked before, and
                // here again, at the one place a viewer's URL reaches the browser).
                (Some(url), _) if is_web_url(&url) => {
                    self.send(true, NavigateParams::new(url)).await
                }
                (Some(_), _) => Ok(()),
                (None, Some(NavigationAction::Refresh)) => {
                    self.send(true, ReloadParams::default()).await
                }
                (None, Some(NavigationAction::Back)) => {
                    self.send(true, by_value("history.back()")).await
                }
                (None, Some(NavigationAction::Forward)) => {
                    self.send(true, by_value("history.forward()")).await
                }
                (None, None) => Ok(()),
            },
            CastInput::CloseTab {} if interactive => {
                let close = CloseTargetParams::new(self.target.clone());
                self.send(false, close).await
            }
            CastInput::GetSelectedText {} => {
                let read = by_value("String(window.getSelection() || '')");
                let call = self.cdp.call_in(Some(&self.session), read);
                let text = match tokio::time::timeout(SELECTION_TIMEOUT, call).await {
                    Ok(Ok(r)) => r.result.value.and_then(|v| v.as_str().map(str::to_string)),
                    _ => None,
                };
                let answer = CastEvent::SelectedTextResponse {
                    page_id: self.tab.id.clone(),
                    text: text.unwrap_or_default(),
                };
                control(&self.tx, answer).await;
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(err) = sent {
            tracing::debug!(%err, "viewer input did not reach the page");
        }
    }
}

/// Queues a control event for the viewer, waiting (up to [`CONTROL_TIMEOUT`]) for room
/// rather than dropping it as a frame would be.
async fn control(tx: &mpsc::Sender<CastOutput>, event: CastEvent) {
    let send = tx.send(CastOutput::Event(event));
    if !matches!(
        tokio::time::timeout(CONTROL_TIMEOUT, send).await,
        Ok(Ok(()))
    ) {
        tracing::debug!("a viewer did not take a control event");
    }
}

/// `Input.dispatchMouseEvent` for a viewer's mouse event in frame pixels.
fn mouse(event: &MouseInput, (sx, sy): (f64, f64)) -> DispatchMouseEventParams {
    let kind = match event.kind {
        MouseKind::MousePressed => DispatchMouseEventType::MousePressed,
        MouseKind::MouseReleased => DispatchMouseEventType::MouseReleased,
        MouseKind::MouseMoved => DispatchMouseEventType::MouseMoved,
        MouseKind::MouseWheel => DispatchMouseEventType::MouseWheel,
    };
    let named = event.button.unwrap_or(MouseButton::None);
    // The buttons held: as the viewer says, else the named one (held after a press and during
    // a move, not after its release).
    let buttons = event.buttons.unwrap_or(match event.kind {
        MouseKind::MouseReleased | MouseKind::MouseWheel => 0,
        _ => named.bit(),
    });
    // A move names the button held (a drag), the first by DOM order; CDP needs both.
    let named = match (event.kind, named) {
        (MouseKind::MouseMoved, MouseButton::None) => [
            MouseButton::Left,
            MouseButton::Right,
            MouseButton::Middle,
            MouseButton::Back,
            MouseButton::Forward,
        ]
        .into_iter()
        .find(|b| buttons & b.bit() != 0)
        .unwrap_or(MouseButton::None),
        (_, b) => b,
    };
    let button = match named {
        MouseButton::None => CdpButton::None,
        MouseButton::Left => CdpButton::Left,
        MouseButton::Middle => CdpButton::Middle,
        MouseButton::Right => CdpButton::Right,
        MouseButton::Back => CdpButton::Back,
        MouseButton::Forward => CdpButton::Forward,
    };
    let clicks = match event.kind {
        MouseKind::MousePressed | MouseKind::MouseReleased => event.click_count.unwrap_or(1).max(1),
        _ => 0,
    };
    let mut params = DispatchMouseEventParams::new(kind, event.x * sx, event.y * sy);
    params.button = Some(button);
    params.buttons = Some(buttons);
    params.click_count = Some(clicks);
    params.modifiers = event.modifiers;
    if event.kind == MouseKind::MouseWheel {
        params.delta_x = Some(event.delta_x.unwrap_or(0.0));
        params.delta_y = Some(event.delta_y.unwrap_or(0.0));
    }
    params
}

/// Width and height of a base64 JPEG, from its start-of-frame marker (within the first few
/// KiB: only tables come before it).
fn jpeg_size(b64: &str) -> Option<(u16, u16)> {
    let head = &b64[..b64.len().min(8192) / 4 * 4];
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(head)
        .ok()?;
    let mut i = 2;
    while i + 9 < bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        // SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]);
            let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]);
            return (w > 0 && h > 0).then_some((w, h));
        }
        i += 2 + len;
    }
    None
}

/// At most [`MAX_INPUTS_PER_SECOND`] messages a second.
struct Budget {
    window: Instant,
    used: u32,
}

impl Budget {
    fn new() -> Self {
        Budget {
            window: Instant::now(),
            used: 0,
        }
    }

    fn take(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.used = 0;
        }
        self.used += 1;
        self.used <= MAX_INPUTS_PER_SECOND
    }
}

/// steel's tab-discovery socket: the session's pages, sent again whenever they change.
struct TabWatch {
    cdp: Cdp,
    http: reqwest::Client,
    worker: WorkerInfo,
    tabs: Vec<TabInfo>,
    tx: mpsc::Sender<CastOutput>,
}

impl TabWatch {
    async fn run(mut self, mut input: BoxStream<'static, CastInput>, guard: CastGuard) {
        let mut due = None;
        if self.send_list().await.is_err() {
            return;
        }
        loop {
            match next_step(&mut self.cdp, &mut input, &self.tx, due).await {
                Step::Gone => break,
                Step::Quiet | Step::Input(_) => {}
                Step::Timer => {
                    due = None;
                    match tabs(&self.http, &self.worker).await {
                        Ok(now) if now != self.tabs => {
                            self.tabs = now;
                            if self.send_list().await.is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                Step::Event(ev) => {
                    if let Some(gone) = ev.decode::<EventTargetDestroyed>()
                        && self.tabs.iter().any(|t| t.id == gone.target_id.as_ref())
                    {
                        let page_id = gone.target_id.as_ref().to_string();
                        let closed = CastOutput::Event(CastEvent::TabClosed { page_id });
                        if self.tx.send(closed).await.is_err() {
                            break;
                        }
                    }
                    let about_pages = ev.is::<EventTargetCreated>()
                        || ev.is::<EventTargetDestroyed>()
                        || ev.is::<EventTargetInfoChanged>();
                    if about_pages && due.is_none() {
                        due = Some(Instant::now() + TAB_LIST_DEBOUNCE);
                    }
                }
            }
        }
        drop(guard);
    }

    async fn send_list(&mut self) -> Result<(), ()> {
        let list = CastEvent::TabList {
            first_tab_id: self.tabs.first().map(|t| t.id.clone()),
            tabs: self.tabs.clone(),
        };
        self.tx.send(CastOutput::Event(list)).await.map_err(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_size_reads_the_frame_header() {
        // SOI, APP0 (len 16), SOF0 (len 17): 480 high, 640 wide.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jpeg.extend([0u8; 14]);
        jpeg.extend([0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0xE0, 0x02, 0x80]);
        jpeg.extend([0u8; 14]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&jpeg);
        assert_eq!(jpeg_size(&b64), Some((640, 480)));
        assert_eq!(jpeg_size("bm90IGEganBlZw=="), None);
        assert_eq!(jpeg_size("%%%"), None);
    }

    #[test]
    fn sockets_are_counted_and_bounded() {
        let casts = Arc::new(Casts::new());
        let guards: Vec<_> = (0..MAX_SCREENCASTS_PER_SESSION)
            .map(|_| casts.enter("a".into(), true).unwrap())
            .collect();
        assert_eq!(casts.viewers("a"), MAX_SCREENCASTS_PER_SESSION);
        let refused = casts.enter("a".into(), true).err().unwrap();
        assert_eq!(refused.kind, HostErrorKind::Busy);
        let watcher = casts.enter("a".into(), false).unwrap();
        assert_eq!(casts.viewers("b"), 0);
        drop(guards);
        assert_eq!(casts.viewers("a"), 0);
        drop(watcher);
        assert!(casts.counts.lock().unwrap().is_empty());
    }

    #[test]
    fn mouse_events_scale_to_css_pixels() {
        let event = MouseInput {
            kind: MouseKind::MousePressed,
            x: 100.0,
            y: 50.0,
            button: Some(MouseButton::Left),
            buttons: None,
            modifiers: None,
            click_count: None,
            delta_x: None,
            delta_y: None,
        };
        let p = mouse(&event, (2.0, 2.0));
        assert_eq!(
            (p.x, p.y, p.click_count, p.buttons),
            (200.0, 100.0, Some(1), Some(1))
        );
    }

    #[test]
    fn a_move_with_a_button_held_is_a_drag() {
        let at = |kind, button, buttons| MouseInput {
            kind,
            x: 1.0,
            y: 1.0,
            button,
            buttons,
            modifiers: None,
            click_count: None,
            delta_x: None,
            delta_y: None,
        };
        let cdp = |p: DispatchMouseEventParams| (p.button, p.buttons);
        // bro's viewer sends the DOM's `buttons` on every event.
        assert_eq!(
            cdp(mouse(
                &at(MouseKind::MouseMoved, Some(MouseButton::None), Some(1)),
                (1.0, 1.0)
            )),
            (Some(CdpButton::Left), Some(1))
        );
        assert_eq!(
            cdp(mouse(&at(MouseKind::MouseMoved, None, Some(6)), (1.0, 1.0))),
            (Some(CdpButton::Right), Some(6))
        );
        assert_eq!(
            cdp(mouse(&at(MouseKind::MouseMoved, None, Some(0)), (1.0, 1.0))),
            (Some(CdpButton::None), Some(0))
        );
        // steel's viewer names the button held on a move and sends no `buttons`.
        assert_eq!(
            cdp(mouse(
                &at(MouseKind::MouseMoved, Some(MouseButton::Left), None),
                (1.0, 1.0)
            )),
            (Some(CdpButton::Left), Some(1))
        );
        assert_eq!(
            cdp(mouse(
                &at(MouseKind::MousePressed, Some(MouseButton::Back), None),
                (1.0, 1.0)
            )),
            (Some(CdpButton::Back), Some(8))
        );
        // A release holds no more the button it releases.
        assert_eq!(
            cdp(mouse(
                &at(MouseKind::MouseReleased, Some(MouseButton::Right), None),
                (1.0, 1.0)
            )),
            (Some(CdpButton::Right), Some(0))
        );
    }

    #[test]
    fn only_small_data_favicons_reach_a_viewer() {
        assert_eq!(favicon("http://192.168.1.1/favicon.ico"), None);
        assert_eq!(favicon("https://example.com/favicon.ico"), None);
        assert_eq!(favicon("data:text/html,<script>"), None);
        assert_eq!(
            favicon("DATA:IMAGE/png;base64,AA"),
            Some("DATA:IMAGE/png;base64,AA".into())
        );
        let big = format!("data:image/png;base64,{}", "A".repeat(MAX_FAVICON));
        assert_eq!(favicon(&big), None);
    }
}
