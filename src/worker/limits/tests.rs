use super::cgroup::v1_shares;
use super::detect::{Mount, dir_in};
use super::*;
use crate::config::LimitsMode;

const ID: &str = "6f1c2b7e-3d4a-4e5f-8a9b-0c1d2e3f4a5b";

/// mountinfo of a hybrid machine like the CI one: v1 controllers, and a unified hierarchy
/// without any.
const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const HYBRID_SELF: &str = "\
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";

fn fake(mountinfo: &str, self_cgroup: &str) -> (tempfile::TempDir, Sys) {
    let root = tempfile::tempdir().unwrap();
    let sys = Sys {
        self_cgroup: self_cgroup.into(),
        mountinfo: mountinfo.into(),
        root: root.path().to_path_buf(),
    };
    (root, sys)
}

/// The hybrid fake machine with its v1 controllers' files, for detection to find.
fn hybrid_v1() -> (tempfile::TempDir, Sys) {
    let (root, sys) = fake(HYBRID_MOUNTS, HYBRID_SELF);
    let r = root.path();
    touch(
        r.join("sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes"),
        "1",
    );
    touch(r.join("sys/fs/cgroup/cpu/cpu.shares"), "1024");
    (root, sys)
}

fn touch(path: PathBuf, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_hybrid_machine_gets_cgroup_v1_below_its_own_cgroups() {
    let (root, sys) = fake(HYBRID_MOUNTS, HYBRID_SELF);
    let r = root.path();
    // The unified hierarchy has no controllers.
    touch(r.join("sys/fs/cgroup/unified/cgroup.controllers"), "");
    touch(
        r.join("sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes"),
        "9223372036854771712\n",
    );
    touch(r.join("sys/fs/cgroup/cpu/cpu.shares"), "1024\n");
    let d = detect(&sys, LimitsMode::Auto, "bro-1", true).unwrap();
    assert_eq!(d.mode, Mode::CgroupV1, "{}", d.why);
    assert!(d.why.contains("no memory controller"), "{}", d.why);
    // Proved creatable, but not left behind: the first cgroup a session needs makes them.
    let mem_parent = r.join("sys/fs/cgroup/memory/process_api/abc/bro-1");
    assert!(!mem_parent.exists());
    assert!(!r.join("sys/fs/cgroup/cpu/bro-1").exists());

    // A session's cgroup: its limits written, its procs files handed to the wrapper.
    let limits = Limits::new(d, Some(200 << 20), Some(50));
    let asked = SessionOptions {
        memory_limit: Some(100 << 20),
        ..Default::default()
    };
    let l = limits.of(&asked);
    assert_eq!(l.memory, Some(100 << 20));
    assert_eq!(l.cpu_share, Some(50));
    let procs = limits.prepare(ID, l, false).unwrap();
    assert_eq!(procs.len(), 2);
    assert!(mem_parent.is_dir());
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    assert_eq!(
        read(mem_parent.join(ID).join("memory.limit_in_bytes")),
        "104857600"
    );
    assert_eq!(
        read(
            r.join("sys/fs/cgroup/cpu/bro-1")
                .join(ID)
                .join("cpu.shares")
        ),
        "512"
    );

    // Swap is held to the limit too where the kernel accounts it; else swappiness 0.
    assert_eq!(read(mem_parent.join(ID).join("memory.swappiness")), "0");

    // An OOM kill in it is seen, but only one its own limit caused (a failcnt).
    assert!(!limits.over(ID, None));
    touch(
        mem_parent.join(ID).join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    );
    touch(mem_parent.join(ID).join("memory.failcnt"), "0\n");
    assert!(
        !limits.over(ID, None),
        "a global OOM kill is not the limit's"
    );
    touch(mem_parent.join(ID).join("memory.failcnt"), "12\n");
    assert!(limits.over(ID, None));

    // With swap accounting both limits are written, in an order the kernel takes.
    let memsw = mem_parent.join(ID).join("memory.memsw.limit_in_bytes");
    touch(memsw.clone(), "9223372036854771712\n");
    limits
        .apply(
            ID,
            SessionLimits {
                memory: Some(50 << 20),
                cpu_share: None,
            },
            &[],
        )
        .unwrap();
    assert_eq!(read(memsw), "52428800");
}

#[test]
fn a_delegated_unified_hierarchy_gets_cgroup_v2() {
    let mounts = "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
    let (root, sys) = fake(mounts, "0::/user.slice/bro.service\n");
    let own = root.path().join("sys/fs/cgroup/user.slice/bro.service");
    touch(
        own.join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    );
    // Delegated: the controllers already pass to its children.
    touch(own.join("cgroup.subtree_control"), "cpu memory\n");
    // A read-only probe (bro doctor) picks the mode but creates nothing.
    let probe = detect(&sys, LimitsMode::Cgroup, "bro-2", false).unwrap();
    assert_eq!(probe.mode, Mode::CgroupV2, "{}", probe.why);
    assert!(!own.join("bro-2").exists());
    let d = detect(&sys, LimitsMode::Cgroup, "bro-2", true).unwrap();
    assert_eq!(d.mode, Mode::CgroupV2, "{}", d.why);
    // Proved with the controllers passed down, then removed (a real cgroup's rmdir takes
    // its files; this fake keeps the one written).
    let left: Vec<_> = std::fs::read_dir(own.join("bro-2")).unwrap().collect();
    assert_eq!(left.len(), 1);
    std::fs::remove_file(own.join("bro-2/cgroup.subtree_control")).unwrap();
    std::fs::remove_dir(own.join("bro-2")).unwrap();
    let limits = Limits::new(d, Some(300 << 20), None);
    let l = limits.of(&SessionOptions::default());
    assert_eq!((l.memory, l.cpu_share), (Some(300 << 20), None));
    limits.prepare(ID, l, false).unwrap();
    let dir = own.join("bro-2").join(ID);
    assert_eq!(
        std::fs::read_to_string(dir.join("memory.max")).unwrap(),
        "314572800"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("cpu.weight")).unwrap(),
        "100"
    );
    assert_eq!(
        std::fs::read_to_string(own.join("bro-2/cgroup.subtree_control")).unwrap(),
        "+memory +cpu"
    );
    // A kill by the machine's OOM killer is not the session's limit.
    touch(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 3\noom 0\noom_kill 1\n",
    );
    assert!(!limits.over(ID, None));
    touch(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
    );
    assert!(limits.over(ID, None));
}

#[test]
fn no_usable_cgroup_falls_back_to_measurement_unless_forced() {
    // The unified hierarchy without controllers, and no v1 memory mount.
    let mounts = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    let (root, sys) = fake(mounts, "0::/\n");
    touch(
        root.path().join("sys/fs/cgroup/unified/cgroup.controllers"),
        "",
    );
    let d = detect(&sys, LimitsMode::Auto, "bro-3", true).unwrap();
    assert_eq!(d.mode, Mode::Measure);
    assert!(!d.forced, "picked for want of cgroups");
    assert!(d.why.contains("no v1 memory mount"), "{}", d.why);
    let err = detect(&sys, LimitsMode::Cgroup, "bro-3", true).unwrap_err();
    assert!(err.to_string().contains("limits_mode = cgroup"), "{err}");
    let DetectError::NoCgroup { v2, v1 } = err;
    assert!(
        matches!(v2, Unusable::NoController { ctrl: "memory", .. }),
        "{v2}"
    );
    assert!(matches!(v1, Unusable::NoMount("v1 memory")), "{v1}");
    assert!(detect(&sys, LimitsMode::Measure, "x", true).unwrap().forced);
    assert_eq!(
        detect(&sys, LimitsMode::Off, "x", true).unwrap().mode,
        Mode::Off
    );

    // Measurement: over when the PSS passes the limit; no CPU share.
    let limits = Limits::new(d, Some(200 << 20), Some(50));
    let l = limits.of(&SessionOptions::default());
    assert_eq!(l.cpu_share, None);
    assert!(limits.prepare(ID, l, false).unwrap().is_empty());
    assert!(!limits.over(ID, Some(100 << 10)));
    assert!(limits.over(ID, Some(201 << 10)));
}

#[test]
fn an_occupied_own_v2_cgroup_is_never_written() {
    // The daemon's own cgroup has the controllers but does not pass them down (it holds
    // processes, so the kernel would refuse with EBUSY): bro falls back, writing nothing.
    let mounts = "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
    let (root, sys) = fake(mounts, "0::/busy\n");
    let own = root.path().join("sys/fs/cgroup/busy");
    touch(own.join("cgroup.controllers"), "cpu memory\n");
    touch(own.join("cgroup.subtree_control"), "");
    let d = detect(&sys, LimitsMode::Auto, "bro-4", true).unwrap();
    assert_eq!(d.mode, Mode::Measure);
    assert!(d.why.contains("not delegated"), "{}", d.why);
    assert!(d.why.contains("Delegate=yes"), "{}", d.why);
    assert_eq!(
        std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
        ""
    );
    assert!(!own.join("bro-4").exists());
}

#[tokio::test]
async fn a_daemon_in_another_cgroup_finds_and_sweeps_the_old_ones() {
    let mounts = "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
    let (root, old_sys) = fake(mounts, "0::/term1\n");
    let r = root.path();
    for scope in ["term1", "term2"] {
        touch(
            r.join("sys/fs/cgroup")
                .join(scope)
                .join("cgroup.controllers"),
            "cpu memory\n",
        );
        touch(
            r.join("sys/fs/cgroup")
                .join(scope)
                .join("cgroup.subtree_control"),
            "cpu memory\n",
        );
    }
    let record = r.join("cgroups");
    let first = Limits::new(
        detect(&old_sys, LimitsMode::Auto, "bro-7", true).unwrap(),
        Some(1 << 30),
        None,
    );
    first.record_parents(&record).unwrap();
    let other = "0b1c2b7e-3d4a-4e5f-8a9b-0c1d2e3f4a5b";
    for id in [ID, other] {
        first
            .prepare(id, first.of(&SessionOptions::default()), false)
            .unwrap();
    }
    let pid_file = first.cgroup_dirs(ID);
    let old_dir = r.join("sys/fs/cgroup/term1/bro-7").join(ID);
    assert_eq!(pid_file, vec![old_dir.clone()]);

    // Restarted from another terminal: another cgroup, the same home.
    let new_sys = Sys {
        self_cgroup: "0::/term2\n".into(),
        mountinfo: mounts.into(),
        root: r.to_path_buf(),
    };
    let second = Limits::new(
        detect(&new_sys, LimitsMode::Auto, "bro-7", true).unwrap(),
        Some(1 << 30),
        None,
    );
    second.record_parents(&record).unwrap();
    // The adopted session is enforced in the cgroup its pid file recorded.
    let tighter = SessionLimits {
        memory: Some(100 << 20),
        cpu_share: None,
    };
    second.apply(ID, tighter, &pid_file).unwrap();
    assert_eq!(
        std::fs::read_to_string(old_dir.join("memory.max")).unwrap(),
        "104857600"
    );
    assert!(!second.measured(ID));
    touch(old_dir.join("memory.events"), "oom 1\noom_kill 1\n");
    assert!(second.over(ID, None));
    // One whose recorded cgroup is gone is measured, not unenforced.
    second
        .apply(other, tighter, &[r.join("sys/fs/cgroup/term1/bro-7/gone")])
        .unwrap();
    assert!(second.measured(other));
    // A recorded path of the wrong shape is never used.
    second
        .apply(other, tighter, &[PathBuf::from("/etc")])
        .unwrap();
    assert!(second.measured(other));

    // Released through the record; the sweep takes the old parent's leftovers, then it.
    // (A real cgroup's files go with its rmdir; these fakes' are removed first.)
    for id in [ID, other] {
        for f in std::fs::read_dir(old_dir.with_file_name(id)).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
    }
    std::fs::remove_file(r.join("sys/fs/cgroup/term1/bro-7/cgroup.subtree_control")).unwrap();
    second.release(ID, &pid_file).await.unwrap();
    assert!(!old_dir.exists());
    assert_eq!(second.sweep(|_| false), 1);
    assert!(!r.join("sys/fs/cgroup/term1/bro-7").exists());
    let recorded = std::fs::read_to_string(&record).unwrap();
    assert!(!recorded.contains("term1"), "{recorded}");
    assert!(recorded.contains("term2/bro-7"), "{recorded}");
}

#[test]
fn a_cold_browser_without_limits_gets_no_cgroup_and_a_missing_parent_comes_back() {
    let (root, sys) = hybrid_v1();
    let r = root.path();
    let d = detect(&sys, LimitsMode::Auto, "bro-8", true).unwrap();
    let limits = Limits::new(d, None, None);
    let none = SessionLimits::default();
    assert!(limits.prepare(ID, none, false).unwrap().is_empty());
    assert!(limits.cgroup_dirs(ID).is_empty());
    assert!(
        !r.join("sys/fs/cgroup/cpu/bro-8").exists(),
        "no parent either"
    );
    // A warm one does, to take a session's limits at claim; its parent is made with it.
    assert_eq!(limits.prepare(ID, none, true).unwrap().len(), 2);
    assert!(r.join("sys/fs/cgroup/cpu/bro-8").join(ID).is_dir());
}

#[tokio::test]
async fn parents_are_made_on_use_and_go_with_their_last_session() {
    let (root, sys) = hybrid_v1();
    let r = root.path();
    let parents = [
        r.join("sys/fs/cgroup/memory/process_api/abc/bro-9"),
        r.join("sys/fs/cgroup/cpu/bro-9"),
    ];
    // An earlier daemon of this home, killed with a session running, left its parents:
    // the start's proof leaves them (and the session's cgroup) alone.
    let earlier = parents[0].join(ID);
    std::fs::create_dir_all(&earlier).unwrap();
    std::fs::create_dir_all(&parents[1]).unwrap();
    let limits = Limits::new(
        detect(&sys, LimitsMode::Auto, "bro-9", true).unwrap(),
        Some(1 << 30),
        None,
    );
    assert!(earlier.is_dir());
    // The sweep removes what no session keeps, then the parents left empty.
    assert_eq!(limits.sweep(|_| false), 1);
    assert!(parents.iter().all(|p| !p.exists()));

    // Two sessions share the parents; they go with the last one's cgroup, not the first.
    let other = "0b1c2b7e-3d4a-4e5f-8a9b-0c1d2e3f4a5b";
    for id in [ID, other] {
        let l = limits.of(&SessionOptions::default());
        assert_eq!(limits.prepare(id, l, false).unwrap().len(), 2);
    }
    assert!(parents.iter().all(|p| p.is_dir()));
    // (A real cgroup's files go with its rmdir; these fakes' are removed first.)
    for id in [ID, other] {
        for dir in dirs_of(&limits, id) {
            for f in std::fs::read_dir(dir).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
    }
    limits.release(ID, &[]).await.unwrap();
    assert!(parents.iter().all(|p| p.is_dir()));
    limits.release(other, &[]).await.unwrap();
    assert!(parents.iter().all(|p| !p.exists()));
    // Made again by the next session.
    let l = limits.of(&SessionOptions::default());
    limits.prepare(ID, l, false).unwrap();
    assert!(parents[1].join(ID).is_dir());
}

/// A launch retried under the same name never reuses the cgroup of the attempt before (its
/// OOM counters would be read as the new browser's), and the background removal of that
/// cgroup stops once the name is taken again instead of removing the new one.
#[tokio::test]
async fn a_relaunch_gets_a_fresh_cgroup_that_the_earlier_removal_leaves_alone() {
    let (_root, sys) = hybrid_v1();
    let limits = Limits::new(
        detect(&sys, LimitsMode::Auto, "bro-9", true).unwrap(),
        Some(1 << 30),
        None,
    );
    let clear = |limits: &Limits| {
        for dir in dirs_of(limits, ID) {
            for f in std::fs::read_dir(dir).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
    };
    let l = limits.of(&SessionOptions::default());
    limits.prepare(ID, l, false).unwrap();
    let marker = dirs_of(&limits, ID)[0].join("from-the-first-attempt");
    touch(marker.clone(), "x");
    // The fake's files make the removal fail, as processes still leaving would: it goes on
    // in the background.
    limits.release(ID, &[]).await.unwrap();
    assert!(marker.exists());
    // Still busy: the relaunch fails (and is retried) rather than reuse it.
    assert!(limits.prepare(ID, l, false).is_err());
    // Gone busy: the relaunch removes it and makes a fresh one (the earlier dirs, held open
    // here, are unlinked).
    use std::os::unix::fs::MetadataExt;
    let earlier: Vec<std::fs::File> = dirs_of(&limits, ID)
        .iter()
        .map(|d| std::fs::File::open(d).unwrap())
        .collect();
    clear(&limits);
    limits.prepare(ID, l, false).unwrap();
    assert!(
        earlier.iter().all(|d| d.metadata().unwrap().nlink() == 0),
        "the earlier cgroup was reused"
    );
    clear(&limits);
    // The earlier removal, retrying every 20 ms, now finds the name taken and stops.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        dirs_of(&limits, ID).iter().all(|d| d.is_dir()),
        "the new browser's cgroup was removed"
    );
}

#[test]
fn names_other_than_session_ids_are_refused() {
    let (root, sys) = fake(HYBRID_MOUNTS, HYBRID_SELF);
    touch(
        root.path()
            .join("sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes"),
        "1",
    );
    touch(root.path().join("sys/fs/cgroup/cpu/cpu.shares"), "1024");
    let limits = Limits::new(
        detect(&sys, LimitsMode::Auto, "bro-5", true).unwrap(),
        None,
        None,
    );
    for bad in ["../x", "/etc", "", "a/b"] {
        assert!(
            limits.prepare(bad, SessionLimits::default(), true).is_err(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn release_and_sweep_remove_cgroups_whose_dir_is_gone() {
    let (root, sys) = hybrid_v1();
    let r = root.path();
    let limits = Limits::new(
        detect(&sys, LimitsMode::Auto, "bro-6", true).unwrap(),
        Some(1 << 30),
        None,
    );
    let other = "0b1c2b7e-3d4a-4e5f-8a9b-0c1d2e3f4a5b";
    // Plain dirs stand in for cgroups (a real cgroup dir's files go with rmdir).
    for id in [ID, other] {
        for d in dirs_of(&limits, id) {
            std::fs::create_dir_all(d).unwrap();
        }
    }
    limits.release(ID, &[]).await.unwrap();
    assert!(dirs_of(&limits, ID).iter().all(|d| !d.exists()));
    // Kept while its dir is there, removed once it is not; other names are left alone.
    let stranger = r.join("sys/fs/cgroup/cpu/bro-6/not-a-session");
    std::fs::create_dir_all(&stranger).unwrap();
    assert_eq!(limits.sweep(|id| id == other), 0);
    assert_eq!(limits.sweep(|_| false), 2);
    assert!(dirs_of(&limits, other).iter().all(|d| !d.exists()));
    assert!(stranger.exists());
}

#[tokio::test]
async fn the_sweep_leaves_a_cgroup_a_launch_of_this_daemon_took_over() {
    let (_root, sys) = hybrid_v1();
    let limits = Limits::new(
        detect(&sys, LimitsMode::Auto, "bro-7", true).unwrap(),
        Some(1 << 30),
        None,
    );
    // A retried launch after a killed daemon: its cgroup is made (and recorded) before its
    // session dir, so the sweep's own test of the dir says nothing is kept.
    let asked = SessionLimits {
        memory: Some(1 << 30),
        ..Default::default()
    };
    limits.prepare(ID, asked, false).unwrap();
    assert!(!dirs_of(&limits, ID).is_empty());
    for d in dirs_of(&limits, ID) {
        // Only the dir stays (a real cgroup's files go with its rmdir).
        for f in std::fs::read_dir(&d).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
    }
    assert_eq!(limits.sweep(|_| false), 0);
    assert!(dirs_of(&limits, ID).iter().all(|d| d.exists()));
    // Once released, nothing holds it.
    limits.release(ID, &[]).await.unwrap();
    assert!(dirs_of(&limits, ID).iter().all(|d| !d.exists()));
}

fn dirs_of(limits: &Limits, id: &str) -> Vec<PathBuf> {
    limits.current(id).map(|c| c.dirs()).unwrap_or_default()
}

#[test]
fn free_memory_is_the_lesser_of_meminfo_and_the_cgroup_room() {
    let (root, sys) = fake(HYBRID_MOUNTS, HYBRID_SELF);
    let r = root.path();
    touch(
        r.join("proc/meminfo"),
        "MemTotal:       24684084 kB\nMemFree: 1 kB\nMemAvailable:   23896828 kB\n",
    );
    assert_eq!(free_memory(&sys), Some(23896828 * 1024));
    let own = r.join("sys/fs/cgroup/memory/process_api/abc");
    touch(own.join("memory.limit_in_bytes"), "1073741824\n");
    touch(own.join("memory.usage_in_bytes"), "73741824\n");
    assert_eq!(free_memory(&sys), Some(1_000_000_000));
}

#[test]
fn limits_modes_parse() {
    assert_eq!("auto".parse::<LimitsMode>(), Ok(LimitsMode::Auto));
    assert_eq!("Measure".parse::<LimitsMode>(), Ok(LimitsMode::Measure));
    assert_eq!("cgroup".parse::<LimitsMode>(), Ok(LimitsMode::Cgroup));
    assert!("v3".parse::<LimitsMode>().is_err());
    assert_eq!(v1_shares(100), 1024);
    assert_eq!(v1_shares(1), 10);
}

#[test]
fn a_mounts_root_matches_whole_components() {
    let (_root, sys) = fake("", "");
    let m = Mount {
        v2: true,
        root: "/docker/abc".into(),
        point: "/sys/fs/cgroup".into(),
        options: Vec::new(),
    };
    assert!(dir_in(&sys, &m, "/docker/abcdef").is_none());
    let inside = dir_in(&sys, &m, "/docker/abc/bro").unwrap();
    assert!(
        inside.ends_with("sys/fs/cgroup/bro"),
        "{}",
        inside.display()
    );
}
