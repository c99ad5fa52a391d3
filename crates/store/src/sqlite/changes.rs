//! The change log: bounds, reads, pruning, snapshots and wake-ups.
//!
//! SQLite has a single writer, and every write transaction takes its
//! revisions from `log_state.head` right before committing, so committed
//! revisions are dense and in commit order: the committed head *is* the stable
//! head, and there are never holes to resolve.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::SqliteStore;
use super::codec::{Col, id_text, json_text, parse_id, time_text};
use super::errors::map_db;
use super::groups::{GROUP_COLUMNS, decode_group};
use super::users::{USER_COLUMNS, attach_group_ids, decode_user};
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::snapshot_slots::holding;
use crate::write::{Backend, ChangeLog, LogPage, LogRead, SnapshotItems, parse_member_kind};

/// Change-log rows deleted per pruning transaction.
const PRUNE_BATCH: i64 = 10_000;

/// Rows fetched per query while streaming a snapshot.
const SNAPSHOT_PAGE: i64 = 500;

#[async_trait]
impl ChangeLog for SqliteStore {
    async fn log_bounds(&self) -> StoreResult<LogBounds> {
        let mut conn = self.read_conn().await?;
        read_bounds(&mut conn).await
    }

    /// One read transaction: the pruning bound and the rows come from the
    /// same snapshot.
    async fn read_log(&self, read: &LogRead<'_>) -> StoreResult<LogPage> {
        let mut tx = self.read_tx().await?;
        let pruned_through = read_bounds(&mut tx).await?.pruned_through;
        let kinds: Vec<&str> = read.filter.kinds.iter().map(|k| k.as_str()).collect();
        let rows = sqlx::query(
            "SELECT revision, event_id, directory_id, kind, resource_id, version, occurred_at, payload, \
             changed_fields FROM changes \
             WHERE revision > ?1 AND revision <= ?2 AND (?3 IS NULL OR directory_id = ?3) \
               AND (?4 = '[]' OR kind IN (SELECT value FROM json_each(?4))) \
             ORDER BY revision LIMIT ?5",
        )
        .bind(read.after)
        .bind(read.up_to)
        .bind(read.filter.directory_id.map(|d| id_text(d.0)))
        .bind(json_text(&kinds)?)
        .bind(read.limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_db)?;
        let changes = rows.iter().map(decode_change).collect::<StoreResult<_>>()?;
        Ok(LogPage {
            pruned_through,
            changes,
        })
    }

    async fn count_log(&self, read: &LogRead<'_>) -> StoreResult<i64> {
        let kinds: Vec<&str> = read.filter.kinds.iter().map(|k| k.as_str()).collect();
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM changes \
             WHERE revision > ?1 AND revision <= ?2 AND (?3 IS NULL OR directory_id = ?3) \
               AND (?4 = '[]' OR kind IN (SELECT value FROM json_each(?4))) LIMIT ?5)",
        )
        .bind(read.after)
        .bind(read.up_to)
        .bind(read.filter.directory_id.map(|d| id_text(d.0)))
        .bind(json_text(&kinds)?)
        .bind(read.limit)
        .fetch_one(&self.readers)
        .await
        .map_err(map_db)
    }

    async fn advance_stable_head(&self, after: i64) -> StoreResult<i64> {
        let head = self.log_bounds().await?.stable_head;
        self.observed_head.fetch_max(head, Ordering::SeqCst);
        Ok(head.max(after))
    }

    /// Prunes a prefix of the log: everything up to the first revision still
    /// inside the retention window (so `pruned_through` has no holes below
    /// it). Deletes in batches, each its own short write transaction, so a
    /// large prune never holds the write lock for long.
    async fn prune_changes(&self, keep_secs: i64) -> StoreResult<i64> {
        let cutoff = super::codec::now() - chrono::Duration::seconds(keep_secs.max(0));
        let target = self.prune_target(cutoff).await?;
        loop {
            let mut tx = self.begin().await?;
            let pruned: i64 =
                sqlx::query_scalar("SELECT pruned_through FROM log_state WHERE id = 1")
                    .fetch_one(tx.conn())
                    .await
                    .map_err(map_db)?;
            if pruned >= target {
                return Ok(pruned);
            }
            let through = target.min(pruned + PRUNE_BATCH);
            sqlx::query("DELETE FROM changes WHERE revision <= ?")
                .bind(through)
                .execute(tx.conn())
                .await
                .map_err(map_db)?;
            sqlx::query("UPDATE log_state SET pruned_through = ? WHERE id = 1")
                .bind(through)
                .execute(tx.conn())
                .await
                .map_err(map_db)?;
            self.commit(tx).await?;
        }
    }

    async fn snapshot(&self, dir: Option<DirectoryId>) -> StoreResult<(Cursor, SnapshotItems)> {
        let slot = self.snapshot_slots.take()?;
        let mut tx = self.snapshots.begin().await.map_err(map_db)?;
        // Reading the head starts the read snapshot: every item streamed
        // below comes from the same snapshot, so it reflects exactly the
        // changes up to the head.
        let cursor = snapshot_cursor(&read_bounds(&mut tx).await?);
        let reader = SnapshotReader {
            tx,
            dir: dir.map(|d| id_text(d.0)),
            phase: Phase::Users,
            after: String::new(),
            after_member: String::new(),
        };
        let items = stream::try_unfold(reader, |mut reader| async move {
            let page = reader.next_page().await?;
            Ok::<_, StoreError>(page.map(|items| (stream::iter(items.into_iter().map(Ok)), reader)))
        })
        .map(|page| match page {
            Ok(items) => items.left_stream(),
            Err(e) => stream::once(async { Err(e) }).right_stream(),
        })
        .flatten();
        Ok((cursor, holding(items.boxed(), slot)))
    }

    async fn renew_log_epoch(&self) -> StoreResult<i64> {
        let mut tx = self.begin().await?;
        let epoch = sqlx::query_scalar(
            "UPDATE log_state SET epoch = random() WHERE id = 1 RETURNING epoch",
        )
        .fetch_one(tx.conn())
        .await
        .map_err(map_db)?;
        self.commit(tx).await?;
        Ok(epoch)
    }

    fn newest_committed(&self) -> Option<i64> {
        // The last committed revision (every commit publishes it here).
        Some(*self.heads.borrow())
    }

    /// Every commit publishes the new head, which `wait_for_changes` waits for.
    fn wakes_on_commit(&self) -> bool {
        true
    }

    /// A no-op: the only process on the file already wakes its watchers on
    /// commit.
    async fn notify_changes(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Waits for a commit after the head last returned by
    /// `advance_stable_head`, or for `timeout`. Checking against that head
    /// (rather than only waiting for the next signal) means a commit that
    /// lands between the tailer's read and this call still wakes it at once.
    async fn wait_for_changes(&self, timeout: Duration) -> StoreResult<()> {
        let mut heads = self.heads.subscribe();
        let observed = self.observed_head.load(Ordering::SeqCst);
        let _ = tokio::time::timeout(timeout, heads.wait_for(|head| *head > observed)).await;
        Ok(())
    }
}

impl SqliteStore {
    /// The last revision older than `cutoff` with no younger revision
    /// below it (the head when every row is older).
    async fn prune_target(&self, cutoff: chrono::DateTime<chrono::Utc>) -> StoreResult<i64> {
        let mut conn = self.read_conn().await?;
        sqlx::query_scalar(
            // Walks the log in revision order and stops at the first young
            // row: costs the rows to prune, not the whole retained log.
            "SELECT COALESCE((SELECT revision - 1 FROM changes WHERE occurred_at >= ? \
               ORDER BY revision LIMIT 1), head) \
             FROM log_state WHERE id = 1",
        )
        .bind(time_text(cutoff))
        .fetch_one(&mut *conn)
        .await
        .map_err(map_db)
    }
}

pub(super) async fn read_bounds(conn: &mut SqliteConnection) -> StoreResult<LogBounds> {
    let (stable_head, pruned_through, epoch): (i64, i64, i64) =
        sqlx::query_as("SELECT head, pruned_through, epoch FROM log_state WHERE id = 1")
            .fetch_one(conn)
            .await
            .map_err(map_db)?;
    // Revisions are handed out at commit: every one is committed.
    Ok(LogBounds {
        pruned_through,
        stable_head,
        allocated_head: stable_head,
        epoch,
    })
}

/// The cursor of a read transaction's snapshot: its head, nothing above it.
pub(super) fn snapshot_cursor(bounds: &LogBounds) -> Cursor {
    Cursor {
        after: bounds.stable_head,
        also_seen: Vec::new(),
        epoch: Some(bounds.epoch),
    }
}

fn decode_change(row: &SqliteRow) -> StoreResult<ChangeRecord> {
    Ok(ChangeRecord {
        revision: row.int("revision")?,
        event_id: row.id("event_id")?,
        directory_id: DirectoryId(row.id("directory_id")?),
        kind: row.parsed("kind")?,
        resource_id: row.id("resource_id")?,
        version: row.int("version")?,
        occurred_at: row.time("occurred_at")?,
        payload: row.json("payload")?,
        changed_fields: row.json("changed_fields")?,
    })
}

/// Which table a snapshot is streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Users,
    Groups,
    Memberships,
    Done,
}

/// Streams a snapshot page by page inside one read transaction, keyset
/// paginated by id so memory stays bounded.
struct SnapshotReader {
    tx: Transaction<'static, Sqlite>,
    dir: Option<String>,
    phase: Phase,
    /// Keyset position inside the current phase (the group id for memberships).
    after: String,
    /// Keyset position of the member id, for memberships.
    after_member: String,
}

impl SnapshotReader {
    /// The next non-empty page, or `None` when the snapshot is complete.
    async fn next_page(&mut self) -> StoreResult<Option<Vec<SnapshotItem>>> {
        loop {
            let page = match self.phase {
                Phase::Users => self.users().await?,
                Phase::Groups => self.groups().await?,
                Phase::Memberships => self.memberships().await?,
                Phase::Done => return Ok(None),
            };
            if page.is_empty() {
                self.phase = match self.phase {
                    Phase::Users => Phase::Groups,
                    Phase::Groups => Phase::Memberships,
                    Phase::Memberships | Phase::Done => Phase::Done,
                };
                self.after.clear();
                self.after_member.clear();
            } else {
                return Ok(Some(page));
            }
        }
    }

    async fn users(&mut self) -> StoreResult<Vec<SnapshotItem>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE (?1 IS NULL OR users.directory_id = ?1) AND users.id > ?2 \
             ORDER BY users.id LIMIT ?3"
        );
        let rows = self.page(sql).await?;
        let mut users = rows
            .iter()
            .map(decode_user)
            .collect::<StoreResult<Vec<_>>>()?;
        attach_group_ids(&mut self.tx, &mut users).await?;
        if let Some(last) = users.last() {
            self.after = id_text(last.id.0);
        }
        Ok(users.into_iter().map(SnapshotItem::User).collect())
    }

    async fn groups(&mut self) -> StoreResult<Vec<SnapshotItem>> {
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM groups WHERE (?1 IS NULL OR groups.directory_id = ?1) \
             AND groups.id > ?2 ORDER BY groups.id LIMIT ?3"
        );
        let rows = self.page(sql).await?;
        let groups = rows
            .iter()
            .map(decode_group)
            .collect::<StoreResult<Vec<_>>>()?;
        if let Some(last) = groups.last() {
            self.after = id_text(last.id.0);
        }
        Ok(groups.into_iter().map(SnapshotItem::Group).collect())
    }

    async fn memberships(&mut self) -> StoreResult<Vec<SnapshotItem>> {
        // Keyset over (group_id, member_id), the primary key.
        let sql = "SELECT group_id, member_id, member_kind FROM memberships \
             WHERE (?1 IS NULL OR directory_id = ?1) AND (group_id, member_id) > (?2, ?4) \
             ORDER BY group_id, member_id LIMIT ?3"
            .to_owned();
        let rows = self.page(sql).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let (group, member) = (row.text("group_id")?, row.text("member_id")?);
            items.push(SnapshotItem::Membership(Membership {
                group_id: GroupId(parse_id(&group)?),
                member_id: parse_id(&member)?,
                member_kind: parse_member_kind(&row.text("member_kind")?)?,
            }));
            (self.after, self.after_member) = (group, member);
        }
        Ok(items)
    }

    /// Runs a page query: `?1` directory (or NULL), `?2` keyset position,
    /// `?3` page size and, for memberships, `?4` the member keyset position.
    async fn page(&mut self, sql: String) -> StoreResult<Vec<SqliteRow>> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.dir.clone())
            .bind(self.after.clone())
            .bind(SNAPSHOT_PAGE);
        if self.phase == Phase::Memberships {
            query = query.bind(self.after_member.clone());
        }
        query.fetch_all(&mut *self.tx).await.map_err(map_db)
    }
}
