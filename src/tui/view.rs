//! Drawing: `impl Widget for &App`, one `render_*` per region, the theme in one place. Pure.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, StatefulWidget, Table, TableState,
    Widget, Wrap,
};

use crate::output::{ago, duration};
use crate::protocol::control::InvocationStatus;
use crate::protocol::session::SessionStatus;
use crate::tui::app::{App, ClusterView, Mode, Pane, short};

/// The theme.
mod theme {
    use ratatui::style::{Color, Modifier, Style};
    pub const TITLE: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    pub const DIM: Style = Style::new().fg(Color::DarkGray);
    pub const HEADER: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
    pub const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
    pub const GOOD: Style = Style::new().fg(Color::Green);
    pub const WARN: Style = Style::new().fg(Color::Yellow);
    pub const BAD: Style = Style::new().fg(Color::Red);
}

/// The colour of a session status: good while live, a warning while it changes, bad once it
/// failed, dim once it is over.
fn session_style(status: SessionStatus) -> Style {
    match status {
        SessionStatus::Live => theme::GOOD,
        SessionStatus::Starting | SessionStatus::Releasing => theme::WARN,
        SessionStatus::Failed => theme::BAD,
        SessionStatus::Released => theme::DIM,
    }
}

/// The colour of an invocation status: good while it runs, a warning while it waits, bad
/// while it is stuck retrying or paused, dim once completed (or unknown).
fn invocation_style(status: &InvocationStatus) -> Style {
    match status {
        InvocationStatus::Running => theme::GOOD,
        InvocationStatus::Pending
        | InvocationStatus::Scheduled
        | InvocationStatus::Suspended
        | InvocationStatus::Inboxed
        | InvocationStatus::Ready => theme::WARN,
        InvocationStatus::BackingOff | InvocationStatus::Paused => theme::BAD,
        InvocationStatus::Completed | InvocationStatus::Other(_) => theme::DIM,
    }
}

/// The regions of the screen.
struct Areas {
    header: Rect,
    sessions: Rect,
    /// The preview pane, on terminals wide enough for it beside the sessions table.
    preview: Option<Rect>,
    invocations: Rect,
    chart: Option<Rect>,
    footer: Rect,
}

/// Columns the sessions table keeps before a preview pane is given room.
const TABLE_WIDTH: u16 = 90;

fn layout(app: &App, area: Rect) -> Areas {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    let [top, lower] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
    let (sessions, preview) = if app.show_preview && top.width >= TABLE_WIDTH + 40 {
        let [table, preview] = Layout::horizontal([
            Constraint::Min(TABLE_WIDTH),
            Constraint::Length((top.width - TABLE_WIDTH).min(90)),
        ])
        .areas(top);
        (table, Some(preview))
    } else {
        (top, None)
    };
    let (invocations, chart) = if lower.width >= 100 {
        let [inv, chart] =
            Layout::horizontal([Constraint::Min(60), Constraint::Length(34)]).areas(lower);
        (inv, Some(chart))
    } else {
        (lower, None)
    };
    Areas {
        header,
        sessions,
        preview,
        invocations,
        chart,
        footer,
    }
}

/// Where the page's picture goes inside the preview pane (below its title and URL lines),
/// when the pane is shown. The drawing loop renders the picture there after the rest.
pub fn preview_picture_area(app: &App, area: Rect) -> Option<Rect> {
    if !matches!(app.mode, Mode::Normal | Mode::Filter) {
        return None; // an overlay covers the screen
    }
    let pane = layout(app, area).preview?;
    let inner = Block::default().borders(Borders::ALL).inner(pane);
    let picture = Rect {
        y: inner.y + 2,
        height: inner.height.saturating_sub(2),
        ..inner
    };
    (picture.width > 0 && picture.height > 0).then_some(picture)
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let areas = layout(self, area);
        render_header(self, areas.header, buf);
        if self.show_nodes {
            render_nodes(self, areas.sessions, buf);
        } else if self.show_workers {
            render_workers(self, areas.sessions, buf);
        } else {
            render_sessions(self, areas.sessions, buf);
        }
        if let Some(pane) = areas.preview {
            render_preview(self, pane, buf);
        }
        render_invocations(self, areas.invocations, buf);
        if let Some(chart) = areas.chart {
            render_chart(self, chart, buf);
        }
        render_footer(self, areas.footer, buf);
        match &self.mode {
            Mode::Help => render_help(area, buf),
            Mode::ConfirmKill(id) => render_confirm(id, area, buf),
            Mode::Details => render_details(self, area, buf),
            Mode::Normal | Mode::Filter => {}
        }
    }
}

fn render_header(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(" bro ", theme::TITLE));
    let lines = match (&app.snapshot, &app.down) {
        (_, Some(why)) => vec![Line::from(vec![
            Span::styled("daemon not answering ", theme::BAD),
            Span::styled(format!("({why}); retrying…"), theme::DIM),
        ])],
        (None, None) => vec![Line::styled("connecting to the daemon…", theme::DIM)],
        (Some(snap), None) => {
            let st = &snap.status;
            let restate = if snap.restate_ok {
                Span::styled(format!("restate ✓ {}", st.restate.admin_url), theme::GOOD)
            } else {
                Span::styled("restate ✗ not answering".to_string(), theme::BAD)
            };
            let (used, cap, queued) = st.pool.as_ref().map_or((0, st.max_sessions, 0), |p| {
                (p.used, p.capacity, p.queued.len())
            });
            vec![Line::from(vec![
                Span::raw(format!("daemon ✓ pid {} v{}  ", st.pid, st.version)),
                Span::styled(st.api_url.clone(), theme::TITLE),
                Span::raw("  "),
                restate,
                Span::raw(format!("  node {} ", st.node)),
                Span::styled(
                    format!("{used}/{cap} sessions"),
                    if used >= cap { theme::BAD } else { theme::GOOD },
                ),
                Span::raw("  "),
                Span::styled(
                    format!("queue {queued}/{}", st.max_queue),
                    if queued > 0 { theme::WARN } else { theme::DIM },
                ),
                Span::styled(
                    match st.warm {
                        0 => String::new(),
                        n => format!(
                            "  warm {}/{n}",
                            st.pool.as_ref().map_or(0, |p| p.warm_ready.len())
                        ),
                    },
                    theme::DIM,
                ),
            ])]
        }
    };
    Paragraph::new(lines).block(block).render(area, buf);
}

fn render_sessions(app: &App, area: Rect, buf: &mut Buffer) {
    let rows = app.sessions();
    let wide = area.width >= 90;
    let header: Vec<&str> = if wide {
        vec![
            "ID", "STATUS", "AGE", "LEFT", "NODE", "PORT", "PID", "MEM", "CPU", "CDP",
        ]
    } else {
        vec!["ID", "STATUS", "AGE", "LEFT"]
    };
    let body: Vec<Row<'_>> = rows
        .iter()
        .map(|r| {
            let s = &r.session;
            let open = matches!(s.status, SessionStatus::Starting | SessionStatus::Live);
            let left = match (open, s.timeout) {
                (false, _) => "-".to_string(),
                (true, 0) => "never".to_string(),
                (true, t) => duration(t.saturating_sub(s.duration)),
            };
            let mut cells = vec![
                Cell::from(short(&s.id).to_string()),
                Cell::from(Span::styled(s.status.to_string(), session_style(s.status))),
                Cell::from(duration(s.duration)),
                Cell::from(left),
            ];
            if wide {
                let cpu = app
                    .cpu
                    .get(&s.id)
                    .map_or("-".to_string(), |c| format!("{c:.0}%"));
                cells.extend([
                    Cell::from(r.node.clone()),
                    Cell::from(r.port.map_or("-".into(), |p| p.to_string())),
                    Cell::from(r.pid.map_or("-".into(), |p| p.to_string())),
                    Cell::from(if r.mem_kib > 0 {
                        format!("{} MiB", r.mem_kib / 1024)
                    } else {
                        "-".into()
                    }),
                    Cell::from(cpu),
                    Cell::from(r.clients.to_string()),
                ]);
            }
            Row::new(cells)
        })
        .collect();
    let widths: Vec<Constraint> = if wide {
        [9, 10, 8, 8, 8, 6, 8, 9, 5, 4]
            .into_iter()
            .map(Constraint::Length)
            .collect()
    } else {
        [9, 10, 7, 7].into_iter().map(Constraint::Length).collect()
    };
    let title = format!(" sessions ({}) ", rows.len());
    let table = Table::new(body, widths)
        .header(Row::new(header).style(theme::HEADER))
        .block(pane_block(title, app.pane == Pane::Sessions))
        .row_highlight_style(theme::SELECTED);
    let mut state = TableState::default();
    if app.pane == Pane::Sessions && !rows.is_empty() {
        state.select(Some(app.selected_session));
    }
    StatefulWidget::render(table, area, buf, &mut state);
    if rows.is_empty() && area.height > 3 {
        let hint = Paragraph::new(Line::styled(
            "no sessions — press n to create one",
            theme::DIM,
        ));
        hint.render(
            Rect {
                x: area.x + 2,
                y: area.y + 2,
                width: area.width.saturating_sub(4),
                height: 1,
            },
            buf,
        );
    }
}

/// The browsers of this node, one process group each: live sessions' and the warm pool's.
fn render_workers(app: &App, area: Rect, buf: &mut Buffer) {
    let workers = app
        .snapshot
        .as_ref()
        .map(|s| s.workers.as_slice())
        .unwrap_or_default();
    let body: Vec<Row<'_>> = workers
        .iter()
        .map(|w| {
            let owner = match &w.session {
                Some(id) => Span::raw(short(id).to_string()),
                None => Span::styled("warm", theme::WARN),
            };
            let cpu = app
                .cpu
                .get(&format!("pid:{}", w.pid))
                .map_or("-".to_string(), |c| format!("{c:.0}%"));
            Row::new(vec![
                Cell::from(w.pid.to_string()),
                Cell::from(owner),
                Cell::from(w.port.to_string()),
                Cell::from(w.processes.to_string()),
                Cell::from(format!("{} MiB", w.mem_kib / 1024)),
                Cell::from(cpu),
            ])
        })
        .collect();
    let widths = [8, 10, 7, 7, 10, 6].map(Constraint::Length);
    let total: u64 = workers.iter().map(|w| w.mem_kib).sum::<u64>() / 1024;
    let title = format!(" browsers ({}, {total} MiB) ", workers.len());
    let table = Table::new(body, widths)
        .header(Row::new(["PID", "FOR", "PORT", "PROCS", "MEM", "CPU"]).style(theme::HEADER))
        .block(pane_block(title, app.pane == Pane::Sessions));
    Widget::render(table, area, buf);
}

/// The cluster's nodes, `*` on the one that answered; "single node" when the daemon is not
/// clustered (or predates clusters).
fn render_nodes(app: &App, area: Rect, buf: &mut Buffer) {
    let (title, nodes, note) = match &app.cluster {
        ClusterView::Waiting => (" nodes ".to_string(), &[][..], Some("asking the daemon…")),
        ClusterView::SingleNode => (
            " nodes: single node ".to_string(),
            &[][..],
            Some("single node: this daemon serves no cluster status (restart it with this bro)"),
        ),
        ClusterView::Status(st) if !st.clustered => (
            format!(" nodes: single node {} ", st.node),
            st.nodes.as_slice(),
            None,
        ),
        ClusterView::Status(st) => {
            let healthy = st.nodes.iter().filter(|n| n.healthy).count();
            let members = st.members.len().max(st.nodes.len());
            let title = format!(
                " nodes of cluster {} ({healthy}/{members} healthy, a majority is needed) ",
                st.cluster
            );
            (title, st.nodes.as_slice(), None)
        }
    };
    let body: Vec<Row<'_>> = nodes
        .iter()
        .map(|n| {
            let (health, style) = if n.healthy {
                ("yes", theme::GOOD)
            } else {
                ("no", theme::BAD)
            };
            let full = n.used >= n.capacity;
            let restate = match n.restate.as_str() {
                "alive" => theme::GOOD,
                "unreachable" => theme::BAD,
                _ => theme::DIM,
            };
            Row::new(vec![
                Cell::from(if n.this { "*" } else { "" }),
                Cell::from(n.name.clone()),
                Cell::from(n.address.clone()),
                Cell::from(Span::styled(health, style)),
                Cell::from(Span::styled(
                    format!("{}/{}", n.used, n.capacity),
                    if full { theme::WARN } else { Style::new() },
                )),
                Cell::from(n.queued.to_string()),
                Cell::from(ago(n.last_seen_ms)),
                Cell::from(Span::styled(n.restate.clone(), restate)),
            ])
        })
        .collect();
    let widths = [1, 16, 24, 7, 9, 6, 11, 12].map(Constraint::Length);
    let header = [
        "",
        "NODE",
        "ADDRESS",
        "HEALTHY",
        "USED/CAP",
        "QUEUED",
        "LAST SEEN",
        "RESTATE",
    ];
    let table = Table::new(body, widths)
        .header(Row::new(header).style(theme::HEADER))
        .block(pane_block(title, app.pane == Pane::Sessions));
    Widget::render(table, area, buf);
    if let Some(note) = note
        && area.height > 3
    {
        Paragraph::new(Line::styled(note, theme::DIM)).render(
            Rect {
                x: area.x + 2,
                y: area.y + 2,
                width: area.width.saturating_sub(4),
                height: 1,
            },
            buf,
        );
    }
}

/// The preview pane's frame and text; the picture is drawn into it by the caller.
fn render_preview(app: &App, area: Rect, buf: &mut Buffer) {
    let target = app.preview_target();
    let title = match target {
        Some(id) => format!(" page of {} ", short(id)),
        None => " page ".to_string(),
    };
    let block = pane_block(title, false);
    let inner = block.inner(area);
    block.render(area, buf);
    let lines = match (target, &app.preview) {
        (None, _) => vec![Line::styled(
            "select a live session to see its page",
            theme::DIM,
        )],
        (Some(id), Some((of, url, title))) if of == id => vec![
            Line::styled(
                if title.is_empty() {
                    "(no title)".to_string()
                } else {
                    title.clone()
                },
                theme::TITLE,
            ),
            Line::styled(
                if url.is_empty() {
                    "(no page open)".to_string()
                } else {
                    url.clone()
                },
                theme::DIM,
            ),
        ],
        (Some(_), _) => vec![Line::styled("taking a screenshot…", theme::DIM)],
    };
    Paragraph::new(lines).render(inner, buf);
}

fn render_invocations(app: &App, area: Rect, buf: &mut Buffer) {
    let rows = app.invocations();
    let wide = area.width >= 80;
    let body: Vec<Row<'_>> = rows
        .iter()
        .map(|i| {
            let mut cells = vec![
                Cell::from(short_target(&i.target)),
                Cell::from(Span::styled(
                    i.status.to_string(),
                    invocation_style(&i.status),
                )),
                Cell::from(i.retry_count.unwrap_or(0).to_string()),
            ];
            if wide {
                cells.push(Cell::from(i.last_failure.clone().unwrap_or_default()));
            }
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![
        Constraint::Min(24),
        Constraint::Length(12),
        Constraint::Length(4),
    ];
    let mut header = vec!["TARGET", "STATUS", "TRY"];
    if wide {
        widths.push(Constraint::Percentage(40));
        header.push("LAST FAILURE");
    }
    let table = Table::new(body, widths)
        .header(Row::new(header).style(theme::HEADER))
        .block(pane_block(
            format!(" restate invocations ({}) ", rows.len()),
            app.pane == Pane::Invocations,
        ))
        .row_highlight_style(theme::SELECTED);
    let mut state = TableState::default();
    if app.pane == Pane::Invocations && !rows.is_empty() {
        state.select(Some(app.selected_invocation));
    }
    StatefulWidget::render(table, area, buf, &mut state);
}

/// `Session/4f6ca691-61a6-…/create` → `Session/4f6ca691…/create`.
fn short_target(target: &str) -> String {
    target
        .split('/')
        .map(|part| {
            if uuid::Uuid::parse_str(part).is_ok() {
                format!("{}…", short(part))
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn render_chart(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" live sessions / memory ");
    let inner = block.inner(area);
    block.render(area, buf);
    let [a, b] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(inner);
    let width = usize::from(inner.width);
    let recent: Vec<&(u64, u64)> = app
        .history
        .iter()
        .rev()
        .take(width)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let live: Vec<u64> = recent.iter().map(|(l, _)| *l).collect();
    let mem: Vec<u64> = recent.iter().map(|(_, m)| *m).collect();
    let (now_live, now_mem) = app.history.back().copied().unwrap_or((0, 0));
    // Each half: a label line, then its sparkline below it (never drawn over each other).
    let half = |r: Rect, label: String, data: &[u64], style: Style, buf: &mut Buffer| {
        let [top, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(r);
        Paragraph::new(label).style(theme::DIM).render(top, buf);
        Sparkline::default()
            .data(data)
            .style(style)
            .render(rest, buf);
    };
    half(a, format!("{now_live} live"), &live, theme::GOOD, buf);
    let memory = Style::new().fg(Color::Magenta);
    half(b, format!("{now_mem} MiB"), &mem, memory, buf);
}

fn render_footer(app: &App, area: Rect, buf: &mut Buffer) {
    let line = match (&app.mode, &app.notice) {
        (Mode::Filter, _) => Line::from(vec![
            Span::styled("/", theme::TITLE),
            Span::raw(app.filter.clone()),
            Span::raw("▏"),
        ]),
        (_, Some(n)) => Line::styled(n.clone(), theme::WARN),
        _ => {
            let keys = [
                ("j/k", "move"),
                ("tab", "pane"),
                ("enter", "details"),
                ("n", "new"),
                ("o", "open"),
                ("d", "kill"),
                ("p", "preview"),
                ("w", "browsers"),
                ("c", "nodes"),
                ("/", "filter"),
                ("?", "help"),
                ("q", "quit"),
            ];
            let mut spans = Vec::new();
            for (k, what) in keys {
                spans.push(Span::styled(k, theme::TITLE));
                spans.push(Span::raw(format!(" {what}  ")));
            }
            if !app.filter.is_empty() {
                spans.push(Span::styled(format!("filter: {}", app.filter), theme::WARN));
            }
            Line::from(spans)
        }
    };
    Paragraph::new(line).render(area, buf);
}

fn pane_block(title: String, focused: bool) -> Block<'static> {
    let style = if focused { theme::TITLE } else { theme::DIM };
    Block::default()
        .borders(Borders::ALL)
        .border_style(style)
        .title(Span::styled(title, style))
}

/// A centered rectangle of at most `w`×`h`.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn popup(title: &str, lines: Vec<Line<'static>>, w: u16, area: Rect, buf: &mut Buffer) {
    let rect = centered(area, w, lines.len() as u16 + 2);
    Clear.render(rect, buf);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme::TITLE)
        .title(format!(" {title} "));
    Paragraph::new(lines)
        .block(block)
        .wrap(Wrap { trim: false })
        .render(rect, buf);
}

fn render_help(area: Rect, buf: &mut Buffer) {
    let keys = [
        ("j / k, ↓ / ↑, wheel", "move the selection"),
        ("g / G", "first / last row"),
        ("tab", "switch between sessions and invocations"),
        (
            "enter",
            "details: a session's options, an invocation's journal",
        ),
        ("p", "show / hide the selected session's page"),
        ("w", "browsers (sessions' and warm) instead of sessions"),
        ("c", "the cluster's nodes instead of sessions"),
        ("n", "create a session"),
        ("o", "open the selected session's viewer in your browser"),
        ("d", "kill the selected session (asks first)"),
        ("/", "filter rows (enter or esc to finish)"),
        ("?", "this help"),
        ("q, esc, ctrl-c", "quit"),
    ];
    let lines = keys
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:<22}"), theme::TITLE),
                Span::raw(*v),
            ])
        })
        .collect();
    popup("keys", lines, 80, area, buf);
}

fn render_confirm(id: &str, area: Rect, buf: &mut Buffer) {
    let lines = vec![
        Line::from(format!("Kill session {id}?")),
        Line::from(vec![
            Span::styled("y", theme::BAD.add_modifier(Modifier::BOLD)),
            Span::raw(" kill   any other key: keep"),
        ]),
    ];
    popup("kill", lines, 60, area, buf);
}

fn render_details(app: &App, area: Rect, buf: &mut Buffer) {
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<12}"), theme::HEADER),
            Span::raw(v),
        ])
    };
    let lines = match app.pane {
        Pane::Sessions => match app.selected_session() {
            Some(r) => {
                let s = &r.session;
                let mut l = vec![
                    field("id", s.id.clone()),
                    field("status", s.status.to_string()),
                    field("cdp", s.websocket_url.clone()),
                    field("created", s.created_at.clone()),
                    field(
                        "timeout",
                        if s.timeout == 0 {
                            "none".into()
                        } else {
                            duration(s.timeout)
                        },
                    ),
                    field(
                        "size",
                        format!("{}x{}", s.dimensions.width, s.dimensions.height),
                    ),
                    field(
                        "recording",
                        if s.record { "yes".into() } else { "no".into() },
                    ),
                    field("viewer", s.session_viewer_url.clone()),
                    field(
                        "browser",
                        format!(
                            "pid {} port {} · {} processes",
                            r.pid.map_or("-".into(), |p| p.to_string()),
                            r.port.map_or("-".into(), |p| p.to_string()),
                            r.processes
                        ),
                    ),
                ];
                if let Some(ua) = &s.user_agent {
                    l.push(field("user agent", ua.clone()));
                }
                if let Some(p) = crate::output::proxy(s) {
                    l.push(field("proxy", p));
                }
                if let Some(reason) = &s.reason {
                    l.push(field("reason", reason.clone()));
                }
                if !s.ignored_options.is_empty() {
                    l.push(field("ignored", s.ignored_options.join(", ")));
                }
                l
            }
            None => vec![],
        },
        Pane::Invocations => match app.selected_invocation() {
            Some(i) => {
                let mut l = vec![
                    field("id", i.id.clone()),
                    field("target", i.target.clone()),
                    field("status", i.status.to_string()),
                    field("retries", i.retry_count.unwrap_or(0).to_string()),
                    field("created", i.created_at.clone().unwrap_or_default()),
                    field(
                        "failure",
                        i.last_failure.clone().unwrap_or_else(|| "-".into()),
                    ),
                    Line::styled("journal", theme::HEADER),
                ];
                match &app.journal {
                    Some((of, entries)) if *of == i.id => {
                        if entries.is_empty() {
                            l.push(Line::styled("  (no entries kept)", theme::DIM));
                        }
                        let rows = usize::from(area.height.saturating_sub(14)).max(3);
                        let skipped = entries.len().saturating_sub(rows);
                        if skipped > 0 {
                            l.push(Line::styled(format!("  … {skipped} earlier"), theme::DIM));
                        }
                        for e in entries.iter().skip(skipped) {
                            l.push(Line::from(vec![
                                Span::styled(format!("  {:>3} ", e.index), theme::DIM),
                                Span::raw(format!("{:<24}", e.entry_type)),
                                Span::styled(e.name.clone().unwrap_or_default(), theme::TITLE),
                            ]));
                        }
                    }
                    _ => l.push(Line::styled("  loading…", theme::DIM)),
                }
                l
            }
            None => vec![],
        },
    };
    popup(
        "details",
        lines,
        area.width.saturating_sub(8).min(110),
        area,
        buf,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use crate::tui::app::{App, ClusterView};
    use crate::tui::event::Event;
    use crate::tui::fixtures;

    fn draw(app: &App, w: u16, h: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| f.render_widget(app, f.area())).unwrap();
        terminal.backend().to_string()
    }

    fn with(snapshot: crate::protocol::control::Dashboard) -> App {
        let mut app = App::default();
        app.handle_event(Event::Snapshot(Box::new(snapshot)));
        app
    }

    #[test]
    fn empty() {
        insta::assert_snapshot!(draw(&with(fixtures::empty()), 120, 24));
    }

    #[test]
    fn sessions_in_every_status_and_a_retrying_invocation() {
        insta::assert_snapshot!(draw(&with(fixtures::busy()), 130, 28));
    }

    #[test]
    fn daemon_down() {
        let mut app = with(fixtures::busy());
        app.handle_event(Event::DaemonDown("connection refused".into()));
        insta::assert_snapshot!(draw(&app, 120, 24));
    }

    #[test]
    fn help_overlay() {
        let mut app = with(fixtures::busy());
        app.mode = crate::tui::app::Mode::Help;
        insta::assert_snapshot!(draw(&app, 120, 28));
    }

    #[test]
    fn narrow_terminal() {
        insta::assert_snapshot!(draw(&with(fixtures::busy()), 60, 20));
    }

    #[test]
    fn preview_pane_with_a_picture() {
        use image::{ImageBuffer, Rgb};
        use ratatui_image::picker::Picker;
        use ratatui_image::{Resize, StatefulImage};

        let mut app = with(fixtures::busy());
        let id = app.selected_session().unwrap().session.id.clone();
        app.handle_event(Event::Preview {
            session_id: id,
            url: "https://example.com/".into(),
            title: "Example Domain".into(),
        });
        // A fixed picture, through the same PNG decoding as a real preview: a white page with
        // a dark header band and a blue box.
        let img = ImageBuffer::from_fn(160, 90, |x, y| match (x, y) {
            (_, 0..=14) => Rgb([30u8, 30, 30]),
            (40..=119, 30..=69) => Rgb([40, 90, 200]),
            _ => Rgb([250, 250, 250]),
        });
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let picture = image::load_from_memory(&png).unwrap();
        let mut protocol = Picker::halfblocks().new_resize_protocol(picture);

        let mut terminal = Terminal::new(TestBackend::new(150, 30)).unwrap();
        terminal
            .draw(|f| {
                f.render_widget(&app, f.area());
                let area = super::preview_picture_area(&app, f.area()).unwrap();
                f.render_stateful_widget(
                    StatefulImage::default().resize(Resize::Scale(None)),
                    area,
                    &mut protocol,
                );
            })
            .unwrap();
        insta::assert_snapshot!(terminal.backend().to_string());
    }

    #[test]
    fn session_details_say_whether_it_records() {
        use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

        let press = |app: &mut App, code| {
            app.handle_event(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
        };
        let mut app = with(fixtures::busy());
        press(&mut app, KeyCode::Enter);
        let recording = draw(&app, 120, 30);
        insta::assert_snapshot!(recording);
        assert!(recording.contains("recording   yes"), "{recording}");
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Char('j'));
        press(&mut app, KeyCode::Enter);
        let not = draw(&app, 120, 30);
        assert!(not.contains("recording   no"), "{not}");
    }

    #[test]
    fn invocation_details_with_its_journal() {
        use crate::protocol::control::JournalEntry;
        use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

        let mut app = with(fixtures::busy());
        app.handle_event(Event::Key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)));
        let id = app.selected_invocation().unwrap().id.clone();
        app.handle_event(Event::Key(KeyEvent::new(
            KeyCode::Enter,
            KeyModifiers::NONE,
        )));
        let entry = |index, entry_type: &str, name: Option<&str>| JournalEntry {
            index,
            entry_type: entry_type.into(),
            name: name.map(str::to_string),
        };
        app.handle_event(Event::Journal {
            invocation_id: id,
            entries: vec![
                entry(0, "Command: Input", None),
                entry(1, "Command: GetLazyState", None),
                entry(2, "Command: Call", Some("Pool/local/acquire")),
                entry(3, "Command: Run", Some("launch_chromium")),
                entry(4, "Notification: Run", Some("launch_chromium")),
            ],
        });
        insta::assert_snapshot!(draw(&app, 120, 30));
    }

    #[test]
    fn workers_view() {
        let mut app = with(fixtures::busy());
        app.show_workers = true;
        app.show_preview = false;
        insta::assert_snapshot!(draw(&app, 120, 24));
    }

    #[test]
    fn nodes_view() {
        let mut app = with(fixtures::busy());
        app.show_nodes = true;
        app.show_preview = false;
        app.handle_event(Event::Cluster(ClusterView::Status(fixtures::cluster())));
        insta::assert_snapshot!(draw(&app, 120, 24));
    }

    #[test]
    fn nodes_view_of_a_daemon_without_cluster_status() {
        let mut app = with(fixtures::busy());
        app.show_nodes = true;
        app.show_preview = false;
        app.handle_event(Event::Cluster(ClusterView::SingleNode));
        insta::assert_snapshot!(draw(&app, 120, 24));
    }

    #[test]
    fn tiny_terminals_never_panic() {
        let mut app = with(fixtures::busy());
        for (w, h) in [(1, 1), (10, 3), (20, 5), (200, 60)] {
            draw(&app, w, h);
        }
        app.show_nodes = true;
        app.handle_event(Event::Cluster(ClusterView::Status(fixtures::cluster())));
        for (w, h) in [(1, 1), (10, 3), (20, 5)] {
            draw(&app, w, h);
        }
    }
}
