//! `bro tui` end to end under tmux: create a session with `n`, see it and its page preview,
//! kill it with `d`, quit.

use std::process::Command;

use crate::helper::{TestDaemon, wait_for};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is needed for this test (apt-get install tmux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn drive_the_dashboard_with_keys() {
    let d = TestDaemon::start();
    let name = format!("bro-it-tui-{}", std::process::id());
    let cmd = format!(
        "BRO_HOME={} BRO_PORT=0 BRO_TUI_GRAPHICS=halfblocks {} tui",
        d.home.path().display(),
        env!("CARGO_BIN_EXE_bro")
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "150",
        "-y",
        "30",
        &cmd,
    ]);
    let screen = || tmux(&["capture-pane", "-p", "-t", &name]);
    let shows = |text: &str| wait_for(|| screen().contains(text));

    assert!(shows("sessions (0)"), "{}", screen());
    tmux(&["send-keys", "-t", &name, "n"]);
    let live = || {
        let list = d.json(&["session", "list", "--json"]);
        list["sessions"][0]["status"] == "live"
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

    tmux(&["send-keys", "-t", &name, "d"]);
    assert!(shows("Kill session"), "{}", screen());
    tmux(&["send-keys", "-t", &name, "y"]);
    assert!(shows("released"), "{}", screen());
    assert_eq!(d.get(&id)["status"], "released");

    tmux(&["send-keys", "-t", &name, "q"]);
    let gone = wait_for(|| {
        !Command::new("tmux")
            .args(["has-session", "-t", &name])
            .status()
            .is_ok_and(|s| s.success())
    });
    if !gone {
        tmux(&["kill-session", "-t", &name]);
    }
    assert!(gone, "bro tui did not quit on q");
    d.stop();
}
