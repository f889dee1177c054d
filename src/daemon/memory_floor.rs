//! The node's free memory floor (`--min-free-memory`): measures the memory this daemon may
//! still use and tells the node's `Pool` how many more sessions fit above the floor, so a
//! node short of memory answers creates as a full one (queue, then 429) and placement skips
//! it. Measured here, outside any handler, so the `Pool` stays deterministic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::orchestrator::ingress::Ingress;
use crate::orchestrator::pool::{MAX_SERVING, MemoryRoom};
use crate::worker::{LocalWorkerHost, limits};

/// How often free memory is measured.
pub const MEASURE_EVERY: Duration = Duration::from_secs(1);
/// The room is sent again this often even when unchanged: the `Pool` keeps it as a cap of
/// its sessions then plus the room, which goes stale as sessions end (or its state resets).
pub const RESEND_EVERY: Duration = Duration::from_secs(5);
/// After a failed send (Restate busy or down: the call may still be queued there), none is
/// sent for this long, so calls never pile up behind a slow Restate.
pub const BACKOFF: Duration = Duration::from_secs(30);
/// What one more session is expected to cost without `--max-session-memory`: an idle browser
/// takes ~150 MB (DESIGN.md), and a page more.
pub const DEFAULT_SESSION_COST: u64 = 256 << 20;

/// How many more sessions of `cost` bytes fit in `free` bytes above `floor`, less the
/// `launching` browsers whose memory `free` does not show yet (each takes one of the room the
/// `Pool` gave it, and would be counted again as room the next measurement sends).
pub fn room(free: u64, floor: u64, cost: u64, launching: usize) -> u32 {
    let above = free.saturating_sub(floor);
    let fit = u32::try_from(above / cost.max(1)).unwrap_or(u32::MAX);
    fit.saturating_sub(u32::try_from(launching).unwrap_or(u32::MAX))
}

/// What `host` takes of this machine's memory now, as the node's `Pool` reads it: the room
/// above `floor` for sessions of `cost` bytes, less the launches in flight (cold ones and
/// warm refills: their memory is not in the measurement yet), and the sessions whose
/// browsers run or launch here ([`LocalWorkerHost::serving_sessions`], sorted, so an
/// unchanged measurement compares equal). Read in that order, then free memory: a launch
/// that begins or ends between two reads is counted twice (seen and launching, or launching
/// and in the memory), never missed. `None` where free memory cannot be read.
pub fn measure(host: &LocalWorkerHost, floor: u64, cost: u64) -> Option<(MemoryRoom, u64)> {
    let mut serving = host.serving_sessions();
    serving.sort_unstable();
    serving.truncate(MAX_SERVING);
    let launching = host.launches_in_flight() + host.warm_launches_in_flight();
    let free = limits::free_memory(&limits::Sys::here())?;
    let room = room(free, floor, cost, launching);
    Some((MemoryRoom::Serving { room, serving }, free))
}

/// Measures every [`MEASURE_EVERY`] until `stop`, and sends `Pool/memory_room` when the room
/// changes (and every [`RESEND_EVERY`]).
pub async fn run(
    ingress: Ingress,
    node: String,
    floor: u64,
    cost: u64,
    host: Arc<LocalWorkerHost>,
    stop: CancellationToken,
) {
    let mut sent: Option<(MemoryRoom, Instant)> = None;
    let mut failed: Option<Instant> = None;
    loop {
        let host = Arc::clone(&host);
        let measured = tokio::task::spawn_blocking(move || measure(&host, floor, cost))
            .await
            .ok()
            .flatten();
        if let Some((now, free)) = measured {
            let stale = sent
                .as_ref()
                .is_none_or(|(last, at)| *last != now || at.elapsed() > RESEND_EVERY);
            let backing_off = failed.is_some_and(|at| at.elapsed() < BACKOFF);
            if stale && !backing_off {
                match ingress.pool_memory_room(&node, Some(now.clone())).await {
                    Ok(()) => {
                        let full =
                            |m: &MemoryRoom| matches!(m, MemoryRoom::Serving { room: 0, .. });
                        if full(&now) && sent.as_ref().is_none_or(|(last, _)| !full(last)) {
                            tracing::warn!(
                                free_bytes = free,
                                floor_bytes = floor,
                                "free memory is at the min_free_memory floor: no more creates"
                            );
                        }
                        sent = Some((now, Instant::now()));
                        failed = None;
                    }
                    Err(err) => {
                        tracing::warn!(%err, "could not send the memory room to the Pool");
                        failed = Some(Instant::now());
                    }
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(MEASURE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_counts_whole_sessions_above_the_floor() {
        let gib = 1u64 << 30;
        assert_eq!(room(4 * gib, gib, gib, 0), 3);
        assert_eq!(room(2 * gib - 1, gib, gib, 0), 0);
        assert_eq!(room(gib, 2 * gib, gib, 0), 0);
        assert_eq!(room(u64::MAX, 0, 1, 0), u32::MAX);
    }

    /// What the daemon sends names the sessions its browsers serve, cold and warm, and the
    /// Pool counts only those it holds: a warm browser no session took, or a session's dir
    /// left after its end, gives no room; a session granted but not launching takes one.
    #[tokio::test]
    async fn the_pool_counts_the_sessions_it_holds_that_the_measurement_saw() {
        if limits::free_memory(&limits::Sys::here()).is_none() {
            return; // Nothing to measure here: `measure` answers None, as it should.
        }
        use crate::orchestrator::pool::memory_cap;
        let root = tempfile::tempdir().unwrap();
        let sessions = root.path().join("sessions");
        let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
        let host = LocalWorkerHost::new(
            "/nonexistent/chromium".into(),
            Vec::new(),
            sessions.clone(),
            root.path().join("quarantine"),
            crate::config::DEFAULT_FILES_QUOTA,
            crate::worker::agent::Agents::new(
                crate::worker::recording::RecordingStore::new(root.path().join("rec"), 1, 1),
                None,
            ),
            events,
        );
        let [cold, served, granted, over, warm_claimed, warm_idle] = [
            "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a60",
            "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a61",
            "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a62",
            "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a63",
            "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a64",
            "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a65",
        ];
        let dir = |name: &str, pid_file: Option<String>| {
            let d = sessions.join(name);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(json) = pid_file {
                std::fs::write(d.join("worker.json"), json).unwrap();
            }
        };
        // A cold session's dir (its pid file not written yet), a warm browser serving a
        // session, one serving none, and the dir of a session that is over.
        dir(cold, None);
        dir(
            warm_claimed,
            Some(format!(
                r#"{{"pid":1,"start_time":1,"warm":true,"session":"{served}"}}"#
            )),
        );
        dir(
            warm_idle,
            Some(r#"{"pid":2,"start_time":2,"warm":true}"#.into()),
        );
        dir(over, None);
        let (measured, _free) = measure(&host, 0, 1 << 30).unwrap();
        let MemoryRoom::Serving { room, serving } = &measured else {
            panic!("{measured:?}");
        };
        let mut sorted = serving.clone();
        sorted.sort();
        assert_eq!(
            &sorted, serving,
            "sorted, so an unchanged measurement compares equal"
        );
        assert!(serving.iter().any(|s| s == served) && serving.iter().any(|s| s == cold));
        assert!(
            !serving.iter().any(|s| s == warm_claimed || s == warm_idle),
            "a warm browser's own id is no session's: {serving:?}"
        );
        // The Pool holds the cold one, the warm-served one and one granted since.
        let holding: Vec<String> = [cold, served, granted].map(String::from).into();
        assert_eq!(memory_cap(&measured, &holding), 2 + room);
    }

    #[test]
    fn browsers_still_launching_take_room_the_measurement_does_not_show() {
        let gib = 1u64 << 30;
        // Two granted browsers are starting: their memory is not taken yet, their room is.
        assert_eq!(room(4 * gib, gib, gib, 2), 1);
        assert_eq!(room(4 * gib, gib, gib, 5), 0);
        assert_eq!(room(4 * gib, gib, gib, usize::MAX), 0);
    }
}
