//! Webhook delivery progress: SQLite's own way to record it.

use super::SqliteStore;
use super::codec::{id_text, time_text};
use super::errors::map_db;
use crate::error::StoreResult;
use crate::model::*;
use crate::write::{Backend, ProgressWrite};

/// Records the lease holder's progress ([`crate::Store::record_webhook_progress`]):
/// the guarded UPDATE of the delivery state, the configuration when the
/// endpoint is turned off, then the attempt, in one turn of the single writer.
pub(super) async fn record_progress(
    store: &SqliteStore,
    of: ProgressWrite<'_>,
) -> StoreResult<bool> {
    let p = of.progress;
    let mut tx = store.begin().await?;
    let now = time_text(tx.now);
    let updated = sqlx::query(
        "UPDATE webhook_progress SET cursor = ?4, attempts = ?5, failing_since = ?6, \
               next_attempt_at = ?7, status = ?8, updated_at = ?9 \
             WHERE endpoint_id = ?1 AND lease_owner = ?2 AND generation = ?3",
    )
    .bind(id_text(of.id.0))
    .bind(of.owner)
    .bind(of.generation)
    .bind(p.cursor)
    .bind(p.attempts)
    .bind(p.failing_since.map(time_text))
    .bind(p.next_attempt_at.map(time_text))
    .bind(p.status.as_str())
    .bind(&now)
    .execute(tx.conn())
    .await
    .map_err(map_db)?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    if let Some(reason) = &p.disable {
        sqlx::query(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ?2, updated_at = ?3 \
             WHERE id = ?1",
        )
        .bind(id_text(of.id.0))
        .bind(reason)
        .bind(&now)
        .execute(tx.conn())
        .await
        .map_err(map_db)?;
    }
    if let Some(a) = &p.attempt {
        insert_attempt(tx.conn(), of.id, a, &now).await?;
    }
    store.commit(tx).await?;
    Ok(true)
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
