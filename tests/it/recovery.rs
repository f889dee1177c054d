//! Crashes: the daemon or restate-server killed with SIGKILL, a browser killed while the
//! daemon is down.

use crate::helper::{TestDaemon, cdp_browser_version, group_members, kill, wait_for};

#[test]
fn a_killed_daemon_comes_back_with_its_sessions() {
    let mut d = TestDaemon::start();
    let keep = d.create(&[]);
    let lose = d.create(&[]);
    let keep_id = keep["id"].as_str().unwrap().to_string();
    let lose_id = lose["id"].as_str().unwrap().to_string();
    let keep_pid = d.browser_pid(&keep_id);
    let lose_pid = d.browser_pid(&lose_id);

    kill(d.daemon_pid(), "KILL");
    assert!(wait_for(|| !crate::helper::is_live(d.daemon_pid())));
    kill(lose_pid, "KILL");
    assert!(wait_for(|| !crate::helper::is_live(lose_pid)));

    d.restart_with(&[]);
    let kept = d.get(&keep_id);
    assert_eq!(kept["status"], "live");
    assert_eq!(
        d.browser_pid(&keep_id),
        keep_pid,
        "the live browser was re-adopted, not relaunched"
    );
    let ws = kept["websocketUrl"].as_str().unwrap();
    assert!(cdp_browser_version(ws).starts_with("Chrome/"));

    assert!(
        wait_for(|| d.get(&lose_id)["status"] == "failed"),
        "{}",
        d.get(&lose_id)
    );
    assert!(group_members(lose_pid).is_empty());
    assert!(wait_for(|| !d.session_dir(&lose_id).exists()));
    d.stop();
}

#[test]
fn a_killed_restate_server_is_restarted_and_creates_work() {
    let mut d = TestDaemon::start();
    let before = d.create(&[]);
    let old = d.restate_pid();
    kill(old, "KILL");
    assert!(
        wait_for(|| {
            let st = d.json(&["daemon", "status", "--json"]);
            st["restate"]["restarts"] == 1 && st["restate"]["pid"] != old
        }),
        "restate-server was not restarted"
    );
    d.status = d.json(&["daemon", "status", "--json"]);
    let after = d.create(&[]);
    assert_eq!(after["status"], "live");
    assert_eq!(d.get(before["id"].as_str().unwrap())["status"], "live");
    d.stop();
}

/// A browser temp dir whose session dir is gone (a daemon killed mid-teardown) is swept by the
/// next reconcile of any bro home of the user; a fresh one without an owner is not touched.
#[test]
fn stale_browser_temp_dirs_are_swept() {
    let d = TestDaemon::start();
    let uid = nix_uid();
    let base = std::env::temp_dir().join(format!("bro-{uid}"));
    std::fs::create_dir_all(&base).unwrap();
    let stale = base.join(format!("it-stale-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("SingletonSocket"), "").unwrap();
    let gone = d.session_dir(&uuid::Uuid::new_v4().to_string());
    std::fs::write(stale.join("bro-owner"), gone.to_str().unwrap()).unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(&stale)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    assert!(
        wait_for(|| !stale.exists()),
        "{} not swept",
        stale.display()
    );
    d.stop();
}

fn nix_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}
