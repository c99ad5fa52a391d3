//! `roster admin …-webhook…`: webhook endpoints through `AdminService`.

use anyhow::{Context, anyhow};
use roster_proto::admin::replay_webhook_endpoint_request::From as ReplayFrom;
use roster_proto::admin::*;
use serde_json::{Value, json};

use super::{Admin, enum_suffix, status};
use crate::config::AdminCommand;

/// Runs a webhook command; any other command is a bug of the caller.
pub(super) async fn run(admin: &Admin, command: AdminCommand) -> anyhow::Result<Value> {
    let mut client = admin.client.clone();
    let out = match command {
        AdminCommand::CreateWebhook {
            url,
            directory,
            kinds,
            description,
            disabled,
        } => {
            let req = CreateWebhookEndpointRequest {
                directory_id: directory.unwrap_or_default(),
                url,
                kinds,
                description,
                disabled,
            };
            let r = client
                .create_webhook_endpoint(admin.request(req)?)
                .await
                .map_err(status)?
                .into_inner();
            let mut e = endpoint_json(&r.endpoint.context("no endpoint returned")?);
            e["secret"] = json!(r.secret);
            e
        }
        AdminCommand::ListWebhooks { directory } => {
            let req = ListWebhookEndpointsRequest {
                directory_id: directory.unwrap_or_default(),
            };
            let r = client
                .list_webhook_endpoints(admin.request(req)?)
                .await
                .map_err(status)?;
            Value::Array(r.into_inner().endpoints.iter().map(endpoint_json).collect())
        }
        AdminCommand::GetWebhook { id } => {
            let r = client
                .get_webhook_endpoint(admin.request(GetWebhookEndpointRequest { id })?)
                .await
                .map_err(status)?;
            endpoint_json(&r.into_inner().endpoint.context("no endpoint returned")?)
        }
        AdminCommand::UpdateWebhook {
            id,
            url,
            description,
            enabled,
            kinds,
        } => {
            // `all` (or nothing after the flag) clears the filter.
            let set_kinds = kinds.is_some();
            let kinds: Vec<String> = kinds
                .unwrap_or_default()
                .into_iter()
                .filter(|k| k != "all" && !k.is_empty())
                .collect();
            let req = UpdateWebhookEndpointRequest {
                id,
                url,
                description,
                enabled,
                kinds,
                set_kinds,
            };
            let r = client
                .update_webhook_endpoint(admin.request(req)?)
                .await
                .map_err(status)?;
            endpoint_json(&r.into_inner().endpoint.context("no endpoint returned")?)
        }
        AdminCommand::DeleteWebhook { id } => {
            let req = DeleteWebhookEndpointRequest { id: id.clone() };
            client
                .delete_webhook_endpoint(admin.request(req)?)
                .await
                .map_err(status)?;
            json!({ "deleted": id })
        }
        AdminCommand::RotateWebhookSecret { id, overlap_secs } => {
            let req = RotateWebhookSecretRequest {
                id,
                overlap_seconds: overlap_secs,
            };
            let r = client
                .rotate_webhook_secret(admin.request(req)?)
                .await
                .map_err(status)?
                .into_inner();
            let mut e = endpoint_json(&r.endpoint.context("no endpoint returned")?);
            e["secret"] = json!(r.secret);
            e
        }
        AdminCommand::ReplayWebhook {
            id,
            cursor,
            after_revision,
        } => {
            let from = match (cursor, after_revision) {
                (Some(c), _) => ReplayFrom::AfterCursor(c),
                (None, Some(r)) => ReplayFrom::AfterRevision(r),
                (None, None) => return Err(anyhow!("give --cursor or --after-revision")),
            };
            let req = ReplayWebhookEndpointRequest {
                id,
                from: Some(from),
            };
            let r = client
                .replay_webhook_endpoint(admin.request(req)?)
                .await
                .map_err(status)?;
            endpoint_json(&r.into_inner().endpoint.context("no endpoint returned")?)
        }
        AdminCommand::SkipWebhookEvent { id } => {
            let r = client
                .skip_webhook_event(admin.request(SkipWebhookEventRequest { id })?)
                .await
                .map_err(status)?
                .into_inner();
            let mut e = endpoint_json(&r.endpoint.context("no endpoint returned")?);
            e["skipped_revision"] = json!(r.skipped_revision);
            e
        }
        AdminCommand::WebhookAttempts { id, limit } => {
            let req = ListWebhookAttemptsRequest { id, limit };
            let r = client
                .list_webhook_attempts(admin.request(req)?)
                .await
                .map_err(status)?;
            Value::Array(r.into_inner().attempts.iter().map(attempt_json).collect())
        }
        AdminCommand::TestWebhook { id } => {
            let r = client
                .send_test_webhook_event(admin.request(SendTestWebhookEventRequest { id })?)
                .await
                .map_err(status)?;
            attempt_json(&r.into_inner().attempt.context("no attempt returned")?)
        }
        other => return Err(anyhow!("not a webhook command: {other:?}")),
    };
    Ok(out)
}

/// A timestamp as RFC 3339 text, or null.
fn time<T: ToString>(t: &Option<T>) -> Option<String> {
    t.as_ref().map(ToString::to_string)
}

fn endpoint_json(e: &WebhookEndpoint) -> Value {
    let state = WebhookStatus::try_from(e.status).unwrap_or(WebhookStatus::Unspecified);
    json!({
        "id": e.id,
        "directory_id": e.directory_id,
        "url": e.url,
        "kinds": e.kinds,
        "description": e.description,
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "status": enum_suffix(state.as_str_name(), "WEBHOOK_STATUS_"),
        "cursor": e.cursor,
        "cursor_revision": e.cursor_revision,
        "attempts": e.attempts,
        "failing_since": time(&e.failing_since),
        "next_attempt_at": time(&e.next_attempt_at),
        "previous_secret_expires_at": time(&e.previous_secret_expires_at),
        "lag_events": e.lag_events,
        "lag_revisions": e.lag_revisions,
        "lag_seconds": e.lag_seconds,
        "created_at": time(&e.created_at),
        "updated_at": time(&e.updated_at),
    })
}

fn attempt_json(a: &WebhookAttempt) -> Value {
    json!({
        "revision": a.revision,
        "event_id": a.event_id,
        "status_code": a.status_code,
        "latency_ms": a.latency_ms,
        "succeeded": a.succeeded,
        "detail": a.detail,
        "attempted_at": time(&a.attempted_at),
    })
}
