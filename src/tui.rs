//! `bro tui`: a live dashboard of sessions, browsers and Restate invocations.
//!
//! `App` (state + pure `handle_event`) lives in `tui/app.rs`, drawing in `tui/view.rs`; this
//! file owns the terminal and the only I/O: a snapshot from the daemon twice a second (with
//! its cluster's nodes while they show), and the create/kill actions, all over the Unix socket.

pub mod app;
pub mod event;
#[cfg(test)]
mod fixtures;
pub mod graphics;
pub mod opener;
pub mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use base64::Engine;
use crossterm::event::KeyEvent;
use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream, KeyEventKind,
    MouseEventKind,
};
use futures_util::StreamExt;
use image::DynamicImage;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::StatefulProtocol;
use ratatui_image::{Resize, StatefulImage};
use tokio::sync::mpsc;

use crate::client::DaemonClient;
use crate::paths::Paths;
use crate::protocol::steel::CreateSessionRequest;
use app::{App, ClusterView};
use event::{Action, Event};

/// How often the dashboard refreshes.
const REFRESH: Duration = Duration::from_millis(500);
/// How often the preview pane takes a new picture of the selected session's page.
const PREVIEW_EVERY: Duration = Duration::from_millis(1000);

/// Runs the dashboard until `q`. The terminal is restored on exit and on panic.
pub async fn run(paths: Paths) -> Result<()> {
    // Start the daemon if none runs; if that fails the dashboard says so and keeps trying.
    let client = match crate::client::ensure_daemon(&paths).await {
        Ok(c) => c,
        Err(_) => DaemonClient::new(paths.socket()),
    };
    let mut terminal = ratatui::init();
    // Sixel, kitty or iTerm2 pictures where the terminal answers for them, half blocks
    // elsewhere: asked once, before the event stream starts reading the terminal, and the
    // keys typed meanwhile are handled first (see `graphics`).
    let (picker, typed) = match std::env::var("BRO_TUI_GRAPHICS").as_deref() {
        Ok("halfblocks") => (Picker::halfblocks(), Vec::new()),
        _ => graphics::query_terminal(),
    };
    let _ = crossterm::execute!(std::io::stdout(), EnableMouseCapture);
    let result = event_loop(&mut terminal, client, picker, typed).await;
    let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    client: DaemonClient,
    picker: Picker,
    typed: Vec<KeyEvent>,
) -> Result<()> {
    let mut app = App::default();
    // Keys typed while the terminal was asked about pictures, in order, before any other.
    let mut typed = std::collections::VecDeque::from(typed);
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(REFRESH);
    let mut preview_tick = tokio::time::interval(PREVIEW_EVERY);
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let (pictures_tx, mut pictures) = mpsc::unbounded_channel::<(String, DynamicImage)>();
    let fetching = Arc::new(AtomicBool::new(false));
    let previewing = Arc::new(AtomicBool::new(false));
    // The picture of the session the preview shows: the only drawing state outside `App`.
    let mut picture: Option<(String, StatefulProtocol)> = None;
    loop {
        terminal.draw(|frame| {
            frame.render_widget(&app, frame.area());
            if let (Some(area), Some(target), Some((of, protocol))) = (
                view::preview_picture_area(&app, frame.area()),
                app.preview_target(),
                picture.as_mut(),
            ) && of == target
            {
                let scaled = StatefulImage::default().resize(Resize::Scale(None));
                frame.render_stateful_widget(scaled, area, protocol);
            }
        })?;
        let event = if let Some(key) = typed.pop_front() {
            Event::Key(key)
        } else {
            tokio::select! {
                _ = tick.tick() => {
                    fetch(&client, &tx, &fetching, app.show_nodes);
                    continue;
                }
                _ = preview_tick.tick() => {
                    if let Some(id) = app.preview_target() {
                        fetch_preview(&client, id, &tx, &pictures_tx, &previewing);
                    }
                    continue;
                }
                Some((id, image)) = pictures.recv() => {
                    picture = Some((id, picker.new_resize_protocol(image)));
                    continue;
                }
                Some(ev) = rx.recv() => ev,
                term = input.next() => match term {
                    Some(Ok(TermEvent::Key(key))) if key.kind == KeyEventKind::Press => Event::Key(key),
                    Some(Ok(TermEvent::Mouse(m))) => match m.kind {
                        MouseEventKind::ScrollDown => Event::Scroll(1),
                        MouseEventKind::ScrollUp => Event::Scroll(-1),
                        _ => continue,
                    },
                    Some(Ok(_)) => continue, // resize and the rest: just redraw
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                },
            }
        };
        match app.handle_event(event) {
            None => {}
            Some(Action::Quit) => return Ok(()),
            Some(Action::CreateSession) => {
                app.notice = Some("creating a session…".into());
                let (client, tx) = (client.clone(), tx.clone());
                tokio::spawn(async move {
                    let notice = match client
                        // Queued like any create when the node is full; the header shows it.
                        .create_session(&CreateSessionRequest::default(), false)
                        .await
                    {
                        Ok(s) => format!("created {}", s.id),
                        Err(e) => format!("create failed: {e}"),
                    };
                    let _ = tx.send(Event::Notice(notice));
                });
            }
            Some(Action::FetchJournal(id)) => {
                let (client, tx) = (client.clone(), tx.clone());
                tokio::spawn(async move {
                    let event = match client.journal(&id).await {
                        Ok(entries) => Event::Journal {
                            invocation_id: id,
                            entries,
                        },
                        Err(e) => Event::Notice(format!("journal: {e}")),
                    };
                    let _ = tx.send(event);
                });
            }
            Some(Action::OpenViewer(url)) => {
                app.notice = Some(opener::open(&url));
            }
            Some(Action::KillSession(id)) => {
                let (client, tx) = (client.clone(), tx.clone());
                tokio::spawn(async move {
                    let notice = match client.release_session(&id).await {
                        Ok(_) => format!("released {id}"),
                        Err(e) => format!("kill failed: {e}"),
                    };
                    let _ = tx.send(Event::Notice(notice));
                });
            }
        }
    }
}

/// Asks the daemon for a picture of the session's page in the background (one at a time):
/// its URL and title go to `App`, the decoded picture to the drawing side.
fn fetch_preview(
    client: &DaemonClient,
    id: &str,
    tx: &mpsc::UnboundedSender<Event>,
    pictures: &mpsc::UnboundedSender<(String, DynamicImage)>,
    busy: &Arc<AtomicBool>,
) {
    if busy.swap(true, Ordering::SeqCst) {
        return;
    }
    let (client, id, tx, pictures, busy) = (
        client.clone(),
        id.to_string(),
        tx.clone(),
        pictures.clone(),
        Arc::clone(busy),
    );
    tokio::spawn(async move {
        let answer = tokio::time::timeout(Duration::from_secs(5), client.preview(&id, 640)).await;
        if let Ok(Ok(p)) = answer {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(p.jpeg.as_bytes())
                .ok()
                .and_then(|bytes| image::load_from_memory(&bytes).ok());
            if let Some(image) = decoded {
                let _ = pictures.send((id.clone(), image));
            }
            let _ = tx.send(Event::Preview {
                session_id: id,
                url: p.url,
                title: p.title,
            });
        }
        busy.store(false, Ordering::SeqCst);
    });
}

/// Asks the daemon for a snapshot in the background (one at a time), and for its cluster
/// while the nodes view shows (so a closed view costs the daemon nothing).
fn fetch(
    client: &DaemonClient,
    tx: &mpsc::UnboundedSender<Event>,
    fetching: &Arc<AtomicBool>,
    with_cluster: bool,
) {
    if fetching.swap(true, Ordering::SeqCst) {
        return;
    }
    let (client, tx, fetching) = (client.clone(), tx.clone(), Arc::clone(fetching));
    tokio::spawn(async move {
        let event = match tokio::time::timeout(Duration::from_secs(5), client.dashboard()).await {
            Ok(Ok(snap)) => Event::Snapshot(Box::new(snap)),
            Ok(Err(e)) => Event::DaemonDown(e.to_string()),
            Err(_) => Event::DaemonDown("no answer within 5 s".into()),
        };
        let up = matches!(event, Event::Snapshot(_));
        let _ = tx.send(event);
        if up && with_cluster {
            let answer =
                tokio::time::timeout(Duration::from_secs(5), client.cluster_status()).await;
            let view = match answer {
                Ok(Ok(st)) => Some(ClusterView::Status(st)),
                // A daemon older than clusters: it is a single node.
                Ok(Err(e)) if e.is_not_found() => Some(ClusterView::SingleNode),
                // Kept as last shown; the next tick asks again.
                Ok(Err(_)) | Err(_) => None,
            };
            if let Some(view) = view {
                let _ = tx.send(Event::Cluster(view));
            }
        }
        fetching.store(false, Ordering::SeqCst);
    });
}
