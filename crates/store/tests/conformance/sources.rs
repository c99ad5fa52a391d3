//! Pulled directories: settings, "sync now" and confirmation, the sync
//! lease, and the status only the lease holder records.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use roster_store::*;

use super::directory;

fn ldap_settings() -> SourceSettings {
    SourceSettings {
        kind: SourceKind::Ldap,
        settings: serde_json::json!({"url": "ldap://127.0.0.1:3890", "base_dn": "dc=example"}),
        sealed_credentials: Some(vec![9, 8, 7]),
        interval_secs: 900,
        mass_delete_percent: 20,
    }
}

pub async fn directory_sources_are_put_read_and_scheduled(store: Arc<dyn Store>) {
    let dir = directory(store.as_ref(), "ldap").await;
    assert!(matches!(
        store.get_source(dir.id).await,
        Err(StoreError::NotFound("directory source"))
    ));
    let unknown = store.put_source(DirectoryId::new(), ldap_settings()).await;
    assert!(matches!(unknown, Err(StoreError::NotFound("directory"))));

    let put = store.put_source(dir.id, ldap_settings()).await.unwrap();
    assert_eq!(put.settings, ldap_settings());
    assert_eq!((put.confirmed, put.next_run_at), (false, None));
    assert_eq!(put.status, SyncStatus::default());
    assert_eq!(store.get_source(dir.id).await.unwrap(), put);

    let mut changed = ldap_settings();
    changed.interval_secs = 60;
    changed.sealed_credentials = None;
    let put = store.put_source(dir.id, changed.clone()).await.unwrap();
    assert_eq!(put.settings, changed);
    assert_eq!(store.list_sources().await.unwrap(), vec![put]);

    let scheduled = store.schedule_sync(dir.id, true).await.unwrap();
    assert!(scheduled.confirmed);
    assert!(scheduled.next_run_at.is_some());
    let again = store.schedule_sync(dir.id, false).await.unwrap();
    assert!(again.confirmed, "a sync now keeps an earlier confirmation");

    // Deleting the directory deletes its source.
    store.delete_directory(dir.id).await.unwrap();
    assert!(store.list_sources().await.unwrap().is_empty());
}

pub async fn one_replica_holds_a_sync_lease_and_only_it_records(store: Arc<dyn Store>) {
    let dir = directory(store.as_ref(), "ldap").await;
    store.put_source(dir.id, ldap_settings()).await.unwrap();
    store.schedule_sync(dir.id, true).await.unwrap();
    let ttl = Duration::from_secs(60);

    let held = sync_lease(&*store, dir.id, "a", ttl).await;
    assert_eq!(held.unwrap().lease_owner.as_deref(), Some("a"));
    assert!(sync_lease(&*store, dir.id, "b", ttl).await.is_none());
    assert!(sync_lease(&*store, dir.id, "a", ttl).await.is_some());

    // The run starts after the "sync now" above (a second of margin for
    // clock differences between the test and the database).
    let started = Utc::now() + chrono::Duration::seconds(1);
    let record = SyncRecord {
        status: SyncStatus {
            last_started_at: Some(started),
            created: 3,
            ..SyncStatus::default()
        },
        next_run_at: Utc::now() + chrono::Duration::seconds(900),
        used_confirmation: true,
    };
    assert!(!store.record_sync(dir.id, "b", &record).await.unwrap());
    assert!(store.record_sync(dir.id, "a", &record).await.unwrap());
    let after = store.get_source(dir.id).await.unwrap();
    assert_eq!(after.status.created, 3);
    assert!(
        !after.confirmed,
        "a run that used the confirmation clears it"
    );
    assert!(after.next_run_at.unwrap() > Utc::now());

    // The next run recorded earlier (in the future) is no "sync now": a
    // later run replaces it.
    let sooner = SyncRecord {
        status: SyncStatus {
            last_started_at: Some(Utc::now() - chrono::Duration::seconds(1)),
            ..SyncStatus::default()
        },
        next_run_at: Utc::now() + chrono::Duration::seconds(60),
        used_confirmation: false,
    };
    assert!(store.record_sync(dir.id, "a", &sooner).await.unwrap());
    let next = store.get_source(dir.id).await.unwrap().next_run_at.unwrap();
    assert!(next < Utc::now() + chrono::Duration::seconds(120), "{next}");

    store.release_sync_lease(dir.id, "b").await.unwrap();
    assert!(sync_lease(&*store, dir.id, "b", ttl).await.is_none());
    store.release_sync_lease(dir.id, "a").await.unwrap();
    assert!(sync_lease(&*store, dir.id, "b", ttl).await.is_some());
    assert!(!store.record_sync(dir.id, "a", &record).await.unwrap());

    // An expired lease is free for anyone.
    let short = Duration::from_millis(1);
    sync_lease(&*store, dir.id, "b", short).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if sync_lease(&*store, dir.id, "c", ttl).await.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::task::yield_now().await;
    }
}

/// The directory's sync lease for `owner`, if it gets it.
async fn sync_lease(
    store: &dyn Store,
    id: DirectoryId,
    owner: &str,
    ttl: Duration,
) -> Option<DirectorySource> {
    store.acquire_sync_lease(id, owner, ttl).await.unwrap()
}
