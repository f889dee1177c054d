//! Chaos: creates and releases while the daemon, restate-server or single browsers are
//! SIGKILLed at different moments; after every round the invariants hold. Bounded: a fixed
//! number of rounds, each with its own deadline. The figures are printed (`--nocapture`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helper::{TestDaemon, cdp_browser_version, is_live, kill, wait_for};

/// What is killed in a round, and when.
#[derive(Debug, Clone, Copy)]
enum Kill {
    DaemonDuringCreate,
    DaemonDuringRelease,
    DaemonIdle,
    RestateDuringCreate,
    Browser,
}

const ROUNDS: [Kill; 10] = [
    Kill::DaemonDuringCreate,
    Kill::Browser,
    Kill::DaemonDuringRelease,
    Kill::RestateDuringCreate,
    Kill::DaemonIdle,
    Kill::DaemonDuringCreate,
    Kill::Browser,
    Kill::DaemonDuringRelease,
    Kill::RestateDuringCreate,
    Kill::DaemonIdle,
];

#[test]
fn invariants_hold_through_kills() {
    let mut d = TestDaemon::start_with(&["--max-sessions", "6"]);
    let mut created = 0;
    let mut leaks = 0;
    let started = Instant::now();
    for (round, kill_kind) in ROUNDS.iter().enumerate() {
        // Some background load: a session to keep, one to release.
        let keep = d.create(&["--timeout", "0"]);
        created += 1;
        let keep_id = keep["id"].as_str().unwrap().to_string();
        let delay = Duration::from_millis(50 + 97 * round as u64 % 400);
        match kill_kind {
            Kill::DaemonDuringCreate | Kill::RestateDuringCreate => {
                let home = d.home.path().to_path_buf();
                let creating = thread::spawn(move || {
                    crate::helper::bro_in(&home, &["session", "create", "--json"])
                });
                thread::sleep(delay);
                let pid = if matches!(kill_kind, Kill::DaemonDuringCreate) {
                    d.daemon_pid()
                } else {
                    d.restate_pid()
                };
                kill(pid, "KILL");
                let _ = creating.join();
                created += 1;
            }
            Kill::DaemonDuringRelease => {
                let home = d.home.path().to_path_buf();
                let id = keep_id.clone();
                let releasing =
                    thread::spawn(move || crate::helper::bro_in(&home, &["session", "kill", &id]));
                thread::sleep(delay / 4);
                kill(d.daemon_pid(), "KILL");
                let _ = releasing.join();
            }
            Kill::DaemonIdle => kill(d.daemon_pid(), "KILL"),
            Kill::Browser => kill(d.browser_pid(&keep_id), "KILL"),
        }
        // Bring the daemon back if it was killed, then let state settle.
        let daemon_killed = matches!(
            kill_kind,
            Kill::DaemonDuringCreate | Kill::DaemonDuringRelease | Kill::DaemonIdle
        );
        if daemon_killed {
            let pid = d.daemon_pid();
            assert!(
                wait_for(|| !is_live(pid)),
                "round {round}: the daemon survived SIGKILL"
            );
            // A CLI that ran after the kill may have started a daemon itself (autostart).
            if !d.bro(&["daemon", "status"]).status.success() {
                d.restart_with(&["--max-sessions", "6"]);
            }
        }
        d.status = d.json(&["daemon", "status", "--json"]);
        leaks += check_invariants(&d, round);
        // Release what the round left, and check again: nothing may remain.
        d.ok(&["session", "kill", "--all"]);
        leaks += check_invariants(&d, round);
    }
    let total = started.elapsed();
    let kills = |k: fn(&Kill) -> bool| ROUNDS.iter().filter(|r| k(r)).count();
    eprintln!(
        "chaos: {} rounds in {total:?}; kills: daemon {} (during create {}, during release {}, idle {}), \
         restate-server {}, browser {}; sessions created {created}; leaks found {leaks}",
        ROUNDS.len(),
        kills(|k| matches!(
            k,
            Kill::DaemonDuringCreate | Kill::DaemonDuringRelease | Kill::DaemonIdle
        )),
        kills(|k| matches!(k, Kill::DaemonDuringCreate)),
        kills(|k| matches!(k, Kill::DaemonDuringRelease)),
        kills(|k| matches!(k, Kill::DaemonIdle)),
        kills(|k| matches!(k, Kill::RestateDuringCreate)),
        kills(|k| matches!(k, Kill::Browser)),
    );
    assert_eq!(leaks, 0);
    d.stop();
}

/// Waits (up to the helper's timeout) for the home to settle, then checks: no session
/// record stuck in a transient state; live sessions = session dirs = browsers = the Pool's
/// count; no port held by a process of the home for a session that is not live; every live
/// session answers CDP. Returns the number of leaks, each printed with the daemon's log.
fn check_invariants(d: &TestDaemon, round: usize) -> usize {
    let now = || {
        let list = d.json(&["session", "list", "--json"]);
        let status = d.json(&["daemon", "status", "--json"]);
        observe(d.home.path(), &list, &status)
    };
    // What the last look found: a launch that a restarted Restate resumes just after the
    // home settled is the next check's to see.
    let mut found = Vec::new();
    wait_for(|| {
        found = leaks(&now());
        found.is_empty()
    });
    let list = d.json(&["session", "list", "--status", "live", "--json"]);
    for s in list["sessions"].as_array().unwrap() {
        let url = s["websocketUrl"].as_str().unwrap().to_string();
        let product = std::panic::catch_unwind(|| cdp_browser_version(&url)).unwrap_or_default();
        if !product.starts_with("Chrome/") {
            let id = s["id"].as_str().unwrap();
            let now = d.bro(&["session", "get", id, "--json"]);
            found.push(format!(
                "live session {id} does not answer CDP ({product:?}); now: {}",
                crate::helper::text(&now)
            ));
        }
    }
    if !found.is_empty() {
        let log =
            std::fs::read_to_string(d.home.path().join("state/daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!(
            "round {round}: {} leaks:\n  {}\nall sessions: {}\ndaemon log (newest first):\n{}",
            found.len(),
            found.join("\n  "),
            d.json(&["session", "list", "--json"]),
            tail.join("\n")
        );
    }
    found.len()
}

/// What a home holds, next to what its daemon says.
#[derive(Debug, Default)]
struct Observed {
    /// Every session record: id → status.
    records: BTreeMap<String, String>,
    live: BTreeSet<String>,
    /// Session dirs on disk.
    dirs: BTreeSet<String>,
    /// Sessions with a browser process (named by its `--user-data-dir`).
    browsers: BTreeSet<String>,
    /// The Pool's sessions.
    pool: BTreeSet<String>,
    /// TCP ports listened on by processes of the home other than the daemon and its
    /// restate-server: (pid, port, the session its command line names).
    ports: Vec<(u32, u16, Option<String>)>,
}

/// Reads the home's dirs and processes; `list` is `session list --json`, `status` is
/// `daemon status --json`.
fn observe(home: &Path, list: &Value, status: &Value) -> Observed {
    let records = list["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            // `broStatus` is the exact status: steel's `status` shows a starting session as
            // live and a releasing one as released, which would hide a stuck one.
            let status = s.get("broStatus").unwrap_or(&s["status"]);
            Some((s["id"].as_str()?.to_string(), status.as_str()?.to_string()))
        })
        .collect::<BTreeMap<_, _>>();
    let live = records
        .iter()
        .filter(|(_, status)| *status == "live")
        .map(|(id, _)| id.clone())
        .collect();
    let sessions = home.join("data/sessions");
    let dirs = std::fs::read_dir(&sessions)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let prefix = format!("--user-data-dir={}/", sessions.display());
    let named = |pid: u32| -> Option<(bool, String)> {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let child = args.iter().any(|a| a.starts_with("--type="));
        let dir = args.iter().find_map(|a| a.strip_prefix(&prefix))?;
        Some((child, dir.split('/').next()?.to_string()))
    };
    let ours = [&status["pid"], &status["restate"]["pid"]].map(|p| p.as_u64().map(|p| p as u32));
    let mut browsers = BTreeSet::new();
    let mut ports = Vec::new();
    for pid in crate::helper::leftovers(home) {
        let session = named(pid);
        if let Some((false, id)) = &session {
            browsers.insert(id.clone());
        }
        if !ours.contains(&Some(pid)) {
            let owner = session.map(|(_, id)| id);
            ports.extend(
                crate::helper::listen_ports(pid)
                    .into_iter()
                    .map(|port| (pid, port, owner.clone())),
            );
        }
    }
    let pool = status["pool"]["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    Observed {
        records,
        live,
        dirs,
        browsers,
        pool,
        ports,
    }
}

/// What breaks an invariant in `o`, one line each.
fn leaks(o: &Observed) -> Vec<String> {
    let mut found = Vec::new();
    for (id, status) in &o.records {
        if !["live", "released", "failed"].contains(&status.as_str()) {
            found.push(format!("session {id} is stuck in {status}"));
        }
    }
    for dir in o.dirs.difference(&o.live) {
        found.push(format!("session dir {dir} has no live session"));
    }
    for id in o.browsers.difference(&o.live) {
        found.push(format!(
            "a browser of session {id} runs without a live session"
        ));
    }
    for id in o.live.difference(&o.dirs) {
        found.push(format!("live session {id} has no dir"));
    }
    for id in o.live.difference(&o.browsers) {
        found.push(format!("live session {id} has no browser"));
    }
    if o.pool != o.live {
        found.push(format!(
            "the Pool holds {:?}, the live sessions are {:?}",
            o.pool, o.live
        ));
    }
    for (pid, port, owner) in &o.ports {
        if !owner.as_ref().is_some_and(|id| o.live.contains(id)) {
            found.push(format!(
                "port {port} is held by pid {pid} (session {owner:?}), not a live session's"
            ));
        }
    }
    found
}

/// The invariants can fail: a home with a stray session dir, a "browser" of a session that
/// is not live holding a port, and a record stuck in `launching` is reported on each count,
/// and the same home without them is clean.
#[test]
fn a_planted_leak_is_reported() {
    let home = tempfile::Builder::new()
        .prefix("bro-it-")
        .tempdir()
        .unwrap();
    let stray = "0b7e3a39-8d3c-4f49-9a4f-2a1bde0c7f10";
    let dir = home.path().join("data/sessions").join(stray);
    std::fs::create_dir_all(&dir).unwrap();
    let listen = "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\n\
                  s.listen()\nprint(s.getsockname()[1], flush=True)\ntime.sleep(300)";
    let mut browser = std::process::Command::new("python3")
        .args(["-c", listen])
        .arg(format!("--user-data-dir={}/profile", dir.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(browser.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let port: u16 = port.trim().parse().unwrap();
    let list = serde_json::json!({ "sessions": [{ "id": "s1", "status": "launching" }] });
    let status =
        serde_json::json!({ "pid": 1, "restate": { "pid": 1 }, "pool": { "sessions": [] } });

    let found = leaks(&observe(home.path(), &list, &status));
    let _ = browser.kill();
    let _ = browser.wait();
    let has = |what: &str| found.iter().any(|l| l.contains(what));
    assert!(has("session s1 is stuck in launching"), "{found:?}");
    assert!(
        has(&format!("session dir {stray} has no live session")),
        "{found:?}"
    );
    assert!(
        has(&format!("a browser of session {stray} runs")),
        "{found:?}"
    );
    assert!(
        has(&format!("port {port} is held by pid {}", browser.id())),
        "{found:?}"
    );
    assert_eq!(found.len(), 4, "{found:?}");

    std::fs::remove_dir_all(&dir).unwrap();
    let list = serde_json::json!({ "sessions": [{ "id": "s1", "status": "released" }] });
    assert_eq!(
        leaks(&observe(home.path(), &list, &status)),
        Vec::<String>::new()
    );
}
