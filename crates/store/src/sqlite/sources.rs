//! Pulled directories: settings, schedule, sync lease and status. Every
//! write runs on the single writer connection (`BEGIN IMMEDIATE`), so a
//! lease is taken by exactly one caller without row locks.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{Col, id_text, json_text, parse_json, time_text};
use super::errors::map_db;
use super::lease::Leasable;
use crate::error::{StoreError, StoreResult};
use crate::model::DirectoryId;
use crate::rows;
use crate::sources::*;
use crate::write::{Backend, Sources};

const COLUMNS: &str = "directory_id, kind, settings, credentials, interval_secs, \
     mass_delete_percent, status, confirmed, next_run_at, lease_owner, lease_until, updated_at";

const WHAT: &str = "directory source";

/// Pulled directories, leased for syncing.
const SOURCES: Leasable = Leasable {
    table: "directory_sources",
    key: "directory_id",
    columns: COLUMNS,
};

#[async_trait]
impl Sources for SqliteStore {
    async fn put_source(
        &self,
        dir: DirectoryId,
        s: SourceSettings,
    ) -> StoreResult<DirectorySource> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "INSERT INTO directory_sources (directory_id, kind, settings, credentials, \
               interval_secs, mass_delete_percent, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (directory_id) DO UPDATE SET kind = ?2, settings = ?3, \
               credentials = ?4, interval_secs = ?5, mass_delete_percent = ?6, updated_at = ?7 \
             RETURNING {COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(dir.0))
            .bind(s.kind.as_str())
            .bind(json_text(&s.settings)?)
            .bind(&s.sealed_credentials)
            .bind(s.interval_secs)
            .bind(s.mass_delete_percent)
            .bind(time_text(tx.now));
        let put = rows::one(query, tx.conn(), WHAT, decode).await?;
        self.commit(tx).await?;
        Ok(put)
    }

    async fn get_source(&self, dir: DirectoryId) -> StoreResult<DirectorySource> {
        let sql = format!("SELECT {COLUMNS} FROM directory_sources WHERE directory_id = ?");
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id_text(dir.0));
        rows::one(query, &self.readers, WHAT, decode).await
    }

    async fn list_sources(&self) -> StoreResult<Vec<DirectorySource>> {
        let sql = format!("SELECT {COLUMNS} FROM directory_sources ORDER BY directory_id");
        rows::all(sqlx::query(sqlx::AssertSqlSafe(sql)), &self.readers, decode).await
    }

    async fn schedule_sync(&self, dir: DirectoryId, confirm: bool) -> StoreResult<DirectorySource> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE directory_sources SET next_run_at = ?2, confirmed = confirmed OR ?3, \
               updated_at = ?2 \
             WHERE directory_id = ?1 RETURNING {COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(dir.0))
            .bind(time_text(tx.now))
            .bind(confirm);
        let scheduled = rows::one(query, tx.conn(), WHAT, decode).await?;
        self.commit(tx).await?;
        Ok(scheduled)
    }

    async fn acquire_sync_lease(
        &self,
        dir: DirectoryId,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Option<DirectorySource>> {
        self.take_lease(&SOURCES, dir.0, owner, ttl, decode).await
    }

    async fn release_sync_lease(&self, dir: DirectoryId, owner: &str) -> StoreResult<()> {
        self.release_lease(&SOURCES, dir.0, owner).await
    }

    async fn record_sync(
        &self,
        dir: DirectoryId,
        owner: &str,
        record: &SyncRecord,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // A "sync now" that arrived during the run is kept (see PostgreSQL's).
        let done = sqlx::query(
            "UPDATE directory_sources SET status = ?3, \
               next_run_at = CASE WHEN next_run_at > ?5 AND next_run_at <= ?7 \
                 THEN next_run_at ELSE ?4 END, \
               confirmed = confirmed AND NOT ?6, updated_at = ?7 \
             WHERE directory_id = ?1 AND lease_owner = ?2 AND lease_until >= ?7",
        )
        .bind(id_text(dir.0))
        .bind(owner)
        .bind(json_text(&record.status)?)
        .bind(time_text(record.next_run_at))
        .bind(record.status.last_started_at.map(time_text))
        .bind(record.used_confirmation)
        .bind(time_text(tx.now))
        .execute(tx.conn())
        .await
        .map_err(map_db)?;
        self.commit(tx).await?;
        Ok(done.rows_affected() == 1)
    }
}

fn decode(row: &SqliteRow) -> StoreResult<DirectorySource> {
    let credentials: Option<Vec<u8>> = row
        .try_get("credentials")
        .map_err(|e| StoreError::Internal(format!("cannot decode column credentials: {e}")))?;
    Ok(DirectorySource {
        directory_id: DirectoryId(row.id("directory_id")?),
        settings: SourceSettings {
            kind: row.text("kind")?.parse().map_err(StoreError::Internal)?,
            settings: parse_json(&row.text("settings")?)?,
            sealed_credentials: credentials,
            interval_secs: row.int("interval_secs")?,
            mass_delete_percent: i32::try_from(row.int("mass_delete_percent")?).unwrap_or(i32::MAX),
        },
        status: parse_json(&row.text("status")?)?,
        confirmed: row.int("confirmed")? != 0,
        next_run_at: row.opt_time("next_run_at")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_until: row.opt_time("lease_until")?,
        updated_at: row.time("updated_at")?,
    })
}
