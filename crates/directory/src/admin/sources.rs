//! `AdminService`'s pulled directories: set a directory's source (Google
//! Workspace, LDAP, Active Directory) with write-only credentials sealed
//! under the server key, read its settings and sync status, "sync now" and
//! the confirmation the mass-deletion safeguard waits for. The syncs
//! themselves run in `roster-connectors`.

use chrono::Utc;
use roster_connectors::credentials;
use roster_connectors::google::GoogleSettings;
use roster_connectors::ldap::LdapSettings;
use roster_connectors::runner::{DEFAULT_INTERVAL_SECS, DEFAULT_MASS_DELETE_PERCENT};
use roster_proto::admin as pa;
use roster_store::{DirectorySource, SourceKind, SourceSettings, StoreError};

use super::AdminApi;
use crate::convert::timestamp;
use crate::error::{ServiceError, ServiceResult};
use crate::service::directory_id;

impl AdminApi {
    pub async fn set_directory_source(
        &self,
        req: pa::SetDirectorySourceRequest,
    ) -> ServiceResult<pa::SetDirectorySourceResponse> {
        let dir = directory_id(&req.directory_id)?;
        let kind = source_kind(req.kind)?;
        let settings = checked_settings(kind, &req.settings_json)?;
        let sealed_credentials = if req.credentials.is_empty() {
            match self.store().get_source(dir).await {
                Ok(existing) => existing.settings.sealed_credentials,
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            let key = self
                .webhook_admin()
                .map_err(|_| {
                    ServiceError::FailedPrecondition(
                        "source credentials are sealed with the server's key: set \
                         ROSTER_SECRET_KEY (docs/connectors/README.md)"
                            .into(),
                    )
                })?
                .key();
            Some(credentials::seal(key, dir, &req.credentials).map_err(|_| {
                ServiceError::Store(StoreError::Internal("cannot seal the credentials".into()))
            })?)
        };
        let percent = match req.mass_delete_percent {
            0 => DEFAULT_MASS_DELETE_PERCENT,
            p if (1..=100).contains(&p) => p,
            _ => return Err(invalid("mass_delete_percent must be between 0 and 100")),
        };
        let interval = match req.interval_seconds {
            0 => DEFAULT_INTERVAL_SECS,
            s if s >= 60 => s,
            _ => return Err(invalid("interval_seconds must be at least 60")),
        };
        let put = SourceSettings {
            kind,
            settings,
            sealed_credentials,
            interval_secs: interval,
            mass_delete_percent: percent,
        };
        let source = self.store().put_source(dir, put).await?;
        tracing::info!(directory = %dir, kind = %kind, "directory source set");
        Ok(pa::SetDirectorySourceResponse {
            source: Some(source_message(&source)),
        })
    }

    pub async fn get_directory_source(
        &self,
        req: pa::GetDirectorySourceRequest,
    ) -> ServiceResult<pa::GetDirectorySourceResponse> {
        let source = self
            .store()
            .get_source(directory_id(&req.directory_id)?)
            .await?;
        Ok(pa::GetDirectorySourceResponse {
            source: Some(source_message(&source)),
        })
    }

    pub async fn sync_directory_now(
        &self,
        req: pa::SyncDirectoryNowRequest,
    ) -> ServiceResult<pa::SyncDirectoryNowResponse> {
        let dir = directory_id(&req.directory_id)?;
        let source = self
            .store()
            .schedule_sync(dir, req.confirm_removals)
            .await?;
        tracing::info!(directory = %dir, confirm = req.confirm_removals, "sync requested");
        Ok(pa::SyncDirectoryNowResponse {
            source: Some(source_message(&source)),
        })
    }
}

fn invalid(what: &str) -> ServiceError {
    ServiceError::InvalidArgument(what.into())
}

fn source_kind(kind: i32) -> ServiceResult<SourceKind> {
    match pa::SourceKind::try_from(kind) {
        Ok(pa::SourceKind::Google) => Ok(SourceKind::Google),
        Ok(pa::SourceKind::Ldap) => Ok(SourceKind::Ldap),
        Ok(pa::SourceKind::ActiveDirectory) => Ok(SourceKind::ActiveDirectory),
        _ => Err(invalid("kind must be google, ldap or active_directory")),
    }
}

fn kind_message(kind: SourceKind) -> pa::SourceKind {
    match kind {
        SourceKind::Google => pa::SourceKind::Google,
        SourceKind::Ldap => pa::SourceKind::Ldap,
        SourceKind::ActiveDirectory => pa::SourceKind::ActiveDirectory,
    }
}

/// Parses and validates the connector's settings now, so a typo is an
/// answer to the admin rather than a failed sync later.
fn checked_settings(kind: SourceKind, json: &str) -> ServiceResult<serde_json::Value> {
    let value: serde_json::Value =
        serde_json::from_str(if json.trim().is_empty() { "{}" } else { json })
            .map_err(|e| ServiceError::InvalidArgument(format!("settings_json: {e}")))?;
    if matches!(kind, SourceKind::Ldap | SourceKind::ActiveDirectory) {
        let ldap: LdapSettings = serde_json::from_value(value.clone())
            .map_err(|e| ServiceError::InvalidArgument(format!("settings_json: {e}")))?;
        ldap.validate()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
    } else {
        let google: GoogleSettings = serde_json::from_value(value.clone())
            .map_err(|e| ServiceError::InvalidArgument(format!("settings_json: {e}")))?;
        google
            .validate()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
    }
    Ok(value)
}

fn source_message(s: &DirectorySource) -> pa::DirectorySource {
    let status = &s.status;
    pa::DirectorySource {
        directory_id: s.directory_id.to_string(),
        kind: kind_message(s.settings.kind).into(),
        settings_json: s.settings.settings.to_string(),
        has_credentials: s.settings.sealed_credentials.is_some(),
        interval_seconds: s.settings.interval_secs,
        mass_delete_percent: s.settings.mass_delete_percent,
        status: Some(pa::DirectorySyncStatus {
            last_started_at: status.last_started_at.map(timestamp),
            last_finished_at: status.last_finished_at.map(timestamp),
            last_duration_ms: status.last_duration_ms,
            created: status.created,
            updated: status.updated,
            removed: status.removed,
            last_error: status.last_error.clone().unwrap_or_default(),
            failures: status.failures,
            needs_confirmation: status.needs_confirmation.clone().unwrap_or_default(),
        }),
        next_run_at: s.next_run_at.map(timestamp),
        syncing: s.lease_until.is_some_and(|until| until > Utc::now()),
        removals_confirmed: s.confirmed,
    }
}
