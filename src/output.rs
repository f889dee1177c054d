//! Every line the CLI prints: aligned tables for people, `--json` for scripts. The only
//! module that writes to stdout.

use std::io::Write;

use serde::Serialize;

use crate::protocol::cluster::ClusterStatus;
use crate::protocol::control::DaemonStatus;
use crate::protocol::session::SessionStatus;
use crate::protocol::steel::{
    MultipleSessions, ReleaseAllResponse, ReleaseSessionResponse, SessionDetails,
};

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => line(&text),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Prints one line to stdout; a closed pipe (`bro ... | head`) is not an error.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// A progress note on stderr, for waits the user should know about.
pub fn progress(text: &str) {
    eprintln!("bro: {text}…");
}

/// Rows as columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let fmt_row = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let parts: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = vec![fmt_row(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| fmt_row(r.clone())));
    out.join("\n")
}

/// Prints `key  value` lines with the values aligned.
fn key_values(rows: &[Vec<String>]) {
    let text = table(&["", ""], rows);
    line(&text.lines().skip(1).collect::<Vec<_>>().join("\n"));
}

/// `4m12s`, `1h02m`, `850ms`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// How long ago, from milliseconds: `0.8s ago` under a minute, then `4m12s ago`.
pub fn ago(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s ago", ms as f64 / 1000.0)
    } else {
        format!("{} ago", duration(ms))
    }
}

/// `512 B`, `3.4 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// The session's proxy (credentials redacted) and, once counted, the bytes it carried.
pub fn proxy(d: &SessionDetails) -> Option<String> {
    let url = d.proxy.as_ref()?;
    Some(match d.proxy_bytes_used {
        0 => url.clone(),
        _ => format!(
            "{url}  ({} sent, {} received)",
            bytes(d.proxy_tx_bytes),
            bytes(d.proxy_rx_bytes)
        ),
    })
}

fn expires_in(d: &SessionDetails) -> String {
    let open = matches!(d.status, SessionStatus::Starting | SessionStatus::Live);
    match (open, d.timeout) {
        (false, _) => "-".into(),
        (true, 0) => "never".into(),
        (true, t) => duration(t.saturating_sub(d.duration)),
    }
}

/// `bro session create`.
pub fn session_created(d: &SessionDetails, as_json: bool) {
    if as_json {
        return json(d);
    }
    let rows = vec![
        vec!["session".into(), d.id.clone()],
        vec!["cdp".into(), d.websocket_url.clone()],
        vec!["viewer".into(), d.session_viewer_url.clone()],
        vec!["expires in".into(), expires_in(d)],
    ];
    key_values(&rows);
}

/// `bro session get`.
pub fn session(d: &SessionDetails, as_json: bool) {
    if as_json {
        return json(d);
    }
    let mut rows = vec![
        vec!["id".into(), d.id.clone()],
        vec!["status".into(), d.status.to_string()],
        vec!["created".into(), d.created_at.clone()],
        vec!["duration".into(), duration(d.duration)],
        vec![
            "timeout".into(),
            if d.timeout == 0 {
                "none".into()
            } else {
                duration(d.timeout)
            },
        ],
        vec!["expires in".into(), expires_in(d)],
        vec![
            "size".into(),
            format!("{}x{}", d.dimensions.width, d.dimensions.height),
        ],
        vec!["cdp".into(), d.websocket_url.clone()],
        vec!["viewer".into(), d.session_viewer_url.clone()],
        vec![
            "recording".into(),
            if d.record { "yes" } else { "no" }.into(),
        ],
    ];
    if let Some(ua) = &d.user_agent {
        rows.push(vec!["user agent".into(), ua.clone()]);
    }
    if let Some(proxy) = proxy(d) {
        rows.push(vec!["proxy".into(), proxy]);
    }
    if let Some(bytes) = d.memory_limit {
        rows.push(vec![
            "memory limit".into(),
            crate::config::format_size(bytes),
        ]);
    }
    if let Some(share) = d.cpu_share {
        rows.push(vec!["cpu share".into(), share.to_string()]);
    }
    if let Some(reason) = &d.reason {
        rows.push(vec!["reason".into(), reason.clone()]);
    }
    key_values(&rows);
}

/// `bro session list`.
pub fn session_list(list: &MultipleSessions, as_json: bool) {
    if as_json {
        return json(list);
    }
    if list.sessions.is_empty() {
        return line("no sessions");
    }
    let rows: Vec<Vec<String>> = list
        .sessions
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.status.to_string(),
                duration(d.duration),
                expires_in(d),
                d.websocket_url.clone(),
            ]
        })
        .collect();
    line(&table(
        &["ID", "STATUS", "AGE", "EXPIRES IN", "CDP URL"],
        &rows,
    ));
}

/// `bro session kill ID...`.
pub fn released(list: &[ReleaseSessionResponse], as_json: bool) {
    if as_json {
        return json(&list);
    }
    for r in list {
        line(&format!(
            "released {} (after {})",
            r.session.id,
            duration(r.session.duration)
        ));
    }
}

/// `bro session kill --all`.
pub fn released_all(resp: &ReleaseAllResponse, as_json: bool) {
    if as_json {
        return json(resp);
    }
    line(&resp.message);
}

/// `bro cluster status`: a line naming the cluster and the answering node, then a row per
/// node, `*` on the one that answered.
pub fn cluster_status(st: &ClusterStatus, as_json: bool) {
    if as_json {
        return json(st);
    }
    line(&cluster_text(st));
}

/// The text of `bro cluster status` (apart, for its test).
fn cluster_text(st: &ClusterStatus) -> String {
    let head = if st.clustered {
        let healthy = st.nodes.iter().filter(|n| n.healthy).count();
        format!(
            "cluster {}, answered by {} ({healthy} of {} nodes healthy, {} members)",
            st.cluster,
            st.node,
            st.nodes.len(),
            st.members.len()
        )
    } else {
        format!("single node {} (no [cluster] in its config)", st.node)
    };
    let rows: Vec<Vec<String>> = st
        .nodes
        .iter()
        .map(|n| {
            vec![
                if n.this { "*" } else { " " }.to_string(),
                n.name.clone(),
                n.address.clone(),
                if n.healthy { "yes" } else { "no" }.to_string(),
                format!("{}/{}", n.used, n.capacity),
                n.queued.to_string(),
                ago(n.last_seen_ms),
                n.restate.clone(),
            ]
        })
        .collect();
    let header = [
        " ",
        "NODE",
        "ADDRESS",
        "HEALTHY",
        "USED/CAPACITY",
        "QUEUED",
        "LAST SEEN",
        "RESTATE",
    ];
    if rows.is_empty() {
        return format!("{head}\nno nodes known yet (none has sent a heartbeat)");
    }
    format!("{head}\n{}", table(&header, &rows))
}

/// `bro doctor`: `✓ name  detail`, and under each `✗` (failed) or `!` (passed, degraded) the
/// fix.
pub fn doctor(checks: &[crate::cli::doctor::Check], as_json: bool) {
    if as_json {
        return json(&checks);
    }
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    for c in checks {
        let mark = match (c.ok, c.warn) {
            (false, _) => "✗",
            (true, true) => "!",
            (true, false) => "✓",
        };
        line(&format!("{mark} {:<width$}  {}", c.check, c.detail));
        if let Some(fix) = &c.fix {
            line(&format!("  {:<width$}  fix: {fix}", ""));
        }
    }
}

/// `bro daemon start`.
pub fn daemon_started(st: &DaemonStatus) {
    line(&format!(
        "bro daemon started (pid {}): api {}  socket {}",
        st.pid, st.api_url, st.socket
    ));
}

/// `bro daemon status`.
pub fn daemon_status(st: &DaemonStatus, as_json: bool) {
    if as_json {
        return json(st);
    }
    let restate = match st.restate.pid {
        Some(pid) => format!(
            "{} (pid {pid}, restarts {})",
            st.restate.admin_url, st.restate.restarts
        ),
        None => format!("{} (external)", st.restate.admin_url),
    };
    let rows = vec![
        vec![
            "daemon".into(),
            format!("running, pid {}, version {}", st.pid, st.version),
        ],
        vec!["api".into(), st.api_url.clone()],
        vec!["socket".into(), st.socket.clone()],
        vec![
            "node".into(),
            match &st.pool {
                Some(p) => format!(
                    "{} ({} of {} sessions in use, {} of {} queued)",
                    st.node,
                    p.used,
                    p.capacity,
                    p.queued.len(),
                    p.max_queue
                ),
                None => format!("{} (max {} sessions)", st.node, st.max_sessions),
            },
        ],
        vec!["chromium".into(), st.chromium.clone()],
        vec!["restate".into(), restate],
        vec!["ingress".into(), st.restate.ingress_url.clone()],
        vec!["home".into(), st.home.clone()],
    ];
    key_values(&rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "live".into()],
                vec!["long-id".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID       STATUS\na        live\nlong-id  x");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_000), "12s");
        assert_eq!(duration(252_000), "4m12s");
        assert_eq!(duration(3_720_000), "1h02m");
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(ago(800), "0.8s ago");
        assert_eq!(ago(12_340), "12.3s ago");
        assert_eq!(ago(252_000), "4m12s ago");
    }

    #[test]
    fn cluster_status_marks_the_answering_node() {
        use crate::protocol::cluster::NodeStatus;
        let node = |name: &str, healthy, this, seen| NodeStatus {
            name: name.into(),
            address: format!("http://10.0.0.{}:3000", name.len()),
            healthy,
            capacity: 16,
            used: 2,
            queued: 0,
            last_seen_ms: seen,
            restate: if healthy { "alive" } else { "unreachable" }.into(),
            this,
        };
        let st = ClusterStatus {
            clustered: true,
            cluster: "bro".into(),
            node: "a".into(),
            members: vec!["10.0.0.1".into(), "10.0.0.2".into()],
            nodes: vec![node("a", true, true, 400), node("bb", false, false, 42_000)],
        };
        assert_eq!(
            cluster_text(&st),
            "cluster bro, answered by a (1 of 2 nodes healthy, 2 members)\n\
             \x20  NODE  ADDRESS               HEALTHY  USED/CAPACITY  QUEUED  LAST SEEN  RESTATE\n\
             *  a     http://10.0.0.1:3000  yes      2/16           0       0.4s ago   alive\n\
             \x20  bb    http://10.0.0.2:3000  no       2/16           0       42.0s ago  unreachable"
        );
        let single = ClusterStatus {
            clustered: false,
            cluster: String::new(),
            node: "local".into(),
            members: vec![],
            nodes: vec![node("local", true, true, 0)],
        };
        assert!(cluster_text(&single).starts_with("single node local"));
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3_482), "3.4 KiB");
        assert_eq!(bytes(12_582_912), "12.0 MiB");
    }
}
