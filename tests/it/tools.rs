//! `bro doctor`, `bro daemon logs`, config precedence, completions.

use std::path::Path;

use crate::helper::{TestDaemon, bro_in, text};

#[test]
fn doctor_passes_here_and_names_the_fix_when_chromium_is_missing() {
    let home = tempfile::tempdir().unwrap();
    let out = bro_in(home.path(), &["doctor"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains('✗'), "{stdout}");
    assert!(stdout.contains("✓ chromium launch"), "{stdout}");

    let out = bro_in(
        home.path(),
        &["doctor", "--chromium", "/nonexistent/chromium"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("✗ chromium") && stdout.contains("fix: ./install.sh"),
        "{stdout}"
    );

    let out = bro_in(home.path(), &["doctor", "--json"]);
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        checks.as_array().unwrap().iter().all(|c| c["ok"] == true),
        "{checks}"
    );
    // The test browser was SIGKILLed; on a loaded machine its processes may take a moment to go.
    assert!(
        crate::helper::wait_for(|| crate::helper::leftovers(home.path()).is_empty()),
        "doctor left processes: {:?}",
        crate::helper::leftovers(home.path())
    );
}

#[test]
fn flags_beat_env_beat_config_file() {
    let mut d = TestDaemon::prepare();
    let config = d.home.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        "max_sessions = 3\ndefault_timeout = \"7s\"\nnode = \"from-file\"\n",
    )
    .unwrap();

    d.restart_with_env(&["--node", "from-flag"], &[("BRO_MAX_SESSIONS", "5")]);
    assert_eq!(d.status["max_sessions"], 5, "env beats the file");
    assert_eq!(d.status["node"], "from-flag", "a flag beats the file");
    let s = d.create(&[]);
    assert_eq!(s["timeout"], 7000, "the file's default_timeout applies");
    d.ok(&["session", "kill", "--all"]);
    d.ok(&["daemon", "stop"]);

    d.restart_with_env(&["--max-sessions", "7"], &[("BRO_MAX_SESSIONS", "5")]);
    assert_eq!(d.status["max_sessions"], 7, "a flag beats env");
    assert_eq!(d.status["node"], "from-file");

    // A typo in the file is an error that names the file.
    std::fs::write(config.join("config.toml"), "max_sesions = 3\n").unwrap();
    let out = d.bro(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("config.toml"),
        "{}",
        text(&out)
    );
    d.stop();
}

#[test]
fn logs_show_daemon_and_restate_lines() {
    let d = TestDaemon::start();
    d.create(&[]);
    let out = d.ok(&["daemon", "logs", "-n", "200"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("daemon  | ") && l.contains("bro daemon ready")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("restate | ")), "{out}");
    d.stop();
}

#[test]
fn zsh_and_fish_completions_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for (shell, args, file) in [
        ("zsh", &["-n"][..], "_bro"),
        ("fish", &["--no-execute"][..], "bro.fish"),
    ] {
        let out = std::process::Command::new(shell)
            .args(args)
            .arg(dir.join(file))
            .output()
            .unwrap_or_else(|e| {
                panic!("{shell} is needed for this test (apt-get install zsh fish): {e}")
            });
        assert!(
            out.status.success(),
            "{shell} cannot parse {file}: {}",
            text(&out)
        );
    }
}

#[test]
fn bash_completion_loads() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/bro.bash");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p bro", file.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bro"));
}

#[test]
fn tab_completes_live_session_ids() {
    let d = TestDaemon::start();
    let s = d.create(&[]);
    let id = s["id"].as_str().unwrap();
    let complete = |home: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bro"))
            .args(["--", "bro", "session", "kill", ""])
            .env("BRO_HOME", home)
            .env("COMPLETE", "bash")
            .env("_CLAP_IFS", "\n")
            .env("_CLAP_COMPLETE_INDEX", "3")
            .env("_CLAP_COMPLETE_COMP_TYPE", "9")
            .env("_CLAP_COMPLETE_SPACE", "true")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let words = complete(d.home.path());
    assert!(words.lines().any(|w| w == id), "{words}");
    d.stop();
    // No daemon: no ids, no error.
    let empty = tempfile::tempdir().unwrap();
    let words = complete(empty.path());
    assert!(words.lines().all(|w| w.starts_with("--")), "{words}");
}

#[test]
fn bench_runs_and_cleans_up() {
    let home = tempfile::tempdir().unwrap();
    // No playwright-core: said before any daemon starts, with what to install.
    let out = bro_in(home.path(), &["bench", "--playwright", "/nonexistent"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("install.sh") && text(&out).contains("--jobs 0"),
        "{}",
        text(&out)
    );
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    crate::compat::npm_ci(&compat);
    let playwright = compat.join("node_modules/playwright-core");
    let out = bro_in(
        home.path(),
        &[
            "bench",
            "--runs",
            "2",
            "--sessions",
            "2",
            "--concurrency",
            "2",
            "--live",
            "2",
            "--round-trips",
            "20",
            "--screenshots",
            "1",
            "--jobs",
            "2",
            "--job-concurrency",
            "1,2,1",
            "--playwright",
            playwright.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["raw_launch_ms"]["p50"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["create_ms"]["p50"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["concurrent"]["failures"], 0, "{r}");
    assert!(r["memory_kib"]["restate_idle"].as_u64().unwrap() > 0, "{r}");
    // Each create paired with the raw launch before it.
    assert!(
        r["ratios"]["create_over_raw_paired_p50"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    // Every side on the daemon's terms: no browser of the run may raise its threads' priority
    // (as root, the bench drops CAP_SYS_NICE as the daemon does).
    assert_eq!(r["machine"]["priority_boost"], false, "{r}");
    assert_eq!(r["jobs"]["priority_boost"], false, "{r}");
    // The job benchmark, in the one run: each level once, in the order given, cold then warm
    // (the default pool); both sides ran every job in each cell, and each cell says its
    // concurrency and pass, each side's rate, the ratio and bro's creates by kind (no timing
    // is asserted).
    let jobs = &r["jobs"];
    assert_eq!(jobs["n"], 2, "{r}");
    assert_eq!(jobs["concurrency"], serde_json::json!([1, 2]), "{r}");
    assert_eq!(jobs["warm_pool"], 2, "{r}");
    let cells: Vec<(u64, &str)> = jobs["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["concurrency"].as_u64().unwrap(),
                c["pass"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cells,
        [(1, "cold"), (1, "warm"), (2, "cold"), (2, "warm")],
        "{r}"
    );
    for cell in jobs["cells"].as_array().unwrap() {
        for side in ["bro", "playwright"] {
            let s = &cell[side];
            assert_eq!(s["jobs"], 2, "{side}: {cell}");
            assert_eq!(s["failures"], 0, "{side}: {cell}");
            assert!(s["jobs_per_s"].as_f64().unwrap() > 0.0, "{cell}");
            assert!(s["steps_p50_ms"]["work"].as_f64().is_some(), "{cell}");
        }
        assert!(
            cell["bro_over_playwright"].as_f64().unwrap() > 0.0,
            "{cell}"
        );
        assert!(cell["ratio_invalid"].is_null(), "{cell}");
        // Every bro create was counted, by kind; cold ones never take a warm browser.
        let creates = &cell["bro_creates"];
        let (warm, cold) = (
            creates["warm"].as_u64().unwrap(),
            creates["cold"].as_u64().unwrap(),
        );
        assert_eq!(warm + cold, 2, "{cell}");
        if cell["pass"] == "cold" {
            assert_eq!(warm, 0, "{cell}");
        }
    }
    // Its own daemon, restate-server and browsers are gone, and so is its home.
    let stray = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("bro-bench-"))
            .filter(|e| !crate::helper::leftovers(&e.path()).is_empty())
            .count()
    };
    assert!(
        crate::helper::wait_for(|| stray() == 0),
        "bench left processes behind"
    );
}
