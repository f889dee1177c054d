//! Choosing how limits are enforced on this machine: the cgroup mounts and this process's
//! cgroups (`/proc/self/mountinfo`, `/proc/self/cgroup`), read through a [`Sys`] so tests
//! run on fake trees; and the memory this daemon may still use.

use std::io;
use std::path::{Path, PathBuf};

use super::Mode;
use super::cgroup::Cgroup;
use crate::config::LimitsMode;

/// The mode chosen at start, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub mode: Mode,
    /// Why this mode (and why not a cgroup mode), for `bro doctor` and the log.
    pub why: String,
    /// The mode is the one `limits_mode` named (`off`, `measure`), not one picked here.
    pub forced: bool,
    /// bro's parent cgroup, in a cgroup mode.
    pub(super) layout: Option<Cgroup>,
}

impl Detected {
    /// Removes bro's parent cgroups again when empty (at the daemon's stop); true when none
    /// is left.
    pub fn remove_parents(&self) -> bool {
        self.layout.as_ref().is_none_or(Cgroup::remove_empty)
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

    pub(super) fn path(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }
}

/// One cgroup mount: its root within the hierarchy, where it is mounted, and for v1 the
/// controllers it carries.
pub(super) struct Mount {
    pub(super) v2: bool,
    pub(super) root: String,
    pub(super) point: String,
    pub(super) options: Vec<String>,
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
pub(super) fn dir_in(sys: &Sys, m: &Mount, path: &str) -> Option<PathBuf> {
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

/// Why a cgroup mode cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("no {0} mount")]
    NoMount(&'static str),
    #[error("not in a {0}")]
    NotInCgroup(&'static str),
    #[error("its {cgroup} is outside the {mount}")]
    OutsideMount {
        cgroup: &'static str,
        mount: &'static str,
    },
    #[error("no {ctrl} controller in {}", file.display())]
    NoController { ctrl: &'static str, file: PathBuf },
    #[error(
        "the {ctrl} controller is not delegated below {} (its cgroup.subtree_control); run bro \
         in a delegated cgroup (e.g. systemd-run --scope -p Delegate=yes) or on cgroup v1",
        dir.display()
    )]
    NotDelegated { ctrl: &'static str, dir: PathBuf },
    #[error("no {}", .0.display())]
    NoFile(PathBuf),
    #[error("cannot create cgroups in {}: {source}", dir.display())]
    NotWritable { dir: PathBuf, source: nix::Error },
    #[error("cannot set up {}: {source}", dir.display())]
    Create { dir: PathBuf, source: io::Error },
}

/// A `limits_mode` this machine does not allow.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// `limits_mode = cgroup`, and neither hierarchy can be used.
    #[error("limits_mode = cgroup, but no usable cgroup: v2: {v2}; v1: {v1}")]
    NoCgroup { v2: Unusable, v1: Unusable },
}

/// Chooses the mode as `wanted` says and this machine allows. With `create` (the daemon), it
/// proves it can create bro's parent cgroup (`name`) where a cgroup mode is chosen, leaving
/// none (the first session needing one makes it); without (`bro doctor`), it only reads, so
/// a probe never touches cgroups a running daemon uses. A forced cgroup mode the machine
/// does not allow is an error naming why.
pub fn detect(
    sys: &Sys,
    wanted: LimitsMode,
    name: &str,
    create: bool,
) -> Result<Detected, DetectError> {
    let plain = |mode, why: String, forced| Detected {
        mode,
        why,
        forced,
        layout: None,
    };
    match wanted {
        LimitsMode::Off => return Ok(plain(Mode::Off, "limits_mode = off".into(), true)),
        LimitsMode::Measure => {
            return Ok(plain(Mode::Measure, "limits_mode = measure".into(), true));
        }
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
                forced: false,
                layout: Some(Cgroup::V2(parent)),
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
                forced: false,
                layout: Some(Cgroup::V1 { memory, cpu }),
            });
        }
        Err(why) => why,
    };
    match wanted {
        LimitsMode::Cgroup => Err(DetectError::NoCgroup { v2, v1 }),
        _ => Ok(plain(
            Mode::Measure,
            format!("no usable cgroup: v2: {v2}; v1: {v1}"),
            false,
        )),
    }
}

/// bro's v2 parent below the daemon's own cgroup. The kernel passes controllers down only
/// from a cgroup without processes of its own (the root aside), and the daemon is in its
/// own: so bro never writes that cgroup's (or the root's) `cgroup.subtree_control`, and
/// uses v2 only where the controllers are delegated to its children already (systemd's
/// `Delegate=yes`).
fn try_v2(sys: &Sys, name: &str, create: bool) -> Result<PathBuf, Unusable> {
    let all = mounts(&sys.mountinfo);
    let m = all
        .iter()
        .find(|m| m.v2)
        .ok_or(Unusable::NoMount("cgroup2"))?;
    let own = own_path(&sys.self_cgroup, "").ok_or(Unusable::NotInCgroup("cgroup v2 hierarchy"))?;
    let dir = dir_in(sys, m, &own).ok_or(Unusable::OutsideMount {
        cgroup: "cgroup",
        mount: "cgroup2 mount",
    })?;
    let has = |file: &Path, ctrl: &str| {
        std::fs::read_to_string(file).is_ok_and(|t| t.split_whitespace().any(|c| c == ctrl))
    };
    let controllers = dir.join("cgroup.controllers");
    for ctrl in ["memory", "cpu"] {
        if !has(&controllers, ctrl) {
            return Err(Unusable::NoController {
                ctrl,
                file: controllers,
            });
        }
    }
    let subtree = dir.join("cgroup.subtree_control");
    for ctrl in ["memory", "cpu"] {
        if !has(&subtree, ctrl) {
            return Err(Unusable::NotDelegated { ctrl, dir });
        }
    }
    let parent = dir.join(name);
    if create {
        Cgroup::V2(parent.clone())
            .prove()
            .map_err(|source| Unusable::Create {
                dir: parent.clone(),
                source,
            })?;
    } else {
        writable(&dir)?;
    }
    Ok(parent)
}

fn try_v1(sys: &Sys, name: &str, create: bool) -> Result<(PathBuf, PathBuf), Unusable> {
    let all = mounts(&sys.mountinfo);
    let mut dirs = Vec::new();
    for (ctrl, probe, mount, cgroup) in [
        (
            "memory",
            "memory.limit_in_bytes",
            "v1 memory",
            "v1 memory cgroup",
        ),
        ("cpu", "cpu.shares", "v1 cpu", "v1 cpu cgroup"),
    ] {
        let m = all
            .iter()
            .find(|m| !m.v2 && m.options.iter().any(|o| o == ctrl))
            .ok_or(Unusable::NoMount(mount))?;
        let own = own_path(&sys.self_cgroup, ctrl).ok_or(Unusable::NotInCgroup(cgroup))?;
        let dir = dir_in(sys, m, &own).ok_or(Unusable::OutsideMount {
            cgroup,
            mount: "mount",
        })?;
        if !dir.join(probe).exists() {
            return Err(Unusable::NoFile(dir.join(probe)));
        }
        if !create {
            writable(&dir)?;
        }
        dirs.push(dir.join(name));
    }
    let cpu = dirs.pop().unwrap_or_default();
    let memory = dirs.pop().unwrap_or_default();
    if create {
        Cgroup::V1 {
            memory: memory.clone(),
            cpu: cpu.clone(),
        }
        .prove()
        .map_err(|source| Unusable::Create {
            dir: memory.clone(),
            source,
        })?;
    }
    Ok((memory, cpu))
}

/// A cgroup dir this process may create children in (a read-only probe).
fn writable(dir: &Path) -> Result<(), Unusable> {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).map_err(|source| {
        Unusable::NotWritable {
            dir: dir.to_path_buf(),
            source,
        }
    })
}

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
