//! Recomputes the stored uniqueness keys after the key function changed
//! (migration `0002_fold_keys_nfc`): the keys are computed in Rust, so a
//! SQL migration cannot rewrite them itself.

use sqlx::{SqliteConnection, SqlitePool};

use super::codec::fold_key;
use super::errors::map_db;
use crate::error::{StoreError, StoreResult};

/// `(table, name column, key column, SCIM attribute)` of every folded key.
const KEYS: [(&str, &str, &str, &str); 2] = [
    ("users", "user_name", "user_name_key", "userName"),
    ("groups", "display_name", "display_name_key", "displayName"),
];

/// Rewrites every key whose value changed, then drops the marker, in one
/// transaction. Does nothing when the marker is gone (already done).
pub(crate) async fn rekey_if_pending(writer: &SqlitePool) -> StoreResult<()> {
    let mut tx = writer.begin().await.map_err(map_db)?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'fold_keys_pending'",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(map_db)?;
    if pending == 0 {
        return Ok(());
    }
    for (table, column, key, attribute) in KEYS {
        rekey_table(&mut tx, table, column, key)
            .await
            .map_err(|e| duplicate_names(e, attribute))?;
    }
    sqlx::query("DROP TABLE fold_keys_pending")
        .execute(&mut *tx)
        .await
        .map_err(map_db)?;
    tx.commit().await.map_err(map_db)
}

async fn rekey_table(
    conn: &mut SqliteConnection,
    table: &str,
    column: &str,
    key: &str,
) -> StoreResult<()> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT created_seq, {column}, {key} FROM {table}"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_db)?;
    let changed: Vec<(i64, String)> = rows
        .into_iter()
        .filter_map(|(seq, name, old)| {
            let new = fold_key(&name);
            (new != old).then_some((seq, new))
        })
        .collect();
    // Two passes, so that a key taking another row's old key does not
    // collide with it before that row has moved too.
    let update = format!("UPDATE {table} SET {key} = ?2 WHERE created_seq = ?1");
    for (seq, _) in &changed {
        sqlx::query(sqlx::AssertSqlSafe(update.clone()))
            .bind(seq)
            .bind(format!("\u{1}rekey\u{1}{seq}"))
            .execute(&mut *conn)
            .await
            .map_err(map_db)?;
    }
    for (seq, new) in &changed {
        sqlx::query(sqlx::AssertSqlSafe(update.clone()))
            .bind(seq)
            .bind(new)
            .execute(&mut *conn)
            .await
            .map_err(map_db)?;
    }
    Ok(())
}

/// Two existing resources whose names differ only by Unicode normalization
/// cannot both keep their names: the operator must rename one.
fn duplicate_names(error: StoreError, attribute: &str) -> StoreError {
    match error {
        StoreError::Conflict(_) => {
            tracing::error!(
                attribute,
                "two resources of one directory have names equal under Unicode normalization and case; rename one and restart"
            );
            StoreError::Internal(format!(
                "migration failed: two {attribute}s of one directory are equal under Unicode normalization"
            ))
        }
        other => other,
    }
}
