//! The change log as the endpoints of this replica read it: one read per
//! page for all the endpoints of a directory, whatever their kinds, each
//! endpoint taking from it what its filter wants. Endpoints that keep up
//! sit at nearly the same cursor, so ten endpoints of a directory cost one
//! query per page, not ten: a read is made by one endpoint at a time, and
//! the others that missed meanwhile take its range.
//!
//! With the range, the read takes the endpoints' generations as stored
//! after it: an admin's change (a rotation, an edit, a replay) committed
//! before any change of the range is seen there, so an endpoint learns of
//! it before it sends such a change — one read for all the endpoints
//! instead of one per endpoint and page.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use prost::bytes::Bytes;
use roster_store::{ChangeFilter, ChangeRecord, DirectoryId, Store, StoreResult, WebhookId};

use super::payload;

/// Changes read per query: a page of every endpoint's (their filters may
/// each want only part of it).
const READ: i64 = 256;
/// Ranges kept, newest last: enough for the endpoints of a few busy
/// directories; an endpoint further behind reads its own.
const KEPT: usize = 32;

/// Every change of `directory` (or of all, for `None`) in `(after, up_to]`
/// of the log of `epoch`.
struct Segment {
    epoch: i64,
    directory: Option<DirectoryId>,
    after: i64,
    up_to: i64,
    records: Vec<ChangeRecord>,
    /// Each record's request body, encoded by the first endpoint that sends
    /// it: endpoints of a directory send the same bytes (only the signature
    /// is theirs), and encoding a change costs more than signing it.
    /// Endpoints that keep up reach an event together; one encodes, the
    /// others wait the few microseconds instead of encoding it again.
    bodies: Vec<OnceLock<Bytes>>,
    /// The generation of every endpoint of the directory, read after the
    /// records.
    generations: HashMap<WebhookId, i64>,
}

impl Segment {
    fn new(
        (epoch, directory): (i64, Option<DirectoryId>),
        (after, up_to): (i64, i64),
        records: Vec<ChangeRecord>,
        generations: HashMap<WebhookId, i64>,
    ) -> Self {
        Self {
            epoch,
            directory,
            after,
            up_to,
            bodies: records.iter().map(|_| OnceLock::new()).collect(),
            records,
            generations,
        }
    }
}

/// What one endpoint reads: the changes it wants after its cursor, and how
/// far the log is covered by them (past the last change when the rest up
/// to there is unwanted).
pub(super) struct Page {
    segment: Arc<Segment>,
    picked: Vec<usize>,
    pub(super) covered: i64,
}

impl Page {
    pub(super) fn records(&self) -> impl Iterator<Item = &ChangeRecord> {
        self.picked.iter().map(|&i| &self.segment.records[i])
    }

    /// The picked changes with the body each is sent as (at most
    /// `max_bytes`, see [`payload::body`]).
    pub(super) fn deliveries(
        &self,
        max_bytes: usize,
    ) -> impl Iterator<Item = (&ChangeRecord, Bytes)> {
        let segment = &self.segment;
        self.picked.iter().map(move |&i| {
            let record = &segment.records[i];
            let body = segment.bodies[i]
                .get_or_init(|| Bytes::from(payload::body(record, segment.epoch, max_bytes)));
            (record, body.clone())
        })
    }

    pub(super) fn first(&self) -> Option<&ChangeRecord> {
        self.records().next()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.picked.is_empty()
    }

    /// The endpoint's generation as stored after the page's changes were
    /// committed (`None`: it did not exist then, or was deleted).
    pub(super) fn generation_of(&self, id: WebhookId) -> Option<i64> {
        self.segment.generations.get(&id).copied()
    }
}

#[derive(Default)]
pub(super) struct Pages {
    recent: Mutex<VecDeque<Arc<Segment>>>,
    /// Held while a range is read, so that the endpoints missing the same
    /// range at once read it once.
    loading: tokio::sync::Mutex<()>,
}

impl Pages {
    /// At most `limit` changes passing `filter` with `after < revision <=
    /// head` (`head` a published, stable head), from a range already read
    /// for any endpoint of the directory, or read now for all of them.
    pub(super) async fn read(
        &self,
        store: &dyn Store,
        (epoch, filter): (i64, &ChangeFilter),
        after: i64,
        head: i64,
        limit: usize,
    ) -> StoreResult<Page> {
        let directory = filter.directory_id;
        let segment = match self.find(epoch, directory, after) {
            Some(found) => found,
            None => {
                let _loading = self.loading.lock().await;
                match self.find(epoch, directory, after) {
                    Some(found) => found,
                    None => self.load(store, (epoch, directory), after, head).await?,
                }
            }
        };
        Ok(pick(segment, filter, after, limit.max(1)))
    }

    fn find(&self, epoch: i64, directory: Option<DirectoryId>, after: i64) -> Option<Arc<Segment>> {
        self.lock()
            .iter()
            .rev()
            .find(|s| {
                s.epoch == epoch && s.directory == directory && s.after <= after && after < s.up_to
            })
            .cloned()
    }

    async fn load(
        &self,
        store: &dyn Store,
        (epoch, directory): (i64, Option<DirectoryId>),
        after: i64,
        head: i64,
    ) -> StoreResult<Arc<Segment>> {
        let every_kind = ChangeFilter {
            directory_id: directory,
            kinds: Vec::new(),
        };
        let records = store.read_changes(&every_kind, after, head, READ).await?;
        let generations = store
            .webhook_generations(directory)
            .await?
            .into_iter()
            .collect();
        // A full read covers the log only up to its last change.
        let up_to = match records.last() {
            Some(last) if records.len() as i64 >= READ => last.revision,
            _ => head,
        };
        let segment = Arc::new(Segment::new(
            (epoch, directory),
            (after, up_to),
            records,
            generations,
        ));
        let mut recent = self.lock();
        recent.push_back(Arc::clone(&segment));
        while recent.len() > KEPT {
            recent.pop_front();
        }
        Ok(segment)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Segment>>> {
        // Immutable ranges: a panic elsewhere cannot leave them inconsistent.
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The wanted changes after `after`, at most `limit`.
fn pick(segment: Arc<Segment>, filter: &ChangeFilter, after: i64, limit: usize) -> Page {
    let mut picked: Vec<usize> = Vec::new();
    let mut covered = segment.up_to;
    for (i, r) in segment.records.iter().enumerate() {
        if r.revision <= after || !filter.matches(r) {
            continue;
        }
        if picked.len() == limit {
            // The page is full: the log is covered up to its last change.
            covered = segment.records[picked[limit - 1]].revision;
            break;
        }
        picked.push(i);
    }
    Page {
        segment,
        picked,
        covered,
    }
}

#[cfg(test)]
mod tests {
    use roster_store::ChangeKind;

    use super::*;

    fn record(revision: i64, directory: DirectoryId, kind: ChangeKind) -> ChangeRecord {
        ChangeRecord {
            revision,
            event_id: uuid::Uuid::new_v4(),
            directory_id: directory,
            kind,
            resource_id: uuid::Uuid::new_v4(),
            version: 1,
            occurred_at: chrono::Utc::now(),
            payload: serde_json::json!({}),
            changed_fields: Vec::new(),
        }
    }

    /// Revisions 11..=15 of (10, 20], users and groups taking turns.
    fn segment(directory: DirectoryId) -> Arc<Segment> {
        let kind = |r: i64| match r % 2 {
            1 => ChangeKind::UserCreated,
            _ => ChangeKind::GroupCreated,
        };
        Arc::new(Segment::new(
            (1, Some(directory)),
            (10, 20),
            (11..=15).map(|r| record(r, directory, kind(r))).collect(),
            HashMap::new(),
        ))
    }

    fn revisions(page: &Page) -> (Vec<i64>, i64) {
        (page.records().map(|r| r.revision).collect(), page.covered)
    }

    #[test]
    fn each_endpoint_takes_what_it_wants_after_its_cursor() {
        let dir = DirectoryId::new();
        let users = ChangeFilter {
            directory_id: Some(dir),
            kinds: vec![ChangeKind::UserCreated],
        };
        let every = ChangeFilter {
            directory_id: Some(dir),
            kinds: Vec::new(),
        };
        // The rest of the range is unwanted: covered to its end.
        assert_eq!(
            revisions(&pick(segment(dir), &users, 11, 10)),
            (vec![13, 15], 20)
        );
        // A full page covers the log only up to its last change.
        assert_eq!(
            revisions(&pick(segment(dir), &users, 11, 1)),
            (vec![13], 13)
        );
        assert_eq!(
            revisions(&pick(segment(dir), &every, 12, 2)),
            (vec![13, 14], 14)
        );
        // Nothing wanted after the cursor: move to the end of the range.
        assert_eq!(revisions(&pick(segment(dir), &users, 15, 10)), (vec![], 20));
    }

    #[test]
    fn endpoints_share_each_body() {
        let dir = DirectoryId::new();
        let every = ChangeFilter {
            directory_id: Some(dir),
            kinds: Vec::new(),
        };
        let segment = segment(dir);
        let bodies = |after: i64| -> Vec<Bytes> {
            pick(Arc::clone(&segment), &every, after, 10)
                .deliveries(4096)
                .map(|(_, body)| body)
                .collect()
        };
        let (first, second) = (bodies(10), bodies(12));
        assert_eq!((first.len(), second.len()), (5, 3));
        // Revision 13 for both endpoints: one encoding, not an equal copy.
        assert_eq!(first[2].as_ptr(), second[0].as_ptr());
        let body: serde_json::Value = serde_json::from_slice(&second[0]).unwrap();
        assert_eq!(body["data"]["revision"], 13);
    }
}
