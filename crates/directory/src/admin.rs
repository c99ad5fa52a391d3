//! `AdminService`: directories and their bearer tokens.
//!
//! Token secrets are `rst_` followed by 43 base64url characters (32 random
//! bytes). Only their SHA-256 hash and an 8-character prefix are stored; a
//! secret is shown once, in the `CreateToken` response, and never logged.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use roster_proto::admin as pa;
use roster_proto::admin::{
    AuthenticateTokenRequest, AuthenticateTokenResponse, CreateDirectoryRequest,
    CreateDirectoryResponse, CreateServiceCredentialRequest, CreateServiceCredentialResponse,
    CreateTokenRequest, CreateTokenResponse, DeleteDirectoryRequest, DeleteDirectoryResponse,
    GetDirectoryRequest, GetDirectoryResponse, ListDirectoriesRequest, ListDirectoriesResponse,
    ListServiceCredentialsRequest, ListServiceCredentialsResponse, ListTokensRequest,
    ListTokensResponse, RevokeServiceCredentialRequest, RevokeServiceCredentialResponse,
    RevokeTokenRequest, RevokeTokenResponse, UpdateDirectoryRequest, UpdateDirectoryResponse,
};
use roster_store::{
    AttributeMapping, DirectoryId, DirectoryUpdate, NewCredential, NewDirectory, NewToken, Store,
    StoreResult, TokenId,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::backend::Backend;
use crate::convert;
use crate::credentials::CREDENTIAL_PREFIX;
use crate::error::{ServiceError, ServiceResult, parse_id};
use crate::mapping;
use crate::service::directory_id;
use crate::watch::ChangeHub;

mod reseal;
mod sources;
mod webhooks;

/// Prefix of every bearer token secret, so leaked tokens are recognisable
/// by secret scanners.
pub const TOKEN_PREFIX: &str = "rst_";
/// Characters of a secret kept in clear to recognise the token in lists.
const SHOWN_PREFIX_LEN: usize = 8;

/// The admin service: directories, bearer tokens and service credentials,
/// with no gRPC in it ([`crate::grpc`] puts it on the wire).
#[derive(Clone)]
pub struct AdminApi {
    backend: Backend,
    /// Webhook endpoint management; `None` without a sealing key.
    webhooks: Option<Arc<webhooks::WebhookAdmin>>,
    /// How long a portal session lasts after its link was opened.
    portal_session: std::time::Duration,
}

impl AdminApi {
    /// An admin service over `store`; writes wake `hub`'s watchers.
    pub fn new(store: Arc<dyn Store>, hub: Arc<ChangeHub>) -> Self {
        Self {
            backend: Backend::new(store, hub),
            webhooks: None,
            portal_session: crate::portal::DEFAULT_SESSION_TTL,
        }
    }

    /// Manages webhook endpoints with `config` (its sealing key seals their
    /// secrets); without a key, webhook calls fail with FAILED_PRECONDITION.
    pub fn with_webhooks(
        mut self,
        config: &crate::webhooks::WebhookConfig,
    ) -> Result<Self, crate::webhooks::DeliveryError> {
        self.webhooks = webhooks::WebhookAdmin::new(config)?.map(Arc::new);
        Ok(self)
    }

    /// Portal sessions last `ttl` after their link was opened.
    pub fn with_portal_session(mut self, ttl: std::time::Duration) -> Self {
        self.portal_session = ttl;
        self
    }

    pub(crate) fn portal_session(&self) -> std::time::Duration {
        self.portal_session
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.backend.store()
    }

    /// A directory write: announced like every change-log write, and the
    /// directory forgotten by this process's cache at once (other replicas
    /// forget it when the change reaches them).
    async fn write_directory<T>(
        &self,
        id: DirectoryId,
        op: impl Future<Output = StoreResult<T>>,
    ) -> ServiceResult<T> {
        let written = self.backend.write(op).await?;
        self.backend.hub().directories().forget(id);
        Ok(written)
    }

    pub async fn authenticate_token(
        &self,
        req: AuthenticateTokenRequest,
    ) -> ServiceResult<AuthenticateTokenResponse> {
        const REJECTED: ServiceError = ServiceError::Unauthenticated("invalid or revoked token");
        let presented = hash_secret(&req.secret);
        let Some((token, stored)) = self.store().find_token(presented).await? else {
            return Err(REJECTED);
        };
        // The store looked the hash up by equality already; comparing again in
        // constant time keeps the check independent of how the store indexes.
        if !bool::from(presented.ct_eq(&stored)) || token.revoked_at.is_some() {
            return Err(REJECTED);
        }
        self.record_use(&token).await;
        let directory = self.store().get_directory(token.directory_id).await?;
        Ok(AuthenticateTokenResponse {
            directory_id: token.directory_id.to_string(),
            token_id: token.id.to_string(),
            directory: Some(convert::directory(&directory)),
        })
    }

    /// Keeps `last_used_at` current to within the store's granularity: the
    /// common case (used within the last minute) writes nothing. A failed
    /// write must not fail the IdP's request, so it is only logged.
    async fn record_use(&self, token: &roster_store::Token) {
        let now = chrono::Utc::now();
        let fresh = token
            .last_used_at
            .is_some_and(|at| now - at < roster_store::TOKEN_USE_GRANULARITY);
        if fresh {
            return;
        }
        if let Err(error) = self.store().mark_token_used(token.id, now).await {
            tracing::warn!(%error, token_id = %token.id, "cannot record the token's last use");
        }
    }
}

/// A fresh token secret: `rst_` + base64url of 32 random bytes.
pub fn generate_secret() -> String {
    generate_secret_with(TOKEN_PREFIX)
}

/// `prefix` + base64url of 32 random bytes.
fn generate_secret_with(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A fresh secret starting with `prefix`, with what the store keeps of it:
/// the part shown in lists and the hash.
pub(crate) fn new_secret(prefix: &str) -> (String, String, [u8; 32]) {
    let secret = generate_secret_with(prefix);
    let shown = secret[..SHOWN_PREFIX_LEN].to_string();
    let hash = hash_secret(&secret);
    (secret, shown, hash)
}

/// The SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn mappings(list: &[pa::AttributeMapping]) -> ServiceResult<Vec<AttributeMapping>> {
    let mappings: Vec<AttributeMapping> = list
        .iter()
        .map(|m| AttributeMapping {
            source: m.source.clone(),
            target: m.target.clone(),
        })
        .collect();
    mapping::validate(&mappings)?;
    Ok(mappings)
}

fn provider(p: i32) -> ServiceResult<roster_store::ProviderKind> {
    convert::store_provider(p)
        .ok_or_else(|| ServiceError::InvalidArgument(format!("unknown provider {p}")))
}

fn deprovision(p: i32) -> ServiceResult<roster_store::DeprovisionPolicy> {
    convert::store_deprovision(p)
        .ok_or_else(|| ServiceError::InvalidArgument(format!("unknown deprovision policy {p}")))
}

fn required(value: &str, what: &str) -> ServiceResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::InvalidArgument(format!(
            "{what} must not be empty"
        )));
    }
    Ok(trimmed.to_string())
}

impl AdminApi {
    pub async fn create_directory(
        &self,
        req: CreateDirectoryRequest,
    ) -> ServiceResult<CreateDirectoryResponse> {
        let new = NewDirectory {
            name: required(&req.name, "name")?,
            organization: req.organization.trim().to_string(),
            provider: provider(req.provider)?,
            deprovision_policy: deprovision(req.deprovision_policy)?,
            attribute_mappings: mappings(&req.attribute_mappings)?,
        };
        let created = self
            .backend
            .write(self.store().create_directory(new))
            .await?;
        let directory = Some(convert::directory(&created));
        Ok(CreateDirectoryResponse { directory })
    }

    pub async fn get_directory(
        &self,
        req: GetDirectoryRequest,
    ) -> ServiceResult<GetDirectoryResponse> {
        let found = self.store().get_directory(directory_id(&req.id)?).await?;
        let directory = Some(convert::directory(&found));
        Ok(GetDirectoryResponse { directory })
    }

    pub async fn list_directories(
        &self,
        req: ListDirectoriesRequest,
    ) -> ServiceResult<ListDirectoriesResponse> {
        let organization = Some(req.organization.as_str()).filter(|o| !o.is_empty());
        let found = self.store().list_directories(organization).await?;
        let directories = found.iter().map(convert::directory).collect();
        Ok(ListDirectoriesResponse { directories })
    }

    pub async fn update_directory(
        &self,
        req: UpdateDirectoryRequest,
    ) -> ServiceResult<UpdateDirectoryResponse> {
        let id = directory_id(&req.id)?;
        let update = DirectoryUpdate {
            name: req
                .name
                .as_deref()
                .map(|n| required(n, "name"))
                .transpose()?,
            organization: req.organization.map(|o| o.trim().to_string()),
            provider: req.provider.map(provider).transpose()?,
            deprovision_policy: req.deprovision_policy.map(deprovision).transpose()?,
            attribute_mappings: if req.replace_attribute_mappings {
                Some(mappings(&req.attribute_mappings)?)
            } else {
                None
            },
        };
        let updated = self.store().update_directory(id, update);
        let directory = Some(convert::directory(
            &self.write_directory(id, updated).await?,
        ));
        Ok(UpdateDirectoryResponse { directory })
    }

    pub async fn delete_directory(
        &self,
        req: DeleteDirectoryRequest,
    ) -> ServiceResult<DeleteDirectoryResponse> {
        let id = directory_id(&req.id)?;
        self.write_directory(id, self.store().delete_directory(id))
            .await?;
        Ok(DeleteDirectoryResponse {})
    }

    pub async fn create_token(
        &self,
        req: CreateTokenRequest,
    ) -> ServiceResult<CreateTokenResponse> {
        let directory_id = directory_id(&req.directory_id)?;
        let (secret, prefix, hash) = new_secret(TOKEN_PREFIX);
        let new = NewToken {
            directory_id,
            name: req.name.trim().to_string(),
            prefix,
            hash,
        };
        let token = self.store().create_token(new).await?;
        tracing::info!(token = %token.id, prefix = %token.prefix, "token created");
        Ok(CreateTokenResponse {
            token: Some(convert::token(&token)),
            secret,
        })
    }

    pub async fn list_tokens(&self, req: ListTokensRequest) -> ServiceResult<ListTokensResponse> {
        let directory = directory_id(&req.directory_id)?;
        let found = self.store().list_tokens(directory, req.include_revoked);
        let tokens = found.await?.iter().map(convert::token).collect();
        Ok(ListTokensResponse { tokens })
    }

    pub async fn revoke_token(
        &self,
        req: RevokeTokenRequest,
    ) -> ServiceResult<RevokeTokenResponse> {
        let directory = directory_id(&req.directory_id)?;
        let token: TokenId = parse_id(&req.token_id, "token")?;
        self.store().revoke_token(directory, token).await?;
        Ok(RevokeTokenResponse {})
    }

    pub async fn create_service_credential(
        &self,
        req: CreateServiceCredentialRequest,
    ) -> ServiceResult<CreateServiceCredentialResponse> {
        let scope = pa::CredentialScope::try_from(req.scope)
            .ok()
            .and_then(convert::scope_from_proto)
            .ok_or_else(|| {
                ServiceError::InvalidArgument("scope must be read, gateway or admin".into())
            })?;
        let name = required(&req.name, "name")?;
        let (secret, prefix, hash) = new_secret(CREDENTIAL_PREFIX);
        let new = NewCredential {
            name,
            scope,
            prefix,
            hash,
        };
        let credential = self.store().create_credential(new).await?;
        tracing::info!(credential = %credential.id, prefix = %credential.prefix, scope = scope.as_str(), "service credential created");
        Ok(CreateServiceCredentialResponse {
            credential: Some(convert::credential(&credential)),
            secret,
        })
    }

    pub async fn list_service_credentials(
        &self,
        req: ListServiceCredentialsRequest,
    ) -> ServiceResult<ListServiceCredentialsResponse> {
        let found = self.store().list_credentials(req.include_revoked).await?;
        let credentials = found.iter().map(convert::credential).collect();
        Ok(ListServiceCredentialsResponse { credentials })
    }

    pub async fn revoke_service_credential(
        &self,
        req: RevokeServiceCredentialRequest,
    ) -> ServiceResult<RevokeServiceCredentialResponse> {
        let id = parse_id(&req.id, "credential")?;
        self.store().revoke_credential(id).await?;
        tracing::info!(credential = %id, "service credential revoked");
        Ok(RevokeServiceCredentialResponse {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_documented_shape() {
        let s = generate_secret();
        assert!(s.starts_with(TOKEN_PREFIX));
        assert_eq!(s.len(), TOKEN_PREFIX.len() + 43);
        assert!(
            s[4..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(s, generate_secret());
    }

    #[test]
    fn hashes_are_sha256() {
        let h = hash_secret("abc");
        assert_eq!(h[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
