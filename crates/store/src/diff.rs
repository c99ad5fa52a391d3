//! Backend-neutral pieces of the write path shared by the PostgreSQL and
//! SQLite backends: stored member kinds and field-change bookkeeping.

use crate::{FieldChange, Group, MemberKind, StoreError, StoreResult};

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

/// One changed field with its JSON-encoded previous and current values.
pub(crate) fn field_change<T: serde::Serialize>(
    field: &str,
    previous: &T,
    current: &T,
) -> FieldChange {
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
