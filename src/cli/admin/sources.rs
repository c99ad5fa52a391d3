//! `roster admin set-source | get-source | sync-now`: pulled directories
//! through `AdminService` (docs/connectors/).

use anyhow::{Context, anyhow};
use roster_proto::admin::*;
use serde_json::{Value, json};

use super::{Admin, enum_suffix, returned, time};
use crate::config::AdminCommand;

/// Runs a source command; any other command is a bug of the caller.
pub(super) async fn run(admin: &Admin, command: AdminCommand) -> anyhow::Result<Value> {
    let source = match command {
        AdminCommand::SetSource {
            directory_id,
            kind,
            settings,
            credentials_file,
            credentials_env,
            interval_secs,
            mass_delete_percent,
        } => {
            let req = SetDirectorySourceRequest {
                directory_id,
                kind: source_kind(&kind)?.into(),
                settings_json: settings_text(&settings)?,
                credentials: credentials(credentials_file, credentials_env)?,
                interval_seconds: interval_secs,
                mass_delete_percent,
            };
            call!(admin, set_directory_source(req)).source
        }
        AdminCommand::GetSource { directory_id } => {
            call!(
                admin,
                get_directory_source(GetDirectorySourceRequest { directory_id })
            )
            .source
        }
        AdminCommand::SyncNow {
            directory_id,
            confirm_removals,
        } => {
            let req = SyncDirectoryNowRequest {
                directory_id,
                confirm_removals,
            };
            call!(admin, sync_directory_now(req)).source
        }
        other => return Err(anyhow!("not a directory source command: {other:?}")),
    };
    Ok(source_json(&returned(source, "source")?))
}

fn source_kind(name: &str) -> anyhow::Result<SourceKind> {
    SourceKind::from_str_name(&format!("SOURCE_KIND_{}", name.to_ascii_uppercase()))
        .filter(|k| *k != SourceKind::Unspecified)
        .ok_or_else(|| anyhow!("--kind must be google, ldap or active_directory"))
}

fn settings_text(settings: &str) -> anyhow::Result<String> {
    match settings.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}")),
        None => Ok(settings.to_string()),
    }
}

/// The credentials from a file or a variable (a secret on the command line
/// would land in shell history and `ps`).
fn credentials(file: Option<std::path::PathBuf>, env: Option<String>) -> anyhow::Result<String> {
    match (file, env) {
        (Some(path), _) => std::fs::read_to_string(&path)
            .map(|s| s.trim_end_matches('\n').to_string())
            .with_context(|| format!("reading {}", path.display())),
        (None, Some(var)) => std::env::var(&var).with_context(|| format!("${var} is not set")),
        (None, None) => Ok(String::new()),
    }
}

fn source_json(s: &DirectorySource) -> Value {
    let kind = SourceKind::try_from(s.kind).unwrap_or(SourceKind::Unspecified);
    let settings: Value = serde_json::from_str(&s.settings_json).unwrap_or(Value::Null);
    let status = s.status.clone().unwrap_or_default();
    json!({
        "directory_id": s.directory_id,
        "kind": enum_suffix(kind.as_str_name(), "SOURCE_KIND_"),
        "settings": settings,
        "has_credentials": s.has_credentials,
        "interval_seconds": s.interval_seconds,
        "mass_delete_percent": s.mass_delete_percent,
        "next_run_at": time(&s.next_run_at),
        "syncing": s.syncing,
        "removals_confirmed": s.removals_confirmed,
        "status": {
            "last_started_at": time(&status.last_started_at),
            "last_finished_at": time(&status.last_finished_at),
            "last_duration_ms": status.last_duration_ms,
            "created": status.created,
            "updated": status.updated,
            "removed": status.removed,
            "last_error": status.last_error,
            "failures": status.failures,
            "needs_confirmation": status.needs_confirmation,
        },
    })
}
