//! bro's cgroups on disk: one [`Cgroup`] type for a parent (`bro-<hash>`) and a session's
//! cgroup below it, in the unified hierarchy or in v1's `memory` and `cpu` ones; writing a
//! session's limits, and removing cgroups (their leftover members SIGKILLed first).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{SessionLimits, lock};

/// A cgroup of bro's in each hierarchy it uses: a home's parent, or one session's below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cgroup {
    /// In the unified hierarchy.
    V2(PathBuf),
    /// In the v1 `memory` and `cpu` hierarchies.
    V1 { memory: PathBuf, cpu: PathBuf },
}

impl Cgroup {
    /// Its dirs, as a pid file and the record list them (v1: memory, then cpu).
    pub(super) fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V2(dir) => vec![dir.clone()],
            Cgroup::V1 { memory, cpu } => vec![memory.clone(), cpu.clone()],
        }
    }

    /// Its child `name` (a parent's: the cgroup of session dir `name`).
    pub(super) fn child(&self, name: &str) -> Cgroup {
        match self {
            Cgroup::V2(dir) => Cgroup::V2(dir.join(name)),
            Cgroup::V1 { memory, cpu } => Cgroup::V1 {
                memory: memory.join(name),
                cpu: cpu.join(name),
            },
        }
    }

    /// Creates a parent's dirs when missing: for v2 with the controllers passed down to the
    /// sessions' cgroups.
    pub(super) fn ensure(&self) -> io::Result<()> {
        for parent in self.dirs() {
            match std::fs::create_dir(&parent) {
                Ok(()) => {
                    if let Cgroup::V2(_) = self {
                        std::fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu")?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Proves a parent can be made (the daemon's start) without leaving it: creates the dirs
    /// missing, then removes again the ones it made. One there already (the sessions of an
    /// earlier daemon of this home) is left as it is; made by this, it would outlive a daemon
    /// killed before any session used it.
    pub(super) fn prove(&self) -> io::Result<()> {
        let missing: Vec<PathBuf> = self.dirs().into_iter().filter(|p| !p.exists()).collect();
        let made = self.ensure();
        for parent in &missing {
            remove_parent(parent);
        }
        made
    }

    /// Removes a parent's dirs that are empty (every one is tried); true when none is left.
    pub(super) fn remove_empty(&self) -> bool {
        let gone: Vec<bool> = self.dirs().iter().map(|p| remove_parent(p)).collect();
        gone.into_iter().all(|g| g)
    }

    /// The cgroup a pid file recorded for session dir `name`, when it has the shape bro
    /// gives them (`<…>/bro-<hash>/<name>`, absolute, no `..`): the file is bro's, but a
    /// path from it is still checked before anything is killed or removed there.
    pub(super) fn recorded(dirs: &[PathBuf], name: &str) -> Option<Cgroup> {
        let ok = |d: &PathBuf| {
            d.file_name().and_then(|n| n.to_str()) == Some(name)
                && d.parent().is_some_and(is_parent_path)
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

    pub(super) fn exists(&self) -> bool {
        self.dirs().iter().all(|d| d.is_dir())
    }

    /// True when this session's cgroup shows an OOM kill its own `limit` caused.
    pub(super) fn oom_killed(&self, limit: u64) -> bool {
        match self {
            // `oom` counts the cgroup's own limit being hit; `oom_kill` alone also counts
            // kills of the machine's OOM killer.
            Cgroup::V2(dir) => {
                let events = dir.join("memory.events");
                count(&events, "oom") > 0 && count(&events, "oom_kill") > 0
            }
            Cgroup::V1 { memory, .. } => {
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
        }
    }
}

/// Removes a parent cgroup if it is empty (the kernel refuses one with children); true when
/// it is gone.
pub(super) fn remove_parent(parent: &Path) -> bool {
    match std::fs::remove_dir(parent) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// `cpu.shares` (v1) for a weight: 100 is the default 1024.
pub(super) fn v1_shares(weight: u32) -> u64 {
    (u64::from(weight) * 1024 / 100).max(2)
}

/// Removes the parent of session cgroup `dir` when that was its last child (best effort: the
/// kernel refuses a parent with children, and the sweep and the daemon's stop try again).
pub(super) fn remove_parent_of(parents: &Mutex<()>, dir: &Path) {
    let Some(parent) = dir.parent().filter(|p| is_parent_path(p)) else {
        return;
    };
    let _removing = lock(parents);
    remove_parent(parent);
}

/// A path of bro's parent-cgroup shape (absolute, `bro-…`, no `..`).
pub(super) fn is_parent_path(p: &Path) -> bool {
    p.is_absolute()
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("bro-"))
        && !p.components().any(|c| c == std::path::Component::ParentDir)
}

/// Writes `limits` into a session's cgroup.
pub(super) fn write(cgroup: &Cgroup, limits: SessionLimits) -> io::Result<()> {
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

/// Removes session cgroup `dir` and then its parent when that was its last child, retrying
/// while its killed processes leave; each try holds `parents`, and stops (done) as soon as
/// `taken` says another browser of the same name owns the cgroup now.
pub(super) async fn remove_cgroup(
    dir: &Path,
    parents: &Mutex<()>,
    taken: impl Fn() -> bool,
) -> io::Result<()> {
    use std::ops::ControlFlow;
    let done = crate::wait::wait_until(REMOVE_WAIT, Duration::from_millis(20), || async {
        let _held = lock(parents);
        if taken() {
            return ControlFlow::Break(Ok(()));
        }
        match remove_once(dir) {
            Ok(()) => {
                if let Some(parent) = dir.parent().filter(|p| is_parent_path(p)) {
                    remove_parent(parent);
                }
                ControlFlow::Break(Ok(()))
            }
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
pub(super) fn remove_once(dir: &Path) -> io::Result<()> {
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
