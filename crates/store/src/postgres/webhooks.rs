//! Webhook endpoints, their delivery leases and attempts.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::errors::map_db;
use super::lease::Leasable;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::rows;
use crate::webhooks::{ATTEMPT_COLUMNS, COLUMNS, kinds_text, parse_kinds};
use crate::write::{Webhooks, each_progress};

/// Webhook endpoints, leased for delivery.
const ENDPOINTS: Leasable = Leasable {
    table: "webhook_endpoints",
    key: "id",
    columns: COLUMNS,
};

#[async_trait]
impl Webhooks for PgStore {
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook> {
        let sql = format!(
            "INSERT INTO webhook_endpoints \
               (id, directory_id, url, kinds, description, enabled, secret, cursor) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new.id.0)
            .bind(new.directory_id.map(|d| d.0))
            .bind(&new.url)
            .bind(kinds_text(&new.kinds))
            .bind(&new.description)
            .bind(new.enabled)
            .bind(&new.sealed_secret)
            .bind(new.cursor);
        rows::one(query, &self.pool, "webhook endpoint", decode).await
    }

    async fn get_webhook(&self, id: WebhookId) -> StoreResult<Webhook> {
        let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1");
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0);
        rows::one(query, &self.pool, "webhook endpoint", decode).await
    }

    async fn list_webhooks(&self, dir: Option<DirectoryId>) -> StoreResult<Vec<Webhook>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_endpoints \
             WHERE $1::uuid IS NULL OR directory_id = $1 OR directory_id IS NULL \
             ORDER BY created_at, id"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(dir.map(|d| d.0));
        rows::all(query, &self.pool, decode).await
    }

    async fn update_webhook(&self, id: WebhookId, u: WebhookUpdate) -> StoreResult<Webhook> {
        let sql = format!(
            "UPDATE webhook_endpoints SET \
               url = COALESCE($2, url), kinds = COALESCE($3, kinds), \
               description = COALESCE($4, description), enabled = COALESCE($5, enabled), \
               disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END, \
               generation = generation + 1, updated_at = now() \
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(u.url)
            .bind(u.kinds.as_deref().map(kinds_text))
            .bind(u.description)
            .bind(u.enabled);
        rows::one(query, &self.pool, "webhook endpoint", decode).await
    }

    async fn rotate_webhook_secret(
        &self,
        id: WebhookId,
        sealed_secret: Vec<u8>,
        previous_until: DateTime<Utc>,
    ) -> StoreResult<Webhook> {
        let sql = format!(
            "UPDATE webhook_endpoints SET previous_secret = secret, secret = $2, \
               previous_secret_until = $3, generation = generation + 1, updated_at = now() \
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(sealed_secret)
            .bind(previous_until);
        rows::one(query, &self.pool, "webhook endpoint", decode).await
    }

    async fn delete_webhook(&self, id: WebhookId) -> StoreResult<()> {
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(map_db)?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound("webhook endpoint"));
        }
        Ok(())
    }

    async fn reposition_webhook(&self, id: WebhookId, cursor: i64) -> StoreResult<Webhook> {
        let sql = format!(
            "UPDATE webhook_endpoints SET cursor = $2, status = 'active', attempts = 0, \
               failing_since = NULL, next_attempt_at = NULL, generation = generation + 1, \
               updated_at = now() \
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(cursor);
        rows::one(query, &self.pool, "webhook endpoint", decode).await
    }

    async fn acquire_webhook_lease(
        &self,
        id: WebhookId,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Option<Webhook>> {
        self.take_lease(&ENDPOINTS, id.0, owner, ttl, decode).await
    }

    async fn release_webhook_lease(&self, id: WebhookId, owner: &str) -> StoreResult<()> {
        self.release_lease(&ENDPOINTS, id.0, owner).await
    }

    async fn record_webhook_progress(
        &self,
        id: WebhookId,
        owner: &str,
        generation: i64,
        p: &WebhookProgress,
    ) -> StoreResult<bool> {
        // Runs after every delivery, so one statement (one round trip, its
        // own transaction) does it all: the guarded UPDATE, the attempt's
        // INSERT only when the UPDATE matched, and the pruning.
        let attempt = p.attempt.as_ref();
        let query = sqlx::query(RECORD_PROGRESS)
            .bind(id.0)
            .bind(owner)
            .bind(generation)
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
            .fetch_one(&self.pool)
            .await
            .map_err(map_db)?
            .try_get(0)
            .map_err(map_db)?;
        Ok(updated > 0)
    }

    async fn record_webhooks_progress(
        &self,
        owner: &str,
        batch: &[EndpointProgress],
    ) -> Vec<StoreResult<bool>> {
        if batch.is_empty() {
            return Vec::new();
        }
        match self.progress_at_once(owner, batch).await {
            Ok(written) => batch
                .iter()
                .map(|e| Ok(written.contains(&e.id.0)))
                .collect(),
            // A value one endpoint cannot store fails the statement: each
            // then meets its own fate alone.
            Err(e) => {
                tracing::debug!(error = %e, "batched webhook progress failed; one by one");
                each_progress(self, owner, batch).await
            }
        }
    }

    async fn list_webhook_attempts(
        &self,
        id: WebhookId,
        limit: i64,
    ) -> StoreResult<Vec<WebhookAttempt>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE endpoint_id = $1 \
             ORDER BY id DESC LIMIT $2"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).bind(limit);
        rows::all(query, &self.pool, decode_attempt).await
    }
}

impl PgStore {
    /// [`RECORD_PROGRESS_BATCH`]: the ids of the endpoints written.
    async fn progress_at_once(
        &self,
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
        let rows = query.fetch_all(&self.pool).await.map_err(map_db)?;
        rows.iter()
            .map(|row| row.try_get::<uuid::Uuid, _>(0).map_err(map_db))
            .collect()
    }
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

fn decode(row: &PgRow) -> StoreResult<Webhook> {
    let get = |e| map_db(e);
    let kinds: String = row.try_get("kinds").map_err(get)?;
    let status: String = row.try_get("status").map_err(get)?;
    let directory: Option<uuid::Uuid> = row.try_get("directory_id").map_err(get)?;
    Ok(Webhook {
        id: WebhookId(row.try_get("id").map_err(get)?),
        directory_id: directory.map(DirectoryId),
        url: row.try_get("url").map_err(get)?,
        kinds: parse_kinds(&kinds).map_err(StoreError::Internal)?,
        description: row.try_get("description").map_err(get)?,
        enabled: row.try_get("enabled").map_err(get)?,
        disabled_reason: row.try_get("disabled_reason").map_err(get)?,
        status: status.parse().map_err(StoreError::Internal)?,
        sealed_secret: row.try_get("secret").map_err(get)?,
        sealed_previous_secret: row.try_get("previous_secret").map_err(get)?,
        previous_secret_until: row.try_get("previous_secret_until").map_err(get)?,
        cursor: row.try_get("cursor").map_err(get)?,
        attempts: row.try_get("attempts").map_err(get)?,
        failing_since: row.try_get("failing_since").map_err(get)?,
        next_attempt_at: row.try_get("next_attempt_at").map_err(get)?,
        generation: row.try_get("generation").map_err(get)?,
        lease_owner: row.try_get("lease_owner").map_err(get)?,
        lease_until: row.try_get("lease_until").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

fn decode_attempt(row: &PgRow) -> StoreResult<WebhookAttempt> {
    let get = |e| map_db(e);
    Ok(WebhookAttempt {
        attempt: NewWebhookAttempt {
            revision: row.try_get("revision").map_err(get)?,
            event_id: row.try_get("event_id").map_err(get)?,
            status_code: row.try_get("status_code").map_err(get)?,
            latency_ms: row.try_get("latency_ms").map_err(get)?,
            detail: row.try_get("detail").map_err(get)?,
            succeeded: row.try_get("succeeded").map_err(get)?,
        },
        attempted_at: row.try_get("attempted_at").map_err(get)?,
    })
}
