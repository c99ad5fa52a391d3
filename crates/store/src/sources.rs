//! Pulled directories: which source a directory is read from, its settings
//! and sealed credentials, the sync schedule, the lease that lets one
//! replica sync it, and the last run's report. The sync itself lives in
//! `roster-connectors`; the store keeps what must survive a crash.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::StoreResult;
use crate::keyed::Keyed;
use crate::model::{DirectoryId, stored_names};
use crate::rows::{Arg, Cols, Dialect, Sql};
use crate::sqlite::codec::json_text;
use crate::write::Backend;

/// Where a directory's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Google Workspace, through the Admin SDK Directory API.
    Google,
    /// A generic LDAP server (OpenLDAP, 389-DS).
    Ldap,
    /// Active Directory over LDAP.
    ActiveDirectory,
}

stored_names! {
    SourceKind, |s| format!("unknown source kind {s:?}");
    Google => "google",
    Ldap => "ldap",
    ActiveDirectory => "active_directory",
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an admin sets on a pulled directory.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSettings {
    pub kind: SourceKind,
    /// The connector's non-secret settings (URL, base DNs, filters…) as JSON.
    pub settings: serde_json::Value,
    /// The connector's secrets (bind password, service-account key), sealed.
    pub sealed_credentials: Option<Vec<u8>>,
    /// Seconds between the end of one sync and the start of the next.
    pub interval_secs: i64,
    /// A sync that would remove or deactivate more than this share of the
    /// directory's users stops before writing and waits for confirmation.
    pub mass_delete_percent: i32,
}

/// The report of the last sync, kept as JSON (admins read it; fields can be
/// added without a migration).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncStatus {
    pub last_started_at: Option<DateTime<Utc>>,
    pub last_finished_at: Option<DateTime<Utc>>,
    pub last_duration_ms: i64,
    pub created: i64,
    pub updated: i64,
    pub removed: i64,
    /// The last run's error, with its cause; `None` after a success.
    pub last_error: Option<String>,
    /// Consecutive failed runs (the backoff exponent).
    pub failures: i32,
    /// Set when the mass-deletion safeguard stopped the sync: why.
    pub needs_confirmation: Option<String>,
    /// Users and groups the last run read from the source.
    pub read: i64,
    /// Whether the last run read only what changed since the previous one.
    pub incremental: bool,
    /// Where the source's next incremental read starts (the connector's
    /// own JSON, e.g. AD's USN watermark); `None`: a full read.
    pub cursor: Option<serde_json::Value>,
}

/// A pulled directory as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectorySource {
    pub directory_id: DirectoryId,
    pub settings: SourceSettings,
    pub status: SyncStatus,
    /// An admin confirmed the removals the safeguard stopped: the next run
    /// writes them anyway (and clears this).
    pub confirmed: bool,
    /// When the next sync is due; `None`: now.
    pub next_run_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// What the lease holder records at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRecord {
    pub status: SyncStatus,
    pub next_run_at: DateTime<Utc>,
    /// Whether the run used the admin's confirmation (it is then cleared).
    pub used_confirmation: bool,
}

const COLUMNS: &str = "directory_id, kind, settings, credentials, interval_secs, \
     mass_delete_percent, status, confirmed, next_run_at, lease_owner, lease_until, updated_at";

const WHAT: &str = "directory source";

/// Pulled directories, leased for syncing.
pub(crate) const SOURCES: Keyed = Keyed {
    table: "directory_sources",
    key: "directory_id",
    columns: COLUMNS,
    what: WHAT,
};

// The statements of both backends (SQLite runs them on its single writer).

pub(crate) async fn put<B: Backend>(
    b: &B,
    dir: DirectoryId,
    s: SourceSettings,
) -> StoreResult<DirectorySource> {
    let sql = format!(
        "INSERT INTO directory_sources (directory_id, kind, settings, credentials, \
           interval_secs, mass_delete_percent, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, {now}) \
         ON CONFLICT (directory_id) DO UPDATE SET kind = $2, settings = $3, \
           credentials = $4, interval_secs = $5, mass_delete_percent = $6, updated_at = {now} \
         RETURNING {COLUMNS}",
        now = B::Db::later(7),
    );
    Sql::new(sql)
        .bind(dir.0)
        .bind(s.kind.as_str())
        .bind(json_text(&s.settings)?)
        .bind(s.sealed_credentials)
        .bind(s.interval_secs)
        .bind(s.mass_delete_percent)
        .bind(Arg::NOW)
        .one(b.writer(), WHAT, decode::<B::Db>)
        .await
}

pub(crate) async fn list<B: Backend>(b: &B) -> StoreResult<Vec<DirectorySource>> {
    let sql = format!("SELECT {COLUMNS} FROM directory_sources ORDER BY directory_id");
    Sql::new(sql).all(b.readers(), decode::<B::Db>).await
}

pub(crate) async fn schedule<B: Backend>(
    b: &B,
    dir: DirectoryId,
    confirm: bool,
) -> StoreResult<DirectorySource> {
    let sql = format!(
        "UPDATE directory_sources SET next_run_at = {now}, confirmed = confirmed OR $2, \
           updated_at = {now} \
         WHERE directory_id = $1 RETURNING {COLUMNS}",
        now = B::Db::later(3),
    );
    let schedule = Sql::new(sql).bind(dir.0).bind(confirm).bind(Arg::NOW);
    schedule.one(b.writer(), WHAT, decode::<B::Db>).await
}

pub(crate) async fn record<B: Backend>(
    b: &B,
    dir: DirectoryId,
    owner: &str,
    record: &SyncRecord,
) -> StoreResult<bool> {
    // A "sync now" that arrived during the run (next_run_at set between
    // the run's start and now) is kept rather than overwritten.
    let sql = format!(
        "UPDATE directory_sources SET status = $3, \
           next_run_at = CASE WHEN next_run_at > $5 AND next_run_at <= {now} \
             THEN next_run_at ELSE $4 END, \
           confirmed = confirmed AND NOT $6, updated_at = {now} \
         WHERE directory_id = $1 AND lease_owner = $2 AND lease_until >= {now}",
        now = B::Db::later(7),
    );
    let done = Sql::new(sql)
        .bind(dir.0)
        .bind(owner)
        .bind(json_text(&record.status)?)
        .bind(record.next_run_at)
        .bind(record.status.last_started_at)
        .bind(record.used_confirmation)
        .bind(Arg::NOW)
        .execute(b.writer())
        .await?;
    Ok(done == 1)
}

/// A row ([`COLUMNS`]) of either backend.
pub(crate) fn decode<DB: Dialect>(row: &DB::Row) -> StoreResult<DirectorySource> {
    let c = Cols::<DB>(row);
    Ok(DirectorySource {
        directory_id: DirectoryId(c.id("directory_id")?),
        settings: SourceSettings {
            kind: c.parsed("kind")?,
            settings: c.json("settings")?,
            sealed_credentials: c.get("credentials")?,
            interval_secs: c.get("interval_secs")?,
            mass_delete_percent: c.get("mass_delete_percent")?,
        },
        status: c.json("status")?,
        confirmed: c.get("confirmed")?,
        next_run_at: c.opt_time("next_run_at")?,
        lease_owner: c.get("lease_owner")?,
        lease_until: c.opt_time("lease_until")?,
        updated_at: c.time("updated_at")?,
    })
}
