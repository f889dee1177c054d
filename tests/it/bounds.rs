//! Every input has a bound bro can honour, and stop means stop (issue 11, items 2 and 3).
//!
//! - every bounded create option at its bound (a live session), just past it, at u64::MAX,
//!   negative, fractional, a string: past is a 400 that names the bound, and nothing is left
//!   wedged (`session kill --all` and `daemon stop` finish, nothing left behind); Restate's
//!   `Session/create` refuses the same input itself, for good, at once;
//! - a launch that always fails ends the session `failed` with its reason and its slot free;
//! - a start that fails, before or after restate-server started, leaves no process;
//! - `daemon stop` while a launch hangs returns within the bound and leaves nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helper::{TestDaemon, bro_in, http, is_live, leftovers, text, wait_for};

/// A generous bound for "finishes quickly" on a shared, noisy machine.
const QUICK: Duration = Duration::from_secs(60);

#[test]
fn options_are_honoured_at_their_bounds_and_refused_past_them() {
    let d = TestDaemon::start_with(&["--max-sessions", "2"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();

    let ua_max = "u".repeat(1024);
    let ua_over = "u".repeat(1025);
    let proxy_over = format!("http://{}.example:3128", "p".repeat(2040));
    let past: Vec<(String, &str)> = vec![
        (r#"{"timeout":604800001}"#.into(), "604800000"),
        (r#"{"timeout":18446744073709551615}"#.into(), "604800000"),
        (r#"{"timeout":18446744073709551616}"#.into(), "604800000"),
        (r#"{"timeout":1e300}"#.into(), "604800000"),
        (r#"{"timeout":-1}"#.into(), "604800000"),
        (r#"{"timeout":1.5}"#.into(), "604800000"),
        (r#"{"timeout":"600000"}"#.into(), "604800000"),
        (r#"{"timeout":true}"#.into(), "604800000"),
        (r#"{"inactivityTimeout":604800001}"#.into(), "604800000"),
        (
            r#"{"inactivityTimeout":18446744073709551615}"#.into(),
            "604800000",
        ),
        (r#"{"inactivityTimeout":-5}"#.into(), "604800000"),
        (r#"{"inactivityTimeout":0.25}"#.into(), "604800000"),
        (
            r#"{"dimensions":{"width":10001,"height":600}}"#.into(),
            "10000",
        ),
        (r#"{"dimensions":{"width":800,"height":0}}"#.into(), "10000"),
        (
            r#"{"dimensions":{"width":4294967296,"height":600}}"#.into(),
            "10000",
        ),
        (
            r#"{"dimensions":{"width":18446744073709551615,"height":600}}"#.into(),
            "10000",
        ),
        (
            r#"{"dimensions":{"width":-1,"height":600}}"#.into(),
            "10000",
        ),
        (
            r#"{"dimensions":{"width":800.5,"height":600}}"#.into(),
            "10000",
        ),
        (
            r#"{"dimensions":{"width":"800","height":600}}"#.into(),
            "10000",
        ),
        (r#"{"dimensions":{"width":800}}"#.into(), "10000"),
        (r#"{"dimensions":[800,600]}"#.into(), "an object"),
        (format!(r#"{{"userAgent":"{ua_over}"}}"#), "1024 bytes"),
        (r#"{"userAgent":"a\nb"}"#.into(), "control characters"),
        (format!(r#"{{"proxyUrl":"{proxy_over}"}}"#), "2048 bytes"),
        (r#"{"proxyUrl":"http://"}"#.into(), "with a host"),
    ];
    for (body, bound) in &past {
        let started = Instant::now();
        let (status, out) = http(&api, "POST", "/v1/sessions", body);
        let out = String::from_utf8_lossy(&out);
        assert_eq!(status, 400, "{body}: {out}");
        assert!(
            out.contains(bound),
            "{body}: the answer names no bound: {out}"
        );
        assert!(
            started.elapsed() < QUICK,
            "{body} took {:?}",
            started.elapsed()
        );
    }
    let listed = d.json(&["session", "list", "--json"]);
    assert_eq!(
        listed["sessions"],
        Value::Array(vec![]),
        "a refused create left a session"
    );

    // At the bound: a live session each (0 means none for both timeouts).
    let at: Vec<String> = vec![
        r#"{"timeout":604800000}"#.into(),
        r#"{"timeout":604800000.0,"inactivityTimeout":604800000}"#.into(),
        r#"{"timeout":0,"inactivityTimeout":0}"#.into(),
        r#"{"dimensions":{"width":1,"height":1}}"#.into(),
        r#"{"dimensions":{"width":10000,"height":10000}}"#.into(),
        format!(r#"{{"userAgent":"{ua_max}"}}"#),
    ];
    for body in &at {
        let (status, out) = http(&api, "POST", "/v1/sessions", body);
        let s: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(status, 200, "{body}: {s}");
        assert_eq!(s["status"], "live", "{body}: {s}");
        let id = s["id"].as_str().unwrap();
        let kill = d.bro(&["session", "kill", id]);
        assert!(kill.status.success(), "{}", text(&kill));
    }
    let s: Value = {
        let (_, out) = http(&api, "POST", "/v1/sessions", r#"{"timeout":604800000}"#);
        serde_json::from_slice(&out).unwrap()
    };
    assert_eq!(s["timeout"], 604800000u64);

    // Restate's own Session/create refuses input past a bound for good, at once: a client of
    // the ingress that bypasses the API cannot wedge a session either.
    let ingress = d.status["restate"]["ingress_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("unix:")
        .to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let answer = unix_http(
        Path::new(&ingress),
        &format!("/Session/{id}/create"),
        r#"{"options":{"timeoutMs":18446744073709551615}}"#,
    );
    assert!(
        started.elapsed() < QUICK,
        "the ingress call took {:?}",
        started.elapsed()
    );
    assert!(
        answer.starts_with("HTTP/1.1 4") && answer.contains("604800000"),
        "Session/create past a bound: {answer}"
    );
    let got = d.bro(&["session", "get", &id]);
    assert!(
        !got.status.success(),
        "a refused create left a record: {}",
        text(&got)
    );

    // Nothing is wedged: kill --all and stop finish quickly with nothing left.
    let started = Instant::now();
    d.ok(&["session", "kill", "--all"]);
    assert!(
        started.elapsed() < QUICK,
        "kill --all took {:?}",
        started.elapsed()
    );
    let status = d.json(&["daemon", "status", "--json"]);
    assert_eq!(status["pool"]["used"], 0, "{status}");
    stop_quickly(d);
}

#[test]
fn a_launch_that_always_fails_ends_failed_and_frees_its_slot() {
    let fake = FakeChromium::new("fail");
    let d = TestDaemon::start_with(&["--max-sessions", "1", "--chromium", fake.path()]);

    let started = Instant::now();
    let out = d.bro(&["session", "create", "--json"]);
    assert!(
        started.elapsed() < QUICK,
        "the create took {:?}",
        started.elapsed()
    );
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("launch failed"), "{err}");

    let listed = d.json(&["session", "list", "--json"]);
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{listed}");
    let id = sessions[0]["id"].as_str().unwrap().to_string();
    assert_eq!(sessions[0]["status"], "failed");
    let reason = sessions[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("launch failed") && reason.contains("exited"),
        "{reason}"
    );
    // `session get` shows the reason.
    let shown = d.ok(&["session", "get", &id]);
    assert!(
        shown.contains("reason") && shown.contains("launch failed"),
        "{shown}"
    );
    // The slot is free, and usable: the one slot takes a session that launches.
    let status = d.json(&["daemon", "status", "--json"]);
    assert_eq!(status["pool"]["used"], 0, "{status}");
    fake.set_mode("real");
    let s = d.create(&["--no-wait"]);
    assert_eq!(s["status"], "live", "{s}");
    d.ok(&["session", "kill", "--all"]);
    d.stop();
}

#[test]
fn a_start_that_fails_leaves_no_process() {
    // The API port is taken: the start fails before anything is started.
    let home = fresh_home();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = bro_in(home.path(), &["daemon", "start", "--port", &port]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        text(&out)
    );
    assert_nothing_left(home.path());

    // The control socket cannot be bound (a directory is in its way): the start fails after
    // restate-server and the warm pool started, and stops them.
    let home = fresh_home();
    std::fs::create_dir_all(home.path().join("run/bro.sock/in-the-way")).unwrap();
    let out = bro_in(
        home.path(),
        &["daemon", "start", "--port", "0", "--warm", "1"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        home.path().join("data/restate/restate.pid").exists(),
        "restate-server was never started, so this checks nothing: {}",
        text(&out)
    );
    // (A warm browser's dir may stay, its browser stopped: the next start's reconciliation
    // removes it.)
    assert_nothing_left(home.path());
    // Its cgroup and bro's parents do not: no later daemon of this home may come to sweep.
    let record = std::fs::read_to_string(home.path().join("data/cgroups")).unwrap_or_default();
    let left: Vec<&str> = record
        .lines()
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    assert!(left.is_empty(), "parent cgroups left behind: {left:?}");

    // A setting past its bound: refused, naming it, before anything starts.
    let home = fresh_home();
    let out = bro_in(home.path(), &["daemon", "start", "--queue-timeout", "2h"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1h"),
        "{}",
        text(&out)
    );
    std::fs::create_dir_all(home.path().join("config")).unwrap();
    std::fs::write(
        home.path().join("config/config.toml"),
        "max_sessions = 100000\n",
    )
    .unwrap();
    let out = bro_in(home.path(), &["daemon", "start", "--port", "0"]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_sessions") && err.contains("10000"),
        "{}",
        text(&out)
    );
    assert_nothing_left(home.path());
}

#[test]
fn stop_while_a_launch_hangs_returns_in_time_and_leaves_nothing() {
    let fake = FakeChromium::new("hang");
    let mut d = TestDaemon::start_with(&["--chromium", fake.path()]);
    std::thread::scope(|scope| {
        let create = scope.spawn(|| d.bro(&["session", "create", "--json"]));
        // The "browser" runs (its pid recorded) and never answers.
        let sessions = d.home.path().join("data/sessions");
        let mut pid = None;
        assert!(
            wait_for(|| {
                pid = first_recorded_pid(&sessions);
                pid.is_some()
            }),
            "the hanging launch never started"
        );
        let pid = pid.unwrap();
        assert!(is_live(pid));

        let started = Instant::now();
        let out = d.bro(&["daemon", "stop"]);
        let took = started.elapsed();
        assert!(out.status.success(), "{}", text(&out));
        assert!(took < QUICK, "daemon stop took {took:?}");
        assert!(!is_live(pid), "the hanging browser {pid} is still running");
        assert_nothing_left(d.home.path());
        // The create's client got its answer (an error) instead of hanging on.
        let out = create.join().unwrap();
        assert!(!out.status.success(), "{}", text(&out));
    });

    // The next daemon shows the session as failed, with why.
    fake.set_mode("real");
    d.restart_with(&["--chromium", fake.path()]);
    let listed = d.json(&["session", "list", "--json"]);
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{listed}");
    assert_eq!(sessions[0]["status"], "failed", "{listed}");
    let reason = sessions[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("stopping"), "{reason}");
    let status = d.json(&["daemon", "status", "--json"]);
    assert_eq!(status["pool"]["used"], 0, "{status}");
    // The dir of its browser, stopped at the daemon's stop, goes once its record is final.
    let sessions = d.home.path().join("data/sessions");
    assert!(
        wait_for(|| std::fs::read_dir(&sessions).map_or(0, |d| d.count()) == 0),
        "the failed session's dir stays"
    );

    // A browser frozen with SIGSTOP does not hold up a stop either.
    let s = d.create(&[]);
    let pid = d.browser_pid(s["id"].as_str().unwrap());
    crate::helper::kill(pid, "STOP");
    stop_quickly(d);
    assert!(!is_live(pid), "the frozen browser {pid} is still there");
}

/// No process of `home` is left: none names it, and the restate-server its restate dir
/// recorded is gone.
fn assert_nothing_left(home: &Path) {
    assert!(
        wait_for(|| leftovers(home).is_empty()),
        "processes left behind: {:?}",
        leftovers(home)
    );
    if let Ok(bytes) = std::fs::read(home.join("data/restate/restate.pid")) {
        let pf: Value = serde_json::from_slice(&bytes).unwrap();
        let pid = pf["pid"].as_u64().unwrap() as u32;
        assert!(!is_live(pid), "restate-server {pid} is still running");
    }
}

/// The pid in the first session dir's `worker.json`, once there is one.
fn first_recorded_pid(sessions: &Path) -> Option<u32> {
    std::fs::read_dir(sessions).ok()?.find_map(|e| {
        let bytes = std::fs::read(e.ok()?.path().join("worker.json")).ok()?;
        let pf: Value = serde_json::from_slice(&bytes).ok()?;
        pf["pid"].as_u64().map(|p| p as u32)
    })
}

/// A `--chromium` stand-in whose behaviour a file chooses: `fail` (exits 1 at once), `hang`
/// (never answers and ignores SIGTERM; its command line still names the session's profile,
/// as a browser's does) or `real` (runs the real Chromium).
struct FakeChromium {
    dir: tempfile::TempDir,
    script: PathBuf,
}

impl FakeChromium {
    fn new(mode: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("bro-fake-chromium-")
            .tempdir()
            .unwrap();
        let real = std::env::var_os("BRO_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        let script = dir.path().join("chromium");
        let mode_file = dir.path().join("mode");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 case \"$(cat '{mode}')\" in\n\
                 fail) echo 'fake chromium: failing on purpose' >&2; exit 1 ;;\n\
                 hang) trap '' TERM INT HUP; while :; do sleep 1; done ;;\n\
                 esac\n\
                 exec '{real}' \"$@\"\n",
                mode = mode_file.display(),
                real = real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let fake = FakeChromium { dir, script };
        fake.set_mode(mode);
        fake
    }

    fn path(&self) -> &str {
        self.script.to_str().unwrap()
    }

    fn set_mode(&self, mode: &str) {
        std::fs::write(self.dir.path().join("mode"), mode).unwrap();
    }
}

/// One HTTP/1.1 POST over a Unix socket; the answer as text (read for up to 90 s).
fn unix_http(socket: &Path, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// An empty bro home of its own (prefixed so the leftover checks find what it started).
fn fresh_home() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bro-it-")
        .tempdir()
        .unwrap()
}

/// `daemon stop`, which must return within [`QUICK`] and leave nothing.
fn stop_quickly(d: TestDaemon) {
    let started = Instant::now();
    d.stop();
    assert!(
        started.elapsed() < QUICK,
        "daemon stop took {:?}",
        started.elapsed()
    );
}
