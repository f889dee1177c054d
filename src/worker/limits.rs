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
//! sweep removes those whose dir is gone (a daemon killed mid-teardown). The parents
//! (`bro-<hash>`) are made with the first cgroup a browser needs and removed with the last
//! (the start only proves it can make them), so a daemon killed before any leaves none; the
//! sweep removes empty ones a killed daemon left. Nothing here spawns or kills a browser by
//! itself except the leftover members of a cgroup being removed, which only bro's browsers
//! can be in.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

impl Layout {
    /// bro's parent cgroups.
    fn parents(&self) -> Vec<PathBuf> {
        match self {
            Layout::V2(parent) => vec![parent.clone()],
            Layout::V1 { memory, cpu } => vec![memory.clone(), cpu.clone()],
        }
    }

    /// The cgroup(s) of session dir `name`.
    fn of(&self, name: &str) -> Cgroup {
        match self {
            Layout::V2(parent) => Cgroup::V2(parent.join(name)),
            Layout::V1 { memory, cpu } => Cgroup::V1 {
                memory: memory.join(name),
                cpu: cpu.join(name),
            },
        }
    }

    /// Creates the parents when missing (a doctor or a removed parent): for v2 with the
    /// controllers passed down to the sessions' cgroups.
    fn ensure(&self) -> io::Result<()> {
        for parent in self.parents() {
            match std::fs::create_dir(&parent) {
                Ok(()) => {
                    if let Layout::V2(_) = self {
                        std::fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu")?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Proves the parents can be made (the daemon's start) without leaving any: creates
    /// those missing, then removes again the ones it made. A parent there already (the
    /// sessions of an earlier daemon of this home) is left as it is; made by this, they would
    /// outlive a daemon killed before any session used them.
    fn prove(&self) -> io::Result<()> {
        let missing: Vec<PathBuf> = self.parents().into_iter().filter(|p| !p.exists()).collect();
        let made = self.ensure();
        for parent in &missing {
            let _ = remove_parent(parent);
        }
        made
    }

    /// Removes the parents that are empty (every one is tried); true when none is left.
    fn remove_empty(&self) -> bool {
        let gone: Vec<bool> = self.parents().iter().map(|p| remove_parent(p)).collect();
        gone.into_iter().all(|g| g)
    }
}

/// Removes a parent cgroup if it is empty (the kernel refuses one with children); true when
/// it is gone.
fn remove_parent(parent: &Path) -> bool {
    match std::fs::remove_dir(parent) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// The cgroup(s) one session's browser runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cgroup {
    V2(PathBuf),
    V1 { memory: PathBuf, cpu: PathBuf },
}

impl Cgroup {
    /// Its dirs, as the session's pid file records them (v1: memory, then cpu).
    fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V2(dir) => vec![dir.clone()],
            Cgroup::V1 { memory, cpu } => vec![memory.clone(), cpu.clone()],
        }
    }

    /// The cgroup a pid file recorded for session dir `name`, when it has the shape bro
    /// gives them (`<…>/bro-<hash>/<name>`, absolute, no `..`): the file is bro's, but a
    /// path from it is still checked before anything is killed or removed there.
    fn recorded(dirs: &[PathBuf], name: &str) -> Option<Cgroup> {
        let ok = |d: &PathBuf| {
            d.is_absolute()
                && d.file_name().and_then(|n| n.to_str()) == Some(name)
                && d.parent()
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("bro-"))
                && !d.components().any(|c| c == std::path::Component::ParentDir)
        };
        if !dirs.iter().all(ok) {
            return None;
        }
        match dirs {
            [dir] => Some(Cgroup::V2(dir.clone())),
            [memory, cpu] => Some(Cgroup::V1 {
                memory: memory.clone(),
                cpu: cpu.clone(),
            }),
            _ => None,
        }
    }

    fn exists(&self) -> bool {
        self.dirs().iter().all(|d| d.is_dir())
    }
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
    /// Removes bro's parent cgroups again when empty (at the daemon's stop); true when none
    /// is left.
    pub fn remove_parents(&self) -> bool {
        self.layout.as_ref().is_none_or(Layout::remove_empty)
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
    // By components: a mount of /docker/abc is not one of /docker/abcdef.
    let rel = Path::new(path).strip_prefix(&m.root).ok()?.to_str()?;
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

/// Chooses the mode as `wanted` says and this machine allows. With `create` (the daemon), it
/// creates bro's parent cgroup (`name`) where a cgroup mode is chosen; without (`bro
/// doctor`), it only reads, so a probe never touches cgroups a running daemon uses. A forced
/// cgroup mode the machine does not allow is an error naming why.
pub fn detect(sys: &Sys, wanted: LimitsMode, name: &str, create: bool) -> Result<Detected, String> {
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
    let v2 = match try_v2(sys, name, create) {
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
    let v1 = match try_v1(sys, name, create) {
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

/// bro's v2 parent below the daemon's own cgroup. The kernel passes controllers down only
/// from a cgroup without processes of its own (the root aside), and the daemon is in its
/// own: so bro never writes that cgroup's (or the root's) `cgroup.subtree_control`, and
/// uses v2 only where the controllers are delegated to its children already (systemd's
/// `Delegate=yes`).
fn try_v2(sys: &Sys, name: &str, create: bool) -> Result<PathBuf, String> {
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
    let subtree = dir.join("cgroup.subtree_control");
    for ctrl in ["memory", "cpu"] {
        if !has(&subtree, ctrl) {
            return Err(format!(
                "the {ctrl} controller is not delegated below {} (its \
                 cgroup.subtree_control); run bro in a delegated cgroup (e.g. systemd-run \
                 --scope -p Delegate=yes) or on cgroup v1",
                dir.display()
            ));
        }
    }
    let parent = dir.join(name);
    if create {
        Layout::V2(parent.clone())
            .prove()
            .map_err(|e| format!("cannot set up {}: {e}", parent.display()))?;
    } else {
        writable(&dir)?;
    }
    Ok(parent)
}

fn try_v1(sys: &Sys, name: &str, create: bool) -> Result<(PathBuf, PathBuf), String> {
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
        if !create {
            writable(&dir)?;
        }
        dirs.push(dir.join(name));
    }
    let cpu = dirs.pop().unwrap_or_default();
    let memory = dirs.pop().unwrap_or_default();
    if create {
        Layout::V1 {
            memory: memory.clone(),
            cpu: cpu.clone(),
        }
        .prove()
        .map_err(|e| format!("cannot create bro's cgroups at {}: {e}", memory.display()))?;
    }
    Ok((memory, cpu))
}

/// A cgroup dir this process may create children in (a read-only probe).
fn writable(dir: &Path) -> Result<(), String> {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
        .map_err(|e| format!("cannot create cgroups in {}: {e}", dir.display()))
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

/// One session dir's limits, and the cgroup enforcing them (none: measured, if limited).
#[derive(Debug, Clone)]
struct Entry {
    limits: SessionLimits,
    cgroup: Option<Cgroup>,
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
    dirs: Mutex<HashMap<String, Entry>>,
    /// The file recording every parent cgroup of this home (see [`Limits::record_parents`]).
    record: Mutex<Option<PathBuf>>,
    /// Parents of earlier daemons of this home (another cgroup then), swept until empty.
    old_parents: Mutex<Vec<PathBuf>>,
    /// Held while a parent is made and a session's cgroup created in it, and while an empty
    /// parent is removed: a parent is never removed between the two.
    parents: Arc<Mutex<()>>,
}

impl Limits {
    pub fn new(detected: Detected, max_memory: Option<u64>, cpu_share: Option<u32>) -> Self {
        Limits {
            detected,
            max_memory,
            cpu_share,
            dirs: Mutex::new(HashMap::new()),
            record: Mutex::new(None),
            old_parents: Mutex::new(Vec::new()),
            parents: Arc::new(Mutex::new(())),
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

    /// Records this daemon's parent cgroups in `file` beside those of earlier daemons of the
    /// same home, which may have run in another cgroup (started from another terminal or
    /// unit): their sessions' cgroups are found again from their pid files, and the sweep
    /// empties and removes those parents. Only paths with bro's shape are read back.
    pub fn record_parents(&self, file: &Path) -> io::Result<()> {
        let current: Vec<PathBuf> = self
            .detected
            .layout
            .iter()
            .flat_map(Layout::parents)
            .collect();
        let old: Vec<PathBuf> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .take(64)
            .map(PathBuf::from)
            .filter(|p| is_parent_path(p) && !current.contains(p) && p.is_dir())
            .collect();
        *lock(&self.old_parents) = old;
        *lock(&self.record) = Some(file.to_path_buf());
        self.save_record()
    }

    fn save_record(&self) -> io::Result<()> {
        let Some(file) = lock(&self.record).clone() else {
            return Ok(());
        };
        let mut all: Vec<PathBuf> = self
            .detected
            .layout
            .iter()
            .flat_map(Layout::parents)
            .collect();
        all.extend(lock(&self.old_parents).iter().cloned());
        if all.is_empty() {
            return match std::fs::remove_file(&file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let text: String = all.iter().map(|p| format!("{}\n", p.display())).collect();
        let tmp = file.with_extension("new");
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &file))
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

    /// Sets up the limits of the browser about to start for session dir `name` (a checked
    /// session id): in a cgroup mode, creates its cgroup and returns the `cgroup.procs` files
    /// the browser must join before it runs. A cold browser without any limit gets none (no
    /// cgroup, no wrapper shell); a `warm` one always does, to take a session's at claim.
    pub fn prepare(
        &self,
        name: &str,
        limits: SessionLimits,
        warm: bool,
    ) -> io::Result<Vec<PathBuf>> {
        checked(name)?;
        let layout = match &self.detected.layout {
            Some(layout) if warm || limits.any() => layout,
            _ => {
                lock(&self.dirs).insert(
                    name.to_string(),
                    Entry {
                        limits,
                        cgroup: None,
                    },
                );
                return Ok(Vec::new());
            }
        };
        let cgroup = layout.of(name);
        {
            // The parents are made with the first cgroup that needs them (a daemon killed
            // before any leaves none), and again when removed since (by the last session's
            // release, a hand).
            let _made = lock(&self.parents);
            layout.ensure()?;
            for dir in cgroup.dirs() {
                match std::fs::create_dir(&dir) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
            }
        }
        if let Cgroup::V2(dir) = &cgroup {
            // An OOM kill takes the whole browser, not one renderer the session outlives.
            let _ = std::fs::write(dir.join("memory.oom.group"), "1");
        }
        write(&cgroup, limits)?;
        let procs = cgroup
            .dirs()
            .iter()
            .map(|d| d.join("cgroup.procs"))
            .collect();
        lock(&self.dirs).insert(
            name.to_string(),
            Entry {
                limits,
                cgroup: Some(cgroup),
            },
        );
        Ok(procs)
    }

    /// Where session dir `name`'s cgroup is in this daemon's layout.
    fn current(&self, name: &str) -> Option<Cgroup> {
        self.detected.layout.as_ref().map(|l| l.of(name))
    }

    /// The cgroup dirs of session dir `name`, for its pid file.
    pub fn cgroup_dirs(&self, name: &str) -> Vec<PathBuf> {
        lock(&self.dirs)
            .get(name)
            .and_then(|e| e.cgroup.as_ref())
            .map(Cgroup::dirs)
            .unwrap_or_default()
    }

    /// Applies `limits` to session dir `name`'s browser, already running (a warm browser
    /// taken by a session, or one adopted after a restart), in the cgroup this daemon made or
    /// its pid file `recorded`. When that cgroup is gone (removed by hand), its memory limit
    /// is enforced by measurement instead of not at all.
    pub fn apply(&self, name: &str, limits: SessionLimits, recorded: &[PathBuf]) -> io::Result<()> {
        checked(name)?;
        let known = lock(&self.dirs).get(name).and_then(|e| e.cgroup.clone());
        // A pid file of an older bro records none: its cgroup is where this daemon's is.
        let cgroup = known
            .or_else(|| Cgroup::recorded(recorded, name))
            .or_else(|| self.current(name).filter(|_| recorded.is_empty()))
            .filter(Cgroup::exists);
        if cgroup.is_none() && !recorded.is_empty() && limits.memory.is_some() {
            tracing::warn!(
                session_dir = name,
                "the session's cgroup is gone: its memory limit is measured instead"
            );
        }
        let result = cgroup.as_ref().map_or(Ok(()), |c| write(c, limits));
        lock(&self.dirs).insert(name.to_string(), Entry { limits, cgroup });
        result
    }

    /// The limits session dir `name` runs with, if any.
    pub fn limits_of(&self, name: &str) -> Option<SessionLimits> {
        lock(&self.dirs)
            .get(name)
            .map(|e| e.limits)
            .filter(SessionLimits::any)
    }

    /// True when session dir `name`'s memory limit is enforced by measuring its browser's
    /// PSS (the measurement mode, or a limited browser without a cgroup).
    pub fn measured(&self, name: &str) -> bool {
        lock(&self.dirs)
            .get(name)
            .is_some_and(|e| e.limits.memory.is_some() && e.cgroup.is_none())
    }

    /// True when the browser of session dir `name` was stopped or is over by its memory
    /// limit: an OOM kill its own limit caused in its cgroup, or (measured) `pss_kib` past it.
    pub fn over(&self, name: &str, pss_kib: Option<u64>) -> bool {
        let Some(entry) = lock(&self.dirs).get(name).cloned() else {
            return false;
        };
        let Some(limit) = entry.limits.memory else {
            return false;
        };
        match &entry.cgroup {
            // `oom` counts the cgroup's own limit being hit; `oom_kill` alone also counts
            // kills of the machine's OOM killer.
            Some(Cgroup::V2(dir)) => {
                let events = dir.join("memory.events");
                count(&events, "oom") > 0 && count(&events, "oom_kill") > 0
            }
            Some(Cgroup::V1 { memory, .. }) => {
                // The limit was reached: a failed charge (of memory, or of memory+swap), or
                // (kernels that count no failcnt) the peak usage at the limit, within the
                // kernel's per-CPU charge batches.
                let read = |f: &str| read_u64(&memory.join(f));
                let failed = ["memory.failcnt", "memory.memsw.failcnt"]
                    .iter()
                    .any(|f| read(f).is_some_and(|n| n > 0));
                let peaked = read("memory.max_usage_in_bytes")
                    .is_some_and(|peak| peak.saturating_add(2 << 20) >= limit);
                let hit = failed || peaked;
                count(&memory.join("memory.oom_control"), "oom_kill") > 0 && hit
            }
            None => pss_kib.is_some_and(|kib| kib.saturating_mul(1024) > limit),
        }
    }

    /// Forgets session dir `name` and removes its cgroup (this daemon's, else the one its pid
    /// file `recorded`): SIGKILLs whatever is left in it (only its browser's processes can
    /// be) and removes it; when they have not left yet, a background task retries (the
    /// sweep is the backstop), so no stop waits on it.
    pub async fn release(&self, name: &str, recorded: &[PathBuf]) -> io::Result<()> {
        checked(name)?;
        let known = lock(&self.dirs).remove(name).and_then(|e| e.cgroup);
        let Some(cgroup) = known
            .or_else(|| Cgroup::recorded(recorded, name))
            .or_else(|| self.current(name).filter(|_| recorded.is_empty()))
        else {
            return Ok(());
        };
        for dir in cgroup.dirs() {
            if remove_once(&dir).is_ok() {
                remove_parent_of(&self.parents, &dir);
                continue;
            }
            let parents = self.parents.clone();
            tokio::spawn(async move {
                match remove_cgroup(&dir).await {
                    Ok(()) => remove_parent_of(&parents, &dir),
                    Err(err) => {
                        tracing::warn!(cgroup = %dir.display(), %err, "could not remove a session's cgroup")
                    }
                }
            });
        }
        Ok(())
    }

    /// Removes the cgroups under bro's parents (this daemon's and earlier ones') whose session
    /// dir `keep` does not keep (their dir is gone: a daemon killed between removing a dir
    /// and its cgroup), and earlier daemons' parents once empty. Returns how many sessions'
    /// cgroups. One try each: a cgroup whose killed processes have not left yet goes on a
    /// later pass.
    pub fn sweep(&self, keep: impl Fn(&str) -> bool) -> usize {
        let current: Vec<PathBuf> = self
            .detected
            .layout
            .iter()
            .flat_map(Layout::parents)
            .collect();
        let old = lock(&self.old_parents).clone();
        let mut removed = 0;
        for parent in current.iter().chain(&old) {
            let Ok(entries) = std::fs::read_dir(parent) else {
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
        // This daemon's parents go when empty (left by a daemon of this home killed in this
        // cgroup, or emptied by hand), made again by the next session needing them.
        if let Some(layout) = &self.detected.layout {
            let _removing = lock(&self.parents);
            layout.remove_empty();
        }
        // An earlier daemon's parent goes once empty (removal fails while it is not).
        let gone: Vec<PathBuf> = old
            .into_iter()
            .filter(|p| match std::fs::remove_dir(p) {
                Ok(()) => true,
                Err(e) => e.kind() == io::ErrorKind::NotFound,
            })
            .collect();
        if !gone.is_empty() {
            lock(&self.old_parents).retain(|p| !gone.contains(p));
            if let Err(err) = self.save_record() {
                tracing::warn!(%err, "could not update the record of bro's cgroups");
            }
        }
        removed
    }
}

/// Removes the parent of session cgroup `dir` when that was its last child (best effort: the
/// kernel refuses a parent with children, and the sweep and the daemon's stop try again).
fn remove_parent_of(parents: &Mutex<()>, dir: &Path) {
    let Some(parent) = dir.parent().filter(|p| is_parent_path(p)) else {
        return;
    };
    let _removing = lock(parents);
    remove_parent(parent);
}

/// A path of bro's parent-cgroup shape (absolute, `bro-…`, no `..`).
fn is_parent_path(p: &Path) -> bool {
    p.is_absolute()
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("bro-"))
        && !p.components().any(|c| c == std::path::Component::ParentDir)
}

/// Writes `limits` into a session's cgroup.
fn write(cgroup: &Cgroup, limits: SessionLimits) -> io::Result<()> {
    match cgroup {
        Cgroup::V2(dir) => {
            let mem = limits.memory.map_or("max".to_string(), |b| b.to_string());
            std::fs::write(dir.join("memory.max"), &mem)?;
            // No swap: over its limit a browser is stopped, not slowed to a crawl.
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
            let weight = limits.cpu_share.unwrap_or(100);
            std::fs::write(dir.join("cpu.weight"), weight.to_string())
        }
        Cgroup::V1 { memory, cpu } => {
            write_v1_memory(memory, limits.memory)?;
            let shares = v1_shares(limits.cpu_share.unwrap_or(100));
            std::fs::write(cpu.join("cpu.shares"), shares.to_string())
        }
    }
}

/// v1's memory limit (-1 for none), with swap held to it too: `memory.memsw.limit_in_bytes`
/// (memory plus swap) where the kernel accounts swap, which must never be below the memory
/// limit (so lowering writes the limit first, raising memsw first); else swappiness 0.
fn write_v1_memory(dir: &Path, bytes: Option<u64>) -> io::Result<()> {
    let value = bytes.map_or("-1".to_string(), |b| b.to_string());
    let limit = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    if !memsw.exists() {
        std::fs::write(&limit, &value)?;
        let _ = std::fs::write(dir.join("memory.swappiness"), "0");
        return Ok(());
    }
    // One order fails where the other works (the kernel refuses memsw < limit).
    std::fs::write(&limit, &value)
        .and_then(|()| std::fs::write(&memsw, &value))
        .or_else(|_| std::fs::write(&memsw, &value).and_then(|()| std::fs::write(&limit, &value)))
}

fn read_u64(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
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

/// The count `key` of a flat keyed file (`memory.events`, `memory.oom_control`); 0 if absent.
pub fn count(file: &Path, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let (k, value) = l.split_once(' ')?;
                (k == key).then(|| value.trim().parse().ok())?
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
        Some(kib.saturating_mul(1024))
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
