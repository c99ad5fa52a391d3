//! The write transaction: READ COMMITTED on the main pool, taking its row
//! locks in the one order of the module doc of `postgres`, with the changes
//! it appends when it commits.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgConnection, Postgres, Row, Transaction};
use uuid::Uuid;

use super::errors::{json_error, map_db};
use super::groups::{GROUP_COLUMNS, decode_group};
use super::users::{STORED_COLUMNS, USER_COLUMNS, bind_columns, decode_user, load_user};
use crate::directories::{
    DIRECTORY_COLUMNS, TOKEN_COLUMNS, decode_directory, decode_token, load_directory,
};
use crate::error::StoreResult;
use crate::model::*;
use crate::write::{
    Added, ChangeQueue, Lock, WriteTx, add_memberships_in_steps, parse_member_kind,
};

/// An open write transaction and its queued changes.
pub struct Tx {
    pub(super) tx: Transaction<'static, Postgres>,
    pub(super) changes: ChangeQueue,
    /// The transaction's `now()` (what `updated_at = now()` stores), once
    /// a statement reported it.
    pub(super) now: Option<DateTime<Utc>>,
    /// A group's last count and version change, written by the commit's
    /// change-log statement ([`WriteTx::defer_group_write`]).
    pub(super) group_bump: Option<GroupBump>,
}

/// See [`Tx::group_bump`].
pub(crate) struct GroupBump {
    pub(crate) id: Uuid,
    pub(crate) count_delta: i64,
    pub(crate) version: i64,
}

impl Tx {
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Runs a statement that changes rows and returns nothing.
    async fn execute(&mut self, query: Query<'_>) -> StoreResult<()> {
        query.execute(self.conn()).await.map_err(map_db)?;
        Ok(())
    }

    /// Runs a statement that returns exactly one row.
    async fn returning(&mut self, query: Query<'_>) -> StoreResult<PgRow> {
        query.fetch_one(self.conn()).await.map_err(map_db)
    }
}

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// The row lock a write takes on what it loads. `FOR NO KEY UPDATE` does
/// not block `FOR KEY SHARE` (taken by memberships that reference the
/// row); `FOR UPDATE` keeps new references out until the row is gone.
fn lock_clause(lock: Lock) -> &'static str {
    match lock {
        Lock::Edit => " FOR NO KEY UPDATE",
        Lock::Delete => " FOR UPDATE",
    }
}

#[async_trait]
impl WriteTx for Tx {
    fn changes(&mut self) -> &mut ChangeQueue {
        &mut self.changes
    }

    async fn load_directory(&mut self, id: DirectoryId) -> StoreResult<(Directory, i64)> {
        load_directory(&mut self.tx, id, true).await
    }

    async fn insert_directory(&mut self, new: NewDirectory) -> StoreResult<Directory> {
        let mappings = serde_json::to_value(&new.attribute_mappings).map_err(json_error)?;
        let sql = format!(
            "INSERT INTO directories (id, name, organization, provider, deprovision_policy, attribute_mappings) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {DIRECTORY_COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(DirectoryId::new().0)
            .bind(&new.name)
            .bind(&new.organization)
            .bind(new.provider.as_str())
            .bind(new.deprovision_policy.as_str())
            .bind(mappings);
        let row = self.returning(query).await?;
        Ok(decode_directory::<Postgres>(&row)?.0)
    }

    async fn update_directory(&mut self, new: &Directory) -> StoreResult<(Directory, i64)> {
        let sql = format!(
            "UPDATE directories SET name = $2, organization = $3, provider = $4, deprovision_policy = $5, \
             attribute_mappings = $6, version = version + 1, updated_at = now() WHERE id = $1 RETURNING {DIRECTORY_COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new.id.0)
            .bind(&new.name)
            .bind(&new.organization)
            .bind(new.provider.as_str())
            .bind(new.deprovision_policy.as_str())
            .bind(serde_json::to_value(&new.attribute_mappings).map_err(json_error)?);
        let row = self.returning(query).await?;
        decode_directory::<Postgres>(&row)
    }

    /// Users, groups and tokens go with the row (ON DELETE CASCADE); the
    /// tokens are revoked first and the memberships deleted explicitly.
    async fn delete_directory(&mut self, id: DirectoryId) -> StoreResult<()> {
        for sql in [
            "UPDATE tokens SET revoked_at = now() WHERE directory_id = $1 AND revoked_at IS NULL",
            "DELETE FROM memberships WHERE directory_id = $1",
            "DELETE FROM directories WHERE id = $1",
        ] {
            self.execute(sqlx::query(sql).bind(id.0)).await?;
        }
        Ok(())
    }

    async fn live_tokens(&mut self, dir: DirectoryId) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM tokens WHERE directory_id = $1 AND revoked_at IS NULL",
        )
        .bind(dir.0)
        .fetch_one(self.conn())
        .await
        .map_err(map_db)
    }

    async fn insert_token(&mut self, new: NewToken) -> StoreResult<Token> {
        let sql = format!(
            "INSERT INTO tokens (id, directory_id, name, prefix, hash) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {TOKEN_COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(TokenId::new().0)
            .bind(new.directory_id.0)
            .bind(&new.name)
            .bind(&new.prefix)
            .bind(&new.hash[..]);
        let row = self.returning(query).await?;
        decode_token::<Postgres>(&row)
    }

    async fn revoke_token(&mut self, dir: DirectoryId, id: TokenId) -> StoreResult<bool> {
        let found: Option<i32> = sqlx::query_scalar(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, now()) \
             WHERE id = $1 AND directory_id = $2 RETURNING 1",
        )
        .bind(id.0)
        .bind(dir.0)
        .fetch_optional(self.conn())
        .await
        .map_err(map_db)?;
        Ok(found.is_some())
    }

    async fn touch_token(
        &mut self,
        id: TokenId,
        at: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> StoreResult<()> {
        let query = sqlx::query(
            "UPDATE tokens SET last_used_at = $2 WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
        );
        self.execute(query.bind(id.0).bind(at).bind(since)).await
    }

    async fn load_user(&mut self, dir: DirectoryId, id: UserId, lock: Lock) -> StoreResult<User> {
        load_user(self.conn(), dir, id, lock_clause(lock)).await
    }

    async fn insert_user(&mut self, dir: DirectoryId, write: UserWrite) -> StoreResult<User> {
        let sql = format!(
            "INSERT INTO users (id, directory_id, {STORED_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             RETURNING {USER_COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(UserId::new().0)
            .bind(dir.0);
        let row = self.returning(bind_columns(query, &write)?).await?;
        decode_user(&row)
    }

    async fn update_user(&mut self, old: &User, write: UserWrite) -> StoreResult<User> {
        let sql = format!(
            "UPDATE users SET user_name = $2, external_id = $3, active = $4, display_name = $5, given_name = $6, \
             family_name = $7, emails = $8, title = $9, department = $10, manager_id = $11, employee_number = $12, \
             custom_attributes = $13, raw = $14, user_name_key = $15, version = version + 1, updated_at = now() \
             WHERE id = $1 RETURNING {USER_COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(old.id.0);
        let row = self.returning(bind_columns(query, &write)?).await?;
        decode_user(&row)
    }

    async fn delete_user(&mut self, id: UserId) -> StoreResult<()> {
        self.execute(sqlx::query("DELETE FROM users WHERE id = $1").bind(id.0))
            .await
    }

    /// Also learns the transaction's `now()` for
    /// [`WriteTx::defer_group_write`].
    async fn load_group(
        &mut self,
        dir: DirectoryId,
        id: GroupId,
        lock: Lock,
    ) -> StoreResult<Group> {
        let sql = format!(
            "SELECT {GROUP_COLUMNS}, now() AS tx_now FROM groups \
             WHERE groups.id = $1 AND groups.directory_id = $2{}",
            lock_clause(lock)
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).bind(dir.0);
        let (group, now) = crate::rows::one(query, self.conn(), "group", |row| {
            let now: DateTime<Utc> = row.try_get("tx_now").map_err(map_db)?;
            Ok((decode_group(row)?, now))
        })
        .await?;
        self.now = Some(now);
        Ok(group)
    }

    /// Deferred to the commit, whose change-log statement writes it, when
    /// the transaction's `now()` is known (the time `updated_at = now()`
    /// will store): one round trip less for every batch of member edits.
    fn defer_group_write(
        &mut self,
        group: &Group,
        count_delta: i64,
        version: i64,
    ) -> Option<DateTime<Utc>> {
        let now = self.now.filter(|_| self.group_bump.is_none())?;
        self.group_bump = Some(GroupBump {
            id: group.id.0,
            count_delta,
            version,
        });
        Some(now)
    }

    /// The foreign key checks the directory (a violation is
    /// `NotFound("directory")`) and holds it `FOR KEY SHARE` from here on.
    async fn insert_group(&mut self, dir: DirectoryId, write: &GroupWrite) -> StoreResult<Group> {
        let sql = format!(
            "INSERT INTO groups (id, directory_id, display_name, external_id, raw) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {GROUP_COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(GroupId::new().0)
            .bind(dir.0)
            .bind(&write.display_name)
            .bind(&write.external_id)
            .bind(&write.raw);
        let row = self.returning(query).await?;
        decode_group(&row)
    }

    /// The count is adjusted in SQL: the row lock serializes concurrent
    /// member changes, and the stored count is the truth.
    async fn update_group(
        &mut self,
        group: &Group,
        count_delta: i64,
        version: i64,
    ) -> StoreResult<Group> {
        let sql = format!(
            "UPDATE groups SET display_name = $2, external_id = $3, raw = $4, member_count = member_count + $5, \
             version = $6, updated_at = now() WHERE id = $1 RETURNING {GROUP_COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(group.id.0)
            .bind(&group.display_name)
            .bind(&group.external_id)
            .bind(&group.raw)
            .bind(count_delta)
            .bind(version);
        let row = self.returning(query).await?;
        decode_group(&row)
    }

    async fn delete_group(&mut self, id: GroupId) -> StoreResult<()> {
        self.execute(sqlx::query("DELETE FROM groups WHERE id = $1").bind(id.0))
            .await
    }

    async fn bump_groups(&mut self, groups: &[Uuid], delta: i64) -> StoreResult<Vec<(Uuid, i64)>> {
        sqlx::query_as(
            "UPDATE groups SET member_count = member_count + $2, version = version + 1, updated_at = now() \
             WHERE id = ANY($1) RETURNING id, version",
        )
        .bind(groups)
        .bind(delta)
        .fetch_all(self.conn())
        .await
        .map_err(map_db)
    }

    async fn lock_groups_holding(
        &mut self,
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
        .fetch_all(self.conn())
        .await
        .map_err(map_db)
    }

    /// `FOR KEY SHARE`: a concurrent deletion of a member waits for this
    /// transaction or wins cleanly (step 2 of the lock order).
    async fn lock_members(
        &mut self,
        dir: DirectoryId,
        members: &[MemberRef],
    ) -> StoreResult<HashSet<(MemberKind, Uuid)>> {
        let mut found = HashSet::new();
        for kind in [MemberKind::User, MemberKind::Group] {
            let ids: Vec<Uuid> = members
                .iter()
                .filter(|m| m.kind == kind)
                .map(|m| m.id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            // The directory is compared with `IS NOT DISTINCT FROM`, which no
            // index serves: the rows are found by primary key alone. With
            // `directory_id = $1` the planner may AND in a scan of a
            // `(directory_id, …)` index, reading every row of the directory
            // for each batch of adds (a generic plan whose per-directory
            // estimate is small, or statistics from before a bulk load).
            let sql = match kind {
                MemberKind::User => {
                    "SELECT id FROM users WHERE id = ANY($2) AND directory_id IS NOT DISTINCT FROM $1 \
                     ORDER BY id FOR KEY SHARE"
                }
                MemberKind::Group => {
                    "SELECT id FROM groups WHERE id = ANY($2) AND directory_id IS NOT DISTINCT FROM $1 \
                     ORDER BY id FOR KEY SHARE"
                }
            };
            let rows: Vec<Uuid> = sqlx::query_scalar(sql)
                .bind(dir.0)
                .bind(&ids)
                .fetch_all(self.conn())
                .await
                .map_err(map_db)?;
            found.extend(rows.into_iter().map(|id| (kind, id)));
        }
        Ok(found)
    }

    async fn insert_memberships(
        &mut self,
        dir: DirectoryId,
        group: GroupId,
        members: &[MemberRef],
    ) -> StoreResult<HashSet<Uuid>> {
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
        .fetch_all(self.conn())
        .await
        .map_err(map_db)?;
        Ok(inserted.into_iter().collect())
    }

    /// One statement when every member is of one kind: the members are
    /// locked (`FOR KEY SHARE`, in id order, as `lock_members`) before the
    /// insert can see which adds are complete, since the insert reads the
    /// set of incomplete adds, which reads every locked row. The directory
    /// is compared as in `lock_members`, for the same reason.
    async fn add_memberships(
        &mut self,
        dir: DirectoryId,
        group: GroupId,
        adds: &[&[MemberRef]],
    ) -> StoreResult<Added> {
        let Some(kind) = one_kind(adds) else {
            return add_memberships_in_steps(self, dir, group, adds).await;
        };
        let table = match kind {
            MemberKind::User => "users",
            MemberKind::Group => "groups",
        };
        let (mut ids, mut add_numbers) = (Vec::new(), Vec::new());
        for (number, add) in (0i32..).zip(adds) {
            for member in add.iter() {
                ids.push(member.id);
                add_numbers.push(number);
            }
        }
        let rows: Vec<(Uuid, bool, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH req AS ( \
                 SELECT r.id, r.add_number, r.ord \
                 FROM unnest($3::uuid[], $4::int4[]) WITH ORDINALITY AS r(id, add_number, ord)), \
             locked AS MATERIALIZED ( \
                 SELECT t.id FROM {table} t WHERE t.id = ANY($3) \
                 AND t.directory_id IS NOT DISTINCT FROM $1 ORDER BY t.id FOR KEY SHARE), \
             incomplete AS ( \
                 SELECT DISTINCT req.add_number FROM req \
                 WHERE NOT EXISTS (SELECT 1 FROM locked WHERE locked.id = req.id)), \
             inserted AS ( \
                 INSERT INTO memberships (directory_id, group_id, member_id, member_kind) \
                 SELECT $1, $2, req.id, $5 FROM req \
                 WHERE req.add_number NOT IN (SELECT add_number FROM incomplete) ORDER BY req.ord \
                 ON CONFLICT (group_id, member_id) DO NOTHING RETURNING member_id) \
             SELECT req.id, locked.id IS NOT NULL, inserted.member_id IS NOT NULL \
             FROM req LEFT JOIN locked ON locked.id = req.id \
             LEFT JOIN inserted ON inserted.member_id = req.id"
        )))
        .bind(dir.0)
        .bind(group.0)
        .bind(&ids)
        .bind(&add_numbers)
        .bind(kind.as_str())
        .fetch_all(self.conn())
        .await
        .map_err(map_db)?;
        let mut found = HashSet::new();
        let mut inserted = HashSet::new();
        for (id, was_found, was_inserted) in rows {
            if was_found {
                found.insert((kind, id));
            }
            if was_inserted {
                inserted.insert(id);
            }
        }
        Ok(Added {
            unknown: Added::unknown_of(adds, &found),
            inserted,
        })
    }

    async fn delete_memberships(
        &mut self,
        group: GroupId,
        ids: Option<&[Uuid]>,
    ) -> StoreResult<Vec<MemberRef>> {
        let rows: Vec<(Uuid, String)> =
            match ids {
                Some(ids) => {
                    sqlx::query_as(
                        "DELETE FROM memberships WHERE group_id = $1 AND member_id = ANY($2) \
                     RETURNING member_id, member_kind",
                    )
                    .bind(group.0)
                    .bind(ids)
                    .fetch_all(self.conn())
                    .await
                }
                None => sqlx::query_as(
                    "DELETE FROM memberships WHERE group_id = $1 RETURNING member_id, member_kind",
                )
                .bind(group.0)
                .fetch_all(self.conn())
                .await,
            }
            .map_err(map_db)?;
        rows.into_iter()
            .map(|(id, kind)| {
                Ok(MemberRef {
                    id,
                    kind: parse_member_kind(&kind)?,
                })
            })
            .collect()
    }

    async fn leave_groups(&mut self, member: Uuid) -> StoreResult<Vec<(Uuid, MemberKind)>> {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "DELETE FROM memberships WHERE member_id = $1 RETURNING group_id, member_kind",
        )
        .bind(member)
        .fetch_all(self.conn())
        .await
        .map_err(map_db)?;
        rows.into_iter()
            .map(|(group, kind)| Ok((group, parse_member_kind(&kind)?)))
            .collect()
    }

    async fn member_ids(&mut self, group: GroupId) -> StoreResult<Vec<Uuid>> {
        sqlx::query_scalar(
            "SELECT member_id FROM memberships WHERE group_id = $1 ORDER BY member_id",
        )
        .bind(group.0)
        .fetch_all(self.conn())
        .await
        .map_err(map_db)
    }
}

/// The kind of every member of `adds`, when they are of one kind.
fn one_kind(adds: &[&[MemberRef]]) -> Option<MemberKind> {
    let mut members = adds.iter().flat_map(|add| add.iter());
    let kind = members.next()?.kind;
    members.all(|m| m.kind == kind).then_some(kind)
}
