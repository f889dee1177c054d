//! The TUI's state and its pure update function. No drawing, no I/O.

use std::collections::{HashMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::protocol::cluster::ClusterStatus;
use crate::protocol::control::{Dashboard, InvocationRow, JournalEntry, SessionRow};
use crate::protocol::session::SessionStatus;
use crate::tui::event::{Action, Event};

/// Samples kept for the chart (one per snapshot, two a second: about three minutes).
pub const HISTORY: usize = 360;

/// Which table has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Sessions,
    Invocations,
}

/// What the keyboard is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a filter after `/`.
    Filter,
    Help,
    /// Asking whether to kill this session.
    ConfirmKill(String),
    /// Showing the selected row in full.
    Details,
}

/// What the daemon said of its cluster, for the nodes view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterView {
    /// Not asked yet, or no answer so far.
    Waiting,
    /// The daemon serves no cluster status (404: a bro older than clusters): a single node.
    SingleNode,
    /// Its answer; `clustered` is false on a single node.
    Status(ClusterStatus),
}

/// Everything the TUI shows.
#[derive(Debug, Clone)]
pub struct App {
    pub snapshot: Option<Dashboard>,
    /// Why the daemon is not answering, while it is not.
    pub down: Option<String>,
    pub pane: Pane,
    pub mode: Mode,
    pub selected_session: usize,
    pub selected_invocation: usize,
    pub filter: String,
    /// A short message for the footer (result of the last action).
    pub notice: Option<String>,
    /// (live sessions, browser memory in MiB) per snapshot, oldest first.
    pub history: VecDeque<(u64, u64)>,
    /// CPU % of each session's browser, from the last two snapshots.
    pub cpu: HashMap<String, f64>,
    last_ticks: HashMap<String, (u64, u64)>,
    /// Whether the top table lists browser processes instead of sessions (`w` toggles it).
    pub show_workers: bool,
    /// Whether the top table lists the cluster's nodes instead of sessions (`c` toggles it).
    pub show_nodes: bool,
    /// The cluster as last asked (while `show_nodes`).
    pub cluster: ClusterView,
    /// Whether the preview pane is shown (`p` toggles it).
    pub show_preview: bool,
    /// URL and title of the last preview: (session id, url, title).
    pub preview: Option<(String, String, String)>,
    /// The journal shown in an invocation's details: (invocation id, entries).
    pub journal: Option<(String, Vec<JournalEntry>)>,
}

impl Default for App {
    fn default() -> Self {
        App {
            snapshot: None,
            down: None,
            pane: Pane::Sessions,
            mode: Mode::Normal,
            selected_session: 0,
            selected_invocation: 0,
            filter: String::new(),
            notice: None,
            history: VecDeque::new(),
            cpu: HashMap::new(),
            last_ticks: HashMap::new(),
            show_workers: false,
            show_nodes: false,
            cluster: ClusterView::Waiting,
            show_preview: true,
            preview: None,
            journal: None,
        }
    }
}

/// Clock ticks per second on Linux (`getconf CLK_TCK`).
const TICKS_PER_SEC: f64 = 100.0;

impl App {
    /// The sessions shown: those matching the filter (id, status, node or URL).
    pub fn sessions(&self) -> Vec<&SessionRow> {
        let Some(snap) = &self.snapshot else {
            return Vec::new();
        };
        let f = self.filter.to_lowercase();
        snap.sessions
            .iter()
            .filter(|s| {
                f.is_empty()
                    || s.session.id.contains(&f)
                    || s.session.status.as_str().contains(&f)
                    || s.node.to_lowercase().contains(&f)
                    || s.session.websocket_url.contains(&f)
            })
            .collect()
    }

    /// The invocations shown: those matching the filter (target or status).
    pub fn invocations(&self) -> Vec<&InvocationRow> {
        let Some(snap) = &self.snapshot else {
            return Vec::new();
        };
        let f = self.filter.to_lowercase();
        snap.invocations
            .iter()
            .filter(|i| {
                f.is_empty()
                    || i.target.to_lowercase().contains(&f)
                    || i.status.as_str().contains(&f)
            })
            .collect()
    }

    /// The selected session, if the sessions pane has one.
    pub fn selected_session(&self) -> Option<&SessionRow> {
        self.sessions().get(self.selected_session).copied()
    }

    /// The session the preview pane shows: the selected one, while it is live.
    pub fn preview_target(&self) -> Option<&str> {
        let row = self.selected_session()?;
        (self.show_preview && row.session.status == SessionStatus::Live)
            .then_some(row.session.id.as_str())
    }

    /// The selected invocation, if any.
    pub fn selected_invocation(&self) -> Option<&InvocationRow> {
        self.invocations().get(self.selected_invocation).copied()
    }

    /// Applies one event; returns the effect to run, if any.
    pub fn handle_event(&mut self, event: Event) -> Option<Action> {
        match event {
            Event::Snapshot(snap) => {
                self.absorb(*snap);
                None
            }
            Event::DaemonDown(why) => {
                self.down = Some(why);
                None
            }
            Event::Cluster(view) => {
                self.cluster = view;
                None
            }
            Event::Notice(text) => {
                self.notice = Some(text);
                None
            }
            Event::Scroll(delta) => {
                self.move_selection(i64::from(delta));
                None
            }
            Event::Key(key) => self.key(key),
            Event::Preview {
                session_id,
                url,
                title,
            } => {
                self.preview = Some((session_id, url, title));
                None
            }
            Event::Journal {
                invocation_id,
                entries,
            } => {
                self.journal = Some((invocation_id, entries));
                None
            }
        }
    }

    fn absorb(&mut self, snap: Dashboard) {
        self.down = None;
        let mut cpu = HashMap::new();
        let mut ticks = HashMap::new();
        // Sessions by id, browsers by `pid:N` (a warm browser has no session yet).
        let samples = snap
            .sessions
            .iter()
            .map(|r| (r.session.id.clone(), r.cpu_ticks))
            .chain(
                snap.workers
                    .iter()
                    .map(|w| (format!("pid:{}", w.pid), w.cpu_ticks)),
            );
        for (id, now_ticks) in samples {
            if let Some((prev_ticks, prev_at)) = self.last_ticks.get(&id)
                && snap.taken_at_ms > *prev_at
            {
                let secs = (snap.taken_at_ms - prev_at) as f64 / 1000.0;
                let used = now_ticks.saturating_sub(*prev_ticks) as f64 / TICKS_PER_SEC;
                cpu.insert(id.clone(), 100.0 * used / secs);
            }
            ticks.insert(id, (now_ticks, snap.taken_at_ms));
        }
        self.cpu = cpu;
        self.last_ticks = ticks;
        let live = snap
            .sessions
            .iter()
            .filter(|s| s.session.status == SessionStatus::Live)
            .count() as u64;
        let mem_mib = snap.sessions.iter().map(|s| s.mem_kib).sum::<u64>() / 1024;
        self.history.push_back((live, mem_mib));
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        self.snapshot = Some(snap);
        self.clamp();
    }

    fn key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Action::Quit);
        }
        match self.mode.clone() {
            Mode::Filter => {
                match key.code {
                    KeyCode::Enter | KeyCode::Esc => self.mode = Mode::Normal,
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Char(c) => self.filter.push(c),
                    _ => {}
                }
                self.clamp();
                None
            }
            Mode::Help | Mode::Details => {
                if matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('q' | '?') | KeyCode::Enter
                ) {
                    self.mode = Mode::Normal;
                }
                None
            }
            Mode::ConfirmKill(id) => {
                self.mode = Mode::Normal;
                matches!(key.code, KeyCode::Char('y' | 'Y') | KeyCode::Enter)
                    .then_some(Action::KillSession(id))
            }
            Mode::Normal => self.normal_key(key),
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Some(Action::Quit),
            KeyCode::Char('j') | KeyCode::Down => self.move_selection(1),
            KeyCode::Char('k') | KeyCode::Up => self.move_selection(-1),
            KeyCode::Char('g') | KeyCode::Home => self.move_selection(i64::MIN / 2),
            KeyCode::Char('G') | KeyCode::End => self.move_selection(i64::MAX / 2),
            KeyCode::Tab | KeyCode::BackTab => {
                self.pane = match self.pane {
                    Pane::Sessions => Pane::Invocations,
                    Pane::Invocations => Pane::Sessions,
                }
            }
            KeyCode::Enter => match self.pane {
                Pane::Sessions => {
                    if self.selected_session().is_some() {
                        self.mode = Mode::Details;
                    }
                }
                Pane::Invocations => {
                    if let Some(inv) = self.selected_invocation() {
                        let id = inv.id.clone();
                        self.mode = Mode::Details;
                        if self.journal.as_ref().is_none_or(|(j, _)| *j != id) {
                            self.journal = None;
                        }
                        return Some(Action::FetchJournal(id));
                    }
                }
            },
            KeyCode::Char('p') => self.show_preview = !self.show_preview,
            KeyCode::Char('w') => {
                self.show_workers = !self.show_workers;
                self.show_nodes = false;
            }
            KeyCode::Char('c') => {
                self.show_nodes = !self.show_nodes;
                self.show_workers = false;
            }
            KeyCode::Char('n') => return Some(Action::CreateSession),
            KeyCode::Char('o') => {
                if self.pane == Pane::Sessions
                    && let Some(row) = self.selected_session()
                {
                    return Some(Action::OpenViewer(row.session.session_viewer_url.clone()));
                }
            }
            KeyCode::Char('d') => {
                if self.pane == Pane::Sessions
                    && let Some(row) = self.selected_session()
                {
                    if row.session.status.is_final() {
                        self.notice = Some(format!("{} has already ended", short(&row.session.id)));
                    } else {
                        self.mode = Mode::ConfirmKill(row.session.id.clone());
                    }
                }
            }
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('?') => self.mode = Mode::Help,
            _ => {}
        }
        None
    }

    fn move_selection(&mut self, delta: i64) {
        let sel = match self.pane {
            Pane::Sessions => &mut self.selected_session,
            Pane::Invocations => &mut self.selected_invocation,
        };
        *sel = (*sel as i64).saturating_add(delta).max(0) as usize;
        self.clamp();
    }

    /// Keeps the selections inside their tables.
    fn clamp(&mut self) {
        let sessions = self.sessions().len();
        let invocations = self.invocations().len();
        self.selected_session = self.selected_session.min(sessions.saturating_sub(1));
        self.selected_invocation = self.selected_invocation.min(invocations.saturating_sub(1));
    }
}

/// The first 8 characters of an id.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::*;
    use crate::tui::fixtures;

    fn key(c: KeyCode) -> Event {
        Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
    }

    fn app() -> App {
        let mut app = App::default();
        app.handle_event(Event::Snapshot(Box::new(fixtures::busy())));
        app
    }

    #[test]
    fn moving_stays_inside_the_table() {
        let mut app = app();
        app.handle_event(key(KeyCode::Char('k')));
        assert_eq!(app.selected_session, 0);
        for _ in 0..20 {
            app.handle_event(key(KeyCode::Char('j')));
        }
        assert_eq!(app.selected_session, 5);
        app.handle_event(key(KeyCode::Tab));
        assert_eq!(app.pane, Pane::Invocations);
        app.handle_event(Event::Scroll(1));
        assert_eq!(app.selected_invocation, 1);
    }

    #[test]
    fn kill_asks_first() {
        let mut app = app();
        assert_eq!(app.handle_event(key(KeyCode::Char('d'))), None);
        let id = "1b2f6a0e-7d2f-4a51-9b0e-3f1d2c4b5a01".to_string();
        assert_eq!(app.mode, Mode::ConfirmKill(id.clone()));
        assert_eq!(
            app.handle_event(key(KeyCode::Char('y'))),
            Some(Action::KillSession(id))
        );
        app.handle_event(key(KeyCode::Char('d')));
        assert_eq!(
            app.handle_event(key(KeyCode::Char('n'))),
            None,
            "any other key keeps it"
        );
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn o_opens_the_selected_sessions_viewer() {
        let mut app = app();
        let url = app
            .selected_session()
            .unwrap()
            .session
            .session_viewer_url
            .clone();
        assert!(url.contains(&app.selected_session().unwrap().session.id));
        assert_eq!(
            app.handle_event(key(KeyCode::Char('o'))),
            Some(Action::OpenViewer(url))
        );
        // Not from the invocations pane, nor with nothing to open.
        app.handle_event(key(KeyCode::Tab));
        assert_eq!(app.handle_event(key(KeyCode::Char('o'))), None);
        assert_eq!(App::default().handle_event(key(KeyCode::Char('o'))), None);
    }

    #[test]
    fn ended_sessions_are_not_killed_again() {
        let mut app = app();
        app.handle_event(key(KeyCode::Char('G')));
        assert_eq!(app.handle_event(key(KeyCode::Char('d'))), None);
        assert_eq!(app.mode, Mode::Normal);
        assert!(
            app.notice
                .as_deref()
                .unwrap_or_default()
                .contains("already ended")
        );
    }

    #[test]
    fn filter_new_help_quit() {
        let mut app = app();
        app.handle_event(key(KeyCode::Char('/')));
        for c in "fail".chars() {
            app.handle_event(key(KeyCode::Char(c)));
        }
        app.handle_event(key(KeyCode::Enter));
        assert_eq!(app.sessions().len(), 1);
        assert_eq!(
            app.handle_event(key(KeyCode::Char('n'))),
            Some(Action::CreateSession)
        );
        app.handle_event(key(KeyCode::Char('?')));
        assert_eq!(app.mode, Mode::Help);
        assert_eq!(app.handle_event(key(KeyCode::Esc)), None);
        assert_eq!(
            app.handle_event(key(KeyCode::Char('q'))),
            Some(Action::Quit)
        );
    }

    #[test]
    fn cpu_comes_from_two_snapshots() {
        let mut app = app();
        let mut next = fixtures::busy();
        next.taken_at_ms += 1000;
        next.sessions[0].cpu_ticks += 50;
        app.handle_event(Event::Snapshot(Box::new(next)));
        let id = "1b2f6a0e-7d2f-4a51-9b0e-3f1d2c4b5a01";
        assert!((app.cpu[id] - 50.0).abs() < 0.01, "{:?}", app.cpu);
        assert_eq!(app.history.len(), 2);
    }

    #[test]
    fn preview_follows_the_selected_live_session_and_p_toggles_it() {
        let mut app = app();
        let first = app.selected_session().unwrap().session.id.clone();
        assert_eq!(app.preview_target(), Some(first.as_str()));
        app.handle_event(key(KeyCode::Char('p')));
        assert_eq!(app.preview_target(), None);
        app.handle_event(key(KeyCode::Char('p')));
        app.handle_event(key(KeyCode::Char('G')));
        assert_eq!(app.preview_target(), None, "an ended session has no page");
    }

    #[test]
    fn enter_on_an_invocation_asks_for_its_journal() {
        let mut app = app();
        app.handle_event(key(KeyCode::Tab));
        let id = app.selected_invocation().unwrap().id.clone();
        assert_eq!(
            app.handle_event(key(KeyCode::Enter)),
            Some(Action::FetchJournal(id.clone()))
        );
        assert_eq!(app.mode, Mode::Details);
        app.handle_event(Event::Journal {
            invocation_id: id.clone(),
            entries: vec![],
        });
        assert_eq!(app.journal, Some((id, vec![])));
    }

    #[test]
    fn c_shows_the_nodes_instead_of_sessions_or_browsers() {
        let mut app = app();
        assert_eq!(app.cluster, ClusterView::Waiting);
        app.handle_event(key(KeyCode::Char('w')));
        app.handle_event(key(KeyCode::Char('c')));
        assert!(app.show_nodes && !app.show_workers);
        app.handle_event(Event::Cluster(ClusterView::Status(fixtures::cluster())));
        assert!(matches!(app.cluster, ClusterView::Status(_)));
        app.handle_event(key(KeyCode::Char('w')));
        assert!(!app.show_nodes && app.show_workers);
        app.handle_event(key(KeyCode::Char('c')));
        app.handle_event(key(KeyCode::Char('c')));
        assert!(!app.show_nodes && !app.show_workers);
    }

    #[test]
    fn the_filter_matches_node_names() {
        let mut app = app();
        app.filter = "LOCAL".into();
        assert_eq!(app.sessions().len(), 6);
        app.filter = "node-b".into();
        assert_eq!(app.sessions().len(), 0);
    }

    #[test]
    fn daemon_down_then_back() {
        let mut app = app();
        app.handle_event(Event::DaemonDown("gone".into()));
        assert!(app.down.is_some());
        app.handle_event(Event::Snapshot(Box::new(fixtures::empty())));
        assert!(app.down.is_none());
        assert_eq!(app.selected_session, 0);
    }
}
