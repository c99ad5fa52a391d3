//! Pulled directories: settings, schedule, sync lease and status.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::errors::map_db;
use super::lease::Leasable;
use crate::error::{StoreError, StoreResult};
use crate::model::DirectoryId;
use crate::rows;
use crate::sources::*;
use crate::write::Sources;

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
impl Sources for PgStore {
    async fn put_source(
        &self,
        dir: DirectoryId,
        s: SourceSettings,
    ) -> StoreResult<DirectorySource> {
        let sql = format!(
            "INSERT INTO directory_sources \
               (directory_id, kind, settings, credentials, interval_secs, mass_delete_percent) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (directory_id) DO UPDATE SET kind = $2, settings = $3, \
               credentials = $4, interval_secs = $5, mass_delete_percent = $6, updated_at = now() \
             RETURNING {COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dir.0)
            .bind(s.kind.as_str())
            .bind(json(&s.settings)?)
            .bind(&s.sealed_credentials)
            .bind(s.interval_secs)
            .bind(s.mass_delete_percent);
        rows::one(query, &self.pool, WHAT, decode).await
    }

    async fn get_source(&self, dir: DirectoryId) -> StoreResult<DirectorySource> {
        let sql = format!("SELECT {COLUMNS} FROM directory_sources WHERE directory_id = $1");
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(dir.0);
        rows::one(query, &self.pool, WHAT, decode).await
    }

    async fn list_sources(&self) -> StoreResult<Vec<DirectorySource>> {
        let sql = format!("SELECT {COLUMNS} FROM directory_sources ORDER BY directory_id");
        rows::all(sqlx::query(sqlx::AssertSqlSafe(sql)), &self.pool, decode).await
    }

    async fn schedule_sync(&self, dir: DirectoryId, confirm: bool) -> StoreResult<DirectorySource> {
        let sql = format!(
            "UPDATE directory_sources SET next_run_at = now(), confirmed = confirmed OR $2, \
               updated_at = now() \
             WHERE directory_id = $1 RETURNING {COLUMNS}"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dir.0)
            .bind(confirm);
        rows::one(query, &self.pool, WHAT, decode).await
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
        // A "sync now" that arrived during the run (next_run_at set between
        // the run's start and now) is kept rather than overwritten.
        let done = sqlx::query(
            "UPDATE directory_sources SET status = $3, \
               next_run_at = CASE WHEN next_run_at > $5 AND next_run_at <= now() \
                 THEN next_run_at ELSE $4 END, \
               confirmed = confirmed AND NOT $6, updated_at = now() \
             WHERE directory_id = $1 AND lease_owner = $2 AND lease_until >= now()",
        )
        .bind(dir.0)
        .bind(owner)
        .bind(json(&record.status)?)
        .bind(record.next_run_at)
        .bind(record.status.last_started_at)
        .bind(record.used_confirmation)
        .execute(&self.pool)
        .await
        .map_err(map_db)?;
        Ok(done.rows_affected() == 1)
    }
}

fn json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Internal(format!("cannot encode JSON: {e}")))
}

fn decode(row: &PgRow) -> StoreResult<DirectorySource> {
    let get = |e| map_db(e);
    let kind: String = row.try_get("kind").map_err(get)?;
    let settings: String = row.try_get("settings").map_err(get)?;
    let status: String = row.try_get("status").map_err(get)?;
    let bad = |e: serde_json::Error| StoreError::Internal(format!("bad stored JSON: {e}"));
    Ok(DirectorySource {
        directory_id: DirectoryId(row.try_get("directory_id").map_err(get)?),
        settings: SourceSettings {
            kind: kind.parse().map_err(StoreError::Internal)?,
            settings: serde_json::from_str(&settings).map_err(bad)?,
            sealed_credentials: row.try_get("credentials").map_err(get)?,
            interval_secs: row.try_get("interval_secs").map_err(get)?,
            mass_delete_percent: row.try_get("mass_delete_percent").map_err(get)?,
        },
        status: serde_json::from_str(&status).map_err(bad)?,
        confirmed: row.try_get("confirmed").map_err(get)?,
        next_run_at: row.try_get("next_run_at").map_err(get)?,
        lease_owner: row.try_get("lease_owner").map_err(get)?,
        lease_until: row.try_get("lease_until").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}
