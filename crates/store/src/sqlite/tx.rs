//! The write transaction: `BEGIN IMMEDIATE` on the single writer
//! connection, with the changes it appends when it commits. One writer at a
//! time needs no row locks: [`Lock`] is ignored here.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use super::codec::{fold_key, id_text, json_text, now, parse_id, reject_nul, time_text};
use super::errors::map_db;
use super::groups::load_group;
use super::users::load_user;
use crate::directories::load_directory;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::produced::Produced;
use crate::write::{ChangeQueue, Lock, WriteTx, parse_member_kind};

/// An open write transaction and its queued changes.
pub struct Tx {
    tx: Transaction<'static, Sqlite>,
    /// The time of every row and change written by this transaction.
    pub(super) now: DateTime<Utc>,
    changes: ChangeQueue,
}

impl Tx {
    /// `BEGIN IMMEDIATE` takes the write lock up front, so a transaction
    /// never has to upgrade a read lock (which fails with SQLITE_BUSY
    /// instead of waiting).
    pub(super) async fn begin(writer: &sqlx::SqlitePool) -> StoreResult<Self> {
        let tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_db)?;
        Ok(Self {
            tx,
            now: now(),
            changes: ChangeQueue::default(),
        })
    }

    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// Appends the queued changes and commits. Returns the new head
    /// revision when changes were written. Revisions are taken as the last
    /// statements before `COMMIT`: with one writer at a time this makes them
    /// dense and in commit order.
    pub(super) async fn commit(mut self) -> StoreResult<Option<i64>> {
        let mut produced = Vec::new();
        let head = self.append_changes(&mut produced).await?;
        self.tx.commit().await.map_err(map_db)?;
        crate::produced::report(produced);
        Ok(head)
    }

    /// Appends the queued changes, noting each row in `produced`.
    async fn append_changes(&mut self, produced: &mut Vec<Produced>) -> StoreResult<Option<i64>> {
        let changes = self.changes.take();
        if changes.is_empty() {
            return Ok(None);
        }
        let count = changes.len() as i64;
        let head: i64 =
            sqlx::query_scalar("UPDATE log_state SET head = head + ? WHERE id = 1 RETURNING head")
                .bind(count)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(map_db)?;
        let occurred_at = time_text(self.now);
        for (revision, change) in (head - count + 1..).zip(changes) {
            produced.push(Produced {
                kind: change.kind,
                resource_id: change.resource_id,
                version: change.version,
                revision,
            });
            sqlx::query(
                "INSERT INTO changes (revision, event_id, directory_id, kind, resource_id, version, \
                 occurred_at, payload, changed_fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(revision)
            .bind(id_text(Uuid::new_v4()))
            .bind(id_text(change.directory_id.0))
            .bind(change.kind.as_str())
            .bind(id_text(change.resource_id))
            .bind(change.version)
            .bind(&occurred_at)
            .bind(json_text(&change.payload)?)
            .bind(json_text(&change.changed_fields)?)
            .execute(&mut *self.tx)
            .await
            .map_err(map_db)?;
        }
        Ok(Some(head))
    }

    /// Fails with `NotFound("directory")` unless the directory exists: what
    /// PostgreSQL's foreign key check reports for a creation.
    async fn ensure_directory(&mut self, dir: DirectoryId) -> StoreResult<()> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM directories WHERE id = ?")
            .bind(id_text(dir.0))
            .fetch_optional(self.conn())
            .await
            .map_err(map_db)?;
        found.map(|_| ()).ok_or(StoreError::NotFound("directory"))
    }

    /// Runs a statement that changes rows and returns nothing.
    pub(super) async fn execute(&mut self, query: Query<'_>) -> StoreResult<()> {
        self.changed(query).await.map(drop)
    }

    /// Runs a statement; returns how many rows it changed.
    pub(super) async fn changed(&mut self, query: Query<'_>) -> StoreResult<u64> {
        let done = query.execute(&mut *self.tx).await.map_err(map_db)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl WriteTx for Tx {
    fn changes(&mut self) -> &mut ChangeQueue {
        &mut self.changes
    }

    async fn load_directory(&mut self, id: DirectoryId) -> StoreResult<(Directory, i64)> {
        load_directory(&mut self.tx, id, false).await
    }

    async fn insert_directory(&mut self, new: NewDirectory) -> StoreResult<Directory> {
        reject_nul(&(&new.name, &new.organization, &new.attribute_mappings))?;
        let directory = Directory {
            id: DirectoryId::new(),
            name: new.name,
            organization: new.organization,
            provider: new.provider,
            deprovision_policy: new.deprovision_policy,
            attribute_mappings: new.attribute_mappings,
            created_at: self.now,
            updated_at: self.now,
        };
        self.execute(
            sqlx::query(
                "INSERT INTO directories (id, name, organization, provider, deprovision_policy, \
                 attribute_mappings, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
            )
            .bind(id_text(directory.id.0))
            .bind(&directory.name)
            .bind(&directory.organization)
            .bind(directory.provider.as_str())
            .bind(directory.deprovision_policy.as_str())
            .bind(json_text(&directory.attribute_mappings)?)
            .bind(time_text(directory.created_at))
            .bind(time_text(directory.updated_at)),
        )
        .await?;
        Ok(directory)
    }

    async fn update_directory(&mut self, new: &Directory) -> StoreResult<(Directory, i64)> {
        reject_nul(&(&new.name, &new.organization, &new.attribute_mappings))?;
        let stored = Directory {
            updated_at: self.now,
            ..new.clone()
        };
        let version: i64 = sqlx::query_scalar(
            "UPDATE directories SET name = ?, organization = ?, provider = ?, deprovision_policy = ?, \
             attribute_mappings = ?, version = version + 1, updated_at = ? WHERE id = ? RETURNING version",
        )
        .bind(&stored.name)
        .bind(&stored.organization)
        .bind(stored.provider.as_str())
        .bind(stored.deprovision_policy.as_str())
        .bind(json_text(&stored.attribute_mappings)?)
        .bind(time_text(stored.updated_at))
        .bind(id_text(stored.id.0))
        .fetch_one(self.conn())
        .await
        .map_err(map_db)?;
        Ok((stored, version))
    }

    /// Users, groups, memberships and tokens go with the directory (ON
    /// DELETE CASCADE).
    async fn delete_directory(&mut self, id: DirectoryId) -> StoreResult<()> {
        self.execute(sqlx::query("DELETE FROM directories WHERE id = ?").bind(id_text(id.0)))
            .await
    }

    async fn live_tokens(&mut self, dir: DirectoryId) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM tokens WHERE directory_id = ? AND revoked_at IS NULL",
        )
        .bind(id_text(dir.0))
        .fetch_one(self.conn())
        .await
        .map_err(map_db)
    }

    async fn insert_token(&mut self, new: NewToken) -> StoreResult<Token> {
        reject_nul(&(&new.name, &new.prefix))?;
        let token = Token {
            id: TokenId::new(),
            directory_id: new.directory_id,
            name: new.name,
            prefix: new.prefix,
            created_at: self.now,
            revoked_at: None,
            last_used_at: None,
        };
        self.execute(
            sqlx::query(
                "INSERT INTO tokens (id, directory_id, name, prefix, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(id_text(token.id.0))
            .bind(id_text(token.directory_id.0))
            .bind(&token.name)
            .bind(&token.prefix)
            .bind(&new.hash[..])
            .bind(time_text(token.created_at)),
        )
        .await?;
        Ok(token)
    }

    async fn revoke_token(&mut self, dir: DirectoryId, id: TokenId) -> StoreResult<bool> {
        let revoke = sqlx::query(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND directory_id = ?",
        );
        let now = time_text(self.now);
        let query = revoke.bind(now).bind(id_text(id.0)).bind(id_text(dir.0));
        Ok(self.changed(query).await? > 0)
    }

    async fn touch_token(
        &mut self,
        id: TokenId,
        at: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "UPDATE tokens SET last_used_at = ? WHERE id = ? \
                 AND (last_used_at IS NULL OR last_used_at < ?)",
            )
            .bind(time_text(at))
            .bind(id_text(id.0))
            .bind(time_text(since)),
        )
        .await
    }

    async fn load_user(&mut self, dir: DirectoryId, id: UserId, _: Lock) -> StoreResult<User> {
        load_user(self.conn(), dir, id).await
    }

    async fn insert_user(&mut self, dir: DirectoryId, write: UserWrite) -> StoreResult<User> {
        reject_nul(&write.fields)?;
        reject_nul(&write.raw)?;
        self.ensure_directory(dir).await?;
        let user = User {
            id: UserId::new(),
            directory_id: dir,
            fields: write.fields,
            raw: Document::from_value(&write.raw),
            group_ids: Vec::new(),
            version: 1,
            created_at: self.now,
            updated_at: self.now,
        };
        let query = sqlx::query(
            "INSERT INTO users (id, directory_id, user_name, user_name_key, external_id, active, display_name, \
             given_name, family_name, emails, title, department, manager_id, employee_number, custom_attributes, \
             raw, version, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id_text(user.id.0))
        .bind(id_text(user.directory_id.0));
        let query = bind_user(query, &user)?.bind(time_text(user.created_at));
        self.execute(query.bind(time_text(user.updated_at))).await?;
        Ok(user)
    }

    async fn update_user(&mut self, old: &User, write: UserWrite) -> StoreResult<User> {
        reject_nul(&write.fields)?;
        reject_nul(&write.raw)?;
        let user = User {
            fields: write.fields,
            raw: Document::from_value(&write.raw),
            version: old.version + 1,
            updated_at: self.now,
            ..old.clone()
        };
        let query = sqlx::query(
            "UPDATE users SET user_name = ?, user_name_key = ?, external_id = ?, active = ?, display_name = ?, \
             given_name = ?, family_name = ?, emails = ?, title = ?, department = ?, manager_id = ?, \
             employee_number = ?, custom_attributes = ?, raw = ?, version = ?, updated_at = ? WHERE id = ?",
        );
        let query = bind_user(query, &user)?.bind(time_text(user.updated_at));
        self.execute(query.bind(id_text(user.id.0))).await?;
        Ok(user)
    }

    async fn delete_user(&mut self, id: UserId) -> StoreResult<()> {
        self.execute(sqlx::query("DELETE FROM users WHERE id = ?").bind(id_text(id.0)))
            .await
    }

    async fn load_group(&mut self, dir: DirectoryId, id: GroupId, _: Lock) -> StoreResult<Group> {
        load_group(self.conn(), dir, id).await
    }

    async fn insert_group(&mut self, dir: DirectoryId, write: &GroupWrite) -> StoreResult<Group> {
        reject_nul(&(&write.display_name, &write.external_id, &write.raw))?;
        self.ensure_directory(dir).await?;
        let group = Group {
            id: GroupId::new(),
            directory_id: dir,
            display_name: write.display_name.clone(),
            external_id: write.external_id.clone(),
            raw: Document::from_value(&write.raw),
            member_count: 0,
            members: None,
            version: 1,
            created_at: self.now,
            updated_at: self.now,
        };
        let query = sqlx::query(
            "INSERT INTO groups (id, directory_id, display_name, display_name_key, external_id, raw, member_count, \
             version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id_text(group.id.0))
        .bind(id_text(group.directory_id.0));
        let query = bind_group(query, &group)?.bind(time_text(group.created_at));
        self.execute(query.bind(time_text(group.updated_at)))
            .await?;
        Ok(group)
    }

    async fn update_group(
        &mut self,
        group: &Group,
        count_delta: i64,
        version: i64,
    ) -> StoreResult<Group> {
        reject_nul(&(&group.display_name, &group.external_id, &group.raw))?;
        let g = Group {
            member_count: group.member_count + count_delta,
            version,
            updated_at: self.now,
            ..group.clone()
        };
        let query = sqlx::query(
            "UPDATE groups SET display_name = ?, display_name_key = ?, external_id = ?, raw = ?, \
             member_count = ?, version = ?, updated_at = ? WHERE id = ?",
        );
        let query = bind_group(query, &g)?.bind(time_text(g.updated_at));
        self.execute(query.bind(id_text(g.id.0))).await?;
        Ok(g)
    }

    async fn delete_group(&mut self, id: GroupId) -> StoreResult<()> {
        self.execute(sqlx::query("DELETE FROM groups WHERE id = ?").bind(id_text(id.0)))
            .await
    }

    async fn bump_groups(&mut self, groups: &[Uuid], delta: i64) -> StoreResult<Vec<(Uuid, i64)>> {
        let ids: Vec<String> = groups.iter().copied().map(id_text).collect();
        let now = time_text(self.now);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "UPDATE groups SET member_count = member_count + ?, version = version + 1, updated_at = ? \
             WHERE id IN (SELECT value FROM json_each(?)) RETURNING id, version",
        )
        .bind(delta)
        .bind(now)
        .bind(json_text(&ids)?)
        .fetch_all(self.conn())
        .await
        .map_err(map_db)?;
        rows.iter()
            .map(|(id, version)| Ok((parse_id(id)?, *version)))
            .collect()
    }

    async fn lock_groups_holding(
        &mut self,
        dir: DirectoryId,
        member: Uuid,
    ) -> StoreResult<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT group_id FROM memberships WHERE member_id = ? AND directory_id = ? ORDER BY group_id",
        )
        .bind(id_text(member))
        .bind(id_text(dir.0))
        .fetch_all(self.conn())
        .await
        .map_err(map_db)?;
        ids.iter().map(|id| parse_id(id)).collect()
    }

    async fn lock_members(
        &mut self,
        dir: DirectoryId,
        members: &[MemberRef],
    ) -> StoreResult<HashSet<(MemberKind, Uuid)>> {
        let mut found = HashSet::new();
        for member in members {
            let sql = match member.kind {
                MemberKind::User => "SELECT 1 FROM users WHERE id = ? AND directory_id = ?",
                MemberKind::Group => "SELECT 1 FROM groups WHERE id = ? AND directory_id = ?",
            };
            let row: Option<i64> = sqlx::query_scalar(sql)
                .bind(id_text(member.id))
                .bind(id_text(dir.0))
                .fetch_optional(self.conn())
                .await
                .map_err(map_db)?;
            if row.is_some() {
                found.insert((member.kind, member.id));
            }
        }
        Ok(found)
    }

    async fn insert_memberships(
        &mut self,
        dir: DirectoryId,
        group: GroupId,
        members: &[MemberRef],
    ) -> StoreResult<HashSet<Uuid>> {
        let mut inserted = HashSet::new();
        for member in members {
            let query = sqlx::query(
                "INSERT INTO memberships (group_id, member_id, member_kind, directory_id) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (group_id, member_id) DO NOTHING",
            )
            .bind(id_text(group.0))
            .bind(id_text(member.id))
            .bind(member.kind.as_str())
            .bind(id_text(dir.0));
            if self.changed(query).await? == 1 {
                inserted.insert(member.id);
            }
        }
        Ok(inserted)
    }

    async fn delete_memberships(
        &mut self,
        group: GroupId,
        ids: Option<&[Uuid]>,
    ) -> StoreResult<Vec<MemberRef>> {
        let ids: Option<Vec<String>> = ids.map(|ids| ids.iter().copied().map(id_text).collect());
        let rows: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM memberships WHERE group_id = ?1 \
             AND (?2 IS NULL OR member_id IN (SELECT value FROM json_each(?2))) \
             RETURNING member_id, member_kind",
        )
        .bind(id_text(group.0))
        .bind(ids.map(|ids| json_text(&ids)).transpose()?)
        .fetch_all(self.conn())
        .await
        .map_err(map_db)?;
        rows.iter()
            .map(|(id, kind)| {
                Ok(MemberRef {
                    id: parse_id(id)?,
                    kind: parse_member_kind(kind)?,
                })
            })
            .collect()
    }

    async fn leave_groups(&mut self, member: Uuid) -> StoreResult<Vec<(Uuid, MemberKind)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM memberships WHERE member_id = ? RETURNING group_id, member_kind",
        )
        .bind(id_text(member))
        .fetch_all(self.conn())
        .await
        .map_err(map_db)?;
        rows.iter()
            .map(|(group, kind)| Ok((parse_id(group)?, parse_member_kind(kind)?)))
            .collect()
    }

    async fn member_ids(&mut self, group: GroupId) -> StoreResult<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT member_id FROM memberships WHERE group_id = ? ORDER BY member_id",
        )
        .bind(id_text(group.0))
        .fetch_all(self.conn())
        .await
        .map_err(map_db)?;
        ids.iter().map(|id| parse_id(id)).collect()
    }
}

pub(super) type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds a user's stored columns, `user_name` through `raw` and then
/// `version`, in the order the INSERT and UPDATE statements name them. The
/// key is folded here: SQLite's `lower()` folds ASCII only.
fn bind_user<'q>(query: Query<'q>, user: &'q User) -> StoreResult<Query<'q>> {
    let f = &user.fields;
    Ok(query
        .bind(&f.user_name)
        .bind(fold_key(&f.user_name))
        .bind(&f.external_id)
        .bind(f.active)
        .bind(&f.display_name)
        .bind(&f.given_name)
        .bind(&f.family_name)
        .bind(json_text(&f.emails)?)
        .bind(&f.title)
        .bind(&f.department)
        .bind(&f.manager_id)
        .bind(&f.employee_number)
        .bind(json_text(&f.custom_attributes)?)
        .bind(json_text(&user.raw)?)
        .bind(user.version))
}

/// Binds a group's stored columns, `display_name` through `version`.
fn bind_group<'q>(query: Query<'q>, group: &'q Group) -> StoreResult<Query<'q>> {
    Ok(query
        .bind(&group.display_name)
        .bind(fold_key(&group.display_name))
        .bind(&group.external_id)
        .bind(json_text(&group.raw)?)
        .bind(group.member_count)
        .bind(group.version))
}
