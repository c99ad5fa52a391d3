//! What the connector tests share: a fresh store of either backend, and
//! the change log of one directory.

use std::sync::Arc;

use roster_connectors::credentials;
use roster_store::postgres::PgStore;
use roster_store::sqlite::SqliteStore;
use roster_store::*;
use roster_webhook::SealingKey;

/// A migrated store; a SQLite one's files go when it is dropped.
pub struct Env {
    pub store: Arc<dyn Store>,
    _guard: Option<TempDir>,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh PostgreSQL database (`DATABASE_URL`, or a throwaway cluster).
pub async fn postgres() -> Env {
    let url = roster_testkit::fresh_database("connectors").await;
    let store = PgStore::connect(&url, 8).await.expect("connect");
    store.migrate().await.expect("migrate");
    Env {
        store: Arc::new(store),
        _guard: None,
    }
}

/// A fresh SQLite store in a temp directory.
pub async fn sqlite() -> Env {
    let dir = std::env::temp_dir().join(format!("roster-connectors-{}", uuid::Uuid::new_v4()));
    let store = SqliteStore::open(&dir.join("roster.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    Env {
        store: Arc::new(store),
        _guard: Some(TempDir(dir)),
    }
}

/// Stamps, for each scenario `case(env)`, one test per backend.
macro_rules! on_both_stores {
    ($($case:ident => $pg:ident, $lite:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pg() {
            $case(support::postgres().await).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $lite() {
            $case(support::sqlite().await).await;
        }
    )*};
}

/// The directory's change log after `after`, up to the stable head.
pub async fn changes(store: &dyn Store, dir: DirectoryId, after: i64) -> Vec<ChangeRecord> {
    let head = store.advance_stable_head(0).await.expect("advance");
    let filter = ChangeFilter {
        directory_id: Some(dir),
        kinds: Vec::new(),
    };
    store
        .read_changes(&filter, after, head, 1_000_000)
        .await
        .expect("read changes")
}

/// The revision of the directory's last change: where the next sync's
/// changes start.
pub async fn head_revision(store: &dyn Store, dir: DirectoryId) -> i64 {
    let all = changes(store, dir, 0).await;
    all.last().expect("the directory has changes").revision
}

pub fn kinds(changes: &[ChangeRecord]) -> Vec<&'static str> {
    changes.iter().map(|c| c.kind.as_str()).collect()
}

/// The stored user named `user_name` (the tests' directories are small).
pub async fn user_named(store: &dyn Store, dir: DirectoryId, user_name: &str) -> User {
    let query = ListQuery {
        count: 1000,
        ..ListQuery::default()
    };
    let users = store.list_users(dir, &query).await.expect("list users");
    users
        .items
        .into_iter()
        .find(|u| u.fields.user_name == user_name)
        .unwrap_or_else(|| panic!("no user {user_name}"))
}

/// A new directory (policy: delete) read from an Active Directory source
/// with `settings`, its password sealed with `key`.
pub async fn ad_directory(
    store: &dyn Store,
    key: &SealingKey,
    name: &str,
    settings: serde_json::Value,
    password: &str,
) -> DirectoryId {
    let dir = store
        .create_directory(NewDirectory {
            name: name.into(),
            organization: "corp".into(),
            provider: ProviderKind::Generic,
            deprovision_policy: DeprovisionPolicy::Delete,
            attribute_mappings: Vec::new(),
        })
        .await
        .expect("directory")
        .id;
    let sealed = credentials::seal(key, dir, password).expect("seal");
    store
        .put_source(
            dir,
            SourceSettings {
                kind: SourceKind::ActiveDirectory,
                settings,
                sealed_credentials: Some(sealed),
                interval_secs: 900,
                // The scenarios remove users on purpose.
                mass_delete_percent: 100,
            },
        )
        .await
        .expect("source");
    dir
}
