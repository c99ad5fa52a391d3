//! Generic LDAP against a real slapd, on PostgreSQL and SQLite: changes in
//! the directory arrive as the same ordered change-log events a SCIM
//! directory gives; a no-change re-sync writes nothing; the mass-deletion
//! safeguard stops a sync from a wrong base DN; one replica syncs at a time.

use roster_connectors::SourceError;
use roster_connectors::SyncError;
use roster_connectors::credentials;
use roster_connectors::runner::{SyncerOptions, sync_directory};
use roster_store::*;
use roster_testkit::slapd::{self, SUFFIX, ServerCert, Slapd, person, seed};
use roster_tls::testing::Ca;
use roster_webhook::SealingKey;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use crate::support;
use crate::support::{Env, changes, head_revision, kinds, user_named};

fn key() -> SealingKey {
    SealingKey::from_bytes(&[7u8; 32]).expect("key")
}

fn options(owner: &str) -> SyncerOptions {
    SyncerOptions {
        owner: owner.into(),
        ..SyncerOptions::default()
    }
}

const GROUPS: &str = "dn: cn=eng,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: eng\n\
member: uid=alice,ou=people,dc=example,dc=com\nmember: uid=bob,ou=people,dc=example,dc=com\n\n\
dn: cn=ops,ou=groups,dc=example,dc=com\nobjectClass: groupOfUniqueNames\ncn: ops\n\
uniqueMember: uid=carol,ou=people,dc=example,dc=com\n\n\
dn: cn=posix,ou=groups,dc=example,dc=com\nobjectClass: posixGroup\ncn: posix\ngidNumber: 500\n\
memberUid: erin\n\n";

fn seeded() -> Slapd {
    let people: String = [
        ("alice", "Alice", "Adams"),
        ("bob", "Bob", "Brown"),
        ("carol", "Carol", "Clark"),
        ("dave", "Dave", "Davis"),
        ("erin", "Erin", "Evans"),
        ("frank", "Frank", "Ford"),
    ]
    .iter()
    .map(|(uid, given, sn)| person(uid, given, sn))
    .collect();
    Slapd::start(&seed(&format!("{people}{GROUPS}")))
}

/// A pulled LDAP directory reading `slapd` under `users_base`.
async fn pulled_directory(
    store: &dyn Store,
    slapd: &Slapd,
    users_base: &str,
    policy: DeprovisionPolicy,
) -> DirectoryId {
    let dir = store
        .create_directory(NewDirectory {
            name: "corp ldap".into(),
            organization: "corp".into(),
            provider: ProviderKind::Generic,
            deprovision_policy: policy,
            attribute_mappings: Vec::new(),
        })
        .await
        .expect("directory");
    configure(store, dir.id, slapd, users_base).await;
    dir.id
}

async fn configure(store: &dyn Store, dir: DirectoryId, slapd: &Slapd, users_base: &str) {
    configure_with(store, dir, slapd, users_base, 20).await;
}

async fn configure_with(
    store: &dyn Store,
    dir: DirectoryId,
    slapd: &Slapd,
    users_base: &str,
    mass_delete_percent: i32,
) {
    let settings = settings(slapd, users_base);
    put_settings(store, dir, settings, mass_delete_percent).await;
}

/// The settings reading `slapd` over plain `ldap://`.
fn settings(slapd: &Slapd, users_base: &str) -> serde_json::Value {
    json!({
        "url": slapd.url,
        "bind_dn": slapd::ROOT_DN,
        "users_base_dn": users_base,
        "groups_base_dn": format!("ou=groups,{SUFFIX}"),
        "page_size": 2,
        "inactive_attribute": "employeeType",
        "inactive_values": ["disabled"],
    })
}

async fn put_settings(
    store: &dyn Store,
    dir: DirectoryId,
    settings: serde_json::Value,
    mass_delete_percent: i32,
) {
    store
        .put_source(
            dir,
            SourceSettings {
                kind: SourceKind::Ldap,
                settings,
                sealed_credentials: Some(credentials::seal(&key(), dir, slapd::ROOT_PW).unwrap()),
                interval_secs: 900,
                mass_delete_percent,
            },
        )
        .await
        .expect("put source");
}

async fn sync(store: &Arc<dyn Store>, dir: DirectoryId) -> Result<Option<SyncStatus>, SyncError> {
    sync_directory(store, &key(), &options("replica-a"), dir).await
}

/// The done-when scenario: add, rename, move between groups, disable,
/// remove in slapd → the ordered events of a SCIM directory.
async fn ldap_changes_arrive_as_scim_events(env: Env) {
    let store = env.store;
    let slapd = seeded();
    let people = format!("ou=people,{SUFFIX}");
    let dir = pulled_directory(store.as_ref(), &slapd, &people, DeprovisionPolicy::Delete).await;
    // This scenario deactivates and removes 2 of 6 users on purpose.
    configure_with(store.as_ref(), dir, &slapd, &people, 40).await;

    let status = sync(&store, dir).await.unwrap().expect("lease");
    assert_eq!((status.created, status.updated, status.removed), (9, 0, 0));
    let first = changes(store.as_ref(), dir, 0).await;
    let mut expected = vec!["directory.created"];
    expected.extend(["user.created"; 6]);
    expected.extend(["group.created"; 3]);
    expected.extend(["member.added"; 4]);
    assert_eq!(kinds(&first), expected);
    let head = first.last().unwrap().revision;

    // Nothing changed: nothing is written.
    let status = sync(&store, dir).await.unwrap().expect("lease");
    assert_eq!((status.created, status.updated, status.removed), (0, 0, 0));
    assert!(changes(store.as_ref(), dir, head).await.is_empty());

    slapd.modify(&format!(
        "{}\
         dn: uid=bob,{people}\nchangetype: modrdn\nnewrdn: uid=robert\ndeleteoldrdn: 1\n\n\
         dn: cn=eng,ou=groups,{SUFFIX}\nchangetype: modify\n\
         delete: member\nmember: uid=bob,{people}\nmember: uid=alice,{people}\n-\n\
         add: member\nmember: uid=robert,{people}\n\n\
         dn: cn=ops,ou=groups,{SUFFIX}\nchangetype: modify\n\
         add: uniqueMember\nuniqueMember: uid=alice,{people}\n\n\
         dn: uid=carol,{people}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n\n\
         dn: uid=dave,{people}\nchangetype: delete\n\n",
        person("george", "George", "Green").replace(
            "objectClass: inetOrgPerson",
            "changetype: add\nobjectClass: inetOrgPerson"
        ),
    ));
    let status = sync(&store, dir).await.unwrap().expect("lease");
    assert_eq!((status.created, status.updated, status.removed), (1, 2, 1));
    let second = changes(store.as_ref(), dir, head).await;
    assert_eq!(
        kinds(&second),
        [
            "user.created",     // george
            "user.deactivated", // carol (still listed in ops: stays a member)
            "user.updated",     // bob, renamed robert (same entryUUID)
            "member.removed",   // alice leaves eng
            "member.added",     // alice joins ops
            "user.deleted",     // dave
        ]
    );
    let renamed = user_named(store.as_ref(), dir, "robert").await;
    assert_eq!(renamed.fields.given_name.as_deref(), Some("Bob"));
}

/// A wrong base DN makes the source look empty: the safeguard stops the
/// sync before it writes and says why; an admin's confirmation applies it.
async fn a_wrong_base_dn_trips_the_mass_deletion_safeguard(env: Env) {
    let store = env.store;
    let slapd = seeded();
    let people = format!("ou=people,{SUFFIX}");
    let dir = pulled_directory(store.as_ref(), &slapd, &people, DeprovisionPolicy::Delete).await;
    sync(&store, dir).await.unwrap().expect("lease");
    let head = head_revision(store.as_ref(), dir).await;

    configure(store.as_ref(), dir, &slapd, &format!("ou=nobody,{SUFFIX}")).await;
    let stopped = sync(&store, dir).await;
    assert!(
        matches!(&stopped, Err(SyncError::NeedsConfirmation(why)) if why.contains("6 of 6")),
        "{stopped:?}"
    );
    assert!(
        changes(store.as_ref(), dir, head).await.is_empty(),
        "nothing written"
    );
    let source = store.get_source(dir).await.unwrap();
    let reason = source
        .status
        .needs_confirmation
        .expect("marked as needing confirmation");
    assert!(reason.contains("more than 20 %"), "{reason}");

    // Stopped again on the next run until an admin confirms.
    assert!(matches!(
        sync(&store, dir).await,
        Err(SyncError::NeedsConfirmation(_))
    ));
    store.schedule_sync(dir, true).await.unwrap();
    let status = sync(&store, dir).await.unwrap().expect("lease");
    assert_eq!(status.needs_confirmation, None);
    let removed = changes(store.as_ref(), dir, head).await;
    assert_eq!(
        kinds(&removed)
            .iter()
            .filter(|k| **k == "user.deleted")
            .count(),
        6
    );
    assert!(
        !store.get_source(dir).await.unwrap().confirmed,
        "a confirmation is used once"
    );
}

/// A user gone from the source is deactivated under the deactivate policy
/// and, when it comes back (moved out of the base DN and back: the same
/// entryUUID), reactivated — the same user, not a duplicate. Disabling and
/// re-enabling in the source does the same.
async fn a_reappearing_user_is_reactivated(env: Env) {
    let store = env.store;
    let slapd = seeded();
    let people = format!("ou=people,{SUFFIX}");
    let dir = pulled_directory(
        store.as_ref(),
        &slapd,
        &people,
        DeprovisionPolicy::Deactivate,
    )
    .await;
    sync(&store, dir).await.unwrap().expect("lease");
    let head = head_revision(store.as_ref(), dir).await;

    slapd.modify(&format!(
        "dn: ou=former,{SUFFIX}\nchangetype: add\nobjectClass: organizationalUnit\nou: former\n\n\
         dn: uid=erin,{people}\nchangetype: modrdn\nnewrdn: uid=erin\ndeleteoldrdn: 1\n\
         newsuperior: ou=former,{SUFFIX}\n\n"
    ));
    sync(&store, dir).await.unwrap().expect("lease");
    slapd.modify(&format!(
        "dn: uid=erin,ou=former,{SUFFIX}\nchangetype: modrdn\nnewrdn: uid=erin\n\
         deleteoldrdn: 1\nnewsuperior: {people}\n\n"
    ));
    sync(&store, dir).await.unwrap().expect("lease");
    let events = changes(store.as_ref(), dir, head).await;
    assert_eq!(
        kinds(&events),
        [
            "member.removed",
            "user.deactivated",
            "user.reactivated",
            "member.added"
        ]
    );
    assert_eq!(events[1].resource_id, events[2].resource_id);
    let head = events.last().unwrap().revision;

    slapd.modify(&format!(
        "dn: uid=erin,{people}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n\n"
    ));
    sync(&store, dir).await.unwrap().expect("lease");
    slapd.modify(&format!(
        "dn: uid=erin,{people}\nchangetype: modify\ndelete: employeeType\n\n"
    ));
    sync(&store, dir).await.unwrap().expect("lease");
    let events = changes(store.as_ref(), dir, head).await;
    assert_eq!(kinds(&events), ["user.deactivated", "user.reactivated"]);
}

/// While one replica holds a directory's lease another does not sync it;
/// two replicas racing write every change exactly once.
async fn one_replica_syncs_a_directory_at_a_time(env: Env) {
    let store = env.store;
    let slapd = seeded();
    let people = format!("ou=people,{SUFFIX}");
    let dir = pulled_directory(store.as_ref(), &slapd, &people, DeprovisionPolicy::Delete).await;

    let held = store
        .acquire_sync_lease(dir, "replica-b", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(held.is_some());
    assert!(
        sync(&store, dir).await.unwrap().is_none(),
        "replica-a must not sync"
    );
    assert_eq!(
        kinds(&changes(store.as_ref(), dir, 0).await),
        ["directory.created"]
    );
    store.release_sync_lease(dir, "replica-b").await.unwrap();

    let key = key();
    let (a, b) = (options("replica-a"), options("replica-b"));
    let (ra, rb) = tokio::join!(
        sync_directory(&store, &key, &a, dir),
        sync_directory(&store, &key, &b, dir)
    );
    let ran = [ra.unwrap(), rb.unwrap()];
    assert!(ran.iter().any(Option::is_some));
    let created = kinds(&changes(store.as_ref(), dir, 0).await)
        .into_iter()
        .filter(|k| *k == "user.created")
        .count();
    assert_eq!(created, 6, "each user created exactly once");
}

/// The directory's attribute mappings apply to pulled users: an LDAP
/// attribute the connector does not map by itself (`roomNumber`) is read
/// and lands where the mapping says.
async fn mapped_ldap_attributes_reach_the_user(env: Env) {
    let store = env.store;
    let slapd = seeded();
    let people = format!("ou=people,{SUFFIX}");
    let dir = pulled_directory(store.as_ref(), &slapd, &people, DeprovisionPolicy::Delete).await;
    let mapping = AttributeMapping {
        source: "roomNumber".into(),
        target: "custom:room".into(),
    };
    let update = DirectoryUpdate {
        attribute_mappings: Some(vec![mapping]),
        ..DirectoryUpdate::default()
    };
    store.update_directory(dir, update).await.expect("mappings");
    let room = |value: &str| {
        format!(
            "dn: uid=alice,{people}\nchangetype: modify\nreplace: roomNumber\nroomNumber: {value}\n\n"
        )
    };
    slapd.modify(&room("B-12"));

    let room_of_alice = async || {
        let alice = user_named(store.as_ref(), dir, "alice").await;
        alice.fields.custom_attributes.get("room").cloned()
    };
    sync(&store, dir).await.unwrap().expect("lease");
    assert_eq!(room_of_alice().await.as_deref(), Some("B-12"));
    let bob = user_named(store.as_ref(), dir, "bob").await;
    assert!(bob.fields.custom_attributes.is_empty(), "no roomNumber");
    let head = head_revision(store.as_ref(), dir).await;

    slapd.modify(&room("C-3"));
    sync(&store, dir).await.unwrap().expect("lease");
    assert_eq!(
        kinds(&changes(store.as_ref(), dir, head).await),
        ["user.updated"]
    );
    assert_eq!(room_of_alice().await.as_deref(), Some("C-3"));
}

/// How a TLS case reaches the server.
#[derive(Clone, Copy, Debug)]
enum Tls {
    Ldaps,
    StartTls,
}

/// Syncs a new directory reading `slapd` over `tls`, trusting `ca_file`.
async fn sync_over(
    store: &Arc<dyn Store>,
    slapd: &Slapd,
    tls: Tls,
    ca_file: Option<&str>,
) -> (DirectoryId, Result<Option<SyncStatus>, SyncError>) {
    let people = format!("ou=people,{SUFFIX}");
    let dir = pulled_directory(store.as_ref(), slapd, &people, DeprovisionPolicy::Delete).await;
    let mut settings = settings(slapd, &people);
    match tls {
        Tls::Ldaps => settings["url"] = json!(slapd.ldaps_url.as_deref().unwrap()),
        Tls::StartTls => settings["starttls"] = json!(true),
    }
    if let Some(ca_file) = ca_file {
        settings["ca_file"] = json!(ca_file);
    }
    put_settings(store.as_ref(), dir, settings, 20).await;
    (dir, sync(store, dir).await)
}

/// A sync over LDAPS or StartTLS from a slapd whose certificate a test CA
/// signs: with that CA as `ca_file` it reads the directory; without it the
/// certificate is untrusted, the sync fails before reading, says why in the
/// directory's status, and writes nothing.
async fn tls_syncs_trust_only_the_given_ca(env: Env) {
    let store = env.store;
    let ca = Ca::new("roster test LDAP CA");
    let leaf = ca.leaf(&["127.0.0.1", "localhost"]);
    let cert = ServerCert {
        cert_pem: &leaf.cert_pem,
        key_pem: &leaf.key_pem,
    };
    let people: String = [("alice", "Alice", "Adams"), ("bob", "Bob", "Brown")]
        .iter()
        .map(|(uid, given, sn)| person(uid, given, sn))
        .collect();
    let slapd = Slapd::start_tls(&seed(&people), &cert);
    let ca_dir = std::env::temp_dir().join(format!("roster-ldap-ca-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&ca_dir).unwrap();
    let ca_file = ca_dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let ca_file = ca_file.to_str().unwrap();

    for tls in [Tls::Ldaps, Tls::StartTls] {
        let (dir, trusted) = sync_over(&store, &slapd, tls, Some(ca_file)).await;
        let status = trusted.unwrap().expect("lease");
        assert_eq!(status.created, 2, "{tls:?}");
        assert_eq!(
            kinds(&changes(store.as_ref(), dir, 0).await),
            ["directory.created", "user.created", "user.created"],
            "{tls:?}"
        );

        let (dir, untrusted) = sync_over(&store, &slapd, tls, None).await;
        let Err(SyncError::Source(SourceError::Unavailable(why))) = &untrusted else {
            panic!("{tls:?}: {untrusted:?}");
        };
        assert!(
            why.contains("certificate is not trusted") && why.contains("set ca_file"),
            "{tls:?}: {why}"
        );
        let status = store.get_source(dir).await.unwrap().status;
        let last_error = status.last_error.expect("the status says why");
        assert!(last_error.contains("not trusted"), "{tls:?}: {last_error}");
        assert_eq!(
            kinds(&changes(store.as_ref(), dir, 0).await),
            ["directory.created"],
            "{tls:?}: nothing written"
        );
    }
    std::fs::remove_dir_all(&ca_dir).unwrap();
}

on_both_stores! {
    tls_syncs_trust_only_the_given_ca =>
        tls_on_postgres, tls_on_sqlite;
    mapped_ldap_attributes_reach_the_user =>
        mapping_on_postgres, mapping_on_sqlite;
    ldap_changes_arrive_as_scim_events =>
        ldap_changes_arrive_as_scim_events_on_postgres, ldap_changes_arrive_as_scim_events_on_sqlite;
    a_wrong_base_dn_trips_the_mass_deletion_safeguard =>
        safeguard_on_postgres, safeguard_on_sqlite;
    a_reappearing_user_is_reactivated =>
        reactivation_on_postgres, reactivation_on_sqlite;
    one_replica_syncs_a_directory_at_a_time =>
        one_replica_on_postgres, one_replica_on_sqlite;
}
