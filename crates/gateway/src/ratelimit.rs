//! Per-directory token-bucket rate limiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token buckets, one per directory.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimiter {
    /// A limiter admitting `per_second` requests per second per directory
    /// with bursts of `burst` (0: same as `per_second`); `None` when
    /// `per_second` is 0, which turns limiting off.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(if burst == 0 { per_second } else { burst }),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token from `directory_id`'s bucket, or says how long until
    /// one is available.
    pub fn acquire(&self, directory_id: &str) -> Result<(), Duration> {
        self.acquire_at(directory_id, Instant::now())
    }

    fn acquire_at(&self, directory_id: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(directory_id.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            refilled_at: now,
        });
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

/// Whole seconds for a `Retry-After` header, rounded up and at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.as_secs() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rate_is_off() {
        assert!(RateLimiter::new(0, 10).is_none());
    }

    #[test]
    fn admits_burst_then_refills() {
        let limiter = RateLimiter::new(2, 3).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.acquire_at("d", t0).is_ok());
        }
        let wait = limiter.acquire_at("d", t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
        // Another directory has its own bucket.
        assert!(limiter.acquire_at("other", t0).is_ok());
        // Half a second at 2/s refills one token.
        assert!(
            limiter
                .acquire_at("d", t0 + Duration::from_millis(500))
                .is_ok()
        );
        assert!(
            limiter
                .acquire_at("d", t0 + Duration::from_millis(500))
                .is_err()
        );
        // Idle time never fills past the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.acquire_at("d", later).is_ok());
        }
        assert!(limiter.acquire_at("d", later).is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }
}
