//! What reaches the TUI (`Event`) and what it asks the outside world to do (`Action`).

use crossterm::event::KeyEvent;

use crate::protocol::control::{Dashboard, JournalEntry};
use crate::tui::app::ClusterView;

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
    /// What the daemon said of its cluster (asked with the snapshot while the nodes show).
    Cluster(ClusterView),
    /// The result of an action, for the status line.
    Notice(String),
    /// What a session's page shows now (the picture itself goes to the drawing side).
    Preview {
        session_id: String,
        url: String,
        title: String,
    },
    /// The journal of an invocation, asked for by [`Action::FetchJournal`].
    Journal {
        invocation_id: String,
        entries: Vec<JournalEntry>,
    },
}

/// An effect the TUI loop runs (the only I/O besides drawing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    CreateSession,
    KillSession(String),
    /// Show this viewer URL in the user's browser (`o`).
    OpenViewer(String),
    /// Load the journal of this invocation for its details.
    FetchJournal(String),
}
