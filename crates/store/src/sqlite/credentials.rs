//! Service credentials: scoped secrets of internal gRPC callers.

use async_trait::async_trait;
use chrono::Utc;

use super::SqliteStore;
use super::codec::{id_text, time_text};
use crate::credentials;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::write::{Backend, Credentials};

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
        tx.execute(
            sqlx::query(
                "INSERT INTO service_credentials (id, name, scope, prefix, hash, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(id_text(credential.id.0))
            .bind(&credential.name)
            .bind(credential.scope.as_str())
            .bind(&credential.prefix)
            .bind(&new.hash[..])
            .bind(time_text(credential.created_at)),
        )
        .await?;
        self.commit(tx).await?;
        Ok(credential)
    }

    async fn list_credentials(&self, include_revoked: bool) -> StoreResult<Vec<Credential>> {
        credentials::list(self, include_revoked).await
    }

    async fn revoke_credential(&self, id: CredentialId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let revoke = sqlx::query(
            "UPDATE service_credentials SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        );
        let query = revoke.bind(time_text(tx.now)).bind(id_text(id.0));
        if tx.changed(query).await? == 0 {
            return Err(StoreError::NotFound("credential"));
        }
        self.commit(tx).await?;
        Ok(())
    }

    async fn find_credential(&self, hash: [u8; 32]) -> StoreResult<Option<(Credential, [u8; 32])>> {
        credentials::find(self, hash).await
    }
}
