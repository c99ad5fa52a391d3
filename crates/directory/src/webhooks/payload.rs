//! The body of a webhook request: one change, as `WatchChanges` carries it,
//! in the Standard Webhooks envelope (`type`, `timestamp`, `data`), as JSON.
//! The bytes built here are the bytes signed and sent.

use roster_proto::directory::change::Resource;
use roster_proto::directory::{Change, MemberType};
use roster_store::{ChangeRecord, Cursor};
use serde_json::{Value, json};

use crate::{convert, cursor};

/// The JSON body of `record`, at most `max_bytes` unless even the change
/// without its resource is larger (it never is: ids and names only).
/// `epoch` stamps the cursor so a consumer can resume `WatchChanges` from
/// the last event it received.
pub fn body(record: &ChangeRecord, epoch: i64, max_bytes: usize) -> Vec<u8> {
    let change = convert::change(record);
    let mut envelope = envelope(record, &change, epoch);
    let full = to_bytes(&envelope);
    if full.len() <= max_bytes {
        return full;
    }
    // Large users (custom attributes, raw SCIM) are not inlined past the
    // bound: the receiver fetches the resource by id.
    let data = &mut envelope["data"];
    data["resource"] = json!({ "type": resource_type(&change), "id": record.resource_id });
    data["changed_fields"] = json!([]);
    data["resource_omitted"] = json!(true);
    to_bytes(&envelope)
}

/// A `test.ping` body for the "send test event" action: signed like every
/// event, so a receiver can check its verification end to end.
pub fn test_body(endpoint_id: &str, at: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    to_bytes(&json!({
        "type": "test.ping",
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": { "endpoint_id": endpoint_id },
    }))
}

fn envelope(record: &ChangeRecord, change: &Change, epoch: i64) -> Value {
    let position = Cursor {
        after: record.revision,
        also_seen: Vec::new(),
        epoch: Some(epoch),
    };
    let occurred_at = record
        .occurred_at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "type": record.kind.as_str(),
        "timestamp": occurred_at,
        "data": {
            "event_id": change.event_id,
            "kind": record.kind.as_str(),
            "directory_id": change.directory_id,
            "resource_id": change.resource_id,
            "version": change.version,
            "occurred_at": occurred_at,
            "revision": record.revision,
            "cursor": cursor::encode(&position),
            "resource": change.resource.as_ref().map(resource_json),
            "changed_fields": changed_fields_json(change),
            "tombstone": change.tombstone,
        },
    })
}

fn to_bytes(value: &Value) -> Vec<u8> {
    // A `Value` of strings and numbers always serializes.
    serde_json::to_vec(value).unwrap_or_default()
}

fn resource_type(change: &Change) -> &'static str {
    match change.resource {
        Some(Resource::User(_)) => "user",
        Some(Resource::Group(_)) => "group",
        Some(Resource::Membership(_)) => "membership",
        Some(Resource::Directory(_)) | None => "directory",
    }
}

/// The resource in the field names of the proto: what a webhook carries
/// and what `roster watch --json` prints.
pub fn resource_json(r: &Resource) -> Value {
    match r {
        Resource::User(u) => json!({
            "type": "user", "id": u.id, "user_name": u.user_name, "external_id": u.external_id,
            "display_name": u.display_name, "given_name": u.given_name, "family_name": u.family_name,
            "emails": u.emails.iter().map(|e| json!({"value": e.value, "type": e.r#type, "primary": e.primary})).collect::<Vec<_>>(),
            "active": u.active, "title": u.title, "department": u.department, "manager_id": u.manager_id,
            "employee_number": u.employee_number, "group_ids": u.group_ids,
            "custom_attributes": u.custom_attributes, "raw": parse(&u.raw),
            "version": u.meta.as_ref().map(|m| m.version),
        }),
        Resource::Group(g) => json!({
            "type": "group", "id": g.id, "display_name": g.display_name, "external_id": g.external_id,
            "member_count": g.member_count, "raw": parse(&g.raw),
            "version": g.meta.as_ref().map(|m| m.version),
        }),
        Resource::Membership(m) => json!({
            "type": "membership", "group_id": m.group_id, "member_id": m.member_id,
            "member_type": if m.member_type == MemberType::Group as i32 { "group" } else { "user" },
        }),
        Resource::Directory(d) => json!({ "type": "directory", "id": d.id, "name": d.name }),
    }
}

/// The changed fields, their values as JSON (webhooks and `roster watch --json`).
pub fn changed_fields_json(change: &Change) -> Value {
    let fields = change.changed_fields.iter().map(|f| {
        json!({ "field": f.field, "previous": parse(&f.previous), "current": parse(&f.current) })
    });
    Value::Array(fields.collect())
}

/// JSON-encoded strings of the proto as JSON; anything else as a string.
fn parse(s: &str) -> Value {
    if s.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

#[cfg(test)]
mod tests {
    use roster_store::{ChangeKind, DirectoryId, FieldChange};

    use super::*;

    fn record(changed: &str) -> ChangeRecord {
        ChangeRecord {
            revision: 42,
            event_id: uuid::Uuid::new_v4(),
            directory_id: DirectoryId::new(),
            kind: ChangeKind::UserUpdated,
            resource_id: uuid::Uuid::new_v4(),
            version: 3,
            occurred_at: chrono::Utc::now(),
            payload: serde_json::json!({}),
            changed_fields: vec![FieldChange {
                field: "title".into(),
                previous: serde_json::Value::Null,
                current: serde_json::Value::String(changed.into()),
            }],
        }
    }

    #[test]
    fn the_envelope_carries_the_change_and_its_position() {
        let r = record("Engineer");
        let body: Value = serde_json::from_slice(&body(&r, 7, 4096)).unwrap();
        assert_eq!(body["type"], "user.updated");
        assert_eq!(body["data"]["event_id"], r.event_id.to_string());
        assert_eq!(body["data"]["revision"], 42);
        assert_eq!(body["data"]["cursor"], "r42.0000000000000007");
        assert_eq!(body["data"]["changed_fields"][0]["current"], "Engineer");
        assert!(body["data"].get("resource_omitted").is_none());
    }

    #[test]
    fn oversized_changes_are_sent_without_their_resource() {
        let r = record(&"x".repeat(10_000));
        let bytes = body(&r, 7, 2_000);
        assert!(bytes.len() < 2_000, "{} bytes", bytes.len());
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["data"]["resource_omitted"], true);
        assert_eq!(body["data"]["resource"]["id"], r.resource_id.to_string());
        assert_eq!(body["data"]["changed_fields"], serde_json::json!([]));
        assert_eq!(body["data"]["event_id"], r.event_id.to_string());
    }
}
