//! The admin portal of a pulled directory over real HTTP (docs/portal.md):
//! the sync status the directory service keeps — last and next run, what
//! it changed, the last error, a sync paused for confirmation — and no
//! SCIM-token pages; a SCIM directory has no sync status.

use std::time::Duration;

use chrono::Utc;
use roster_proto::admin::*;
use roster_store::{DirectoryId, Store, SyncRecord, SyncStatus};
use roster_testkit::app::{Stack, create_directory_named, open_portal_session, portal_csrf};

/// A portal session for `directory`: its cookie and the CSRF token of its
/// forms.
async fn session(stack: &Stack, directory_id: &str) -> (String, String) {
    let link = stack
        .admin()
        .create_portal_link(CreatePortalLinkRequest {
            directory_id: directory_id.to_owned(),
            expires_in_seconds: 600,
        })
        .await
        .expect("link")
        .into_inner();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = open_portal_session(&http, stack.base(), &link.secret).await;
    let (_, setup) = get(stack, &cookie, "/portal").await;
    let csrf = portal_csrf(&setup);
    (cookie, csrf)
}

async fn get(stack: &Stack, cookie: &str, path: &str) -> (u16, String) {
    let reply = stack
        .http()
        .get(format!("{}{path}", stack.base()))
        .header("cookie", cookie)
        .send()
        .await
        .expect("portal page");
    let csp = reply
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.starts_with("default-src 'none'"), "{path}: {csp:?}");
    (reply.status().as_u16(), reply.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pulled_directory_shows_its_sync_status_and_no_tokens() {
    let stack = Stack::start("gw_portal_sync").await;
    let mut admin = stack.admin();
    let dir = create_directory_named(&mut admin, "Corp LDAP").await;
    admin
        .set_directory_source(SetDirectorySourceRequest {
            directory_id: dir.clone(),
            kind: SourceKind::Ldap as i32,
            settings_json: r#"{"url": "ldaps://ldap.corp.example:636", "bind_dn": "cn=roster,dc=corp,dc=example", "users_base_dn": "ou=people,dc=corp,dc=example", "groups_base_dn": "ou=groups,dc=corp,dc=example"}"#.into(),
            ..Default::default()
        })
        .await
        .expect("set the source");
    // The report a syncer leaves after a run the safeguard stopped, the
    // second failure in a row (recorded under the sync lease, as it does).
    let id: DirectoryId = dir.parse().unwrap();
    let started = Utc::now() - chrono::Duration::seconds(5);
    let store = &stack.store;
    store
        .acquire_sync_lease(id, "test-replica", Duration::from_secs(60))
        .await
        .expect("lease")
        .expect("the lease is free");
    let status = SyncStatus {
        last_started_at: Some(started),
        last_finished_at: Some(started + chrono::Duration::milliseconds(1500)),
        last_duration_ms: 1500,
        created: 4,
        updated: 1,
        removed: 0,
        last_error: Some("LDAP bind failed: invalid credentials (49)".into()),
        failures: 2,
        needs_confirmation: Some("the sync would remove 9 of 10 users (over 20 %)".into()),
        ..SyncStatus::default()
    };
    let record = SyncRecord {
        status,
        next_run_at: Utc::now() + chrono::Duration::minutes(30),
        used_confirmation: false,
    };
    assert!(
        store
            .record_sync(id, "test-replica", &record)
            .await
            .unwrap()
    );
    store.release_sync_lease(id, "test-replica").await.unwrap();
    let shown = admin
        .get_directory_source(GetDirectorySourceRequest {
            directory_id: dir.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .source
        .expect("source");

    assert!(!shown.syncing, "{shown:?}");
    let (cookie, csrf) = session(&stack, &dir).await;
    let (status, page) = get(&stack, &cookie, "/portal/sync").await;
    assert_eq!(status, 200, "{page}");
    for part in [
        "Paused: waiting for confirmation",
        "the sync would remove 9 of 10 users (over 20 %)",
        "LDAP bind failed: invalid credentials (49)",
        "(2 in a row)",
        "<th scope=\"row\">Users and groups created</th><td>4</td>",
        "<th scope=\"row\">Updated</th><td>1</td>",
        "<th scope=\"row\">Last run took</th><td>1.5 s</td>",
        "<th scope=\"row\">Runs every</th><td>30 min</td>",
        "aria-current=\"page\">Sync status",
    ] {
        assert!(page.contains(part), "{part:?} missing: {page}");
    }
    // The same times as `roster admin get-source` (AdminService).
    let next = shown.next_run_at.expect("next run");
    let next = chrono::DateTime::from_timestamp(next.seconds, 0).unwrap();
    assert!(
        page.contains(&next.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        "{page}"
    );

    // No SCIM-token pages: not in the navigation, refused when asked.
    let (_, setup) = get(&stack, &cookie, "/portal").await;
    assert!(setup.contains("id=\"pulled\""), "{setup}");
    assert!(!setup.contains("href=\"/portal/tokens\""), "{setup}");
    assert!(!setup.contains("href=\"/portal/test\""), "{setup}");
    for path in ["/portal/tokens", "/portal/test"] {
        let (status, page) = get(&stack, &cookie, path).await;
        assert_eq!(status, 400, "{path}: {page}");
        assert!(page.contains("pulled from LDAP"), "{path}: {page}");
    }
    let created = stack
        .http()
        .post(format!("{}/portal/tokens", stack.base()))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("name", "sneaky")])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 400);
    let tokens = admin
        .list_tokens(ListTokensRequest {
            directory_id: dir.clone(),
            include_revoked: true,
        })
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert!(tokens.is_empty(), "{tokens:?}");

    // A directory an IdP pushes to has tokens and no sync status.
    let pushed = create_directory_named(&mut admin, "Okta").await;
    let (cookie, _) = session(&stack, &pushed).await;
    let (status, page) = get(&stack, &cookie, "/portal/sync").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("has no sync status"), "{page}");
    let (status, setup) = get(&stack, &cookie, "/portal").await;
    assert_eq!(status, 200);
    assert!(setup.contains("href=\"/portal/tokens\""));
    assert!(!setup.contains("href=\"/portal/sync\""));
}
