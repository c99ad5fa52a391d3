//! `roster admin new-epoch`, the step after restoring a backup: it renews the
//! change log's epoch directly in the database (no directory service
//! running), so every cursor issued before is refused with OUT_OF_RANGE.

use roster_store::Store;
use roster_store::postgres::PgStore;
use roster_store::sqlite::SqliteStore;
use roster_testkit::app;

/// Runs `roster admin new-epoch <args>` and returns the epoch it printed.
fn new_epoch(args: &[&str]) -> String {
    let out = roster_testkit::run_ok(
        app::roster().args(["admin", "new-epoch"]).args(args),
        "roster admin new-epoch",
    );
    let printed: serde_json::Value = serde_json::from_slice(&out).expect("JSON output");
    printed["epoch"].as_str().expect("an epoch").to_owned()
}

async fn epoch(store: &dyn Store) -> i64 {
    store.log_bounds().await.expect("log bounds").epoch
}

#[tokio::test]
async fn new_epoch_renews_the_sqlite_log_epoch() {
    let dir = app::temp_dir("new-epoch");
    let file = dir.join("roster.db");
    let store = SqliteStore::open(&file).await.unwrap();
    store.migrate().await.unwrap();
    let before = epoch(&store).await;
    store.close().await;

    let printed = new_epoch(&["--data-dir", dir.to_str().unwrap()]);
    let store = SqliteStore::open(&file).await.unwrap();
    let after = epoch(&store).await;
    assert_ne!(after, before);
    assert_eq!(printed, roster_directory::cursor::epoch_text(after));
}

#[tokio::test]
async fn new_epoch_renews_the_postgres_log_epoch() {
    let url = roster_testkit::fresh_database("new_epoch").await;
    let store = PgStore::connect(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let before = epoch(&store).await;

    let printed = new_epoch(&["--database-url", &url]);
    let after = epoch(&store).await;
    assert_ne!(after, before);
    assert_eq!(printed, roster_directory::cursor::epoch_text(after));
}
