//! The daemon as a library: `bro::daemon::run_until` inside the test process, on a temp home,
//! with settings built here; a session through the Unix socket; a shutdown that leaves nothing.

use std::time::Duration;

use bro::client::DaemonClient;
use bro::config::Config;
use bro::paths::Paths;
use bro::protocol::session::SessionStatus;
use bro::protocol::steel::CreateSessionRequest;
use bro::settings::{Overrides, Settings};
use tokio_util::sync::CancellationToken;

use crate::helper::{TIMEOUT, check_prerequisites, chromium_path, leftovers, restate_server_path};

/// Polls the daemon's socket until it answers, or `TIMEOUT` passes.
async fn ready(client: &DaemonClient) -> bool {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if client.status().await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// One in-process daemon from start to shutdown; returns the session it created.
async fn one_daemon(paths: &Paths, settings: &Settings) -> String {
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(bro::daemon::run_until(
        paths.clone(),
        settings.clone(),
        stop.clone(),
    ));
    let client = DaemonClient::new(paths.socket());
    assert!(ready(&client).await, "the in-process daemon did not start");
    let status = client.status().await.unwrap();
    assert_eq!(status.pid, std::process::id(), "not this process's daemon");

    let created = client
        .create_session(&CreateSessionRequest::default(), false)
        .await
        .unwrap();
    assert_eq!(created.status, SessionStatus::Live, "{created:?}");
    assert!(paths.sessions_dir().join(&created.id).exists());
    let released = client.release_session(&created.id).await.unwrap();
    assert!(released.success, "{released:?}");

    client.shutdown(false).await.unwrap();
    tokio::time::timeout(TIMEOUT * 2, daemon)
        .await
        .expect("run_until did not return after the shutdown request")
        .expect("the daemon task panicked")
        .expect("the daemon failed");
    assert!(
        stop.is_cancelled(),
        "a shutdown request cancels the caller's token too"
    );
    created.id
}

/// Kills, when dropped, every process whose command line or environment names the home.
struct KillLeftovers<'a>(&'a std::path::Path);

impl Drop for KillLeftovers<'_> {
    fn drop(&mut self) {
        for pid in leftovers(self.0) {
            crate::helper::kill(pid, "KILL");
        }
    }
}

/// Runs twice in one process on one home: nothing the first run leaves (a signal handler, a
/// lock, a task) stops the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_in_process_twice_and_leaves_nothing() {
    check_prerequisites();
    let home = tempfile::Builder::new()
        .prefix("bro-it-")
        .tempdir()
        .unwrap();
    // A failed assert must not leak: what is left of this home is killed, by pid, before
    // the home goes.
    let _guard = KillLeftovers(home.path());
    let paths = Paths::under(home.path().to_path_buf());
    let over = Overrides {
        port: Some(0),
        chromium: Some(chromium_path()),
        restate_server: Some(restate_server_path()),
        ..Default::default()
    };
    let settings = Settings::merge(over, Config::default()).unwrap();

    for _ in 0..2 {
        let id = one_daemon(&paths, &settings).await;
        let gone = crate::helper::wait_for(|| leftovers(home.path()).is_empty());
        assert!(gone, "processes left behind: {:?}", leftovers(home.path()));
        assert!(!paths.sessions_dir().join(&id).exists(), "session dir left");
        let dirs = std::fs::read_dir(paths.sessions_dir())
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(dirs, 0, "session dirs left behind");
        assert!(!paths.socket().exists(), "socket left behind");
    }
}
