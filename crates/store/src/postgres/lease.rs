//! Leases on a row (a webhook endpoint, a pulled directory): the one replica
//! that may work for it until the lease runs out.

use std::time::Duration;

use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::PgStore;
use super::errors::map_db;
use crate::error::StoreResult;

/// A leasable table: its name, key column and the columns a taken lease
/// returns.
pub(super) struct Leasable {
    pub table: &'static str,
    pub key: &'static str,
    pub columns: &'static str,
}

impl PgStore {
    /// Takes (or renews) the lease of row `id` for `owner` for `ttl`, if it
    /// is free, expired or already `owner`'s; returns the row when taken.
    /// The row lock of the UPDATE serializes racing replicas; the loser
    /// re-evaluates the WHERE clause against the winner's row and matches
    /// nothing.
    pub(super) async fn take_lease<T>(
        &self,
        row: &Leasable,
        id: Uuid,
        owner: &str,
        ttl: Duration,
        decode: fn(&PgRow) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let Leasable {
            table,
            key,
            columns,
        } = row;
        let sql = format!(
            "UPDATE {table} SET lease_owner = $2, lease_until = now() + make_interval(secs => $3) \
             WHERE {key} = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < now()) \
             RETURNING {columns}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(owner)
            .bind(ttl.as_secs_f64());
        let taken = query.fetch_optional(&self.pool).await.map_err(map_db)?;
        taken.as_ref().map(decode).transpose()
    }

    /// Gives the lease of row `id` back, if `owner` still holds it.
    pub(super) async fn release_lease(
        &self,
        row: &Leasable,
        id: Uuid,
        owner: &str,
    ) -> StoreResult<()> {
        let Leasable { table, key, .. } = row;
        let sql = format!(
            "UPDATE {table} SET lease_owner = NULL, lease_until = NULL \
             WHERE {key} = $1 AND lease_owner = $2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(map_db)?;
        Ok(())
    }
}
