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

/// A server sealing with `current` and also opening with `previous`
/// (`ROSTER_SECRET_KEY`, `ROSTER_SECRET_KEY_PREVIOUS`).
fn keyed(current: &str, previous: &[&str]) -> DirectoryConfig {
    let ring = SealingKey::parse_ring(current, previous).expect("key ring");
    DirectoryConfig {
        webhooks: WebhookConfig {
            sealing_key: Some(Arc::new(ring)),
            ..WebhookConfig::default()
        },
        sync_poll: Duration::from_millis(50),
        // A restart can cut a run between its report and its lease's
        // release (the next run then waits for the lease to expire).
        sync_lease: Duration::from_secs(3),
        ..test_config()
    }
}

fn config() -> DirectoryConfig {
    keyed(&SealingKey::generate_text().expect("key"), &[])
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

/// "Sync now", then the status of that run (the first to finish after it).
async fn run_sync(admin: &AdminServiceClient<Channel>, dir: &str) -> DirectorySyncStatus {
    let before = source(&mut admin.clone(), dir)
        .await
        .status
        .expect("status");
    let req = SyncDirectoryNowRequest {
        directory_id: dir.into(),
        confirm_removals: false,
    };
    admin
        .clone()
        .sync_directory_now(req)
        .await
        .expect("sync now");
    let done = wait_for(admin, dir, "the requested sync", |s| {
        s.last_finished_at != before.last_finished_at
    })
    .await;
    done.status.expect("status")
}

async fn sealed_credentials(env: &Env, dir: &str) -> Vec<u8> {
    let source = env.store.get_source(dir.parse().unwrap()).await.unwrap();
    source.settings.sealed_credentials.expect("sealed")
}

/// Adds a person to the source and syncs: a good run reads exactly that
/// one new person, proof that the bind with the stored password succeeded.
async fn add_and_sync(slapd: &Slapd, env: &Env, dir: &str, uid: &str) -> DirectorySyncStatus {
    let entry = person(uid, uid, "New");
    let (dn, attributes) = entry.split_once('\n').expect("dn line");
    slapd.modify(&format!("{dn}\nchangetype: add\n{attributes}"));
    run_sync(&env.admin, dir).await
}

/// Rotating the server key (docs/operations.md): credentials sealed under
/// key A still open after a restart with B current and A previous;
/// `ResealSecrets` seals them under B, after which B alone opens them; under
/// an unrelated key alone the sync fails saying which setting to fix and
/// the stored value is left as it was, so the right key brings it back.
async fn credentials_survive_a_key_rotation(backend: Backend) {
    let slapd = seeded();
    let [a, b, wrong] = [(); 3].map(|()| SealingKey::generate_text().expect("key"));
    let people = format!("ou=people,{SUFFIX}");
    let mut env = Env::on_with_config(backend, "keyrot", keyed(&a, &[])).await;
    let dir = env.directory("corp").await;
    let set = ldap_request(&dir, &slapd, &people, slapd::ROOT_PW);
    env.admin
        .set_directory_source(set)
        .await
        .expect("set source");
    wait_for(&env.admin, &dir, "sync under A", |s| s.created == 6).await;
    let under_a = sealed_credentials(&env, &dir).await;
    let good = |status: DirectorySyncStatus| {
        assert_eq!((status.last_error.as_str(), status.created), ("", 1));
    };

    let env = env.restart(keyed(&b, &[&a])).await;
    good(add_and_sync(&slapd, &env, &dir, "fay").await);
    assert_eq!(env.reseal().await, (1, 0, vec![]));
    assert_eq!(env.reseal().await, (0, 1, vec![]), "nothing left under A");
    let under_b = sealed_credentials(&env, &dir).await;
    assert_ne!(under_b, under_a);

    let env = env.restart(keyed(&b, &[])).await;
    good(add_and_sync(&slapd, &env, &dir, "gus").await);

    let env = env.restart(keyed(&wrong, &[])).await;
    let status = run_sync(&env.admin, &dir).await;
    assert!(
        status.last_error.contains("ROSTER_SECRET_KEY_PREVIOUS"),
        "{}",
        status.last_error
    );
    assert_eq!(env.reseal().await, (0, 0, vec![format!("source {dir}")]));
    assert_eq!(
        sealed_credentials(&env, &dir).await,
        under_b,
        "left as it was"
    );

    let env = env.restart(keyed(&b, &[])).await;
    good(add_and_sync(&slapd, &env, &dir, "hal").await);
}

on_both_backends!(credentials_survive_a_key_rotation);
