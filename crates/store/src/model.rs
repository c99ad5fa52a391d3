//! Domain types stored and returned by a [`crate::Store`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::webhooks::*;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

/// For an enum of unit variants kept in the database by name: `ALL`,
/// `as_str` (the name) and `FromStr` (the name in any case; otherwise the
/// error `$error` makes of the text `$s`).
macro_rules! stored_names {
    ($name:ident, |$s:ident| $error:expr; $($variant:ident => $text:literal),+ $(,)?) => {
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$(Self::$variant),+];

            /// The stable name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str($s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str().eq_ignore_ascii_case($s))
                    .ok_or_else(|| $error)
            }
        }
    };
}
pub(crate) use stored_names;

id_type!(
    /// Id of a directory (one customer's IdP connection).
    DirectoryId
);
id_type!(
    /// Id of a user.
    UserId
);
id_type!(
    /// Id of a group.
    GroupId
);
id_type!(
    /// Id of a bearer token.
    TokenId
);
id_type!(
    /// Id of a service credential (internal callers of the gRPC API).
    CredentialId
);
id_type!(
    /// Id of an admin-portal link (docs/portal.md).
    PortalLinkId
);
id_type!(
    /// Id of an admin-portal session.
    PortalSessionId
);

/// What a service credential may call (see the proto's `CredentialScope`).
/// Ordered: each scope allows everything the previous one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialScope {
    /// Directory reads and `WatchChanges`.
    Read,
    /// What the SCIM gateway calls: directory reads and writes, token checks.
    Gateway,
    /// Every RPC.
    Admin,
}

stored_names! {
    CredentialScope, |s| format!("unknown credential scope {s:?} (read, gateway or admin)");
    Read => "read",
    Gateway => "gateway",
    Admin => "admin",
}

/// A service credential, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: CredentialId,
    pub name: String,
    pub scope: CredentialScope,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A service credential to store: its SHA-256 hash and a displayable prefix.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub name: String,
    pub scope: CredentialScope,
    pub prefix: String,
    pub hash: [u8; 32],
}

/// The identity provider a directory is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[default]
    Generic,
    Okta,
    Entra,
    Onelogin,
    Jumpcloud,
    Google,
    Pingone,
    Rippling,
}

stored_names! {
    ProviderKind, |s| format!("unknown provider kind {s:?}");
    Generic => "generic",
    Okta => "okta",
    Entra => "entra",
    Onelogin => "onelogin",
    Jumpcloud => "jumpcloud",
    Google => "google",
    Pingone => "pingone",
    Rippling => "rippling",
}

/// What a SCIM DELETE of a user does in a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeprovisionPolicy {
    #[default]
    Delete,
    Deactivate,
}

stored_names! {
    DeprovisionPolicy, |s| format!("unknown deprovision policy {s:?}");
    Delete => "delete",
    Deactivate => "deactivate",
}

/// Maps an IdP attribute path onto a normalized field or `custom:<key>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeMapping {
    pub source: String,
    pub target: String,
}

/// One customer's IdP connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Directory {
    pub id: DirectoryId,
    pub name: String,
    pub organization: String,
    pub provider: ProviderKind,
    pub deprovision_policy: DeprovisionPolicy,
    pub attribute_mappings: Vec<AttributeMapping>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Fields of a directory to create.
#[derive(Debug, Clone, Default)]
pub struct NewDirectory {
    pub name: String,
    pub organization: String,
    pub provider: ProviderKind,
    pub deprovision_policy: DeprovisionPolicy,
    pub attribute_mappings: Vec<AttributeMapping>,
}

/// Fields of a directory to update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct DirectoryUpdate {
    pub name: Option<String>,
    pub organization: Option<String>,
    pub provider: Option<ProviderKind>,
    pub deprovision_policy: Option<DeprovisionPolicy>,
    pub attribute_mappings: Option<Vec<AttributeMapping>>,
}

/// A bearer token's metadata; the secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: TokenId,
    pub directory_id: DirectoryId,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request, to within
    /// [`TOKEN_USE_GRANULARITY`](crate::TOKEN_USE_GRANULARITY).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token to store: its SHA-256 hash and a displayable prefix.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub directory_id: DirectoryId,
    pub name: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

// The normalized user is the SCIM engine's type, stored as it is.
pub use roster_scim::resource::{NormalizedEmail as Email, NormalizedUser as UserFields};

/// A user to write: normalized fields plus the SCIM JSON (without `id`/`meta`).
#[derive(Debug, Clone, PartialEq)]
pub struct UserWrite {
    pub fields: UserFields,
    pub raw: serde_json::Value,
}

/// A stored SCIM document (a resource's `raw`) as JSON text, as the
/// database returned it. Reads pass the text on (the gateway renders from
/// it), so a lookup parses the document once, in the gateway, instead of
/// also into a `serde_json::Value` in the store and back to text for the
/// reply; the writes that edit it parse it ([`Document::to_value`]).
/// Equal when the JSON values are equal, whatever the spacing.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Document(pub(crate) Box<serde_json::value::RawValue>);

impl Document {
    /// `value` as a document.
    pub fn from_value(value: &serde_json::Value) -> Self {
        // Writing a `Value` out as JSON text cannot fail (its keys are strings).
        serde_json::value::to_raw_value(value).map_or_else(|_| Self::empty(), Self)
    }

    /// JSON text as a document, if it is JSON.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        serde_json::value::RawValue::from_string(text).map(Self)
    }

    /// `{}`.
    pub fn empty() -> Self {
        Self::from_text("{}".to_owned())
            .unwrap_or_else(|_| Self(serde_json::value::RawValue::NULL.to_owned()))
    }

    /// The JSON text.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The document parsed (always JSON: both constructors check it).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.text()).unwrap_or_default()
    }
}

impl PartialEq for Document {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text() || self.to_value() == other.to_value()
    }
}

impl PartialEq<serde_json::Value> for Document {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub directory_id: DirectoryId,
    #[serde(flatten)]
    pub fields: UserFields,
    pub raw: Document,
    pub group_ids: Vec<GroupId>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Kind of a group member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    /// The stable lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
        }
    }
}

/// A reference to a member (a user or a nested group of the same directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberRef {
    pub id: uuid::Uuid,
    pub kind: MemberKind,
}

/// A member as listed, with its display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: uuid::Uuid,
    pub kind: MemberKind,
    pub display: Option<String>,
}

/// A group to write. `members: None` leaves memberships as they are.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupWrite {
    pub display_name: String,
    pub external_id: Option<String>,
    /// SCIM JSON without `id`, `meta` and `members`.
    pub raw: serde_json::Value,
    pub members: Option<Vec<MemberRef>>,
}

/// A stored group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: GroupId,
    pub directory_id: DirectoryId,
    pub display_name: String,
    pub external_id: Option<String>,
    pub raw: Document,
    pub member_count: i64,
    /// Loaded only when asked for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub members: Option<Vec<Member>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One step of a group PATCH, applied in order inside one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupOp {
    /// New display name / external id / raw JSON (from the SCIM PATCH engine).
    SetAttributes {
        display_name: String,
        external_id: Option<String>,
        raw: serde_json::Value,
    },
    AddMembers(Vec<MemberRef>),
    RemoveMembers(Vec<uuid::Uuid>),
    ReplaceMembers(Vec<MemberRef>),
    RemoveAllMembers,
}

/// Kinds of change events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.updated")]
    UserUpdated,
    #[serde(rename = "user.deactivated")]
    UserDeactivated,
    #[serde(rename = "user.reactivated")]
    UserReactivated,
    #[serde(rename = "user.deleted")]
    UserDeleted,
    #[serde(rename = "group.created")]
    GroupCreated,
    #[serde(rename = "group.updated")]
    GroupUpdated,
    #[serde(rename = "group.deleted")]
    GroupDeleted,
    #[serde(rename = "member.added")]
    MemberAdded,
    #[serde(rename = "member.removed")]
    MemberRemoved,
    #[serde(rename = "directory.created")]
    DirectoryCreated,
    #[serde(rename = "directory.updated")]
    DirectoryUpdated,
    #[serde(rename = "directory.deleted")]
    DirectoryDeleted,
}

impl ChangeKind {
    /// Every kind, in declaration order.
    pub const ALL: [ChangeKind; 13] = [
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserDeactivated,
        Self::UserReactivated,
        Self::UserDeleted,
        Self::GroupCreated,
        Self::GroupUpdated,
        Self::GroupDeleted,
        Self::MemberAdded,
        Self::MemberRemoved,
        Self::DirectoryCreated,
        Self::DirectoryUpdated,
        Self::DirectoryDeleted,
    ];

    /// The stable dotted name stored in the change log, e.g. `user.created`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::UserDeactivated => "user.deactivated",
            Self::UserReactivated => "user.reactivated",
            Self::UserDeleted => "user.deleted",
            Self::GroupCreated => "group.created",
            Self::GroupUpdated => "group.updated",
            Self::GroupDeleted => "group.deleted",
            Self::MemberAdded => "member.added",
            Self::MemberRemoved => "member.removed",
            Self::DirectoryCreated => "directory.created",
            Self::DirectoryUpdated => "directory.updated",
            Self::DirectoryDeleted => "directory.deleted",
        }
    }

    /// Whether the event is a deletion (its payload is a tombstone).
    pub fn is_tombstone(self) -> bool {
        matches!(
            self,
            Self::UserDeleted | Self::GroupDeleted | Self::DirectoryDeleted
        )
    }
}

impl FromStr for ChangeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown change kind {s:?}"))
    }
}

/// One field changed by an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub previous: serde_json::Value,
    pub current: serde_json::Value,
}

/// The payload of a membership event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub group_id: GroupId,
    pub member_id: uuid::Uuid,
    pub member_kind: MemberKind,
}

/// A committed change-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// Position in the global change log; strictly increasing in delivery order.
    pub revision: i64,
    pub event_id: uuid::Uuid,
    pub directory_id: DirectoryId,
    pub kind: ChangeKind,
    pub resource_id: uuid::Uuid,
    /// Version of the resource after the change.
    pub version: i64,
    pub occurred_at: DateTime<Utc>,
    /// Post-change state: a serialized [`User`], [`Group`] (without members),
    /// [`Membership`] or [`Directory`]; the last state for deletions.
    pub payload: serde_json::Value,
    pub changed_fields: Vec<FieldChange>,
}

/// A sort key for list queries.
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub path: roster_scim::filter::AttrPath,
    pub descending: bool,
}

/// A list query. `filter` and `sort` come from the SCIM crate's parser.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<roster_scim::filter::Filter>,
    /// `None` sorts by creation order (stable while rows are inserted).
    pub sort: Option<Sort>,
    /// 1-based offset (SCIM `startIndex`); ignored when `page_token` is set.
    pub start_index: i64,
    /// Page size; the caller caps it.
    pub count: i64,
    /// Keyset continuation from [`Page::next_page_token`].
    pub page_token: Option<String>,
    /// Groups only: load members, for at most [`LIST_MEMBER_BUDGET`] members
    /// per page (groups beyond it come back with `members: None`).
    pub include_members: bool,
    /// The caller does not need [`Page::cursor`] (the SCIM gateway never
    /// does): a backend may then skip computing it, which on PostgreSQL
    /// makes the list a single statement.
    pub omit_cursor: bool,
}

/// The most members a list page loads inline, taking its groups in page
/// order: a group that does not fit the rest comes back with `members: None` and is
/// read with [`crate::Store::read_group`]. A page of groups therefore never
/// carries more than this many members, whatever the groups' sizes.
pub const LIST_MEMBER_BUDGET: i64 = 5_000;

/// The groups of a page whose members are loaded inline: in page order, each
/// group that still fits the rest of [`LIST_MEMBER_BUDGET`].
pub(crate) fn groups_within_member_budget(groups: &[Group]) -> Vec<uuid::Uuid> {
    let mut left = LIST_MEMBER_BUDGET;
    groups
        .iter()
        .filter(|g| {
            let fits = g.member_count <= left;
            if fits {
                left -= g.member_count;
            }
            fits
        })
        .map(|g| g.id.0)
        .collect()
}

/// Where a watch resumes: every change with revision <= `after` has been
/// seen, plus the listed revisions above it (a snapshot may include changes
/// committed out of revision order).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cursor {
    pub after: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_seen: Vec<i64>,
    /// The [`LogBounds::epoch`] of the history this position belongs to;
    /// `None` in cursors issued before the log had epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Every match across all pages.
    pub total: i64,
    pub next_page_token: Option<String>,
    /// The snapshot the page was read at: `None` only when the query had
    /// [`ListQuery::omit_cursor`].
    pub cursor: Option<Cursor>,
}

/// Filter of change-log reads.
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    /// `None` = every directory.
    pub directory_id: Option<DirectoryId>,
    /// Empty = every kind.
    pub kinds: Vec<ChangeKind>,
}

impl ChangeFilter {
    /// Whether a record passes the filter.
    pub fn matches(&self, c: &ChangeRecord) -> bool {
        self.directory_id.is_none_or(|d| d == c.directory_id)
            && (self.kinds.is_empty() || self.kinds.contains(&c.kind))
    }
}

/// One item of an initial-state snapshot.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "items are streamed one at a time; boxing would only add allocations"
)]
pub enum SnapshotItem {
    User(User),
    Group(Group),
    Membership(Membership),
}

/// Oldest and newest revisions kept in the change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogBounds {
    /// Revisions <= this are pruned; a cursor below it is out of range.
    pub pruned_through: i64,
    /// Highest revision whose predecessors are all resolved (committed or
    /// known aborted): a reader may deliver everything up to it.
    pub stable_head: i64,
    /// Highest revision handed out so far, committed or not (read after
    /// `stable_head`, so never below it). No position beyond it exists yet.
    pub allocated_head: i64,
    /// Names this history of the log: a random id stored with it and renewed
    /// when the database is restored (`roster admin new-epoch`), so cursors
    /// of another history are refused even when their revisions are in range.
    pub epoch: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_of(member_count: i64) -> Group {
        Group {
            id: GroupId::new(),
            directory_id: DirectoryId::new(),
            display_name: String::new(),
            external_id: None,
            raw: Document::empty(),
            member_count,
            members: None,
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn documents_are_equal_by_value_and_pass_through_payloads_as_json() {
        let spaced = Document::from_text(r#"{"b": [1, 2], "a": "x"}"#.into()).unwrap();
        let value = serde_json::json!({"a": "x", "b": [1, 2]});
        let compact = Document::from_value(&value);
        assert_eq!(compact.text(), r#"{"a":"x","b":[1,2]}"#);
        assert_eq!(spaced, compact);
        assert_eq!(spaced, value);
        assert_ne!(spaced, Document::empty());
        assert_eq!(Document::empty().text(), "{}");
        assert!(Document::from_text("{\"a\":".into()).is_err());
        // A change payload holds the document as JSON, not as a string.
        let mut group = group_of(0);
        group.raw = spaced;
        let payload = serde_json::to_value(&group).unwrap();
        assert_eq!(payload["raw"], value);
        let back: Group = serde_json::from_value(payload).unwrap();
        assert_eq!(back, group);
    }

    #[test]
    fn stored_names_parse_in_any_case_and_name_the_unknown() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.as_str().to_uppercase().parse(), Ok(kind));
        }
        assert_eq!("Gateway".parse(), Ok(CredentialScope::Gateway));
        assert_eq!(
            "root".parse::<CredentialScope>(),
            Err(r#"unknown credential scope "root" (read, gateway or admin)"#.to_string())
        );
        assert_eq!(
            DeprovisionPolicy::ALL,
            [DeprovisionPolicy::Delete, DeprovisionPolicy::Deactivate]
        );
    }

    #[test]
    fn a_list_page_loads_members_within_the_budget() {
        let page = [
            group_of(10),
            group_of(LIST_MEMBER_BUDGET),
            group_of(0),
            group_of(LIST_MEMBER_BUDGET - 10),
            group_of(1),
        ];
        let inline = groups_within_member_budget(&page);
        // The big group no longer fits after the first; later ones still do
        // until the budget is spent.
        assert_eq!(inline, vec![page[0].id.0, page[2].id.0, page[3].id.0]);
    }
}
