//! Health: a hung or dead browser fails its session within seconds and frees its slot; an
//! idle session is released; ended records are cleared after the retention period.

use std::time::Instant;

use crate::helper::{TestDaemon, group_members, kill, wait_for};

#[test]
fn a_hung_browser_fails_its_session_and_frees_the_slot() {
    let d = TestDaemon::start_with(&["--max-sessions", "1"]);
    let s = d.create(&[]);
    let id = s["id"].as_str().unwrap().to_string();
    let pid = d.browser_pid(&id);
    kill(pid, "STOP");
    let stopped = Instant::now();
    assert!(wait_for(|| d.status_of(&id) == "failed"), "{}", d.get(&id));
    let took = stopped.elapsed();
    let rec = d.get(&id);
    assert!(
        rec["reason"]
            .as_str()
            .unwrap()
            .contains("stopped answering CDP"),
        "{rec}"
    );
    eprintln!("hung browser detected and failed in {took:?}");
    assert!(
        group_members(pid).is_empty(),
        "the hung browser's group was not killed"
    );
    // The one slot is free again.
    let next = d.create(&[]);
    assert_eq!(next["status"], "live");
    d.stop();
}

#[test]
fn a_killed_browser_fails_its_session() {
    let d = TestDaemon::start();
    let s = d.create(&[]);
    let id = s["id"].as_str().unwrap().to_string();
    kill(d.browser_pid(&id), "KILL");
    assert!(wait_for(|| d.status_of(&id) == "failed"), "{}", d.get(&id));
    assert!(wait_for(|| !d.session_dir(&id).exists()));
    d.stop();
}

#[test]
fn idle_sessions_are_released_and_old_records_cleared() {
    let d = TestDaemon::start_with(&["--retention", "3s"]);
    let s = d.create(&["--inactivity-timeout", "1500ms", "--timeout", "0"]);
    let id = s["id"].as_str().unwrap().to_string();
    assert!(
        wait_for(|| d.status_of(&id) == "released"),
        "{}",
        d.get(&id)
    );
    assert_eq!(d.get(&id)["reason"], "inactivity timeout");
    // After the retention period the record is gone.
    assert!(wait_for(|| !d
        .bro(&["session", "get", &id])
        .status
        .success()));
    d.stop();
}
