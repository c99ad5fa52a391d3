//! `roster admin …-webhook…`: webhook endpoints through `AdminService`.

use anyhow::anyhow;
use roster_proto::admin::replay_webhook_endpoint_request::From as ReplayFrom;
use roster_proto::admin::*;
use serde_json::{Value, json};

use super::{Admin, enum_suffix, list, returned, time, with_secret};
use crate::config::AdminCommand;

/// Runs a webhook command; any other command is a bug of the caller.
pub(super) async fn run(admin: &Admin, command: AdminCommand) -> anyhow::Result<Value> {
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
            let r = call!(admin, create_webhook_endpoint(req));
            with_secret(endpoint(r.endpoint)?, r.secret)
        }
        AdminCommand::ListWebhooks { directory } => {
            let req = ListWebhookEndpointsRequest {
                directory_id: directory.unwrap_or_default(),
            };
            let r = call!(admin, list_webhook_endpoints(req));
            list(r.endpoints, endpoint_json)
        }
        AdminCommand::GetWebhook { id } => {
            let r = call!(
                admin,
                get_webhook_endpoint(GetWebhookEndpointRequest { id })
            );
            endpoint(r.endpoint)?
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
            let r = call!(admin, update_webhook_endpoint(req));
            endpoint(r.endpoint)?
        }
        AdminCommand::DeleteWebhook { id } => {
            call!(
                admin,
                delete_webhook_endpoint(DeleteWebhookEndpointRequest { id: id.clone() })
            );
            json!({ "deleted": id })
        }
        AdminCommand::RotateWebhookSecret { id, overlap_secs } => {
            let req = RotateWebhookSecretRequest {
                id,
                overlap_seconds: overlap_secs,
            };
            let r = call!(admin, rotate_webhook_secret(req));
            with_secret(endpoint(r.endpoint)?, r.secret)
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
            let r = call!(admin, replay_webhook_endpoint(req));
            endpoint(r.endpoint)?
        }
        AdminCommand::SkipWebhookEvent { id } => {
            let r = call!(admin, skip_webhook_event(SkipWebhookEventRequest { id }));
            let mut e = endpoint(r.endpoint)?;
            e["skipped_revision"] = json!(r.skipped_revision);
            e
        }
        AdminCommand::WebhookAttempts { id, limit } => {
            let r = call!(
                admin,
                list_webhook_attempts(ListWebhookAttemptsRequest { id, limit })
            );
            list(r.attempts, attempt_json)
        }
        AdminCommand::TestWebhook { id } => {
            let r = call!(
                admin,
                send_test_webhook_event(SendTestWebhookEventRequest { id })
            );
            attempt_json(&returned(r.attempt, "attempt")?)
        }
        other => return Err(anyhow!("not a webhook command: {other:?}")),
    };
    Ok(out)
}

/// The endpoint a reply carries, as JSON.
fn endpoint(field: Option<WebhookEndpoint>) -> anyhow::Result<Value> {
    Ok(endpoint_json(&returned(field, "endpoint")?))
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
