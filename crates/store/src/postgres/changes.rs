//! Writing and reading the change log.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::PgStore;
use super::errors::{json_error, map_db};
use super::head::Observation;
use super::tx::GroupBump;
use crate::error::{StoreError, StoreResult};
use crate::model::{ChangeRecord, Cursor, DirectoryId, LogBounds};
use crate::produced::Produced;
use crate::write::{Change, ChangeLog, LogPage, LogRead, SnapshotItems};

/// Binds what [`range_where`] names, and `$4` the page's limit (a macro:
/// `query` and `query_scalar` are different types with the same `bind`).
macro_rules! bind_range {
    ($query:expr, $read:expr) => {{
        let read = $read;
        let kinds: Vec<&str> = read.filter.kinds.iter().map(|k| k.as_str()).collect();
        let query = $query
            .bind(read.after)
            .bind(read.up_to.max(read.after))
            .bind(kinds)
            .bind(read.limit);
        match read.filter.directory_id {
            Some(dir) => query.bind(dir.0),
            None => query,
        }
    }};
}

/// How many revisions one stable-head query reads at most.
pub(crate) const HEAD_BATCH: i64 = 10_000;

/// The highest revision handed out (0 before the first `nextval`).
const ALLOCATED: &str =
    "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM change_revision) AS allocated";

#[async_trait]
impl ChangeLog for PgStore {
    async fn log_bounds(&self) -> StoreResult<LogBounds> {
        let mut conn = self.conn().await?;
        let stable_head = self.advance_on(&mut conn, 0).await?;
        let (pruned_through, epoch, allocated_head) = log_state(&mut conn).await?;
        Ok(LogBounds {
            pruned_through,
            stable_head,
            allocated_head,
            epoch,
        })
    }

    async fn read_log(&self, read: &LogRead<'_>) -> StoreResult<LogPage> {
        if let Some(changes) = self.recent().read(read) {
            // Every revision of the range is a row this process committed
            // (`recent.rs`): no row is missing, so no pruning bound is needed.
            return Ok(LogPage {
                pruned_through: 0,
                changes,
            });
        }
        let page = read_log(&mut *self.conn().await?, read).await?;
        self.recent().pruned(page.pruned_through);
        Ok(page)
    }

    async fn count_log(&self, read: &LogRead<'_>) -> StoreResult<i64> {
        // The same range as `read_log`, for the same index use.
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM changes c WHERE {} LIMIT $4) counted",
            range_where(read)
        );
        let query = bind_range!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)), read);
        query.fetch_one(&self.pool).await.map_err(map_db)
    }

    async fn advance_stable_head(&self, after: i64) -> StoreResult<i64> {
        if let Some(head) = self.locally_advanced(after) {
            return Ok(head);
        }
        if self.await_local_writes() {
            return Ok(self.known_head());
        }
        self.notifier.take_foreign();
        self.advance_on(&mut *self.conn().await?, after).await
    }

    async fn snapshot(&self, dir: Option<DirectoryId>) -> StoreResult<(Cursor, SnapshotItems)> {
        self.open_snapshot(dir).await
    }

    async fn prune_changes(&self, keep_secs: i64) -> StoreResult<i64> {
        let mut conn = self.conn().await?;
        let head = self.advance_on(&mut conn, 0).await?;
        let pruned = prune(&mut conn, keep_secs.max(0), head).await?;
        self.recent().pruned(pruned);
        Ok(pruned)
    }

    async fn renew_log_epoch(&self) -> StoreResult<i64> {
        renew_epoch(&mut *self.conn().await?).await
    }

    fn newest_committed(&self) -> Option<i64> {
        Some(self.head.lock().unwrap_or_else(|p| p.into_inner()).newest())
    }

    async fn wait_for_changes(&self, timeout: Duration) -> StoreResult<()> {
        self.notifier.wait(timeout).await;
        Ok(())
    }

    /// [`PgStore::committed`] wakes the local waiters.
    fn wakes_on_commit(&self) -> bool {
        true
    }

    async fn notify_changes(&self) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify('roster_changes', $1)")
            .bind(self.notifier.origin())
            .execute(&self.pool)
            .await
            .map_err(map_db)?;
        Ok(())
    }
}

/// Appends `changes` in order. Must be the last statement of the write
/// transaction: revisions are taken here, after every row lock is held.
///
/// `pg_current_xact_id()` in the WHERE clause runs before the `nextval`
/// calls of the projection and makes sure the transaction has an xid before
/// it takes a revision (fact 1 of `head.rs`), even if it wrote nothing else.
///
/// `bump`, a group write deferred to the commit (`Tx::group_bump`), goes
/// in the same statement: the group's row lock is held already, so it takes
/// no lock after the revisions, and the batch saves a round trip.
///
/// Returns the rows appended, as stored, for [`PgStore::committed`] once the
/// transaction committed.
pub(crate) async fn insert_changes(
    conn: &mut PgConnection,
    changes: &[Change],
    bump: Option<&GroupBump>,
) -> StoreResult<Vec<ChangeRecord>> {
    if changes.is_empty() {
        if let Some(bump) = bump {
            sqlx::query(
                "UPDATE groups SET member_count = member_count + $1, version = $2, \
                 updated_at = now() WHERE id = $3",
            )
            .bind(bump.count_delta)
            .bind(bump.version)
            .bind(bump.id)
            .execute(conn)
            .await
            .map_err(map_db)?;
        }
        return Ok(Vec::new());
    }
    let mut directory_ids = Vec::with_capacity(changes.len());
    let mut kinds = Vec::with_capacity(changes.len());
    let mut resource_ids = Vec::with_capacity(changes.len());
    let mut versions = Vec::with_capacity(changes.len());
    let mut payloads = Vec::with_capacity(changes.len());
    let mut fields = Vec::with_capacity(changes.len());
    for c in changes {
        directory_ids.push(c.directory_id.0);
        kinds.push(c.kind.as_str());
        resource_ids.push(c.resource_id);
        versions.push(c.version);
        payloads.push(c.payload.clone());
        fields.push(serde_json::to_value(&c.changed_fields).map_err(json_error)?);
    }
    let event_ids: Vec<Uuid> = changes.iter().map(|_| Uuid::new_v4()).collect();
    let with_bump = match bump {
        Some(_) => {
            "WITH bumped AS (UPDATE groups SET member_count = member_count + $8, \
                    version = $9, updated_at = now() WHERE id = $10) "
        }
        None => "",
    };
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{with_bump}INSERT INTO changes (revision, event_id, directory_id, kind, resource_id, version, payload, changed_fields) \
         SELECT nextval('change_revision'), c.event_id, c.directory_id, c.kind, c.resource_id, c.version, \
                c.payload, c.changed_fields \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::bigint[], $6::jsonb[], $7::jsonb[]) \
              WITH ORDINALITY AS c(event_id, directory_id, kind, resource_id, version, payload, changed_fields, ord) \
         WHERE pg_current_xact_id() IS NOT NULL \
         ORDER BY c.ord \
         RETURNING {RETURNED}"
    )))
    .bind(&event_ids)
    .bind(&directory_ids)
    .bind(&kinds)
    .bind(&resource_ids)
    .bind(&versions)
    .bind(&payloads)
    .bind(&fields);
    let query = match bump {
        Some(bump) => query
            .bind(bump.count_delta)
            .bind(bump.version)
            .bind(bump.id),
        None => query,
    };
    query
        .fetch_all(conn)
        .await
        .map_err(map_db)?
        .iter()
        .map(decode_change)
        .collect()
}

/// What a statement appending change rows returns: each row as stored
/// (read by [`decode_change`]), so that the process that commits it has
/// the row without reading it back.
pub(super) const RETURNED: &str = "revision, event_id, directory_id, kind, resource_id, version, occurred_at, payload, changed_fields";

/// What the request that wrote `row` learns of it.
pub(super) fn produced(row: &ChangeRecord) -> Produced {
    Produced {
        kind: row.kind,
        resource_id: row.resource_id,
        version: row.version,
        revision: row.revision,
    }
}

/// Reads what the stable head needs, in one statement (so one snapshot).
///
/// `pg_locks` is read once (materialized) so that a transaction's xid lock
/// and its lock on `change_revision` come from the same read: a transaction
/// seen holding an xid but no lock on the sequence, and still in progress
/// after that read, took no revision before the snapshot (fact 4 of
/// `head.rs`) and is reported as a bystander. That is what keeps other
/// databases' (and other tools') open transactions from holding the stable
/// head: xids are cluster-wide, revisions are not.
///
/// "Still in progress after the read" matters: a transaction leaves the
/// proc array before it releases its locks, one lock partition at a time,
/// so one that ended during the read can show its xid lock without its
/// sequence lock. `pg_lock_status` reads every lock before returning its
/// first row, so `pg_xact_status` runs after the read. It wants a full
/// xid: the 32-bit one is widened around the snapshot's `xmax` (as
/// [`full_xid`] does for the arrays).
pub(crate) async fn observe(conn: &mut PgConnection, after: i64) -> StoreResult<Observation> {
    let row = sqlx::query(
        "WITH s AS (SELECT pg_current_snapshot() AS snap), \
         locks AS MATERIALIZED (SELECT locktype, database, relation, transactionid, virtualtransaction, \
                                       mode, granted FROM pg_locks), \
         takers AS (SELECT virtualtransaction FROM locks \
                    WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' \
                      AND relation = 'change_revision'::regclass \
                      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())), \
         xids AS (SELECT transactionid::text::bigint AS xid, \
                         virtualtransaction IN (SELECT virtualtransaction FROM takers) AS taker \
                  FROM locks WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted), \
         wide AS (SELECT x.xid, x.taker, m.xmax + ((x.xid - m.xmax) % 4294967296 + 6442450944) \
                         % 4294967296 - 2147483648 AS full_xid \
                  FROM xids x, (SELECT pg_snapshot_xmax(snap)::text::bigint AS xmax FROM s) m), \
         seen AS (SELECT xid, NOT taker AND pg_xact_status(full_xid::text::xid8) = 'in progress' \
                         AS bystander FROM wide) \
         SELECT pg_snapshot_xmax(s.snap)::text::bigint AS xmax, \
                ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s.snap) AS x) AS xip, \
                ARRAY(SELECT revision FROM changes WHERE revision > $1 ORDER BY revision LIMIT $2) AS revisions, \
                (SELECT max(revision) FROM changes) AS max_revision, \
                (SELECT pruned_through FROM change_log_state) AS pruned_through, \
                ARRAY(SELECT xid FROM seen WHERE NOT bystander) AS running, \
                ARRAY(SELECT xid FROM seen WHERE bystander) AS bystanders \
         FROM s",
    )
    .bind(after)
    .bind(HEAD_BATCH)
    .fetch_one(conn)
    .await
    .map_err(map_db)?;
    let xmax: i64 = row.try_get("xmax").map_err(map_db)?;
    let widen = |column: &str| -> StoreResult<Vec<i64>> {
        let xids: Vec<i64> = row.try_get(column).map_err(map_db)?;
        Ok(xids.into_iter().map(|x| full_xid(x, xmax)).collect())
    };
    Ok(Observation {
        xmax,
        running: widen("running")?,
        bystanders: widen("bystanders")?,
        xip: row.try_get("xip").map_err(map_db)?,
        revisions: row.try_get("revisions").map_err(map_db)?,
        max_revision: row.try_get("max_revision").map_err(map_db)?,
        pruned_through: row
            .try_get::<Option<i64>, _>("pruned_through")
            .map_err(map_db)?
            .unwrap_or(0),
    })
}

/// Widens a 32-bit xid (as `pg_locks` shows it) to the full 64-bit xid
/// nearest to `reference` (a running xid is within 2^31 of any current xid).
fn full_xid(xid32: i64, reference: i64) -> i64 {
    const WRAP: i64 = 1 << 32;
    let candidate = (reference & !(WRAP - 1)) | (xid32 & (WRAP - 1));
    if candidate > reference + WRAP / 2 {
        candidate - WRAP
    } else if candidate < reference - WRAP / 2 {
        candidate + WRAP
    } else {
        candidate
    }
}

/// Revisions above `after` visible in the current snapshot, and the log's
/// epoch in that same snapshot (for cursors).
pub(crate) async fn visible_after(
    conn: &mut PgConnection,
    after: i64,
) -> StoreResult<(Vec<i64>, i64)> {
    sqlx::query_as(
        "SELECT ARRAY(SELECT revision FROM changes WHERE revision > $1 ORDER BY revision), epoch \
         FROM change_log_state",
    )
    .bind(after)
    .fetch_one(conn)
    .await
    .map_err(map_db)
}

/// `(pruned_through, epoch, allocated_head)` of the log. The sequence is
/// read as it is now, not as of a snapshot: sequences are not transactional.
pub(crate) async fn log_state(conn: &mut PgConnection) -> StoreResult<(i64, i64, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT s.pruned_through, s.epoch, {ALLOCATED} FROM change_log_state s"
    )))
    .fetch_one(conn)
    .await
    .map_err(map_db)
}

/// Gives the log a new random epoch (same expression as the migration).
pub(crate) async fn renew_epoch(conn: &mut PgConnection) -> StoreResult<i64> {
    sqlx::query_scalar(
        "UPDATE change_log_state \
         SET epoch = ('x' || left(md5(gen_random_uuid()::text), 16))::bit(64)::bigint RETURNING epoch",
    )
    .fetch_one(conn)
    .await
    .map_err(map_db)
}

/// The rows of a change-log read: `$1` after, `$2` up to, `$3` kinds
/// (empty: all), `$5` the directory when there is one (bound by
/// [`bind_range!`]). `directory_id = $5 OR $5 IS NULL` would keep the
/// planner from the (directory_id, revision) index, so the two shapes are
/// spelled out.
fn range_where(read: &LogRead<'_>) -> &'static str {
    match read.filter.directory_id {
        Some(_) => {
            "c.directory_id = $5 AND c.revision > $1 AND c.revision <= $2 \
             AND (cardinality($3::text[]) = 0 OR c.kind = ANY($3))"
        }
        None => {
            "c.revision > $1 AND c.revision <= $2 AND (cardinality($3::text[]) = 0 OR c.kind = ANY($3))"
        }
    }
}

/// The rows of `read` and the pruning bound, in one statement: both come
/// from one snapshot, and pruning deletes rows and raises the bound in one
/// transaction, so a bound at or below `read.after` proves that no row of
/// the range was missing.
async fn read_log(conn: &mut PgConnection, read: &LogRead<'_>) -> StoreResult<LogPage> {
    let sql = format!(
        "SELECT s.pruned_through, c.* FROM change_log_state s LEFT JOIN LATERAL ( \
           SELECT c.revision, c.event_id, c.directory_id, c.kind, c.resource_id, c.version, c.occurred_at, \
                  c.payload, c.changed_fields FROM changes c \
           WHERE {} ORDER BY c.revision LIMIT $4) c ON true",
        range_where(read)
    );
    let query = bind_range!(sqlx::query(sqlx::AssertSqlSafe(sql)), read);
    let rows = query.fetch_all(conn).await.map_err(map_db)?;
    let pruned_through: i64 = match rows.first() {
        Some(row) => row.try_get("pruned_through").map_err(map_db)?,
        None => 0,
    };
    let changes = rows
        .iter()
        .filter(|row| matches!(row.try_get::<Option<i64>, _>("revision"), Ok(Some(_))))
        .map(decode_change)
        .collect::<StoreResult<_>>()?;
    Ok(LogPage {
        pruned_through,
        changes,
    })
}

pub(super) fn decode_change(row: &PgRow) -> StoreResult<ChangeRecord> {
    let kind: String = row.try_get("kind").map_err(map_db)?;
    let fields: serde_json::Value = row.try_get("changed_fields").map_err(map_db)?;
    Ok(ChangeRecord {
        revision: row.try_get("revision").map_err(map_db)?,
        event_id: row.try_get("event_id").map_err(map_db)?,
        directory_id: DirectoryId(row.try_get("directory_id").map_err(map_db)?),
        kind: kind
            .parse()
            .map_err(|e: String| StoreError::Internal(format!("stored change: {e}")))?,
        resource_id: row.try_get("resource_id").map_err(map_db)?,
        version: row.try_get("version").map_err(map_db)?,
        occurred_at: row
            .try_get::<DateTime<Utc>, _>("occurred_at")
            .map_err(map_db)?,
        payload: row.try_get("payload").map_err(map_db)?,
        changed_fields: serde_json::from_value(fields).map_err(json_error)?,
    })
}

/// Deletes the prefix of the log up to the newest change that is older than
/// `keep_secs` and at or below `stable_head` (a prefix, so a cursor is either
/// complete or expired), recording the new pruned-through in one statement.
pub(crate) async fn prune(
    conn: &mut PgConnection,
    keep_secs: i64,
    stable_head: i64,
) -> StoreResult<i64> {
    let pruned: i64 = sqlx::query_scalar(
        "WITH cutoff AS ( \
            SELECT COALESCE(max(revision), 0) AS r FROM changes \
             WHERE revision <= $1 AND occurred_at < now() - make_interval(secs => $2)), \
         doomed AS (DELETE FROM changes WHERE revision <= (SELECT r FROM cutoff) RETURNING 1) \
         UPDATE change_log_state SET pruned_through = GREATEST(pruned_through, (SELECT r FROM cutoff)) \
         RETURNING pruned_through",
    )
    .bind(stable_head)
    .bind(keep_secs as f64)
    .fetch_one(conn)
    .await
    .map_err(map_db)?;
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn xids_are_widened_within_the_current_epoch() {
        use super::full_xid;
        let epoch = 3i64 << 32;
        assert_eq!(full_xid(500, epoch + 1000), epoch + 500);
        // Just before an epoch boundary, a small xid belongs to the next epoch.
        assert_eq!(full_xid(5, epoch + (1 << 32) - 10), epoch + (1 << 32) + 5);
        // Just after it, a large xid belongs to the previous one.
        assert_eq!(full_xid((1 << 32) - 5, epoch + 3), epoch - 5);
    }
}
