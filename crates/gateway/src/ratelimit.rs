//! Token-bucket rate limiting: per directory after authentication, and
//! before it per client address and globally, so that unauthenticated floods
//! cannot drive the directory service and its database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use roster_telemetry::metrics::ReasonLabels;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::lru::ShardedLru;

/// A sustained rate and the burst allowed after an idle period.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    /// `per_second` with bursts of `burst` (0: same as `per_second`); `None`
    /// when `per_second` is 0, which turns the limit off.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(if burst == 0 { per_second } else { burst }),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            refilled_at: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.check(rate, now)?;
        self.tokens -= 1.0;
        Ok(())
    }

    /// Whether a token is available (without taking it), or how long until
    /// one is.
    fn check(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second,
            ))
        }
    }

    /// Takes one token if there is one (charging for something done).
    fn charge(&mut self, rate: Rate, now: Instant) {
        let _ = self.take(rate, now);
    }
}

/// Token buckets, one per directory.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter admitting `per_second` requests per second per directory
    /// with bursts of `burst` (0: same as `per_second`); `None` when
    /// `per_second` is 0, which turns limiting off.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Rate::new(per_second, burst).map(|rate| Self {
            rate,
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
        buckets
            .entry(directory_id.to_owned())
            .or_insert_with(|| Bucket::full(self.rate, now))
            .take(self.rate, now)
    }
}

/// One bucket shared by every caller (e.g. all token lookups that miss the
/// cache).
#[derive(Debug)]
pub struct GlobalLimiter {
    rate: Rate,
    bucket: Mutex<Bucket>,
}

impl GlobalLimiter {
    /// `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Rate::new(per_second, burst).map(|rate| Self {
            rate,
            bucket: Mutex::new(Bucket::full(rate, Instant::now())),
        })
    }

    /// Takes one token, or says how long until one is available.
    pub fn acquire(&self) -> Result<(), Duration> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.take(self.rate, Instant::now())
    }
}

/// Token buckets per client address, in a bounded map: an address that has
/// not been seen for a while is forgotten (its budget starts full again),
/// which only a flood from more addresses than the map holds can exploit,
/// and the global limit bounds that one.
pub struct AddressLimiter {
    rate: Rate,
    buckets: ShardedLru<IpAddr, Bucket>,
}

impl AddressLimiter {
    /// `None` when `per_second` is 0 (no limit); at most `capacity` addresses
    /// are tracked.
    pub fn new(per_second: u32, burst: u32, capacity: usize) -> Option<Self> {
        Rate::new(per_second, burst).map(|rate| Self {
            rate,
            buckets: ShardedLru::new(capacity),
        })
    }

    /// Whether `client` has budget left, or how long until it has.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        self.check_at(address_key(client), Instant::now())
    }

    /// Spends one unit of `client`'s budget.
    pub fn charge(&self, client: IpAddr) {
        self.charge_at(address_key(client), Instant::now());
    }

    fn check_at(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        let rate = self.rate;
        // An address without a bucket has its full budget: nothing to store.
        self.buckets.with_shard(&key, |shard| {
            shard.get_mut(&key).map_or(Ok(()), |b| b.check(rate, now))
        })
    }

    fn charge_at(&self, key: IpAddr, now: Instant) {
        let rate = self.rate;
        self.buckets.with_shard(&key, |shard| {
            if let Some(bucket) = shard.get_mut(&key) {
                bucket.charge(rate, now);
            } else {
                let mut bucket = Bucket::full(rate, now);
                bucket.charge(rate, now);
                shard.insert(key, bucket);
            }
        });
    }

    /// Addresses tracked now (never more than [`Self::capacity`]).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The most addresses tracked at once.
    pub fn capacity(&self) -> usize {
        self.buckets.capacity()
    }
}

/// The key of a client address: IPv6 clients usually own a whole /64, so
/// they share one budget per /64; IPv4-mapped addresses count as IPv4.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// Client addresses whose failed-authentication budgets are tracked.
const ADDRESSES_TRACKED: usize = 65_536;

/// The limits applied before a token is checked: failed authentications per
/// client address, and token lookups that miss the cache, globally.
pub struct AuthLimits {
    per_address: Option<AddressLimiter>,
    lookups: Option<GlobalLimiter>,
    lookups_made: AtomicU64,
}

impl AuthLimits {
    /// The limits of `config`.
    pub fn new(config: &GatewayConfig) -> Self {
        let lookups = config.token_lookups_per_second;
        Self {
            per_address: AddressLimiter::new(
                config.auth_failures_per_address,
                config.auth_failure_burst,
                ADDRESSES_TRACKED,
            ),
            lookups: GlobalLimiter::new(lookups, lookups.saturating_mul(2)),
            lookups_made: AtomicU64::new(0),
        }
    }

    /// Refuses `client` when it has used up its failed-authentication
    /// budget.
    pub fn check_address(&self, client: IpAddr) -> Result<(), GatewayError> {
        let Some(limiter) = &self.per_address else {
            return Ok(());
        };
        limiter
            .check(client)
            .map_err(|wait| throttled("per_address", wait))
    }

    /// Charges a failed authentication to `client`.
    pub fn charge_address(&self, client: IpAddr) {
        if let Some(limiter) = &self.per_address {
            limiter.charge(client);
        }
    }

    /// Admits one token lookup at the directory service, and counts it.
    pub fn acquire_lookup(&self) -> Result<(), GatewayError> {
        if let Some(limiter) = &self.lookups {
            limiter
                .acquire()
                .map_err(|wait| throttled("token_lookups", wait))?;
        }
        self.count_lookup();
        Ok(())
    }

    /// Counts a token lookup that no limit applies to (a known token's
    /// periodic re-check).
    pub fn count_lookup(&self) {
        self.lookups_made.fetch_add(1, Ordering::Relaxed);
    }

    /// Token lookups sent to the directory service so far.
    pub fn lookups_made(&self) -> u64 {
        self.lookups_made.load(Ordering::Relaxed)
    }

    /// The per-address limiter, when on.
    pub fn per_address(&self) -> Option<&AddressLimiter> {
        self.per_address.as_ref()
    }
}

fn throttled(limit: &str, wait: Duration) -> GatewayError {
    roster_telemetry::metrics::metrics()
        .auth_throttled
        .get_or_create(&ReasonLabels {
            reason: limit.to_owned(),
        })
        .inc();
    GatewayError::Throttled {
        retry_after_secs: retry_after_secs(wait),
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
    fn address_budgets_are_spent_by_charges_only_and_per_ipv6_prefix() {
        let limiter = AddressLimiter::new(1, 2, 100).unwrap();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..5 {
            assert!(limiter.check_at(a, t0).is_ok(), "checking is free");
        }
        assert!(limiter.is_empty(), "checks store nothing");
        limiter.charge_at(a, t0);
        assert!(limiter.check_at(a, t0).is_ok());
        limiter.charge_at(a, t0);
        let wait = limiter.check_at(a, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limiter.check_at(b, t0).is_ok());
        // One second at 1/s earns one more failure.
        assert!(limiter.check_at(a, t0 + Duration::from_secs(1)).is_ok());
        // One /64 is one client.
        let v6 = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(v6("2001:db8::1"), v6("2001:db8::ffff:1"));
        assert_ne!(v6("2001:db8::1"), v6("2001:db8:0:1::1"));
        assert_eq!(v6("::ffff:192.0.2.1"), a);
    }

    #[test]
    fn address_map_stays_bounded() {
        let limiter = AddressLimiter::new(1, 1, 64).unwrap();
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            limiter.charge_at(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(limiter.len() <= limiter.capacity());
        assert!(limiter.capacity() < 128);
    }

    #[test]
    fn global_limit_admits_its_burst() {
        assert!(GlobalLimiter::new(0, 5).is_none());
        let global = GlobalLimiter::new(1, 3).unwrap();
        let admitted = (0..10).filter(|_| global.acquire().is_ok()).count();
        // The bucket may refill a little while the loop runs; never much.
        assert!((3..=4).contains(&admitted), "{admitted}");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }
}
