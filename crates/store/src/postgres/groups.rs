//! Reading groups and their members.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Row};
use uuid::Uuid;

use super::errors::map_db;
use crate::error::StoreResult;
use crate::members::{self, MEMBERS_SELECT};
use crate::model::*;

/// Members read per statement when a group is read with its members.
pub(super) const MEMBER_PAGE: i64 = 5_000;

/// Columns of a group row, as [`decode_group`] reads them.
pub(super) const GROUP_COLUMNS: &str = "groups.id, groups.directory_id, groups.display_name, groups.external_id, \
     groups.raw, groups.member_count, groups.version, groups.created_seq, groups.created_at, groups.updated_at";

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
    let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).bind(dir.0);
    crate::rows::one(query, conn, "group", decode_group).await
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
        out.entry(group)
            .or_default()
            .push(members::decode::<Postgres>(row)?);
    }
    Ok(out)
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
