//! `AdminService`: directories and their bearer tokens.
//!
//! Token secrets are `rst_` followed by 43 base64url characters (32 random
//! bytes). Only their SHA-256 hash and an 8-character prefix are stored; a
//! secret is shown once, in the `CreateToken` response, and never logged.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use roster_proto::admin as pa;
use roster_proto::admin::admin_service_server::AdminService;
use roster_store::{
    AttributeMapping, DirectoryId, DirectoryUpdate, NewCredential, NewDirectory, NewToken, Store,
    TokenId,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::credentials::CREDENTIAL_PREFIX;
use crate::error::{ServiceError, ServiceResult};
use crate::mapping;
use crate::watch::ChangeHub;

/// Prefix of every bearer token secret, so leaked tokens are recognisable
/// by secret scanners.
pub const TOKEN_PREFIX: &str = "rst_";
/// Characters of a secret kept in clear to recognise the token in lists.
const SHOWN_PREFIX_LEN: usize = 8;

/// The `AdminService` implementation.
#[derive(Clone)]
pub struct AdminApi {
    store: Arc<dyn Store>,
    hub: Arc<ChangeHub>,
}

impl AdminApi {
    /// An admin service over `store`; writes wake `hub`'s watchers.
    pub fn new(store: Arc<dyn Store>, hub: Arc<ChangeHub>) -> Self {
        Self { store, hub }
    }

    async fn authenticate(&self, secret: &str) -> ServiceResult<pa::AuthenticateTokenResponse> {
        const REJECTED: ServiceError = ServiceError::Unauthenticated("invalid or revoked token");
        let presented = hash_secret(secret);
        let Some((token, stored)) = self.store.find_token(presented).await? else {
            return Err(REJECTED);
        };
        // The store looked the hash up by equality already; comparing again in
        // constant time keeps the check independent of how the store indexes.
        if !bool::from(presented.ct_eq(&stored)) || token.revoked_at.is_some() {
            return Err(REJECTED);
        }
        self.record_use(&token).await;
        let directory = self.store.get_directory(token.directory_id).await?;
        Ok(pa::AuthenticateTokenResponse {
            directory_id: token.directory_id.to_string(),
            token_id: token.id.to_string(),
            directory: Some(convert::directory(&directory)),
        })
    }
}

impl AdminApi {
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
        if let Err(error) = self.store.mark_token_used(token.id, now).await {
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

/// The SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn directory_id(id: &str) -> ServiceResult<DirectoryId> {
    // An id that is not a UUID cannot name a directory.
    id.parse().map_err(|_| ServiceError::NotFound("directory"))
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

#[tonic::async_trait]
impl AdminService for AdminApi {
    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn create_directory(
        &self,
        request: Request<pa::CreateDirectoryRequest>,
    ) -> Result<Response<pa::CreateDirectoryResponse>, Status> {
        let req = request.into_inner();
        let new = NewDirectory {
            name: required(&req.name, "name")?,
            organization: req.organization.trim().to_string(),
            provider: provider(req.provider)?,
            deprovision_policy: deprovision(req.deprovision_policy)?,
            attribute_mappings: mappings(&req.attribute_mappings)?,
        };
        let directory = self
            .store
            .create_directory(new)
            .await
            .map_err(ServiceError::from)?;
        self.hub.local_write();
        Ok(Response::new(pa::CreateDirectoryResponse {
            directory: Some(convert::directory(&directory)),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().id))]
    async fn get_directory(
        &self,
        request: Request<pa::GetDirectoryRequest>,
    ) -> Result<Response<pa::GetDirectoryResponse>, Status> {
        let id = directory_id(&request.get_ref().id)?;
        let directory = self
            .store
            .get_directory(id)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(pa::GetDirectoryResponse {
            directory: Some(convert::directory(&directory)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_directories(
        &self,
        request: Request<pa::ListDirectoriesRequest>,
    ) -> Result<Response<pa::ListDirectoriesResponse>, Status> {
        let organization = request.into_inner().organization;
        let organization = Some(organization.as_str()).filter(|o| !o.is_empty());
        let directories = self
            .store
            .list_directories(organization)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(pa::ListDirectoriesResponse {
            directories: directories.iter().map(convert::directory).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().id))]
    async fn update_directory(
        &self,
        request: Request<pa::UpdateDirectoryRequest>,
    ) -> Result<Response<pa::UpdateDirectoryResponse>, Status> {
        let req = request.into_inner();
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
        let directory = self
            .store
            .update_directory(id, update)
            .await
            .map_err(ServiceError::from)?;
        self.hub.directories().forget(id);
        self.hub.local_write();
        Ok(Response::new(pa::UpdateDirectoryResponse {
            directory: Some(convert::directory(&directory)),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().id))]
    async fn delete_directory(
        &self,
        request: Request<pa::DeleteDirectoryRequest>,
    ) -> Result<Response<pa::DeleteDirectoryResponse>, Status> {
        let id = directory_id(&request.get_ref().id)?;
        self.store
            .delete_directory(id)
            .await
            .map_err(ServiceError::from)?;
        self.hub.directories().forget(id);
        self.hub.local_write();
        Ok(Response::new(pa::DeleteDirectoryResponse {}))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id))]
    async fn create_token(
        &self,
        request: Request<pa::CreateTokenRequest>,
    ) -> Result<Response<pa::CreateTokenResponse>, Status> {
        let req = request.into_inner();
        let directory = directory_id(&req.directory_id)?;
        let secret = generate_secret();
        let new = NewToken {
            directory_id: directory,
            name: req.name.trim().to_string(),
            prefix: secret[..SHOWN_PREFIX_LEN].to_string(),
            hash: hash_secret(&secret),
        };
        let token = self
            .store
            .create_token(new)
            .await
            .map_err(ServiceError::from)?;
        tracing::info!(token = %token.id, prefix = %token.prefix, "token created");
        Ok(Response::new(pa::CreateTokenResponse {
            token: Some(convert::token(&token)),
            secret,
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id))]
    async fn list_tokens(
        &self,
        request: Request<pa::ListTokensRequest>,
    ) -> Result<Response<pa::ListTokensResponse>, Status> {
        let req = request.into_inner();
        let directory = directory_id(&req.directory_id)?;
        let tokens = self
            .store
            .list_tokens(directory, req.include_revoked)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(pa::ListTokensResponse {
            tokens: tokens.iter().map(convert::token).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, token = %request.get_ref().token_id))]
    async fn revoke_token(
        &self,
        request: Request<pa::RevokeTokenRequest>,
    ) -> Result<Response<pa::RevokeTokenResponse>, Status> {
        let req = request.into_inner();
        let directory = directory_id(&req.directory_id)?;
        let token: TokenId = req
            .token_id
            .parse()
            .map_err(|_| ServiceError::NotFound("token"))?;
        self.store
            .revoke_token(directory, token)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(pa::RevokeTokenResponse {}))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn create_service_credential(
        &self,
        request: Request<pa::CreateServiceCredentialRequest>,
    ) -> Result<Response<pa::CreateServiceCredentialResponse>, Status> {
        let req = request.into_inner();
        let scope = pa::CredentialScope::try_from(req.scope)
            .ok()
            .and_then(convert::scope_from_proto)
            .ok_or_else(|| {
                ServiceError::InvalidArgument("scope must be read, gateway or admin".into())
            })?;
        let secret = generate_secret_with(CREDENTIAL_PREFIX);
        let new = NewCredential {
            name: required(&req.name, "name")?,
            scope,
            prefix: secret[..SHOWN_PREFIX_LEN].to_string(),
            hash: hash_secret(&secret),
        };
        let credential = self
            .store
            .create_credential(new)
            .await
            .map_err(ServiceError::from)?;
        tracing::info!(credential = %credential.id, prefix = %credential.prefix, scope = scope.as_str(), "service credential created");
        Ok(Response::new(pa::CreateServiceCredentialResponse {
            credential: Some(convert::credential(&credential)),
            secret,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_service_credentials(
        &self,
        request: Request<pa::ListServiceCredentialsRequest>,
    ) -> Result<Response<pa::ListServiceCredentialsResponse>, Status> {
        let credentials = self
            .store
            .list_credentials(request.get_ref().include_revoked)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(pa::ListServiceCredentialsResponse {
            credentials: credentials.iter().map(convert::credential).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn revoke_service_credential(
        &self,
        request: Request<pa::RevokeServiceCredentialRequest>,
    ) -> Result<Response<pa::RevokeServiceCredentialResponse>, Status> {
        let id = request
            .get_ref()
            .id
            .parse()
            .map_err(|_| ServiceError::NotFound("credential"))?;
        self.store
            .revoke_credential(id)
            .await
            .map_err(ServiceError::from)?;
        tracing::info!(credential = %id, "service credential revoked");
        Ok(Response::new(pa::RevokeServiceCredentialResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn authenticate_token(
        &self,
        request: Request<pa::AuthenticateTokenRequest>,
    ) -> Result<Response<pa::AuthenticateTokenResponse>, Status> {
        let response = self.authenticate(&request.get_ref().secret).await?;
        Ok(Response::new(response))
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
