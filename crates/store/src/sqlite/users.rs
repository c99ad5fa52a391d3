//! Users.

use std::collections::HashMap;

use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::SqliteStore;
use super::check_version;
use super::codec::{Col, fold_key, id_text, json_text, parse_id, reject_nul, time_text, to_json};
use super::directories::ensure_directory;
use super::errors::map_sqlx;
use super::groups::remove_from_all_groups;
use super::tx::{Event, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::model::*;

/// Columns of a user row, as `decode_user` reads them.
pub(super) const USER_COLUMNS: &str = "users.id, users.directory_id, users.user_name, users.external_id, \
     users.active, users.display_name, users.given_name, users.family_name, users.emails, users.title, \
     users.department, users.manager_id, users.employee_number, users.custom_attributes, users.raw, \
     users.version, users.created_at, users.updated_at";

impl SqliteStore {
    pub(super) async fn create_user_impl(
        &self,
        dir: DirectoryId,
        user: UserWrite,
    ) -> StoreResult<User> {
        reject_nul(&user.fields)?;
        reject_nul(&user.raw)?;
        let mut tx = self.begin_write().await?;
        ensure_directory(tx.conn(), dir).await?;
        let created = User {
            id: UserId::new(),
            directory_id: dir,
            fields: user.fields,
            raw: user.raw,
            group_ids: Vec::new(),
            version: 1,
            created_at: tx.now,
            updated_at: tx.now,
        };
        insert_user(tx.conn(), &created).await?;
        tx.emit(user_event(ChangeKind::UserCreated, &created, Vec::new())?);
        self.commit(tx).await?;
        Ok(created)
    }

    pub(super) async fn get_user_impl(&self, dir: DirectoryId, id: UserId) -> StoreResult<User> {
        let mut conn = self.read_conn().await?;
        load_user(&mut conn, dir, id).await
    }

    pub(super) async fn replace_user_impl(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        user: UserWrite,
    ) -> StoreResult<User> {
        self.update_user_impl(dir, id, if_version, move |_| Ok(user))
            .await
    }

    /// `update` is a [`crate::UserUpdateFn`] or, for a PUT, the replacement: the
    /// single writer connection never deadlocks, so nothing is replayed.
    pub(super) async fn update_user_impl<F>(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        update: F,
    ) -> StoreResult<User>
    where
        F: FnOnce(&User) -> Result<UserWrite, Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut tx = self.begin_write().await?;
        let old = load_user(tx.conn(), dir, id).await?;
        check_version(if_version, old.version)?;
        let write = update(&old).map_err(StoreError::Rejected)?;
        let updated = write_user_update(&mut tx, &old, write).await?;
        self.commit(tx).await?;
        Ok(updated)
    }

    pub(super) async fn delete_user_impl(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let user = load_user(tx.conn(), dir, id).await?;
        check_version(if_version, user.version)?;
        remove_from_all_groups(&mut tx, dir, id.0).await?;
        sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id_text(id.0))
            .execute(tx.conn())
            .await
            .map_err(map_sqlx)?;
        tx.emit(user_event(ChangeKind::UserDeleted, &user, Vec::new())?);
        self.commit(tx).await?;
        Ok(())
    }
}

/// Stores `write` over `old` (version + 1) and queues the matching event.
/// A write that changes nothing is not stored and emits nothing: IdPs resend
/// unchanged resources, and consumers should not see no-op events.
async fn write_user_update(tx: &mut WriteTx, old: &User, write: UserWrite) -> StoreResult<User> {
    reject_nul(&write.fields)?;
    reject_nul(&write.raw)?;
    let changed = user_changes(&old.fields, &write.fields)?;
    if changed.is_empty() && old.raw == write.raw {
        return Ok(old.clone());
    }
    let updated = User {
        fields: write.fields,
        raw: write.raw,
        version: old.version + 1,
        updated_at: tx.now,
        ..old.clone()
    };
    update_user_row(tx.conn(), &updated).await?;
    let kind = match (old.fields.active, updated.fields.active) {
        (true, false) => ChangeKind::UserDeactivated,
        (false, true) => ChangeKind::UserReactivated,
        _ => ChangeKind::UserUpdated,
    };
    tx.emit(user_event(kind, &updated, changed)?);
    Ok(updated)
}

async fn insert_user(conn: &mut SqliteConnection, user: &User) -> StoreResult<()> {
    let f = &user.fields;
    sqlx::query(
        "INSERT INTO users (id, directory_id, user_name, user_name_key, external_id, active, display_name, \
         given_name, family_name, emails, title, department, manager_id, employee_number, custom_attributes, \
         raw, version, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id_text(user.id.0))
    .bind(id_text(user.directory_id.0))
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
    .bind(user.version)
    .bind(time_text(user.created_at))
    .bind(time_text(user.updated_at))
    .execute(conn)
    .await
    .map_err(map_sqlx)?;
    Ok(())
}

async fn update_user_row(conn: &mut SqliteConnection, user: &User) -> StoreResult<()> {
    let f = &user.fields;
    sqlx::query(
        "UPDATE users SET user_name = ?, user_name_key = ?, external_id = ?, active = ?, display_name = ?, \
         given_name = ?, family_name = ?, emails = ?, title = ?, department = ?, manager_id = ?, \
         employee_number = ?, custom_attributes = ?, raw = ?, version = ?, updated_at = ? WHERE id = ?",
    )
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
    .bind(user.version)
    .bind(time_text(user.updated_at))
    .bind(id_text(user.id.0))
    .execute(conn)
    .await
    .map_err(map_sqlx)?;
    Ok(())
}

/// Loads a user of `dir` with its group ids, or fails with `NotFound("user")`.
pub(super) async fn load_user(
    conn: &mut SqliteConnection,
    dir: DirectoryId,
    id: UserId,
) -> StoreResult<User> {
    let sql =
        format!("SELECT {USER_COLUMNS} FROM users WHERE users.id = ? AND users.directory_id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(id.0))
        .bind(id_text(dir.0))
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound("user"))?;
    let mut user = decode_user(&row)?;
    user.group_ids = group_ids_of(conn, id).await?;
    Ok(user)
}

/// The groups a user is a direct member of, ordered by id.
pub(super) async fn group_ids_of(
    conn: &mut SqliteConnection,
    id: UserId,
) -> StoreResult<Vec<GroupId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT group_id FROM memberships WHERE member_id = ? AND member_kind = 'user' ORDER BY group_id",
    )
    .bind(id_text(id.0))
    .fetch_all(conn)
    .await
    .map_err(map_sqlx)?;
    ids.iter().map(|id| parse_id(id).map(GroupId)).collect()
}

/// Fills `group_ids` of a page of users with one query.
pub(super) async fn attach_group_ids(
    conn: &mut SqliteConnection,
    users: &mut [User],
) -> StoreResult<()> {
    if users.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = users.iter().map(|u| id_text(u.id.0)).collect();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT member_id, group_id FROM memberships \
         WHERE member_id IN (SELECT value FROM json_each(?)) AND member_kind = 'user' \
         ORDER BY member_id, group_id",
    )
    .bind(json_text(&ids)?)
    .fetch_all(conn)
    .await
    .map_err(map_sqlx)?;
    let mut groups: HashMap<Uuid, Vec<GroupId>> = HashMap::new();
    for (user, group) in &rows {
        groups
            .entry(parse_id(user)?)
            .or_default()
            .push(GroupId(parse_id(group)?));
    }
    for user in users {
        user.group_ids = groups.remove(&user.id.0).unwrap_or_default();
    }
    Ok(())
}

/// Decodes a row selected with [`USER_COLUMNS`] (without group ids).
pub(super) fn decode_user(row: &SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: UserId(row.id("id")?),
        directory_id: DirectoryId(row.id("directory_id")?),
        fields: UserFields {
            user_name: row.text("user_name")?,
            external_id: row.opt_text("external_id")?,
            active: row.int("active")? != 0,
            display_name: row.opt_text("display_name")?,
            given_name: row.opt_text("given_name")?,
            family_name: row.opt_text("family_name")?,
            emails: row.json("emails")?,
            title: row.opt_text("title")?,
            department: row.opt_text("department")?,
            manager_id: row.opt_text("manager_id")?,
            employee_number: row.opt_text("employee_number")?,
            custom_attributes: row.json("custom_attributes")?,
        },
        raw: row.json("raw")?,
        group_ids: Vec::new(),
        version: row.int("version")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// The normalized fields that differ, by their serialized names.
fn user_changes(old: &UserFields, new: &UserFields) -> StoreResult<Vec<FieldChange>> {
    let (old, new) = (to_json(old)?, to_json(new)?);
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return Err(StoreError::Internal(
            "user fields do not serialize to an object".into(),
        ));
    };
    Ok(old
        .iter()
        .filter(|(field, previous)| new.get(*field) != Some(*previous))
        .map(|(field, previous)| FieldChange {
            field: field.clone(),
            previous: previous.clone(),
            current: new.get(field).cloned().unwrap_or(serde_json::Value::Null),
        })
        .collect())
}

/// The change-log event of a user change; the payload is the whole user.
pub(super) fn user_event(
    kind: ChangeKind,
    user: &User,
    changed_fields: Vec<FieldChange>,
) -> StoreResult<Event> {
    Ok(Event {
        directory_id: user.directory_id,
        kind,
        resource_id: user.id.0,
        version: user.version,
        payload: to_json(user)?,
        changed_fields,
    })
}
