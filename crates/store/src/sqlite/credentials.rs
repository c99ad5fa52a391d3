//! Service credentials: scoped secrets of internal gRPC callers.

use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{Col, id_text, time_text};
use super::errors::map_db;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::rows;
use crate::write::{Backend, Credentials};

const COLUMNS: &str = "id, name, scope, prefix, created_at, revoked_at";

#[async_trait]
impl Credentials for SqliteStore {
    async fn create_credential(&self, new: NewCredential) -> StoreResult<Credential> {
        let credential = Credential {
            id: CredentialId::new(),
            name: new.name,
            scope: new.scope,
            prefix: new.prefix,
            created_at: Utc::now(),
            revoked_at: None,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO service_credentials (id, name, scope, prefix, hash, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id_text(credential.id.0))
        .bind(&credential.name)
        .bind(credential.scope.as_str())
        .bind(&credential.prefix)
        .bind(&new.hash[..])
        .bind(time_text(credential.created_at))
        .execute(tx.conn())
        .await
        .map_err(map_db)?;
        self.commit(tx).await?;
        Ok(credential)
    }

    async fn list_credentials(&self, include_revoked: bool) -> StoreResult<Vec<Credential>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM service_credentials WHERE (? OR revoked_at IS NULL) \
             ORDER BY created_seq"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(include_revoked);
        rows::all(query, &self.readers, decode).await
    }

    async fn revoke_credential(&self, id: CredentialId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let found = sqlx::query(
            "UPDATE service_credentials SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        )
        .bind(time_text(tx.now))
        .bind(id_text(id.0))
        .execute(tx.conn())
        .await
        .map_err(map_db)?
        .rows_affected();
        if found == 0 {
            return Err(StoreError::NotFound("credential"));
        }
        self.commit(tx).await?;
        Ok(())
    }

    async fn find_credential(&self, hash: [u8; 32]) -> StoreResult<Option<(Credential, [u8; 32])>> {
        rows::live_secret(&self.readers, "service_credentials", COLUMNS, &hash, decode).await
    }
}

fn decode(row: &SqliteRow) -> StoreResult<Credential> {
    Ok(Credential {
        id: CredentialId(row.id("id")?),
        name: row.text("name")?,
        scope: row.parsed("scope")?,
        prefix: row.text("prefix")?,
        created_at: row.time("created_at")?,
        revoked_at: row.opt_time("revoked_at")?,
    })
}
