//! How far the published stable head trails the committed revisions, in
//! revisions and in time (the `roster_watch_head_lag_*` metrics).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Marks remembered at most; past this the newest mark absorbs
/// later revisions (keeping its older time: the lag is overstated, never
/// understated).
const MAX_MARKS: usize = 64;

/// Remembers when each newest committed revision was first seen, until the
/// published head passes it.
#[derive(Debug, Default)]
pub(crate) struct LagClock {
    /// `(newest committed revision, first seen)`, both ascending.
    marks: VecDeque<(i64, Instant)>,
}

impl LagClock {
    /// Records the newest committed revision and the published head seen at
    /// `now` and returns how long the oldest committed revision not yet
    /// published has been waiting (zero when everything is published).
    pub fn observe(&mut self, newest: i64, published: i64, now: Instant) -> Duration {
        while self.marks.front().is_some_and(|(a, _)| *a <= published) {
            self.marks.pop_front();
        }
        let newer = self.marks.back().is_none_or(|(a, _)| *a < newest);
        if newest > published && newer {
            let full = self.marks.len() >= MAX_MARKS;
            match self.marks.back_mut() {
                Some(back) if full => back.0 = newest,
                _ => self.marks.push_back((newest, now)),
            }
        }
        self.marks.front().map_or(Duration::ZERO, |(_, since)| {
            now.saturating_duration_since(*since)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_the_age_of_the_oldest_unpublished_revision() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = LagClock::default();
        assert_eq!(clock.observe(5, 5, t0), Duration::ZERO);
        // Revision 6 committed at t0+1, still unpublished at t0+3.
        assert_eq!(clock.observe(6, 5, t0 + s(1)), Duration::ZERO);
        assert_eq!(clock.observe(8, 5, t0 + s(3)), s(2));
        // 6 published: the oldest waiting mark is 8, seen at t0+3.
        assert_eq!(clock.observe(8, 7, t0 + s(4)), s(1));
        assert_eq!(clock.observe(8, 8, t0 + s(5)), Duration::ZERO);
    }

    #[test]
    fn a_full_clock_overstates_rather_than_forgets() {
        let t0 = Instant::now();
        let mut clock = LagClock::default();
        for i in 0..(MAX_MARKS as u64 * 2) {
            clock.observe(i as i64 + 1, 0, t0 + Duration::from_secs(i));
        }
        let last = t0 + Duration::from_secs(MAX_MARKS as u64 * 2);
        // Everything but the newest revision published: its wait counts from
        // the last mark kept, not from when it was first seen.
        let lag = clock.observe(MAX_MARKS as i64 * 2, MAX_MARKS as i64 * 2 - 1, last);
        assert!(lag >= Duration::from_secs(MAX_MARKS as u64 + 1), "{lag:?}");
    }
}
