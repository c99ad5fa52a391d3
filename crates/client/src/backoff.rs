//! Exponential backoff with full jitter between reconnects.

use std::time::Duration;

use rand::Rng;

/// Delays between reconnect attempts: the ceiling doubles from `initial` up
/// to `max`, and each delay is drawn uniformly below the ceiling ("full
/// jitter"), so replicas restarted together do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    ceiling: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            ceiling: initial,
        }
    }

    /// The next delay, at least `floor` (the server's retry pushback).
    pub fn next_delay(&mut self, floor: Duration) -> Duration {
        let ceiling = self.ceiling.max(Duration::from_millis(1));
        let jittered = rand::rng().random_range(Duration::ZERO..=ceiling);
        self.ceiling = (self.ceiling * 2).min(self.max);
        jittered.max(floor)
    }

    /// After a stream delivered something: start again from `initial`.
    pub fn reset(&mut self) {
        self.ceiling = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_below_a_doubling_ceiling_capped_at_max_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(40));
        for ceiling in [10, 20, 40, 40, 40] {
            assert!(b.next_delay(Duration::ZERO) <= Duration::from_millis(ceiling));
        }
        assert_eq!(b.ceiling, Duration::from_millis(40));
        b.reset();
        assert_eq!(b.ceiling, Duration::from_millis(10));
        let floor = Duration::from_secs(2);
        assert!(b.next_delay(floor) >= floor);
    }
}
