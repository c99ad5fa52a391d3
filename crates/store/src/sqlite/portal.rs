//! The audit trail of the admin portal: SQLite's own way to record it
//! (the rest of the portal's tables is `crate::portal`).

use super::SqliteStore;
use super::codec::{id_text, time_text};
use crate::error::StoreResult;
use crate::portal::NewActivity;
use crate::write::Backend;

/// [`crate::PortalStore::record_activity`] of a non-empty batch.
pub(super) async fn record_activity(
    store: &SqliteStore,
    entries: &[NewActivity],
) -> StoreResult<u64> {
    // One transaction for the batch: one turn of the single writer.
    let mut tx = store.begin().await?;
    let mut recorded = 0;
    for e in entries {
        recorded += tx
            .changed(
                sqlx::query(
                    "INSERT INTO activity (directory_id, at, request_id, method, path, status, \
                     scim_type, detail, user_agent, client_address, resource_type, resource_id, \
                     revision, duration_ms, events) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15 \
                     WHERE EXISTS (SELECT 1 FROM directories WHERE id = ?1)",
                )
                .bind(id_text(e.directory_id.0))
                .bind(time_text(e.at))
                .bind(&e.request_id)
                .bind(&e.method)
                .bind(&e.path)
                .bind(e.status)
                .bind(e.scim_type.as_deref())
                .bind(e.detail.as_deref())
                .bind(e.user_agent.as_deref())
                .bind(e.client_address.as_deref())
                .bind(e.resource_type.as_deref())
                .bind(e.resource_id.as_deref())
                .bind(e.revision)
                .bind(e.duration_ms)
                .bind(e.events.as_deref()),
            )
            .await?;
    }
    store.commit(tx).await?;
    Ok(recorded)
}
