//! How busy this machine is, for work that can wait: a warm refill launches only when there
//! is CPU to spare, so that it takes as little CPU as it can from the sessions being created
//! and used (a refill that competes with them lowers sustained throughput; `bro bench`'s job
//! benchmark measured it).
//!
//! Lives in the host ([`super::LocalWorkerHost`]), so it counts the launches of the machine
//! that runs them, whichever daemon runs the Restate handler, and adds nothing to any
//! journal. Two signals: cold launches in flight on this host (a [`Launch`] guard each), and
//! the share of idle CPU time of the whole machine over a short window (`/proc/stat`).
//! Refills take turns ([`Load::refill_turn`]): one waits and launches at a time, so refills
//! that waited through a busy spell do not all launch at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One host's launches in flight and its refills' turn.
#[derive(Default)]
pub struct Load {
    launches: AtomicUsize,
    /// Warm refills launching (their turn taken): not a signal of load, but memory on its
    /// way that no free-memory reading shows yet.
    warm_launches: AtomicUsize,
    refill: tokio::sync::Mutex<()>,
}

/// Counts one cold launch in flight while it lives.
#[must_use = "the launch counts only while the guard lives"]
pub struct Launch<'a>(&'a Load);

impl Drop for Launch<'_> {
    fn drop(&mut self) {
        self.0.launches.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one warm refill launching while it lives.
#[must_use = "the launch counts only while the guard lives"]
pub struct WarmLaunch<'a>(&'a Load);

impl Drop for WarmLaunch<'_> {
    fn drop(&mut self) {
        self.0.warm_launches.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A refill's turn: the next refill waits until this one has launched (or failed).
#[must_use = "the turn lasts while the guard lives"]
pub struct RefillTurn<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

impl Load {
    /// Counts a cold launch (a create's) until the guard drops.
    pub fn launch(&self) -> Launch<'_> {
        self.launches.fetch_add(1, Ordering::Relaxed);
        Launch(self)
    }

    /// Cold launches in flight on this host.
    pub fn launches_in_flight(&self) -> usize {
        self.launches.load(Ordering::Relaxed)
    }

    /// Counts a warm refill's launch (once its turn came) until the guard drops.
    pub fn warm_launch(&self) -> WarmLaunch<'_> {
        self.warm_launches.fetch_add(1, Ordering::Relaxed);
        WarmLaunch(self)
    }

    /// Warm refills launching on this host.
    pub fn warm_launches_in_flight(&self) -> usize {
        self.warm_launches.load(Ordering::Relaxed)
    }

    /// Waits for this refill's turn, then for CPU to spare: no cold launch in flight and at
    /// least [`SPARE_IDLE`] of the CPU idle over the last sample. The spare-CPU wait ends
    /// `max` after the call (time spent waiting for the turn counts), so a machine that is
    /// never idle still refills, one refill at a time. Returns the turn (hold it through the
    /// launch) and whether spare CPU was found. Where `/proc/stat` cannot be read only the
    /// launches count.
    pub async fn refill_turn(&self, max: Duration) -> (RefillTurn<'_>, bool) {
        let end = Instant::now() + max;
        let turn = RefillTurn(self.refill.lock().await);
        let mut before = cpu_times().await;
        loop {
            tokio::time::sleep(SAMPLE).await;
            let now = cpu_times().await;
            let idle = match (before, now) {
                (Some(a), Some(b)) => idle_share(a, b),
                _ => Some(1.0),
            };
            before = now;
            if self.launches_in_flight() == 0 && idle.is_some_and(|i| i >= SPARE_IDLE) {
                return (turn, true);
            }
            if Instant::now() >= end {
                return (turn, false);
            }
        }
    }
}

/// Longest a warm refill waits for CPU to spare before it launches anyway.
pub const REFILL_WAIT: Duration = Duration::from_secs(10);

/// Share of CPU time idle (idle + iowait over all CPUs) that makes a refill welcome: a
/// quarter, half a core on 2 cores.
pub const SPARE_IDLE: f64 = 0.25;
/// How often the conditions are checked, and the window of one CPU sample.
const SAMPLE: Duration = Duration::from_millis(100);

/// CPU time the whole machine spent busy (all CPUs, everything but idle and iowait), in
/// seconds since boot: the difference of two readings is the CPU a span of time took on
/// this machine, whoever used it (`bro bench`'s job benchmark, on a machine left to it).
pub fn machine_busy_seconds() -> Option<f64> {
    /// `/proc/stat` counts in `USER_HZ`, 100 on every architecture bro runs on.
    const TICKS_PER_SECOND: f64 = 100.0;
    let line = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = line
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(7)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user, nice, system, irq, softirq: not idle or iowait, nor steal (time the hypervisor
    // gave to others, which grows with wall time, not with work).
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| v.get(i)).sum();
    Some(busy as f64 / TICKS_PER_SECOND)
}

/// (idle, total) jiffies of all CPUs, from the first line of `/proc/stat` (read off the
/// async runtime's threads).
async fn cpu_times() -> Option<(u64, u64)> {
    tokio::task::spawn_blocking(|| {
        parse_cpu_line(std::fs::read_to_string("/proc/stat").ok()?.lines().next()?)
    })
    .await
    .ok()
    .flatten()
}

/// `cpu  user nice system idle iowait irq softirq steal …` → (idle + iowait, sum of the
/// first eight; guest time is already in user).
fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    (fields.next()? == "cpu").then_some(())?;
    let v: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((idle, v.iter().sum()))
}

/// Idle share between two samples; `None` when no time passed.
fn idle_share(a: (u64, u64), b: (u64, u64)) -> Option<f64> {
    let total = b.1.checked_sub(a.1)?;
    let idle = b.0.checked_sub(a.0)?;
    (total > 0).then(|| idle as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_share_comes_from_proc_stat() {
        let a = parse_cpu_line("cpu  100 0 50 800 50 0 0 0 0 0").unwrap();
        assert_eq!(a, (850, 1000));
        let b = parse_cpu_line("cpu  400 0 150 1000 50 0 0 0 0 0").unwrap();
        assert_eq!(idle_share(a, b), Some(200.0 / 600.0));
        assert_eq!(idle_share(a, a), None);
        assert_eq!(
            idle_share(b, a),
            None,
            "a counter that went back is no sample"
        );
        assert!(parse_cpu_line("cpu0 1 2 3 4").is_none());
        assert!(parse_cpu_line("cpu  x 2 3 4").is_none());
        assert!(cpu_times().await.is_some(), "this machine has /proc/stat");
    }

    #[test]
    fn warm_launches_count_apart_from_cold_ones() {
        let load = Load::default();
        let warm = load.warm_launch();
        assert_eq!(
            (load.launches_in_flight(), load.warm_launches_in_flight()),
            (0, 1)
        );
        drop(warm);
        assert_eq!(load.warm_launches_in_flight(), 0);
    }

    #[tokio::test]
    async fn launches_in_flight_hold_a_refill_back() {
        let load = Load::default();
        let guard = load.launch();
        assert_eq!(load.launches_in_flight(), 1);
        let (_turn, spare) = load.refill_turn(Duration::from_millis(300)).await;
        assert!(!spare);
        drop(guard);
        assert_eq!(load.launches_in_flight(), 0);
    }

    #[tokio::test]
    async fn refills_take_turns() {
        let load = std::sync::Arc::new(Load::default());
        let _launch = load.launch();
        let (turn, _) = load.refill_turn(Duration::from_millis(10)).await;
        let other = {
            let load = std::sync::Arc::clone(&load);
            tokio::spawn(async move {
                let began = Instant::now();
                let _ = load.refill_turn(Duration::from_millis(10)).await;
                began.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(400)).await;
        drop(turn);
        let waited = other.await.unwrap();
        assert!(
            waited >= Duration::from_millis(400),
            "the second refill waited for the first's turn to end: {waited:?}"
        );
    }
}
