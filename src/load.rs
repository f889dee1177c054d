//! How busy this machine is, for work that can wait: the warm pool refills only when there
//! is CPU to spare, so that a refill never takes CPU from the sessions being created and
//! used (a refill that competes with them lowers sustained throughput; `bro bench`'s job
//! benchmark measured it).
//!
//! Two signals: creates in flight on this daemon (a [`Create`] guard each), and the share
//! of idle CPU time of the whole machine over a short window (`/proc/stat`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static CREATES: AtomicUsize = AtomicUsize::new(0);

/// Counts one create in flight while it lives.
pub struct Create(());

impl Create {
    pub fn start() -> Create {
        CREATES.fetch_add(1, Ordering::Relaxed);
        Create(())
    }
}

impl Drop for Create {
    fn drop(&mut self) {
        CREATES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Creates in flight on this daemon.
pub fn creates_in_flight() -> usize {
    CREATES.load(Ordering::Relaxed)
}

/// Share of CPU time idle (idle + iowait over all CPUs) that makes a refill welcome: a
/// quarter, half a core on 2 cores.
pub const SPARE_IDLE: f64 = 0.25;
/// How often the conditions are checked, and the window of one CPU sample.
const SAMPLE: Duration = Duration::from_millis(250);

/// Waits until there is CPU to spare: no create in flight and at least [`SPARE_IDLE`] of
/// the CPU idle over the last sample. Gives up after `max` (true: spare CPU was found),
/// so a machine that is never idle still refills, one wait at a time. Where `/proc/stat`
/// cannot be read only the creates count.
pub async fn wait_for_spare_cpu(max: Duration) -> bool {
    let end = Instant::now() + max;
    let mut before = cpu_times();
    loop {
        tokio::time::sleep(SAMPLE).await;
        let now = cpu_times();
        let idle = match (before, now) {
            (Some(a), Some(b)) => idle_share(a, b),
            _ => Some(1.0),
        };
        before = now;
        if creates_in_flight() == 0 && idle.is_some_and(|i| i >= SPARE_IDLE) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
    }
}

/// (idle, total) jiffies of all CPUs, from the first line of `/proc/stat`.
fn cpu_times() -> Option<(u64, u64)> {
    parse_cpu_line(std::fs::read_to_string("/proc/stat").ok()?.lines().next()?)
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

    #[test]
    fn idle_share_comes_from_proc_stat() {
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
        assert!(cpu_times().is_some(), "this machine has /proc/stat");
    }

    #[tokio::test]
    async fn creates_in_flight_hold_a_refill_back() {
        let guard = Create::start();
        assert!(creates_in_flight() >= 1);
        assert!(!wait_for_spare_cpu(Duration::from_millis(300)).await);
        drop(guard);
    }
}
