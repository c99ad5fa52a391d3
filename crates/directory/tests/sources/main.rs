//! Pulled directories through the real gRPC AdminService and the syncer
//! running inside the directory service, against a real slapd, on
//! PostgreSQL and SQLite: set a source (credentials write-only, sealed),
//! sync now, status, the safeguard and its confirmation.

use std::sync::Arc;
use std::time::Duration;

use roster_directory::DirectoryConfig;
use roster_directory::webhooks::WebhookConfig;
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::*;
use roster_testkit::app::*;
use roster_testkit::slapd::{self, SUFFIX, Slapd, person, seed};
use roster_testkit::{eventually, on_both_backends};
use roster_webhook::SealingKey;
use tonic::Code;
use tonic::transport::Channel;

mod parity;

const DEADLINE: Duration = Duration::from_secs(30);

fn config() -> DirectoryConfig {
    let text = SealingKey::generate_text().expect("key");
    DirectoryConfig {
        webhooks: WebhookConfig {
            sealing_key: Some(Arc::new(SealingKey::parse(&text).expect("parse key"))),
            ..WebhookConfig::default()
        },
        sync_poll: Duration::from_millis(50),
        ..test_config()
    }
}

fn seeded() -> Slapd {
    let people: String = ["ann", "ben", "cat", "dan", "eve"]
        .iter()
        .map(|uid| person(uid, uid, "Test"))
        .collect();
    let group = format!(
        "dn: cn=staff,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: staff\n\
         member: uid=ann,ou=people,{SUFFIX}\n\n"
    );
    Slapd::start(&seed(&format!("{people}{group}")))
}

fn ldap_request(
    dir: &str,
    slapd: &Slapd,
    users_base: &str,
    password: &str,
) -> SetDirectorySourceRequest {
    let settings = serde_json::json!({
        "url": slapd.url,
        "bind_dn": slapd::ROOT_DN,
        "users_base_dn": users_base,
        "groups_base_dn": format!("ou=groups,{SUFFIX}"),
    });
    SetDirectorySourceRequest {
        directory_id: dir.into(),
        kind: SourceKind::Ldap.into(),
        settings_json: settings.to_string(),
        credentials: password.into(),
        interval_seconds: 3600,
        mass_delete_percent: 0,
    }
}

async fn source(admin: &mut AdminServiceClient<Channel>, dir: &str) -> DirectorySource {
    admin
        .get_directory_source(GetDirectorySourceRequest {
            directory_id: dir.into(),
        })
        .await
        .expect("get source")
        .into_inner()
        .source
        .expect("source")
}

/// Polls the source until `done` holds for its status.
async fn wait_for(
    admin: &AdminServiceClient<Channel>,
    dir: &str,
    what: &str,
    done: impl Fn(&DirectorySyncStatus) -> bool,
) -> DirectorySource {
    let done = &done;
    eventually(what, DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            let s = source(&mut admin, dir).await;
            done(s.status.as_ref().expect("status")).then_some(s)
        }
    })
    .await
}

async fn pulled_directory_through_admin_service(backend: Backend) {
    let slapd = seeded();
    let mut env = Env::on_with_config(backend, "sources", config()).await;
    let dir = env.directory("corp").await;
    let people = format!("ou=people,{SUFFIX}");

    let bad = env
        .admin
        .set_directory_source(SetDirectorySourceRequest {
            settings_json: r#"{"url": "http://nope"}"#.into(),
            ..ldap_request(&dir, &slapd, &people, slapd::ROOT_PW)
        })
        .await;
    assert_eq!(failure_code(bad), Code::InvalidArgument);

    let set = env
        .admin
        .set_directory_source(ldap_request(&dir, &slapd, &people, slapd::ROOT_PW))
        .await
        .expect("set source")
        .into_inner()
        .source
        .expect("source");
    assert!(set.has_credentials);
    assert_eq!(set.mass_delete_percent, 20, "the default");
    assert!(
        !format!("{set:?}").contains(slapd::ROOT_PW),
        "never returned"
    );
    let stored = env.store.get_source(dir.parse().unwrap()).await.unwrap();
    let sealed = stored.settings.sealed_credentials.expect("sealed");
    assert!(
        !sealed
            .windows(slapd::ROOT_PW.len())
            .any(|w| w == slapd::ROOT_PW.as_bytes())
    );

    // A new source is due at once; the syncer in the service picks it up.
    let synced = wait_for(&env.admin, &dir, "first sync", |s| s.created == 6).await;
    assert_eq!(synced.status.unwrap().last_error, "");
    let users = env.list_users(&dir, None).await;
    assert_eq!(users.users.len(), 5);

    // Settings changed without credentials keep the stored ones; a wrong
    // base DN trips the safeguard, which waits for a confirmation.
    env.admin
        .set_directory_source(ldap_request(&dir, &slapd, &format!("ou=gone,{SUFFIX}"), ""))
        .await
        .expect("set source");
    env.admin
        .sync_directory_now(SyncDirectoryNowRequest {
            directory_id: dir.clone(),
            confirm_removals: false,
        })
        .await
        .expect("sync now");
    let paused = wait_for(&env.admin, &dir, "safeguard", |s| {
        !s.needs_confirmation.is_empty()
    })
    .await;
    assert!(paused.status.unwrap().needs_confirmation.contains("5 of 5"));
    assert_eq!(
        env.list_users(&dir, None).await.users.len(),
        5,
        "nothing removed"
    );

    env.admin
        .sync_directory_now(SyncDirectoryNowRequest {
            directory_id: dir.clone(),
            confirm_removals: true,
        })
        .await
        .expect("confirm");
    wait_for(&env.admin, &dir, "confirmed sync", |s| s.removed == 5).await;
    assert_eq!(env.list_users(&dir, None).await.users.len(), 0);
}

on_both_backends!(pulled_directory_through_admin_service);
