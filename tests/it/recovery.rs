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

/// Issue 11: Restate's store lost while the daemon was down. The next daemon finds a session
/// dir that no record speaks of: it stops the browser and moves the dir, with the files
/// uploaded to it, into quarantine instead of deleting it, and `bro doctor --json` says where.
#[test]
fn a_lost_restate_store_quarantines_session_dirs() {
    let mut d = TestDaemon::start();
    let id = d.create(&["--timeout", "0"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pid = d.browser_pid(&id);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let status = upload(&api, &id, "report.txt", b"keep me");
    assert_eq!(status, 200, "upload failed");

    let out = d.bro(&["daemon", "stop", "--keep-sessions"]);
    assert!(out.status.success(), "{}", crate::helper::text(&out));
    assert!(
        !group_members(pid).is_empty(),
        "the browser outlives the daemon"
    );
    let store = d.home.path().join("data/restate/data");
    assert!(store.is_dir(), "no Restate store at {}", store.display());
    std::fs::remove_dir_all(&store).unwrap();
    // Past the reaper's grace period, so the first reconciliation judges it.
    let dir = d.session_dir(&id);
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(&dir)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();

    d.restart_with(&[]);
    assert!(wait_for(|| !dir.exists()), "the session dir is still there");
    assert!(
        wait_for(|| group_members(pid).is_empty()),
        "the orphan browser still runs"
    );
    let quarantine = d.home.path().join("data/quarantine");
    let moved: Vec<_> = std::fs::read_dir(&quarantine)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    let name = moved[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("{id}-")), "{name}");
    assert_eq!(
        std::fs::read(moved[0].join("files/report.txt")).unwrap(),
        b"keep me"
    );

    let out = d.bro(&["doctor", "--json"]);
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", crate::helper::text(&out)));
    let shown = moved[0].display().to_string();
    let check = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "quarantine")
        .unwrap_or_else(|| panic!("no quarantine check: {checks}"));
    assert_eq!(check["ok"], false, "{check}");
    assert_eq!(check["path"], shown.as_str(), "{check}");
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("rm -rf '{shown}'")),
        "{check}"
    );
    assert!(!out.status.success(), "a quarantined dir is a failed check");
    d.stop();
}

/// Issue 11: an orphan dir (its session ended) whose `worker.json` names a pid that now
/// belongs to an unrelated process group, even with the right start time. The reaper
/// removes the dir and leaves the group alone: its command line does not name the dir.
#[test]
fn the_reaper_spares_an_unrelated_group_on_a_recorded_pid() {
    use std::os::unix::process::CommandExt;
    let d = TestDaemon::start();
    let id = d.create(&[])["id"].as_str().unwrap().to_string();
    d.ok(&["session", "kill", &id]);
    let dir = d.session_dir(&id);
    assert!(wait_for(|| !dir.exists()));

    let mut bystander = std::process::Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = bystander.id();
    let start = bro::worker::process::stat(pid).unwrap().start_time;
    std::fs::create_dir_all(dir.join("files")).unwrap();
    let pf = format!(r#"{{"pid":{pid},"start_time":{start},"session":"{id}"}}"#);
    std::fs::write(dir.join("worker.json"), pf).unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(&dir)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();

    assert!(wait_for(|| !dir.exists()), "the orphan dir was not reaped");
    let alive = crate::helper::is_live(pid) && group_members(pid) == [pid];
    kill(pid, "KILL");
    let _ = bystander.wait();
    assert!(alive, "the reaper killed an unrelated process group");
    assert!(
        !d.home.path().join("data/quarantine").exists(),
        "an ended session's dir is evidence enough: reaped, not quarantined"
    );
    d.stop();
}

/// `POST /v1/sessions/{id}/files` with one multipart `file` part; returns the status.
fn upload(api: &str, id: &str, name: &str, bytes: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let addr = api.trim_start_matches("http://");
    let boundary = "bro-it-boundary";
    let mut body = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         content-type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /v1/sessions/{id}/files HTTP/1.1\r\nHost: {addr}\r\n\
         content-type: multipart/form-data; boundary={boundary}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(&body).unwrap();
    let mut resp = String::new();
    let _ = tcp.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
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
