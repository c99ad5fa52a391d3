//! Pulled directories: which source a directory is read from, its settings
//! and sealed credentials, the sync schedule, the lease that lets one
//! replica sync it, and the last run's report. The sync itself lives in
//! `roster-connectors`; the store keeps what must survive a crash.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::DirectoryId;

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

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [Self::Google, Self::Ldap, Self::ActiveDirectory];

    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Ldap => "ldap",
            Self::ActiveDirectory => "active_directory",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown source kind {s:?}"))
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
