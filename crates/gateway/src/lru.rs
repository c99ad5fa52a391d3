//! A bounded map with least-recently-used eviction, split into shards so
//! that concurrent requests rarely wait on one another's lock. Every
//! operation is O(1): a full cache evicts one entry, never scans.

use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};

use hashlink::LruCache;

/// Shards per map: enough that a few hundred concurrent requests spread out.
const SHARDS: usize = 16;

/// A sharded LRU map holding at most about `capacity` entries.
pub struct ShardedLru<K, V> {
    shards: Box<[Mutex<LruCache<K, V>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl<K: Hash + Eq, V> ShardedLru<K, V> {
    /// An empty map; `capacity` is rounded up to a multiple of the shard count
    /// (at least one entry per shard).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
            hasher: Default::default(),
        }
    }

    /// The most entries the map can hold.
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(|s| lock(s).capacity()).sum()
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on the shard of `key` (locked for the duration of `f`).
    pub fn with_shard<R>(&self, key: &K, f: impl FnOnce(&mut LruCache<K, V>) -> R) -> R {
        let index = (self.hasher.hash_one(key) as usize) % self.shards.len();
        f(&mut lock(&self.shards[index]))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard leaves a valid map behind.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_capacity() {
        let map = ShardedLru::new(100);
        let cap = map.capacity();
        assert!((100..100 + SHARDS).contains(&cap), "{cap}");
        for i in 0..10_000u32 {
            map.with_shard(&i, |s| s.insert(i, ()));
            assert!(map.len() <= cap);
        }
        assert!(map.len() >= cap / 2, "eviction removed too much");
        // The most recent entry survives.
        assert!(map.with_shard(&9_999, |s| s.get(&9_999).is_some()));
    }
}
