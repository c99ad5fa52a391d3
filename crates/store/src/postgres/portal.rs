//! The audit trail of the admin portal: PostgreSQL's own way to record it
//! (the rest of the portal's tables is `crate::portal`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::errors::map_db;
use crate::error::StoreResult;
use crate::portal::NewActivity;

/// [`crate::PortalStore::record_activity`] of a non-empty batch.
pub(super) async fn record_activity(pool: &PgPool, entries: &[NewActivity]) -> StoreResult<u64> {
    let column = |f: fn(&NewActivity) -> Option<String>| -> Vec<Option<String>> {
        entries.iter().map(f).collect()
    };
    // One statement for the whole batch: the gateway sends requests in
    // batches so the audit trail costs one insert per batch, not one per
    // SCIM request.
    let sql = "INSERT INTO activity (directory_id, at, request_id, method, path, status, \
             scim_type, detail, user_agent, client_address, resource_type, resource_id, \
             revision, duration_ms, events) \
             SELECT t.directory_id, t.at, t.request_id, t.method, t.path, t.status, t.scim_type, \
             t.detail, t.user_agent, t.client_address, t.resource_type, t.resource_id, \
             t.revision, t.duration_ms, t.events \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], \
             $6::int4[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
             $12::text[], $13::int8[], $14::int8[], $15::text[]) WITH ORDINALITY AS t(directory_id, \
             at, request_id, method, path, status, scim_type, detail, user_agent, client_address, \
             resource_type, resource_id, revision, duration_ms, events, ord) \
             WHERE EXISTS (SELECT 1 FROM directories d WHERE d.id = t.directory_id) \
             ORDER BY t.ord";
    let done = sqlx::query(sql)
        .bind(
            entries
                .iter()
                .map(|e| e.directory_id.0)
                .collect::<Vec<Uuid>>(),
        )
        .bind(entries.iter().map(|e| e.at).collect::<Vec<DateTime<Utc>>>())
        .bind(column(|e| Some(e.request_id.clone())))
        .bind(column(|e| Some(e.method.clone())))
        .bind(column(|e| Some(e.path.clone())))
        .bind(entries.iter().map(|e| e.status).collect::<Vec<i32>>())
        .bind(column(|e| e.scim_type.clone()))
        .bind(column(|e| e.detail.clone()))
        .bind(column(|e| e.user_agent.clone()))
        .bind(column(|e| e.client_address.clone()))
        .bind(column(|e| e.resource_type.clone()))
        .bind(column(|e| e.resource_id.clone()))
        .bind(
            entries
                .iter()
                .map(|e| e.revision)
                .collect::<Vec<Option<i64>>>(),
        )
        .bind(entries.iter().map(|e| e.duration_ms).collect::<Vec<i64>>())
        .bind(column(|e| e.events.clone()))
        .execute(pool)
        .await
        .map_err(map_db)?;
    Ok(done.rows_affected())
}
