//! `ResealSecrets`: after a rotation of the server's sealing key
//! (docs/operations.md), every stored secret a previous key sealed is sealed
//! again under the current one, so that the previous key can be dropped.

use chrono::Utc;
use roster_connectors::credentials;
use roster_proto::admin as pa;
use roster_store::SealedSecret;
use roster_webhook::WebhookError;

use super::AdminApi;
use crate::error::{ServiceError, ServiceResult};

impl AdminApi {
    pub async fn reseal_secrets(
        &self,
        _req: pa::ResealSecretsRequest,
    ) -> ServiceResult<pa::ResealSecretsResponse> {
        let key = self.webhook_admin()?.key();
        let mut stored = Vec::new();
        for source in self.store().list_sources().await? {
            if let Some(sealed) = source.settings.sealed_credentials {
                let context = credentials::context(source.directory_id);
                let secret = SealedSecret::SourceCredentials(source.directory_id);
                stored.push((
                    secret,
                    sealed,
                    context,
                    format!("source {}", source.directory_id),
                ));
            }
        }
        let now = Utc::now();
        for hook in self.store().list_webhooks(None).await? {
            let context = hook.id.0.as_bytes().to_vec();
            let name = format!("webhook {}", hook.id);
            // A previous signing secret past its overlap is never used
            // again (the next rotation overwrites it): not worth a key.
            if let (Some(previous), Some(until)) =
                (hook.sealed_previous_secret, hook.previous_secret_until)
                && until > now
            {
                let secret = SealedSecret::WebhookPreviousSecret(hook.id);
                let name = format!("{name} (previous secret)");
                stored.push((secret, previous, context.clone(), name));
            }
            let secret = SealedSecret::WebhookSecret(hook.id);
            stored.push((secret, hook.sealed_secret, context, name));
        }
        let mut response = pa::ResealSecretsResponse::default();
        for (secret, sealed, context, name) in stored {
            match key.reseal(&sealed, &context) {
                // An admin's change since the listing (new credentials, a
                // rotation) sealed the value under the current key already.
                Ok(None) => response.current += 1,
                Ok(Some(fresh)) => match self.store().reseal(secret, &sealed, fresh).await? {
                    true => response.resealed += 1,
                    false => response.current += 1,
                },
                Err(WebhookError::Unsealable) => response.unopenable.push(name),
                Err(e) => {
                    return Err(ServiceError::Store(roster_store::StoreError::Internal(
                        e.to_string(),
                    )));
                }
            }
        }
        tracing::info!(
            resealed = response.resealed,
            current = response.current,
            unopenable = ?response.unopenable,
            "stored secrets re-sealed under the current key"
        );
        Ok(response)
    }
}
