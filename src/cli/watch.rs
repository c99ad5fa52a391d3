//! `roster watch`: tails `WatchChanges` as JSON lines, one per message.

use anyhow::anyhow;
use roster_proto::directory::change::Resource;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::watch_changes_response::Payload;
use roster_proto::directory::*;
use serde_json::{Value, json};

use crate::config::WatchArgs;

/// Streams changes until interrupted (or until `--count` change events).
pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    if args.follow {
        return follow::run(args).await;
    }
    let channel = super::connect(&args.client).await?;
    let mut client = DirectoryServiceClient::new(channel);
    let mut req = tonic::Request::new(request(&args)?);
    super::authorize(&mut req, &args.client.internal_secret)?;
    let mut stream = client
        .watch_changes(req)
        .await
        .map_err(watch_error)?
        .into_inner();
    let mut seen = 0u64;
    while let Some(msg) = stream.message().await.map_err(watch_error)? {
        let is_change = matches!(msg.payload, Some(Payload::Change(_)));
        if is_change || args.progress || matches!(msg.payload, Some(Payload::Synced(_))) {
            println!("{}", message_json(&msg));
        }
        if is_change {
            seen += 1;
            if args.count.is_some_and(|n| seen >= n) {
                break;
            }
        }
    }
    Ok(())
}

mod follow;

fn request(args: &WatchArgs) -> anyhow::Result<WatchChangesRequest> {
    let start = if args.initial_state {
        Start::InitialState(())
    } else if let Some(c) = &args.cursor {
        Start::AfterCursor(c.clone())
    } else if let Some(r) = args.after_revision {
        Start::AfterRevision(r)
    } else {
        Start::FromNow(())
    };
    let kinds = args
        .kinds
        .iter()
        .map(|k| {
            kind_from_name(k).ok_or_else(|| {
                anyhow!("unknown change kind {k:?} (e.g. user.created, member.added)")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(WatchChangesRequest {
        directory_id: args.directory.clone().unwrap_or_default(),
        kinds: kinds.into_iter().map(|k| k as i32).collect(),
        start: Some(start),
    })
}

fn watch_error(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::OutOfRange => {
            anyhow!("{} — re-list, or start with --initial-state", s.message())
        }
        _ => anyhow!("watch failed ({:?}): {}", s.code(), s.message()),
    }
}

/// `user.created` ↔ `CHANGE_KIND_USER_CREATED`.
pub(super) fn kind_from_name(name: &str) -> Option<ChangeKind> {
    let proto = format!(
        "CHANGE_KIND_{}",
        name.replace('.', "_").to_ascii_uppercase()
    );
    ChangeKind::from_str_name(&proto).filter(|k| *k != ChangeKind::Unspecified)
}

fn kind_name(kind: i32) -> String {
    let kind = ChangeKind::try_from(kind).unwrap_or(ChangeKind::Unspecified);
    let rest = kind
        .as_str_name()
        .trim_start_matches("CHANGE_KIND_")
        .to_ascii_lowercase();
    match rest.split_once('_') {
        Some((resource, verb)) => format!("{resource}.{verb}"),
        None => rest,
    }
}

pub(super) fn message_json(msg: &WatchChangesResponse) -> Value {
    let mut out = json!({ "cursor": msg.cursor, "revision": msg.revision });
    match &msg.payload {
        Some(Payload::Change(c)) => {
            out["type"] = json!("change");
            out["change"] = change_json(c);
        }
        Some(Payload::Progress(_)) => out["type"] = json!("progress"),
        Some(Payload::Synced(_)) => out["type"] = json!("synced"),
        None => out["type"] = json!("unknown"),
    }
    out
}

fn change_json(c: &Change) -> Value {
    json!({
        "event_id": c.event_id,
        "kind": kind_name(c.kind),
        "directory_id": c.directory_id,
        "resource_id": c.resource_id,
        "version": c.version,
        "occurred_at": c.occurred_at.as_ref().map(ToString::to_string),
        "resource": c.resource.as_ref().map(resource_json),
        "changed_fields": c.changed_fields.iter().map(|f| json!({
            "field": f.field, "previous": parse(&f.previous), "current": parse(&f.current),
        })).collect::<Vec<_>>(),
        "tombstone": c.tombstone,
        "synthetic": c.synthetic,
    })
}

fn resource_json(r: &Resource) -> Value {
    match r {
        Resource::User(u) => json!({
            "type": "user", "id": u.id, "user_name": u.user_name, "external_id": u.external_id,
            "display_name": u.display_name, "given_name": u.given_name, "family_name": u.family_name,
            "emails": u.emails.iter().map(|e| json!({"value": e.value, "type": e.r#type, "primary": e.primary})).collect::<Vec<_>>(),
            "active": u.active, "title": u.title, "department": u.department, "manager_id": u.manager_id,
            "employee_number": u.employee_number, "group_ids": u.group_ids, "custom_attributes": u.custom_attributes,
            "raw": parse(&u.raw), "version": u.meta.as_ref().map(|m| m.version),
        }),
        Resource::Group(g) => json!({
            "type": "group", "id": g.id, "display_name": g.display_name, "external_id": g.external_id,
            "member_count": g.member_count, "raw": parse(&g.raw), "version": g.meta.as_ref().map(|m| m.version),
        }),
        Resource::Membership(m) => json!({
            "type": "membership", "group_id": m.group_id, "member_id": m.member_id,
            "member_type": if m.member_type == MemberType::Group as i32 { "group" } else { "user" },
        }),
        Resource::Directory(d) => json!({ "type": "directory", "id": d.id, "name": d.name }),
    }
}

/// JSON-encoded strings from the proto; anything unparsable is shown as a string.
fn parse(s: &str) -> Value {
    if s.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn kind_names_round_trip() {
        for name in [
            "user.created",
            "user.deactivated",
            "member.added",
            "directory.deleted",
            "group.updated",
        ] {
            let kind = kind_from_name(name)
                .with_context(|| name.to_string())
                .unwrap();
            assert_eq!(kind_name(kind as i32), name);
        }
        assert!(kind_from_name("user.exploded").is_none());
    }
}
