//! Google Workspace against an HTTP server in the test that reproduces the
//! documented Directory API and OAuth token endpoints: it verifies the
//! service-account JWT's RS256 signature and claims, pages users (as the
//! API may return fewer than maxResults), groups and members, and answers
//! with Google's error bodies (expired token, rate limit, insufficient
//! permissions).

use std::sync::Arc;

use roster_connectors::google::SCOPES;
use roster_connectors::runner::{SyncerOptions, sync_directory};
use roster_connectors::{SourceError, SyncError, credentials};
use roster_store::*;
use roster_testkit::google::{self as fake_google, member, user};
use roster_webhook::SealingKey;
use serde_json::json;

use crate::support;
use crate::support::{Env, changes, head_revision, kinds, user_named};

fn key() -> SealingKey {
    SealingKey::from_bytes(&[5u8; 32]).expect("key")
}

/// A pulled Google directory reading the fake at `base`, with `mappings`;
/// no mass-deletion safeguard (the scenarios remove on purpose).
async fn google_directory(store: &dyn Store, base: &str, mappings: &[(&str, &str)]) -> DirectoryId {
    let attribute_mappings = mappings
        .iter()
        .map(|(source, target)| AttributeMapping {
            source: source.to_string(),
            target: target.to_string(),
        })
        .collect();
    let dir = store
        .create_directory(NewDirectory {
            name: "workspace".into(),
            organization: "example".into(),
            provider: ProviderKind::Google,
            deprovision_policy: DeprovisionPolicy::Delete,
            attribute_mappings,
        })
        .await
        .expect("directory")
        .id;
    store
        .put_source(
            dir,
            SourceSettings {
                kind: SourceKind::Google,
                settings: fake_google::settings(base),
                sealed_credentials: Some(
                    credentials::seal(&key(), dir, &fake_google::key_json(base)).unwrap(),
                ),
                interval_secs: 1800,
                mass_delete_percent: 100,
            },
        )
        .await
        .expect("source");
    dir
}

async fn sync(store: &Arc<dyn Store>, dir: DirectoryId) -> Result<Option<SyncStatus>, SyncError> {
    let options = SyncerOptions {
        owner: "replica-a".into(),
        ..SyncerOptions::default()
    };
    sync_directory(store, &key(), &options, dir).await
}

/// The done-when scenario for Google: add, archive, suspend, remove →
/// the ordered events of a SCIM directory; a token cached and renewed; the
/// API's error answers.
async fn google_workspace_is_pulled_and_reconciled(env: Env) {
    let fake = fake_google::start(SCOPES).await;
    let base = {
        let mut f = fake.lock().unwrap();
        f.users = vec![
            user("101", "alice@example.com", "Alice"),
            user("102", "bob@example.com", "Bob"),
            user("103", "carol@example.com", "Carol"),
        ];
        f.users[2]["archived"] = json!(true);
        f.groups = vec![(
            fake_google::group("g1", "Engineering"),
            vec![
                member("101", "USER"),
                member("102", "USER"),
                member("C0abc", "CUSTOMER"),
            ],
        )];
        f.base.clone()
    };
    let store = env.store;
    // This scenario suspends and removes 2 of 2 active users on purpose.
    let dir = google_directory(store.as_ref(), &base, &[]).await;

    let status = sync(&store, dir).await.expect("first sync").expect("lease");
    assert_eq!((status.created, status.updated, status.removed), (4, 0, 0));
    let first = changes(store.as_ref(), dir, 0).await;
    assert_eq!(
        kinds(&first),
        [
            "directory.created",
            "user.created",
            "user.created",
            "user.created",
            "group.created",
            "member.added",
            "member.added"
        ]
    );
    let carol = user_named(store.as_ref(), dir, "carol@example.com").await;
    assert!(!carol.fields.active, "archived is inactive");
    assert_eq!(carol.fields.department.as_deref(), Some("R&D"));
    let asked = fake.lock().unwrap().users_query.clone();
    assert_eq!(asked.get("projection").map(String::as_str), Some("basic"));
    assert_eq!(
        asked.get("customFieldMask"),
        None,
        "no custom schema mapped"
    );
    let head = first.last().unwrap().revision;

    // Suspend alice, remove bob (and his membership); the token is reused.
    {
        let mut f = fake.lock().unwrap();
        f.users[0]["suspended"] = json!(true);
        f.users.remove(1);
        f.groups[0].1.remove(1);
    }
    sync(&store, dir).await.expect("sync").expect("lease");
    let events = changes(store.as_ref(), dir, head).await;
    assert_eq!(
        kinds(&events),
        ["user.deactivated", "member.removed", "user.deleted"]
    );
    assert_eq!(fake.lock().unwrap().tokens_issued, 1, "the token is cached");
    let head = events.last().unwrap().revision;

    // An expired token is replaced; nothing changed: nothing written.
    fake.lock().unwrap().live_token = None;
    sync(&store, dir).await.expect("sync").expect("lease");
    assert_eq!(fake.lock().unwrap().tokens_issued, 2);
    assert!(changes(store.as_ref(), dir, head).await.is_empty());

    // A rate-limit answer backs off; an insufficient scope is unauthorized.
    fake.lock().unwrap().fail_next = Some((403, "userRateLimitExceeded"));
    let limited = sync(&store, dir).await;
    assert!(
        matches!(&limited, Err(SyncError::Source(SourceError::RateLimited { reason, .. })) if reason == "userRateLimitExceeded"),
        "{limited:?}"
    );
    let source = store.get_source(dir).await.unwrap();
    assert_eq!(source.status.failures, 1);
    let wait = source.next_run_at.unwrap() - chrono::Utc::now();
    assert!(
        wait <= chrono::Duration::seconds(31),
        "backoff, not the interval: {wait}"
    );
    fake.lock().unwrap().fail_next = Some((403, "insufficientPermissions"));
    let refused = sync(&store, dir).await;
    assert!(
        matches!(
            refused,
            Err(SyncError::Source(SourceError::Unauthorized(_)))
        ),
        "{refused:?}"
    );
    assert!(changes(store.as_ref(), dir, head).await.is_empty());
}

/// Custom schemas and Google's own fields reach the normalized user
/// through the directory's attribute mappings; `users.list` asks for the
/// mapped schemas only (`projection=custom`, `customFieldMask`).
async fn custom_schemas_and_fields_are_mapped(env: Env) {
    let fake = fake_google::start(SCOPES).await;
    let base = {
        let mut f = fake.lock().unwrap();
        let mut ann = user("201", "ann@example.com", "Ann");
        ann["organizations"][0]["costCenter"] = json!("CC-ORG");
        ann["customSchemas"] = json!({
            "EmployeeData": {"badge": "B-7", "projects": [{"type": "work", "value": "apollo"}]},
            "Payroll": {"grade": "secret"}
        });
        f.users = vec![ann, user("202", "ben@example.com", "Ben")];
        f.base.clone()
    };
    let store = env.store;
    let mappings = [
        ("customSchemas.EmployeeData.badge", "employee_number"),
        ("customSchemas.EmployeeData.projects", "custom:project"),
        ("organizations.costCenter", "custom:cost_center"),
    ];
    let dir = google_directory(store.as_ref(), &base, &mappings).await;

    sync(&store, dir).await.expect("sync").expect("lease");
    let asked = fake.lock().unwrap().users_query.clone();
    assert_eq!(asked.get("projection").map(String::as_str), Some("custom"));
    assert_eq!(
        asked.get("customFieldMask").map(String::as_str),
        Some("EmployeeData"),
        "only the mapped schema is fetched"
    );
    let ann = user_named(store.as_ref(), dir, "ann@example.com").await;
    assert_eq!(ann.fields.employee_number.as_deref(), Some("B-7"));
    let custom = |k: &str| ann.fields.custom_attributes.get(k).cloned();
    assert_eq!(custom("project").as_deref(), Some("apollo"));
    assert_eq!(custom("cost_center").as_deref(), Some("CC-ORG"));
    assert_eq!(custom("orgUnitPath").as_deref(), Some("/Engineering"));
    assert_eq!(ann.fields.custom_attributes.len(), 3, "{:?}", ann.fields);
    let ben = user_named(store.as_ref(), dir, "ben@example.com").await;
    assert_eq!(ben.fields.employee_number, None, "nothing to map");
    let head = head_revision(store.as_ref(), dir).await;

    // A changed custom field is an update like any other.
    fake.lock().unwrap().users[0]["customSchemas"]["EmployeeData"]["badge"] = json!("B-8");
    sync(&store, dir).await.expect("sync").expect("lease");
    let events = changes(store.as_ref(), dir, head).await;
    assert_eq!(kinds(&events), ["user.updated"]);
    let ann = user_named(store.as_ref(), dir, "ann@example.com").await;
    assert_eq!(ann.fields.employee_number.as_deref(), Some("B-8"));
}

on_both_stores! {
    google_workspace_is_pulled_and_reconciled =>
        google_on_postgres, google_on_sqlite;
    custom_schemas_and_fields_are_mapped =>
        custom_schemas_on_postgres, custom_schemas_on_sqlite;
}
