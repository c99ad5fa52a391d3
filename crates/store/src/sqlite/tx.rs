//! The write transaction: `BEGIN IMMEDIATE` on the single writer connection,
//! plus the change-log events it will append when it commits.

use chrono::{DateTime, Utc};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use super::codec::{id_text, json_text, now, time_text};
use super::errors::map_sqlx;
use crate::error::StoreResult;
use crate::model::{ChangeKind, DirectoryId, FieldChange};

/// A change-log event waiting for its revision.
#[derive(Debug)]
pub(crate) struct Event {
    pub directory_id: DirectoryId,
    pub kind: ChangeKind,
    pub resource_id: Uuid,
    pub version: i64,
    pub payload: serde_json::Value,
    pub changed_fields: Vec<FieldChange>,
}

/// An open write transaction. Events are buffered and get their revisions in
/// [`WriteTx::commit`], as the last statements before `COMMIT`: with one
/// writer at a time this makes revisions dense and in commit order.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    /// The time of every row and event written by this transaction.
    pub now: DateTime<Utc>,
    events: Vec<Event>,
}

impl WriteTx {
    /// Starts a write transaction. `BEGIN IMMEDIATE` takes the write lock up
    /// front, so a transaction never has to upgrade a read lock (which fails
    /// with SQLITE_BUSY instead of waiting).
    pub(crate) async fn begin(writer: &sqlx::SqlitePool) -> StoreResult<Self> {
        let tx = writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_sqlx)?;
        Ok(Self {
            tx,
            now: now(),
            events: Vec::new(),
        })
    }

    /// The connection to run statements on.
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// Queues a change-log event.
    pub(crate) fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Queues a change-log event before the events queued since
    /// [`WriteTx::queued`] returned `position` (e.g. `group.created` ahead of
    /// its `member.added` events, with the final member count).
    pub(crate) fn emit_at(&mut self, position: usize, event: Event) {
        self.events.insert(position, event);
    }

    /// How many events are queued: a position for [`WriteTx::emit_at`].
    pub(crate) fn queued(&self) -> usize {
        self.events.len()
    }

    /// Appends the queued events and commits. Returns the new head revision
    /// when events were written.
    pub(crate) async fn commit(mut self) -> StoreResult<Option<i64>> {
        let head = self.append_events().await?;
        self.tx.commit().await.map_err(map_sqlx)?;
        Ok(head)
    }

    async fn append_events(&mut self) -> StoreResult<Option<i64>> {
        if self.events.is_empty() {
            return Ok(None);
        }
        let count = self.events.len() as i64;
        let head: i64 =
            sqlx::query_scalar("UPDATE log_state SET head = head + ? WHERE id = 1 RETURNING head")
                .bind(count)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(map_sqlx)?;
        let occurred_at = time_text(self.now);
        let events = std::mem::take(&mut self.events);
        for (revision, event) in (head - count + 1..).zip(events) {
            sqlx::query(
                "INSERT INTO changes (revision, event_id, directory_id, kind, resource_id, version, \
                 occurred_at, payload, changed_fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(revision)
            .bind(id_text(Uuid::new_v4()))
            .bind(id_text(event.directory_id.0))
            .bind(event.kind.as_str())
            .bind(id_text(event.resource_id))
            .bind(event.version)
            .bind(&occurred_at)
            .bind(json_text(&event.payload)?)
            .bind(json_text(&event.changed_fields)?)
            .execute(&mut *self.tx)
            .await
            .map_err(map_sqlx)?;
        }
        Ok(Some(head))
    }
}
