//! What the AD tests share: a throwaway SQLite store, and a pulled
//! directory on it with its source and sealed credentials.

use std::path::PathBuf;
use std::sync::Arc;

use roster_connectors::credentials;
use roster_store::sqlite::SqliteStore;
use roster_store::*;
use roster_webhook::SealingKey;

/// A SQLite store in a temporary folder, removed when dropped.
pub struct Scratch {
    pub store: Arc<dyn Store>,
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn sqlite(prefix: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
    let store = SqliteStore::open(&dir.join("roster.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    Scratch {
        store: Arc::new(store),
        dir,
    }
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
