//! Webhook delivery progress: PostgreSQL's own way to record it.

use sqlx::Row;
use sqlx::postgres::PgPool;

use super::errors::map_db;
use crate::error::StoreResult;
use crate::model::*;
use crate::write::ProgressWrite;

/// Records the lease holder's progress ([`crate::Store::record_webhook_progress`]).
pub(super) async fn record_progress(pool: &PgPool, of: ProgressWrite<'_>) -> StoreResult<bool> {
    let p = of.progress;
    // Runs after every delivery, so one statement (one round trip, its
    // own transaction) does it all: the guarded UPDATE, the attempt's
    // INSERT only when the UPDATE matched, and the pruning.
    let attempt = p.attempt.as_ref();
    let query = sqlx::query(RECORD_PROGRESS)
        .bind(of.id.0)
        .bind(of.owner)
        .bind(of.generation)
        .bind(p.cursor)
        .bind(p.attempts)
        .bind(p.failing_since)
        .bind(p.next_attempt_at)
        .bind(p.status.as_str())
        .bind(p.disable.as_deref())
        .bind(attempt.is_some())
        .bind(attempt.map_or(0, |a| a.revision))
        .bind(attempt.map_or("", |a| a.event_id.as_str()))
        .bind(attempt.and_then(|a| a.status_code))
        .bind(attempt.map_or(0, |a| a.latency_ms))
        .bind(attempt.map_or("", |a| a.detail.as_str()))
        .bind(attempt.is_some_and(|a| a.succeeded))
        .bind(WEBHOOK_ATTEMPTS_KEPT - 1);
    let updated: i64 = query
        .fetch_one(pool)
        .await
        .map_err(map_db)?
        .try_get(0)
        .map_err(map_db)?;
    Ok(updated > 0)
}

/// The lease holder's progress, in one statement:
/// - `settings` turns off waiting for the WAL flush for this statement's
///   own transaction: progress is written after every delivery, and
///   waiting for a disk flush each time would cap an endpoint at one event
///   per flush. A database crash can then lose the last few progress
///   writes, which only moves cursors back (those events are delivered
///   again): at least once still holds. A replica crash loses nothing.
/// - `progressed`: the UPDATE, only while `$2` holds the lease at
///   generation `$3`;
/// - `attempt`: the attempt, only when there is one and the UPDATE matched;
/// - `pruned`: the endpoint's attempts beyond the newest kept (the DELETE
///   sees the rows before the INSERT, one snapshot, so it keeps one fewer
///   of them; both are index range scans on (endpoint_id, id)).
const RECORD_PROGRESS: &str = "\
WITH settings AS (SELECT set_config('synchronous_commit', 'off', true)), \
progressed AS ( \
  UPDATE webhook_endpoints SET cursor = $4, attempts = $5, failing_since = $6, \
    next_attempt_at = $7, status = $8, \
    enabled = CASE WHEN $9::text IS NULL THEN enabled ELSE false END, \
    disabled_reason = COALESCE($9, disabled_reason), updated_at = now() \
  WHERE id = $1 AND lease_owner = $2 AND generation = $3 AND EXISTS (SELECT 1 FROM settings) \
  RETURNING id), \
attempt AS ( \
  INSERT INTO webhook_attempts \
    (endpoint_id, revision, event_id, status_code, latency_ms, detail, succeeded) \
  SELECT id, $11, $12, $13, $14, $15, $16 FROM progressed WHERE $10 \
  RETURNING id), \
pruned AS ( \
  DELETE FROM webhook_attempts WHERE endpoint_id = $1 AND EXISTS (SELECT 1 FROM attempt) \
    AND id <= (SELECT id FROM webhook_attempts WHERE endpoint_id = $1 \
               ORDER BY id DESC OFFSET $17 LIMIT 1)) \
SELECT count(*) FROM progressed";

/// [`RECORD_PROGRESS_BATCH`]: the ids of the endpoints written.
pub(super) async fn progress_at_once(
    pool: &PgPool,
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
        .bind(all(batch, |p| p.disable.clone()))
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
    let rows = query.fetch_all(pool).await.map_err(map_db)?;
    rows.iter()
        .map(|row| row.try_get::<uuid::Uuid, _>(0).map_err(map_db))
        .collect()
}

/// [`RECORD_PROGRESS`] for several endpoints (each at most once), every
/// column an array of one entry per endpoint (`$1` is the owner): one
/// round trip, one transaction and one plan for all of them. The pruning,
/// only for the endpoints that ask for it (`prune`), finds each one's
/// oldest kept attempt once (`kept`), not per row.
const RECORD_PROGRESS_BATCH: &str = "\
WITH settings AS (SELECT set_config('synchronous_commit', 'off', true)), \
input AS ( \
  SELECT * FROM unnest($2::uuid[], $3::int8[], $4::int8[], $5::int4[], $6::timestamptz[], \
    $7::timestamptz[], $8::text[], $9::text[], $10::bool[], $11::int8[], $12::text[], \
    $13::int4[], $14::int8[], $15::text[], $16::bool[], $18::bool[]) \
  AS i(id, generation, cursor, attempts, failing_since, next_attempt_at, status, disable, \
    has_attempt, revision, event_id, status_code, latency_ms, detail, succeeded, prune)), \
progressed AS ( \
  UPDATE webhook_endpoints e SET cursor = i.cursor, attempts = i.attempts, \
    failing_since = i.failing_since, next_attempt_at = i.next_attempt_at, status = i.status, \
    enabled = CASE WHEN i.disable IS NULL THEN e.enabled ELSE false END, \
    disabled_reason = COALESCE(i.disable, e.disabled_reason), updated_at = now() \
  FROM input i \
  WHERE e.id = i.id AND e.lease_owner = $1 AND e.generation = i.generation \
    AND EXISTS (SELECT 1 FROM settings) \
  RETURNING e.id), \
attempt AS ( \
  INSERT INTO webhook_attempts \
    (endpoint_id, revision, event_id, status_code, latency_ms, detail, succeeded) \
  SELECT i.id, i.revision, i.event_id, i.status_code, i.latency_ms, i.detail, i.succeeded \
  FROM input i JOIN progressed p ON p.id = i.id WHERE i.has_attempt \
  RETURNING endpoint_id), \
kept AS ( \
  SELECT a.endpoint_id, (SELECT id FROM webhook_attempts o WHERE o.endpoint_id = a.endpoint_id \
                         ORDER BY id DESC OFFSET $17 LIMIT 1) AS oldest \
  FROM attempt a JOIN input i ON i.id = a.endpoint_id WHERE i.prune), \
pruned AS ( \
  DELETE FROM webhook_attempts w USING kept k \
  WHERE w.endpoint_id = k.endpoint_id AND w.id <= k.oldest) \
SELECT id FROM progressed";
