//! The warm pool (`--warm N`): creates that fit take a ready browser, the pool refills, its
//! browsers are in Restate state (they survive a daemon SIGKILL, a dead one is replaced),
//! and stopping the daemon stops them.

use std::collections::BTreeMap;

use crate::helper::{TestDaemon, cdp_browser_version, group_members, is_live, kill, wait_for};

/// The ready warm browsers, by id (their dir's name), with their pids. A browser being
/// discarded may still be listed for a moment after its dir is gone: it is not counted.
fn warm_browsers(d: &TestDaemon) -> BTreeMap<String, u32> {
    let st = d.json(&["daemon", "status", "--json"]);
    st["pool"]["warm_ready"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|id| {
            let id = id.as_str().unwrap().to_string();
            let pid = d.recorded_pid(&id)?;
            Some((id, pid))
        })
        .collect()
}

fn warm_ready(d: &TestDaemon) -> usize {
    warm_browsers(d).len()
}

#[test]
fn creates_take_ready_browsers_and_the_pool_survives_crashes() {
    let mut d = TestDaemon::start_with(&["--warm", "2"]);
    assert_eq!(d.status["warm"], 2);
    assert!(wait_for(|| warm_ready(&d) == 2));
    let before = warm_browsers(&d);

    // A create without launch options takes a ready browser: no dir of its own.
    let s = d.create(&["--timeout", "10m"]);
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["status"], "live");
    assert!(!d.session_dir(&id).exists(), "a warm session launched cold");
    assert!(cdp_browser_version(s["websocketUrl"].as_str().unwrap()).starts_with("Chrome/"));
    // The pool refills to two, with a browser it did not have.
    assert!(wait_for(|| warm_ready(&d) == 2));
    let taken: Vec<u32> = before
        .values()
        .filter(|pid| !warm_browsers(&d).values().any(|p| p == *pid))
        .copied()
        .collect();
    assert_eq!(taken.len(), 1, "{before:?} → {:?}", warm_browsers(&d));
    let session_pid = taken[0];

    // Launch options need a cold launch.
    let cold = d.create(&["--width", "800", "--height", "600"]);
    let cold_id = cold["id"].as_str().unwrap().to_string();
    assert!(d.session_dir(&cold_id).exists());

    // The daemon dies: the session and the pool come back, same browsers.
    let pool = warm_browsers(&d);
    kill(d.daemon_pid(), "KILL");
    d.restart_with(&["--warm", "2"]);
    let back = d.get(&id);
    assert_eq!(back["status"], "live");
    assert!(cdp_browser_version(back["websocketUrl"].as_str().unwrap()).starts_with("Chrome/"));
    assert_eq!(warm_browsers(&d), pool, "the ready browsers were not kept");
    assert_eq!(warm_ready(&d), 2);

    // A ready browser that dies is replaced.
    let (dead_id, dead_pid) = pool.iter().next().map(|(k, v)| (k.clone(), *v)).unwrap();
    kill(dead_pid, "KILL");
    assert!(
        wait_for(|| {
            let now = warm_browsers(&d);
            now.len() == 2 && !now.contains_key(&dead_id)
        }),
        "{:?}",
        warm_browsers(&d)
    );
    assert!(wait_for(|| group_members(dead_pid).is_empty()));

    // The warm session's browser dies: the session fails (its exit is traced to it by pid).
    kill(session_pid, "KILL");
    assert!(
        wait_for(|| d.get(&id)["status"] == "failed"),
        "{}",
        d.get(&id)
    );
    assert!(!is_live(session_pid));

    // `daemon stop` releases the sessions and stops the ready browsers: nothing is left.
    d.stop();
}

/// CI saw a stop that came while a refill's browser was starting leave the refill's dir
/// behind (the launch future was dropped after it made the dir). A stop now ends such a
/// launch through its own error path: nothing is left, dir or process.
#[test]
fn a_stop_during_a_refill_launch_leaves_nothing() {
    let d = TestDaemon::start_with(&["--warm", "1"]);
    assert!(wait_for(|| warm_ready(&d) == 1));
    let sessions = d.home.path().join("data/sessions");
    let names = || -> Vec<String> {
        std::fs::read_dir(&sessions)
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut before = names();
    let s = d.create(&[]);
    assert_eq!(s["status"], "live");
    // A create that fell back to a cold launch has a dir of its own: not the refill's.
    before.push(s["id"].as_str().unwrap().to_string());
    // The refill's dir appears as its launch begins: stop right then, while it starts.
    let started = std::time::Instant::now();
    let mut refill = None;
    while refill.is_none() && started.elapsed() < std::time::Duration::from_secs(30) {
        refill = names().into_iter().find(|n| !before.contains(n));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(refill.is_some(), "no refill began within 30 s");
    // Stops the daemon and checks that no process and no session dir is left.
    d.stop();
}
