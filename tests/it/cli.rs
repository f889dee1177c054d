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

/// Each setting comes from its flag, else its `BRO_*` variable, else `config.toml`, else the
/// default, resolved the one way `bro daemon`, `bro daemon start` and `bro doctor` share
/// (`bro doctor` shows the port it resolved).
#[test]
fn settings_come_from_flag_then_env_then_file_then_default() {
    let home = tempfile::tempdir().unwrap();
    let doctor_port = |args: &[&str], env: &[(&str, &str)]| -> String {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bro"));
        cmd.args(["doctor", "--json"])
            .args(args)
            .env("BRO_HOME", home.path())
            .env_remove("BRO_PORT")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied());
        let out = cmd.output().unwrap();
        let checks: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        let port = checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "port")
            .unwrap_or_else(|| panic!("no port check: {checks}"));
        port["detail"].as_str().unwrap().to_string()
    };
    assert!(doctor_port(&[], &[]).contains(":3000"), "the default");
    std::fs::create_dir_all(home.path().join("config")).unwrap();
    std::fs::write(home.path().join("config/config.toml"), "port = 41001\n").unwrap();
    assert!(doctor_port(&[], &[]).contains(":41001"), "the file");
    let env = [("BRO_PORT", "41002")];
    assert!(doctor_port(&[], &env).contains(":41002"), "env over file");
    let got = doctor_port(&["--port", "41003"], &env);
    assert!(got.contains(":41003"), "flag over env: {got}");
}
