//! `bro tui`: a live dashboard of sessions, browsers and Restate invocations.
//!
//! `App` (state + pure `handle_event`) lives in `tui/app.rs`, drawing in `tui/view.rs`; this
//! file owns the terminal and the only I/O: a snapshot from the daemon twice a second, and
//! the create/kill actions, all over the Unix socket.

pub mod app;
pub mod event;
#[cfg(test)]
mod fixtures;
pub mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream, KeyEventKind,
    MouseEventKind,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::client::DaemonClient;
use crate::paths::Paths;
use crate::protocol::steel::CreateSessionRequest;
use app::App;
use event::{Action, Event};

/// How often the dashboard refreshes.
const REFRESH: Duration = Duration::from_millis(500);

/// Runs the dashboard until `q`. The terminal is restored on exit and on panic.
pub async fn run(paths: Paths) -> Result<()> {
    // Start the daemon if none runs; if that fails the dashboard says so and keeps trying.
    let client = match crate::client::ensure_daemon(&paths).await {
        Ok(c) => c,
        Err(_) => DaemonClient::new(paths.socket()),
    };
    let mut terminal = ratatui::init();
    let _ = crossterm::execute!(std::io::stdout(), EnableMouseCapture);
    let result = event_loop(&mut terminal, client).await;
    let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}

async fn event_loop(terminal: &mut ratatui::DefaultTerminal, client: DaemonClient) -> Result<()> {
    let mut app = App::default();
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(REFRESH);
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let fetching = Arc::new(AtomicBool::new(false));
    loop {
        terminal.draw(|frame| frame.render_widget(&app, frame.area()))?;
        let event = tokio::select! {
            _ = tick.tick() => {
                fetch(&client, &tx, &fetching);
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

/// Asks the daemon for a snapshot in the background (one at a time).
fn fetch(client: &DaemonClient, tx: &mpsc::UnboundedSender<Event>, fetching: &Arc<AtomicBool>) {
    if fetching.swap(true, Ordering::SeqCst) {
        return;
    }
    let (client, tx, fetching) = (client.clone(), tx.clone(), Arc::clone(fetching));
    tokio::spawn(async move {
        let event = match tokio::time::timeout(Duration::from_secs(3), client.dashboard()).await {
            Ok(Ok(snap)) => Event::Snapshot(Box::new(snap)),
            Ok(Err(e)) => Event::DaemonDown(e.to_string()),
            Err(_) => Event::DaemonDown("no answer within 3 s".into()),
        };
        let _ = tx.send(event);
        fetching.store(false, Ordering::SeqCst);
    });
}
