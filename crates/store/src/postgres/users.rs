//! Users.

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres, Row};
use uuid::Uuid;

use super::changes::NewChange;
use super::errors::{json_error, map_db};
use super::groups::{lock_groups_holding, remove_from_locked_groups};
use super::{PgStore, WriteTx, check_version};
use crate::UserUpdateFn;
use crate::error::{StoreError, StoreResult};
use crate::model::*;

/// Columns of a user row, as [`decode_user`] reads them.
pub(super) const USER_COLUMNS: &str = "users.id, users.directory_id, users.user_name, users.external_id, \
     users.active, users.display_name, users.given_name, users.family_name, users.emails, users.title, \
     users.department, users.manager_id, users.employee_number, users.custom_attributes, users.raw, \
     users.version, users.created_seq, users.created_at, users.updated_at";

/// Row lock for a read-modify-write: does not block `FOR KEY SHARE` (taken
/// by membership inserts that reference the user).
const LOCK_UPDATE: &str = " FOR NO KEY UPDATE";
/// Row lock for a delete: blocks new memberships of the user.
const LOCK_DELETE: &str = " FOR UPDATE";

impl PgStore {
    /// One statement, so one round trip and its own transaction: the user
    /// row, then its `user.created` change row. The revision is taken after
    /// the row (and its unique-index entry) exists, which is all the
    /// stable-head rule needs; the directory's existence is checked by the
    /// foreign key at the end of the statement (a violation is
    /// `NotFound("directory")`), whose `FOR KEY SHARE` orders the creation
    /// before a concurrent `directory.deleted` or makes it fail.
    ///
    /// The change payload (the serialized [`User`]) is built from the new row
    /// in SQL: the user's JSON then crosses the wire once, not twice.
    pub(super) async fn create_user_impl(
        &self,
        dir: DirectoryId,
        write: UserWrite,
    ) -> StoreResult<User> {
        let id = UserId::new();
        let query = sqlx::query(sqlx::AssertSqlSafe(CREATE_USER.as_str()))
            .bind(id.0)
            .bind(dir.0);
        let row = bind_columns(query, &write)?
            .bind(Uuid::new_v4())
            .fetch_one(self.pool())
            .await
            .map_err(map_db)?;
        let created_at: chrono::DateTime<chrono::Utc> =
            row.try_get("created_at").map_err(map_db)?;
        self.notifier.local_commit();
        Ok(User {
            id,
            directory_id: dir,
            fields: write.fields,
            raw: write.raw,
            group_ids: Vec::new(),
            version: 1,
            created_at,
            updated_at: created_at,
        })
    }

    /// Creates many users in one statement (one transaction): the same rows
    /// and `user.created` events as [`Store::create_user`] for each, for
    /// seeding and import tools. Returns the new ids in input order; a
    /// duplicate `userName` fails the whole import.
    ///
    /// [`Store::create_user`]: crate::Store::create_user
    pub async fn import_users(
        &self,
        dir: DirectoryId,
        users: &[UserWrite],
    ) -> StoreResult<Vec<UserId>> {
        let ids: Vec<UserId> = users.iter().map(|_| UserId::new()).collect();
        let sql = format!(
            "WITH u AS ( \
               INSERT INTO users (id, directory_id, {STORED_COLUMNS}) \
               SELECT i.id, $1, {STORED_COLUMNS} FROM unnest($2::uuid[], $3::text[], $4::text[], \
                 $5::boolean[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[], $11::text[], \
                 $12::text[], $13::text[], $14::jsonb[], $15::jsonb[], $16::text[]) \
                 AS i(id, {STORED_COLUMNS}) \
               RETURNING *), \
             c AS ({}) \
             SELECT count(*) FROM u",
            user_created_changes("gen_random_uuid()")
        );
        let column = |f: fn(&UserWrite) -> Option<String>| users.iter().map(f).collect::<Vec<_>>();
        let json = |f: fn(&UserFields) -> serde_json::Result<serde_json::Value>| {
            users
                .iter()
                .map(|u| f(&u.fields))
                .collect::<serde_json::Result<Vec<_>>>()
                .map_err(json_error)
        };
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dir.0)
            .bind(ids.iter().map(|id| id.0).collect::<Vec<_>>())
            .bind(
                users
                    .iter()
                    .map(|u| u.fields.user_name.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(column(|u| u.fields.external_id.clone()))
            .bind(users.iter().map(|u| u.fields.active).collect::<Vec<_>>())
            .bind(column(|u| u.fields.display_name.clone()))
            .bind(column(|u| u.fields.given_name.clone()))
            .bind(column(|u| u.fields.family_name.clone()))
            .bind(json(|f| serde_json::to_value(&f.emails))?)
            .bind(column(|u| u.fields.title.clone()))
            .bind(column(|u| u.fields.department.clone()))
            .bind(column(|u| u.fields.manager_id.clone()))
            .bind(column(|u| u.fields.employee_number.clone()))
            .bind(json(|f| serde_json::to_value(&f.custom_attributes))?)
            .bind(users.iter().map(|u| u.raw.clone()).collect::<Vec<_>>())
            .bind(
                users
                    .iter()
                    .map(|u| roster_scim::text::fold(&u.fields.user_name))
                    .collect::<Vec<_>>(),
            )
            .execute(self.pool())
            .await
            .map_err(map_db)?;
        self.notifier.local_commit();
        Ok(ids)
    }

    pub(super) async fn get_user_impl(&self, dir: DirectoryId, id: UserId) -> StoreResult<User> {
        let mut conn = self.conn().await?;
        load_user(&mut conn, dir, id, "").await
    }

    pub(super) async fn replace_user_impl(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        write: UserWrite,
    ) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let old = load_user(tx.conn(), dir, id, LOCK_UPDATE).await?;
        check_version(if_version, old.version)?;
        let user = write_update(&mut tx, &old, write).await?;
        tx.commit(self).await?;
        Ok(user)
    }

    pub(super) async fn update_user_impl(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        update: &UserUpdateFn,
    ) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let old = load_user(tx.conn(), dir, id, LOCK_UPDATE).await?;
        check_version(if_version, old.version)?;
        // A rejection drops `tx`, which rolls back: nothing was written.
        let write = update(&old).map_err(StoreError::Rejected)?;
        let user = write_update(&mut tx, &old, write).await?;
        tx.commit(self).await?;
        Ok(user)
    }

    /// Removes the user from its groups (`member.removed` each, the groups
    /// get new versions), then deletes it (`user.deleted` with its last
    /// state). Locks in the one order (module doc of `postgres`): the
    /// user's groups, then the user `FOR UPDATE`, which keeps new
    /// memberships out meanwhile.
    pub(super) async fn delete_user_impl(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let groups = lock_groups_holding(&mut tx, dir, id.0).await?;
        let user = load_user(tx.conn(), dir, id, LOCK_DELETE).await?;
        check_version(if_version, user.version)?;
        remove_from_locked_groups(&mut tx, dir, id.0, &groups).await?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.0)
            .execute(tx.conn())
            .await
            .map_err(map_db)?;
        tx.emit(user_change(ChangeKind::UserDeleted, &user, Vec::new())?);
        tx.commit(self).await
    }
}

/// Stores `write` over `old` (version + 1) and queues the matching event.
/// A write that changes nothing (same fields, same JSON) is not stored and
/// emits nothing: IdPs resend unchanged resources, and consumers should not
/// see no-op events.
async fn write_update(tx: &mut WriteTx, old: &User, write: UserWrite) -> StoreResult<User> {
    let changed = user_field_changes(&old.fields, &write.fields)?;
    if changed.is_empty() && old.raw == write.raw {
        return Ok(old.clone());
    }
    let sql = format!(
        "UPDATE users SET user_name = $2, external_id = $3, active = $4, display_name = $5, given_name = $6, \
         family_name = $7, emails = $8, title = $9, department = $10, manager_id = $11, employee_number = $12, \
         custom_attributes = $13, raw = $14, user_name_key = $15, version = version + 1, updated_at = now() \
         WHERE id = $1 RETURNING {USER_COLUMNS}"
    );
    let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(old.id.0);
    let row = bind_columns(query, &write)?
        .fetch_one(tx.conn())
        .await
        .map_err(map_db)?;
    let mut user = decode_user(&row)?;
    user.group_ids = old.group_ids.clone();
    let kind = match (old.fields.active, user.fields.active) {
        (true, false) => ChangeKind::UserDeactivated,
        (false, true) => ChangeKind::UserReactivated,
        _ => ChangeKind::UserUpdated,
    };
    tx.emit(user_change(kind, &user, changed)?);
    Ok(user)
}

/// Inserts one user ($1 id, $2 directory, $3.. its stored columns, $17 the
/// event id) and its `user.created` change.
static CREATE_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH u AS ( \
           INSERT INTO users (id, directory_id, {STORED_COLUMNS}) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
           RETURNING *), \
         c AS ({}) \
         SELECT created_at FROM u",
        user_created_changes("$17")
    )
});

/// The stored columns of a user that [`bind_columns`] binds, in its order.
const STORED_COLUMNS: &str = "user_name, external_id, active, display_name, given_name, family_name, emails, \
     title, department, manager_id, employee_number, custom_attributes, raw, user_name_key";

/// The statement appending a `user.created` change for every row of the CTE
/// `u` (users just inserted); `event_id` is the SQL of each event's id. The
/// payload (the serialized [`User`]) is built from the row in SQL.
fn user_created_changes(event_id: &str) -> String {
    format!(
        "INSERT INTO changes (revision, event_id, directory_id, kind, resource_id, version, payload) \
         SELECT nextval('change_revision'), {event_id}, u.directory_id, 'user.created', u.id, u.version, \
                jsonb_build_object('id', u.id, 'directory_id', u.directory_id, 'user_name', u.user_name, \
                  'external_id', u.external_id, 'active', u.active, 'display_name', u.display_name, \
                  'given_name', u.given_name, 'family_name', u.family_name, 'emails', u.emails, \
                  'title', u.title, 'department', u.department, 'manager_id', u.manager_id, \
                  'employee_number', u.employee_number, 'custom_attributes', u.custom_attributes, \
                  'raw', u.raw, 'group_ids', '[]'::jsonb, 'version', u.version, \
                  'created_at', u.created_at, 'updated_at', u.updated_at) \
         FROM u WHERE pg_current_xact_id() IS NOT NULL"
    )
}

/// Binds `write`'s stored columns, `user_name` through `raw` and then
/// `user_name_key` (14 values), in the order the INSERT and UPDATE
/// statements of this module name them. The key is computed here, not by
/// the database's `lower()`, so that it does not depend on the server's
/// locale (migrations/postgres/0003_user_name_key.sql).
fn bind_columns<'q>(
    query: Query<'q, Postgres, PgArguments>,
    write: &'q UserWrite,
) -> StoreResult<Query<'q, Postgres, PgArguments>> {
    let f = &write.fields;
    Ok(query
        .bind(&f.user_name)
        .bind(&f.external_id)
        .bind(f.active)
        .bind(&f.display_name)
        .bind(&f.given_name)
        .bind(&f.family_name)
        .bind(serde_json::to_value(&f.emails).map_err(json_error)?)
        .bind(&f.title)
        .bind(&f.department)
        .bind(&f.manager_id)
        .bind(&f.employee_number)
        .bind(serde_json::to_value(&f.custom_attributes).map_err(json_error)?)
        .bind(&write.raw)
        .bind(roster_scim::text::fold(&f.user_name)))
}

/// Loads a user of `dir` with its group ids (optionally locking the row),
/// or fails with `NotFound("user")`.
pub(super) async fn load_user(
    conn: &mut PgConnection,
    dir: DirectoryId,
    id: UserId,
    lock: &str,
) -> StoreResult<User> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE users.id = $1 AND users.directory_id = $2{lock}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .bind(dir.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_db)?
        .ok_or(StoreError::NotFound("user"))?;
    let mut user = decode_user(&row)?;
    let mut groups = group_ids_of(conn, &[id.0]).await?;
    user.group_ids = groups.remove(&id.0).unwrap_or_default();
    Ok(user)
}

/// The groups each of `users` is a direct member of, ordered by group id;
/// one query for a whole page.
pub(super) async fn group_ids_of(
    conn: &mut PgConnection,
    users: &[Uuid],
) -> StoreResult<HashMap<Uuid, Vec<GroupId>>> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT member_id, group_id FROM memberships \
         WHERE member_id = ANY($1) AND member_kind = 'user' ORDER BY member_id, group_id",
    )
    .bind(users)
    .fetch_all(conn)
    .await
    .map_err(map_db)?;
    let mut out: HashMap<Uuid, Vec<GroupId>> = HashMap::new();
    for (user, group) in rows {
        out.entry(user).or_default().push(GroupId(group));
    }
    Ok(out)
}

/// Fills `group_ids` of a page of users.
pub(super) async fn attach_group_ids(
    conn: &mut PgConnection,
    users: &mut [User],
) -> StoreResult<()> {
    let ids: Vec<Uuid> = users.iter().map(|u| u.id.0).collect();
    let mut groups = group_ids_of(conn, &ids).await?;
    for user in users {
        user.group_ids = groups.remove(&user.id.0).unwrap_or_default();
    }
    Ok(())
}

/// Decodes a row selected with [`USER_COLUMNS`] (without group ids).
pub(super) fn decode_user(row: &PgRow) -> StoreResult<User> {
    let emails: serde_json::Value = row.try_get("emails").map_err(map_db)?;
    let custom: serde_json::Value = row.try_get("custom_attributes").map_err(map_db)?;
    Ok(User {
        id: UserId(row.try_get("id").map_err(map_db)?),
        directory_id: DirectoryId(row.try_get("directory_id").map_err(map_db)?),
        fields: UserFields {
            user_name: row.try_get("user_name").map_err(map_db)?,
            external_id: row.try_get("external_id").map_err(map_db)?,
            active: row.try_get("active").map_err(map_db)?,
            display_name: row.try_get("display_name").map_err(map_db)?,
            given_name: row.try_get("given_name").map_err(map_db)?,
            family_name: row.try_get("family_name").map_err(map_db)?,
            emails: serde_json::from_value(emails).map_err(json_error)?,
            title: row.try_get("title").map_err(map_db)?,
            department: row.try_get("department").map_err(map_db)?,
            manager_id: row.try_get("manager_id").map_err(map_db)?,
            employee_number: row.try_get("employee_number").map_err(map_db)?,
            custom_attributes: serde_json::from_value(custom).map_err(json_error)?,
        },
        raw: row.try_get("raw").map_err(map_db)?,
        group_ids: Vec::new(),
        version: row.try_get("version").map_err(map_db)?,
        created_at: row.try_get("created_at").map_err(map_db)?,
        updated_at: row.try_get("updated_at").map_err(map_db)?,
    })
}

/// The normalized fields that differ, by their serialized names (the same
/// names on every backend).
fn user_field_changes(old: &UserFields, new: &UserFields) -> StoreResult<Vec<FieldChange>> {
    let old = serde_json::to_value(old).map_err(json_error)?;
    let new = serde_json::to_value(new).map_err(json_error)?;
    let names: Vec<String> = old
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(super::diff_fields(&old, &new, &names))
}

pub(super) fn user_change(
    kind: ChangeKind,
    user: &User,
    changed: Vec<FieldChange>,
) -> StoreResult<NewChange> {
    NewChange::new(
        user.directory_id,
        kind,
        user.id.0,
        user.version,
        user,
        changed,
    )
}
