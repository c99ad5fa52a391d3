//! Users.

use std::collections::HashMap;

use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::codec::{Col, id_text, json_text, parse_id};
use super::errors::map_db;
use crate::error::StoreResult;
use crate::model::*;

/// Columns of a user row, as `decode_user` reads them.
pub(super) const USER_COLUMNS: &str = "users.id, users.directory_id, users.user_name, users.external_id, \
     users.active, users.display_name, users.given_name, users.family_name, users.emails, users.title, \
     users.department, users.manager_id, users.employee_number, users.custom_attributes, users.raw, \
     users.version, users.created_at, users.updated_at";

/// Loads a user of `dir` with its group ids, or fails with `NotFound("user")`.
pub(super) async fn load_user(
    conn: &mut SqliteConnection,
    dir: DirectoryId,
    id: UserId,
) -> StoreResult<User> {
    let sql =
        format!("SELECT {USER_COLUMNS} FROM users WHERE users.id = ? AND users.directory_id = ?");
    let query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(id.0))
        .bind(id_text(dir.0));
    let mut user = crate::rows::one(query, &mut *conn, "user", decode_user).await?;
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
    .map_err(map_db)?;
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
    .map_err(map_db)?;
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
