//! The change rows this process committed most recently, kept so that the
//! change tailer can publish them without reading them back.
//!
//! A row is kept only once its transaction's COMMIT returned here, exactly
//! as `RETURNING` gave it (so exactly as a later `SELECT` would). A read of
//! the log is answered from here only when every revision of its range is
//! kept: then every revision in it is a committed row of this process, and
//! no other row can exist in that range (revisions are unique), so the
//! answer is the one the database would give. Any revision missing (another
//! process's, an aborted one, one already handed out or evicted) sends the
//! read to the database as before.

use std::collections::BTreeMap;

use crate::model::{ChangeFilter, ChangeRecord};
use crate::write::LogRead;

/// At most this many rows are kept; the oldest go first. The tailer reads
/// them within milliseconds of their commit, so this only bounds memory
/// when nobody reads (a store without a change hub: tools, tests).
const MAX_KEPT: usize = 4096;

/// Recently committed change rows of this process, by revision.
#[derive(Debug, Default)]
pub(crate) struct RecentChanges {
    rows: BTreeMap<i64, ChangeRecord>,
    /// The highest pruning bound seen: a read starting below it goes to the
    /// database, which refuses it as expired.
    pruned_through: i64,
}

impl RecentChanges {
    /// Keeps rows whose transaction committed.
    pub fn committed(&mut self, rows: impl IntoIterator<Item = ChangeRecord>) {
        for row in rows {
            if row.revision > self.pruned_through {
                self.rows.insert(row.revision, row);
            }
        }
        while self.rows.len() > MAX_KEPT {
            self.rows.pop_first();
        }
    }

    /// Notes a pruning bound (from a prune or a read of the log) and forgets
    /// the rows at or below it.
    pub fn pruned(&mut self, through: i64) {
        if through > self.pruned_through {
            self.pruned_through = through;
            self.rows = self.rows.split_off(&(through + 1));
        }
    }

    /// The answer to `read` when every revision of its range is kept, else
    /// `None`. A read of every kind in every directory (the tailer's) takes
    /// the rows it returns, and forgets those below: it has passed them,
    /// and any other reader is better served by the database than by rows
    /// kept for it alone. A filtered read copies what it returns.
    pub fn read(&mut self, read: &LogRead<'_>) -> Option<Vec<ChangeRecord>> {
        if read.after < self.pruned_through || read.after >= read.up_to || read.limit <= 0 {
            return None;
        }
        let limit = usize::try_from(read.limit).unwrap_or(usize::MAX);
        let mut matching = Vec::new();
        let mut last = read.after;
        for revision in read.after + 1..=read.up_to {
            let row = self.rows.get(&revision)?;
            last = revision;
            if read.filter.matches(row) {
                matching.push(revision);
                if matching.len() == limit {
                    break;
                }
            }
        }
        if is_everything(read.filter) {
            let rest = self.rows.split_off(&(last + 1));
            let taken = std::mem::replace(&mut self.rows, rest);
            Some(
                taken
                    .into_values()
                    .filter(|r| r.revision > read.after)
                    .collect(),
            )
        } else {
            Some(matching.iter().map(|r| self.rows[r].clone()).collect())
        }
    }

    #[cfg(test)]
    fn kept(&self) -> Vec<i64> {
        self.rows.keys().copied().collect()
    }
}

fn is_everything(filter: &ChangeFilter) -> bool {
    filter.directory_id.is_none() && filter.kinds.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeKind, DirectoryId};

    fn row(revision: i64, dir: DirectoryId, kind: ChangeKind) -> ChangeRecord {
        ChangeRecord {
            revision,
            event_id: uuid::Uuid::new_v4(),
            directory_id: dir,
            kind,
            resource_id: uuid::Uuid::new_v4(),
            version: 1,
            occurred_at: chrono::Utc::now(),
            payload: serde_json::json!({}),
            changed_fields: Vec::new(),
        }
    }

    fn read(filter: &ChangeFilter, after: i64, up_to: i64, limit: i64) -> LogRead<'_> {
        LogRead {
            filter,
            after,
            up_to,
            limit,
        }
    }

    fn revisions(rows: &[ChangeRecord]) -> Vec<i64> {
        rows.iter().map(|r| r.revision).collect()
    }

    #[test]
    fn a_range_with_a_revision_not_kept_goes_to_the_database() {
        let dir = DirectoryId::new();
        let mut recent = RecentChanges::default();
        recent.committed([1, 2, 4].map(|r| row(r, dir, ChangeKind::UserCreated)));
        let all = ChangeFilter::default();
        // 3 is another process's, or aborted, or still committing.
        assert!(recent.read(&read(&all, 0, 4, 500)).is_none());
        assert_eq!(recent.kept(), [1, 2, 4]);
        let served = recent.read(&read(&all, 0, 2, 500)).expect("kept");
        assert_eq!(revisions(&served), [1, 2]);
        // The tailer's read takes its rows: a second reader goes to the database.
        assert_eq!(recent.kept(), [4]);
        assert!(recent.read(&read(&all, 0, 2, 500)).is_none());
    }

    #[test]
    fn a_limited_read_takes_only_its_page() {
        let dir = DirectoryId::new();
        let mut recent = RecentChanges::default();
        recent.committed((1..=5).map(|r| row(r, dir, ChangeKind::UserCreated)));
        let all = ChangeFilter::default();
        let page = recent.read(&read(&all, 0, 5, 2)).expect("kept");
        assert_eq!(revisions(&page), [1, 2]);
        let rest = recent.read(&read(&all, 2, 5, 500)).expect("kept");
        assert_eq!(revisions(&rest), [3, 4, 5]);
    }

    #[test]
    fn a_filtered_read_copies_its_matches_and_needs_the_whole_range() {
        let (dir, other) = (DirectoryId::new(), DirectoryId::new());
        let mut recent = RecentChanges::default();
        recent.committed([
            row(1, dir, ChangeKind::UserCreated),
            row(2, other, ChangeKind::UserCreated),
            row(3, dir, ChangeKind::GroupCreated),
            row(4, dir, ChangeKind::UserCreated),
        ]);
        let filter = ChangeFilter {
            directory_id: Some(dir),
            kinds: vec![ChangeKind::UserCreated],
        };
        let page = recent.read(&read(&filter, 0, 4, 500)).expect("kept");
        assert_eq!(revisions(&page), [1, 4]);
        let first = recent.read(&read(&filter, 0, 4, 1)).expect("kept");
        assert_eq!(revisions(&first), [1]);
        assert_eq!(recent.kept(), [1, 2, 3, 4]);
    }

    #[test]
    fn pruned_rows_are_forgotten_and_reads_below_the_bound_refused() {
        let dir = DirectoryId::new();
        let mut recent = RecentChanges::default();
        recent.committed((1..=4).map(|r| row(r, dir, ChangeKind::UserCreated)));
        recent.pruned(2);
        assert_eq!(recent.kept(), [3, 4]);
        let all = ChangeFilter::default();
        assert!(recent.read(&read(&all, 1, 4, 500)).is_none());
        assert_eq!(
            revisions(&recent.read(&read(&all, 2, 4, 500)).expect("kept")),
            [3, 4]
        );
        // A row at or below the bound is never kept.
        recent.committed([row(2, dir, ChangeKind::UserCreated)]);
        assert!(recent.kept().is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let dir = DirectoryId::new();
        let mut recent = RecentChanges::default();
        let n = i64::try_from(MAX_KEPT).unwrap() + 10;
        recent.committed((1..=n).map(|r| row(r, dir, ChangeKind::UserCreated)));
        assert_eq!(recent.kept().len(), MAX_KEPT);
        assert_eq!(recent.kept()[0], 11);
    }
}
