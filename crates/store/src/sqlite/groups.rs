//! Reading groups and their members.

use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::codec::{Col, id_text};
use crate::error::StoreResult;
use crate::model::*;

/// Columns of a group row, as `decode_group` reads them.
pub(super) const GROUP_COLUMNS: &str = "groups.id, groups.directory_id, groups.display_name, groups.external_id, \
     groups.raw, groups.member_count, groups.version, groups.created_at, groups.updated_at";

/// Loads a group of `dir` without members, or fails with `NotFound("group")`.
pub(super) async fn load_group(
    conn: &mut SqliteConnection,
    dir: DirectoryId,
    id: GroupId,
) -> StoreResult<Group> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM groups WHERE groups.id = ? AND groups.directory_id = ?"
    );
    let query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(id.0))
        .bind(id_text(dir.0));
    crate::rows::one(query, conn, "group", decode_group).await
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
