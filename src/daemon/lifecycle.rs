//! One daemon per bro home: the lock held for the daemon's life, the `daemon.json` it
//! publishes, the signals that stop it.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::paths::Paths;

/// What a running daemon publishes in `daemon.json` for CLIs and for the next daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub api_url: String,
    pub socket: String,
}

/// Why the daemon cannot take the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "a bro daemon is already running for {home} (pid {pid}, socket {socket}); stop it with `bro daemon stop`"
    )]
    AlreadyRunning {
        home: String,
        pid: String,
        socket: String,
    },
    #[error("cannot open {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Holds the daemon lock until dropped (the kernel drops it when the process dies).
pub struct DaemonLock {
    _lock: Flock<File>,
}

/// Takes the daemon lock of `paths`, or says which daemon holds it.
pub fn lock(paths: &Paths) -> Result<DaemonLock, LockError> {
    let path = paths.daemon_lock();
    let file = open_lock_file(&path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(DaemonLock { _lock: lock }),
        Err(_) => {
            let info = read_info(paths);
            Err(LockError::AlreadyRunning {
                home: paths.display_home(),
                pid: info
                    .as_ref()
                    .map_or("unknown".into(), |i| i.pid.to_string()),
                socket: info.map_or_else(|| paths.socket().display().to_string(), |i| i.socket),
            })
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File, LockError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| LockError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// The published info of the daemon, if any.
pub fn read_info(paths: &Paths) -> Option<DaemonInfo> {
    serde_json::from_slice(&std::fs::read(paths.daemon_info()).ok()?).ok()
}

/// Publishes `info` (atomically: write, then rename).
pub fn write_info(paths: &Paths, info: &DaemonInfo) -> std::io::Result<()> {
    let tmp = paths.daemon_info().with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(info).unwrap_or_default())?;
    std::fs::rename(tmp, paths.daemon_info())
}

/// Cancels `token` on SIGTERM or SIGINT; SIGHUP is ignored so a closed terminal does not
/// stop a daemon started from it. The listening task ends once `token` is cancelled, however.
pub fn on_signals(token: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => continue,
                () = token.cancelled() => return,
            }
        }
        tracing::info!("signal received; shutting down");
        token.cancel();
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_daemon() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::under(tmp.path().to_path_buf());
        paths.create_all().unwrap();
        let _held = lock(&paths).unwrap();
        let info = DaemonInfo {
            pid: 4242,
            api_url: "http://x".into(),
            socket: "/s.sock".into(),
        };
        write_info(&paths, &info).unwrap();
        let err = lock(&paths).err().unwrap().to_string();
        assert!(err.contains("pid 4242") && err.contains("/s.sock"), "{err}");
    }
}
