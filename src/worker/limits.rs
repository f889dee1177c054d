//! Per-session resource limits: a memory limit and a CPU share for each browser.
//!
//! How they are enforced is chosen once, at start ([`detect`]):
//! - **cgroup v2**: the unified hierarchy has the `memory` and `cpu` controllers for bro's
//!   cgroup; each browser runs in its own child cgroup (`memory.max`, `cpu.weight`), and an
//!   OOM kill in it (`memory.events`) ends the session.
//! - **cgroup v1**: writable v1 `memory` and `cpu` hierarchies (`memory.limit_in_bytes`,
//!   `cpu.shares`; OOM kills counted in `memory.oom_control`).
//! - **measurement**: the supervisor sums the PSS of the browser's process group and fails a
//!   session over its limit. No CPU share.
//! - **off**: nothing is enforced.
//!
//! Each session's cgroup is `<bro's cgroup>/bro-<hash of the sessions dir>/<dir name>`, below
//! the daemon's own cgroup (never at the root of another tree), named after its session dir
//! (a checked UUID, never a path from input). It is removed once its processes are gone; the
//! sweep removes those whose dir is gone (a daemon killed mid-teardown). Nothing here spawns
//! or kills a browser by itself except the leftover members of a cgroup being removed, which
//! only bro's browsers can be in.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::LimitsMode;
use crate::protocol::session::{SessionId, SessionOptions};

/// The reason of a session ended by its memory limit.
pub const MEMORY_LIMIT_REASON: &str = "memory limit";

/// How limits are enforced on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    CgroupV2,
    CgroupV1,
    Measure,
    Off,
}

impl Mode {
    /// As `bro doctor` and the daemon's log say it.
    pub fn label(self) -> &'static str {
        match self {
            Mode::CgroupV2 => "cgroup v2",
            Mode::CgroupV1 => "cgroup v1",
            Mode::Measure => "measurement",
            Mode::Off => "off",
        }
    }

    /// A CPU share can be enforced (the cgroup modes).
    pub fn shares_cpu(self) -> bool {
        matches!(self, Mode::CgroupV2 | Mode::CgroupV1)
    }
}

/// Where the cgroups of one bro home live.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// The parent cgroup in the unified hierarchy.
    V2(PathBuf),
    /// The parent cgroups in the v1 `memory` and `cpu` hierarchies.
    V1 { memory: PathBuf, cpu: PathBuf },
}

/// The mode chosen at start, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub mode: Mode,
    /// Why this mode (and why not a cgroup mode), for `bro doctor` and the log.
    pub why: String,
    layout: Option<Layout>,
}

impl Detected {
    /// Removes bro's parent cgroups again when empty (`bro doctor` probes without a daemon).
    pub fn remove_parents(&self) {
        let parents = match &self.layout {
            Some(Layout::V2(parent)) => vec![parent.clone()],
            Some(Layout::V1 { memory, cpu }) => vec![memory.clone(), cpu.clone()],
            None => Vec::new(),
        };
        for parent in parents {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// The machine's cgroup facts: `/proc/self/cgroup`, `/proc/self/mountinfo`, and a root that
/// prefixes every path (a temp dir in tests).
pub struct Sys {
    pub self_cgroup: String,
    pub mountinfo: String,
    pub root: PathBuf,
}

impl Sys {
    /// This process's view of the machine.
    pub fn here() -> Sys {
        Sys {
            self_cgroup: std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
            mountinfo: std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            root: PathBuf::from("/"),
        }
    }

    fn path(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }
}

/// One cgroup mount: its root within the hierarchy, where it is mounted, and for v1 the
/// controllers it carries.
struct Mount {
    v2: bool,
    root: String,
    point: String,
    options: Vec<String>,
}

fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            let fstype = *right.first()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(Mount {
                v2: fstype == "cgroup2",
                root: unescape(left.get(3)?),
                point: unescape(left.get(4)?),
                options: right.get(2)?.split(',').map(String::from).collect(),
            })
        })
        .collect()
}

/// mountinfo escapes spaces and such as `\040`.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// This process's cgroup in the hierarchy with `controller` (`""` for the unified one).
fn own_path(self_cgroup: &str, controller: &str) -> Option<String> {
    self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })
}

/// The directory of this process's cgroup in the mount `m`, given its path in the hierarchy.
fn dir_in(sys: &Sys, m: &Mount, path: &str) -> Option<PathBuf> {
    // A mount of a subtree (a container's) shows paths below its root.
    let rel = if m.root == "/" {
        path
    } else {
        path.strip_prefix(m.root.as_str())?
    };
    let rel = rel.trim_start_matches('/');
    // "/.." and such never come from the kernel; refuse them all the same.
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(sys.path(Path::new(&m.point)).join(rel))
}

/// The name of a bro home's parent cgroup: one per sessions dir, so two homes never share.
pub fn parent_name(sessions_dir: &Path) -> String {
    format!("bro-{:016x}", crate::paths::path_hash(sessions_dir))
}

/// Chooses the mode as `wanted` says and this machine allows, creating bro's parent cgroup
/// (`name`) where a cgroup mode is chosen. A forced cgroup mode the machine does not allow is
/// an error naming why.
pub fn detect(sys: &Sys, wanted: LimitsMode, name: &str) -> Result<Detected, String> {
    let plain = |mode, why: &str| Detected {
        mode,
        why: why.to_string(),
        layout: None,
    };
    match wanted {
        LimitsMode::Off => return Ok(plain(Mode::Off, "limits_mode = off")),
        LimitsMode::Measure => return Ok(plain(Mode::Measure, "limits_mode = measure")),
        LimitsMode::Auto | LimitsMode::Cgroup => {}
    }
    let v2 = match try_v2(sys, name) {
        Ok(parent) => {
            return Ok(Detected {
                mode: Mode::CgroupV2,
                why: format!(
                    "memory and cpu controllers delegated at {}",
                    parent.display()
                ),
                layout: Some(Layout::V2(parent)),
            });
        }
        Err(why) => why,
    };
    let v1 = match try_v1(sys, name) {
        Ok((memory, cpu)) => {
            return Ok(Detected {
                mode: Mode::CgroupV1,
                why: format!(
                    "writable v1 memory and cpu hierarchies at {} and {} (cgroup v2: {v2})",
                    memory.display(),
                    cpu.display()
                ),
                layout: Some(Layout::V1 { memory, cpu }),
            });
        }
        Err(why) => why,
    };
    let why = format!("no usable cgroup: v2: {v2}; v1: {v1}");
    match wanted {
        LimitsMode::Cgroup => Err(format!("limits_mode = cgroup, but {why}")),
        _ => Ok(plain(Mode::Measure, &why)),
    }
}

fn try_v2(sys: &Sys, name: &str) -> Result<PathBuf, String> {
    let all = mounts(&sys.mountinfo);
    let m = all
        .iter()
        .find(|m| m.v2)
        .ok_or("no cgroup2 mount".to_string())?;
    let own = own_path(&sys.self_cgroup, "").ok_or("not in a cgroup v2 hierarchy")?;
    let dir = dir_in(sys, m, &own).ok_or("its cgroup is outside the cgroup2 mount")?;
    let has = |file: &Path, ctrl: &str| {
        std::fs::read_to_string(file).is_ok_and(|t| t.split_whitespace().any(|c| c == ctrl))
    };
    let controllers = dir.join("cgroup.controllers");
    for ctrl in ["memory", "cpu"] {
        if !has(&controllers, ctrl) {
            return Err(format!("no {ctrl} controller in {}", controllers.display()));
        }
    }
    // Children get the controllers only when this cgroup passes them down, which the kernel
    // allows only to a cgroup without processes of its own (systemd's `Delegate=yes` gives
    // a service such a subtree).
    let subtree = dir.join("cgroup.subtree_control");
    for ctrl in ["memory", "cpu"] {
        if !has(&subtree, ctrl) {
            std::fs::write(&subtree, format!("+{ctrl}")).map_err(|e| {
                format!(
                    "cannot pass the {ctrl} controller down from {} ({e}); run bro in a \
                     delegated cgroup",
                    dir.display()
                )
            })?;
        }
    }
    let parent = dir.join(name);
    create(&parent)?;
    std::fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu")
        .map_err(|e| format!("cannot enable memory and cpu in {}: {e}", parent.display()))?;
    Ok(parent)
}

fn try_v1(sys: &Sys, name: &str) -> Result<(PathBuf, PathBuf), String> {
    let all = mounts(&sys.mountinfo);
    let mut dirs = Vec::new();
    for (ctrl, probe) in [("memory", "memory.limit_in_bytes"), ("cpu", "cpu.shares")] {
        let m = all
            .iter()
            .find(|m| !m.v2 && m.options.iter().any(|o| o == ctrl))
            .ok_or(format!("no v1 {ctrl} mount"))?;
        let own = own_path(&sys.self_cgroup, ctrl).ok_or(format!("not in a v1 {ctrl} cgroup"))?;
        let dir = dir_in(sys, m, &own).ok_or(format!("its {ctrl} cgroup is outside the mount"))?;
        if !dir.join(probe).exists() {
            return Err(format!("no {}", dir.join(probe).display()));
        }
        let parent = dir.join(name);
        create(&parent)?;
        dirs.push(parent);
    }
    let cpu = dirs.pop().unwrap_or_default();
    let memory = dirs.pop().unwrap_or_default();
    Ok((memory, cpu))
}

fn create(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
    }
}

/// One session's limits as enforced: bytes of memory and a CPU weight (1–10000, 100 is
/// an ordinary share).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionLimits {
    pub memory: Option<u64>,
    pub cpu_share: Option<u32>,
}

impl SessionLimits {
    fn any(&self) -> bool {
        self.memory.is_some() || self.cpu_share.is_some()
    }
}

/// `cpu.shares` (v1) for a weight: 100 is the default 1024.
fn v1_shares(weight: u32) -> u64 {
    (u64::from(weight) * 1024 / 100).max(2)
}

/// The limits of this node: the mode, the node's cap and default, and the limits of each
/// session dir with a browser.
pub struct Limits {
    detected: Detected,
    /// `max_session_memory`: the default and the most any session gets here.
    max_memory: Option<u64>,
    /// `cpu_share`: the weight of a session that does not ask.
    cpu_share: Option<u32>,
    /// Limits per session dir name, for measurement and for reports.
    dirs: Mutex<HashMap<String, SessionLimits>>,
}

impl Limits {
    pub fn new(detected: Detected, max_memory: Option<u64>, cpu_share: Option<u32>) -> Self {
        Limits {
            detected,
            max_memory,
            cpu_share,
            dirs: Mutex::new(HashMap::new()),
        }
    }

    /// No limits (tools that launch browsers outside a daemon).
    pub fn off() -> Self {
        Limits::new(
            Detected {
                mode: Mode::Off,
                why: "not a daemon".into(),
                layout: None,
            },
            None,
            None,
        )
    }

    pub fn mode(&self) -> Mode {
        self.detected.mode
    }

    pub fn detected(&self) -> &Detected {
        &self.detected
    }

    /// What a session with `options` gets here: its own memory limit within this node's cap,
    /// else the cap; its own CPU share, else the node's. Nothing when the mode is off.
    pub fn of(&self, options: &SessionOptions) -> SessionLimits {
        if self.mode() == Mode::Off {
            return SessionLimits::default();
        }
        let memory = match (options.memory_limit, self.max_memory) {
            (Some(asked), Some(cap)) => Some(asked.min(cap)),
            (asked, cap) => asked.or(cap),
        };
        let cpu_share = options
            .cpu_share
            .or(self.cpu_share)
            .filter(|_| self.mode().shares_cpu());
        SessionLimits { memory, cpu_share }
    }

    /// The cgroup dirs of session dir `name` (one, or two for v1).
    fn cgroups(&self, name: &str) -> Vec<PathBuf> {
        match &self.detected.layout {
            Some(Layout::V2(parent)) => vec![parent.join(name)],
            Some(Layout::V1 { memory, cpu }) => vec![memory.join(name), cpu.join(name)],
            None => Vec::new(),
        }
    }

    /// Sets up the limits of the browser about to start for session dir `name` (a checked
    /// session id): in a cgroup mode, creates its cgroup and returns the `cgroup.procs` files
    /// the browser must join before it runs.
    pub fn prepare(&self, name: &str, limits: SessionLimits) -> io::Result<Vec<PathBuf>> {
        checked(name)?;
        lock(&self.dirs).insert(name.to_string(), limits);
        if self.detected.layout.is_none() {
            return Ok(Vec::new());
        }
        let dirs = self.cgroups(name);
        for dir in &dirs {
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        self.write(name, limits)?;
        Ok(dirs.iter().map(|d| d.join("cgroup.procs")).collect())
    }

    /// Applies `limits` to session dir `name`'s browser, already running (a warm browser
    /// taken by a session, or one adopted after a restart).
    pub fn apply(&self, name: &str, limits: SessionLimits) -> io::Result<()> {
        checked(name)?;
        lock(&self.dirs).insert(name.to_string(), limits);
        if self.detected.layout.is_none() || !self.cgroups(name).iter().all(|d| d.exists()) {
            return Ok(());
        }
        self.write(name, limits)
    }

    fn write(&self, name: &str, limits: SessionLimits) -> io::Result<()> {
        let mem = limits.memory.map_or("max".to_string(), |b| b.to_string());
        match &self.detected.layout {
            Some(Layout::V2(parent)) => {
                let dir = parent.join(name);
                std::fs::write(dir.join("memory.max"), &mem)?;
                // No swap: over its limit a browser is stopped, not slowed to a crawl.
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                let weight = limits.cpu_share.unwrap_or(100);
                std::fs::write(dir.join("cpu.weight"), weight.to_string())
            }
            Some(Layout::V1 { memory, cpu }) => {
                // v1 takes -1 for no limit.
                let mem = limits.memory.map_or("-1".to_string(), |b| b.to_string());
                std::fs::write(memory.join(name).join("memory.limit_in_bytes"), mem)?;
                let shares = v1_shares(limits.cpu_share.unwrap_or(100));
                std::fs::write(cpu.join(name).join("cpu.shares"), shares.to_string())
            }
            None => Ok(()),
        }
    }

    /// The limits session dir `name` runs with, if any.
    pub fn limits_of(&self, name: &str) -> Option<SessionLimits> {
        lock(&self.dirs)
            .get(name)
            .copied()
            .filter(SessionLimits::any)
    }

    /// True when the browser of session dir `name` was stopped or is over by its memory
    /// limit: an OOM kill in its cgroup, or (measurement) `pss_kib` past the limit.
    pub fn over(&self, name: &str, pss_kib: Option<u64>) -> bool {
        let Some(limit) = self.limits_of(name).and_then(|l| l.memory) else {
            return false;
        };
        match &self.detected.layout {
            Some(Layout::V2(parent)) => oom_kills(&parent.join(name).join("memory.events")) > 0,
            Some(Layout::V1 { memory, .. }) => {
                oom_kills(&memory.join(name).join("memory.oom_control")) > 0
            }
            None => pss_kib.is_some_and(|kib| kib.saturating_mul(1024) > limit),
        }
    }

    /// Forgets session dir `name` and removes its cgroup: SIGKILLs whatever is left in it
    /// (only its browser's processes can be), then removes it, retrying while they exit.
    pub async fn release(&self, name: &str) -> io::Result<()> {
        checked(name)?;
        lock(&self.dirs).remove(name);
        for dir in self.cgroups(name) {
            remove_cgroup(&dir).await?;
        }
        Ok(())
    }

    /// Removes the cgroups under bro's parent whose session dir `keep` does not keep (their
    /// dir is gone: a daemon killed between removing a dir and its cgroup). Returns how many.
    /// One try each: a cgroup whose killed processes have not left yet goes on a later pass.
    pub fn sweep(&self, keep: impl Fn(&str) -> bool) -> usize {
        let parents = match &self.detected.layout {
            Some(Layout::V2(parent)) => vec![parent.clone()],
            Some(Layout::V1 { memory, cpu }) => vec![memory.clone(), cpu.clone()],
            None => return 0,
        };
        let mut removed = 0;
        for parent in parents {
            let Ok(entries) = std::fs::read_dir(&parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(String::from) else {
                    continue;
                };
                let dir = entry.path();
                if SessionId::parse(&name).is_err() || !dir.is_dir() || keep(&name) {
                    continue;
                }
                match remove_once(&dir) {
                    Ok(()) => {
                        tracing::info!(cgroup = %dir.display(), "removed an orphaned cgroup");
                        removed += 1;
                    }
                    Err(e) => {
                        tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove an orphaned cgroup")
                    }
                }
            }
        }
        removed
    }
}

/// Refuses a name that is not a session id: cgroup paths are built only from those.
fn checked(name: &str) -> io::Result<()> {
    SessionId::parse(name)
        .map(|_| ())
        .map_err(|_| io::Error::other(format!("refusing cgroup name {name:?}: not a session id")))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `oom_kill` count of a `memory.events` (v2) or `memory.oom_control` (v1) file.
pub fn oom_kills(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let (key, value) = l.split_once(' ')?;
                (key == "oom_kill").then(|| value.trim().parse().ok())?
            })
        })
        .unwrap_or(0)
}

/// How long removing a cgroup waits for its killed processes to leave.
const REMOVE_WAIT: Duration = Duration::from_secs(5);

async fn remove_cgroup(dir: &Path) -> io::Result<()> {
    use std::ops::ControlFlow;
    let done = crate::wait::wait_until(REMOVE_WAIT, Duration::from_millis(20), || async {
        match remove_once(dir) {
            Ok(()) => ControlFlow::Break(Ok(())),
            Err(e) => ControlFlow::Continue(e),
        }
    })
    .await;
    match done {
        ControlFlow::Break(r) => r,
        ControlFlow::Continue(e) => Err(e),
    }
}

/// SIGKILLs the processes left in cgroup `dir` and removes it; gone already is done.
fn remove_once(dir: &Path) -> io::Result<()> {
    for pid in members(dir) {
        crate::worker::process::signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The pids in a cgroup.
fn members(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The shell that puts a browser into its cgroups before it runs: it writes its own pid into
/// each `cgroup.procs` given, then execs the browser, which keeps the pid (and so its start
/// time) the daemon records. Arguments: the number of procs files, the files, the command.
pub const JOIN_SCRIPT: &str = r#"n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 127; shift; n=$((n-1)); done; exec "$@""#;

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    })
}

/// Bytes this daemon may still use: `MemAvailable`, or less when the daemon's own memory
/// cgroup is limited below it (its limit minus its usage).
pub fn free_memory(sys: &Sys) -> Option<u64> {
    let avail =
        mem_available(&std::fs::read_to_string(sys.path(Path::new("/proc/meminfo"))).ok()?)?;
    let all = mounts(&sys.mountinfo);
    let cgroup_room = |m: &Mount, own: &str, limit: &str, usage: &str| -> Option<u64> {
        let dir = dir_in(sys, m, own)?;
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let limit: u64 = read(limit)?.trim().parse().ok()?;
        let usage: u64 = read(usage)?.trim().parse().ok()?;
        Some(limit.saturating_sub(usage))
    };
    let v2 = all.iter().find(|m| m.v2).and_then(|m| {
        let own = own_path(&sys.self_cgroup, "")?;
        cgroup_room(m, &own, "memory.max", "memory.current")
    });
    let v1 = all
        .iter()
        .find(|m| !m.v2 && m.options.iter().any(|o| o == "memory"))
        .and_then(|m| {
            let own = own_path(&sys.self_cgroup, "memory")?;
            cgroup_room(m, &own, "memory.limit_in_bytes", "memory.usage_in_bytes")
        });
    Some(
        [Some(avail), v2, v1]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(avail),
    )
}

#[cfg(test)]
mod tests;
