//! Errors people see: unknown ids, bad input, missing Chromium or restate-server.

use crate::helper::{TestDaemon, bro_in, text};

#[test]
fn an_unknown_id_exits_1_naming_the_id() {
    let d = TestDaemon::start();
    let id = "00000000-0000-4000-8000-000000000000";
    for cmd in [&["session", "get", id][..], &["session", "kill", id][..]] {
        let out = d.bro(cmd);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(id) && err.lines().count() == 1, "{err}");
    }
    d.stop();
}

#[test]
fn bad_input_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["session", "get", "not-a-uuid"][..],
        &["session", "create", "--timeout", "soon"][..],
        &["session", "create", "--width", "800"][..],
        &["session", "list", "--status", "alive"][..],
    ] {
        let out = bro_in(home.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
}

#[test]
fn missing_chromium_or_restate_names_the_install_command() {
    let home = tempfile::tempdir().unwrap();
    let out = bro_in(
        home.path(),
        &[
            "daemon",
            "--port",
            "0",
            "--chromium",
            "/nonexistent/chromium",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chromium not found") && err.contains("./install.sh"),
        "{err}"
    );

    let out = bro_in(
        home.path(),
        &[
            "daemon",
            "--port",
            "0",
            "--restate-server",
            "/nonexistent/restate-server",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("restate-server not found") && err.contains("./install.sh"),
        "{err}"
    );

    let out = bro_in(
        home.path(),
        &[
            "daemon",
            "start",
            "--port",
            "0",
            "--chromium",
            "/nonexistent/chromium",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("./install.sh"),
        "{}",
        text(&out)
    );
}
