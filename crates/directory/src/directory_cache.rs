//! A short-lived cache of directories, so a SCIM call does not pay a
//! database round trip to read its (rarely changing) directory.
//!
//! Invalidation: this process's admin writes forget the entry at once; the
//! change hub forgets entries on `directory.updated` / `directory.deleted`
//! events, which reach every replica through the change log; a TTL bounds
//! staleness if anything else goes wrong. A generation counter keeps a read
//! that raced with an invalidation from re-inserting the old value.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use roster_store::{Directory, DirectoryId};

/// How long an entry may be served without any invalidation.
const TTL: Duration = Duration::from_secs(10);

/// See the module documentation.
#[derive(Debug, Default)]
pub struct DirectoryCache {
    entries: Mutex<HashMap<DirectoryId, (Instant, Directory)>>,
    generation: AtomicU64,
}

impl DirectoryCache {
    /// The cached directory, if fresh.
    pub fn get(&self, id: DirectoryId) -> Option<Directory> {
        let entries = self.lock();
        entries
            .get(&id)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, d)| d.clone())
    }

    /// Call before reading a directory from the store; pass the result to
    /// [`DirectoryCache::insert`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches `directory` unless an invalidation happened since `generation`.
    pub fn insert(&self, directory: Directory, generation: u64) {
        let mut entries = self.lock();
        // Checked under the lock that invalidations also take.
        if self.generation.load(Ordering::Acquire) == generation {
            entries.insert(directory.id, (Instant::now(), directory));
        }
    }

    /// Drops one directory.
    pub fn forget(&self, id: DirectoryId) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(&id);
    }

    /// Drops everything (the hub lost track of events).
    pub fn clear(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DirectoryId, (Instant, Directory)>> {
        // Plain map: a panic elsewhere cannot leave it inconsistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_store::{DeprovisionPolicy, ProviderKind};

    fn directory(name: &str) -> Directory {
        Directory {
            id: DirectoryId::new(),
            name: name.into(),
            organization: String::new(),
            provider: ProviderKind::Generic,
            deprovision_policy: DeprovisionPolicy::Delete,
            attribute_mappings: vec![],
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn serves_inserted_entries_until_forgotten() {
        let cache = DirectoryCache::default();
        let d = directory("a");
        cache.insert(d.clone(), cache.generation());
        assert_eq!(cache.get(d.id), Some(d.clone()));
        cache.forget(d.id);
        assert_eq!(cache.get(d.id), None);
    }

    #[test]
    fn a_read_that_raced_with_an_invalidation_is_not_cached() {
        let cache = DirectoryCache::default();
        let d = directory("a");
        let before_read = cache.generation();
        cache.forget(d.id); // an update lands while the read is in flight
        cache.insert(d.clone(), before_read);
        assert_eq!(cache.get(d.id), None);
    }

    #[test]
    fn clear_drops_everything() {
        let cache = DirectoryCache::default();
        let d = directory("a");
        cache.insert(d.clone(), cache.generation());
        cache.clear();
        assert_eq!(cache.get(d.id), None);
    }
}
