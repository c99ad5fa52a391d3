//! Rendering directory-service resources as SCIM JSON (RFC 7643 §3.1, §4).

use chrono::{DateTime, SecondsFormat};
use roster_proto::directory::{Group, Member, MemberType, Meta, User};
use roster_scim::resource::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
use serde_json::{Map, Value, json};

use crate::etag::format_etag;

/// The two SCIM resource types the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/Users`.
    User,
    /// `/Groups`.
    Group,
}

impl Kind {
    /// Endpoint name, also used as `meta.resourceType`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::User => "Users",
            Self::Group => "Groups",
        }
    }

    /// `meta.resourceType`.
    pub fn resource_type(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }

    /// The kind of the projection engine.
    pub fn scim_kind(self) -> roster_scim::patch::ResourceKind {
        match self {
            Self::User => roster_scim::patch::ResourceKind::User,
            Self::Group => roster_scim::patch::ResourceKind::Group,
        }
    }
}

/// URL of one resource, e.g. `{scim_base}/Users/{id}`.
pub fn location(scim_base: &str, kind: Kind, id: &str) -> String {
    format!("{scim_base}/{}/{id}", kind.endpoint())
}

/// A user as a SCIM User resource.
pub fn render_user(user: &User, scim_base: &str) -> Value {
    let mut obj = raw_object(&user.raw).unwrap_or_else(|| user_fallback(user));
    // Never echo write-only or server-owned attributes from the IdP's copy.
    for key in ["password", "meta", "groups", "id"] {
        remove_key(&mut obj, key);
    }
    obj.insert("id".into(), json!(user.id));
    ensure_schemas(&mut obj, USER_SCHEMA);
    if has_key(&obj, ENTERPRISE_USER_SCHEMA) {
        ensure_schemas(&mut obj, ENTERPRISE_USER_SCHEMA);
    }
    // `userName` and `active` always show the directory's normalized values
    // (IdPs send "False" strings or numbers; an absent `active` means active),
    // so the IdP sees exactly the state consumers see.
    set_key(&mut obj, "userName", json!(user.user_name));
    set_key(&mut obj, "active", json!(user.active));
    if !user.group_ids.is_empty() {
        let groups: Vec<Value> = user
            .group_ids
            .iter()
            .map(|gid| {
                json!({
                    "value": gid,
                    "$ref": location(scim_base, Kind::Group, gid),
                    "type": "direct",
                })
            })
            .collect();
        obj.insert("groups".into(), Value::Array(groups));
    }
    with_meta(obj, Kind::User, &user.id, user.meta.as_ref(), scim_base)
}

/// A group as a SCIM Group resource, with its members when `with_members`.
pub fn render_group(group: &Group, scim_base: &str, with_members: bool) -> Value {
    let mut obj = raw_object(&group.raw).unwrap_or_default();
    for key in ["members", "meta", "id"] {
        remove_key(&mut obj, key);
    }
    obj.insert("id".into(), json!(group.id));
    ensure_schemas(&mut obj, GROUP_SCHEMA);
    set_key(&mut obj, "displayName", json!(group.display_name));
    if !group.external_id.is_empty() && !has_key(&obj, "externalId") {
        obj.insert("externalId".into(), json!(group.external_id));
    }
    if with_members && !group.members.is_empty() {
        let members: Vec<Value> = group
            .members
            .iter()
            .map(|m| render_member(m, scim_base))
            .collect();
        obj.insert("members".into(), Value::Array(members));
    }
    with_meta(obj, Kind::Group, &group.id, group.meta.as_ref(), scim_base)
}

/// A rendered resource finished with its `meta` (which names its location).
fn with_meta(
    mut obj: Map<String, Value>,
    kind: Kind,
    id: &str,
    meta: Option<&Meta>,
    scim_base: &str,
) -> Value {
    let loc = location(scim_base, kind, id);
    obj.insert("meta".into(), render_meta(kind, meta, &loc));
    Value::Object(obj)
}

/// A member as a SCIM `members` value.
pub fn render_member(member: &Member, scim_base: &str) -> Value {
    let kind = if member.r#type == MemberType::Group as i32 {
        Kind::Group
    } else {
        Kind::User
    };
    let mut m = Map::new();
    m.insert("value".into(), json!(member.id));
    m.insert("$ref".into(), json!(location(scim_base, kind, &member.id)));
    m.insert("type".into(), json!(kind.resource_type()));
    if !member.display.is_empty() {
        m.insert("display".into(), json!(member.display));
    }
    Value::Object(m)
}

/// The ETag of a resource's meta, if it has one.
pub fn etag_of(meta: Option<&Meta>) -> Option<String> {
    meta.map(|m| format_etag(m.version))
}

fn render_meta(kind: Kind, meta: Option<&Meta>, location: &str) -> Value {
    let mut m = Map::new();
    m.insert("resourceType".into(), json!(kind.resource_type()));
    if let Some(meta) = meta {
        if let Some(ts) = meta.created.as_ref().and_then(timestamp) {
            m.insert("created".into(), json!(ts));
        }
        if let Some(ts) = meta.last_modified.as_ref().and_then(timestamp) {
            m.insert("lastModified".into(), json!(ts));
        }
    }
    m.insert("location".into(), json!(location));
    if let Some(meta) = meta {
        m.insert("version".into(), json!(format_etag(meta.version)));
    }
    Value::Object(m)
}

/// RFC 3339 UTC text of a protobuf timestamp (RFC 7643 §2.3.5 dateTime),
/// with microseconds: the precision both stores keep and filters compare
/// at, so `meta.lastModified gt "<this value>"` does not match the resource
/// it came from (a coarser rendering would round the stored time down).
fn timestamp(ts: &prost_types::Timestamp) -> Option<String> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::from_timestamp(ts.seconds, nanos)
        .map(|dt| dt.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn raw_object(raw: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(obj)) => Some(obj),
        _ => None,
    }
}

/// What can be said about a user whose stored JSON is missing or unreadable.
fn user_fallback(user: &User) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("userName".into(), json!(user.user_name));
    obj.insert("active".into(), json!(user.active));
    if !user.external_id.is_empty() {
        obj.insert("externalId".into(), json!(user.external_id));
    }
    if !user.display_name.is_empty() {
        obj.insert("displayName".into(), json!(user.display_name));
    }
    obj
}

/// SCIM attribute names are case-insensitive (RFC 7643 §2.1).
fn find_key(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

fn has_key(obj: &Map<String, Value>, key: &str) -> bool {
    find_key(obj, key).is_some()
}

fn remove_key(obj: &mut Map<String, Value>, key: &str) {
    while let Some(k) = find_key(obj, key) {
        obj.remove(&k);
    }
}

/// Sets `key`, keeping the spelling the IdP used for it.
fn set_key(obj: &mut Map<String, Value>, key: &str, value: Value) {
    let k = find_key(obj, key).unwrap_or_else(|| key.to_owned());
    obj.insert(k, value);
}

fn ensure_schemas(obj: &mut Map<String, Value>, schema: &str) {
    let key = find_key(obj, "schemas").unwrap_or_else(|| "schemas".to_owned());
    let entry = obj.entry(key).or_insert_with(|| json!([]));
    if !entry.is_array() {
        *entry = json!([]);
    }
    if let Value::Array(list) = entry {
        let present = list
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(schema)));
        if !present {
            list.push(json!(schema));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://scim.example.com/scim/v2/dir1";

    fn meta(version: i64) -> Meta {
        Meta {
            created: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            last_modified: Some(prost_types::Timestamp {
                seconds: 1_700_000_060,
                nanos: 500_000_000,
            }),
            version,
        }
    }

    #[test]
    fn renders_user_from_raw() {
        let user = User {
            id: "u1".into(),
            user_name: "alice".into(),
            active: false,
            group_ids: vec!["g1".into()],
            raw: r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"alice","password":"hunter2","active":"True","meta":{"x":1},"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"R&D"}}"#.into(),
            meta: Some(meta(3)),
            ..Default::default()
        };
        let v = render_user(&user, BASE);
        assert_eq!(v["id"], "u1");
        assert_eq!(v["userName"], "alice");
        assert_eq!(v["active"], false);
        assert!(v.get("password").is_none());
        assert_eq!(v["schemas"].as_array().unwrap().len(), 2);
        assert_eq!(v["groups"][0]["value"], "g1");
        assert_eq!(v["groups"][0]["$ref"], format!("{BASE}/Groups/g1"));
        assert_eq!(v["meta"]["resourceType"], "User");
        assert_eq!(v["meta"]["location"], format!("{BASE}/Users/u1"));
        assert_eq!(v["meta"]["version"], "W/\"3\"");
        assert_eq!(v["meta"]["created"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(v["meta"]["lastModified"], "2023-11-14T22:14:20.500000Z");
        assert!(v["meta"].get("x").is_none());
    }

    /// An active user with no meta and no groups; `raw` as stored (may be empty).
    fn active_user(id: &str, user_name: &str, raw: &str) -> User {
        User {
            id: id.into(),
            user_name: user_name.into(),
            active: true,
            raw: raw.into(),
            ..Default::default()
        }
    }

    #[test]
    fn renders_user_without_raw() {
        let user = active_user("u2", "bob", "");
        let v = render_user(&user, BASE);
        assert_eq!(v["userName"], "bob");
        assert_eq!(v["active"], true);
        assert_eq!(v["schemas"], json!([USER_SCHEMA]));
        assert!(v.get("groups").is_none());
        assert!(v["meta"].get("version").is_none());
    }

    #[test]
    fn active_and_user_name_come_from_the_normalized_state() {
        let user = active_user("u3", "5", r#"{"userName":5}"#);
        let rendered = render_user(&user, BASE);
        assert_eq!(rendered["active"], true);
        assert_eq!(rendered["userName"], "5");
    }

    #[test]
    fn renders_group_members_only_when_asked() {
        let group = Group {
            id: "g1".into(),
            display_name: "Eng".into(),
            members: vec![
                Member {
                    id: "u1".into(),
                    r#type: MemberType::User as i32,
                    display: "Alice".into(),
                },
                Member {
                    id: "g2".into(),
                    r#type: MemberType::Group as i32,
                    display: String::new(),
                },
            ],
            raw: r#"{"displayName":"Eng","members":[{"value":"stale"}]}"#.into(),
            meta: Some(meta(9)),
            ..Default::default()
        };
        let v = render_group(&group, BASE, true);
        assert_eq!(v["members"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["members"][0],
            json!({"value":"u1","$ref":format!("{BASE}/Users/u1"),"type":"User","display":"Alice"})
        );
        assert_eq!(v["members"][1]["type"], "Group");
        assert!(v["members"][1].get("display").is_none());
        assert_eq!(v["schemas"], json!([GROUP_SCHEMA]));
        let v = render_group(&group, BASE, false);
        assert!(v.get("members").is_none());
        assert_eq!(v["meta"]["version"], "W/\"9\"");
    }
}
