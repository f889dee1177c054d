//! Chaos: creates and releases while the daemon, restate-server or single browsers are
//! SIGKILLed at different moments; after every round the invariants hold. Bounded: a fixed
//! number of rounds, each with its own deadline. The figures are printed (`--nocapture`).

use std::collections::BTreeSet;
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

/// Waits until no session is in a transient state, then checks: every live session answers
/// CDP; live sessions = running browsers = the Pool's count; no dir or browser without a live
/// session. Returns the number of leaks (and panics with the details on any).
fn check_invariants(d: &TestDaemon, round: usize) -> usize {
    let settled =
        wait_for(|| {
            let list = d.json(&["session", "list", "--json"]);
            list["sessions"].as_array().unwrap().iter().all(|s| {
                s["status"] == "live" || s["status"] == "released" || s["status"] == "failed"
            })
        });
    assert!(
        settled,
        "round {round}: sessions did not settle: {}",
        d.json(&["session", "list", "--json"])
    );
    let converged = wait_for(|| {
        let (live, dirs, browsers, pool) = observe(d);
        live == dirs && live == browsers && live == pool
    });
    let (live, dirs, browsers, pool) = observe(d);
    if !converged {
        let log =
            std::fs::read_to_string(d.home.path().join("state/daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let all = d.json(&["session", "list", "--json"]);
        panic!(
            "round {round}: live sessions {live:?}\n dirs {dirs:?}\n browsers {browsers:?}\n pool {pool:?}\n\
             all sessions: {all}\n daemon log (newest first):\n{}",
            tail.join("\n")
        );
    }
    let list = d.json(&["session", "list", "--status", "live", "--json"]);
    for s in list["sessions"].as_array().unwrap() {
        let url = s["websocketUrl"].as_str().unwrap().to_string();
        let product = std::panic::catch_unwind(|| cdp_browser_version(&url)).unwrap_or_else(|_| {
            // Say why: the session's record now, and what the daemon logged.
            let id = s["id"].as_str().unwrap();
            let now = d.bro(&["session", "get", id, "--json"]);
            let log =
                std::fs::read_to_string(d.home.path().join("state/daemon.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "round {round}: live session {id} refused its CDP connection; now: {}\n\
                 daemon log (newest first):\n{}",
                crate::helper::text(&now),
                tail.join("\n")
            )
        });
        assert!(
            product.starts_with("Chrome/"),
            "round {round}: live session {} does not answer",
            s["id"]
        );
    }
    0
}

/// (live session ids, session dirs, browser session ids, Pool's session ids).
fn observe(
    d: &TestDaemon,
) -> (
    BTreeSet<String>,
    BTreeSet<String>,
    BTreeSet<String>,
    BTreeSet<String>,
) {
    let list = d.json(&["session", "list", "--status", "live", "--json"]);
    let live = ids(&list["sessions"], "id");
    let dirs = std::fs::read_dir(d.home.path().join("data/sessions"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let prefix = format!(
        "--user-data-dir={}/",
        d.home.path().join("data/sessions").display()
    );
    let browsers = crate::helper::leftovers(d.home.path())
        .into_iter()
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a.starts_with("--type=")) {
                return None;
            }
            let dir = args.iter().find_map(|a| a.strip_prefix(&prefix))?;
            Some(dir.split('/').next()?.to_string())
        })
        .collect();
    let status = d.json(&["daemon", "status", "--json"]);
    let pool = status["pool"]["sessions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (live, dirs, browsers, pool)
}

fn ids(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s[key].as_str().map(str::to_string))
        .collect()
}
