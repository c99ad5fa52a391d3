//! Webhook endpoints, their delivery leases and attempts. Every write runs
//! on the single writer connection (`BEGIN IMMEDIATE`), so a lease is taken
//! by exactly one caller without row locks.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{Col, id_text, time_text};
use super::errors::map_db;
use super::lease::Leasable;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::rows;
use crate::webhooks::{ATTEMPT_COLUMNS, COLUMNS, kinds_text, parse_kinds};
use crate::write::{Backend, Webhooks};

/// Webhook endpoints, leased for delivery.
const ENDPOINTS: Leasable = Leasable {
    table: "webhook_endpoints",
    key: "id",
    columns: COLUMNS,
};

#[async_trait]
impl Webhooks for SqliteStore {
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook> {
        let mut tx = self.begin().await?;
        let now = time_text(tx.now);
        let sql = format!(
            "INSERT INTO webhook_endpoints (id, directory_id, url, kinds, description, enabled, \
               secret, cursor, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(new.id.0))
            .bind(new.directory_id.map(|d| id_text(d.0)))
            .bind(&new.url)
            .bind(kinds_text(&new.kinds))
            .bind(&new.description)
            .bind(new.enabled)
            .bind(&new.sealed_secret)
            .bind(new.cursor)
            .bind(&now)
            .bind(&now);
        let created = rows::one(query, tx.conn(), "webhook endpoint", decode).await?;
        self.commit(tx).await?;
        Ok(created)
    }

    async fn get_webhook(&self, id: WebhookId) -> StoreResult<Webhook> {
        let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE id = ?");
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id_text(id.0));
        rows::one(query, &self.readers, "webhook endpoint", decode).await
    }

    async fn list_webhooks(&self, dir: Option<DirectoryId>) -> StoreResult<Vec<Webhook>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_endpoints \
             WHERE ?1 IS NULL OR directory_id = ?1 OR directory_id IS NULL \
             ORDER BY created_seq"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(dir.map(|d| id_text(d.0)));
        rows::all(query, &self.readers, decode).await
    }

    async fn update_webhook(&self, id: WebhookId, u: WebhookUpdate) -> StoreResult<Webhook> {
        let sql = format!(
            "UPDATE webhook_endpoints SET \
               url = COALESCE(?2, url), kinds = COALESCE(?3, kinds), \
               description = COALESCE(?4, description), enabled = COALESCE(?5, enabled), \
               disabled_reason = CASE WHEN ?5 THEN NULL ELSE disabled_reason END, \
               generation = generation + 1, updated_at = ?6 \
             WHERE id = ?1 RETURNING {COLUMNS}"
        );
        self.write_one(sql, |q, now| {
            q.bind(id_text(id.0))
                .bind(u.url)
                .bind(u.kinds.as_deref().map(kinds_text))
                .bind(u.description)
                .bind(u.enabled)
                .bind(now)
        })
        .await
    }

    async fn rotate_webhook_secret(
        &self,
        id: WebhookId,
        sealed_secret: Vec<u8>,
        previous_until: DateTime<Utc>,
    ) -> StoreResult<Webhook> {
        let sql = format!(
            "UPDATE webhook_endpoints SET previous_secret = secret, secret = ?2, \
               previous_secret_until = ?3, generation = generation + 1, updated_at = ?4 \
             WHERE id = ?1 RETURNING {COLUMNS}"
        );
        self.write_one(sql, |q, now| {
            q.bind(id_text(id.0))
                .bind(sealed_secret)
                .bind(time_text(previous_until))
                .bind(now)
        })
        .await
    }

    async fn delete_webhook(&self, id: WebhookId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?")
            .bind(id_text(id.0))
            .execute(tx.conn())
            .await
            .map_err(map_db)?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound("webhook endpoint"));
        }
        self.commit(tx).await
    }

    async fn reposition_webhook(&self, id: WebhookId, cursor: i64) -> StoreResult<Webhook> {
        let sql = format!(
            "UPDATE webhook_endpoints SET cursor = ?2, status = 'active', attempts = 0, \
               failing_since = NULL, next_attempt_at = NULL, generation = generation + 1, \
               updated_at = ?3 \
             WHERE id = ?1 RETURNING {COLUMNS}"
        );
        self.write_one(sql, |q, now| q.bind(id_text(id.0)).bind(cursor).bind(now))
            .await
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
        let mut tx = self.begin().await?;
        let now = time_text(tx.now);
        let updated = sqlx::query(
            "UPDATE webhook_endpoints SET cursor = ?4, attempts = ?5, failing_since = ?6, \
               next_attempt_at = ?7, status = ?8, \
               enabled = CASE WHEN ?9 IS NULL THEN enabled ELSE 0 END, \
               disabled_reason = COALESCE(?9, disabled_reason), updated_at = ?10 \
             WHERE id = ?1 AND lease_owner = ?2 AND generation = ?3",
        )
        .bind(id_text(id.0))
        .bind(owner)
        .bind(generation)
        .bind(p.cursor)
        .bind(p.attempts)
        .bind(p.failing_since.map(time_text))
        .bind(p.next_attempt_at.map(time_text))
        .bind(p.status.as_str())
        .bind(p.disable.as_deref())
        .bind(&now)
        .execute(tx.conn())
        .await
        .map_err(map_db)?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        if let Some(a) = &p.attempt {
            insert_attempt(tx.conn(), id, a, &now).await?;
        }
        self.commit(tx).await?;
        Ok(true)
    }

    async fn list_webhook_attempts(
        &self,
        id: WebhookId,
        limit: i64,
    ) -> StoreResult<Vec<WebhookAttempt>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE endpoint_id = ? \
             ORDER BY id DESC LIMIT ?"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(id.0))
            .bind(limit);
        rows::all(query, &self.readers, decode_attempt).await
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

impl SqliteStore {
    /// Runs one `UPDATE … RETURNING` of an endpoint in a write transaction;
    /// `bind` gets the statement and the transaction's time as text.
    async fn write_one(
        &self,
        sql: String,
        bind: impl FnOnce(SqliteQuery<'static>, String) -> SqliteQuery<'static>,
    ) -> StoreResult<Webhook> {
        let mut tx = self.begin().await?;
        let query = bind(sqlx::query(sqlx::AssertSqlSafe(sql)), time_text(tx.now));
        let written = rows::one(query, tx.conn(), "webhook endpoint", decode).await?;
        self.commit(tx).await?;
        Ok(written)
    }
}

/// Inserts the attempt and drops the endpoint's attempts beyond the newest
/// [`WEBHOOK_ATTEMPTS_KEPT`].
async fn insert_attempt(
    conn: &mut sqlx::SqliteConnection,
    id: WebhookId,
    a: &NewWebhookAttempt,
    now: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_attempts (endpoint_id, revision, event_id, status_code, \
           latency_ms, detail, succeeded, attempted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id_text(id.0))
    .bind(a.revision)
    .bind(&a.event_id)
    .bind(a.status_code)
    .bind(a.latency_ms)
    .bind(&a.detail)
    .bind(a.succeeded)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map_db)?;
    sqlx::query(
        "DELETE FROM webhook_attempts WHERE endpoint_id = ?1 AND id <= \
           (SELECT id FROM webhook_attempts WHERE endpoint_id = ?1 \
            ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )
    .bind(id_text(id.0))
    .bind(WEBHOOK_ATTEMPTS_KEPT)
    .execute(&mut *conn)
    .await
    .map_err(map_db)?;
    Ok(())
}

fn decode(row: &SqliteRow) -> StoreResult<Webhook> {
    let blob = |name: &str| -> StoreResult<Option<Vec<u8>>> {
        row.try_get(name)
            .map_err(|e| StoreError::Internal(format!("cannot decode column {name}: {e}")))
    };
    let directory = row.opt_text("directory_id")?;
    Ok(Webhook {
        id: WebhookId(row.id("id")?),
        directory_id: directory
            .map(|d| super::codec::parse_id(&d).map(DirectoryId))
            .transpose()?,
        url: row.text("url")?,
        kinds: parse_kinds(&row.text("kinds")?).map_err(StoreError::Internal)?,
        description: row.text("description")?,
        enabled: row.int("enabled")? != 0,
        disabled_reason: row.opt_text("disabled_reason")?,
        status: row.parsed("status")?,
        sealed_secret: blob("secret")?.unwrap_or_default(),
        sealed_previous_secret: blob("previous_secret")?,
        previous_secret_until: row.opt_time("previous_secret_until")?,
        cursor: row.int("cursor")?,
        attempts: i32::try_from(row.int("attempts")?).unwrap_or(i32::MAX),
        failing_since: row.opt_time("failing_since")?,
        next_attempt_at: row.opt_time("next_attempt_at")?,
        generation: row.int("generation")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_until: row.opt_time("lease_until")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn decode_attempt(row: &SqliteRow) -> StoreResult<WebhookAttempt> {
    let status: Option<i64> = row
        .try_get("status_code")
        .map_err(|e| StoreError::Internal(format!("cannot decode column status_code: {e}")))?;
    Ok(WebhookAttempt {
        attempt: NewWebhookAttempt {
            revision: row.int("revision")?,
            event_id: row.text("event_id")?,
            status_code: status.map(|s| i32::try_from(s).unwrap_or(i32::MAX)),
            latency_ms: row.int("latency_ms")?,
            detail: row.text("detail")?,
            succeeded: row.int("succeeded")? != 0,
        },
        attempted_at: row.time("attempted_at")?,
    })
}
