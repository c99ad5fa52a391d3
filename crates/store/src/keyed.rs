//! Rows of a table keyed by one column (pulled directories): read one, and
//! lease one, the lease being the one replica that may work for the row
//! until it runs out. (Webhook endpoints keep their lease on their delivery
//! state row instead: `webhooks.rs`.)

use std::time::Duration;

use sqlx::Pool;
use uuid::Uuid;

use crate::error::StoreResult;
use crate::rows::{Arg, Dialect, Sql};

/// A table: its name, key column, the columns a read returns, and what a
/// missing row is called.
pub(crate) struct Keyed {
    pub table: &'static str,
    pub key: &'static str,
    pub columns: &'static str,
    pub what: &'static str,
}

impl Keyed {
    /// The row of key `id`, or `NotFound(what)`.
    pub(crate) async fn get<DB: Dialect, T>(
        &self,
        readers: &Pool<DB>,
        id: Uuid,
        decode: fn(&DB::Row) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let Keyed {
            table,
            key,
            columns,
            what,
        } = self;
        let sql = format!("SELECT {columns} FROM {table} WHERE {key} = $1");
        Sql::new(sql).bind(id).one(readers, what, decode).await
    }

    /// Takes (or renews) the lease of row `id` for `owner` for `ttl`, if it
    /// is free, expired or already `owner`'s; returns the row when taken.
    /// One UPDATE: on PostgreSQL its row lock serializes racing replicas
    /// (the loser re-evaluates the WHERE clause against the winner's row
    /// and matches nothing); SQLite's single writer runs one at a time.
    pub(crate) async fn take<DB: Dialect, T>(
        &self,
        writer: &Pool<DB>,
        id: Uuid,
        owner: &str,
        ttl: Duration,
        decode: fn(&DB::Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let Keyed {
            table,
            key,
            columns,
            ..
        } = self;
        let sql = format!(
            "UPDATE {table} SET lease_owner = $2, lease_until = {until} \
             WHERE {key} = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < {now}) \
             RETURNING {columns}",
            until = DB::later(3),
            now = DB::later(4),
        );
        let take = Sql::new(sql).bind(id).bind(owner).bind(Arg::Later(ttl));
        take.bind(Arg::NOW).optional(writer, decode).await
    }

    /// Gives the lease of row `id` back, if `owner` still holds it.
    pub(crate) async fn release<DB: Dialect>(
        &self,
        writer: &Pool<DB>,
        id: Uuid,
        owner: &str,
    ) -> StoreResult<()> {
        let Keyed { table, key, .. } = self;
        let sql = format!(
            "UPDATE {table} SET lease_owner = NULL, lease_until = NULL \
             WHERE {key} = $1 AND lease_owner = $2"
        );
        Sql::new(sql).bind(id).bind(owner).execute(writer).await?;
        Ok(())
    }
}
