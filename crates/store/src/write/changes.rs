//! The change-log rows a write queues, and the field bookkeeping behind
//! them. Both backends append exactly these rows, in queue order, as the
//! last step before commit.

use serde::Serialize;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::model::*;

/// A change waiting for its revision (taken when the transaction commits).
#[derive(Debug, Clone)]
pub struct Change {
    pub directory_id: DirectoryId,
    pub kind: ChangeKind,
    pub resource_id: Uuid,
    pub version: i64,
    /// The resource as JSON text: written once, never parsed on the way to
    /// the change row.
    pub payload: Document,
    pub changed_fields: Vec<FieldChange>,
}

impl Change {
    fn new<T: Serialize>(
        directory_id: DirectoryId,
        kind: ChangeKind,
        resource_id: Uuid,
        version: i64,
        payload: &T,
        changed_fields: Vec<FieldChange>,
    ) -> StoreResult<Self> {
        Ok(Self {
            directory_id,
            kind,
            resource_id,
            version,
            payload: to_document(payload)?,
            changed_fields,
        })
    }

    /// A user change; the payload is the whole user.
    pub(crate) fn user(
        kind: ChangeKind,
        user: &User,
        changed: Vec<FieldChange>,
    ) -> StoreResult<Self> {
        Self::new(
            user.directory_id,
            kind,
            user.id.0,
            user.version,
            user,
            changed,
        )
    }

    /// A group change; the payload is the group without members.
    pub(crate) fn group(
        kind: ChangeKind,
        group: &Group,
        changed: Vec<FieldChange>,
    ) -> StoreResult<Self> {
        let mut payload = group.clone();
        payload.members = None;
        Self::new(
            group.directory_id,
            kind,
            group.id.0,
            group.version,
            &payload,
            changed,
        )
    }

    /// A membership change, stamped with the group's new version.
    pub(crate) fn membership(
        kind: ChangeKind,
        dir: DirectoryId,
        group: GroupId,
        version: i64,
        member: MemberRef,
    ) -> StoreResult<Self> {
        let membership = Membership {
            group_id: group,
            member_id: member.id,
            member_kind: member.kind,
        };
        Self::new(dir, kind, group.0, version, &membership, Vec::new())
    }

    /// A directory change.
    pub(crate) fn directory(
        kind: ChangeKind,
        dir: &Directory,
        version: i64,
        changed: Vec<FieldChange>,
    ) -> StoreResult<Self> {
        Self::new(dir.id, kind, dir.id.0, version, dir, changed)
    }
}

/// The changes a write transaction appends when it commits, in order.
#[derive(Debug, Default)]
pub struct ChangeQueue(Vec<Change>);

impl ChangeQueue {
    pub(crate) fn emit(&mut self, change: Change) {
        self.0.push(change);
    }

    /// Queues `change` ahead of those queued since [`ChangeQueue::queued`]
    /// returned `position` (e.g. `group.created` ahead of its `member.added`
    /// events, with the final member count).
    pub(crate) fn emit_at(&mut self, position: usize, change: Change) {
        self.0.insert(position, change);
    }

    /// A position for [`ChangeQueue::emit_at`].
    pub(crate) fn queued(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn take(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.0)
    }
}

/// Serializes a value into JSON text (payloads).
fn to_document<T: Serialize>(value: &T) -> StoreResult<Document> {
    serde_json::value::to_raw_value(value)
        .map(Document)
        .map_err(encode_error)
}

/// Serializes a value into a JSON value (field diffs).
pub(crate) fn to_json<T: Serialize>(value: &T) -> StoreResult<serde_json::Value> {
    serde_json::to_value(value).map_err(encode_error)
}

fn encode_error(e: serde_json::Error) -> StoreError {
    tracing::error!(error = %e, "a value does not encode as JSON");
    StoreError::Internal("cannot encode JSON".into())
}

/// The member kind stored as text in `memberships.member_kind`.
pub(crate) fn parse_member_kind(kind: &str) -> StoreResult<MemberKind> {
    match kind {
        "user" => Ok(MemberKind::User),
        "group" => Ok(MemberKind::Group),
        other => Err(StoreError::Internal(format!(
            "bad stored member kind {other:?}"
        ))),
    }
}

/// The members of `fields` whose values differ between two JSON objects.
pub(crate) fn diff_fields(
    old: &serde_json::Value,
    new: &serde_json::Value,
    fields: &[&str],
) -> Vec<FieldChange> {
    fields
        .iter()
        .filter(|f| old[**f] != new[**f])
        .map(|f| FieldChange {
            field: (*f).to_owned(),
            previous: old[*f].clone(),
            current: new[*f].clone(),
        })
        .collect()
}

/// The normalized user fields that differ, by their serialized names (the
/// names consumers see in `changed_fields`).
pub(crate) fn user_field_changes(
    old: &UserFields,
    new: &UserFields,
) -> StoreResult<Vec<FieldChange>> {
    let (old, new) = (to_json(old)?, to_json(new)?);
    let names: Vec<String> = old
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(diff_fields(&old, &new, &names))
}

/// The directory fields that differ, by their serialized names.
pub(crate) fn directory_field_changes(
    old: &Directory,
    new: &Directory,
) -> StoreResult<Vec<FieldChange>> {
    let fields = [
        "name",
        "organization",
        "provider",
        "deprovision_policy",
        "attribute_mappings",
    ];
    Ok(diff_fields(&to_json(old)?, &to_json(new)?, &fields))
}

/// One changed field with its JSON-encoded previous and current values.
fn field_change<T: Serialize>(field: &str, previous: &T, current: &T) -> FieldChange {
    FieldChange {
        field: field.to_owned(),
        previous: serde_json::to_value(previous).unwrap_or_default(),
        current: serde_json::to_value(current).unwrap_or_default(),
    }
}

/// Folds later attribute changes into earlier ones: one entry per field,
/// keeping the first previous value and the last current value.
pub(crate) fn merge_changes(all: &mut Vec<FieldChange>, later: Vec<FieldChange>) {
    for change in later {
        match all.iter_mut().find(|c| c.field == change.field) {
            Some(existing) => existing.current = change.current,
            None => all.push(change),
        }
    }
    all.retain(|c| c.previous != c.current);
}

/// The normalized group fields a new display name / external id change.
pub(crate) fn group_attribute_changes(
    group: &Group,
    display_name: &str,
    external_id: &Option<String>,
) -> Vec<FieldChange> {
    let mut changed = Vec::new();
    if display_name != group.display_name {
        changed.push(field_change(
            "display_name",
            &group.display_name.as_str(),
            &display_name,
        ));
    }
    if *external_id != group.external_id {
        changed.push(field_change("external_id", &group.external_id, external_id));
    }
    changed
}
