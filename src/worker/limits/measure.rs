//! When measurement mode reads memory: every browser group's resident memory comes from a
//! walk of `/proc`, so while every group is far below its limit the walks space out
//! (doubling, up to [`SLOWEST`]); one near its limit, or a change in the groups measured,
//! brings them back to every check.

use std::time::{Duration, Instant};

/// The gap between walks while a group is near its limit: the supervisor's check period.
pub const FASTEST: Duration = Duration::from_millis(500);
/// The longest gap: how late a browser that grew past its limit may be seen.
pub const SLOWEST: Duration = Duration::from_secs(1);
/// Near its limit: resident memory at this many thousandths of it or more.
pub const NEAR_PERMILLE: u64 = 500;

/// The next walk of `/proc`, and the gap after the last one.
#[derive(Debug, Default)]
pub struct Schedule {
    next: Option<Instant>,
    gap: Duration,
    /// The groups (process group ids, sorted) the last walk measured.
    groups: Vec<u32>,
}

impl Schedule {
    /// True when `groups` (sorted) are to be measured at `now`: the gap is over, or they are
    /// not the groups the last walk measured (a browser started or ended).
    pub fn due(&self, now: Instant, groups: &[u32]) -> bool {
        self.groups != groups || self.next.is_none_or(|next| now >= next)
    }

    /// Records a walk at `now` of `groups` (sorted), the nearest of which was at `permille`
    /// thousandths of its limit.
    pub fn walked(&mut self, now: Instant, groups: Vec<u32>, permille: u64) {
        self.gap = if permille >= NEAR_PERMILLE {
            FASTEST
        } else {
            (self.gap * 2).clamp(FASTEST, SLOWEST)
        };
        self.next = Some(now + self.gap);
        self.groups = groups;
    }
}

/// Thousandths of `limit` bytes that `kib` KiB are.
pub fn permille(kib: u64, limit: u64) -> u64 {
    let bytes = u128::from(kib) * 1024 * 1000;
    u64::try_from(bytes / u128::from(limit.max(1))).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_space_out_while_far_below_and_come_back_when_near() {
        let t0 = Instant::now();
        let groups = vec![10, 20];
        let mut s = Schedule::default();
        assert!(s.due(t0, &groups), "the first walk is due at once");
        // Far below: 0.5 s, then 1 s and no longer (a page can grow fast).
        let mut now = t0;
        for gap in [500, 1000, 1000] {
            s.walked(now, groups.clone(), 100);
            assert!(
                !s.due(now + Duration::from_millis(gap - 1), &groups),
                "{gap}"
            );
            now += Duration::from_millis(gap);
            assert!(s.due(now, &groups), "{gap}");
        }
        // A new browser is measured at once.
        assert!(s.due(now - Duration::from_millis(1), &[10, 20, 30]));
        // Near its limit: every check again.
        s.walked(now, groups.clone(), 600);
        assert!(s.due(now + FASTEST, &groups));
        assert!(!s.due(now + FASTEST / 2, &groups));
    }

    #[test]
    fn permille_of_a_limit() {
        assert_eq!(permille(512 << 10, 1 << 30), 500);
        assert_eq!(permille(0, 1 << 30), 0);
        assert_eq!(permille(u64::MAX, 0), u64::MAX);
    }
}
