//! Directories and bearer tokens.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::PgStore;
use super::errors::{json_error, map_db};
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::rows;
use crate::write::Directories;

pub(super) const DIRECTORY_COLUMNS: &str = "id, name, organization, provider, deprovision_policy, attribute_mappings, version, created_at, updated_at";

pub(super) const TOKEN_COLUMNS: &str =
    "id, directory_id, name, prefix, created_at, revoked_at, last_used_at";

#[async_trait]
impl Directories for PgStore {
    async fn get_directory(&self, id: DirectoryId) -> StoreResult<Directory> {
        let mut conn = self.conn().await?;
        Ok(load_directory(&mut conn, id, false).await?.0)
    }

    async fn list_directories(&self, organization: Option<&str>) -> StoreResult<Vec<Directory>> {
        let sql = format!(
            "SELECT {DIRECTORY_COLUMNS} FROM directories \
             WHERE ($1::text IS NULL OR organization = $1) ORDER BY created_at, id"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(organization);
        rows::all(query, &self.pool, |r| Ok(decode_directory(r)?.0)).await
    }

    async fn tokens_of(&self, dir: DirectoryId, include_revoked: bool) -> StoreResult<Vec<Token>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE directory_id = $1 AND ($2 OR revoked_at IS NULL) \
             ORDER BY created_at, id"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dir.0)
            .bind(include_revoked);
        rows::all(query, &self.pool, decode_token).await
    }

    async fn find_token(&self, hash: [u8; 32]) -> StoreResult<Option<(Token, [u8; 32])>> {
        rows::live_secret(&self.pool, "tokens", TOKEN_COLUMNS, &hash, decode_token).await
    }
}

/// Loads a directory and its version, optionally locking its row (`FOR UPDATE`).
pub(super) async fn load_directory(
    conn: &mut PgConnection,
    id: DirectoryId,
    lock: bool,
) -> StoreResult<(Directory, i64)> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {DIRECTORY_COLUMNS} FROM directories WHERE id = $1{lock}");
    let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0);
    crate::rows::one(query, conn, "directory", decode_directory).await
}

pub(super) fn decode_directory(row: &PgRow) -> StoreResult<(Directory, i64)> {
    let provider: String = row.try_get("provider").map_err(map_db)?;
    let policy: String = row.try_get("deprovision_policy").map_err(map_db)?;
    let mappings: serde_json::Value = row.try_get("attribute_mappings").map_err(map_db)?;
    let directory = Directory {
        id: DirectoryId(row.try_get("id").map_err(map_db)?),
        name: row.try_get("name").map_err(map_db)?,
        organization: row.try_get("organization").map_err(map_db)?,
        provider: provider.parse().map_err(StoreError::Internal)?,
        deprovision_policy: policy.parse().map_err(StoreError::Internal)?,
        attribute_mappings: serde_json::from_value(mappings).map_err(json_error)?,
        created_at: row.try_get("created_at").map_err(map_db)?,
        updated_at: row.try_get("updated_at").map_err(map_db)?,
    };
    Ok((directory, row.try_get("version").map_err(map_db)?))
}

pub(super) fn decode_token(row: &PgRow) -> StoreResult<Token> {
    Ok(Token {
        id: TokenId(row.try_get("id").map_err(map_db)?),
        directory_id: DirectoryId(row.try_get("directory_id").map_err(map_db)?),
        name: row.try_get("name").map_err(map_db)?,
        prefix: row.try_get("prefix").map_err(map_db)?,
        created_at: row.try_get("created_at").map_err(map_db)?,
        revoked_at: row.try_get("revoked_at").map_err(map_db)?,
        last_used_at: row.try_get("last_used_at").map_err(map_db)?,
    })
}
