//! Every path bro reads or writes. With `BRO_HOME` set, all of them live under that one
//! directory (each test uses its own); otherwise they come from `directories` (XDG on Linux).

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// rrweb's browser bundle (the recorder; global `rrweb`), below [`Paths::rrweb_dir`].
pub const RRWEB_RECORD_JS: &str = "node_modules/rrweb/dist/rrweb.umd.min.cjs";
/// rrweb-player's browser bundle (global `rrwebPlayer`) and its stylesheet.
pub const RRWEB_PLAYER_JS: &str = "node_modules/rrweb-player/dist/rrweb-player.umd.min.cjs";
pub const RRWEB_PLAYER_CSS: &str = "node_modules/rrweb-player/dist/style.min.css";

/// The directories and files of one bro installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `BRO_HOME`, when set.
    pub home: Option<PathBuf>,
    /// Restate data, session profiles, the installed restate-server.
    pub data_dir: PathBuf,
    /// Socket, lock and pid files (0700).
    pub runtime_dir: PathBuf,
    /// Logs.
    pub state_dir: PathBuf,
    /// `config.toml`.
    pub config_dir: PathBuf,
}

impl Paths {
    /// Resolves the paths from `BRO_HOME`, else from the platform's directories.
    pub fn from_env() -> io::Result<Self> {
        match std::env::var_os("BRO_HOME").filter(|v| !v.is_empty()) {
            Some(home) => Ok(Self::under(std::path::absolute(PathBuf::from(home))?)),
            None => {
                let dirs = project_dirs()?;
                let runtime = dirs
                    .runtime_dir()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dirs.data_local_dir().join("run"));
                Ok(Paths {
                    home: None,
                    data_dir: dirs.data_local_dir().to_path_buf(),
                    runtime_dir: runtime,
                    state_dir: dirs
                        .state_dir()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| dirs.data_local_dir().join("state")),
                    config_dir: dirs.config_dir().to_path_buf(),
                })
            }
        }
    }

    /// All paths under one directory, as `BRO_HOME` gives.
    pub fn under(home: PathBuf) -> Self {
        Paths {
            data_dir: home.join("data"),
            runtime_dir: home.join("run"),
            state_dir: home.join("state"),
            config_dir: home.join("config"),
            home: Some(home),
        }
    }

    /// What to call this bro home in messages: `BRO_HOME`, or the data dir.
    pub fn display_home(&self) -> String {
        self.home
            .as_ref()
            .unwrap_or(&self.data_dir)
            .display()
            .to_string()
    }

    /// The control socket of the daemon.
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join("bro.sock")
    }

    /// Held (flock) by the running daemon for its whole life.
    pub fn daemon_lock(&self) -> PathBuf {
        self.runtime_dir.join("daemon.lock")
    }

    /// Held by a CLI while it starts a daemon, so two CLIs never start two.
    pub fn start_lock(&self) -> PathBuf {
        self.runtime_dir.join("start.lock")
    }

    /// JSON with the running daemon's pid and addresses.
    pub fn daemon_info(&self) -> PathBuf {
        self.runtime_dir.join("daemon.json")
    }

    /// The parent cgroups every daemon of this home made (one a line), so a daemon started
    /// in another cgroup still sweeps them.
    pub fn cgroup_record(&self) -> PathBuf {
        self.data_dir.join("cgroups")
    }

    /// One directory per session: `profile/`, `tmp/`, `home/`, `worker.json`.
    pub fn sessions_dir(&self) -> PathBuf {
        self.data_dir.join("sessions")
    }

    /// Sessions' recordings (rrweb events, `<session id>.ndjson`, 0600 in this 0700 dir),
    /// kept after their session for the retention period.
    pub fn recordings_dir(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    /// Session dirs the reaper moved aside instead of deleting, for lack of evidence that
    /// their session is over (0700; `bro doctor` lists them).
    pub fn quarantine_dir(&self) -> PathBuf {
        self.data_dir.join("quarantine")
    }

    /// Screenshots and PDFs handed out by URL (0700; see `crate::artifacts`).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }

    /// restate-server's base dir, config and port file.
    pub fn restate_dir(&self) -> PathBuf {
        self.data_dir.join("restate")
    }

    /// The daemon's log when it runs in the background.
    pub fn daemon_log(&self) -> PathBuf {
        self.state_dir.join("daemon.log")
    }

    /// restate-server's stdout and stderr.
    pub fn restate_log(&self) -> PathBuf {
        self.state_dir.join("restate-server.log")
    }

    /// Where `install.sh` puts restate-server: bro's data dir without `BRO_HOME`, so an
    /// install serves every `BRO_HOME` of the user as well.
    pub fn restate_install_candidates(&self) -> Vec<PathBuf> {
        const BIN: &str =
            "restate-server/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server";
        let mut out = vec![self.data_dir.join(BIN)];
        if let Ok(dirs) = project_dirs() {
            let default = dirs.data_local_dir().join(BIN);
            if !out.contains(&default) {
                out.push(default);
            }
        }
        out
    }

    /// Where `install.sh` puts rrweb and rrweb-player (pinned, from npm), first match wins:
    /// bro's data dir, then the default one (as for restate-server). The files bro serves are
    /// [`RRWEB_RECORD_JS`], [`RRWEB_PLAYER_JS`] and [`RRWEB_PLAYER_CSS`] below it.
    pub fn rrweb_install_candidates(&self) -> Vec<PathBuf> {
        let mut out = vec![self.data_dir.join("rrweb")];
        if let Ok(dirs) = project_dirs() {
            let default = dirs.data_local_dir().join("rrweb");
            if !out.contains(&default) {
                out.push(default);
            }
        }
        out
    }

    /// Where `install.sh` puts playwright-core (pinned, from npm; `bro bench` drives its job
    /// benchmark with it), first match wins: bro's data dir, then the default one. Each is
    /// the package's own dir.
    pub fn playwright_install_candidates(&self) -> Vec<PathBuf> {
        const PKG: &str = "playwright/node_modules/playwright-core";
        let mut out = vec![self.data_dir.join(PKG)];
        if let Ok(dirs) = project_dirs() {
            let default = dirs.data_local_dir().join(PKG);
            if !out.contains(&default) {
                out.push(default);
            }
        }
        out
    }

    /// The first of [`rrweb_install_candidates`](Self::rrweb_install_candidates) that holds
    /// every file bro serves from it.
    pub fn rrweb_dir(&self) -> Option<PathBuf> {
        self.rrweb_install_candidates().into_iter().find(|dir| {
            [RRWEB_RECORD_JS, RRWEB_PLAYER_JS, RRWEB_PLAYER_CSS]
                .iter()
                .all(|f| dir.join(f).is_file())
        })
    }

    /// Creates the directories bro writes to. The data dir (Restate's store with proxy
    /// passwords and cookies, the session profiles, bro's key), the state dir (logs name
    /// sessions and pages) and the runtime dir (the control socket) are 0700 whatever the
    /// umask; an existing one is tightened.
    pub fn create_all(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.config_dir)?;
        for dir in [&self.data_dir, &self.state_dir, &self.runtime_dir] {
            create_private_dir(dir)?;
        }
        create_private_dir(&self.restate_dir())?;
        create_private_dir(&self.sessions_dir())
    }
}

/// Rotates a log that outgrew `max_bytes`: `log` → `log.1` → … → `log.{keep}` (dropped).
pub fn rotate_log(log: &Path, max_bytes: u64, keep: u32) {
    if std::fs::metadata(log).map(|m| m.len()).unwrap_or(0) <= max_bytes {
        return;
    }
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    for n in (1..keep).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    let _ = std::fs::rename(log, numbered(1));
}

/// Logs are rotated past this size, keeping this many old ones.
pub const LOG_MAX_BYTES: u64 = 10 << 20;
pub const LOG_KEEP: u32 = 3;

/// A stable 64-bit FNV-1a hash of a path, for short unique names derived from it.
pub fn path_hash(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf29ce484222325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        })
}

/// Creates `dir` (and parents) and makes it 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` into the new file `path` (it must not exist), readable by its owner only
/// from the first byte, and syncs it.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Replaces `path` with `bytes`, readable by its owner only, whole or not at all: written
/// into a temp file beside it (see [`write_new_private`]), then renamed over it.
pub fn replace_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".new-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let written = write_new_private(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn project_dirs() -> io::Result<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "bro").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no home directory found; set BRO_HOME",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bro_home_puts_everything_under_one_dir() {
        let p = Paths::under(PathBuf::from("/tmp/x"));
        for path in [
            p.socket(),
            p.daemon_log(),
            p.sessions_dir(),
            p.restate_dir(),
        ] {
            assert!(path.starts_with("/tmp/x"), "{path:?}");
        }
        assert_eq!(p.socket(), PathBuf::from("/tmp/x/run/bro.sock"));
    }

    #[test]
    fn logs_rotate_past_their_size() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("daemon.log");
        for round in 0..4 {
            std::fs::write(&log, format!("round {round} {}", "x".repeat(20))).unwrap();
            rotate_log(&log, 10, 2);
        }
        assert!(!log.exists());
        assert!(
            std::fs::read_to_string(tmp.path().join("daemon.log.1"))
                .unwrap()
                .starts_with("round 3")
        );
        assert!(
            std::fs::read_to_string(tmp.path().join("daemon.log.2"))
                .unwrap()
                .starts_with("round 2")
        );
        assert!(!tmp.path().join("daemon.log.3").exists());
    }

    #[test]
    fn private_dirs_are_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
