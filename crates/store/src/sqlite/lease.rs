//! Leases on a row (a webhook endpoint, a pulled directory): the one caller
//! that may work for it until the lease runs out. Every write runs on the
//! single writer connection, so a lease is taken by exactly one caller
//! without row locks.

use std::time::Duration;

use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::SqliteStore;
use super::codec::{id_text, time_text};
use super::errors::map_db;
use crate::error::StoreResult;
use crate::write::Backend;

/// A leasable table: its name, key column and the columns a taken lease
/// returns.
pub(super) struct Leasable {
    pub table: &'static str,
    pub key: &'static str,
    pub columns: &'static str,
}

impl SqliteStore {
    /// Takes (or renews) the lease of row `id` for `owner` for `ttl`, if it
    /// is free, expired or already `owner`'s; returns the row when taken.
    pub(super) async fn take_lease<T>(
        &self,
        row: &Leasable,
        id: Uuid,
        owner: &str,
        ttl: Duration,
        decode: fn(&SqliteRow) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let Leasable {
            table,
            key,
            columns,
        } = row;
        let mut tx = self.begin().await?;
        let now = tx.now;
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let sql = format!(
            "UPDATE {table} SET lease_owner = ?2, lease_until = ?3 \
             WHERE {key} = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until < ?4) \
             RETURNING {columns}"
        );
        let taken = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(id))
            .bind(owner)
            .bind(time_text(until))
            .bind(time_text(now))
            .fetch_optional(tx.conn())
            .await
            .map_err(map_db)?;
        let taken = taken.as_ref().map(decode).transpose()?;
        self.commit(tx).await?;
        Ok(taken)
    }

    /// Gives the lease of row `id` back, if `owner` still holds it.
    pub(super) async fn release_lease(
        &self,
        row: &Leasable,
        id: Uuid,
        owner: &str,
    ) -> StoreResult<()> {
        let Leasable { table, key, .. } = row;
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE {table} SET lease_owner = NULL, lease_until = NULL \
             WHERE {key} = ? AND lease_owner = ?"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(id))
            .bind(owner)
            .execute(tx.conn())
            .await
            .map_err(map_db)?;
        self.commit(tx).await
    }
}
