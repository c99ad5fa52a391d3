//! Paginated, filtered lists of users and groups.
//!
//! Every page is read in one read transaction together with the change-log
//! head, so `Page::cursor` says exactly which changes the page reflects.
//! Without a sort key, rows come in creation order (`created_seq`, never reused) and
//! `next_page_token` is a keyset position: rows inserted or deleted between
//! pages neither repeat nor skip existing rows.

use async_trait::async_trait;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Row, Sqlite, Transaction};

use super::SqliteStore;
use super::changes::read_bounds;
use super::codec::id_text;
use super::errors::{map_db, map_list_error};
use super::groups::{GROUP_COLUMNS, decode_group, load_group};
use super::users::{USER_COLUMNS, attach_group_ids, decode_user, load_user};
use crate::error::{StoreError, StoreResult};
use crate::filter_sql::{
    self, Dialect, ResourceTable, SortKey, SortType, SqlArg, sqlite_timestamp,
};
use crate::members;
use crate::model::*;
use crate::page_token::{PageToken, malformed};
use crate::write::{GroupRead, MemberPage, Reads};

/// The columns a page of `table` selects.
fn columns(table: ResourceTable) -> &'static str {
    match table {
        ResourceTable::Users => USER_COLUMNS,
        ResourceTable::Groups => GROUP_COLUMNS,
    }
}

/// One page of rows plus what the page needs besides them.
struct RawPage {
    rows: Vec<SqliteRow>,
    total: i64,
    next_page_token: Option<String>,
    cursor: Cursor,
}

impl RawPage {
    /// The rows, each decoded by `decode`.
    fn decode<T>(&self, decode: fn(&SqliteRow) -> StoreResult<T>) -> StoreResult<Vec<T>> {
        self.rows.iter().map(decode).collect()
    }

    /// The page of `items`, the rows as decoded and completed.
    fn with<T>(self, items: Vec<T>) -> Page<T> {
        Page {
            items,
            total: self.total,
            next_page_token: self.next_page_token,
            cursor: Some(self.cursor),
        }
    }
}

#[async_trait]
impl Reads for SqliteStore {
    async fn get_user(&self, dir: DirectoryId, id: UserId) -> StoreResult<User> {
        load_user(&mut *self.read_conn().await?, dir, id).await
    }

    async fn list_users(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<User>> {
        let mut tx = self.read_tx().await?;
        let page = read_page(&mut tx, ResourceTable::Users, dir, query).await?;
        let mut users = page.decode(decode_user)?;
        attach_group_ids(&mut tx, &mut users).await?;
        Ok(page.with(users))
    }

    async fn get_group(&self, dir: DirectoryId, id: GroupId, members: bool) -> StoreResult<Group> {
        let mut tx = self.read_tx().await?;
        let mut group = load_group(&mut tx, dir, id).await?;
        if members {
            group.members = Some(members::page(&mut *tx, id, None, i64::MAX).await?);
        }
        Ok(group)
    }

    /// Reads the group in a read transaction of the snapshot pool (a slow
    /// consumer must not hold an ordinary reader) and leaves the transaction
    /// to the member stream, which ends it after the last page.
    async fn read_group(&self, dir: DirectoryId, id: GroupId, page_size: i64) -> GroupRead {
        let mut tx = self.snapshots.begin().await.map_err(map_db)?;
        let group = load_group(&mut tx, dir, id).await?;
        Ok((group, members::stream(tx, id, page_size)))
    }

    async fn list_members(&self, dir: DirectoryId, page: MemberPage) -> StoreResult<Vec<Member>> {
        let mut tx = self.read_tx().await?;
        load_group(&mut tx, dir, page.group).await?;
        members::page(&mut *tx, page.group, page.after, page.limit).await
    }

    async fn list_groups(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<Group>> {
        let mut tx = self.read_tx().await?;
        let page = read_page(&mut tx, ResourceTable::Groups, dir, query).await?;
        let mut groups = page.decode(decode_group)?;
        if query.include_members {
            let ids = groups_within_member_budget(&groups);
            for group in groups.iter_mut().filter(|g| ids.contains(&g.id.0)) {
                group.members = Some(members::page(&mut *tx, group.id, None, i64::MAX).await?);
            }
        }
        Ok(page.with(groups))
    }
}

async fn read_page(
    tx: &mut Transaction<'static, Sqlite>,
    table: ResourceTable,
    dir: DirectoryId,
    query: &ListQuery,
) -> StoreResult<RawPage> {
    let plan = ListPlan::new(table, dir, query)?;
    // The head first: it opens the read snapshot the rows come from.
    let cursor = super::changes::snapshot_cursor(&read_bounds(tx).await?);
    let total = plan.count(tx).await?;
    if query.count <= 0 {
        return Ok(RawPage {
            rows: Vec::new(),
            total,
            next_page_token: None,
            cursor,
        });
    }
    let mut rows = plan.rows(tx, query).await?;
    let next_page_token = if rows.len() as i64 > query.count {
        rows.truncate(query.count as usize);
        rows.last().map(|row| plan.token_after(row)).transpose()?
    } else {
        None
    };
    Ok(RawPage {
        rows,
        total,
        next_page_token,
        cursor,
    })
}

/// The SQL of one list query: the filter and the sort key, translated once.
struct ListPlan {
    table: ResourceTable,
    /// `directory_id = ?1 [AND (filter)]`.
    condition: String,
    sort: Option<(SortKey, bool)>,
    fingerprint: String,
    args: Vec<SqlArg>,
}

impl ListPlan {
    fn new(table: ResourceTable, dir: DirectoryId, query: &ListQuery) -> StoreResult<Self> {
        let name = table.name();
        let mut args = vec![SqlArg::Text(id_text(dir.0))];
        let mut condition = format!("{name}.directory_id = ?1");
        if let Some(filter) = &query.filter {
            let sql = filter_sql::to_sql(filter, table, Dialect::Sqlite, &mut args)?;
            condition = format!("{condition} AND COALESCE({sql}, FALSE)");
        }
        let sort = match &query.sort {
            Some(sort) => Some((
                filter_sql::sort_sql(&sort.path, table, Dialect::Sqlite, &mut args)?,
                sort.descending,
            )),
            None => None,
        };
        Ok(Self {
            table,
            condition,
            sort,
            fingerprint: filter_sql::sort_fingerprint(query.sort.as_ref()),
            args,
        })
    }

    async fn count(&self, tx: &mut Transaction<'static, Sqlite>) -> StoreResult<i64> {
        let sql = format!(
            "SELECT count(*) FROM {name} WHERE {}",
            self.condition,
            name = self.table.name()
        );
        let mut args = SqliteArguments::default();
        bind_all(&mut args, &self.args)?;
        sqlx::query_scalar_with(sqlx::AssertSqlSafe(sql), args)
            .fetch_one(&mut **tx)
            .await
            .map_err(map_list_error)
    }

    /// Up to `count + 1` rows: the extra row tells whether a next page exists.
    async fn rows(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        query: &ListQuery,
    ) -> StoreResult<Vec<SqliteRow>> {
        let name = self.table.name();
        let mut args = self.args.clone();
        let mut condition = self.condition.clone();
        let offset = match &query.page_token {
            Some(token) => {
                condition = format!(
                    "{condition} AND {}",
                    self.after_token(&PageToken::decode_for(token, &self.fingerprint)?, &mut args)?
                );
                0
            }
            None => (query.start_index - 1).max(0),
        };
        let (key, order) = match &self.sort {
            Some((key, descending)) => {
                let direction = if *descending { "DESC" } else { "ASC" };
                (
                    key.expr.clone(),
                    format!("sort_key {direction}, {name}.created_seq"),
                )
            }
            None => ("NULL".to_owned(), format!("{name}.created_seq")),
        };
        let n = args.len();
        let sql = format!(
            "SELECT {columns}, {name}.created_seq AS seq, {key} AS sort_key FROM {name} WHERE {condition} \
             ORDER BY {order} LIMIT ?{limit} OFFSET ?{offset_arg}",
            columns = columns(self.table),
            limit = n + 1,
            offset_arg = n + 2,
        );
        let mut bound = SqliteArguments::default();
        bind_all(&mut bound, &args)?;
        bound
            .add(query.count.saturating_add(1))
            .map_err(bind_error)?;
        bound.add(offset).map_err(bind_error)?;
        sqlx::query_with(sqlx::AssertSqlSafe(sql), bound)
            .fetch_all(&mut **tx)
            .await
            .map_err(map_list_error)
    }

    /// The keyset condition "after the token's row" in this plan's order:
    /// by sort key (in its direction), then by creation sequence.
    fn after_token(&self, token: &PageToken, args: &mut Vec<SqlArg>) -> StoreResult<String> {
        let seq_column = format!("{}.created_seq", self.table.name());
        args.push(SqlArg::Number(token.seq.into()));
        let seq = format!("?{}", args.len());
        let Some((key, descending)) = &self.sort else {
            return Ok(format!("{seq_column} > {seq}"));
        };
        let value = match &token.key {
            Some(serde_json::Value::String(s)) => SqlArg::Text(s.clone()),
            Some(serde_json::Value::Number(n)) => SqlArg::Number(n.clone()),
            _ => return Err(malformed()),
        };
        args.push(value);
        let value = format!("?{}", args.len());
        let beyond = if *descending { "<" } else { ">" };
        let expr = &key.expr;
        Ok(format!(
            "({expr} {beyond} {value} OR ({expr} = {value} AND {seq_column} > {seq}))"
        ))
    }

    /// The token continuing after `row` (the last row of a page).
    fn token_after(&self, row: &SqliteRow) -> StoreResult<String> {
        let seq: i64 = row.try_get("seq").map_err(map_db)?;
        let sort = self.sort.as_ref().map(|(key, _)| key.ty);
        PageToken::continuing(&self.fingerprint, seq, sort, |ty| sort_value(row, ty))
    }
}

/// The last row's sort key as stored: booleans are integers here, and
/// timestamps are already RFC 3339 text.
fn sort_value(row: &SqliteRow, ty: SortType) -> StoreResult<serde_json::Value> {
    let value = if ty == SortType::Bool {
        row.try_get::<i64, _>("sort_key").map(Into::into)
    } else {
        row.try_get::<String, _>("sort_key").map(Into::into)
    };
    value.map_err(map_db)
}

/// Binds filter values in placeholder order (`?1`, `?2`, ...).
fn bind_all(bound: &mut SqliteArguments, args: &[SqlArg]) -> StoreResult<()> {
    for arg in args {
        match arg {
            SqlArg::Text(s) => bound.add(s.clone()),
            SqlArg::Bool(b) => bound.add(*b),
            SqlArg::Number(n) => match n.as_i64() {
                Some(i) => bound.add(i),
                None => bound.add(n.as_f64().unwrap_or(f64::NAN)),
            },
            SqlArg::Timestamp(t) => bound.add(sqlite_timestamp(*t)),
            SqlArg::TextArray(_) => {
                return Err(StoreError::Internal(
                    "text arrays have no SQLite binding".into(),
                ));
            }
        }
        .map_err(bind_error)?;
    }
    Ok(())
}

fn bind_error(e: sqlx::error::BoxDynError) -> StoreError {
    StoreError::Internal(format!("cannot bind a list argument: {e}"))
}
