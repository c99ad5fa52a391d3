//! Directories and their bearer tokens.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{Col, id_text, time_text};
use super::errors::map_db;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::write::{Backend, Directories};

const DIRECTORY_COLUMNS: &str = "id, name, organization, provider, deprovision_policy, attribute_mappings, version, created_at, updated_at";
const TOKEN_COLUMNS: &str =
    "id, directory_id, name, prefix, hash, created_at, revoked_at, last_used_at";

#[async_trait]
impl Directories for SqliteStore {
    async fn get_directory(&self, id: DirectoryId) -> StoreResult<Directory> {
        let mut conn = self.read_conn().await?;
        Ok(load_directory(&mut conn, id).await?.0)
    }

    async fn list_directories(&self, organization: Option<&str>) -> StoreResult<Vec<Directory>> {
        let sql = format!(
            "SELECT {DIRECTORY_COLUMNS} FROM directories WHERE (?1 IS NULL OR organization = ?1) ORDER BY created_seq"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(organization)
            .fetch_all(&self.readers)
            .await
            .map_err(map_db)?;
        rows.iter().map(decode_directory).collect()
    }

    async fn list_tokens(
        &self,
        directory: DirectoryId,
        include_revoked: bool,
    ) -> StoreResult<Vec<Token>> {
        let mut conn = self.read_conn().await?;
        load_directory(&mut conn, directory).await?;
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE directory_id = ? AND (? OR revoked_at IS NULL) ORDER BY created_seq"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(directory.0))
            .bind(include_revoked)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_db)?;
        rows.iter()
            .map(|row| decode_token(row).map(|(token, _)| token))
            .collect()
    }

    async fn revoke_token(&self, directory: DirectoryId, id: TokenId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let found = sqlx::query(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND directory_id = ?",
        )
        .bind(time_text(tx.now))
        .bind(id_text(id.0))
        .bind(id_text(directory.0))
        .execute(tx.conn())
        .await
        .map_err(map_db)?
        .rows_affected();
        if found == 0 {
            return Err(StoreError::NotFound("token"));
        }
        self.commit(tx).await?;
        Ok(())
    }

    async fn mark_token_used(&self, id: TokenId, at: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE tokens SET last_used_at = ? WHERE id = ? \
             AND (last_used_at IS NULL OR last_used_at < ?)",
        )
        .bind(time_text(at))
        .bind(id_text(id.0))
        .bind(time_text(at - crate::TOKEN_USE_GRANULARITY))
        .execute(tx.conn())
        .await
        .map_err(map_db)?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn find_token(&self, hash: [u8; 32]) -> StoreResult<Option<(Token, [u8; 32])>> {
        let sql =
            format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ? AND revoked_at IS NULL");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&hash[..])
            .fetch_optional(&self.readers)
            .await
            .map_err(map_db)?;
        row.as_ref().map(decode_token).transpose()
    }
}

/// Loads a directory and its version, or fails with `NotFound("directory")`.
pub(super) async fn load_directory(
    conn: &mut SqliteConnection,
    id: DirectoryId,
) -> StoreResult<(Directory, i64)> {
    let sql = format!("SELECT {DIRECTORY_COLUMNS} FROM directories WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(id.0))
        .fetch_optional(conn)
        .await
        .map_err(map_db)?
        .ok_or(StoreError::NotFound("directory"))?;
    Ok((decode_directory(&row)?, row.int("version")?))
}

fn decode_directory(row: &SqliteRow) -> StoreResult<Directory> {
    Ok(Directory {
        id: DirectoryId(row.id("id")?),
        name: row.text("name")?,
        organization: row.text("organization")?,
        provider: row.parsed("provider")?,
        deprovision_policy: row.parsed("deprovision_policy")?,
        attribute_mappings: row.json("attribute_mappings")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn decode_token(row: &SqliteRow) -> StoreResult<(Token, [u8; 32])> {
    use sqlx::Row;
    let hash = crate::error::stored_hash(
        row.try_get("hash")
            .map_err(|e| StoreError::Internal(format!("cannot decode column hash: {e}")))?,
    )?;
    let token = Token {
        id: TokenId(row.id("id")?),
        directory_id: DirectoryId(row.id("directory_id")?),
        name: row.text("name")?,
        prefix: row.text("prefix")?,
        created_at: row.time("created_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        last_used_at: row.opt_time("last_used_at")?,
    };
    Ok((token, hash))
}
