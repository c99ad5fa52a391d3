//! Reading groups and their members.

use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use super::codec::{Col, id_text};
use crate::MemberPages;
use crate::error::StoreResult;
use crate::model::*;
use crate::rows::MEMBERS_SELECT;
use crate::write::parse_member_kind;

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

/// Members of a group with display names, ordered by member id, after
/// `after`, at most `limit`.
pub(super) async fn members_of(
    conn: &mut SqliteConnection,
    group: GroupId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<Member>> {
    let sql = format!(
        "{MEMBERS_SELECT} WHERE m.group_id = ? AND m.member_id > ? ORDER BY m.member_id LIMIT ?"
    );
    let query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(group.0))
        .bind(after.map(id_text).unwrap_or_default())
        .bind(limit);
    crate::rows::all(query, conn, decode_member).await
}

/// Streams a group's members from the snapshot of `tx`, a page at a time
/// (see [`crate::rows::pages`]).
pub(super) fn member_pages(
    tx: Transaction<'static, Sqlite>,
    group: GroupId,
    page_size: i64,
) -> MemberPages {
    let sql = format!("{MEMBERS_SELECT} WHERE m.group_id = ? ORDER BY m.member_id");
    let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id_text(group.0));
    crate::rows::pages(tx, query, page_size, decode_member)
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
