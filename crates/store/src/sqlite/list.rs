//! Paginated, filtered lists of users and groups.
//!
//! Every page is read in one read transaction together with the change-log
//! head, so `Page::cursor` says exactly which changes the page reflects.
//! Without a sort key, rows come in creation order (`seq`, never reused) and
//! `next_page_token` is a keyset position: rows inserted or deleted between
//! pages neither repeat nor skip existing rows.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use super::codec::id_text;
use super::errors::map_sqlx;
use super::groups::{GROUP_COLUMNS, decode_group, members_of};
use super::log::read_bounds;
use super::users::{USER_COLUMNS, decode_user, group_ids_of};
use crate::error::{StoreError, StoreResult};
use crate::model::*;

/// The listable tables.
#[derive(Debug, Clone, Copy)]
enum Table {
    Users,
    Groups,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Groups => "groups",
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Self::Users => USER_COLUMNS,
            Self::Groups => GROUP_COLUMNS,
        }
    }
}

/// Where the next page starts: after the row with this creation sequence.
#[derive(Debug, Serialize, Deserialize)]
struct PageToken {
    seq: i64,
}

impl PageToken {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> StoreResult<Self> {
        URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| StoreError::Invalid("malformed page token".into()))
    }
}

/// One page of rows plus what the page needs besides them.
struct RawPage {
    rows: Vec<SqliteRow>,
    total: i64,
    next_page_token: Option<String>,
    cursor: Cursor,
}

impl SqliteStore {
    pub(super) async fn list_users_impl(
        &self,
        dir: DirectoryId,
        query: &ListQuery,
    ) -> StoreResult<Page<User>> {
        let mut tx = self.read_tx().await?;
        let page = read_page(&mut tx, Table::Users, dir, query).await?;
        let mut users = Vec::with_capacity(page.rows.len());
        for row in &page.rows {
            let mut user = decode_user(row)?;
            user.group_ids = group_ids_of(&mut tx, user.id).await?;
            users.push(user);
        }
        Ok(Page {
            items: users,
            total: page.total,
            next_page_token: page.next_page_token,
            cursor: page.cursor,
        })
    }

    pub(super) async fn list_groups_impl(
        &self,
        dir: DirectoryId,
        query: &ListQuery,
    ) -> StoreResult<Page<Group>> {
        let mut tx = self.read_tx().await?;
        let page = read_page(&mut tx, Table::Groups, dir, query).await?;
        let mut groups = Vec::with_capacity(page.rows.len());
        for row in &page.rows {
            let mut group = decode_group(row)?;
            if query.include_members {
                group.members = Some(members_of(&mut tx, group.id, None, i64::MAX).await?);
            }
            groups.push(group);
        }
        Ok(Page {
            items: groups,
            total: page.total,
            next_page_token: page.next_page_token,
            cursor: page.cursor,
        })
    }
}

async fn read_page(
    tx: &mut Transaction<'static, Sqlite>,
    table: Table,
    dir: DirectoryId,
    query: &ListQuery,
) -> StoreResult<RawPage> {
    if query.filter.is_some() || query.sort.is_some() {
        return Err(StoreError::InvalidFilter(
            "filters and sorting are not supported yet".into(),
        ));
    }
    // The head first: it opens the read snapshot the rows come from.
    let head = read_bounds(tx).await?.stable_head;
    let cursor = Cursor {
        after: head,
        also_seen: Vec::new(),
    };
    let name = table.name();
    let dir = id_text(dir.0);
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {name} WHERE {name}.directory_id = ?"
    )))
    .bind(&dir)
    .fetch_one(&mut **tx)
    .await
    .map_err(map_sqlx)?;
    if query.count <= 0 {
        return Ok(RawPage {
            rows: Vec::new(),
            total,
            next_page_token: None,
            cursor,
        });
    }
    let (after_seq, offset) = match &query.page_token {
        Some(token) => (PageToken::decode(token)?.seq, 0),
        None => (0, (query.start_index - 1).max(0)),
    };
    let sql = format!(
        "SELECT {columns}, {name}.seq AS seq FROM {name} WHERE {name}.directory_id = ? AND {name}.seq > ? \
         ORDER BY {name}.seq LIMIT ? OFFSET ?",
        columns = table.columns()
    );
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&dir)
        .bind(after_seq)
        // One row more than asked for tells whether a next page exists.
        .bind(query.count.saturating_add(1))
        .bind(offset)
        .fetch_all(&mut **tx)
        .await
        .map_err(map_sqlx)?;
    let next_page_token = if rows.len() as i64 > query.count {
        rows.truncate(query.count as usize);
        let last = rows
            .last()
            .map(|row| sqlx::Row::try_get::<i64, _>(row, "seq"))
            .transpose()
            .map_err(map_sqlx)?;
        last.map(|seq| PageToken { seq }.encode())
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
