//! Users.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, Row};
use uuid::Uuid;

use super::PgStore;
use super::errors::{json_error, map_db};
use crate::error::StoreResult;
use crate::model::*;
use crate::write::retrying;

/// Columns of a user row, as [`decode_user`] reads them.
pub(super) const USER_COLUMNS: &str = "users.id, users.directory_id, users.user_name, users.external_id, \
     users.active, users.display_name, users.given_name, users.family_name, users.emails, users.title, \
     users.department, users.manager_id, users.employee_number, users.custom_attributes, users.raw, \
     users.version, users.created_seq, users.created_at, users.updated_at";

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
        let taking = self.taking_revisions();
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
        let change = super::changes::decode_change(&row)?;
        self.committed(vec![change]);
        taking.committed();
        Ok(new_user(id, dir, write, created_at))
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
        self.insert_users(dir, &ids, users, "").await?;
        Ok(ids)
    }

    /// [`Store::create_users`]: one statement inserts every user whose
    /// `userName` is free (and its change); each user it
    /// skipped for a conflict is then created alone, so it fails with
    /// exactly the error [`Store::create_user`] gives (or succeeds, if the
    /// conflicting user went away meanwhile).
    ///
    /// [`Store::create_users`]: crate::Store::create_users
    /// [`Store::create_user`]: crate::Store::create_user
    pub(super) async fn create_users_impl(
        &self,
        dir: DirectoryId,
        writes: Vec<UserWrite>,
    ) -> Vec<StoreResult<User>> {
        let ids: Vec<UserId> = writes.iter().map(|_| UserId::new()).collect();
        let at_once = || self.insert_users(dir, &ids, &writes, "ON CONFLICT DO NOTHING");
        // Any other failure (a value one user cannot store): each meets
        // its own fate alone.
        let inserted = retrying(at_once).await.unwrap_or_default();
        let mut results = Vec::with_capacity(writes.len());
        for (write, id) in writes.into_iter().zip(ids) {
            results.push(match inserted.get(&id.0) {
                Some(created_at) => Ok(new_user(id, dir, write, *created_at)),
                None => retrying(|| self.create_user_impl(dir, write.clone())).await,
            });
        }
        results
    }

    /// Inserts `users` (with `ids`) and their changes in one statement;
    /// `conflict` is the INSERT's conflict clause. Returns the creation time
    /// of each user inserted.
    async fn insert_users(
        &self,
        dir: DirectoryId,
        ids: &[UserId],
        users: &[UserWrite],
        conflict: &str,
    ) -> StoreResult<HashMap<Uuid, DateTime<Utc>>> {
        let sql = format!(
            "WITH u AS ( \
               INSERT INTO users (id, directory_id, {STORED_COLUMNS}) \
               SELECT i.id, $1, {STORED_COLUMNS} FROM unnest($2::uuid[], $3::text[], $4::text[], \
                 $5::boolean[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[], $11::text[], \
                 $12::text[], $13::text[], $14::jsonb[], $15::jsonb[], $16::text[]) \
                 AS i(id, {STORED_COLUMNS}) \
               {conflict} RETURNING *), \
             c AS ({}) \
             SELECT u.id, u.created_at, c.* FROM u JOIN c ON c.resource_id = u.id",
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
        let taking = self.taking_revisions();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
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
            .fetch_all(self.pool())
            .await
            .map_err(map_db)?;
        let changes = rows
            .iter()
            .map(super::changes::decode_change)
            .collect::<StoreResult<Vec<_>>>()?;
        self.committed(changes);
        taking.committed();
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("id").map_err(map_db)?,
                    row.try_get("created_at").map_err(map_db)?,
                ))
            })
            .collect()
    }
}

/// A user just created from `write`.
fn new_user(id: UserId, dir: DirectoryId, write: UserWrite, created_at: DateTime<Utc>) -> User {
    User {
        id,
        directory_id: dir,
        fields: write.fields,
        raw: Document::from_value(&write.raw),
        group_ids: Vec::new(),
        version: 1,
        created_at,
        updated_at: created_at,
    }
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
         SELECT u.created_at, c.* FROM u, c",
        user_created_changes("$17")
    )
});

/// The stored columns of a user that [`bind_columns`] binds, in its order.
pub(super) const STORED_COLUMNS: &str = "user_name, external_id, active, display_name, given_name, family_name, emails, \
     title, department, manager_id, employee_number, custom_attributes, raw, user_name_key";

/// The statement appending a `user.created` change for every row of the CTE
/// `u` (users just inserted); `event_id` is the SQL of each event's id. The
/// payload (the serialized [`User`]) is built from the row in SQL. Returns
/// each change row as stored ([`super::changes::RETURNED`]).
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
         FROM u WHERE pg_current_xact_id() IS NOT NULL \
         RETURNING {}",
        super::changes::RETURNED
    )
}

/// Binds `write`'s stored columns, `user_name` through `raw` and then
/// `user_name_key` (14 values), in the order the INSERT and UPDATE
/// statements of this module name them. The key is computed here, not by
/// the database's `lower()`, so that it does not depend on the server's
/// locale (migrations/postgres/0003_user_name_key.sql).
pub(super) fn bind_columns<'q>(
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
    let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).bind(dir.0);
    let mut user = crate::rows::one(query, &mut *conn, "user", decode_user).await?;
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
    // Decoded straight into their types, not through a `serde_json::Value`.
    let Json(emails) = row.try_get("emails").map_err(map_db)?;
    let Json(custom_attributes) = row.try_get("custom_attributes").map_err(map_db)?;
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
            emails,
            title: row.try_get("title").map_err(map_db)?,
            department: row.try_get("department").map_err(map_db)?,
            manager_id: row.try_get("manager_id").map_err(map_db)?,
            employee_number: row.try_get("employee_number").map_err(map_db)?,
            custom_attributes,
        },
        raw: row.try_get("raw").map_err(map_db)?,
        group_ids: Vec::new(),
        version: row.try_get("version").map_err(map_db)?,
        created_at: row.try_get("created_at").map_err(map_db)?,
        updated_at: row.try_get("updated_at").map_err(map_db)?,
    })
}
