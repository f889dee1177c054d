//! `bro tui` end to end under tmux: create a session with `n`, see it and its page preview,
//! open its viewer with `o`, kill it with `d`, quit; and a `q` pressed at once quits.

use std::process::Command;

use crate::helper::{TestDaemon, wait_for};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is needed for this test (apt-get install tmux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the tmux session is gone, waiting a bounded time for it; kills it if not.
fn ends(name: &str) -> bool {
    let gone = wait_for(|| {
        !Command::new("tmux")
            .args(["has-session", "-t", name])
            .status()
            .is_ok_and(|s| s.success())
    });
    if !gone {
        tmux(&["kill-session", "-t", name]);
    }
    gone
}

/// Runs `cmd` in a detached tmux session `name` of 150×30 cells.
fn start_in_tmux(name: &str, cmd: &str) {
    tmux(&[
        "new-session",
        "-d",
        "-s",
        name,
        "-x",
        "150",
        "-y",
        "30",
        cmd,
    ]);
}

/// Issue 14: the terminal-graphics query ate the first key (tmux does not answer it, and the
/// query's reader thread outlived its deadline), so a single `q` did not quit. The query runs
/// here (no `BRO_TUI_GRAPHICS`), and the key is sent before the TUI has even started.
#[test]
fn r14_a_single_q_right_after_start_quits() {
    let d = TestDaemon::start();
    let name = format!("bro-it-tui-q-{}", std::process::id());
    let cmd = format!(
        "BRO_HOME={} BRO_PORT=0 {} tui",
        d.home.path().display(),
        env!("CARGO_BIN_EXE_bro")
    );
    start_in_tmux(&name, &cmd);
    tmux(&["send-keys", "-t", &name, "q"]);
    assert!(ends(&name), "bro tui did not quit on a single q");
    d.stop();
}

#[test]
fn drive_the_dashboard_with_keys() {
    let d = TestDaemon::start();
    let name = format!("bro-it-tui-{}", std::process::id());
    // `o` runs this opener: it writes down the URL it was given.
    let bin = tempfile::tempdir().unwrap();
    let opened = bin.path().join("opened");
    let opener = bin.path().join("xdg-open");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cmd = format!(
        "PATH={}:$PATH BRO_HOME={} BRO_PORT=0 BRO_TUI_GRAPHICS=halfblocks {} tui",
        bin.path().display(),
        d.home.path().display(),
        env!("CARGO_BIN_EXE_bro")
    );
    start_in_tmux(&name, &cmd);
    let screen = || tmux(&["capture-pane", "-p", "-t", &name]);
    let shows = |text: &str| wait_for(|| screen().contains(text));

    assert!(shows("sessions (0)"), "{}", screen());
    tmux(&["send-keys", "-t", &name, "n"]);
    let live = || {
        let list = d.json(&["session", "list", "--json"]);
        list["sessions"][0]["broStatus"] == "live"
    };
    assert!(wait_for(live), "{}", screen());
    let list = d.json(&["session", "list", "--json"]);
    let id = list["sessions"][0]["id"].as_str().unwrap().to_string();
    let row = format!("{}  live", &id[..8]);
    assert!(shows("sessions (1)") && shows(&row), "{}", screen());
    // The preview pane shows the selected session's page: its URL comes from a screenshot.
    assert!(
        shows(&format!("page of {}", &id[..8])) && shows("about:blank"),
        "{}",
        screen()
    );

    tmux(&["send-keys", "-t", &name, "o"]);
    let viewer = d.get(&id)["sessionViewerUrl"].as_str().unwrap().to_string();
    assert!(
        wait_for(|| std::fs::read_to_string(&opened).is_ok_and(|u| u == viewer)),
        "the opener was not run with {viewer}: {}",
        screen()
    );
    assert!(shows("opened http://"), "{}", screen());

    tmux(&["send-keys", "-t", &name, "d"]);
    assert!(shows("Kill session"), "{}", screen());
    tmux(&["send-keys", "-t", &name, "y"]);
    assert!(shows("released"), "{}", screen());
    assert_eq!(d.status_of(&id), "released");

    tmux(&["send-keys", "-t", &name, "q"]);
    assert!(ends(&name), "bro tui did not quit on q");
    d.stop();
}
