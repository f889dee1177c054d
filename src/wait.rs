//! Bounded polling: one helper for every "try, sleep, try again until a deadline" loop, so
//! each loop states its total bound and its interval instead of a magic count. Depends on
//! tokio only; any layer may use it.

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::time::Instant;

/// A bounded poll: a deadline and the interval between tries. [`wait_until`] runs one;
/// a loop that must hold `&mut` state across its tries (a child to `try_wait`) drives one
/// itself with [`Poll::again`].
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    deadline: Instant,
    every: Duration,
}

impl Poll {
    /// A poll that ends `limit` from now and tries every `every`.
    pub fn new(limit: Duration, every: Duration) -> Poll {
        Poll {
            deadline: Instant::now() + limit,
            every,
        }
    }

    /// Sleeps until the next try and returns true, or returns false at once when the
    /// deadline has passed. A bound of `N × every` so tries about `N + 1` times.
    pub async fn again(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.every).await;
        true
    }
}

/// Runs `step` every `every` until it breaks or `limit` has passed since the first try.
///
/// `Break(done)` ends the wait at once (success, or a failure not worth waiting out);
/// `Continue(last)` means "not yet", and the last one is returned when the time is up. The
/// step runs at least once.
pub async fn wait_until<B, C, F, Fut>(
    limit: Duration,
    every: Duration,
    mut step: F,
) -> ControlFlow<B, C>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ControlFlow<B, C>>,
{
    let poll = Poll::new(limit, every);
    loop {
        let now = step().await;
        if now.is_break() || !poll.again().await {
            return now;
        }
    }
}

/// [`wait_until`] for a plain condition: true once `done` holds, false when `limit` passed
/// first.
pub async fn wait_for(limit: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let poll = Poll::new(limit, every);
    loop {
        if done() {
            return true;
        }
        if !poll.again().await {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn stops_at_the_first_break_with_its_value() {
        let tries = &AtomicU32::new(0);
        let got = wait_until(
            Duration::from_secs(10),
            Duration::from_millis(1),
            || async move {
                match tries.fetch_add(1, Ordering::Relaxed) + 1 {
                    3 => ControlFlow::Break(3),
                    _ => ControlFlow::Continue(()),
                }
            },
        )
        .await;
        assert_eq!(got, ControlFlow::Break(3));
    }

    #[tokio::test]
    async fn gives_the_last_value_when_time_is_up() {
        let started = Instant::now();
        let tries = &AtomicU32::new(0);
        let every = Duration::from_millis(10);
        let got = wait_until(Duration::from_millis(100), every, || async move {
            ControlFlow::<(), u32>::Continue(tries.fetch_add(1, Ordering::Relaxed) + 1)
        })
        .await;
        // The first try, then at most one per interval.
        assert!(
            matches!(got, ControlFlow::Continue(n) if (2..=11).contains(&n)),
            "{got:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_condition_is_true_or_false() {
        let mut n = 0;
        let every = Duration::from_millis(1);
        assert!(
            wait_for(Duration::from_secs(10), every, || {
                n += 1;
                n > 5
            })
            .await
        );
        assert!(!wait_for(Duration::from_millis(50), every, || false).await);
    }
}
