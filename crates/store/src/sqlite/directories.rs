//! Directories and their bearer tokens.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{Col, id_text};
use crate::error::StoreResult;
use crate::model::*;
use crate::rows;
use crate::write::Directories;

const DIRECTORY_COLUMNS: &str = "id, name, organization, provider, deprovision_policy, attribute_mappings, version, created_at, updated_at";
const TOKEN_COLUMNS: &str = "id, directory_id, name, prefix, created_at, revoked_at, last_used_at";

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
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(organization);
        rows::all(query, &self.readers, decode_directory).await
    }

    async fn tokens_of(&self, dir: DirectoryId, include_revoked: bool) -> StoreResult<Vec<Token>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE directory_id = ? AND (? OR revoked_at IS NULL) ORDER BY created_seq"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(dir.0))
            .bind(include_revoked);
        rows::all(query, &self.readers, decode_token).await
    }

    async fn find_token(&self, hash: [u8; 32]) -> StoreResult<Option<(Token, [u8; 32])>> {
        rows::live_secret(&self.readers, "tokens", TOKEN_COLUMNS, &hash, decode_token).await
    }
}

/// Loads a directory and its version, or fails with `NotFound("directory")`.
pub(super) async fn load_directory(
    conn: &mut SqliteConnection,
    id: DirectoryId,
) -> StoreResult<(Directory, i64)> {
    let sql = format!("SELECT {DIRECTORY_COLUMNS} FROM directories WHERE id = ?");
    let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id_text(id.0));
    crate::rows::one(query, conn, "directory", |row| {
        Ok((decode_directory(row)?, row.int("version")?))
    })
    .await
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

fn decode_token(row: &SqliteRow) -> StoreResult<Token> {
    Ok(Token {
        id: TokenId(row.id("id")?),
        directory_id: DirectoryId(row.id("directory_id")?),
        name: row.text("name")?,
        prefix: row.text("prefix")?,
        created_at: row.time("created_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        last_used_at: row.opt_time("last_used_at")?,
    })
}
