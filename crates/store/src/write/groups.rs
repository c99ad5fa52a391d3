//! The group flows and the group-editing state machine. A membership is
//! one row: member changes insert or delete only the named rows and adjust
//! the group's `member_count` and `version` once, never rewriting a member
//! list, so concurrent adds and removes on one group lose nothing.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::changes::{group_attribute_changes, merge_changes};
use super::{Added, Backend, Change, Lock, WriteTx, check_version, retry};
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

/// What one attempt of a batch of group edits came to.
pub(super) enum Batched {
    /// Committed: one result per edit, in order.
    Done(Vec<StoreResult<Group>>),
    /// Edit `pos` failed after it had started writing, so nothing was
    /// committed; it must run alone and the others again without it.
    Failed { pos: usize },
}

/// Applies `edits` (if-version, plan) to one group in one transaction, in
/// order, each as if it ran alone: its version check sees the state the
/// edits before it left, and each edit that changes something gets the
/// next version and its own events. The group is locked once and its row
/// written once at the end (or when an edit changes its attributes, whose
/// `group.updated` event carries the stored row).
///
/// Consecutive edits that only add or only remove members (one operation,
/// no If-Match) touching pairwise different members are written together:
/// their new members are locked and inserted together
/// ([`WriteTx::add_memberships`], one statement on PostgreSQL), one
/// statement deletes — their effects commute, so this is the same as
/// applying them one by one;
/// their plans see the attributes as of the run's start (member edits do
/// not change attributes) but may see an older version and member count.
///
/// An edit that fails before writing (version mismatch, plan rejected,
/// unknown member in such a run) gets its error and the batch goes on; one
/// that fails while writing ends the attempt uncommitted
/// ([`Batched::Failed`]), except for a retryable error, which replays the
/// whole batch.
pub(super) async fn edit_batch<B, F>(
    backend: &B,
    dir: DirectoryId,
    id: GroupId,
    edits: &[&(Option<i64>, F)],
) -> StoreResult<Batched>
where
    B: Backend,
    F: Fn(&Group) -> StoreResult<Vec<GroupOp>>,
{
    let mut tx = backend.begin().await?;
    let current = tx.load_group(dir, id, Lock::Edit).await?;
    let mut state = BatchState {
        current,
        unwritten_delta: 0,
        dirty: false,
        deferred: Vec::new(),
        results: edits.iter().map(|_| None).collect(),
    };
    let mut run = MemberRun::default();
    for (pos, edit) in edits.iter().enumerate() {
        let (if_version, plan) = (&edit.0, &edit.1);
        if if_version.is_some()
            && let Some(failed) = run.flush(&mut tx, &mut state).await?
        {
            return Ok(failed);
        }
        if let Err(e) = check_version(*if_version, state.current.version) {
            state.results[pos] = Some(Err(e));
            continue;
        }
        let ops = match plan(&state.current) {
            Ok(ops) => ops,
            Err(e) => {
                state.results[pos] = Some(Err(e));
                continue;
            }
        };
        if if_version.is_none()
            && let Some(op) = MemberOp::of(&ops, id)
        {
            if !run.fits(&op)
                && let Some(failed) = run.flush(&mut tx, &mut state).await?
            {
                return Ok(failed);
            }
            run.push(pos, op);
            continue;
        }
        if let Some(failed) = run.flush(&mut tx, &mut state).await? {
            return Ok(failed);
        }
        let current = state.current.clone();
        let next_version = current.version + 1;
        let mut editor = GroupEditor::new(&mut tx, current.clone(), next_version);
        for op in ops {
            if let Err(error) = editor.apply(&mut tx, op).await {
                if retry::is_retryable(&error) {
                    return Err(error);
                }
                return Ok(Batched::Failed { pos });
            }
        }
        if !editor.touched {
            state.results[pos] = Some(Ok(current));
            continue;
        }
        if editor.attributes_changed.is_some() {
            // Written now (with the deltas before it): its event carries the
            // row. (SQLite stores the passed count plus the delta, PostgreSQL
            // the row's count plus the delta: both need the count as stored.)
            editor.group.member_count -= state.unwritten_delta;
            editor.count_delta += state.unwritten_delta;
            state.unwritten_delta = 0;
            state.dirty = false;
            let stored = match editor.finish_updated(&mut tx).await {
                Ok(stored) => stored,
                Err(error) if retry::is_retryable(&error) => return Err(error),
                Err(_) => return Ok(Batched::Failed { pos }),
            };
            state.stamp(stored.updated_at);
            state.current = stored.clone();
            state.results[pos] = Some(Ok(stored));
        } else {
            state.member_edit(pos, editor.count_delta);
        }
    }
    if let Some(failed) = run.flush(&mut tx, &mut state).await? {
        return Ok(failed);
    }
    if state.dirty {
        let as_stored = Group {
            member_count: state.current.member_count - state.unwritten_delta,
            ..state.current.clone()
        };
        let (delta, version) = (state.unwritten_delta, as_stored.version);
        let at = match tx.defer_group_write(&as_stored, delta, version) {
            Some(at) => at,
            None => {
                tx.update_group(&as_stored, delta, version)
                    .await?
                    .updated_at
            }
        };
        state.stamp(at);
    }
    backend.commit(tx).await?;
    let results = state
        .results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Internal("edit left unapplied".into()))))
        .collect();
    Ok(Batched::Done(results))
}

/// The error of an add naming `m`, which is no user or group of the
/// directory.
fn unknown_member(m: MemberRef) -> StoreError {
    StoreError::Invalid(format!(
        "no {} with id {} in this directory",
        m.kind.as_str(),
        m.id
    ))
}

/// A batch's group as its edits left it, and their results so far.
struct BatchState {
    current: Group,
    /// Member count changes not yet written to the row.
    unwritten_delta: i64,
    /// Whether the row is behind `current`.
    dirty: bool,
    /// Results that take the row's update time once it is written.
    deferred: Vec<usize>,
    results: Vec<Option<StoreResult<Group>>>,
}

impl BatchState {
    /// Edit `pos` changed members only: the next version, written later.
    fn member_edit(&mut self, pos: usize, delta: i64) {
        self.current.version += 1;
        self.current.member_count += delta;
        self.unwritten_delta += delta;
        self.dirty = true;
        self.deferred.push(pos);
        self.results[pos] = Some(Ok(self.current.clone()));
    }

    /// The row was written at `at`: the deferred results carry that time.
    fn stamp(&mut self, at: chrono::DateTime<chrono::Utc>) {
        for i in self.deferred.drain(..) {
            if let Some(Ok(g)) = self.results.get_mut(i).and_then(Option::as_mut) {
                g.updated_at = at;
                self.current.updated_at = at;
            }
        }
    }
}

/// A member-only edit that can join a [`MemberRun`].
enum MemberOp {
    Add(Vec<MemberRef>),
    Remove(Vec<Uuid>),
}

impl MemberOp {
    /// The edit's one add or remove, deduplicated; `None` for anything else
    /// (several operations, attributes, replace, the group itself).
    fn of(ops: &[GroupOp], group: GroupId) -> Option<Self> {
        let [op] = ops else { return None };
        let mut seen = HashSet::new();
        match op {
            GroupOp::AddMembers(members) => {
                let unique: Vec<MemberRef> = members
                    .iter()
                    .filter(|m| seen.insert(m.id))
                    .copied()
                    .collect();
                let itself = unique
                    .iter()
                    .any(|m| m.kind == MemberKind::Group && m.id == group.0);
                (!itself).then_some(Self::Add(unique))
            }
            GroupOp::RemoveMembers(ids) => Some(Self::Remove(
                ids.iter().copied().filter(|id| seen.insert(*id)).collect(),
            )),
            _ => None,
        }
    }

    fn ids(&self) -> Vec<Uuid> {
        match self {
            Self::Add(members) => members.iter().map(|m| m.id).collect(),
            Self::Remove(ids) => ids.clone(),
        }
    }
}

/// Consecutive member-only edits of a batch on pairwise different members.
#[derive(Default)]
struct MemberRun {
    edits: Vec<(usize, MemberOp)>,
    ids: HashSet<Uuid>,
}

impl MemberRun {
    fn fits(&self, op: &MemberOp) -> bool {
        op.ids().iter().all(|id| !self.ids.contains(id))
    }

    fn push(&mut self, pos: usize, op: MemberOp) {
        self.ids.extend(op.ids());
        self.edits.push((pos, op));
    }

    /// Writes the run (lock and insert the added members, delete the
    /// removed ones), then queues each edit's events in order under its
    /// own version. `Some` when a statement failed (blamed on the run's
    /// first edit).
    async fn flush<T: WriteTx>(
        &mut self,
        tx: &mut T,
        state: &mut BatchState,
    ) -> StoreResult<Option<Batched>> {
        let edits = std::mem::take(&mut self.edits);
        self.ids.clear();
        let Some(&(first, _)) = edits.first() else {
            return Ok(None);
        };
        match Self::write(tx, state, edits).await {
            Ok(()) => Ok(None),
            Err(e) if retry::is_retryable(&e) => Err(e),
            Err(_) => Ok(Some(Batched::Failed { pos: first })),
        }
    }

    async fn write<T: WriteTx>(
        tx: &mut T,
        state: &mut BatchState,
        edits: Vec<(usize, MemberOp)>,
    ) -> StoreResult<()> {
        let (dir, group) = (state.current.directory_id, state.current.id);
        let adds: Vec<&[MemberRef]> = edits
            .iter()
            .filter_map(|(_, op)| match op {
                MemberOp::Add(members) => Some(members.as_slice()),
                MemberOp::Remove(_) => None,
            })
            .collect();
        let Added { unknown, inserted } = match adds.is_empty() {
            true => Added::default(),
            false => tx.add_memberships(dir, group, &adds).await?,
        };
        let mut unknown = unknown.into_iter();
        let mut removes = Vec::new();
        let mut edits_ok = Vec::with_capacity(edits.len());
        for (pos, op) in edits {
            match &op {
                MemberOp::Add(_) => {
                    if let Some(m) = unknown.next().flatten() {
                        state.results[pos] = Some(Err(unknown_member(m)));
                        continue;
                    }
                }
                MemberOp::Remove(ids) => removes.extend_from_slice(ids),
            }
            edits_ok.push((pos, op));
        }
        let removed: HashMap<Uuid, MemberKind> = match removes.is_empty() {
            true => HashMap::new(),
            false => tx
                .delete_memberships(group, Some(&removes))
                .await?
                .into_iter()
                .map(|m| (m.id, m.kind))
                .collect(),
        };
        for (pos, op) in edits_ok {
            let version = state.current.version + 1;
            let events: Vec<(ChangeKind, MemberRef)> = match op {
                MemberOp::Add(members) => members
                    .into_iter()
                    .filter(|m| inserted.contains(&m.id))
                    .map(|m| (ChangeKind::MemberAdded, m))
                    .collect(),
                MemberOp::Remove(ids) => ids
                    .into_iter()
                    .filter_map(|id| removed.get(&id).map(|kind| MemberRef { id, kind: *kind }))
                    .map(|m| (ChangeKind::MemberRemoved, m))
                    .collect(),
            };
            if events.is_empty() {
                state.results[pos] = Some(Ok(state.current.clone()));
                continue;
            }
            let mut delta = 0;
            for (kind, member) in events {
                delta += if kind == ChangeKind::MemberAdded {
                    1
                } else {
                    -1
                };
                tx.changes()
                    .emit(Change::membership(kind, dir, group, version, member)?);
            }
            state.member_edit(pos, delta);
        }
        Ok(())
    }
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
        if changed.is_empty() && self.group.raw == raw {
            return;
        }
        let position = tx.changes().queued();
        let (_, all) = self
            .attributes_changed
            .get_or_insert_with(|| (position, Vec::new()));
        merge_changes(all, changed);
        self.group.display_name = display_name;
        self.group.external_id = external_id;
        self.group.raw = Document::from_value(&raw);
        self.touched = true;
    }

    /// Adds `members` (all or none), locking each against deletion.
    async fn add<T: WriteTx>(&mut self, tx: &mut T, members: &[MemberRef]) -> StoreResult<()> {
        let members = self.unique_members(members)?;
        if members.is_empty() {
            return Ok(());
        }
        let (dir, group) = (self.group.directory_id, self.group.id);
        let Added { unknown, inserted } = tx.add_memberships(dir, group, &[&members]).await?;
        if let Some(m) = unknown.into_iter().flatten().next() {
            return Err(unknown_member(m));
        }
        self.added(tx, members, &inserted)
    }

    /// Inserts the memberships of `members`, already resolved (and locked)
    /// by [`Self::resolve`].
    async fn insert_resolved<T: WriteTx>(
        &mut self,
        tx: &mut T,
        members: Vec<MemberRef>,
    ) -> StoreResult<()> {
        if members.is_empty() {
            return Ok(());
        }
        let (dir, group) = (self.group.directory_id, self.group.id);
        let inserted = tx.insert_memberships(dir, group, &members).await?;
        self.added(tx, members, &inserted)
    }

    /// Queues `member.added` for those of `members` that were `inserted`.
    fn added<T: WriteTx>(
        &mut self,
        tx: &mut T,
        members: Vec<MemberRef>,
        inserted: &HashSet<Uuid>,
    ) -> StoreResult<()> {
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
        // Resolved and locked above (before the membership rows, as the lock
        // order wants): inserted without locking them again.
        self.insert_resolved(tx, wanted).await
    }

    /// Deduplicates `members`, refusing the group itself.
    fn unique_members(&self, members: &[MemberRef]) -> StoreResult<Vec<MemberRef>> {
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
        Ok(unique)
    }

    /// [`Self::unique_members`], each checked to be a user or group of the
    /// directory and locked so it cannot be deleted before this transaction
    /// ends.
    async fn resolve<T: WriteTx>(
        &self,
        tx: &mut T,
        members: &[MemberRef],
    ) -> StoreResult<Vec<MemberRef>> {
        let unique = self.unique_members(members)?;
        if unique.is_empty() {
            return Ok(unique);
        }
        let found = tx.lock_members(self.group.directory_id, &unique).await?;
        if let Some(missing) = unique.iter().find(|m| !found.contains(&(m.kind, m.id))) {
            return Err(unknown_member(*missing));
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
