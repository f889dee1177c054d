//! The daemon's lifecycle: status, one daemon per home, autostart, stop.

use crate::helper::{TestDaemon, bro_in, text};

#[test]
fn status_json_names_every_address() {
    let d = TestDaemon::start();
    let st = &d.status;
    for key in ["pid", "api_url", "socket", "version"] {
        assert!(!st[key].is_null(), "missing {key} in {st}");
    }
    for key in ["admin_url", "ingress_url", "pid"] {
        assert!(
            !st["restate"][key].is_null(),
            "missing restate.{key} in {st}"
        );
    }
    let socket = std::path::Path::new(st["socket"].as_str().unwrap());
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
    let health = d.ok(&["daemon", "status"]);
    assert!(health.contains("running"), "{health}");
    d.stop();
}

#[test]
fn a_second_daemon_on_one_home_is_refused() {
    let d = TestDaemon::start();
    let out = d.bro(&["daemon", "--port", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let pid = d.daemon_pid().to_string();
    assert!(
        err.contains("already running") && err.contains(&pid),
        "{err}"
    );
    d.stop();
}

#[test]
fn session_commands_start_the_daemon_when_none_runs() {
    let home = tempfile::Builder::new()
        .prefix("bro-it-")
        .tempdir()
        .unwrap();
    let out = bro_in(home.path(), &["session", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("starting the daemon"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no sessions");
    let stop = bro_in(home.path(), &["daemon", "stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    assert!(crate::helper::wait_for(|| crate::helper::leftovers(
        home.path()
    )
    .is_empty()));
}

#[test]
fn status_without_a_daemon_says_how_to_start_one() {
    let home = tempfile::Builder::new()
        .prefix("bro-it-")
        .tempdir()
        .unwrap();
    let out = bro_in(home.path(), &["daemon", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bro daemon start"),
        "{}",
        text(&out)
    );
}
