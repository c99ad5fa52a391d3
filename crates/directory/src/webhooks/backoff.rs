//! Retry delays: exponential with full jitter, so endpoints that failed
//! together do not retry in lockstep.

use std::time::Duration;

/// The delay before retry number `attempt` (1 after the first failure):
/// uniformly random in `[d/2, d]` where `d = base * 2^(attempt-1)`, capped
/// at `max`. Half the delay is kept so a retry is never immediate.
pub fn delay(attempt: i32, base: Duration, max: Duration, unit_random: f64) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(32);
    let full = base.saturating_mul(2u32.saturating_pow(exponent)).min(max);
    let jitter = unit_random.clamp(0.0, 1.0);
    full.mul_f64(0.5 + 0.5 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        assert_eq!(delay(1, base, max, 1.0), Duration::from_secs(1));
        assert_eq!(delay(1, base, max, 0.0), Duration::from_millis(500));
        assert_eq!(delay(4, base, max, 1.0), Duration::from_secs(8));
        assert_eq!(delay(30, base, max, 1.0), max);
        assert_eq!(delay(1_000, base, max, 0.0), max / 2);
        assert_eq!(delay(0, base, max, 1.0), base);
    }
}
