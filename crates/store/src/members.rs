//! A group's members as both backends read them: a page after a member id,
//! or every member streamed from one snapshot.

use sqlx::query::Query;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};
use uuid::Uuid;

use crate::MemberPages;
use crate::error::StoreResult;
use crate::model::{GroupId, Member};
use crate::rows::{self, Dialect};
use crate::write::parse_member_kind;

/// A group's members with their display names, from `memberships m`
/// (a user's is its displayName, else its userName).
pub(crate) const MEMBERS_SELECT: &str = "SELECT m.group_id, m.member_id, m.member_kind, \
       CASE m.member_kind WHEN 'user' THEN COALESCE(u.display_name, u.user_name) ELSE g.display_name END \
         AS display \
     FROM memberships m \
     LEFT JOIN users u ON m.member_kind = 'user' AND u.id = m.member_id \
     LEFT JOIN groups g ON m.member_kind = 'group' AND g.id = m.member_id";

/// Members of a group ordered by member id, after `after`, at most `limit`.
pub(crate) async fn page<'c, DB>(
    conn: impl Executor<'c, Database = DB>,
    group: GroupId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<Member>>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    let sql = format!(
        "{MEMBERS_SELECT} WHERE m.group_id = $1 AND m.member_id > $2 ORDER BY m.member_id LIMIT $3"
    );
    let query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(DB::id(group.0))
        // Not `… IS NULL OR …`: a generic plan could not use the key range
        // then, and would read the whole group for every page. Member ids
        // are generated, never nil.
        .bind(DB::id(after.unwrap_or_else(Uuid::nil)))
        .bind(limit.max(0));
    rows::all(query, conn, decode::<DB>).await
}

/// Every member of a group, streamed a page at a time from the snapshot of
/// `tx` (see [`rows::pages`]).
pub(crate) fn stream<DB>(
    tx: sqlx::Transaction<'static, DB>,
    group: GroupId,
    page_size: i64,
) -> MemberPages
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB> + Send,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    let sql = format!("{MEMBERS_SELECT} WHERE m.group_id = $1 ORDER BY m.member_id");
    let query: Query<'static, DB, DB::Arguments> =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(DB::id(group.0));
    rows::pages(tx, query, page_size, decode::<DB>)
}

/// Decodes a row selected with [`MEMBERS_SELECT`].
pub(crate) fn decode<DB>(row: &DB::Row) -> StoreResult<Member>
where
    DB: Dialect,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    let kind: String = row.try_get("member_kind").map_err(DB::map_db)?;
    Ok(Member {
        id: DB::read_id(row, "member_id")?,
        kind: parse_member_kind(&kind)?,
        display: row.try_get("display").map_err(DB::map_db)?,
    })
}
