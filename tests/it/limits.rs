//! Per-session memory limits (cgroup and measurement modes) and the free memory floor.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::helper::open_tab;
use crate::helper::{TestDaemon, http, http_with, serve_http, text, wait_for};

/// A page that takes memory fast: 32 MiB typed arrays, each written so its pages are real,
/// up to 960 MiB (past the 450 MiB limit tested, not the machine's memory).
const HOG: &str = "<!doctype html><title>hog</title><script>\
    const keep = [];\
    function more() {\
      for (let i = 0; i < 4; i++) { const b = new Uint8Array(32 << 20); b.fill(7); keep.push(b); }\
      if (keep.length < 30) setTimeout(more, 20);\
    }\
    more();\
    </script>";

/// Serves the hog page and a calm one; their URLs.
fn pages() -> (String, String) {
    let (port, _) = serve_http(|path, _| match path {
        "/hog" => ("text/html", HOG.as_bytes().to_vec()),
        _ => ("text/html", b"<!doctype html><title>calm</title>".to_vec()),
    });
    (
        format!("http://127.0.0.1:{port}/hog"),
        format!("http://127.0.0.1:{port}/calm"),
    )
}

/// The cgroup mode `auto` must pick here: these tests need root with writable cgroups (v1
/// `memory` and `cpu`, or a cgroup2 whose own cgroup delegates both); they fail saying so.
fn expected_cgroup_mode() -> &'static str {
    let writable = |p: &str| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok();
    let own_v2 = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(String::from));
    if let Some(own) = own_v2 {
        let dir = Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/'));
        let subtree =
            std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        let has = |c: &str| subtree.split_whitespace().any(|x| x == c);
        if has("memory") && has("cpu") && writable(dir.to_str().unwrap_or("")) {
            return "cgroup v2";
        }
    }
    if writable("/sys/fs/cgroup/memory") && writable("/sys/fs/cgroup/cpu") {
        return "cgroup v1";
    }
    panic!(
        "these tests need root with writable cgroups: v1 memory and cpu hierarchies, or cgroup v2 \
         with memory and cpu delegated to the test's cgroup"
    );
}

/// Removes the cgroup dirs it holds when dropped, so a failed test leaves none behind.
struct CgroupGuard(Vec<PathBuf>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        // Killed browsers take a moment to leave their cgroups.
        let began = Instant::now();
        while self.0.iter().any(|d| d.exists()) && began.elapsed() < Duration::from_secs(5) {
            for dir in &self.0 {
                let _ = std::fs::remove_dir(dir);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for parent in self.0.iter().filter_map(|d| d.parent()) {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// The cgroup dirs named `id` under `/sys/fs/cgroup` (bro's are a few levels down).
fn cgroups_named(id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, id: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name() == id {
                out.push(path);
            } else if depth > 0 {
                walk(&path, id, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), id, 5, &mut out);
    out
}

/// Sum of the PSS of a process group, in MiB (what measurement mode compares).
fn group_pss_mib(pgid: u32) -> u64 {
    bro::worker::process::group_usage(pgid).0 / 1024
}

/// In `mode` (`auto` picks cgroup v1 on the CI machine), a session limited to 450 MiB that
/// loads a page taking 960 MiB ends `failed` with reason `memory limit`, its cgroup removed and
/// nothing of it left; a session under its limit stays live.
fn over_the_limit_fails(mode: &str, expect_mode: &str) {
    let (hog, calm) = pages();
    // Declared first, so it drops after the daemon (whose drop kills the browsers).
    let mut guard = CgroupGuard(Vec::new());
    let d = TestDaemon::start_with(&["--limits-mode", mode, "--max-session-memory", "1GiB"]);
    assert_eq!(d.status["limits"]["mode"], expect_mode, "{}", d.status);
    // An idle browser's PSS is ~190-250 MiB here (more while it starts): room for a small page.
    let small = d.create(&["--memory-limit", "450MiB"]);
    let roomy = d.create(&[]);
    let (small_id, roomy_id) = (
        small["id"].as_str().unwrap().to_string(),
        roomy["id"].as_str().unwrap().to_string(),
    );
    assert_eq!(small["memoryLimit"], 450u64 << 20, "{small}");
    assert_eq!(
        roomy["memoryLimit"],
        1u64 << 30,
        "the daemon's default: {roomy}"
    );
    let pid = d.browser_pid(&small_id);
    let cgroups = cgroups_named(&small_id);
    guard.0.extend(cgroups.iter().cloned());
    guard.0.extend(cgroups_named(&roomy_id));
    if expect_mode.starts_with("cgroup") {
        assert!(!cgroups.is_empty(), "no cgroup named {small_id}");
        for dir in &cgroups {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
            assert!(
                procs.lines().any(|l| l.trim() == pid.to_string()),
                "browser {pid} not in {}: {procs}",
                dir.display()
            );
        }
    } else {
        assert!(
            cgroups.is_empty(),
            "measurement mode made cgroups: {cgroups:?}"
        );
    }
    eprintln!("[{mode}] idle browser PSS: {} MiB", group_pss_mib(pid));

    open_tab(small["websocketUrl"].as_str().unwrap(), &hog);
    open_tab(roomy["websocketUrl"].as_str().unwrap(), &calm);
    let began = Instant::now();
    assert!(
        wait_for(|| d.status_of(&small_id) == "failed"),
        "the session over its limit did not fail: {}",
        d.get(&small_id)
    );
    eprintln!(
        "[{mode}] over-limit page caught after {:?}",
        began.elapsed()
    );
    assert_eq!(d.get(&small_id)["reason"], "memory limit");
    assert!(
        wait_for(|| cgroups.iter().all(|c| !c.exists())),
        "{cgroups:?} left"
    );
    // A cgroup whose session dir is gone (its daemon was killed mid-teardown) is swept.
    let orphans: Vec<PathBuf> = cgroups
        .iter()
        .filter_map(|c| c.parent())
        .map(|parent| parent.join("0b1c2b7e-3d4a-4e5f-8a9b-0c1d2e3f4a5b"))
        .collect();
    guard.0.extend(orphans.iter().cloned());
    for o in &orphans {
        std::fs::create_dir(o).unwrap();
    }
    assert!(
        wait_for(|| orphans.iter().all(|o| !o.exists())),
        "{orphans:?} left"
    );
    assert!(wait_for(|| !crate::helper::is_live(pid)));
    assert!(!d.session_dir(&small_id).exists());
    // The session under its limit lives on (watched for 2 s).
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        assert_eq!(d.status_of(&roomy_id), "live");
        std::thread::sleep(Duration::from_millis(250));
    }
    let shown = d.ok(&["session", "get", &roomy_id]);
    assert!(
        shown.contains("memory limit") && shown.contains("1 GiB"),
        "{shown}"
    );
    let parents: Vec<PathBuf> = cgroups_named(&roomy_id)
        .iter()
        .filter_map(|c| c.parent().map(Path::to_path_buf))
        .collect();
    d.stop();
    // The sessions' cgroups went with them, and bro's parents with the daemon.
    assert!(cgroups_named(&roomy_id).is_empty());
    for p in &parents {
        assert!(!p.exists(), "{} left", p.display());
    }
}

#[test]
fn over_its_memory_limit_a_session_fails_in_a_cgroup() {
    over_the_limit_fails("auto", expected_cgroup_mode());
}

#[test]
fn over_its_memory_limit_a_session_fails_by_measurement() {
    over_the_limit_fails("measure", "measurement");
}

/// Limits a create may not ask for are refused with 400, naming the option.
#[test]
fn limits_past_their_bounds_are_refused() {
    let d = TestDaemon::start_with(&["--max-session-memory", "512MiB"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    for (body, names) in [
        (r#"{"memoryLimit":"1GiB"}"#, "max_session_memory"),
        (r#"{"memoryLimit":1024}"#, "memoryLimit"),
        (r#"{"memoryLimit":"lots"}"#, "memoryLimit"),
        (r#"{"memoryLimit":-1}"#, "memoryLimit"),
        (r#"{"cpuShare":0}"#, "cpuShare"),
        (r#"{"cpuShare":10001}"#, "cpuShare"),
    ] {
        let (status, resp) = http(&api, "POST", "/v1/sessions", body);
        let resp = String::from_utf8_lossy(&resp);
        assert_eq!(status, 400, "{body}: {resp}");
        assert!(
            resp.to_lowercase().contains(&names.to_lowercase()),
            "{body}: {resp}"
        );
    }
    let out = d.bro(&["session", "create", "--memory-limit", "2GiB"]);
    assert!(!out.status.success(), "{}", text(&out));
    d.stop();
}

/// With a free memory floor far above this machine's memory, a create is answered as by a
/// full node: 429 at once with `x-bro-no-wait`, 429 after the queue timeout without.
#[test]
fn below_the_free_memory_floor_creates_get_429() {
    let d = TestDaemon::start_with(&["--min-free-memory", "15TiB", "--queue-timeout", "1s"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let host = api.trim_start_matches("http://").to_string();
    let (status, body) = http_with(
        &api,
        "POST",
        "/v1/sessions",
        &[("Host", &host), ("x-bro-no-wait", "1")],
        b"{}",
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("free memory"), "{body}");
    let (status, _) = http(&api, "POST", "/v1/sessions", "{}");
    assert_eq!(status, 429);
    let doctor = d.bro(&["doctor", "--json"]);
    let doctor = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.contains(expected_cgroup_mode()), "{doctor}");
    d.stop();
}

/// A daemon SIGKILLed before any session needed a cgroup leaves no parent cgroup behind: its
/// start proves it can make them but makes them only for the first limited (or warm) browser.
#[test]
fn a_killed_daemon_without_limited_sessions_leaves_no_parent_cgroup() {
    expected_cgroup_mode();
    let d = TestDaemon::start_with(&["--warm", "0"]);
    assert!(
        d.status["limits"]["mode"]
            .as_str()
            .is_some_and(|m| m.starts_with("cgroup")),
        "{}",
        d.status
    );
    let record = std::fs::read_to_string(d.home.path().join("data/cgroups")).unwrap_or_default();
    let parents: Vec<PathBuf> = record.lines().map(PathBuf::from).collect();
    assert!(!parents.is_empty(), "the daemon recorded no parent cgroup");
    let name = parents[0].file_name().unwrap().to_owned();
    let pid = d.daemon_pid();
    crate::helper::kill(pid, "KILL");
    assert!(
        wait_for(|| !crate::helper::is_live(pid)),
        "daemon {pid} lives"
    );
    let mut left: Vec<PathBuf> = cgroups_named(&name.to_string_lossy())
        .into_iter()
        .chain(parents.into_iter().filter(|p| p.exists()))
        .collect();
    left.sort();
    left.dedup();
    // Removed here too, so the old code this test catches leaks nothing either.
    let _guard = CgroupGuard(left.iter().map(|p| p.join("none")).collect());
    assert!(left.is_empty(), "parent cgroups left behind: {left:?}");
}

/// A memory limit too small for a browser to start (the smallest allowed, 64 MiB, is, here):
/// the cgroup OOM-kills it during launch and the create says so (422, the client's limit),
/// not "browser exited".
#[test]
fn a_browser_killed_at_its_limit_during_launch_says_memory_limit() {
    expected_cgroup_mode();
    // Declared first, so it drops after the daemon.
    let _guard = CgroupGuard(Vec::new());
    let d = TestDaemon::start_with(&["--warm", "0"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let (status, resp) = http(&api, "POST", "/v1/sessions", r#"{"memoryLimit":"64MiB"}"#);
    let resp = String::from_utf8_lossy(&resp);
    assert_eq!(status, 422, "{resp}");
    assert!(
        resp.contains("killed at its memory limit (64 MiB) during launch"),
        "{resp}"
    );
    // Nothing of it is left: no cgroup, and the daemon stops clean.
    let sessions = d.json(&["session", "list", "--json"]);
    let sessions = sessions["sessions"].as_array().expect("a session list");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    for s in sessions {
        assert_eq!(s["broStatus"], "failed", "{s}");
        let id = s["id"].as_str().expect("an id");
        assert!(
            wait_for(|| cgroups_named(id).is_empty()),
            "cgroup of {id} left"
        );
    }
    d.stop();
}

/// `RLIMIT_NICE` of `pid` (soft, hard), from the `Max nice priority` line of its limits.
fn nice_rlimit(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max nice priority"))?;
    let mut fields = line["Max nice priority".len()..].split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

/// Every thread of every process of a session's browser runs at least `browser_nice` below
/// the daemon (here 7), from the first: a plain browser and one started in its cgroup (a
/// memory limit: the `/bin/sh` that joins it, then Chromium). The daemon's threads and
/// restate-server keep their own priority; none of them, nor the browsers, may raise one
/// (`RLIMIT_NICE` 0, soft and hard); `bro doctor` and the status say what the browsers run at.
/// Past the bound the setting is refused.
#[test]
fn browsers_run_below_the_daemon_and_restate() {
    use bro::worker::process::{thread_nice, thread_nices};
    expected_cgroup_mode();
    let me = std::process::id();
    let own = thread_nice(me, me).unwrap();
    // Further down, 7 below would be clamped at 19 and prove nothing.
    assert!(
        own <= 12,
        "run this test at a nice value of 12 or less, not {own}"
    );
    let want = own + 7;
    let d = TestDaemon::start_with(&["--browser-nice", "7"]);
    let plain = d.create(&[]);
    let limited = d.create(&["--memory-limit", "1GiB"]);
    let zero = Some(("0".to_string(), "0".to_string()));
    for (s, in_cgroup) in [(&plain, false), (&limited, true)] {
        let id = s["id"].as_str().unwrap();
        // A page: a renderer started after the launch runs below the daemon too.
        open_tab(s["websocketUrl"].as_str().unwrap(), "about:blank");
        let browser = d.browser_pid(id);
        assert_eq!(thread_nice(browser, browser), Some(want), "{id}");
        assert_eq!(nice_rlimit(browser), zero, "{id}");
        let cgroup = std::fs::read_to_string(format!("/proc/{browser}/cgroup")).unwrap();
        assert_eq!(cgroup.contains(id), in_cgroup, "{id}: {cgroup}");
        let members = crate::helper::group_members(browser);
        assert!(members.len() > 1, "{members:?}");
        // Chromium may lower some threads further by itself (a background thread's nice 10);
        // none runs above the setting. (A process gone meanwhile has no threads to read.)
        for pid in &members {
            let nices = thread_nices(*pid);
            assert!(
                nices.iter().all(|n| *n >= want),
                "browser process {pid}: {nices:?}"
            );
        }
        d.ok(&["session", "kill", id]);
    }
    // No launch is under way: every thread of the daemon is at its own priority.
    let daemon = thread_nices(d.daemon_pid());
    assert!(
        !daemon.is_empty() && daemon.iter().all(|n| *n == own),
        "{daemon:?}"
    );
    assert_eq!(thread_nice(d.restate_pid(), d.restate_pid()), Some(own));
    for pid in [d.daemon_pid(), d.restate_pid()] {
        assert_eq!(nice_rlimit(pid), zero, "{pid}");
    }
    let doctor = d.bro(&["doctor", "--json"]);
    let doctor = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor.contains("browsers at nice +7 over the daemon's"),
        "{doctor}"
    );
    let status = d.json(&["daemon", "status", "--json"]);
    assert_eq!(status["limits"]["browser_nice"], 7, "{status}");

    let out = d.bro(&["daemon", "start", "--browser-nice", "20"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("between 0 and 19"), "{}", text(&out));
    d.stop();
}
