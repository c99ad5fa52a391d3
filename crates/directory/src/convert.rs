//! Conversions between the store's domain model and the generated protos.

use chrono::{DateTime, Utc};
use roster_proto::admin as pa;
use roster_proto::directory as pd;
use roster_store as m;

/// A protobuf timestamp from a UTC time.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn meta(created: DateTime<Utc>, updated: DateTime<Utc>, version: i64) -> Option<pd::Meta> {
    Some(pd::Meta {
        created: Some(timestamp(created)),
        last_modified: Some(timestamp(updated)),
        version,
    })
}

/// Stored JSON as text; a `Value` always serializes.
fn json_text(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A stored user as its proto.
pub fn user(u: &m::User) -> pd::User {
    let f = &u.fields;
    pd::User {
        id: u.id.to_string(),
        directory_id: u.directory_id.to_string(),
        external_id: f.external_id.clone().unwrap_or_default(),
        user_name: f.user_name.clone(),
        display_name: f.display_name.clone().unwrap_or_default(),
        given_name: f.given_name.clone().unwrap_or_default(),
        family_name: f.family_name.clone().unwrap_or_default(),
        emails: f
            .emails
            .iter()
            .map(|e| pd::Email {
                value: e.value.clone(),
                r#type: e.r#type.clone(),
                primary: e.primary,
            })
            .collect(),
        active: f.active,
        title: f.title.clone().unwrap_or_default(),
        department: f.department.clone().unwrap_or_default(),
        manager_id: f.manager_id.clone().unwrap_or_default(),
        employee_number: f.employee_number.clone().unwrap_or_default(),
        group_ids: u.group_ids.iter().map(ToString::to_string).collect(),
        custom_attributes: f
            .custom_attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        raw: u.raw.text().to_owned(),
        meta: meta(u.created_at, u.updated_at, u.version),
    }
}

/// A stored group as its proto; members are included when loaded.
pub fn group(g: &m::Group) -> pd::Group {
    pd::Group {
        id: g.id.to_string(),
        directory_id: g.directory_id.to_string(),
        external_id: g.external_id.clone().unwrap_or_default(),
        display_name: g.display_name.clone(),
        member_count: g.member_count,
        members: g.members.iter().flatten().map(member).collect(),
        raw: g.raw.text().to_owned(),
        meta: meta(g.created_at, g.updated_at, g.version),
        members_omitted: false,
    }
}

/// A listed member as its proto.
pub fn member(mb: &m::Member) -> pd::Member {
    pd::Member {
        id: mb.id.to_string(),
        r#type: member_type(mb.kind) as i32,
        display: mb.display.clone().unwrap_or_default(),
    }
}

/// Store member kind → proto member type.
pub fn member_type(kind: m::MemberKind) -> pd::MemberType {
    match kind {
        m::MemberKind::User => pd::MemberType::User,
        m::MemberKind::Group => pd::MemberType::Group,
    }
}

/// Proto member type → store member kind; `None` when unspecified.
pub fn member_kind(t: i32) -> Option<m::MemberKind> {
    match pd::MemberType::try_from(t).ok()? {
        pd::MemberType::User => Some(m::MemberKind::User),
        pd::MemberType::Group => Some(m::MemberKind::Group),
        pd::MemberType::Unspecified => None,
    }
}

/// A membership as its proto.
pub fn membership(ms: &m::Membership) -> pd::Membership {
    pd::Membership {
        group_id: ms.group_id.to_string(),
        member_id: ms.member_id.to_string(),
        member_type: member_type(ms.member_kind) as i32,
    }
}

/// Store change kind → proto change kind.
pub fn change_kind(k: m::ChangeKind) -> pd::ChangeKind {
    use m::ChangeKind as S;
    use pd::ChangeKind as P;
    match k {
        S::UserCreated => P::UserCreated,
        S::UserUpdated => P::UserUpdated,
        S::UserDeactivated => P::UserDeactivated,
        S::UserReactivated => P::UserReactivated,
        S::UserDeleted => P::UserDeleted,
        S::GroupCreated => P::GroupCreated,
        S::GroupUpdated => P::GroupUpdated,
        S::GroupDeleted => P::GroupDeleted,
        S::MemberAdded => P::MemberAdded,
        S::MemberRemoved => P::MemberRemoved,
        S::DirectoryCreated => P::DirectoryCreated,
        S::DirectoryUpdated => P::DirectoryUpdated,
        S::DirectoryDeleted => P::DirectoryDeleted,
    }
}

/// Proto change kind (as sent on the wire) → store change kind; `None` for
/// unspecified or unknown values.
pub fn store_change_kind(k: i32) -> Option<m::ChangeKind> {
    let proto = pd::ChangeKind::try_from(k).ok()?;
    m::ChangeKind::ALL
        .into_iter()
        .find(|s| change_kind(*s) == proto)
}

/// A committed change-log record as a proto `Change`. A payload that does
/// not decode (written by a newer version, say) is logged and the event is
/// still delivered without its resource, so the stream never stalls.
pub fn change(c: &m::ChangeRecord) -> pd::Change {
    pd::Change {
        event_id: c.event_id.to_string(),
        kind: change_kind(c.kind) as i32,
        directory_id: c.directory_id.to_string(),
        resource_id: c.resource_id.to_string(),
        version: c.version,
        occurred_at: Some(timestamp(c.occurred_at)),
        resource: change_resource(c),
        changed_fields: c
            .changed_fields
            .iter()
            .map(|f| pd::FieldChange {
                field: f.field.clone(),
                previous: json_text(&f.previous),
                current: json_text(&f.current),
            })
            .collect(),
        tombstone: c.kind.is_tombstone(),
        synthetic: false,
    }
}

fn change_resource(c: &m::ChangeRecord) -> Option<pd::change::Resource> {
    use pd::change::Resource;
    use serde_json::from_value;
    let payload = c.payload.clone();
    let decoded = match c.kind {
        m::ChangeKind::UserCreated
        | m::ChangeKind::UserUpdated
        | m::ChangeKind::UserDeactivated
        | m::ChangeKind::UserReactivated
        | m::ChangeKind::UserDeleted => {
            from_value::<m::User>(payload).map(|u| Resource::User(user(&u)))
        }
        m::ChangeKind::GroupCreated | m::ChangeKind::GroupUpdated | m::ChangeKind::GroupDeleted => {
            from_value::<m::Group>(payload).map(|g| Resource::Group(group(&g)))
        }
        m::ChangeKind::MemberAdded | m::ChangeKind::MemberRemoved => {
            from_value::<m::Membership>(payload).map(|ms| Resource::Membership(membership(&ms)))
        }
        m::ChangeKind::DirectoryCreated
        | m::ChangeKind::DirectoryUpdated
        | m::ChangeKind::DirectoryDeleted => {
            from_value::<m::Directory>(payload).map(|d| Resource::Directory(directory_ref(&d)))
        }
    };
    decoded
        .map_err(|e| tracing::warn!(revision = c.revision, kind = c.kind.as_str(), error = %e, "undecodable change payload"))
        .ok()
}

fn directory_ref(d: &m::Directory) -> pd::DirectoryRef {
    pd::DirectoryRef {
        id: d.id.to_string(),
        name: d.name.clone(),
    }
}

/// An initial-state item as a synthetic `created` / `member.added` event.
pub fn snapshot_change(item: &m::SnapshotItem) -> pd::Change {
    use pd::change::Resource;
    match item {
        m::SnapshotItem::User(u) => pd::Change {
            directory_id: u.directory_id.to_string(),
            version: u.version,
            occurred_at: Some(timestamp(u.updated_at)),
            ..synthetic(m::ChangeKind::UserCreated, u.id.0, Resource::User(user(u)))
        },
        m::SnapshotItem::Group(g) => pd::Change {
            directory_id: g.directory_id.to_string(),
            version: g.version,
            occurred_at: Some(timestamp(g.updated_at)),
            ..synthetic(
                m::ChangeKind::GroupCreated,
                g.id.0,
                Resource::Group(group(g)),
            )
        },
        // Memberships do not carry their directory; the watcher fills it in.
        m::SnapshotItem::Membership(ms) => synthetic(
            m::ChangeKind::MemberAdded,
            ms.group_id.0,
            Resource::Membership(membership(ms)),
        ),
    }
}

/// The parts every synthetic event shares.
fn synthetic(
    kind: m::ChangeKind,
    resource_id: uuid::Uuid,
    resource: pd::change::Resource,
) -> pd::Change {
    pd::Change {
        // Synthetic events have no change-log row; a fresh id keeps event ids
        // unique without pretending to be stable.
        event_id: uuid::Uuid::new_v4().to_string(),
        kind: change_kind(kind) as i32,
        resource_id: resource_id.to_string(),
        resource: Some(resource),
        synthetic: true,
        ..pd::Change::default()
    }
}

// --- admin ---

/// A directory as its proto.
pub fn directory(d: &m::Directory) -> pa::Directory {
    pa::Directory {
        id: d.id.to_string(),
        name: d.name.clone(),
        organization: d.organization.clone(),
        provider: provider(d.provider) as i32,
        deprovision_policy: deprovision(d.deprovision_policy) as i32,
        attribute_mappings: d
            .attribute_mappings
            .iter()
            .map(|am| pa::AttributeMapping {
                source: am.source.clone(),
                target: am.target.clone(),
            })
            .collect(),
        created_at: Some(timestamp(d.created_at)),
        updated_at: Some(timestamp(d.updated_at)),
    }
}

/// A token's metadata as its proto (never the secret).
pub fn token(t: &m::Token) -> pa::Token {
    pa::Token {
        id: t.id.to_string(),
        directory_id: t.directory_id.to_string(),
        name: t.name.clone(),
        prefix: t.prefix.clone(),
        created_at: Some(timestamp(t.created_at)),
        revoked_at: t.revoked_at.map(timestamp),
        last_used_at: t.last_used_at.map(timestamp),
    }
}

/// A service credential's metadata as its proto (never the secret).
pub fn credential(c: &m::Credential) -> pa::ServiceCredential {
    pa::ServiceCredential {
        id: c.id.to_string(),
        name: c.name.clone(),
        scope: scope(c.scope) as i32,
        prefix: c.prefix.clone(),
        created_at: Some(timestamp(c.created_at)),
        revoked_at: c.revoked_at.map(timestamp),
    }
}

/// Store scope → proto scope.
pub fn scope(s: m::CredentialScope) -> pa::CredentialScope {
    match s {
        m::CredentialScope::Read => pa::CredentialScope::Read,
        m::CredentialScope::Gateway => pa::CredentialScope::Gateway,
        m::CredentialScope::Admin => pa::CredentialScope::Admin,
    }
}

/// Proto scope → store scope; the unspecified scope is not a scope.
pub fn scope_from_proto(s: pa::CredentialScope) -> Option<m::CredentialScope> {
    match s {
        pa::CredentialScope::Unspecified => None,
        pa::CredentialScope::Read => Some(m::CredentialScope::Read),
        pa::CredentialScope::Gateway => Some(m::CredentialScope::Gateway),
        pa::CredentialScope::Admin => Some(m::CredentialScope::Admin),
    }
}

/// Store provider → proto provider.
pub fn provider(p: m::ProviderKind) -> pa::ProviderKind {
    use m::ProviderKind as S;
    use pa::ProviderKind as P;
    match p {
        S::Generic => P::Generic,
        S::Okta => P::Okta,
        S::Entra => P::Entra,
        S::Onelogin => P::Onelogin,
        S::Jumpcloud => P::Jumpcloud,
        S::Google => P::Google,
        S::Pingone => P::Pingone,
        S::Rippling => P::Rippling,
    }
}

/// Proto provider → store provider; unspecified means generic, an unknown
/// number is `None`.
pub fn store_provider(p: i32) -> Option<m::ProviderKind> {
    let proto = pa::ProviderKind::try_from(p).ok()?;
    if proto == pa::ProviderKind::Unspecified {
        return Some(m::ProviderKind::Generic);
    }
    m::ProviderKind::ALL
        .into_iter()
        .find(|s| provider(*s) == proto)
}

/// Store deprovision policy → proto.
pub fn deprovision(p: m::DeprovisionPolicy) -> pa::DeprovisionPolicy {
    match p {
        m::DeprovisionPolicy::Delete => pa::DeprovisionPolicy::Delete,
        m::DeprovisionPolicy::Deactivate => pa::DeprovisionPolicy::Deactivate,
    }
}

/// Proto deprovision policy → store; unspecified means delete, an unknown
/// number is `None`.
pub fn store_deprovision(p: i32) -> Option<m::DeprovisionPolicy> {
    match pa::DeprovisionPolicy::try_from(p).ok()? {
        pa::DeprovisionPolicy::Unspecified | pa::DeprovisionPolicy::Delete => {
            Some(m::DeprovisionPolicy::Delete)
        }
        pa::DeprovisionPolicy::Deactivate => Some(m::DeprovisionPolicy::Deactivate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_kind_round_trips() {
        for k in m::ChangeKind::ALL {
            assert_eq!(store_change_kind(change_kind(k) as i32), Some(k));
        }
        assert_eq!(store_change_kind(0), None);
        assert_eq!(store_change_kind(999), None);
    }

    #[test]
    fn every_provider_round_trips() {
        for p in m::ProviderKind::ALL {
            assert_eq!(store_provider(provider(p) as i32), Some(p));
        }
        assert_eq!(store_provider(0), Some(m::ProviderKind::Generic));
        assert_eq!(store_provider(77), None);
    }

    #[test]
    fn timestamps_keep_nanoseconds() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_789));
    }
}
