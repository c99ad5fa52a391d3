//! Filtered, sorted, paginated lists. Each list runs in one REPEATABLE READ
//! READ ONLY transaction and returns the exact change-log cursor of its
//! snapshot (see the module docs of `postgres.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres, Row};
use uuid::Uuid;

use super::errors::map_db;
use super::groups::{GROUP_COLUMNS, MEMBER_PAGE, decode_group, load_group, members_of_groups};
use super::users::{USER_COLUMNS, decode_user, load_user};
use super::warm::Warm;
use super::{PgStore, changes, coalesce};
use crate::error::{StoreError, StoreResult};
use crate::filter_sql::{
    Dialect, ResourceTable, SortKey, SortType, SqlArg, sort_fingerprint, sort_sql, to_sql,
};
use crate::model::*;
use crate::page_token::PageToken;
use crate::write::{GroupRead, MemberPage, Reads};
use roster_scim::filter::{CompareOp, Filter};

/// The parts of a list statement shared by the count and the page queries.
struct ListSql {
    table: ResourceTable,
    columns: &'static str,
    where_sql: String,
    args: Vec<SqlArg>,
    /// How many of `args` belong to `where_sql`; the sort key's come after
    /// and must not be bound to the count query, which has no ORDER BY.
    where_args: usize,
    sort: Option<(SortKey, bool)>,
    fingerprint: String,
}

/// Starts a list's transaction in one statement.
pub(super) const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

#[async_trait]
impl Reads for PgStore {
    async fn get_user(&self, dir: DirectoryId, id: UserId) -> StoreResult<User> {
        let mut conn = self.lookups.take().await?;
        let user = load_user(&mut conn, dir, id, "").await;
        park_after(conn, &user);
        user
    }

    async fn list_users(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<User>> {
        let (rows, total, next, cursor) = match self.coalesced_search(dir, query).await {
            // The page holds every match (see `coalesced_search`).
            Some(rows) => {
                let total = rows.len() as i64;
                (rows, total, None, None)
            }
            None => {
                let sql = build(ResourceTable::Users, USER_COLUMNS, dir, query)?;
                self.read_page(&sql, query).await?
            }
        };
        let users = rows
            .iter()
            .map(|row| {
                let mut user = decode_user(row)?;
                let groups: Vec<Uuid> = row.try_get("group_ids").map_err(map_db)?;
                user.group_ids = groups.into_iter().map(GroupId).collect();
                Ok(user)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items: users,
            total,
            next_page_token: next,
            cursor,
        })
    }

    async fn get_group(&self, dir: DirectoryId, id: GroupId, members: bool) -> StoreResult<Group> {
        if !members {
            let mut conn = self.warm.take(&self.pool).await?;
            let group = load_group(&mut conn, dir, id, "").await;
            park_after(conn, &group);
            return group;
        }
        let (mut group, pages) = self.read_group(dir, id, MEMBER_PAGE).await?;
        group.members = Some(pages.try_concat().await?);
        Ok(group)
    }

    /// Opens a REPEATABLE READ snapshot, reads the group in it, and leaves
    /// the snapshot to the member stream, which ends it after the last page.
    async fn read_group(&self, dir: DirectoryId, id: GroupId, page_size: i64) -> GroupRead {
        let mut tx = self.pool.begin_with(BEGIN_SNAPSHOT).await.map_err(map_db)?;
        let group = load_group(&mut tx, dir, id, "").await?;
        Ok((group, crate::members::stream(tx, id, page_size)))
    }

    async fn list_members(&self, dir: DirectoryId, page: MemberPage) -> StoreResult<Vec<Member>> {
        let mut conn = self.conn().await?;
        load_group(&mut conn, dir, page.group, "").await?;
        crate::members::page(&mut *conn, page.group, page.after, page.limit).await
    }

    async fn list_groups(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<Group>> {
        let sql = build(ResourceTable::Groups, GROUP_COLUMNS, dir, query)?;
        // Members need a second statement, so they share the transaction.
        let query = &ListQuery {
            omit_cursor: query.omit_cursor && !query.include_members,
            ..query.clone()
        };
        let mut tx = self.pool.begin_with(BEGIN_SNAPSHOT).await.map_err(map_db)?;
        let cursor = match query.omit_cursor {
            true => None,
            false => Some(self.snapshot_cursor(&mut tx).await?),
        };
        let (rows, total, next) = run(&mut tx, &sql, query).await?;
        let mut groups = rows
            .iter()
            .map(decode_group)
            .collect::<StoreResult<Vec<_>>>()?;
        if query.include_members {
            let ids = groups_within_member_budget(&groups);
            let mut members = members_of_groups(&mut tx, &ids).await?;
            for g in groups.iter_mut().filter(|g| ids.contains(&g.id.0)) {
                g.members = Some(members.remove(&g.id.0).unwrap_or_default());
            }
        }
        tx.commit().await.map_err(map_db)?;
        Ok(Page {
            items: groups,
            total,
            next_page_token: next,
            cursor,
        })
    }
}

impl PgStore {
    /// The rows of a keyed search answered with others in one statement
    /// (`coalesce.rs`), when it is one and its page holds every match (so
    /// the rows are the total); else `None`, for the ordinary path.
    async fn coalesced_search(&self, dir: DirectoryId, query: &ListQuery) -> Option<Vec<PgRow>> {
        let (column, key, limit) = coalesce::batchable(query)?;
        let rows = self.coalescer.search(column, dir, key, limit).await?;
        ((rows.len() as i64) < limit).then_some(rows)
    }

    /// Reads one page. Without a cursor the page is one statement outside
    /// any explicit transaction (one round trip, one snapshot); with one, it
    /// runs in the REPEATABLE READ transaction whose snapshot the cursor
    /// describes.
    async fn read_page(&self, sql: &ListSql, query: &ListQuery) -> StoreResult<PageRows> {
        if query.omit_cursor {
            let mut conn = match keyed_lookup(query) {
                true => self.lookups.take().await?,
                false => self.warm.take(&self.pool).await?,
            };
            let page = run(&mut conn, sql, query).await;
            park_after(conn, &page);
            let (rows, total, next) = page?;
            return Ok((rows, total, next, None));
        }
        let mut tx = self.pool.begin_with(BEGIN_SNAPSHOT).await.map_err(map_db)?;
        let cursor = self.snapshot_cursor(&mut tx).await?;
        let (rows, total, next) = run(&mut tx, sql, query).await?;
        tx.commit().await.map_err(map_db)?;
        Ok((rows, total, next, Some(cursor)))
    }

    /// The cursor of the current REPEATABLE READ snapshot: the stable head H
    /// advanced *in* that snapshot, plus the revisions above H it already
    /// sees.
    pub(super) async fn snapshot_cursor(&self, conn: &mut PgConnection) -> StoreResult<Cursor> {
        let after = self.advance_in_snapshot(conn, 0).await?;
        let (also_seen, epoch) = changes::visible_after(conn, after).await?;
        Ok(Cursor {
            after,
            also_seen,
            epoch: Some(epoch),
        })
    }
}

/// A first page found by `eq` on a key an IdP looks users up by (`id`,
/// `userName`, `externalId`), alone or joined by `and`: its plan is an index
/// probe whatever the values, so it runs on the lookup connections, which
/// plan a prepared statement once (`super::lookups`).
fn keyed_lookup(query: &ListQuery) -> bool {
    fn keyed(filter: &Filter) -> bool {
        match filter {
            Filter::And(a, b) => keyed(a) && keyed(b),
            _ => eq_on_one_of(filter, &["id", "userName", "externalId"]),
        }
    }
    query.page_token.is_none() && query.filter.as_ref().is_some_and(keyed)
}

/// Whether `filter` is one `eq` comparison of a top-level attribute named
/// in `keys` (case-insensitively, as SCIM attribute names are).
pub(super) fn eq_on_one_of(filter: &Filter, keys: &[&str]) -> bool {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            ..
        } => path.sub_attr.is_none() && keys.iter().any(|key| path.name.eq_ignore_ascii_case(key)),
        _ => false,
    }
}

/// Whether `filter` matches at most one row of `table`: an `eq` on a
/// unique key (`id`; a user's `userName`), alone or in an `and`. Such a
/// page needs no `ORDER BY`, whose sort node PostgreSQL would set up for
/// each execution of the statement all the same.
fn at_most_one_row(filter: &Filter, table: ResourceTable) -> bool {
    let unique: &[&str] = match table {
        ResourceTable::Users => &["id", "userName"],
        ResourceTable::Groups => &["id"],
    };
    match filter {
        Filter::And(a, b) => at_most_one_row(a, table) || at_most_one_row(b, table),
        _ => eq_on_one_of(filter, unique),
    }
}

/// Parks `conn` when its statements completed: with a result, or with an
/// answer that nothing matched. Any other error drops it to the pool,
/// which checks it.
fn park_after<T>(conn: Warm<'_>, result: &StoreResult<T>) {
    if matches!(result, Ok(_) | Err(StoreError::NotFound(_))) {
        conn.park();
    }
}

/// Page rows, the total, the next page token and the cursor.
type PageRows = (Vec<PgRow>, i64, Option<String>, Option<Cursor>);

fn build(
    table: ResourceTable,
    columns: &'static str,
    dir: DirectoryId,
    query: &ListQuery,
) -> StoreResult<ListSql> {
    let name = table.name();
    let mut args = vec![SqlArg::Text(dir.0.to_string())];
    let mut where_sql = format!("{name}.directory_id = $1::text::uuid");
    if let Some(filter) = &query.filter {
        let cond = to_sql(filter, table, Dialect::Postgres, &mut args)?;
        where_sql.push_str(&format!(" AND {cond}"));
    }
    let where_args = args.len();
    let sort = match &query.sort {
        Some(s) => Some((
            sort_sql(&s.path, table, Dialect::Postgres, &mut args)?,
            s.descending,
        )),
        None => None,
    };
    let fingerprint = sort_fingerprint(query.sort.as_ref());
    Ok(ListSql {
        table,
        columns,
        where_sql,
        args,
        where_args,
        sort,
        fingerprint,
    })
}

/// Runs the count and the page; returns the page rows, the total and the
/// next page token.
async fn run(
    conn: &mut PgConnection,
    sql: &ListSql,
    query: &ListQuery,
) -> StoreResult<(Vec<PgRow>, i64, Option<String>)> {
    let name = sql.table.name();
    let mut args = sql.args.clone();
    let mut where_sql = sql.where_sql.clone();
    let token = query
        .page_token
        .as_deref()
        .map(|token| PageToken::decode_for(token, &sql.fingerprint))
        .transpose()?;
    if let Some(token) = &token {
        where_sql.push_str(&format!(" AND {}", keyset(sql, token, &mut args, name)?));
    }
    let seq = format!("{name}.created_seq");
    let (key_select, order, outer_order) = match &sql.sort {
        Some((key, desc)) => {
            let dir = if *desc { "DESC" } else { "ASC" };
            (
                format!(", {} AS sort_key", key.expr),
                format!("{} {dir}, {seq}", key.expr),
                format!("page.sort_key {dir}, page.created_seq"),
            )
        }
        None => (String::new(), seq.clone(), "page.created_seq".to_owned()),
    };
    let count = query.count.max(0);
    let offset = if token.is_some() {
        0
    } else {
        (query.start_index - 1).max(0)
    };
    args.push(SqlArg::Text((count + 1).to_string()));
    let limit_n = args.len();
    args.push(SqlArg::Text(offset.to_string()));
    let offset_n = args.len();
    let one_row = query
        .filter
        .as_ref()
        .is_some_and(|f| at_most_one_row(f, sql.table));
    let page = PageSql {
        select: format!("{}{}{key_select}", sql.columns, extra_columns(sql.table)),
        name,
        where_sql: &where_sql,
        order: (!one_row).then_some(order.as_str()),
        limit_n,
        offset_n,
    };
    // A search's first page usually holds every match, and then its rows
    // alone prove the total: a plain SELECT, like a hand-written lookup,
    // with a separate count only when the page is full (or empty past the
    // start). Other lists page through many rows, so their total rides
    // along in the page's statement instead of costing a second one.
    let plain = token.is_none() && query.filter.is_some();
    let page_sql = match plain {
        true => page.plain(),
        false => page.with_total(sql, &outer_order, token.is_some()),
    };
    let mut rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(page_sql)), &args)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_db)?;
    let seen = offset + rows.len() as i64;
    let total = match rows.first() {
        Some(_) if plain && rows.len() as i64 <= count => seen,
        // Counted apart, perhaps in a later snapshot: never fewer than seen.
        Some(_) if plain => count_matches(conn, sql, name).await?.max(seen),
        Some(row) => row.try_get("total_count").map_err(map_db)?,
        // Past the end, or nothing matches: only a separate count can tell.
        None if offset > 0 || token.is_some() => count_matches(conn, sql, name).await?,
        None => 0,
    };
    let more = rows.len() as i64 > count;
    rows.truncate(count as usize);
    let next = match (more, rows.last()) {
        (true, Some(last)) => Some(next_token(sql, last)?),
        _ => None,
    };
    Ok((rows, total, next))
}

/// One page's statement, in the two shapes [`run`] chooses from.
struct PageSql<'a> {
    select: String,
    name: &'a str,
    where_sql: &'a str,
    /// None when the filter matches at most one row.
    order: Option<&'a str>,
    limit_n: usize,
    offset_n: usize,
}

impl PageSql<'_> {
    fn plain(&self) -> String {
        let Self {
            select,
            name,
            where_sql,
            order,
            limit_n,
            offset_n,
        } = self;
        let order_by = order.map(|o| format!(" ORDER BY {o}")).unwrap_or_default();
        format!(
            "SELECT {select} FROM {name} WHERE {where_sql}{order_by} \
             LIMIT ${limit_n}::text::bigint OFFSET ${offset_n}::text::bigint"
        )
    }

    /// The page as a CTE and the total beside each row. A page that is not
    /// full already proves the total (offset + its rows), so `count(*)` over
    /// the filter runs only for a full page or after a page token (whose
    /// keyset hides the rows before it): an uncorrelated subquery is an
    /// InitPlan, which PostgreSQL evaluates only when the CASE reaches it.
    fn with_total(&self, sql: &ListSql, outer_order: &str, after_token: bool) -> String {
        let Self {
            name,
            limit_n,
            offset_n,
            ..
        } = self;
        let count_all = format!("(SELECT count(*) FROM {name} WHERE {})", sql.where_sql);
        let total = match after_token {
            true => count_all,
            false => format!(
                "CASE WHEN (SELECT count(*) FROM page) < ${limit_n}::text::bigint \
                 THEN ${offset_n}::text::bigint + (SELECT count(*) FROM page) ELSE {count_all} END"
            ),
        };
        format!(
            "WITH page AS ({}) SELECT page.*, {total} AS total_count FROM page ORDER BY {outer_order}",
            self.plain()
        )
    }
}

/// Columns a page selects besides the resource's own: a user's groups, so
/// that they come in the same statement.
fn extra_columns(table: ResourceTable) -> String {
    match table {
        ResourceTable::Users => format!(", {USER_GROUP_IDS}"),
        ResourceTable::Groups => String::new(),
    }
}

/// A user row's groups, as a column (`group_ids`) of a statement over `users`.
pub(super) const USER_GROUP_IDS: &str = "ARRAY(SELECT m.group_id FROM memberships m \
     WHERE m.member_id = users.id AND m.member_kind = 'user' ORDER BY m.group_id) AS group_ids";

/// Every match of the filter.
async fn count_matches(conn: &mut PgConnection, sql: &ListSql, name: &str) -> StoreResult<i64> {
    let count_sql = format!("SELECT count(*) FROM {name} WHERE {}", sql.where_sql);
    bind_all(
        sqlx::query(sqlx::AssertSqlSafe(count_sql)),
        &sql.args[..sql.where_args],
    )
    .fetch_one(conn)
    .await
    .map_err(map_db)?
    .try_get(0)
    .map_err(map_db)
}

/// The keyset condition "after the token's row" in (sort key, created_seq) order.
fn keyset(
    sql: &ListSql,
    token: &PageToken,
    args: &mut Vec<SqlArg>,
    name: &str,
) -> StoreResult<String> {
    args.push(SqlArg::Text(token.seq.to_string()));
    let seq_n = args.len();
    let seq = format!("{name}.created_seq > ${seq_n}::text::bigint");
    let Some((key, desc)) = &sql.sort else {
        return Ok(seq);
    };
    let bad = crate::page_token::malformed;
    let value = token.key.as_ref().ok_or_else(bad)?;
    let (arg, cast) = match key.ty {
        SortType::Text => (
            SqlArg::Text(value.as_str().ok_or_else(bad)?.to_string()),
            "text",
        ),
        SortType::Bool => (SqlArg::Bool(value.as_bool().ok_or_else(bad)?), "boolean"),
        SortType::Timestamp => {
            let at: DateTime<Utc> = value
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            (SqlArg::Timestamp(at), "timestamptz")
        }
    };
    args.push(arg);
    let k = format!("${}::{cast}", args.len());
    let cmp = if *desc { "<" } else { ">" };
    Ok(format!(
        "({expr} {cmp} {k} OR ({expr} = {k} AND {seq}))",
        expr = key.expr
    ))
}

fn next_token(sql: &ListSql, last: &PgRow) -> StoreResult<String> {
    let seq: i64 = last.try_get("created_seq").map_err(map_db)?;
    let sort = sql.sort.as_ref().map(|(key, _)| key.ty);
    PageToken::continuing(&sql.fingerprint, seq, sort, |ty| sort_value(last, ty))
}

/// The last row's sort key as a token carries it (timestamps in RFC 3339
/// with microseconds, so the next page's bound compares exactly).
fn sort_value(row: &PgRow, ty: SortType) -> StoreResult<serde_json::Value> {
    let value = match ty {
        SortType::Text => row.try_get::<String, _>("sort_key").map(Into::into),
        SortType::Bool => row.try_get::<bool, _>("sort_key").map(Into::into),
        SortType::Timestamp => row.try_get::<DateTime<Utc>, _>("sort_key").map(|at| {
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into()
        }),
    };
    value.map_err(map_db)
}

/// Binds the translated filter's values in placeholder order.
pub(super) fn bind_all<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    args: &[SqlArg],
) -> Query<'q, Postgres, PgArguments> {
    for arg in args {
        query = match arg.clone() {
            SqlArg::Text(v) => query.bind(v),
            SqlArg::Bool(v) => query.bind(v),
            SqlArg::Number(n) => query.bind(n.to_string()),
            SqlArg::Timestamp(v) => query.bind(v),
            SqlArg::TextArray(v) => query.bind(v),
        };
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(filter: &str) -> ListQuery {
        ListQuery {
            filter: Some(roster_scim::filter::parse(filter).unwrap()),
            ..ListQuery::default()
        }
    }

    #[test]
    fn only_eq_on_lookup_keys_counts_as_a_keyed_lookup() {
        for keyed in [
            r#"userName eq "a""#,
            r#"externalId eq "x""#,
            r#"USERNAME eq "a" and id eq "b""#,
        ] {
            assert!(keyed_lookup(&search(keyed)), "{keyed}");
        }
        for not_keyed in [
            r#"userName sw "a""#,
            r#"userName eq "a" or externalId eq "x""#,
            r#"emails.value eq "a@example.com""#,
            r#"active eq true"#,
            r#"not (userName eq "a")"#,
        ] {
            assert!(!keyed_lookup(&search(not_keyed)), "{not_keyed}");
        }
        let mut after_token = search(r#"userName eq "a""#);
        after_token.page_token = Some("t".into());
        assert!(!keyed_lookup(&after_token));
        assert!(!keyed_lookup(&ListQuery::default()));
    }

    #[test]
    fn an_eq_on_a_unique_key_matches_at_most_one_row() {
        let one = |f: &str, t| at_most_one_row(search(f).filter.as_ref().unwrap(), t);
        assert!(one(r#"userName eq "a""#, ResourceTable::Users));
        assert!(one(r#"id eq "b""#, ResourceTable::Groups));
        assert!(one(
            r#"externalId eq "x" and USERNAME eq "a""#,
            ResourceTable::Users
        ));
        assert!(!one(r#"externalId eq "x""#, ResourceTable::Users));
        assert!(!one(r#"userName eq "a""#, ResourceTable::Groups));
        assert!(!one(
            r#"userName eq "a" or id eq "b""#,
            ResourceTable::Users
        ));
        assert!(!one(r#"name.givenName eq "a""#, ResourceTable::Users));
        assert!(!one(r#"userName sw "a""#, ResourceTable::Users));
    }
}
