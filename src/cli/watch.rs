//! `roster watch`: tails `WatchChanges` as JSON lines, one per message.

use anyhow::anyhow;
use roster_directory::webhooks::payload;
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
        "resource": c.resource.as_ref().map(payload::resource_json),
        "changed_fields": payload::changed_fields_json(c),
        "tombstone": c.tombstone,
        "synthetic": c.synthetic,
    })
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
