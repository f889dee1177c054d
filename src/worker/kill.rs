//! Killing a session's browser, and nothing else.
//!
//! A recorded pid names the browser only while the process behind it is the one bro started:
//! the same start time (`/proc/PID/stat`) and a command line that names the session's
//! profile. After a reboot, or when the browser died while the daemon was down, the pid and
//! its process group may belong to anything (a shell, a service), so a mismatch never
//! signals the group: the browser is found by its session dir instead (every Chromium
//! process of a session carries `--user-data-dir=<dir>/profile`, its crash handlers
//! `--database=<dir>/…`). Only processes of bro's own user count ([`process::cmdline`]):
//! anyone can name a session dir in a command line. A process bro may still not signal
//! (`EPERM`), or one that outlives SIGKILL, fails the kill for good
//! ([`WorkerError::is_permanent`]).
//!
//! A pid is checked, then signalled: a process could in theory exit and its pid be handed to
//! another in between, which takes a full wrap of the pid space within microseconds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;

use crate::worker::{WorkerError, process};

/// How long killed processes get to disappear before the kill counts as failed.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What a recorded browser pid is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The browser bro started (or its unreaped zombie, whose pid and group cannot have been
    /// reused): its process group may be killed.
    Ours,
    /// No process has the pid.
    Gone,
    /// Another process has the pid now; why it is not the browser.
    Other(&'static str),
}

/// The argument by which every Chromium process of session dir `dir` names its profile.
pub fn profile_arg(dir: &Path) -> String {
    format!("--user-data-dir={}", dir.join("profile").display())
}

/// The start of the argument by which a crash handler of session dir `dir` names its
/// database (they double-fork out of the browser's group, chromium-notes §5.4).
fn crash_db_prefix(dir: &Path) -> String {
    format!("--database={}/", dir.display())
}

/// What `pid`, recorded with `start_time` for the browser of session dir `dir`, is now.
pub fn identify(pid: u32, start_time: u64, dir: &Path) -> Identity {
    let Some(st) = process::stat(pid) else {
        return Identity::Gone;
    };
    if start_time == 0 || st.start_time != start_time {
        return Identity::Other("it started at another time");
    }
    if st.state == 'Z' {
        return Identity::Ours;
    }
    match process::cmdline(pid) {
        Some(cmd) if process::cmdline_has(&cmd, &profile_arg(dir), true) => Identity::Ours,
        Some(_) => Identity::Other("its command line does not name the session dir"),
        None => Identity::Other("its command line cannot be read"),
    }
}

/// Live processes whose command line names session dir `dir`: its browser and the browser's
/// children (by their profile argument) and its crash handlers, with their `/proc` stat.
pub fn naming_dir(dir: &Path) -> Vec<(u32, process::ProcStat)> {
    let profile = profile_arg(dir);
    let crash_db = crash_db_prefix(dir);
    process::pids()
        .filter_map(|pid| {
            let cmd = process::cmdline(pid)?;
            let names = process::cmdline_has(&cmd, &profile, true)
                || process::cmdline_has(&cmd, &crash_db, false);
            if !names {
                return None;
            }
            let st = process::stat(pid).filter(|s| s.state != 'Z')?;
            Some((pid, st))
        })
        .collect()
}

/// The pid and start time a session dir or record gives for its browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub pid: u32,
    pub start_time: u64,
}

/// Kills the browser of session dir `dir` and waits until none of its processes is left.
///
/// The recorded browser's whole process group is SIGKILLed only when [`identify`] says it is
/// ours. Then every other process naming the dir gets SIGKILL: its group with it when it
/// leads one (as a browser bro launched does), else the process alone. Fails with
/// [`WorkerError::NotPermitted`] when a signal is refused and with
/// [`WorkerError::Unkillable`] when processes are still there after [`KILL_WAIT`].
pub async fn kill_browser(recorded: Option<Recorded>, dir: &Path) -> Result<(), WorkerError> {
    let mut groups: Vec<u32> = Vec::new();
    if let Some(Recorded { pid, start_time }) = recorded {
        match identify(pid, start_time, dir) {
            Identity::Ours => {
                process::try_signal_group(pid, Signal::SIGKILL)
                    .map_err(|e| refused(pid, dir, e))?;
                groups.push(pid);
            }
            Identity::Gone => {}
            Identity::Other(why) => tracing::warn!(
                pid,
                dir = %dir.display(),
                why,
                "the recorded browser pid is another process now; it is left alone and the \
                 browser is looked for by its session dir"
            ),
        }
    }
    let mut pids: Vec<(u32, u64)> = Vec::new();
    for (pid, st) in naming_dir(dir) {
        if groups.contains(&st.pgrp) {
            continue; // killed with its group
        }
        if st.pgrp == pid {
            process::try_signal_group(pid, Signal::SIGKILL).map_err(|e| refused(pid, dir, e))?;
            groups.push(pid);
        } else {
            process::try_signal(pid, Signal::SIGKILL).map_err(|e| refused(pid, dir, e))?;
        }
        pids.push((pid, st.start_time));
    }
    let left = || {
        let mut left: Vec<u32> = groups
            .iter()
            .flat_map(|g| process::group_members(*g))
            .collect();
        for (pid, start) in &pids {
            if process::is_alive(*pid, *start) && !left.contains(pid) {
                left.push(*pid);
            }
        }
        left
    };
    if groups.is_empty() && pids.is_empty() {
        return Ok(());
    }
    if crate::wait::wait_for(KILL_WAIT, process::EXIT_POLL, || left().is_empty()).await {
        return Ok(());
    }
    Err(WorkerError::Unkillable {
        dir: dir.to_path_buf(),
        pids: left(),
    })
}

/// The error for a signal that was refused; any other failure (a pid or signal the kernel
/// finds invalid) is an I/O error that a retry may get past.
fn refused(pid: u32, dir: &Path, errno: Errno) -> WorkerError {
    match errno {
        Errno::EPERM => WorkerError::NotPermitted {
            pid,
            dir: PathBuf::from(dir),
        },
        other => WorkerError::io("signal the browser", std::io::Error::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// A process of its own group whose command line names `dir` as a browser's would:
    /// `sh` (the group leader) with a `sleep` child.
    fn fake_browser(dir: &Path) -> std::process::Child {
        std::process::Command::new("sh")
            .args(["-c", "sleep 300; true", "sh"])
            .arg(profile_arg(dir))
            .process_group(0)
            .spawn()
            .unwrap()
    }

    /// An unrelated process in its own group: `sleep` with a `sleep` child.
    fn unrelated() -> std::process::Child {
        std::process::Command::new("sh")
            .args(["-c", "sleep 300; true"])
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn start_of(pid: u32) -> u64 {
        process::stat(pid).unwrap().start_time
    }

    /// Waits until `pid`'s group has its `sleep` child, so the group has two members.
    fn wait_for_members(pid: u32) {
        for _ in 0..200 {
            if process::group_members(pid).len() >= 2 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{pid} has no child");
    }

    fn reap(mut child: std::process::Child) {
        process::signal_group(child.id(), Signal::SIGKILL);
        let _ = child.wait();
    }

    #[test]
    fn a_reused_pid_is_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let child = unrelated();
        let pid = child.id();
        let start = start_of(pid);
        assert_eq!(
            identify(pid, start + 1, dir.path()),
            Identity::Other("it started at another time")
        );
        assert_eq!(
            identify(pid, start, dir.path()),
            Identity::Other("its command line does not name the session dir")
        );
        assert_eq!(
            identify(pid, 0, dir.path()),
            Identity::Other("it started at another time")
        );
        assert_eq!(identify(u32::MAX - 1, start, dir.path()), Identity::Gone);
        reap(child);
    }

    #[tokio::test]
    async fn kills_the_group_of_a_verified_browser() {
        let dir = tempfile::tempdir().unwrap();
        let mut browser = fake_browser(dir.path());
        let pid = browser.id();
        wait_for_members(pid);
        assert_eq!(identify(pid, start_of(pid), dir.path()), Identity::Ours);
        let recorded = Recorded {
            pid,
            start_time: start_of(pid),
        };
        kill_browser(Some(recorded), dir.path()).await.unwrap();
        let _ = browser.wait();
        assert!(process::group_members(pid).is_empty());
    }

    #[tokio::test]
    async fn a_mismatched_pid_is_spared_and_the_browser_found_by_its_dir() {
        let dir = tempfile::tempdir().unwrap();
        let bystander = unrelated();
        let bystander_pid = bystander.id();
        wait_for_members(bystander_pid);
        let mut browser = fake_browser(dir.path());
        let browser_pid = browser.id();
        wait_for_members(browser_pid);
        // The record names the bystander's pid with another start time (a reused pid).
        let recorded = Recorded {
            pid: bystander_pid,
            start_time: start_of(bystander_pid) + 7,
        };
        kill_browser(Some(recorded), dir.path()).await.unwrap();
        let _ = browser.wait();
        assert!(process::group_members(browser_pid).is_empty());
        assert_eq!(
            process::group_members(bystander_pid).len(),
            2,
            "the bystander's group was signalled"
        );
        reap(bystander);
    }

    #[tokio::test]
    async fn nothing_to_kill_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        kill_browser(None, dir.path()).await.unwrap();
        let gone = Recorded {
            pid: u32::MAX - 1,
            start_time: 1,
        };
        kill_browser(Some(gone), dir.path()).await.unwrap();
    }

    /// A host over a temp sessions dir, and a session dir in it holding a file.
    fn host_with_session() -> (
        tempfile::TempDir,
        std::sync::Arc<crate::worker::LocalWorkerHost>,
        PathBuf,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let sessions = tmp.path().join("sessions");
        let dir = sessions.join(uuid::Uuid::new_v4().to_string());
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(dir.join("files/a.txt"), "a").unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let host = crate::worker::LocalWorkerHost::new(
            PathBuf::from("/nonexistent/chromium"),
            Vec::new(),
            sessions,
            tmp.path().join("quarantine"),
            crate::config::DEFAULT_FILES_QUOTA,
            crate::worker::agent::Agents::new(
                crate::worker::recording::RecordingStore::new(
                    tmp.path().join("rec"),
                    1 << 20,
                    1 << 30,
                ),
                None,
            ),
            tx,
        );
        (tmp, host, dir)
    }

    fn worker(pid: u32, start_time: u64, dir: &Path) -> crate::protocol::session::WorkerInfo {
        crate::protocol::session::WorkerInfo {
            pid,
            start_time,
            port: 1,
            ws_path: "/devtools/browser/x".into(),
            dir: dir.to_path_buf(),
        }
    }

    /// Issue 11: a session record whose browser died while the daemon was down, and whose pid
    /// now belongs to an unrelated process group. Stopping the session spares that group
    /// (another start time, or the same start time but a command line that does not name
    /// the session dir) and still removes the dir.
    #[tokio::test]
    async fn stop_spares_an_unrelated_group_on_a_reused_pid() {
        use crate::worker::WorkerHost;
        let bystander = unrelated();
        let pid = bystander.id();
        wait_for_members(pid);
        let start = start_of(pid);
        for recorded_start in [start + 1, start] {
            let (_tmp, host, dir) = host_with_session();
            host.stop(worker(pid, recorded_start, &dir)).await.unwrap();
            assert!(!dir.exists(), "the session dir is removed");
            assert!(
                process::is_alive(pid, start),
                "the unrelated process was killed"
            );
            assert_eq!(
                process::group_members(pid).len(),
                2,
                "the unrelated group was signalled"
            );
        }
        reap(bystander);
    }

    /// The reaper's way in: a dir whose `worker.json` names a reused pid is stopped by dir.
    #[tokio::test]
    async fn an_orphan_dir_with_a_reused_pid_spares_it() {
        let bystander = unrelated();
        let pid = bystander.id();
        wait_for_members(pid);
        let (_tmp, host, dir) = host_with_session();
        let pf = format!(r#"{{"pid":{pid},"start_time":{}}}"#, start_of(pid) + 3);
        std::fs::write(dir.join("worker.json"), pf).unwrap();
        let mut browser = fake_browser(&dir);
        let browser_pid = browser.id();
        wait_for_members(browser_pid);
        host.reap_dir(&dir).await.unwrap();
        let _ = browser.wait();
        assert!(!dir.exists());
        assert!(
            process::group_members(browser_pid).is_empty(),
            "the dir's browser lives"
        );
        assert_eq!(
            process::group_members(pid).len(),
            2,
            "the bystander was signalled"
        );
        reap(bystander);
    }

    /// Set for [`other_user_probe`] run as another user by
    /// [`another_users_process_is_never_signalled`].
    const PROBE_ENV: &str = "BRO_TEST_KILL_PROBE";

    /// Run as root, this starts a "browser" as root naming a session dir, and stops that dir
    /// from this test binary run as `nobody`: a process of another user is never bro's own
    /// (anyone can put `--user-data-dir=<dir>/profile` in a command line), so it is neither
    /// signalled nor a reason to fail the stop. (As another user there is no process of
    /// someone else's to try it on.)
    #[test]
    fn another_users_process_is_never_signalled() {
        use std::os::unix::process::CommandExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("not run: only root can start a process of another user than itself");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let browser = fake_browser(dir.path());
        let pid = browser.id();
        wait_for_members(pid);
        let probe = format!("{pid}:{}:{}", start_of(pid), dir.path().display());
        // A copy of this test binary that `nobody` can run: the checkout may be in a dir
        // only root can enter (a `mktemp -d` clone is 0700).
        use std::os::unix::fs::PermissionsExt;
        let exe_dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(exe_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = exe_dir.path().join("probe");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(&exe)
            .current_dir("/")
            .args([
                "--exact",
                "worker::kill::tests::other_user_probe",
                "--nocapture",
            ])
            .env(PROBE_ENV, probe)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
        assert_eq!(process::group_members(pid).len(), 2, "{text}");
        reap(browser);
    }

    /// Does nothing unless [`another_users_process_is_never_signalled`] runs it.
    #[tokio::test]
    async fn other_user_probe() {
        let Ok(probe) = std::env::var(PROBE_ENV) else {
            return;
        };
        let mut parts = probe.splitn(3, ':');
        let pid: u32 = parts.next().unwrap().parse().unwrap();
        let start_time: u64 = parts.next().unwrap().parse().unwrap();
        let dir = PathBuf::from(parts.next().unwrap());
        assert!(matches!(
            identify(pid, start_time, &dir),
            Identity::Other(_)
        ));
        assert!(naming_dir(&dir).is_empty());
        kill_browser(Some(Recorded { pid, start_time }), &dir)
            .await
            .unwrap();
    }

    #[test]
    fn refusals_are_permanent() {
        let dir = Path::new("/s/1");
        let err = refused(42, dir, Errno::EPERM);
        assert!(err.is_permanent(), "{err}");
        assert!(err.to_string().contains("42"), "{err}");
        assert!(!refused(42, dir, Errno::EINVAL).is_permanent());
        let stuck = WorkerError::Unkillable {
            dir: dir.to_path_buf(),
            pids: vec![7, 8],
        };
        assert!(stuck.is_permanent());
        assert!(stuck.to_string().contains("[7, 8]"), "{stuck}");
    }
}
