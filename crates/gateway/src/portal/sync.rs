//! A pulled directory's page (LDAP, Active Directory, Google Workspace):
//! the sync status `roster admin get-source` shows, worded for the IT
//! admin — last and next run, what it changed, the last error with its
//! cause, and a sync paused for confirmation with its reason.

use std::fmt::Write as _;

use axum::response::Response;
use roster_proto::admin as pa;

use super::html::{esc, notice, time};
use super::pages::{load_directory, page};
use super::{PortalError, Session};

/// The source's name as the IT admin knows it.
pub fn source_name(kind: i32) -> &'static str {
    match pa::SourceKind::try_from(kind).unwrap_or(pa::SourceKind::Unspecified) {
        pa::SourceKind::Google => "Google Workspace",
        pa::SourceKind::Ldap => "LDAP",
        pa::SourceKind::ActiveDirectory => "Active Directory",
        pa::SourceKind::Unspecified => "its source",
    }
}

/// The set-up page of a pulled directory: nothing to paste anywhere.
pub fn pulled_setup(source: &pa::DirectorySource) -> String {
    format!(
        "<p id=\"pulled\">Roster reads this directory from <strong>{name}</strong> on a schedule: \
         there is no identity provider to set up and no token to paste. The application's \
         administrator connected it.</p>\
         <p><a href=\"/portal/sync\">Sync status</a> shows the last run, what it changed and \
         any error; <a href=\"/portal/directory\">Users and groups</a> shows what it holds.</p>",
        name = esc(source_name(source.kind))
    )
}

/// `GET /portal/sync`.
pub async fn sync(session: Session) -> Result<Response, PortalError> {
    let dir = load_directory(&session).await?;
    let Some(source) = &dir.source else {
        return Err(PortalError::Invalid(
            "your identity provider sends this directory's users and groups (SCIM); Roster \
             does not pull it, so it has no sync status: see Test the connection and Activity"
                .into(),
        ));
    };
    Ok(page(
        &session,
        &dir,
        "/portal/sync",
        "Sync status",
        &status_html(source),
    ))
}

fn status_html(source: &pa::DirectorySource) -> String {
    let status = source.status.clone().unwrap_or_default();
    let name = esc(source_name(source.kind));
    let mut body = String::new();
    if !status.needs_confirmation.is_empty() {
        body.push_str(&notice(
            "warn",
            &format!(
                "<p id=\"paused\"><strong>Paused: waiting for confirmation.</strong> {}</p>\
                 <p>The sync stopped before writing anything, because it would have removed more \
                 users than the safeguard allows. If they really left, ask the application's \
                 administrator to confirm the removals; if not, the source's settings are wrong \
                 (a base DN or filter that no longer matches looks like everybody left).</p>",
                esc(&status.needs_confirmation)
            ),
        ));
    }
    if !status.last_error.is_empty() {
        body.push_str(&notice(
            "error",
            &format!(
                "<p id=\"last-error\"><strong>The last run failed</strong> ({} in a row): {}</p>\
                 <p>Roster tries again later, waiting longer after each failure. Nothing is \
                 removed while it cannot read {name}.</p>",
                status.failures,
                esc(&status.last_error)
            ),
        ));
    }
    if source.syncing {
        body.push_str(&notice(
            "ok",
            "<p id=\"syncing\">A sync is running now.</p>",
        ));
    }
    let next = match &source.next_run_at {
        _ if source.syncing => "running now".to_owned(),
        Some(at) => time(Some(at)),
        None => "due now".to_owned(),
    };
    let ran = status.last_started_at.is_some();
    let last = |value: String| if ran { value } else { "not yet".to_owned() };
    let rows = [
        ("Source", name.clone()),
        ("Runs every", seconds(source.interval_seconds)),
        ("Next run", next),
        (
            "Last run started",
            last(time(status.last_started_at.as_ref())),
        ),
        (
            "Last run finished",
            last(time(status.last_finished_at.as_ref())),
        ),
        ("Last run took", last(seconds_ms(status.last_duration_ms))),
        ("Users and groups created", last(status.created.to_string())),
        ("Updated", last(status.updated.to_string())),
        ("Removed or deactivated", last(status.removed.to_string())),
        (
            "Last error",
            match status.last_error.as_str() {
                "" => "none".to_owned(),
                error => esc(error),
            },
        ),
    ];
    let _ = write!(
        body,
        "<table id=\"sync-status\"><caption>How Roster reads this directory from {name}</caption><tbody>"
    );
    for (label, value) in rows {
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{label}</th><td>{value}</td></tr>"
        );
    }
    body.push_str("</tbody></table>");
    body
}

/// `1800` as "30 min".
fn seconds(secs: i64) -> String {
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `1234` ms as "1.2 s".
fn seconds_ms(ms: i64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_failing_sync_says_why_escaped() {
        let source = pa::DirectorySource {
            kind: pa::SourceKind::Ldap as i32,
            interval_seconds: 1800,
            status: Some(pa::DirectorySyncStatus {
                last_started_at: Some(prost_types::Timestamp::default()),
                last_duration_ms: 2500,
                created: 3,
                last_error: "bind failed: <invalid credentials>".into(),
                failures: 2,
                needs_confirmation: "would remove 9 of 10 users".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let html = status_html(&source);
        for part in [
            "id=\"paused\"",
            "would remove 9 of 10 users",
            "(2 in a row)",
            "bind failed: &lt;invalid credentials&gt;",
            "30 min",
            "2.5 s",
            "due now",
        ] {
            assert!(html.contains(part), "{part}: {html}");
        }
        assert!(!html.contains("<invalid"));
    }
}
