//! Completes migration `0003_user_name_key`: fills `users.user_name_key`
//! for existing rows (the key is computed in Rust, so SQL cannot fill it),
//! then moves userName uniqueness and the userName indexes onto it.

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::errors::map_db;
use crate::error::{StoreError, StoreResult};

/// Rows keyed per statement.
const BATCH: i64 = 5_000;

/// Runs once: afterwards the column is NOT NULL and this returns at once.
/// One transaction holding a lock that blocks writers of `users` (not
/// readers), so rows written meanwhile by replicas of an older version are
/// keyed too. Runs on the migration connection, under the migration lock,
/// so two pods never rekey at once and a one-connection pool suffices.
pub(super) async fn finish_user_name_key(conn: &mut PgConnection) -> StoreResult<()> {
    let done: bool = sqlx::query_scalar(
        "SELECT attnotnull FROM pg_attribute \
         WHERE attrelid = 'users'::regclass AND attname = 'user_name_key'",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(map_db)?;
    if done {
        return Ok(());
    }
    let mut tx = conn.begin().await.map_err(map_db)?;
    sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .map_err(map_db)?;
    fill_keys(&mut tx).await?;
    check_no_duplicates(&mut tx).await?;
    for statement in [
        "CREATE UNIQUE INDEX users_user_name_fold ON users (directory_id, user_name_key)",
        "ALTER TABLE users ALTER COLUMN user_name_key SET NOT NULL",
        "DROP INDEX IF EXISTS users_user_name_key",
        "DROP INDEX IF EXISTS users_user_name_trgm",
        "DROP INDEX IF EXISTS users_user_name_prefix",
        // The constraint name the store maps to a userName conflict.
        "ALTER INDEX users_user_name_fold RENAME TO users_user_name_key",
        "CREATE INDEX users_user_name_key_trgm ON users USING gin (user_name_key gin_trgm_ops)",
    ] {
        sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .map_err(map_db)?;
    }
    tx.commit().await.map_err(map_db)
}

async fn fill_keys(conn: &mut PgConnection) -> StoreResult<()> {
    let mut after = Uuid::nil();
    loop {
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, user_name FROM users WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(BATCH)
                .fetch_all(&mut *conn)
                .await
                .map_err(map_db)?;
        let Some((last, _)) = rows.last() else {
            return Ok(());
        };
        after = *last;
        let (ids, keys): (Vec<Uuid>, Vec<String>) = rows
            .into_iter()
            .map(|(id, name)| (id, roster_scim::text::fold(&name)))
            .unzip();
        sqlx::query(
            "UPDATE users SET user_name_key = k.key \
             FROM unnest($1::uuid[], $2::text[]) AS k(id, key) WHERE users.id = k.id",
        )
        .bind(&ids)
        .bind(&keys)
        .execute(&mut *conn)
        .await
        .map_err(map_db)?;
    }
}

/// Names equal under normalization but different before (NFC vs NFD) were
/// two users; the unique index cannot be built until an operator renames
/// one. Fails the migration with a message saying so.
async fn check_no_duplicates(conn: &mut PgConnection) -> StoreResult<()> {
    let clashes: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT directory_id, min(user_name) FROM users \
         GROUP BY directory_id, user_name_key HAVING count(*) > 1 LIMIT 10",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(map_db)?;
    if clashes.is_empty() {
        return Ok(());
    }
    for (directory, user_name) in &clashes {
        tracing::error!(
            %directory,
            user_name,
            "users whose userNames are equal under Unicode normalization and case; rename all but one and restart"
        );
    }
    Err(StoreError::Internal(
        "migration failed: some userNames are equal under Unicode normalization (see the log)"
            .into(),
    ))
}
