//! Service credentials: scoped secrets of internal gRPC callers.

use async_trait::async_trait;
use sqlx::Postgres;

use super::PgStore;
use super::errors::map_db;
use crate::credentials::{self, CREDENTIAL_COLUMNS, decode_credential};
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::write::Credentials;

#[async_trait]
impl Credentials for PgStore {
    async fn create_credential(&self, new: NewCredential) -> StoreResult<Credential> {
        let sql = format!(
            "INSERT INTO service_credentials (id, name, scope, prefix, hash) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {CREDENTIAL_COLUMNS}"
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
        decode_credential::<Postgres>(&row)
    }

    async fn list_credentials(&self, include_revoked: bool) -> StoreResult<Vec<Credential>> {
        credentials::list(self, include_revoked).await
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
        credentials::find(self, hash).await
    }
}
