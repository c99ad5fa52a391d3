//! Recent token checks, keyed by the token's SHA-256 (never the token
//! itself), in two bounded maps: tokens found valid and tokens rejected.
//! Keeping them apart means a flood of random tokens only churns the
//! rejected map and can never evict a valid IdP's entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::auth::AuthedDirectory;
use crate::lru::ShardedLru;

/// The key of a token in the cache.
pub type TokenDigest = [u8; 32];

/// Rejections are cached at most this long: long enough to absorb a burst
/// of one bad token, short enough not to matter for a token just created.
const MAX_REJECTION_TTL: Duration = Duration::from_secs(2);

/// The digest a token is cached under.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// What the cache knows about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// Valid, checked less than a TTL ago.
    Fresh(Arc<AuthedDirectory>),
    /// Was valid when last checked, more than a TTL ago: ask again (it may
    /// have been revoked), but it is a known IdP's token, not a guess.
    Stale,
    /// Rejected recently.
    Rejected,
    /// Never seen, or forgotten.
    Unknown,
}

impl Cached {
    /// Whether the token was valid when last checked.
    pub fn was_valid(&self) -> bool {
        matches!(self, Self::Fresh(_) | Self::Stale)
    }
}

#[derive(Debug)]
struct Valid {
    expires_at: Instant,
    directory: Arc<AuthedDirectory>,
}

/// Token checks, valid for a TTL so that revocation takes effect within
/// seconds.
pub struct TokenCache {
    ttl: Duration,
    rejection_ttl: Duration,
    valid: ShardedLru<TokenDigest, Valid>,
    rejected: ShardedLru<TokenDigest, Instant>,
}

impl TokenCache {
    /// An empty cache whose answers live for `ttl` (zero: every request asks
    /// the directory service), holding about `capacity` valid and `capacity`
    /// rejected tokens.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            rejection_ttl: ttl.min(MAX_REJECTION_TTL),
            valid: ShardedLru::new(capacity),
            rejected: ShardedLru::new(capacity),
        }
    }

    /// What is known about `key` at `now`.
    pub fn lookup(&self, key: &TokenDigest, now: Instant) -> Cached {
        let valid = self.valid.with_shard(key, |shard| {
            shard.get(key).map(|v| {
                if v.expires_at > now {
                    Cached::Fresh(Arc::clone(&v.directory))
                } else {
                    Cached::Stale
                }
            })
        });
        if let Some(known) = valid {
            return known;
        }
        let rejected = self
            .rejected
            .with_shard(key, |shard| shard.peek(key).is_some_and(|e| *e > now));
        if rejected {
            Cached::Rejected
        } else {
            Cached::Unknown
        }
    }

    /// Records that `key` is a valid token of `directory`.
    pub fn store_valid(&self, key: TokenDigest, directory: Arc<AuthedDirectory>, now: Instant) {
        self.rejected.with_shard(&key, |shard| shard.remove(&key));
        let entry = Valid {
            expires_at: now + self.ttl,
            directory,
        };
        self.valid
            .with_shard(&key, |shard| shard.insert(key, entry));
    }

    /// Records that `key` was rejected (unknown or revoked).
    pub fn store_rejected(&self, key: TokenDigest, now: Instant) {
        self.valid.with_shard(&key, |shard| shard.remove(&key));
        if !self.rejection_ttl.is_zero() {
            let expires_at = now + self.rejection_ttl;
            self.rejected
                .with_shard(&key, |shard| shard.insert(key, expires_at));
        }
    }

    /// Valid tokens held, and the most that can be held.
    pub fn valid_entries(&self) -> (usize, usize) {
        (self.valid.len(), self.valid.capacity())
    }

    /// Rejected tokens held, and the most that can be held.
    pub fn rejected_entries(&self) -> (usize, usize) {
        (self.rejected.len(), self.rejected.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_proto::admin::DeprovisionPolicy;

    fn directory() -> Arc<AuthedDirectory> {
        Arc::new(AuthedDirectory {
            directory_id: "d".into(),
            deprovision_policy: DeprovisionPolicy::Delete,
        })
    }

    #[test]
    fn answers_expire_and_are_keyed_by_digest() {
        let cache = TokenCache::new(Duration::from_secs(5), 100);
        let now = Instant::now();
        let key = digest("secret-token");
        assert_ne!(&key[..], b"secret-token");
        cache.store_valid(key, directory(), now);
        cache.store_rejected(digest("bad"), now);
        assert_eq!(cache.lookup(&key, now), Cached::Fresh(directory()));
        assert_eq!(cache.lookup(&digest("bad"), now), Cached::Rejected);
        assert_eq!(
            cache.lookup(&key, now + Duration::from_secs(5)),
            Cached::Stale
        );
        assert_eq!(
            cache.lookup(&digest("bad"), now + MAX_REJECTION_TTL),
            Cached::Unknown
        );
        assert_eq!(cache.lookup(&digest("other"), now), Cached::Unknown);
        // A revoked token leaves the valid map.
        cache.store_rejected(key, now);
        assert_eq!(cache.lookup(&key, now), Cached::Rejected);
    }

    #[test]
    fn zero_ttl_never_answers_from_the_cache() {
        let cache = TokenCache::new(Duration::ZERO, 100);
        let now = Instant::now();
        cache.store_rejected(digest("t"), now);
        assert_eq!(cache.lookup(&digest("t"), now), Cached::Unknown);
        cache.store_valid(digest("v"), directory(), now);
        assert_eq!(cache.lookup(&digest("v"), now), Cached::Stale);
    }

    #[test]
    fn random_tokens_never_evict_valid_ones() {
        let cache = TokenCache::new(Duration::from_secs(5), 64);
        let now = Instant::now();
        let good = digest("good");
        cache.store_valid(good, directory(), now);
        for i in 0..10_000 {
            cache.store_rejected(digest(&format!("guess-{i}")), now);
        }
        assert_eq!(cache.lookup(&good, now), Cached::Fresh(directory()));
        let (held, cap) = cache.rejected_entries();
        assert!(held <= cap && cap < 128, "{held} / {cap}");
    }
}
