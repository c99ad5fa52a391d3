//! Groups and memberships. A membership is one row; every member change
//! touches only its own row and updates the group's `member_count` and
//! `version` in place, never rewriting the member list.

pub(super) use crate::diff::parse_member_kind;
use crate::diff::{group_attribute_changes, merge_changes};
use std::collections::HashSet;

use futures::{StreamExt, stream};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use super::SqliteStore;
use super::check_version;
use super::codec::{Col, fold_key, id_text, json_text, parse_id, reject_nul, time_text, to_json};
use super::directories::ensure_directory;
use super::errors::map_sqlx;
use super::tx::{Event, WriteTx};
use crate::MemberPages;
use crate::error::{StoreError, StoreResult};
use crate::model::*;

/// Columns of a group row, as `decode_group` reads them.
pub(super) const GROUP_COLUMNS: &str = "groups.id, groups.directory_id, groups.display_name, groups.external_id, \
     groups.raw, groups.member_count, groups.version, groups.created_at, groups.updated_at";

impl SqliteStore {
    pub(super) async fn create_group_impl(
        &self,
        dir: DirectoryId,
        write: GroupWrite,
    ) -> StoreResult<Group> {
        reject_nul(&(&write.display_name, &write.external_id, &write.raw))?;
        let mut tx = self.begin_write().await?;
        ensure_directory(tx.conn(), dir).await?;
        let group = Group {
            id: GroupId::new(),
            directory_id: dir,
            display_name: write.display_name,
            external_id: write.external_id,
            raw: write.raw,
            member_count: 0,
            members: None,
            version: 1,
            created_at: tx.now,
            updated_at: tx.now,
        };
        insert_group(tx.conn(), &group).await?;
        let mut change = GroupChange::new(group, 1);
        if let Some(members) = write.members {
            change.add(&mut tx, &members).await?;
        }
        let group = change.finish_created(&mut tx).await?;
        self.commit(tx).await?;
        Ok(group)
    }

    pub(super) async fn get_group_impl(
        &self,
        dir: DirectoryId,
        id: GroupId,
        include_members: bool,
    ) -> StoreResult<Group> {
        let mut tx = self.read_tx().await?;
        let mut group = load_group(&mut tx, dir, id).await?;
        if include_members {
            group.members = Some(members_of(&mut tx, id, None, i64::MAX).await?);
        }
        Ok(group)
    }

    /// Reads the group in a read transaction of the snapshot pool (a slow
    /// consumer must not hold an ordinary reader) and leaves the transaction
    /// to the member stream, which ends it after the last page.
    pub(super) async fn read_group_impl(
        &self,
        dir: DirectoryId,
        id: GroupId,
        page_size: i64,
    ) -> StoreResult<(Group, MemberPages)> {
        let mut tx = self.snapshots.begin().await.map_err(map_sqlx)?;
        let group = load_group(&mut tx, dir, id).await?;
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
        self.update_group_impl(dir, id, if_version, move |_| Ok(ops))
            .await
    }

    /// `update` is a [`crate::GroupUpdateFn`] or, for a PUT, the replacement ops.
    pub(super) async fn update_group_impl<F>(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        update: F,
    ) -> StoreResult<Group>
    where
        F: FnOnce(&Group) -> Result<Vec<GroupOp>, Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut tx = self.begin_write().await?;
        let old = load_group(tx.conn(), dir, id).await?;
        check_version(if_version, old.version)?;
        let ops = update(&old).map_err(StoreError::Rejected)?;
        let next_version = old.version + 1;
        let mut change = GroupChange::new(old, next_version);
        for op in ops {
            change.apply(&mut tx, op).await?;
        }
        let group = change.finish_updated(&mut tx).await?;
        self.commit(tx).await?;
        Ok(group)
    }

    pub(super) async fn delete_group_impl(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let group = load_group(tx.conn(), dir, id).await?;
        check_version(if_version, group.version)?;
        // Consumers mirror memberships from member events, so every
        // membership that disappears with the group gets its member.removed.
        let version = group.version;
        let mut change = GroupChange::new(group.clone(), version);
        change.remove_all(&mut tx).await?;
        remove_from_all_groups(&mut tx, dir, id.0).await?;
        sqlx::query("DELETE FROM groups WHERE id = ?")
            .bind(id_text(id.0))
            .execute(tx.conn())
            .await
            .map_err(map_sqlx)?;
        tx.emit(group_event(ChangeKind::GroupDeleted, &group, Vec::new())?);
        self.commit(tx).await?;
        Ok(())
    }

    pub(super) async fn add_members_impl(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[MemberRef],
    ) -> StoreResult<(i64, i64)> {
        let mut tx = self.begin_write().await?;
        let old = load_group(tx.conn(), dir, group).await?;
        let next_version = old.version + 1;
        let mut change = GroupChange::new(old, next_version);
        let added = change.add(&mut tx, members).await?;
        let group = change.finish_updated(&mut tx).await?;
        self.commit(tx).await?;
        Ok((added, group.version))
    }

    pub(super) async fn remove_members_impl(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[Uuid],
    ) -> StoreResult<(i64, i64)> {
        let mut tx = self.begin_write().await?;
        let old = load_group(tx.conn(), dir, group).await?;
        let next_version = old.version + 1;
        let mut change = GroupChange::new(old, next_version);
        let removed = change.remove(&mut tx, members).await?;
        let group = change.finish_updated(&mut tx).await?;
        self.commit(tx).await?;
        Ok((removed, group.version))
    }

    pub(super) async fn list_members_impl(
        &self,
        dir: DirectoryId,
        group: GroupId,
        after: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<Member>> {
        let mut tx = self.read_tx().await?;
        load_group(&mut tx, dir, group).await?;
        members_of(&mut tx, group, after, limit.max(0)).await
    }
}

/// One group's change inside a write transaction: applies attribute and
/// member operations, queues their events, and writes the group row once.
struct GroupChange {
    /// The evolving state (attributes, member count).
    group: Group,
    /// The version stamped on this change's events and stored at the end.
    next_version: i64,
    /// Attribute changes, and where the `group.updated` event goes in the
    /// queue (ahead of the member events that followed the attribute change).
    attributes_changed: Option<(usize, Vec<FieldChange>)>,
    /// Whether anything (attributes or members) changed.
    touched: bool,
}

impl GroupChange {
    fn new(group: Group, next_version: i64) -> Self {
        Self {
            group,
            next_version,
            attributes_changed: None,
            touched: false,
        }
    }

    async fn apply(&mut self, tx: &mut WriteTx, op: GroupOp) -> StoreResult<()> {
        match op {
            GroupOp::SetAttributes {
                display_name,
                external_id,
                raw,
            } => {
                reject_nul(&(&display_name, &external_id, &raw))?;
                self.set_attributes(tx, display_name, external_id, raw);
            }
            GroupOp::AddMembers(members) => {
                self.add(tx, &members).await?;
            }
            GroupOp::RemoveMembers(ids) => {
                self.remove(tx, &ids).await?;
            }
            GroupOp::ReplaceMembers(members) => self.replace(tx, &members).await?,
            GroupOp::RemoveAllMembers => self.remove_all(tx).await?,
        }
        Ok(())
    }

    fn set_attributes(
        &mut self,
        tx: &WriteTx,
        display_name: String,
        external_id: Option<String>,
        raw: serde_json::Value,
    ) {
        let changed = group_attribute_changes(&self.group, &display_name, &external_id);
        if changed.is_empty() && raw == self.group.raw {
            return;
        }
        let (_, all_changed) = self
            .attributes_changed
            .get_or_insert_with(|| (tx.queued(), Vec::new()));
        merge_changes(all_changed, changed);
        self.group.display_name = display_name;
        self.group.external_id = external_id;
        self.group.raw = raw;
        self.touched = true;
    }

    /// Adds the members not present yet; returns how many were added.
    async fn add(&mut self, tx: &mut WriteTx, members: &[MemberRef]) -> StoreResult<i64> {
        let members = self.resolve(tx.conn(), members).await?;
        let mut added = 0;
        for member in members {
            let inserted = sqlx::query(
                "INSERT INTO memberships (group_id, member_id, member_kind, directory_id) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (group_id, member_id) DO NOTHING",
            )
            .bind(id_text(self.group.id.0))
            .bind(id_text(member.id))
            .bind(member.kind.as_str())
            .bind(id_text(self.group.directory_id.0))
            .execute(tx.conn())
            .await
            .map_err(map_sqlx)?
            .rows_affected();
            if inserted == 1 {
                added += 1;
                tx.emit(self.member_event(ChangeKind::MemberAdded, member)?);
            }
        }
        self.count_members(added);
        Ok(added)
    }

    /// Removes the members present; returns how many were removed.
    async fn remove(&mut self, tx: &mut WriteTx, ids: &[Uuid]) -> StoreResult<i64> {
        let mut removed = 0;
        let mut seen = HashSet::new();
        for id in ids.iter().filter(|id| seen.insert(**id)) {
            let kind: Option<String> =
                sqlx::query_scalar("DELETE FROM memberships WHERE group_id = ? AND member_id = ? RETURNING member_kind")
                    .bind(id_text(self.group.id.0))
                    .bind(id_text(*id))
                    .fetch_optional(tx.conn())
                    .await
                    .map_err(map_sqlx)?;
            if let Some(kind) = kind {
                removed += 1;
                let member = MemberRef {
                    id: *id,
                    kind: parse_member_kind(&kind)?,
                };
                tx.emit(self.member_event(ChangeKind::MemberRemoved, member)?);
            }
        }
        self.count_members(-removed);
        Ok(removed)
    }

    /// Makes the member set exactly `members`, touching only the difference.
    async fn replace(&mut self, tx: &mut WriteTx, members: &[MemberRef]) -> StoreResult<()> {
        let wanted = self.resolve(tx.conn(), members).await?;
        let wanted_ids: HashSet<Uuid> = wanted.iter().map(|m| m.id).collect();
        let current = member_refs(tx.conn(), self.group.id).await?;
        let gone: Vec<Uuid> = current
            .iter()
            .map(|m| m.id)
            .filter(|id| !wanted_ids.contains(id))
            .collect();
        self.remove(tx, &gone).await?;
        self.add(tx, &wanted).await?;
        Ok(())
    }

    async fn remove_all(&mut self, tx: &mut WriteTx) -> StoreResult<()> {
        let current: Vec<Uuid> = member_refs(tx.conn(), self.group.id)
            .await?
            .iter()
            .map(|m| m.id)
            .collect();
        self.remove(tx, &current).await?;
        Ok(())
    }

    /// Deduplicates `members` and checks that each is a user or group of the
    /// group's directory (and not the group itself).
    async fn resolve(
        &self,
        conn: &mut SqliteConnection,
        members: &[MemberRef],
    ) -> StoreResult<Vec<MemberRef>> {
        let mut seen = HashSet::new();
        let mut resolved = Vec::with_capacity(members.len());
        for member in members.iter().filter(|m| seen.insert(m.id)) {
            if member.kind == MemberKind::Group && member.id == self.group.id.0 {
                return Err(StoreError::Invalid(
                    "a group cannot be a member of itself".into(),
                ));
            }
            ensure_member_exists(conn, self.group.directory_id, *member).await?;
            resolved.push(*member);
        }
        Ok(resolved)
    }

    fn count_members(&mut self, delta: i64) {
        if delta != 0 {
            self.group.member_count += delta;
            self.touched = true;
        }
    }

    fn member_event(&self, kind: ChangeKind, member: MemberRef) -> StoreResult<Event> {
        membership_event(
            kind,
            self.group.directory_id,
            self.group.id,
            self.next_version,
            member,
        )
    }

    /// Writes a created group's final member count and queues `group.created`
    /// ahead of its `member.added` events.
    async fn finish_created(mut self, tx: &mut WriteTx) -> StoreResult<Group> {
        self.attributes_changed = None;
        if self.group.member_count != 0 {
            self.store(tx).await?;
        }
        tx.emit_at(
            0,
            group_event(ChangeKind::GroupCreated, &self.group, Vec::new())?,
        );
        Ok(self.group)
    }

    /// Writes the group row when anything changed (new version, count,
    /// attributes) and queues `group.updated` for attribute changes.
    async fn finish_updated(mut self, tx: &mut WriteTx) -> StoreResult<Group> {
        if !self.touched {
            return Ok(self.group);
        }
        self.group.version = self.next_version;
        self.group.updated_at = tx.now;
        self.store(tx).await?;
        if let Some((position, changed)) = self.attributes_changed.take() {
            tx.emit_at(
                position,
                group_event(ChangeKind::GroupUpdated, &self.group, changed)?,
            );
        }
        Ok(self.group)
    }

    async fn store(&self, tx: &mut WriteTx) -> StoreResult<()> {
        let g = &self.group;
        sqlx::query(
            "UPDATE groups SET display_name = ?, display_name_key = ?, external_id = ?, raw = ?, \
             member_count = ?, version = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&g.display_name)
        .bind(fold_key(&g.display_name))
        .bind(&g.external_id)
        .bind(json_text(&g.raw)?)
        .bind(g.member_count)
        .bind(g.version)
        .bind(time_text(g.updated_at))
        .bind(id_text(g.id.0))
        .execute(tx.conn())
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }
}

/// Removes `member` (a user or group id) from every group holding it, each
/// group getting a new version and a `member.removed` event.
pub(super) async fn remove_from_all_groups(
    tx: &mut WriteTx,
    dir: DirectoryId,
    member: Uuid,
) -> StoreResult<()> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM memberships JOIN groups ON groups.id = memberships.group_id \
         WHERE memberships.member_id = ? AND memberships.directory_id = ? ORDER BY groups.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(member))
        .bind(id_text(dir.0))
        .fetch_all(tx.conn())
        .await
        .map_err(map_sqlx)?;
    for row in &rows {
        let group = decode_group(row)?;
        let next_version = group.version + 1;
        let mut change = GroupChange::new(group, next_version);
        change.remove(tx, &[member]).await?;
        change.finish_updated(tx).await?;
    }
    Ok(())
}

async fn insert_group(conn: &mut SqliteConnection, group: &Group) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO groups (id, directory_id, display_name, display_name_key, external_id, raw, member_count, \
         version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id_text(group.id.0))
    .bind(id_text(group.directory_id.0))
    .bind(&group.display_name)
    .bind(fold_key(&group.display_name))
    .bind(&group.external_id)
    .bind(json_text(&group.raw)?)
    .bind(group.member_count)
    .bind(group.version)
    .bind(time_text(group.created_at))
    .bind(time_text(group.updated_at))
    .execute(conn)
    .await
    .map_err(map_sqlx)?;
    Ok(())
}

/// Loads a group of `dir` without members, or fails with `NotFound("group")`.
pub(super) async fn load_group(
    conn: &mut SqliteConnection,
    dir: DirectoryId,
    id: GroupId,
) -> StoreResult<Group> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM groups WHERE groups.id = ? AND groups.directory_id = ?"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(id.0))
        .bind(id_text(dir.0))
        .fetch_optional(conn)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound("group"))?;
    decode_group(&row)
}

async fn ensure_member_exists(
    conn: &mut SqliteConnection,
    dir: DirectoryId,
    member: MemberRef,
) -> StoreResult<()> {
    let sql = match member.kind {
        MemberKind::User => "SELECT 1 FROM users WHERE id = ? AND directory_id = ?",
        MemberKind::Group => "SELECT 1 FROM groups WHERE id = ? AND directory_id = ?",
    };
    let found: Option<i64> = sqlx::query_scalar(sql)
        .bind(id_text(member.id))
        .bind(id_text(dir.0))
        .fetch_optional(conn)
        .await
        .map_err(map_sqlx)?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::Invalid(format!(
            "no {} with id {} in this directory",
            member.kind.as_str(),
            member.id
        ))),
    }
}

/// The member ids and kinds of a group.
async fn member_refs(conn: &mut SqliteConnection, group: GroupId) -> StoreResult<Vec<MemberRef>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT member_id, member_kind FROM memberships WHERE group_id = ? ORDER BY member_id",
    )
    .bind(id_text(group.0))
    .fetch_all(conn)
    .await
    .map_err(map_sqlx)?;
    rows.iter()
        .map(|(id, kind)| {
            Ok(MemberRef {
                id: parse_id(id)?,
                kind: parse_member_kind(kind)?,
            })
        })
        .collect()
}

/// Members of a group with display names, ordered by member id, after
/// `after`, at most `limit`.
pub(super) async fn members_of(
    conn: &mut SqliteConnection,
    group: GroupId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<Member>> {
    let rows = sqlx::query(
        "SELECT m.member_id, m.member_kind, \
           CASE m.member_kind WHEN 'user' THEN COALESCE(u.display_name, u.user_name) ELSE g.display_name END \
             AS display \
         FROM memberships m \
         LEFT JOIN users u ON m.member_kind = 'user' AND u.id = m.member_id \
         LEFT JOIN groups g ON m.member_kind = 'group' AND g.id = m.member_id \
         WHERE m.group_id = ? AND m.member_id > ? ORDER BY m.member_id LIMIT ?",
    )
    .bind(id_text(group.0))
    .bind(after.map(id_text).unwrap_or_default())
    .bind(limit)
    .fetch_all(conn)
    .await
    .map_err(map_sqlx)?;
    rows.iter().map(decode_member).collect()
}

/// Streams a group's members from the snapshot of `tx`, keyset paginated by
/// member id; ends the transaction after the last page.
fn member_pages(tx: Transaction<'static, Sqlite>, group: GroupId, page_size: i64) -> MemberPages {
    let size = page_size.max(1);
    stream::try_unfold(Some((tx, None)), move |state| async move {
        let Some((mut tx, after)) = state else {
            return Ok(None);
        };
        let page = members_of(&mut tx, group, after, size).await?;
        if (page.len() as i64) < size {
            tx.commit().await.map_err(map_sqlx)?;
            return Ok((!page.is_empty()).then_some((page, None)));
        }
        let last = page.last().map(|m| m.id);
        Ok(Some((page, Some((tx, last)))))
    })
    .boxed()
}

fn decode_member(row: &SqliteRow) -> StoreResult<Member> {
    Ok(Member {
        id: row.id("member_id")?,
        kind: parse_member_kind(&row.text("member_kind")?)?,
        display: row.opt_text("display")?,
    })
}

/// Decodes a row selected with [`GROUP_COLUMNS`] (without members).
pub(super) fn decode_group(row: &SqliteRow) -> StoreResult<Group> {
    Ok(Group {
        id: GroupId(row.id("id")?),
        directory_id: DirectoryId(row.id("directory_id")?),
        display_name: row.text("display_name")?,
        external_id: row.opt_text("external_id")?,
        raw: row.json("raw")?,
        member_count: row.int("member_count")?,
        members: None,
        version: row.int("version")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// The change-log event of a group change; the payload is the group
/// without members.
pub(super) fn group_event(
    kind: ChangeKind,
    group: &Group,
    changed_fields: Vec<FieldChange>,
) -> StoreResult<Event> {
    let mut payload = group.clone();
    payload.members = None;
    Ok(Event {
        directory_id: group.directory_id,
        kind,
        resource_id: group.id.0,
        version: group.version,
        payload: to_json(&payload)?,
        changed_fields,
    })
}

/// The change-log event of a membership change, stamped with the group's
/// new version.
fn membership_event(
    kind: ChangeKind,
    dir: DirectoryId,
    group: GroupId,
    version: i64,
    member: MemberRef,
) -> StoreResult<Event> {
    let membership = Membership {
        group_id: group,
        member_id: member.id,
        member_kind: member.kind,
    };
    Ok(Event {
        directory_id: dir,
        kind,
        resource_id: group.0,
        version,
        payload: to_json(&membership)?,
        changed_fields: Vec::new(),
    })
}
