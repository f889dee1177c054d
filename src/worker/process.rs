//! Process facts from `/proc` and signals by pid and process group. Linux only.

use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How often a wait for processes to exit looks again (with [`crate::wait::wait_for`]).
pub const EXIT_POLL: Duration = Duration::from_millis(10);

/// State and identity of one process, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state: `R`, `S`, `Z` (zombie), ...
    pub state: char,
    pub pgrp: u32,
    /// Clock ticks since boot at which the process started.
    pub start_time: u64,
}

/// Reads `/proc/PID/stat`; `None` when the pid does not exist.
pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&read(pid, "stat")?)
}

/// `/proc/PID/<file>` as text; `None` when the pid (or the file) does not exist.
fn read(pid: u32, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()
}

/// The value of line `key` in a `/proc/PID/<file>` of `Key:  value` lines (`status`,
/// `smaps_rollup`), trimmed.
fn field(pid: u32, file: &str, key: &str) -> Option<String> {
    let text = read(pid, file)?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// A size in KiB from a `/proc/PID/<file>` line such as `VmRSS:  1234 kB` (key `VmRSS`).
pub fn kib(pid: u32, file: &str, key: &str) -> Option<u64> {
    parse_kib(&read(pid, file)?, key)
}

/// The KiB of line `key` in the text of a `Key:  value kB` file (`status`, `smaps_rollup`).
pub fn parse_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Parses a `/proc/PID/stat` line.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let fields = stat_fields(text)?;
    // From state (field 3): pgrp (5) is index 2, starttime (22) index 19.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The nice value of every thread of `pid` (none when it is gone): a nice value is per
/// thread on Linux.
pub fn thread_nices(pid: u32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| nice_in(&std::fs::read_to_string(t.ok()?.path().join("stat")).ok()?))
        .collect()
}

/// The nice value of thread `tid` of `pid` (`tid == pid`: its main thread).
pub fn thread_nice(pid: u32, tid: u32) -> Option<i32> {
    nice_in(&read(pid, &format!("task/{tid}/stat"))?)
}

/// The nice value (field 19) of a `/proc/…/stat` line.
fn nice_in(text: &str) -> Option<i32> {
    stat_fields(text)?.get(16)?.parse().ok()
}

/// The fields of a `/proc/PID/stat` line after the command name, from `state` (field 3) on.
/// The name may hold spaces and parentheses, so they are counted from the last `)`.
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    Some(text[text.rfind(')')? + 1..].split_whitespace().collect())
}

/// The pids in `/proc` now (none when it cannot be read).
pub fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
}

/// The start time of a live (non-zombie) pid.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).filter(|s| s.state != 'Z').map(|s| s.start_time)
}

/// True when `pid` runs (not a zombie) and is the same process that started at `start`.
pub fn is_alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Pids of the live (non-zombie) processes in process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    pids()
        .filter(|pid| stat(*pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z'))
        .collect()
}

/// Proportional memory (PSS, KiB: shared pages split between the processes sharing them, so
/// browsers add up right), CPU time (clock ticks, user + system) and process count of the
/// live processes in group `pgid`.
pub fn group_usage(pgid: u32) -> (u64, u64, u32) {
    usage_by_group(&[pgid]).remove(&pgid).unwrap_or_default()
}

/// [`group_usage`] of many groups from one pass over `/proc` (a pass per group costs
/// processes × groups reads, seconds with a hundred browsers).
pub fn usage_by_group(pgids: &[u32]) -> std::collections::HashMap<u32, (u64, u64, u32)> {
    let wanted: std::collections::HashSet<u32> = pgids.iter().copied().collect();
    let mut out = std::collections::HashMap::new();
    for pid in pids() {
        let Some(text) = read(pid, "stat") else {
            continue;
        };
        let (Some(st), Some(f)) = (parse_stat(&text), stat_fields(&text)) else {
            continue;
        };
        let pgrp = st.pgrp;
        if !wanted.contains(&pgrp) || st.state == 'Z' {
            continue;
        }
        // From state (field 3): utime (14) and stime (15) are indexes 11 and 12.
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ticks = field(11) + field(12);
        let pss = kib(pid, "smaps_rollup", "Pss").unwrap_or(0);
        let entry = out.entry(pgrp).or_insert((0, 0, 0));
        *entry = (entry.0 + pss, entry.1 + ticks, entry.2 + 1);
    }
    out
}

/// Resident memory (KiB, `VmRSS`) of the live processes of each group in `pgids`: kernel
/// counters, cheap to read, and never below the group's PSS, so a group whose RSS is under a
/// limit needs no PSS reading (which walks every page table).
pub fn rss_by_group(pgids: &[u32]) -> std::collections::HashMap<u32, u64> {
    let wanted: std::collections::HashSet<u32> = pgids.iter().copied().collect();
    let mut out = std::collections::HashMap::new();
    for pid in pids() {
        let Some(st) = stat(pid) else {
            continue;
        };
        if !wanted.contains(&st.pgrp) || st.state == 'Z' {
            continue;
        }
        *out.entry(st.pgrp).or_insert(0) += kib(pid, "status", "VmRSS").unwrap_or(0);
    }
    out
}

/// Pids of live processes with an argument starting with `prefix`, and that argument.
pub fn with_arg_prefix(prefix: &str) -> Vec<(u32, String)> {
    pids()
        .filter_map(|pid| {
            let cmdline = cmdline(pid)?;
            let arg = cmdline
                .split(|b| *b == 0)
                .filter_map(|a| std::str::from_utf8(a).ok())
                .find(|a| a.starts_with(prefix))?
                .to_string();
            start_time(pid).map(|_| (pid, arg))
        })
        .collect()
}

/// The raw command line of `pid` (arguments separated by NUL bytes); `None` when it cannot
/// be read (gone, or hidden from this user) or the process is another user's. bro's
/// browsers run as bro's user, so a process of anyone else that names a session dir in its
/// arguments is an impostor (any user can start `sleep --user-data-dir=<dir>/profile`):
/// never a reason to signal it, nor to fail a stop on its `EPERM`.
pub fn cmdline(pid: u32) -> Option<Vec<u8>> {
    if !is_mine(pid) {
        return None;
    }
    std::fs::read(format!("/proc/{pid}/cmdline")).ok()
}

/// True when `pid` runs as this process's effective user (its real and effective uids, from
/// `/proc/PID/status`, which holds them even for a process that is not dumpable).
pub fn is_mine(pid: u32) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    field(pid, "status", "Uid")
        .map(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            // Real and effective: a setuid process of another user is not ours either.
            ids.len() >= 2 && ids[..2].iter().all(|id| id.parse() == Ok(me))
        })
        .unwrap_or(false)
}

/// True when `cmdline` holds `needle` at the start of an argument, or of a space-separated
/// word of one (Chromium's child processes rewrite their arguments into one string joined
/// by spaces), and, with `whole`, ending it as well.
pub fn cmdline_has(cmdline: &[u8], needle: &str, whole: bool) -> bool {
    let needle = needle.as_bytes();
    let bound = |b: Option<&u8>| matches!(b, None | Some(0) | Some(b' '));
    (0..cmdline.len()).any(|at| {
        cmdline[at..].starts_with(needle)
            && (at == 0 || bound(cmdline.get(at - 1)))
            && (!whole || bound(cmdline.get(at + needle.len())))
    })
}

/// Sends `sig` to one pid; a pid that is already gone is not an error.
pub fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

/// Sends `sig` to a whole process group; a group that is already gone is not an error.
pub fn signal_group(pgid: u32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pgid as i32), sig);
}

/// [`signal`] that reports a refusal (`EPERM`: another user's process). A pid already gone
/// is not an error.
pub fn try_signal(pid: u32, sig: Signal) -> Result<(), nix::errno::Errno> {
    match kill(Pid::from_raw(pid as i32), sig) {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// [`signal_group`] that reports a refusal (`EPERM`: no member could be signalled). A group
/// already gone is not an error.
pub fn try_signal_group(pgid: u32, sig: Signal) -> Result<(), nix::errno::Errno> {
    match killpg(Pid::from_raw(pgid as i32), sig) {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Spawns `cmd` with its nice value `below` over the calling thread's (the daemon's): from a
/// short-lived thread of its own whose priority is lowered first, since a child takes the
/// priority of the thread that forks it. So the program and every process and thread it
/// starts run at that nice from their first instruction (a priority set after the spawn would
/// miss the threads Chromium starts at once), and the calling thread keeps its own (a thread
/// cannot raise its priority back without `CAP_SYS_NICE` or an `RLIMIT_NICE`, neither of which
/// the daemon passes on: [`no_priority_boost_for_children`]). Never past 19, the lowest; `below` 0 spawns here.
pub fn spawn_below(
    cmd: &mut tokio::process::Command,
    below: u32,
) -> std::io::Result<tokio::process::Child> {
    if below == 0 {
        return cmd.spawn();
    }
    // The child is reaped by this runtime, from whichever thread spawned it.
    let runtime = tokio::runtime::Handle::current();
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("bro-spawn".into())
            .spawn_scoped(scope, || {
                let _runtime = runtime.enter();
                lower_own_priority(below);
                cmd.spawn()
            })?
            .join()
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(std::io::Error::other(format!(
                    "the spawning thread panicked: {what}"
                )))
            })
    })
}

/// Lowers the calling thread's priority by `by` (its nice value, to at most 19). Lowering
/// needs no privilege; a failure is logged and the thread keeps its priority.
fn lower_own_priority(by: u32) {
    use rustix::process::{getpriority_process, setpriority_process};
    // `None`: the calling thread (a nice value is per thread on Linux).
    let lowered = getpriority_process(None)
        .and_then(|own| setpriority_process(None, own.saturating_add_unsigned(by).min(19)));
    if let Err(err) = lowered {
        tracing::warn!(error = %err, "could not lower a browser's priority; it runs at the daemon's");
    }
}

/// Keeps every program this process starts from then on (browsers, restate-server) from
/// raising its threads' priority, for root and any other user. `CAP_SYS_NICE` leaves the
/// inheritable and ambient sets (no privilege needed) and, for root, the bounding set too
/// (a program root execs gets every capability of the bounding and inheritable sets; it
/// cannot regain one dropped from both). `RLIMIT_NICE`, which pam_limits or systemd's
/// `LimitNICE=` may grant any user, goes to 0, soft and hard: lowering a limit needs no
/// privilege and no unprivileged process can raise it again. Chromium run as root puts its UI,
/// IO and compositor threads at nice -8 in every one of its processes, above the daemon and
/// restate-server, which then wait behind each browser's start (bro's traces: the create's
/// Restate steps after a launch took a median 40–45 ms with the browsers boosted, 16–27 ms
/// without); with either left, it would also put threads back above `browser_nice`. This
/// process keeps its own effective and permitted capabilities. Returns whether the programs it
/// starts can no longer raise a priority ([`children_may_boost_priority`]).
pub fn no_priority_boost_for_children() -> bool {
    use caps::{CapSet, Capability};
    use rustix::process::{Resource, Rlimit, setrlimit};
    let nice = Capability::CAP_SYS_NICE;
    // Each on its own: one that fails leaves the others to do their part. A set that does
    // not hold the capability needs no drop (and a drop from the bounding set needs
    // CAP_SETPCAP, which a user who is not root lacks).
    for set in [CapSet::Inheritable, CapSet::Ambient, CapSet::Bounding] {
        if caps::has_cap(None, set, nice).unwrap_or(false) {
            let _ = caps::drop(None, set, nice);
        }
    }
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    let _ = setrlimit(Resource::Nice, zero);
    !children_may_boost_priority()
}

/// True when the programs this process starts (without file capabilities of their own) may
/// raise a thread's priority: `CAP_SYS_NICE` in the ambient set, or, started by root, in the
/// bounding or inheritable set; or an `RLIMIT_NICE` above 0, soft or hard (a child may raise
/// its soft limit up to the hard one). See [`no_priority_boost_for_children`].
pub fn children_may_boost_priority() -> bool {
    use caps::{CapSet, Capability};
    let has = |set| caps::has_cap(None, set, Capability::CAP_SYS_NICE).unwrap_or(false);
    let root = nix::unistd::geteuid().is_root();
    let rlimit = rustix::process::getrlimit(rustix::process::Resource::Nice);
    let rlimit_zero = rlimit.current == Some(0) && rlimit.maximum == Some(0);
    has(CapSet::Ambient)
        || (root && (has(CapSet::Bounding) || has(CapSet::Inheritable)))
        || !rlimit_zero
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 \
                    9 0 123456 1000 200 18446744073709551615";
        let st = parse_stat(line).unwrap();
        assert_eq!(
            st,
            ProcStat {
                state: 'S',
                pgrp: 4242,
                start_time: 123456
            }
        );
    }

    #[test]
    fn finds_arguments_separate_or_joined() {
        let separate = b"/usr/lib/chromium/chromium\0--headless\0--user-data-dir=/s/a b/profile\0about:blank\0";
        assert!(cmdline_has(
            separate,
            "--user-data-dir=/s/a b/profile",
            true
        ));
        assert!(!cmdline_has(separate, "--user-data-dir=/s/a b/prof", true));
        assert!(cmdline_has(separate, "--user-data-dir=/s/a b/", false));
        // A renderer: every argument in one string, joined by spaces.
        let joined =
            b"/usr/lib/chromium/chromium --type=renderer --user-data-dir=/s/1/profile --lang=en\0";
        assert!(cmdline_has(joined, "--user-data-dir=/s/1/profile", true));
        assert!(!cmdline_has(joined, "--user-data-dir=/s/1/profile2", true));
        assert!(!cmdline_has(joined, "--user-data-dir=/s/1", true));
        // Not inside another argument.
        let inside = b"tail\0-f\0x--user-data-dir=/s/1/profile\0";
        assert!(!cmdline_has(inside, "--user-data-dir=/s/1/profile", true));
        assert!(!cmdline_has(b"", "--x", false));
    }

    #[test]
    fn reads_pss_from_smaps_rollup() {
        let rollup = "55d0c8e1b000-7ffd2a5f3000 ---p 00000000 00:00 0                  [rollup]\n\
                      Rss:              198712 kB\n\
                      Pss:               61234 kB\n\
                      Pss_Dirty:         40000 kB\n\
                      Pss_Anon:          39000 kB\n\
                      Shared_Clean:     120000 kB\n";
        assert_eq!(parse_kib(rollup, "Pss"), Some(61234));
        assert_eq!(parse_kib(rollup, "Rss"), Some(198712));
        assert_eq!(parse_kib(rollup, "Swap"), None);
        assert_eq!(parse_kib("Pss: lots kB\n", "Pss"), None);
        // A live process of this test has a PSS, and its group's RSS is not below it.
        let me = std::process::id();
        let pss = kib(me, "smaps_rollup", "Pss").unwrap();
        assert!(pss > 0);
        let pgrp = stat(me).unwrap().pgrp;
        assert!(rss_by_group(&[pgrp])[&pgrp] >= pss);
    }

    #[test]
    fn its_own_processes_are_mine() {
        assert!(is_mine(std::process::id()));
        assert!(cmdline(std::process::id()).is_some());
        assert!(!is_mine(u32::MAX - 1));
    }

    /// A child spawned below the calling thread runs at the lower priority from its start, and
    /// the calling thread keeps its own; 0 leaves the child at the caller's priority.
    #[tokio::test]
    async fn a_child_spawned_below_runs_at_the_lower_priority() {
        let me = std::process::id();
        // The test's thread (a current-thread runtime: the one that calls `spawn_below`).
        let tid: u32 = std::fs::read_link("/proc/thread-self")
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let own = thread_nice(me, tid).unwrap();
        for below in [0, 3, 40] {
            let mut cmd = tokio::process::Command::new("sleep");
            cmd.arg("30").kill_on_drop(true);
            let mut child = spawn_below(&mut cmd, below).unwrap();
            let pid = child.id().unwrap();
            let nice = thread_nice(pid, pid).unwrap();
            let want = (own + below.min(19) as i32).min(19);
            assert_eq!(nice, want, "below {below}");
            assert_eq!(
                thread_nice(me, tid),
                Some(own),
                "the caller keeps its priority"
            );
            child.kill().await.unwrap();
            child.wait().await.unwrap();
        }
    }

    #[test]
    fn sees_itself_alive() {
        let me = std::process::id();
        let st = stat(me).unwrap();
        assert!(is_alive(me, st.start_time));
        assert!(!is_alive(me, st.start_time + 1));
        assert!(stat(u32::MAX - 1).is_none());
    }
}
