//! `AdminService`'s webhook endpoints: create (the secret shown once,
//! stored sealed), read with delivery state and lag, edit, rotate, replay,
//! skip, attempts, test event. Delivery itself is `crate::webhooks`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use roster_proto::admin as pa;
use roster_store::{
    ChangeFilter, ChangeKind, DirectoryId, NewWebhook, Webhook, WebhookAttempt, WebhookId,
    WebhookStatus, WebhookUpdate,
};
use roster_webhook::{SealingKey, SigningSecret, WebhookError, signature_header};

use super::AdminApi;
use crate::convert::timestamp;
use crate::cursor;
use crate::error::{ServiceError, ServiceResult, parse_id};
use crate::webhooks::client::{self, Sender, Signed};
use crate::webhooks::connection::{Connection, Target};
use crate::webhooks::{DeliveryError, WebhookConfig, payload};

/// Attempts listed when the request names no limit.
const DEFAULT_ATTEMPTS: i64 = 20;
/// Pending events are counted up to this many (a count is a scan).
const LAG_EVENTS_CAP: i64 = 100_000;

/// What webhook administration needs besides the store.
pub(super) struct WebhookAdmin {
    config: Arc<WebhookConfig>,
    key: Arc<SealingKey>,
    sender: Sender,
}

impl WebhookAdmin {
    pub(super) fn new(config: &WebhookConfig) -> Result<Option<Self>, DeliveryError> {
        let Some(key) = config.sealing_key.clone() else {
            return Ok(None);
        };
        let config = Arc::new(config.clone());
        Ok(Some(Self {
            sender: Sender::new(Arc::clone(&config))?,
            config,
            key,
        }))
    }

    /// The server's sealing key (also seals directory sources' credentials).
    pub(super) fn key(&self) -> &SealingKey {
        &self.key
    }

    fn seal(&self, id: WebhookId, secret: &SigningSecret) -> ServiceResult<Vec<u8>> {
        self.key
            .seal(secret, id.0.as_bytes())
            .map_err(|e| internal(&e))
    }

    fn check_url(&self, url: &str) -> ServiceResult<String> {
        client::check_url(url.trim(), &self.config)
            .map(|u| u.to_string())
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))
    }
}

fn internal(e: &dyn std::fmt::Display) -> ServiceError {
    tracing::error!(error = %e, "webhook secret handling failed");
    ServiceError::Store(roster_store::StoreError::Internal(
        "webhook secret handling failed".into(),
    ))
}

/// A stored secret that no key of the ring opens is a deployment fault
/// (a key dropped too early, a wrong key), not an internal error: said as such.
fn unopenable(e: WebhookError) -> ServiceError {
    ServiceError::FailedPrecondition(e.to_string())
}

fn new_secret() -> ServiceResult<SigningSecret> {
    SigningSecret::generate().map_err(|e| internal(&e))
}

fn kinds(names: &[String]) -> ServiceResult<Vec<ChangeKind>> {
    names
        .iter()
        .map(|n| n.trim().parse().map_err(ServiceError::InvalidArgument))
        .collect()
}

fn optional_directory(id: &str) -> ServiceResult<Option<DirectoryId>> {
    if id.trim().is_empty() {
        return Ok(None);
    }
    parse_id(id.trim(), "directory").map(Some)
}

fn status(s: WebhookStatus) -> pa::WebhookStatus {
    match s {
        WebhookStatus::Active => pa::WebhookStatus::Active,
        WebhookStatus::DeadLetter => pa::WebhookStatus::DeadLetter,
    }
}

fn attempt(a: &WebhookAttempt) -> pa::WebhookAttempt {
    pa::WebhookAttempt {
        revision: a.attempt.revision,
        event_id: a.attempt.event_id.clone(),
        status_code: a.attempt.status_code.unwrap_or(0),
        latency_ms: a.attempt.latency_ms,
        detail: a.attempt.detail.clone(),
        succeeded: a.attempt.succeeded,
        attempted_at: Some(timestamp(a.attempted_at)),
    }
}

fn filter_of(hook: &Webhook) -> ChangeFilter {
    ChangeFilter {
        directory_id: hook.directory_id,
        kinds: hook.kinds.clone(),
    }
}

impl AdminApi {
    pub(super) fn webhook_admin(&self) -> ServiceResult<&WebhookAdmin> {
        self.webhooks.as_deref().ok_or_else(|| {
            ServiceError::FailedPrecondition(
                "webhooks are off: the server has no sealing key for their secrets \
                 (set ROSTER_SECRET_KEY, see docs/webhooks.md)"
                    .into(),
            )
        })
    }

    /// The endpoint a request names; NOT_FOUND when there is none.
    async fn hook(&self, id: &str) -> ServiceResult<Webhook> {
        Ok(self.store().get_webhook(webhook_id(id)?).await?)
    }

    /// An endpoint as the API shows it: its state, position and lag (the
    /// age of the next event it wants, read from the log).
    async fn endpoint(&self, hook: &Webhook) -> ServiceResult<pa::WebhookEndpoint> {
        let bounds = self.store().log_bounds().await?;
        let head = bounds.stable_head.max(self.backend.hub().head());
        let filter = filter_of(hook);
        let (next, lag_events) = if hook.cursor < head {
            let store = self.store();
            let next = store.read_changes(&filter, hook.cursor, head, 1).await;
            let pending = store
                .count_changes(&filter, hook.cursor, head, LAG_EVENTS_CAP)
                .await;
            // A cursor pruned away has no lag to show: its events are gone.
            (next.unwrap_or_default(), pending.unwrap_or_default())
        } else {
            (Vec::new(), 0)
        };
        let lag_seconds = next.first().map_or(0.0, |r| {
            (Utc::now() - r.occurred_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64()
        });
        let position = roster_store::Cursor {
            after: hook.cursor,
            also_seen: Vec::new(),
            epoch: Some(bounds.epoch),
        };
        Ok(pa::WebhookEndpoint {
            id: hook.id.to_string(),
            directory_id: hook.directory_id.map(|d| d.to_string()).unwrap_or_default(),
            url: hook.url.clone(),
            kinds: hook.kinds.iter().map(|k| k.as_str().to_string()).collect(),
            description: hook.description.clone(),
            enabled: hook.enabled,
            disabled_reason: hook.disabled_reason.clone().unwrap_or_default(),
            status: status(hook.status) as i32,
            cursor: cursor::encode(&position),
            cursor_revision: hook.cursor,
            attempts: hook.attempts,
            failing_since: hook.failing_since.map(timestamp),
            next_attempt_at: hook.next_attempt_at.map(timestamp),
            previous_secret_expires_at: hook.previous_secret_until.map(timestamp),
            lag_revisions: (head - hook.cursor).max(0),
            lag_seconds,
            lag_events,
            created_at: Some(timestamp(hook.created_at)),
            updated_at: Some(timestamp(hook.updated_at)),
        })
    }

    pub async fn create_webhook_endpoint(
        &self,
        req: pa::CreateWebhookEndpointRequest,
    ) -> ServiceResult<pa::CreateWebhookEndpointResponse> {
        let admin = self.webhook_admin()?;
        let url = admin.check_url(&req.url)?;
        let id = WebhookId::new();
        let secret = new_secret()?;
        // Delivery starts with the changes committed from now on.
        let cursor = self.store().log_bounds().await?.stable_head;
        let new = NewWebhook {
            id,
            directory_id: optional_directory(&req.directory_id)?,
            url,
            kinds: kinds(&req.kinds)?,
            description: req.description.trim().to_string(),
            enabled: !req.disabled,
            sealed_secret: admin.seal(id, &secret)?,
            cursor,
        };
        let hook = self.store().create_webhook(new).await?;
        tracing::info!(endpoint = %hook.id, url = %hook.url, "webhook endpoint created");
        Ok(pa::CreateWebhookEndpointResponse {
            endpoint: Some(self.endpoint(&hook).await?),
            secret: secret.expose(),
        })
    }

    pub async fn get_webhook_endpoint(
        &self,
        req: pa::GetWebhookEndpointRequest,
    ) -> ServiceResult<pa::GetWebhookEndpointResponse> {
        let endpoint = self.endpoint(&self.hook(&req.id).await?).await?;
        Ok(pa::GetWebhookEndpointResponse {
            endpoint: Some(endpoint),
        })
    }

    pub async fn list_webhook_endpoints(
        &self,
        req: pa::ListWebhookEndpointsRequest,
    ) -> ServiceResult<pa::ListWebhookEndpointsResponse> {
        let dir = optional_directory(&req.directory_id)?;
        let hooks = self.store().list_webhooks(dir).await?;
        let mut endpoints = Vec::with_capacity(hooks.len());
        for hook in &hooks {
            endpoints.push(self.endpoint(hook).await?);
        }
        Ok(pa::ListWebhookEndpointsResponse { endpoints })
    }

    pub async fn update_webhook_endpoint(
        &self,
        req: pa::UpdateWebhookEndpointRequest,
    ) -> ServiceResult<pa::UpdateWebhookEndpointResponse> {
        let admin = self.webhook_admin()?;
        let update = WebhookUpdate {
            url: req.url.as_deref().map(|u| admin.check_url(u)).transpose()?,
            kinds: req.set_kinds.then(|| kinds(&req.kinds)).transpose()?,
            description: req.description.map(|d| d.trim().to_string()),
            enabled: req.enabled,
        };
        let hook = self
            .store()
            .update_webhook(webhook_id(&req.id)?, update)
            .await?;
        tracing::info!(endpoint = %hook.id, enabled = hook.enabled, "webhook endpoint updated");
        Ok(pa::UpdateWebhookEndpointResponse {
            endpoint: Some(self.endpoint(&hook).await?),
        })
    }

    pub async fn delete_webhook_endpoint(
        &self,
        req: pa::DeleteWebhookEndpointRequest,
    ) -> ServiceResult<pa::DeleteWebhookEndpointResponse> {
        let id = webhook_id(&req.id)?;
        self.store().delete_webhook(id).await?;
        tracing::info!(endpoint = %id, "webhook endpoint deleted");
        Ok(pa::DeleteWebhookEndpointResponse {})
    }

    pub async fn rotate_webhook_secret(
        &self,
        req: pa::RotateWebhookSecretRequest,
    ) -> ServiceResult<pa::RotateWebhookSecretResponse> {
        let admin = self.webhook_admin()?;
        let id = webhook_id(&req.id)?;
        let overlap = match u64::try_from(req.overlap_seconds) {
            Ok(0) => admin.config.rotation_overlap,
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => {
                return Err(ServiceError::InvalidArgument(
                    "overlap_seconds must not be negative".into(),
                ));
            }
        };
        let until =
            Utc::now() + chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::MAX);
        let secret = new_secret()?;
        let hook = self
            .store()
            .rotate_webhook_secret(id, admin.seal(id, &secret)?, until)
            .await?;
        tracing::info!(endpoint = %id, previous_until = %until, "webhook secret rotated");
        Ok(pa::RotateWebhookSecretResponse {
            endpoint: Some(self.endpoint(&hook).await?),
            secret: secret.expose(),
        })
    }

    pub async fn replay_webhook_endpoint(
        &self,
        req: pa::ReplayWebhookEndpointRequest,
    ) -> ServiceResult<pa::ReplayWebhookEndpointResponse> {
        let id = webhook_id(&req.id)?;
        let after = self.replay_position(req.from).await?;
        let hook = self.store().reposition_webhook(id, after).await?;
        tracing::info!(endpoint = %id, after, "webhook endpoint replays");
        Ok(pa::ReplayWebhookEndpointResponse {
            endpoint: Some(self.endpoint(&hook).await?),
        })
    }

    /// The revision a replay continues after: within the retained log and
    /// of this history of it (the checks `WatchChanges` makes).
    async fn replay_position(
        &self,
        from: Option<pa::replay_webhook_endpoint_request::From>,
    ) -> ServiceResult<i64> {
        use pa::replay_webhook_endpoint_request::From;
        let bounds = self.store().log_bounds().await?;
        let after = match from {
            Some(From::AfterCursor(text)) => {
                let position = cursor::decode(&text)?;
                if position.epoch.is_some_and(|e| e != bounds.epoch) {
                    return Err(ServiceError::CursorOfAnotherHistory);
                }
                position.after
            }
            Some(From::AfterRevision(revision)) if revision >= 0 => revision,
            _ => {
                return Err(ServiceError::InvalidArgument(
                    "a replay needs after_cursor or a non-negative after_revision".into(),
                ));
            }
        };
        if after > bounds.allocated_head {
            return Err(ServiceError::CursorAhead {
                requested: after,
                newest: bounds.allocated_head,
            });
        }
        if after < bounds.pruned_through {
            return Err(roster_store::StoreError::CursorExpired {
                requested: after,
                oldest: bounds.pruned_through,
            }
            .into());
        }
        Ok(after)
    }

    pub async fn skip_webhook_event(
        &self,
        req: pa::SkipWebhookEventRequest,
    ) -> ServiceResult<pa::SkipWebhookEventResponse> {
        let hook = self.hook(&req.id).await?;
        let id = hook.id;
        let head = self.store().log_bounds().await?.stable_head;
        let next = self
            .store()
            .read_changes(&filter_of(&hook), hook.cursor, head, 1)
            .await?;
        let (hook, skipped) = match next.first() {
            Some(record) => {
                let moved = self.store().reposition_webhook(id, record.revision).await?;
                tracing::warn!(endpoint = %id, revision = record.revision, "webhook event skipped");
                (moved, record.revision)
            }
            None => (hook, 0),
        };
        Ok(pa::SkipWebhookEventResponse {
            endpoint: Some(self.endpoint(&hook).await?),
            skipped_revision: skipped,
        })
    }

    pub async fn list_webhook_attempts(
        &self,
        req: pa::ListWebhookAttemptsRequest,
    ) -> ServiceResult<pa::ListWebhookAttemptsResponse> {
        // Unknown endpoints are NOT_FOUND, not an empty list.
        let id = self.hook(&req.id).await?.id;
        let limit = match req.limit {
            n if n <= 0 => DEFAULT_ATTEMPTS,
            n => i64::from(n).min(roster_store::WEBHOOK_ATTEMPTS_KEPT),
        };
        let found = self.store().list_webhook_attempts(id, limit).await?;
        Ok(pa::ListWebhookAttemptsResponse {
            attempts: found.iter().map(attempt).collect(),
        })
    }

    pub async fn send_test_webhook_event(
        &self,
        req: pa::SendTestWebhookEventRequest,
    ) -> ServiceResult<pa::SendTestWebhookEventResponse> {
        let admin = self.webhook_admin()?;
        let hook = self.hook(&req.id).await?;
        let secret = admin
            .key
            .open(&hook.sealed_secret, hook.id.0.as_bytes())
            .map_err(unopenable)?;
        let now = Utc::now();
        let msg_id = format!("test_{}", uuid::Uuid::new_v4());
        let body = payload::test_body(&hook.id.to_string(), now);
        let signature = signature_header(&[&secret], &msg_id, now.timestamp(), &body);
        // A connection of its own: the test is answered the way a
        // delivery to a new endpoint would be.
        let target = Target::parse(&hook.url, &admin.config);
        let response = admin
            .sender
            .send(
                &mut Connection::default(),
                &target,
                Signed {
                    msg_id: &msg_id,
                    timestamp: now.timestamp(),
                    signature,
                    body: body.into(),
                },
            )
            .await;
        Ok(pa::SendTestWebhookEventResponse {
            attempt: Some(pa::WebhookAttempt {
                revision: 0,
                event_id: msg_id,
                status_code: response.status.map_or(0, i32::from),
                latency_ms: i64::try_from(response.latency.as_millis()).unwrap_or(i64::MAX),
                succeeded: response.succeeded(),
                detail: response.detail,
                attempted_at: Some(timestamp(now)),
            }),
        })
    }
}

fn webhook_id(id: &str) -> ServiceResult<WebhookId> {
    parse_id(id.trim(), "webhook endpoint")
}
