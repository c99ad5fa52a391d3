//! `roster admin activity | portal-link | revoke-portal-links`: the audit
//! trail and the admin portal's links (docs/portal.md).

use anyhow::{Context, anyhow};
use roster_proto::admin::*;
use serde_json::{Value, json};

use super::{Admin, returned};
use crate::config::AdminCommand;

/// Runs one of the portal's admin commands.
pub(super) async fn run(admin: &Admin, command: AdminCommand) -> anyhow::Result<Value> {
    match command {
        AdminCommand::Activity {
            directory_id,
            outcome,
            resource,
            limit,
            page_token,
        } => {
            let req = ListActivityRequest {
                directory_id,
                outcome: activity_outcome(outcome.as_deref())? as i32,
                resource_type: resource.unwrap_or_default(),
                page_size: limit,
                page_token: page_token.unwrap_or_default(),
                after_id: 0,
            };
            let r = call!(admin, list_activity(req));
            Ok(json!({
                "entries": r.entries.iter().map(activity_json).collect::<Vec<_>>(),
                "next_page_token": r.next_page_token,
            }))
        }
        AdminCommand::PortalLink {
            directory_id,
            expires,
            public_url,
        } => {
            let req = CreatePortalLinkRequest {
                directory_id,
                expires_in_seconds: parse_duration(&expires)?,
            };
            let r = call!(admin, create_portal_link(req));
            let link = returned(r.link, "link")?;
            let base = public_url.as_deref().unwrap_or("http://127.0.0.1:8080");
            Ok(json!({
                "id": link.id,
                "directory_id": link.directory_id,
                "expires_at": link.expires_at.as_ref().map(ToString::to_string),
                "url": format!("{}/portal/open/{}", base.trim_end_matches('/'), r.secret),
            }))
        }
        AdminCommand::RevokePortalLinks { directory_id, link } => {
            let req = RevokePortalLinksRequest {
                directory_id,
                link_id: link.unwrap_or_default(),
            };
            let r = call!(admin, revoke_portal_links(req));
            Ok(json!({ "revoked": r.revoked }))
        }
        other => Err(anyhow!("not a portal command: {other:?}")),
    }
}

fn activity_outcome(name: Option<&str>) -> anyhow::Result<ActivityOutcome> {
    Ok(match name {
        None | Some("all") => ActivityOutcome::Unspecified,
        Some("success") => ActivityOutcome::Success,
        Some("failure") => ActivityOutcome::Failure,
        Some("client-error") => ActivityOutcome::ClientError,
        Some("server-error") => ActivityOutcome::ServerError,
        Some(other) => {
            return Err(anyhow!(
                "unknown outcome {other:?}: all, success, failure, client-error or server-error"
            ));
        }
    })
}

/// `90s`, `15m`, `24h`, `3d` (or bare seconds) in seconds.
fn parse_duration(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number
        .parse()
        .with_context(|| format!("not a duration: {text:?} (e.g. 15m, 24h, 3d)"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(anyhow!("unknown unit in {text:?}: s, m, h or d")),
    };
    Ok(n * scale)
}

fn activity_json(a: &Activity) -> Value {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    json!({
        "id": a.id,
        "time": a.time.as_ref().map(ToString::to_string),
        "method": a.method,
        "path": a.path,
        "status": a.status,
        "scim_type": opt(&a.scim_type),
        "detail": opt(&a.detail),
        "user_agent": opt(&a.user_agent),
        "client_address": opt(&a.client_address),
        "resource_type": opt(&a.resource_type),
        "resource_id": opt(&a.resource_id),
        "duration_ms": a.duration_ms,
        "request_id": a.request_id,
        "revision": (a.revision > 0).then_some(a.revision),
        "events": a.events.iter().map(|e| json!({
            "kind": e.kind,
            "revision": e.revision,
            "count": e.count,
        })).collect::<Vec<_>>(),
        "events_omitted": a.events_omitted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), 86_400);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3w").is_err());
    }
}
