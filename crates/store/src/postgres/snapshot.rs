//! Initial-state snapshots: users, then groups, then memberships of one
//! directory (or all), read in chunks from one REPEATABLE READ transaction
//! held by a task that feeds a bounded channel, so a million rows are never
//! in memory at once and a slow consumer slows the reads down. The
//! transaction runs on the capped snapshot pool, never on the pool of
//! writes (`crate::snapshot_slots`).

use futures::stream::{self, BoxStream, StreamExt};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Transaction};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::PgStore;
use super::errors::map_db;
use super::groups::{GROUP_COLUMNS, decode_group};
use super::users::{USER_COLUMNS, attach_group_ids, decode_user};
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::snapshot_slots::holding;
use crate::write::parse_member_kind;
use sqlx::Row;

/// Rows per query.
const CHUNK: i64 = 500;
/// Items buffered between the reading task and the consumer.
const BUFFER: usize = 1024;

type Items = mpsc::Sender<StoreResult<SnapshotItem>>;

impl PgStore {
    pub(super) async fn open_snapshot(
        &self,
        dir: Option<DirectoryId>,
    ) -> StoreResult<(Cursor, BoxStream<'static, StoreResult<SnapshotItem>>)> {
        let slot = self.snapshot_slots.take()?;
        let mut tx = self
            .snapshots
            .begin_with(super::lists::BEGIN_SNAPSHOT)
            .await
            .map_err(map_db)?;
        let cursor = self.snapshot_cursor(&mut tx).await?;
        let (items_tx, items_rx) = mpsc::channel(BUFFER);
        let task_slot = slot.clone();
        tokio::spawn(async move {
            if let Err(e) = stream_all(tx, dir, &items_tx).await {
                let _ = items_tx.send(Err(e)).await;
            }
            drop(task_slot);
        });
        let items = stream::unfold(items_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok((cursor, holding(items.boxed(), slot)))
    }
}

/// Sends every item; stops early (without error) when the consumer is gone.
async fn stream_all(
    mut tx: Transaction<'static, Postgres>,
    dir: Option<DirectoryId>,
    out: &Items,
) -> StoreResult<()> {
    let dir = dir.map(|d| d.0);
    let users = ("users", USER_COLUMNS);
    if !stream_in_creation_order(&mut tx, users, dir, out, user_items).await? {
        return Ok(());
    }
    let groups = ("groups", GROUP_COLUMNS);
    if !stream_in_creation_order(&mut tx, groups, dir, out, group_items).await? {
        return Ok(());
    }
    stream_memberships(&mut tx, dir, out).await?;
    tx.commit().await.map_err(map_db)
}

/// Returns false when the consumer went away.
async fn send_all(out: &Items, items: Vec<SnapshotItem>) -> bool {
    for item in items {
        if out.send(Ok(item)).await.is_err() {
            return false;
        }
    }
    true
}

/// Streams `table` (users or groups) of `dir` in creation order, [`CHUNK`]
/// rows per query, each chunk's rows made into items by `items`. Returns
/// false when the consumer went away.
async fn stream_in_creation_order(
    tx: &mut Transaction<'static, Postgres>,
    (table, columns): (&str, &str),
    dir: Option<Uuid>,
    out: &Items,
    mut items: impl AsyncFnMut(&mut PgConnection, &[PgRow]) -> StoreResult<Vec<SnapshotItem>>,
) -> StoreResult<bool> {
    let sql = format!(
        "SELECT {columns} FROM {table} WHERE ($1::uuid IS NULL OR {table}.directory_id = $1) \
         AND {table}.created_seq > $2 ORDER BY {table}.created_seq LIMIT $3"
    );
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(dir)
            .bind(after)
            .bind(CHUNK)
            .fetch_all(&mut **tx)
            .await
            .map_err(map_db)?;
        let Some(last) = rows.last() else {
            return Ok(true);
        };
        after = last.try_get("created_seq").map_err(map_db)?;
        let chunk = items(tx, &rows).await?;
        if !send_all(out, chunk).await {
            return Ok(false);
        }
    }
}

/// A chunk of user rows as items, each user with its groups.
async fn user_items(conn: &mut PgConnection, rows: &[PgRow]) -> StoreResult<Vec<SnapshotItem>> {
    let mut users = rows
        .iter()
        .map(decode_user)
        .collect::<StoreResult<Vec<_>>>()?;
    attach_group_ids(conn, &mut users).await?;
    Ok(users.into_iter().map(SnapshotItem::User).collect())
}

/// A chunk of group rows as items (their members follow as memberships).
async fn group_items(_: &mut PgConnection, rows: &[PgRow]) -> StoreResult<Vec<SnapshotItem>> {
    rows.iter()
        .map(|row| decode_group(row).map(SnapshotItem::Group))
        .collect()
}

async fn stream_memberships(
    tx: &mut Transaction<'static, Postgres>,
    dir: Option<Uuid>,
    out: &Items,
) -> StoreResult<bool> {
    let mut after = (Uuid::nil(), Uuid::nil());
    loop {
        let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
            "SELECT group_id, member_id, member_kind FROM memberships \
             WHERE ($1::uuid IS NULL OR directory_id = $1) AND (group_id, member_id) > ($2, $3) \
             ORDER BY group_id, member_id LIMIT $4",
        )
        .bind(dir)
        .bind(after.0)
        .bind(after.1)
        .bind(CHUNK * 4)
        .fetch_all(&mut **tx)
        .await
        .map_err(map_db)?;
        let Some(last) = rows.last() else {
            return Ok(true);
        };
        after = (last.0, last.1);
        let items = rows
            .into_iter()
            .map(|(group, member, kind)| {
                Ok(SnapshotItem::Membership(Membership {
                    group_id: GroupId(group),
                    member_id: member,
                    member_kind: parse_member_kind(&kind)?,
                }))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if !send_all(out, items).await {
            return Ok(false);
        }
    }
}
