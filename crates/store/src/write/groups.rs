//! The group flows and the group-editing state machine. A membership is
//! one row: member changes insert or delete only the named rows and adjust
//! the group's `member_count` and `version` once, never rewriting a member
//! list, so concurrent adds and removes on one group lose nothing.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::changes::{group_attribute_changes, merge_changes};
use super::{Backend, Change, Lock, WriteTx, check_version, retry};
use crate::error::{StoreError, StoreResult};
use crate::model::*;

pub(super) async fn create<B: Backend>(
    backend: &B,
    dir: DirectoryId,
    write: GroupWrite,
) -> StoreResult<Group> {
    // On PostgreSQL the insert's foreign key checks the directory and holds
    // it `FOR KEY SHARE` from this first statement on.
    let mut tx = backend.begin().await?;
    let group = tx.insert_group(dir, &write).await?;
    // Members of a new group are stamped with its first version.
    let mut editor = GroupEditor::new(&mut tx, group, 1);
    if let Some(members) = write.members {
        editor.add(&mut tx, &members).await?;
    }
    let group = editor.finish_created(&mut tx).await?;
    backend.commit(tx).await?;
    Ok(group)
}

/// PUT: the attributes, and the members when given.
pub(super) fn replace_ops(write: GroupWrite) -> Vec<GroupOp> {
    let mut ops = vec![GroupOp::SetAttributes {
        display_name: write.display_name,
        external_id: write.external_id,
        raw: write.raw,
    }];
    ops.extend(write.members.map(GroupOp::ReplaceMembers));
    ops
}

/// Applies the operations `plan` returns for the locked group, in order,
/// in one transaction with one version bump.
pub(super) async fn edit<B, F>(
    backend: &B,
    dir: DirectoryId,
    id: GroupId,
    if_version: Option<i64>,
    plan: F,
) -> StoreResult<Group>
where
    B: Backend,
    F: FnOnce(&Group) -> StoreResult<Vec<GroupOp>>,
{
    let mut tx = backend.begin().await?;
    let old = tx.load_group(dir, id, Lock::Edit).await?;
    check_version(if_version, old.version)?;
    let ops = plan(&old)?;
    let next_version = old.version + 1;
    let mut editor = GroupEditor::new(&mut tx, old, next_version);
    for op in ops {
        editor.apply(&mut tx, op).await?;
    }
    let group = editor.finish_updated(&mut tx).await?;
    backend.commit(tx).await?;
    Ok(group)
}

/// The gRPC add/remove paths: the group first, then (for adds) the
/// members, then the membership rows. Returns (members changed, version).
pub(super) async fn change_members<B: Backend>(
    backend: &B,
    dir: DirectoryId,
    id: GroupId,
    op: GroupOp,
) -> StoreResult<(i64, i64)> {
    let mut tx = backend.begin().await?;
    let old = tx.load_group(dir, id, Lock::Edit).await?;
    let next_version = old.version + 1;
    let mut editor = GroupEditor::new(&mut tx, old, next_version);
    editor.apply(&mut tx, op).await?;
    let changed = editor.finish_members(&mut tx).await?;
    backend.commit(tx).await?;
    Ok(changed)
}

/// Emits `member.removed` for every member (stamped with the group's
/// current version), removes the group from the groups holding it, then
/// deletes it (`group.deleted`). Consumers mirror memberships from member
/// events, so every membership that disappears gets its event. Locks like
/// a user deletion: the groups holding it and itself in id order, then
/// itself for deletion.
pub(super) async fn delete<B: Backend>(
    backend: &B,
    dir: DirectoryId,
    id: GroupId,
    if_version: Option<i64>,
) -> StoreResult<()> {
    let mut tx = backend.begin().await?;
    let holders = tx.lock_groups_holding(dir, id.0).await?;
    let group = tx.load_group(dir, id, Lock::Delete).await?;
    check_version(if_version, group.version)?;
    let version = group.version;
    let mut editor = GroupEditor::new(&mut tx, group.clone(), version);
    editor.remove(&mut tx, None).await?;
    remove_from_locked_groups(&mut tx, dir, id.0, &holders).await?;
    tx.delete_group(id).await?;
    tx.changes()
        .emit(Change::group(ChangeKind::GroupDeleted, &group, Vec::new())?);
    backend.commit(tx).await
}

/// Removes `member`, now locked against new memberships, from every group
/// holding it; each group gets a new version and a `member.removed` event.
/// `locked` are the groups [`WriteTx::lock_groups_holding`] locked: a
/// membership in any other group was added after they were read, and
/// locking that group now would invert the lock order, so the transaction
/// is rolled back and replayed instead (the replay locks the new group
/// first).
pub(super) async fn remove_from_locked_groups<T: WriteTx>(
    tx: &mut T,
    dir: DirectoryId,
    member: Uuid,
    locked: &[Uuid],
) -> StoreResult<()> {
    let removed = tx.leave_groups(member).await?;
    if removed.iter().any(|(g, _)| !locked.contains(g)) {
        return Err(retry::replay());
    }
    let kinds: HashMap<Uuid, MemberKind> = removed.into_iter().collect();
    let affected: Vec<Uuid> = locked
        .iter()
        .filter(|g| kinds.contains_key(g))
        .copied()
        .collect();
    if affected.is_empty() {
        return Ok(());
    }
    let versions: HashMap<Uuid, i64> = tx.bump_groups(&affected, -1).await?.into_iter().collect();
    for group in affected {
        let member = MemberRef {
            id: member,
            kind: kinds[&group],
        };
        let version = versions.get(&group).copied().unwrap_or_default();
        tx.changes().emit(Change::membership(
            ChangeKind::MemberRemoved,
            dir,
            GroupId(group),
            version,
            member,
        )?);
    }
    Ok(())
}

/// One group's change inside a write transaction: applies attribute and
/// member operations, queues their changes, and writes the group row once
/// at the end.
struct GroupEditor {
    /// The evolving attributes (the member count as loaded).
    group: Group,
    /// The version stamped on this change's events and stored at the end.
    next_version: i64,
    count_delta: i64,
    /// Where this editor's changes start in the transaction's queue.
    start: usize,
    /// Attribute changes, and where `group.updated` goes in the queue
    /// (ahead of the member events that followed the attribute change).
    attributes_changed: Option<(usize, Vec<FieldChange>)>,
    /// Whether anything (attributes or members) changed.
    touched: bool,
}

impl GroupEditor {
    fn new<T: WriteTx>(tx: &mut T, group: Group, next_version: i64) -> Self {
        Self {
            group,
            next_version,
            count_delta: 0,
            start: tx.changes().queued(),
            attributes_changed: None,
            touched: false,
        }
    }

    async fn apply<T: WriteTx>(&mut self, tx: &mut T, op: GroupOp) -> StoreResult<()> {
        match op {
            GroupOp::SetAttributes {
                display_name,
                external_id,
                raw,
            } => self.set_attributes(tx, display_name, external_id, raw),
            GroupOp::AddMembers(members) => self.add(tx, &members).await?,
            GroupOp::RemoveMembers(ids) => self.remove(tx, Some(&ids)).await?,
            GroupOp::ReplaceMembers(members) => self.replace(tx, &members).await?,
            GroupOp::RemoveAllMembers => self.remove(tx, None).await?,
        }
        Ok(())
    }

    fn set_attributes<T: WriteTx>(
        &mut self,
        tx: &mut T,
        display_name: String,
        external_id: Option<String>,
        raw: serde_json::Value,
    ) {
        let changed = group_attribute_changes(&self.group, &display_name, &external_id);
        if changed.is_empty() && raw == self.group.raw {
            return;
        }
        let position = tx.changes().queued();
        let (_, all) = self
            .attributes_changed
            .get_or_insert_with(|| (position, Vec::new()));
        merge_changes(all, changed);
        self.group.display_name = display_name;
        self.group.external_id = external_id;
        self.group.raw = raw;
        self.touched = true;
    }

    async fn add<T: WriteTx>(&mut self, tx: &mut T, members: &[MemberRef]) -> StoreResult<()> {
        let members = self.resolve(tx, members).await?;
        if members.is_empty() {
            return Ok(());
        }
        let (dir, group) = (self.group.directory_id, self.group.id);
        let inserted = tx.insert_memberships(dir, group, &members).await?;
        for member in members.into_iter().filter(|m| inserted.contains(&m.id)) {
            self.member_event(tx, ChangeKind::MemberAdded, member)?;
            self.count_delta += 1;
        }
        Ok(())
    }

    /// `None` removes every member. Events go in input order (by member id
    /// for `None`).
    async fn remove<T: WriteTx>(&mut self, tx: &mut T, ids: Option<&[Uuid]>) -> StoreResult<()> {
        if ids.is_some_and(<[Uuid]>::is_empty) {
            return Ok(());
        }
        let removed: HashMap<Uuid, MemberKind> = tx
            .delete_memberships(self.group.id, ids)
            .await?
            .into_iter()
            .map(|m| (m.id, m.kind))
            .collect();
        let order: Vec<Uuid> = match ids {
            Some(ids) => {
                let mut seen = HashSet::new();
                ids.iter().copied().filter(|id| seen.insert(*id)).collect()
            }
            None => {
                let mut all: Vec<Uuid> = removed.keys().copied().collect();
                all.sort();
                all
            }
        };
        for id in order {
            if let Some(kind) = removed.get(&id) {
                let member = MemberRef { id, kind: *kind };
                self.member_event(tx, ChangeKind::MemberRemoved, member)?;
                self.count_delta -= 1;
            }
        }
        Ok(())
    }

    /// Makes the member set exactly `members`, touching only the difference.
    async fn replace<T: WriteTx>(&mut self, tx: &mut T, members: &[MemberRef]) -> StoreResult<()> {
        let wanted = self.resolve(tx, members).await?;
        let wanted_ids: HashSet<Uuid> = wanted.iter().map(|m| m.id).collect();
        let gone: Vec<Uuid> = tx
            .member_ids(self.group.id)
            .await?
            .into_iter()
            .filter(|id| !wanted_ids.contains(id))
            .collect();
        self.remove(tx, Some(&gone)).await?;
        self.add(tx, &wanted).await
    }

    /// Deduplicates `members` and checks that each is a user or group of
    /// the directory (and not the group itself), locking each so it cannot
    /// be deleted before this transaction ends.
    async fn resolve<T: WriteTx>(
        &self,
        tx: &mut T,
        members: &[MemberRef],
    ) -> StoreResult<Vec<MemberRef>> {
        let mut seen = HashSet::new();
        let unique: Vec<MemberRef> = members
            .iter()
            .filter(|m| seen.insert(m.id))
            .copied()
            .collect();
        if unique
            .iter()
            .any(|m| m.kind == MemberKind::Group && m.id == self.group.id.0)
        {
            return Err(StoreError::Invalid(
                "a group cannot be a member of itself".into(),
            ));
        }
        if unique.is_empty() {
            return Ok(unique);
        }
        let found = tx.lock_members(self.group.directory_id, &unique).await?;
        if let Some(missing) = unique.iter().find(|m| !found.contains(&(m.kind, m.id))) {
            return Err(StoreError::Invalid(format!(
                "no {} with id {} in this directory",
                missing.kind.as_str(),
                missing.id
            )));
        }
        Ok(unique)
    }

    fn member_event<T: WriteTx>(
        &mut self,
        tx: &mut T,
        kind: ChangeKind,
        member: MemberRef,
    ) -> StoreResult<()> {
        let (dir, group) = (self.group.directory_id, self.group.id);
        tx.changes().emit(Change::membership(
            kind,
            dir,
            group,
            self.next_version,
            member,
        )?);
        self.touched = true;
        Ok(())
    }

    /// A created group: stores the member count (the version stays 1) and
    /// queues `group.created` (with the final state) ahead of its member
    /// events.
    async fn finish_created<T: WriteTx>(self, tx: &mut T) -> StoreResult<Group> {
        let mut group = self.group;
        if self.count_delta != 0 {
            group = tx
                .update_group(&group, self.count_delta, group.version)
                .await?;
        }
        tx.changes().emit_at(
            self.start,
            Change::group(ChangeKind::GroupCreated, &group, Vec::new())?,
        );
        Ok(group)
    }

    /// After member operations only: adjusts the count and bumps the
    /// version without rewriting the attributes. Returns (members changed,
    /// version).
    async fn finish_members<T: WriteTx>(self, tx: &mut T) -> StoreResult<(i64, i64)> {
        if !self.touched {
            return Ok((0, self.group.version));
        }
        let bumped = tx.bump_groups(&[self.group.id.0], self.count_delta).await?;
        let version = bumped.first().map(|(_, v)| *v);
        Ok((
            self.count_delta.abs(),
            version.ok_or(StoreError::NotFound("group"))?,
        ))
    }

    /// Writes the group when anything changed (new version, count,
    /// attributes) and queues `group.updated` for attribute changes; a
    /// no-op writes and emits nothing.
    async fn finish_updated<T: WriteTx>(self, tx: &mut T) -> StoreResult<Group> {
        if !self.touched {
            return Ok(self.group);
        }
        let group = tx
            .update_group(&self.group, self.count_delta, self.next_version)
            .await?;
        if let Some((position, changed)) = self.attributes_changed {
            tx.changes().emit_at(
                position,
                Change::group(ChangeKind::GroupUpdated, &group, changed)?,
            );
        }
        Ok(group)
    }
}
