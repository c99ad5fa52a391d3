//! Webhook delivery progress: PostgreSQL's own way to record it.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Row};

use super::errors::map_db;
use crate::error::StoreResult;
use crate::model::*;
use crate::write::ProgressWrite;

/// Records the lease holder's progress ([`crate::Store::record_webhook_progress`])
/// on `pool`, the progress connections (see [`progress_pool`]).
pub(super) async fn record_progress(pool: &PgPool, of: ProgressWrite<'_>) -> StoreResult<bool> {
    if of.progress.disable.is_some() {
        return record_disabling(pool, of).await;
    }
    // Runs after every delivery, so one statement (one round trip, its
    // own transaction) does it all: the guarded UPDATE, the attempt's
    // INSERT only when the UPDATE matched, and the pruning.
    let updated: i64 = progress_statement(&of)
        .fetch_one(pool)
        .await
        .map_err(map_db)?
        .try_get(0)
        .map_err(map_db)?;
    Ok(updated > 0)
}

/// [`RECORD_PROGRESS`] with `of`'s values (its `disable` aside).
fn progress_statement<'a>(
    of: &ProgressWrite<'a>,
) -> sqlx::query::Query<'a, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let p = of.progress;
    let attempt = p.attempt.as_ref();
    sqlx::query(RECORD_PROGRESS)
        .bind(of.id.0)
        .bind(of.owner)
        .bind(of.generation)
        .bind(p.cursor)
        .bind(p.attempts)
        .bind(p.failing_since)
        .bind(p.next_attempt_at)
        .bind(p.status.as_str())
        .bind(attempt.is_some())
        .bind(attempt.map_or(0, |a| a.revision))
        .bind(attempt.map_or("", |a| a.event_id.as_str()))
        .bind(attempt.and_then(|a| a.status_code))
        .bind(attempt.map_or(0, |a| a.latency_ms))
        .bind(attempt.map_or("", |a| a.detail.as_str()))
        .bind(attempt.is_some_and(|a| a.succeeded))
        .bind(WEBHOOK_ATTEMPTS_KEPT - 1)
}

/// Progress that also turns the endpoint off (410 Gone): its configuration
/// row changes too, so this is a transaction of its own, which locks that
/// row first (the order of admin changes, which would otherwise deadlock
/// with it), then writes the progress as [`RECORD_PROGRESS`] does.
async fn record_disabling(pool: &PgPool, of: ProgressWrite<'_>) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(map_db)?;
    let locked = sqlx::query("SELECT 1 FROM webhook_endpoints WHERE id = $1 FOR UPDATE")
        .bind(of.id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_db)?;
    if locked.is_none() {
        return Ok(false);
    }
    let updated: i64 = progress_statement(&of)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_db)?
        .try_get(0)
        .map_err(map_db)?;
    if updated == 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now() \
         WHERE id = $1",
    )
    .bind(of.id.0)
    .bind(of.progress.disable.as_deref())
    .execute(&mut *tx)
    .await
    .map_err(map_db)?;
    tx.commit().await.map_err(map_db)?;
    Ok(true)
}

/// The connections progress is written on: apart from the main pool, with
/// two settings of their own (as startup options, so no statement pays for
/// them):
/// - `synchronous_commit = off`: progress is written after every
///   delivery, and waiting for a disk flush each time would cap an
///   endpoint at one event per flush. A database crash can then lose the
///   last few progress writes, which only moves cursors back (those events
///   are delivered again): at least once still holds. A replica crash
///   loses nothing. Nothing else runs on these connections: every other
///   write stays durable.
/// - `enable_seqscan = off`, `enable_bitmapscan = off`: `webhook_progress`
///   is a page or two, so the planner would scan it whole — and the cached
///   generic plan of the batch statement keeps doing so however the table
///   grows. A scan pins every page of the table while the other runner's
///   UPDATE wants to prune it; a plain index scan by primary key touches
///   only the statement's own endpoints' rows (every statement run here
///   finds its rows by a key).
pub(super) fn progress_pool(options: &PgConnectOptions) -> PgPool {
    let options = options.clone().options([
        ("synchronous_commit", "off"),
        ("enable_seqscan", "off"),
        ("enable_bitmapscan", "off"),
    ]);
    PgPoolOptions::new()
        .max_connections(PROGRESS_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_lazy_with(options)
}

/// Progress connections: the batch runners of delivery (two) write at once.
pub(super) const PROGRESS_CONNECTIONS: u32 = 2;

/// The lease holder's progress, in one statement (on a progress
/// connection: no WAL flush waited for, see [`progress_pool`]):
/// - `progressed`: the UPDATE of the delivery state row, by primary key,
///   only while `$2` holds the lease at generation `$3`;
/// - `attempt`: the attempt, only when there is one and the UPDATE matched;
/// - `pruned`: the endpoint's attempts beyond the newest kept (the DELETE
///   sees the rows before the INSERT, one snapshot, so it keeps one fewer
///   of them; both are index range scans on (endpoint_id, id)).
const RECORD_PROGRESS: &str = "\
WITH progressed AS ( \
  UPDATE webhook_progress SET cursor = $4, attempts = $5, failing_since = $6, \
    next_attempt_at = $7, status = $8, updated_at = now() \
  WHERE endpoint_id = $1 AND lease_owner = $2 AND generation = $3 \
  RETURNING endpoint_id), \
attempt AS ( \
  INSERT INTO webhook_attempts \
    (endpoint_id, revision, event_id, status_code, latency_ms, detail, succeeded) \
  SELECT endpoint_id, $10, $11, $12, $13, $14, $15 FROM progressed WHERE $9 \
  RETURNING id), \
pruned AS ( \
  DELETE FROM webhook_attempts WHERE endpoint_id = $1 AND EXISTS (SELECT 1 FROM attempt) \
    AND id <= (SELECT id FROM webhook_attempts WHERE endpoint_id = $1 \
               ORDER BY id DESC OFFSET $16 LIMIT 1)) \
SELECT count(*) FROM progressed";

/// [`RECORD_PROGRESS_BATCH`]: the ids of the endpoints written.
pub(super) async fn progress_at_once(
    conn: &mut PgConnection,
    owner: &str,
    batch: &[EndpointProgress],
) -> StoreResult<std::collections::HashSet<uuid::Uuid>> {
    fn all<T>(batch: &[EndpointProgress], f: impl Fn(&WebhookProgress) -> T) -> Vec<T> {
        batch.iter().map(|e| f(&e.progress)).collect()
    }
    fn of_attempt<'a, T>(
        batch: &'a [EndpointProgress],
        f: impl Fn(&'a NewWebhookAttempt) -> T,
    ) -> Vec<Option<T>> {
        batch
            .iter()
            .map(|e| e.progress.attempt.as_ref().map(&f))
            .collect()
    }
    let query = sqlx::query(RECORD_PROGRESS_BATCH)
        .bind(owner)
        .bind(batch.iter().map(|e| e.id.0).collect::<Vec<_>>())
        .bind(batch.iter().map(|e| e.generation).collect::<Vec<_>>())
        .bind(all(batch, |p| p.cursor))
        .bind(all(batch, |p| p.attempts))
        .bind(all(batch, |p| p.failing_since))
        .bind(all(batch, |p| p.next_attempt_at))
        .bind(all(batch, |p| p.status.as_str()))
        .bind(all(batch, |p| p.attempt.is_some()))
        .bind(of_attempt(batch, |a| a.revision))
        .bind(of_attempt(batch, |a| a.event_id.as_str()))
        .bind(
            of_attempt(batch, |a| a.status_code)
                .into_iter()
                .map(Option::flatten)
                .collect::<Vec<_>>(),
        )
        .bind(of_attempt(batch, |a| a.latency_ms))
        .bind(of_attempt(batch, |a| a.detail.as_str()))
        .bind(of_attempt(batch, |a| a.succeeded))
        .bind(WEBHOOK_ATTEMPTS_KEPT - 1)
        .bind(batch.iter().map(|e| e.prune).collect::<Vec<_>>());
    let rows = query.fetch_all(conn).await.map_err(map_db)?;
    rows.iter()
        .map(|row| row.try_get::<uuid::Uuid, _>(0).map_err(map_db))
        .collect()
}

/// [`RECORD_PROGRESS`] for several endpoints (each at most once, none
/// turned off: those go through [`record_progress`]), every column an
/// array of one entry per endpoint (`$1` is the owner): one round trip, one
/// transaction and one plan for all of them. The delivery state rows are
/// found by primary key (`= ANY($2)`: an index scan, also as the cached
/// generic plan, on a progress connection). The pruning, only for the
/// endpoints that ask for it (`prune`), finds each one's oldest kept
/// attempt once (`kept`), not per row; `kept` is materialized, so that
/// search (~100 index entries) runs only for the rows that asked for it,
/// whatever order the planner joins in (inlined into the DELETE, a plan
/// without hash joins ran it for every attempt before filtering).
const RECORD_PROGRESS_BATCH: &str = "\
WITH input AS ( \
  SELECT * FROM unnest($2::uuid[], $3::int8[], $4::int8[], $5::int4[], $6::timestamptz[], \
    $7::timestamptz[], $8::text[], $9::bool[], $10::int8[], $11::text[], \
    $12::int4[], $13::int8[], $14::text[], $15::bool[], $17::bool[]) \
  AS i(id, generation, cursor, attempts, failing_since, next_attempt_at, status, \
    has_attempt, revision, event_id, status_code, latency_ms, detail, succeeded, prune)), \
progressed AS ( \
  UPDATE webhook_progress p SET cursor = i.cursor, attempts = i.attempts, \
    failing_since = i.failing_since, next_attempt_at = i.next_attempt_at, status = i.status, \
    updated_at = now() \
  FROM input i \
  WHERE p.endpoint_id = ANY($2::uuid[]) AND p.endpoint_id = i.id AND p.lease_owner = $1 \
    AND p.generation = i.generation \
  RETURNING p.endpoint_id AS id), \
attempt AS ( \
  INSERT INTO webhook_attempts \
    (endpoint_id, revision, event_id, status_code, latency_ms, detail, succeeded) \
  SELECT i.id, i.revision, i.event_id, i.status_code, i.latency_ms, i.detail, i.succeeded \
  FROM input i JOIN progressed p ON p.id = i.id WHERE i.has_attempt \
  RETURNING endpoint_id), \
kept AS MATERIALIZED ( \
  SELECT a.endpoint_id, (SELECT id FROM webhook_attempts o WHERE o.endpoint_id = a.endpoint_id \
                         ORDER BY id DESC OFFSET $16 LIMIT 1) AS oldest \
  FROM attempt a JOIN input i ON i.id = a.endpoint_id WHERE i.prune), \
pruned AS ( \
  DELETE FROM webhook_attempts w USING kept k \
  WHERE w.endpoint_id = k.endpoint_id AND w.id <= k.oldest) \
SELECT id FROM progressed";

/// The plan of [`RECORD_PROGRESS_BATCH`] as a progress connection makes it
/// once it caches the generic plan (the one of a prepared statement after
/// its fifth run), as `EXPLAIN` prints it.
pub(super) async fn batch_generic_plan(pool: &PgPool) -> StoreResult<String> {
    let mut conn = pool.acquire().await.map_err(map_db)?;
    let args = ["'o'".to_owned()]
        .into_iter()
        .chain((2..=15).map(|_| "'{}'".to_owned()))
        .chain(["0".to_owned(), "'{}'".to_owned()])
        .collect::<Vec<_>>()
        .join(", ");
    let statements = [
        "SET plan_cache_mode = force_generic_plan".to_owned(),
        format!("PREPARE roster_progress_plan AS {RECORD_PROGRESS_BATCH}"),
    ];
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .map_err(map_db)?;
    }
    let explained = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
        "EXPLAIN EXECUTE roster_progress_plan({args})"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_db);
    sqlx::raw_sql("DEALLOCATE roster_progress_plan; RESET plan_cache_mode")
        .execute(&mut *conn)
        .await
        .map_err(map_db)?;
    Ok(explained?.join("\n"))
}
