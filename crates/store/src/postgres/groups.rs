//! Groups and memberships. A membership is one row: member changes insert
//! or delete only the named rows and adjust the group's `member_count` and
//! `version` in one UPDATE, never rewriting a member list, so concurrent
//! adds and removes on one group lose nothing.

pub(super) use crate::diff::parse_member_kind;
use crate::diff::{group_attribute_changes, merge_changes};
use std::collections::{HashMap, HashSet};

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, TryStreamExt, stream};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Row, Transaction};
use uuid::Uuid;

use super::changes::NewChange;
use super::errors::map_db;
use super::lists::BEGIN_SNAPSHOT;
use super::{PgStore, WriteTx, check_version};
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::{GroupUpdateFn, MemberPages};

/// Members read per statement when a group is read with its members.
pub(super) const MEMBER_PAGE: i64 = 5_000;

/// Columns of a group row, as [`decode_group`] reads them.
pub(super) const GROUP_COLUMNS: &str = "groups.id, groups.directory_id, groups.display_name, groups.external_id, \
     groups.raw, groups.member_count, groups.version, groups.created_seq, groups.created_at, groups.updated_at";

/// Row lock of a group whose members, count or attributes change: does not
/// block `FOR KEY SHARE` (taken by memberships that reference the group).
const LOCK_EDIT: &str = " FOR NO KEY UPDATE";

impl PgStore {
    pub(super) async fn create_group_impl(
        &self,
        dir: DirectoryId,
        write: GroupWrite,
    ) -> StoreResult<Group> {
        // The foreign key checks the directory (a violation is
        // `NotFound("directory")`) and holds it `FOR KEY SHARE` from this
        // first statement on, before any revision is taken.
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "INSERT INTO groups (id, directory_id, display_name, external_id, raw) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {GROUP_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(GroupId::new().0)
            .bind(dir.0)
            .bind(&write.display_name)
            .bind(&write.external_id)
            .bind(&write.raw)
            .fetch_one(tx.conn())
            .await
            .map_err(map_db)?;
        let group = decode_group(&row)?;
        // Members of a new group are stamped with its first version.
        let mut editor = GroupEditor::new(group, 1);
        if let Some(members) = write.members {
            editor.add(&mut tx, &members).await?;
        }
        let group = editor.finish_created(&mut tx).await?;
        tx.commit(self).await?;
        Ok(group)
    }

    pub(super) async fn get_group_impl(
        &self,
        dir: DirectoryId,
        id: GroupId,
        include_members: bool,
    ) -> StoreResult<Group> {
        if !include_members {
            let mut conn = self.conn().await?;
            return load_group(&mut conn, dir, id, "").await;
        }
        let (mut group, pages) = self.read_group_impl(dir, id, MEMBER_PAGE).await?;
        group.members = Some(pages.try_concat().await?);
        Ok(group)
    }

    /// Opens a REPEATABLE READ snapshot, reads the group in it, and leaves
    /// the snapshot to the member stream, which ends it after the last page.
    pub(super) async fn read_group_impl(
        &self,
        dir: DirectoryId,
        id: GroupId,
        page_size: i64,
    ) -> StoreResult<(Group, MemberPages)> {
        let mut tx = self.pool.begin_with(BEGIN_SNAPSHOT).await.map_err(map_db)?;
        let group = load_group(&mut tx, dir, id, "").await?;
        Ok((group, member_pages(tx, id, page_size)))
    }

    pub(super) async fn replace_group_impl(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        write: GroupWrite,
    ) -> StoreResult<Group> {
        let mut ops = vec![GroupOp::SetAttributes {
            display_name: write.display_name,
            external_id: write.external_id,
            raw: write.raw,
        }];
        ops.extend(write.members.map(GroupOp::ReplaceMembers));
        self.edit_group(dir, id, if_version, move |_| Ok(ops)).await
    }

    pub(super) async fn update_group_impl(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        update: &GroupUpdateFn,
    ) -> StoreResult<Group> {
        self.edit_group(dir, id, if_version, move |g| {
            update(g).map_err(StoreError::Rejected)
        })
        .await
    }

    /// Applies the operations `plan` returns for the locked group, in order,
    /// in one transaction with one version bump.
    async fn edit_group<F>(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        plan: F,
    ) -> StoreResult<Group>
    where
        F: FnOnce(&Group) -> StoreResult<Vec<GroupOp>>,
    {
        let mut tx = self.begin_write().await?;
        let old = load_group(tx.conn(), dir, id, LOCK_EDIT).await?;
        check_version(if_version, old.version)?;
        let ops = plan(&old)?;
        let next_version = old.version + 1;
        let mut editor = GroupEditor::new(old, next_version);
        for op in ops {
            editor.apply(&mut tx, op).await?;
        }
        let group = editor.finish_updated(&mut tx).await?;
        tx.commit(self).await?;
        Ok(group)
    }

    /// Emits `member.removed` for every member (stamped with the group's
    /// current version), removes the group from the groups holding it, then
    /// deletes it (`group.deleted`). Locks like a user deletion: the groups
    /// holding it and itself in id order, then itself `FOR UPDATE`.
    pub(super) async fn delete_group_impl(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let holders = lock_groups_holding(&mut tx, dir, id.0).await?;
        let group = load_group(tx.conn(), dir, id, " FOR UPDATE").await?;
        check_version(if_version, group.version)?;
        let version = group.version;
        let mut editor = GroupEditor::new(group.clone(), version);
        editor.remove_all(&mut tx).await?;
        for event in editor.events.drain(..) {
            tx.emit(event);
        }
        remove_from_locked_groups(&mut tx, dir, id.0, &holders).await?;
        sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await
            .map_err(map_db)?;
        tx.emit(group_change(ChangeKind::GroupDeleted, &group, Vec::new())?);
        tx.commit(self).await
    }

    /// Locks the group, then the members (`FOR KEY SHARE`, so a concurrent
    /// delete of a member waits or wins cleanly), then inserts the new
    /// membership rows and bumps the group with one UPDATE: the one lock
    /// order of the module doc of `postgres` (group, then member).
    pub(super) async fn add_members_impl(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[MemberRef],
    ) -> StoreResult<(i64, i64)> {
        let mut tx = self.begin_write().await?;
        let current = load_group(tx.conn(), dir, group, LOCK_EDIT).await?;
        let members = resolve_members(tx.conn(), dir, group, members).await?;
        let added = insert_memberships(tx.conn(), dir, group, &members).await?;
        let version = bump_group(tx.conn(), group, added.len() as i64, current.version).await?;
        for member in &added {
            tx.emit(membership_change(
                ChangeKind::MemberAdded,
                dir,
                group,
                version,
                *member,
            )?);
        }
        tx.commit(self).await?;
        Ok((added.len() as i64, version))
    }

    pub(super) async fn remove_members_impl(
        &self,
        dir: DirectoryId,
        group: GroupId,
        ids: &[Uuid],
    ) -> StoreResult<(i64, i64)> {
        // The group before the membership rows, as everywhere.
        let mut tx = self.begin_write().await?;
        let current = load_group(tx.conn(), dir, group, LOCK_EDIT).await?;
        let removed = delete_memberships(tx.conn(), group, Some(ids)).await?;
        let version =
            bump_group(tx.conn(), group, -(removed.len() as i64), current.version).await?;
        for member in &removed {
            tx.emit(membership_change(
                ChangeKind::MemberRemoved,
                dir,
                group,
                version,
                *member,
            )?);
        }
        tx.commit(self).await?;
        Ok((removed.len() as i64, version))
    }

    pub(super) async fn list_members_impl(
        &self,
        dir: DirectoryId,
        group: GroupId,
        after: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<Member>> {
        let mut conn = self.conn().await?;
        load_group(&mut conn, dir, group, "").await?;
        members_of(&mut conn, group, after, limit).await
    }
}

/// Accumulates a group change inside its transaction: attribute changes,
/// member changes (with their events) and the member count delta; writes the
/// group row once at the end.
struct GroupEditor {
    group: Group,
    next_version: i64,
    count_delta: i64,
    /// Attribute changes, and where `group.updated` goes among the queued
    /// events (ahead of the member events that followed the change).
    attributes_changed: Option<(usize, Vec<FieldChange>)>,
    events: Vec<NewChange>,
    touched: bool,
}

impl GroupEditor {
    fn new(group: Group, next_version: i64) -> Self {
        Self {
            group,
            next_version,
            count_delta: 0,
            attributes_changed: None,
            events: Vec::new(),
            touched: false,
        }
    }

    async fn apply(&mut self, tx: &mut WriteTx, op: GroupOp) -> StoreResult<()> {
        match op {
            GroupOp::SetAttributes {
                display_name,
                external_id,
                raw,
            } => self.set_attributes(display_name, external_id, raw),
            GroupOp::AddMembers(members) => self.add(tx, &members).await?,
            GroupOp::RemoveMembers(ids) => self.remove(tx, Some(&ids)).await?,
            GroupOp::ReplaceMembers(members) => self.replace(tx, &members).await?,
            GroupOp::RemoveAllMembers => self.remove_all(tx).await?,
        }
        Ok(())
    }

    fn set_attributes(
        &mut self,
        display_name: String,
        external_id: Option<String>,
        raw: serde_json::Value,
    ) {
        let changed = group_attribute_changes(&self.group, &display_name, &external_id);
        if changed.is_empty() && raw == self.group.raw {
            return;
        }
        let position = self.events.len();
        let (_, all) = self
            .attributes_changed
            .get_or_insert_with(|| (position, Vec::new()));
        merge_changes(all, changed);
        self.group.display_name = display_name;
        self.group.external_id = external_id;
        self.group.raw = raw;
        self.touched = true;
    }

    async fn add(&mut self, tx: &mut WriteTx, members: &[MemberRef]) -> StoreResult<()> {
        let (dir, group) = (self.group.directory_id, self.group.id);
        let members = resolve_members(tx.conn(), dir, group, members).await?;
        let added = insert_memberships(tx.conn(), dir, group, &members).await?;
        for member in added {
            self.member_event(ChangeKind::MemberAdded, member)?;
            self.count_delta += 1;
        }
        Ok(())
    }

    /// `None` removes every member.
    async fn remove(&mut self, tx: &mut WriteTx, ids: Option<&[Uuid]>) -> StoreResult<()> {
        let removed = delete_memberships(tx.conn(), self.group.id, ids).await?;
        for member in removed {
            self.member_event(ChangeKind::MemberRemoved, member)?;
            self.count_delta -= 1;
        }
        Ok(())
    }

    /// Makes the member set exactly `members`, touching only the difference.
    async fn replace(&mut self, tx: &mut WriteTx, members: &[MemberRef]) -> StoreResult<()> {
        let (dir, group) = (self.group.directory_id, self.group.id);
        let wanted = resolve_members(tx.conn(), dir, group, members).await?;
        let wanted_ids: HashSet<Uuid> = wanted.iter().map(|m| m.id).collect();
        let current: Vec<Uuid> = sqlx::query_scalar(
            "SELECT member_id FROM memberships WHERE group_id = $1 ORDER BY member_id",
        )
        .bind(group.0)
        .fetch_all(tx.conn())
        .await
        .map_err(map_db)?;
        let gone: Vec<Uuid> = current
            .into_iter()
            .filter(|id| !wanted_ids.contains(id))
            .collect();
        if !gone.is_empty() {
            self.remove(tx, Some(&gone)).await?;
        }
        self.add(tx, &wanted).await
    }

    async fn remove_all(&mut self, tx: &mut WriteTx) -> StoreResult<()> {
        self.remove(tx, None).await
    }

    fn member_event(&mut self, kind: ChangeKind, member: MemberRef) -> StoreResult<()> {
        let (dir, group) = (self.group.directory_id, self.group.id);
        self.events.push(membership_change(
            kind,
            dir,
            group,
            self.next_version,
            member,
        )?);
        self.touched = true;
        Ok(())
    }

    /// A created group: stores the member count (version stays 1) and
    /// queues `group.created` (with the final state), then the member events.
    async fn finish_created(mut self, tx: &mut WriteTx) -> StoreResult<Group> {
        if self.count_delta != 0 {
            self.group = self.store(tx, self.group.version).await?;
        }
        tx.emit(group_change(
            ChangeKind::GroupCreated,
            &self.group,
            Vec::new(),
        )?);
        for event in self.events.drain(..) {
            tx.emit(event);
        }
        Ok(self.group)
    }

    /// Writes the group when anything changed (new version, count,
    /// attributes) and queues the events; a no-op writes and emits nothing.
    async fn finish_updated(mut self, tx: &mut WriteTx) -> StoreResult<Group> {
        if !self.touched {
            return Ok(self.group);
        }
        self.group = self.store(tx, self.next_version).await?;
        if let Some((position, changed)) = self.attributes_changed.take() {
            let event = group_change(ChangeKind::GroupUpdated, &self.group, changed)?;
            self.events.insert(position, event);
        }
        for event in self.events.drain(..) {
            tx.emit(event);
        }
        Ok(self.group)
    }

    async fn store(&self, tx: &mut WriteTx, version: i64) -> StoreResult<Group> {
        let g = &self.group;
        let sql = format!(
            "UPDATE groups SET display_name = $2, external_id = $3, raw = $4, member_count = member_count + $5, \
             version = $6, updated_at = now() WHERE id = $1 RETURNING {GROUP_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(g.id.0)
            .bind(&g.display_name)
            .bind(&g.external_id)
            .bind(&g.raw)
            .bind(self.count_delta)
            .bind(version)
            .fetch_one(tx.conn())
            .await
            .map_err(map_db)?;
        decode_group(&row)
    }
}

/// Deduplicates `members` and checks that each is a user or group of the
/// directory (and not the group itself), locking each `FOR KEY SHARE` so it
/// cannot be deleted before this transaction ends.
async fn resolve_members(
    conn: &mut PgConnection,
    dir: DirectoryId,
    group: GroupId,
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
        .any(|m| m.kind == MemberKind::Group && m.id == group.0)
    {
        return Err(StoreError::Invalid(
            "a group cannot be a member of itself".into(),
        ));
    }
    let mut ids_by_kind: HashMap<MemberKind, Vec<Uuid>> = HashMap::new();
    for m in &unique {
        ids_by_kind.entry(m.kind).or_default().push(m.id);
    }
    let mut found = HashSet::new();
    for (kind, ids) in &ids_by_kind {
        let sql = match kind {
            MemberKind::User => {
                "SELECT id FROM users WHERE directory_id = $1 AND id = ANY($2) ORDER BY id FOR KEY SHARE"
            }
            MemberKind::Group => {
                "SELECT id FROM groups WHERE directory_id = $1 AND id = ANY($2) ORDER BY id FOR KEY SHARE"
            }
        };
        let rows: Vec<Uuid> = sqlx::query_scalar(sql)
            .bind(dir.0)
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_db)?;
        found.extend(rows.into_iter().map(|id| (*kind, id)));
    }
    if let Some(missing) = unique.iter().find(|m| !found.contains(&(m.kind, m.id))) {
        return Err(StoreError::Invalid(format!(
            "no {} with id {} in this directory",
            missing.kind.as_str(),
            missing.id
        )));
    }
    Ok(unique)
}

/// Inserts the memberships not present yet; returns those inserted, in
/// input order.
async fn insert_memberships(
    conn: &mut PgConnection,
    dir: DirectoryId,
    group: GroupId,
    members: &[MemberRef],
) -> StoreResult<Vec<MemberRef>> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = members.iter().map(|m| m.id).collect();
    let kinds: Vec<&str> = members.iter().map(|m| m.kind.as_str()).collect();
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO memberships (directory_id, group_id, member_id, member_kind) \
         SELECT $1, $2, m.id, m.kind FROM unnest($3::uuid[], $4::text[]) WITH ORDINALITY AS m(id, kind, ord) \
         ORDER BY m.ord \
         ON CONFLICT (group_id, member_id) DO NOTHING RETURNING member_id",
    )
    .bind(dir.0)
    .bind(group.0)
    .bind(&ids)
    .bind(&kinds)
    .fetch_all(conn)
    .await
    .map_err(map_db)?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    Ok(members
        .iter()
        .filter(|m| inserted.contains(&m.id))
        .copied()
        .collect())
}

/// Deletes the named memberships (`None`: all of the group); returns those
/// deleted, in input order (by member id for `None`).
async fn delete_memberships(
    conn: &mut PgConnection,
    group: GroupId,
    ids: Option<&[Uuid]>,
) -> StoreResult<Vec<MemberRef>> {
    let rows: Vec<(Uuid, String)> = match ids {
        Some([]) => return Ok(Vec::new()),
        Some(ids) => {
            sqlx::query_as(
                "DELETE FROM memberships WHERE group_id = $1 AND member_id = ANY($2) \
                 RETURNING member_id, member_kind",
            )
            .bind(group.0)
            .bind(ids)
            .fetch_all(conn)
            .await
        }
        None => {
            sqlx::query_as(
                "DELETE FROM memberships WHERE group_id = $1 RETURNING member_id, member_kind",
            )
            .bind(group.0)
            .fetch_all(conn)
            .await
        }
    }
    .map_err(map_db)?;
    let mut removed: HashMap<Uuid, MemberKind> = HashMap::new();
    for (id, kind) in rows {
        removed.insert(id, parse_member_kind(&kind)?);
    }
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
    Ok(order
        .into_iter()
        .filter_map(|id| removed.get(&id).map(|kind| MemberRef { id, kind: *kind }))
        .collect())
}

/// Adds `delta` to the member count and bumps the version in one UPDATE
/// (the row lock serializes concurrent member changes); a zero delta
/// changes nothing and returns `current_version`.
async fn bump_group(
    conn: &mut PgConnection,
    group: GroupId,
    delta: i64,
    current_version: i64,
) -> StoreResult<i64> {
    if delta == 0 {
        return Ok(current_version);
    }
    let version: Option<i64> = sqlx::query_scalar(
        "UPDATE groups SET member_count = member_count + $2, version = version + 1, updated_at = now() \
         WHERE id = $1 RETURNING version",
    )
    .bind(group.0)
    .bind(delta)
    .fetch_optional(conn)
    .await
    .map_err(map_db)?;
    version.ok_or(StoreError::NotFound("group"))
}

/// Locks every group of `dir` holding `member` (a user or group id) —
/// and `member` itself when it is a group, whose memberships change too —
/// in ascending id order, before the caller locks `member` `FOR UPDATE`:
/// step 1 of the one lock order. Returns their ids.
pub(super) async fn lock_groups_holding(
    tx: &mut WriteTx,
    dir: DirectoryId,
    member: Uuid,
) -> StoreResult<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT g.id FROM groups g WHERE g.directory_id = $2 \
         AND (g.id = $1 OR g.id IN (SELECT group_id FROM memberships WHERE member_id = $1)) \
         ORDER BY g.id FOR NO KEY UPDATE",
    )
    .bind(member)
    .bind(dir.0)
    .fetch_all(tx.conn())
    .await
    .map_err(map_db)
}

/// Removes `member`, now locked against new memberships, from every group
/// holding it; each group gets a new version and a `member.removed` event.
/// `locked` are the groups [`lock_groups_holding`] locked: a membership in
/// any other group was added after they were read, and locking that group
/// now would invert the lock order, so the transaction is rolled back and
/// replayed instead (the replay reads and locks the new group first).
pub(super) async fn remove_from_locked_groups(
    tx: &mut WriteTx,
    dir: DirectoryId,
    member: Uuid,
    locked: &[Uuid],
) -> StoreResult<()> {
    let removed: Vec<(Uuid, String)> = sqlx::query_as(
        "DELETE FROM memberships WHERE member_id = $1 RETURNING group_id, member_kind",
    )
    .bind(member)
    .fetch_all(tx.conn())
    .await
    .map_err(map_db)?;
    if removed.iter().any(|(g, _)| !locked.contains(g)) {
        return Err(super::errors::replay());
    }
    let kinds: HashMap<Uuid, String> = removed.into_iter().collect();
    let affected: Vec<Uuid> = locked
        .iter()
        .filter(|g| kinds.contains_key(g))
        .copied()
        .collect();
    if affected.is_empty() {
        return Ok(());
    }
    let versions: Vec<(Uuid, i64)> = sqlx::query_as(
        "UPDATE groups SET member_count = member_count - 1, version = version + 1, updated_at = now() \
         WHERE id = ANY($1) RETURNING id, version",
    )
    .bind(&affected)
    .fetch_all(tx.conn())
    .await
    .map_err(map_db)?;
    let versions: HashMap<Uuid, i64> = versions.into_iter().collect();
    for group in affected {
        let member = MemberRef {
            id: member,
            kind: parse_member_kind(&kinds[&group])?,
        };
        let version = versions.get(&group).copied().unwrap_or_default();
        tx.emit(membership_change(
            ChangeKind::MemberRemoved,
            dir,
            GroupId(group),
            version,
            member,
        )?);
    }
    Ok(())
}

/// Loads a group of `dir` without members (optionally locking the row),
/// or fails with `NotFound("group")`.
pub(super) async fn load_group(
    conn: &mut PgConnection,
    dir: DirectoryId,
    id: GroupId,
    lock: &str,
) -> StoreResult<Group> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM groups WHERE groups.id = $1 AND groups.directory_id = $2{lock}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .bind(dir.0)
        .fetch_optional(conn)
        .await
        .map_err(map_db)?
        .ok_or(StoreError::NotFound("group"))?;
    decode_group(&row)
}

/// Members with their display names, from `memberships m`.
const MEMBERS_SELECT: &str = "SELECT m.group_id, m.member_id, m.member_kind, \
       CASE m.member_kind WHEN 'user' THEN COALESCE(u.display_name, u.user_name) ELSE g.display_name END \
         AS display \
     FROM memberships m \
     LEFT JOIN users u ON m.member_kind = 'user' AND u.id = m.member_id \
     LEFT JOIN groups g ON m.member_kind = 'group' AND g.id = m.member_id";

/// Members of a group with display names, ordered by member id, after
/// `after`, at most `limit`.
pub(super) async fn members_of(
    conn: &mut PgConnection,
    group: GroupId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<Member>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{MEMBERS_SELECT} WHERE m.group_id = $1 AND m.member_id > $2 ORDER BY m.member_id LIMIT $3"
    )))
    .bind(group.0)
    // Not `$2 IS NULL OR …`: a generic plan could not use the key range
    // then, and would read the whole group for every page. Member ids are
    // generated, never nil.
    .bind(after.unwrap_or_else(Uuid::nil))
    .bind(limit.max(0))
    .fetch_all(conn)
    .await
    .map_err(map_db)?;
    rows.iter().map(decode_member).collect()
}

/// Streams a group's members from the snapshot of `tx`: one statement whose
/// rows a task cuts into pages, so the group is planned and sorted once
/// (a keyset statement per page would re-plan, and with stale statistics
/// re-read the whole group, for every page). The task starts on the first
/// poll, sends a page at a time, and commits (ends the snapshot) after the
/// last row; dropping the stream stops it.
fn member_pages(tx: Transaction<'static, Postgres>, group: GroupId, page_size: i64) -> MemberPages {
    let size = usize::try_from(page_size.max(1)).unwrap_or(usize::MAX);
    let start = async move {
        let (mut pages, receiver) = mpsc::channel(1);
        tokio::spawn(async move {
            if let Err(e) = send_member_pages(tx, group, size, &mut pages).await {
                let _ = pages.send(Err(e)).await;
            }
        });
        receiver
    };
    stream::once(start).flatten().boxed()
}

async fn send_member_pages(
    mut tx: Transaction<'static, Postgres>,
    group: GroupId,
    size: usize,
    pages: &mut mpsc::Sender<StoreResult<Vec<Member>>>,
) -> StoreResult<()> {
    let mut page = Vec::with_capacity(size.min(MEMBER_PAGE as usize));
    {
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{MEMBERS_SELECT} WHERE m.group_id = $1 ORDER BY m.member_id"
        )))
        .bind(group.0)
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await.map_err(map_db)? {
            page.push(decode_member(&row)?);
            if page.len() == size && pages.send(Ok(std::mem::take(&mut page))).await.is_err() {
                // The reader went away: dropping `tx` rolls the snapshot back.
                return Ok(());
            }
        }
    }
    tx.commit().await.map_err(map_db)?;
    if !page.is_empty() {
        let _ = pages.send(Ok(page)).await;
    }
    Ok(())
}

/// Members of several groups (one query for a page of groups).
pub(super) async fn members_of_groups(
    conn: &mut PgConnection,
    groups: &[Uuid],
) -> StoreResult<HashMap<Uuid, Vec<Member>>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{MEMBERS_SELECT} WHERE m.group_id = ANY($1) ORDER BY m.group_id, m.member_id"
    )))
    .bind(groups)
    .fetch_all(conn)
    .await
    .map_err(map_db)?;
    let mut out: HashMap<Uuid, Vec<Member>> = HashMap::new();
    for row in &rows {
        let group: Uuid = row.try_get("group_id").map_err(map_db)?;
        out.entry(group).or_default().push(decode_member(row)?);
    }
    Ok(out)
}

fn decode_member(row: &PgRow) -> StoreResult<Member> {
    let kind: String = row.try_get("member_kind").map_err(map_db)?;
    Ok(Member {
        id: row.try_get("member_id").map_err(map_db)?,
        kind: parse_member_kind(&kind)?,
        display: row.try_get("display").map_err(map_db)?,
    })
}

/// Decodes a row selected with [`GROUP_COLUMNS`] (without members).
pub(super) fn decode_group(row: &PgRow) -> StoreResult<Group> {
    Ok(Group {
        id: GroupId(row.try_get("id").map_err(map_db)?),
        directory_id: DirectoryId(row.try_get("directory_id").map_err(map_db)?),
        display_name: row.try_get("display_name").map_err(map_db)?,
        external_id: row.try_get("external_id").map_err(map_db)?,
        raw: row.try_get("raw").map_err(map_db)?,
        member_count: row.try_get("member_count").map_err(map_db)?,
        members: None,
        version: row.try_get("version").map_err(map_db)?,
        created_at: row.try_get("created_at").map_err(map_db)?,
        updated_at: row.try_get("updated_at").map_err(map_db)?,
    })
}

/// The event of a group change; the payload is the group without members.
pub(super) fn group_change(
    kind: ChangeKind,
    group: &Group,
    changed: Vec<FieldChange>,
) -> StoreResult<NewChange> {
    let mut payload = group.clone();
    payload.members = None;
    NewChange::new(
        group.directory_id,
        kind,
        group.id.0,
        group.version,
        &payload,
        changed,
    )
}

/// The event of a membership change, stamped with the group's version.
fn membership_change(
    kind: ChangeKind,
    dir: DirectoryId,
    group: GroupId,
    version: i64,
    member: MemberRef,
) -> StoreResult<NewChange> {
    let membership = Membership {
        group_id: group,
        member_id: member.id,
        member_kind: member.kind,
    };
    NewChange::new(dir, kind, group.0, version, &membership, Vec::new())
}
