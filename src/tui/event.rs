//! What reaches the TUI (`Event`) and what it asks the outside world to do (`Action`).

use crossterm::event::KeyEvent;

use crate::protocol::control::Dashboard;

/// An input to [`super::app::App::handle_event`].
#[derive(Debug, Clone)]
pub enum Event {
    Key(KeyEvent),
    /// Mouse wheel: +1 down, -1 up.
    Scroll(i8),
    /// A fresh snapshot from the daemon.
    Snapshot(Box<Dashboard>),
    /// The daemon did not answer.
    DaemonDown(String),
    /// The result of an action, for the status line.
    Notice(String),
}

/// An effect the TUI loop runs (the only I/O besides drawing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    CreateSession,
    KillSession(String),
}
