//! Per-session resource limits: a memory limit and a CPU share for each browser.
//!
//! How they are enforced is chosen once, at start ([`detect`]):
//! - **cgroup v2**: the unified hierarchy has the `memory` and `cpu` controllers for bro's
//!   cgroup; each browser runs in its own child cgroup (`memory.max`, `cpu.weight`), and an
//!   OOM kill in it (`memory.events`) ends the session.
//! - **cgroup v1**: writable v1 `memory` and `cpu` hierarchies (`memory.limit_in_bytes`,
//!   `cpu.shares`; OOM kills counted in `memory.oom_control`).
//! - **measurement**: the supervisor sums the PSS of the browser's process group and fails a
//!   session over its limit ([`measure`] spaces the scans out while all are far below). No
//!   CPU share.
//! - **off**: nothing is enforced.
//!
//! Here: [`Limits`], the node's limits and each session dir's. The mode's detection is in
//! `detect`, the cgroups on disk in `cgroup`.
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

mod cgroup;
mod detect;
pub mod measure;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::protocol::session::{SessionId, SessionOptions};
pub use cgroup::count;
use cgroup::{Cgroup, is_parent_path, remove_cgroup, remove_once, remove_parent_of, write};
pub use detect::{
    DetectError, Detected, Sys, Unusable, detect, free_memory, mem_available, parent_name,
};

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
    /// Limits per session dir name, for measurement and for reports. A name in here owns
    /// its cgroup: a background removal of an earlier browser of that name stops.
    dirs: Arc<Mutex<HashMap<String, Entry>>>,
    /// The file recording every parent cgroup of this home (see [`Limits::record_parents`]).
    record: Mutex<Option<PathBuf>>,
    /// Parents of earlier daemons of this home (another cgroup then), swept until empty.
    old_parents: Mutex<Vec<PathBuf>>,
    /// Held while a parent is made and a session's cgroup created in it, and while an empty
    /// parent is removed: a parent is never removed between the two.
    parents: Arc<Mutex<()>>,
    /// When measurement next walks `/proc`.
    schedule: Mutex<measure::Schedule>,
}

impl Limits {
    pub fn new(detected: Detected, max_memory: Option<u64>, cpu_share: Option<u32>) -> Self {
        Limits {
            detected,
            max_memory,
            cpu_share,
            dirs: Arc::new(Mutex::new(HashMap::new())),
            record: Mutex::new(None),
            old_parents: Mutex::new(Vec::new()),
            parents: Arc::new(Mutex::new(())),
            schedule: Mutex::new(measure::Schedule::default()),
        }
    }

    /// No limits (tools that launch browsers outside a daemon).
    pub fn off() -> Self {
        Limits::new(
            Detected {
                mode: Mode::Off,
                why: "not a daemon".into(),
                forced: true,
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
        let current: Vec<PathBuf> = self.detected.layout.iter().flat_map(Cgroup::dirs).collect();
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
        let mut all: Vec<PathBuf> = self.detected.layout.iter().flat_map(Cgroup::dirs).collect();
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
        let cgroup = layout.child(name);
        {
            // The parents are made with the first cgroup that needs them (a daemon killed
            // before any leaves none), and again when removed since (by the last session's
            // release, a hand).
            let _made = lock(&self.parents);
            layout.ensure()?;
            for dir in cgroup.dirs() {
                if let Err(e) = std::fs::create_dir(&dir) {
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(e);
                    }
                    // An earlier browser of this name (a launch being retried) left its
                    // cgroup: never reused, since its OOM counters would be read as this
                    // browser's. Its processes were killed before this launch; once they are
                    // gone it goes, else this attempt fails and a later one finds it gone.
                    remove_once(&dir)?;
                    std::fs::create_dir(&dir)?;
                }
            }
            // Recorded while the parents are held, so a background removal of the earlier
            // cgroup of this name sees that it is taken (`release`).
            lock(&self.dirs).insert(
                name.to_string(),
                Entry {
                    limits,
                    cgroup: Some(cgroup.clone()),
                },
            );
        }
        if let Cgroup::V2(dir) = &cgroup {
            // An OOM kill takes the whole browser, not one renderer the session outlives.
            let _ = std::fs::write(dir.join("memory.oom.group"), "1");
        }
        write(&cgroup, limits)?;
        Ok(cgroup
            .dirs()
            .iter()
            .map(|d| d.join("cgroup.procs"))
            .collect())
    }

    /// Where session dir `name`'s cgroup is in this daemon's layout.
    fn current(&self, name: &str) -> Option<Cgroup> {
        self.detected.layout.as_ref().map(|l| l.child(name))
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

    /// True when measured browser groups `groups` (sorted process group ids) are to be
    /// measured now ([`measure::Schedule`]).
    pub fn measure_due(&self, groups: &[u32]) -> bool {
        lock(&self.schedule).due(std::time::Instant::now(), groups)
    }

    /// Records a measurement of `groups` (sorted), the nearest of which was at `permille`
    /// thousandths of its limit.
    pub fn measured_now(&self, groups: Vec<u32>, permille: u64) {
        lock(&self.schedule).walked(std::time::Instant::now(), groups, permille);
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
            Some(cgroup) => cgroup.oom_killed(limit),
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
            let (parents, dirs, name) = (self.parents.clone(), self.dirs.clone(), name.to_string());
            tokio::spawn(async move {
                // Each try holds the parents, as `prepare` does: a browser launched again
                // under this name (a retried launch) takes the cgroup over, and from then on
                // it is never killed or removed here.
                let taken = || lock(&dirs).contains_key(&name);
                let removed = remove_cgroup(&dir, &parents, taken).await;
                if let Err(err) = removed {
                    tracing::warn!(cgroup = %dir.display(), %err, "could not remove a session's cgroup")
                }
            });
        }
        Ok(())
    }

    /// Removes the cgroups under bro's parents (this daemon's and earlier ones') whose session
    /// dir `keep` does not keep (their dir is gone: a daemon killed between removing a dir
    /// and its cgroup) and no session of this daemon uses, and earlier daemons' parents once
    /// empty. Returns how many sessions'
    /// cgroups. One try each: a cgroup whose killed processes have not left yet goes on a
    /// later pass.
    pub fn sweep(&self, keep: impl Fn(&str) -> bool) -> usize {
        let current: Vec<PathBuf> = self.detected.layout.iter().flat_map(Cgroup::dirs).collect();
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
                if SessionId::parse(&name).is_err() || !dir.is_dir() {
                    continue;
                }
                // Decided and done while the parents are held, as `prepare` makes and records
                // a cgroup: a launch of this name (a retried one, after a killed daemon) that
                // took the cgroup over is seen, and its browser never killed here.
                let _held = lock(&self.parents);
                let in_use = lock(&self.dirs)
                    .get(&name)
                    .and_then(|e| e.cgroup.as_ref())
                    .is_some_and(|c| c.dirs().contains(&dir));
                if in_use || keep(&name) {
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

/// Refuses a name that is not a session id: cgroup paths are built only from those.
fn checked(name: &str) -> io::Result<()> {
    SessionId::parse(name)
        .map(|_| ())
        .map_err(|_| io::Error::other(format!("refusing cgroup name {name:?}: not a session id")))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The shell that puts a browser into its cgroups before it runs: it writes its own pid into
/// each `cgroup.procs` given, then execs the browser, which keeps the pid (and so its start
/// time) the daemon records. Arguments: the number of procs files, the files, the command.
pub const JOIN_SCRIPT: &str = r#"n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 127; shift; n=$((n-1)); done; exec "$@""#;

#[cfg(test)]
mod tests;
