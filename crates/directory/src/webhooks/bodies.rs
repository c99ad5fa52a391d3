//! Each event's body, encoded once for all the endpoints of this replica:
//! endpoints of one directory send the same bytes (only the signature is
//! theirs), and converting a change to JSON costs more than signing it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prost::bytes::Bytes;
use roster_store::ChangeRecord;

use super::payload;

/// Bodies kept: enough for every endpoint within a few pages of the
/// newest one to find its events here; one further behind encodes its own.
const KEPT: usize = 4096;

pub(super) struct Bodies {
    max_bytes: usize,
    /// By (epoch, revision): the oldest go first.
    recent: Mutex<BTreeMap<(i64, i64), Bytes>>,
}

impl Bodies {
    pub(super) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            recent: Mutex::new(BTreeMap::new()),
        }
    }

    /// The body of `record` in the log of `epoch`.
    pub(super) fn of(&self, record: &ChangeRecord, epoch: i64) -> Bytes {
        let key = (epoch, record.revision);
        if let Some(body) = self.lock().get(&key) {
            return body.clone();
        }
        // Encoded outside the lock; two endpoints missing at once both
        // encode, and the bytes are the same.
        let body = Bytes::from(payload::body(record, epoch, self.max_bytes));
        let mut recent = self.lock();
        recent.insert(key, body.clone());
        while recent.len() > KEPT {
            recent.pop_first();
        }
        body
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(i64, i64), Bytes>> {
        // A map of immutable bytes: a panic elsewhere cannot leave it
        // inconsistent.
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }
}
