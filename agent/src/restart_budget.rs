//! A node-wide budget of restarts.
//!
//! Each instance's backoff only slows that instance: fifty crash-loopers with
//! a 10 ms backoff restarted 5,000 times a second between them, and every
//! restart cost the node an instantiation, a log file, a status report and
//! an event, taking CPU from everything else on it. The budget spaces all
//! crash restarts of a node at least `1/rate` apart (after a burst), in the
//! order they were asked for, so a crash loop's cost per second is bounded
//! however many instances take part — the rate of restarts, not their
//! number, sets the delay. First starts are not restarts and never wait.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default restarts per second, node-wide.
pub const DEFAULT_RESTARTS_PER_SECOND: u32 = 50;

/// Spaces restarts (a virtual-time queue: every reservation takes the next
/// free slot, so waiters never contend or retry).
#[derive(Debug)]
pub struct RestartBudget {
    interval: Duration,
    /// How far behind now the next slot may lag: unused capacity, up to
    /// a burst's worth, is kept.
    burst: Duration,
    next: Mutex<Option<Instant>>,
}

impl RestartBudget {
    /// At most `per_second` restarts a second (at least 1), after a burst
    /// of as many.
    pub fn new(per_second: u32) -> Self {
        let per_second = per_second.max(1);
        let interval = Duration::from_secs(1) / per_second;
        Self {
            interval,
            burst: interval * (per_second - 1),
            next: Mutex::new(None),
        }
    }

    /// How many restarts a second this budget allows.
    pub fn per_second(&self) -> u32 {
        (Duration::from_secs(1).as_nanos() / self.interval.as_nanos().max(1)) as u32
    }

    /// Takes the next restart slot at `now`; returns how long to wait for it.
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let earliest = now.checked_sub(self.burst).unwrap_or(now);
        let slot = next.map_or(earliest, |n| n.max(earliest));
        *next = Some(slot + self.interval);
        slot.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_burst_restarts_are_spaced_by_the_rate_in_order() {
        let budget = RestartBudget::new(10);
        let now = Instant::now() + Duration::from_secs(5);
        // A burst of ten goes at once…
        for _ in 0..10 {
            assert_eq!(budget.reserve(now), Duration::ZERO);
        }
        // …then each waits 100 ms more than the one before it.
        let waits: Vec<u128> = (0..3).map(|_| budget.reserve(now).as_millis()).collect();
        assert_eq!(waits, [100, 200, 300]);
        // Idle time refills the burst, but no more than one.
        let later = now + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(budget.reserve(later), Duration::ZERO);
        }
        assert_eq!(budget.reserve(later).as_millis(), 100);
        assert_eq!(budget.per_second(), 10);
    }
}
