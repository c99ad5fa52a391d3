//! Service credentials: scoped secrets of internal gRPC callers.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::errors::map_db;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::rows;
use crate::write::Credentials;

const COLUMNS: &str = "id, name, scope, prefix, created_at, revoked_at";

#[async_trait]
impl Credentials for PgStore {
    async fn create_credential(&self, new: NewCredential) -> StoreResult<Credential> {
        let sql = format!(
            "INSERT INTO service_credentials (id, name, scope, prefix, hash) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(CredentialId::new().0)
            .bind(&new.name)
            .bind(new.scope.as_str())
            .bind(&new.prefix)
            .bind(&new.hash[..])
            .fetch_one(&self.pool)
            .await
            .map_err(map_db)?;
        decode(&row)
    }

    async fn list_credentials(&self, include_revoked: bool) -> StoreResult<Vec<Credential>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM service_credentials WHERE ($1 OR revoked_at IS NULL) \
             ORDER BY created_at, id"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(include_revoked);
        rows::all(query, &self.pool, decode).await
    }

    async fn revoke_credential(&self, id: CredentialId) -> StoreResult<()> {
        let found: Option<i32> = sqlx::query_scalar(
            "UPDATE service_credentials SET revoked_at = COALESCE(revoked_at, now()) \
             WHERE id = $1 RETURNING 1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_db)?;
        found.map(|_| ()).ok_or(StoreError::NotFound("credential"))
    }

    async fn find_credential(&self, hash: [u8; 32]) -> StoreResult<Option<(Credential, [u8; 32])>> {
        rows::live_secret(&self.pool, "service_credentials", COLUMNS, &hash, decode).await
    }
}

fn decode(row: &PgRow) -> StoreResult<Credential> {
    let scope: String = row.try_get("scope").map_err(map_db)?;
    Ok(Credential {
        id: CredentialId(row.try_get("id").map_err(map_db)?),
        name: row.try_get("name").map_err(map_db)?,
        scope: scope.parse().map_err(StoreError::Internal)?,
        prefix: row.try_get("prefix").map_err(map_db)?,
        created_at: row.try_get("created_at").map_err(map_db)?,
        revoked_at: row.try_get("revoked_at").map_err(map_db)?,
    })
}
