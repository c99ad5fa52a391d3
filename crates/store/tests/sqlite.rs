//! The SQLite store against real database files: every test opens a fresh
//! file in its own temporary directory. The shared conformance suite runs
//! first (module `conformance_suite`), then the SQLite-specific tests.

mod conformance;

use conformance::{all_changes, directory, group, member, page, user, users};

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roster_store::sqlite::SqliteStore;
use roster_store::*;
use serde_json::json;

/// A temporary directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("roster-sqlite-test-{}", uuid::Uuid::new_v4()));
        Self(path)
    }

    fn db(&self) -> PathBuf {
        // A nested path: open() must create the missing parent directory.
        self.0.join("data").join("roster.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, migrated store for the conformance suite; the temporary
/// directory lives as long as the fixture.
async fn fixture() -> conformance::Fixture {
    let dir = TempDir::new();
    let store = open(&dir).await;
    conformance::Fixture {
        store: Arc::new(store),
        guard: Box::new(dir),
    }
}

mod conformance_suite {
    crate::conformance::conformance_suite!(super::fixture);
}

async fn open(dir: &TempDir) -> SqliteStore {
    let store = SqliteStore::open(&dir.db()).await.expect("open");
    store.migrate().await.expect("migrate");
    store
}

async fn fresh() -> (SqliteStore, TempDir) {
    let dir = TempDir::new();
    (open(&dir).await, dir)
}

#[tokio::test]
async fn open_creates_the_file_in_wal_mode() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    assert!(
        dir.db().exists(),
        "database file created with its parent directory"
    );
    store.ping().await.unwrap();
    store
        .create_directory(NewDirectory::default())
        .await
        .unwrap();
    assert!(
        dir.db().with_extension("db-wal").exists(),
        "WAL journal in use"
    );
}

#[tokio::test]
async fn change_log_is_dense_filterable_and_prunable() {
    let (store, _dir) = fresh().await;
    let a = directory(&store, "Acme").await;
    let b = directory(&store, "Acme").await;
    store.create_user(a.id, user("alice")).await.unwrap();
    store.create_user(b.id, user("bob")).await.unwrap();
    store.create_group(a.id, group("g")).await.unwrap();

    let all = all_changes(&store, None).await;
    let revisions: Vec<i64> = all.iter().map(|c| c.revision).collect();
    assert_eq!(
        revisions,
        (1..=5).collect::<Vec<_>>(),
        "dense, in commit order"
    );
    assert_eq!(
        all.iter().map(|c| c.event_id).collect::<HashSet<_>>().len(),
        5
    );

    let only_a_users = ChangeFilter {
        directory_id: Some(a.id),
        kinds: vec![ChangeKind::UserCreated],
    };
    let filtered = store.read_changes(&only_a_users, 0, 5, 10).await.unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].payload["user_name"], json!("alice"));
    let every = ChangeFilter::default();
    for (after, up_to, limit, bound) in [(1, 3, 10, "up_to"), (0, 5, 2, "limit")] {
        let read = store
            .read_changes(&every, after, up_to, limit)
            .await
            .unwrap();
        assert_eq!(read.len(), 2, "bounded by {bound}");
    }

    assert_eq!(store.advance_stable_head(0).await.unwrap(), 5);
    assert_eq!(
        store.prune_changes(3600).await.unwrap(),
        0,
        "nothing is old enough"
    );
    assert_eq!(store.prune_changes(0).await.unwrap(), 5);
    let bounds = store.log_bounds().await.unwrap();
    assert_eq!(
        bounds,
        LogBounds {
            pruned_through: 5,
            stable_head: 5,
            allocated_head: 5,
            epoch: bounds.epoch,
        }
    );
    match store.read_changes(&ChangeFilter::default(), 2, 5, 10).await {
        Err(StoreError::CursorExpired {
            requested: 2,
            oldest: 5,
        }) => {}
        other => panic!("expected CursorExpired, got {other:?}"),
    }
    assert!(
        store
            .read_changes(&ChangeFilter::default(), 5, 5, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.create_user(a.id, user("carol")).await.unwrap();
    assert_eq!(
        all_changes_after(&store, 5).await[0].revision,
        6,
        "revisions are never reused"
    );
}

async fn all_changes_after(store: &SqliteStore, after: i64) -> Vec<ChangeRecord> {
    let head = store.log_bounds().await.unwrap().stable_head;
    store
        .read_changes(&ChangeFilter::default(), after, head, 1000)
        .await
        .unwrap()
}

#[tokio::test]
async fn wait_for_changes_wakes_on_commit() {
    let (store, _dir) = fresh().await;
    let d = directory(&store, "Acme").await;
    let head = store.advance_stable_head(0).await.unwrap();

    // Nothing new: returns after the timeout.
    store
        .wait_for_changes(Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(store.log_bounds().await.unwrap().stable_head, head);

    // A commit wakes a waiter long before its (very long) timeout.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_changes(Duration::from_secs(3600)).await })
    };
    store.create_user(d.id, user("alice")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woken by the commit")
        .unwrap()
        .unwrap();

    // A commit before the wait (not yet seen by advance_stable_head) does
    // not get lost either.
    store.create_user(d.id, user("bob")).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        store.wait_for_changes(Duration::from_secs(3600)),
    )
    .await
    .expect("returns at once for an unseen commit")
    .unwrap();
    store.notify_changes().await.unwrap();
}

#[tokio::test]
async fn reopening_the_file_keeps_state_and_revisions() {
    let dir = TempDir::new();
    let (d, alice) = {
        let store = open(&dir).await;
        let d = directory(&store, "Acme").await;
        let alice = store.create_user(d.id, user("alice")).await.unwrap();
        store.close().await;
        (d, alice)
    };
    let store = open(&dir).await;
    assert_eq!(store.get_user(d.id, alice.id).await.unwrap(), alice);
    assert_eq!(store.log_bounds().await.unwrap().stable_head, 2);
    store.create_user(d.id, user("bob")).await.unwrap();
    let changes = all_changes(&store, None).await;
    assert_eq!(
        changes.iter().map(|c| c.revision).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_neither_fail_nor_lose_members() {
    let (store, _dir) = fresh().await;
    let store = Arc::new(store);
    let d = directory(&*store, "Acme").await;
    let g = store.create_group(d.id, group("crowd")).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let u = store.create_user(d.id, user(&format!("user{i}"))).await?;
                store.add_members(d.id, g.id, &[member(&u)]).await?;
                // Concurrent readers alongside the writers.
                store.list_users(d.id, &page(10)).await?;
                if i % 4 == 0 {
                    store.remove_members(d.id, g.id, &[u.id.0]).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap()
            .expect("no SQLITE_BUSY or other failure under concurrency");
    }
    let stored = store.get_group(d.id, g.id, true).await.unwrap();
    assert_eq!(stored.member_count, 48);
    assert_eq!(stored.members.unwrap().len(), 48);
    let changes = all_changes(&*store, None).await;
    let revisions: Vec<i64> = changes.iter().map(|c| c.revision).collect();
    assert_eq!(
        revisions,
        (1..=revisions.len() as i64).collect::<Vec<_>>(),
        "no holes"
    );
}

#[tokio::test]
async fn open_url_and_bad_urls() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    let url = format!("sqlite://{}", dir.0.join("by-url.db").display());
    let store = SqliteStore::open_url(&url).await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert!(SqliteStore::open_url("postgres://nope").await.is_err());
    for memory in ["sqlite::memory:", "sqlite://file.db?mode=memory"] {
        assert!(
            matches!(
                SqliteStore::open_url(memory).await,
                Err(StoreError::Invalid(_))
            ),
            "{memory}"
        );
    }
    let nested = format!(
        "sqlite://{}",
        dir.0.join("a").join("b").join("nested.db").display()
    );
    SqliteStore::open_url(&nested)
        .await
        .expect("open_url creates missing parent directories");
    let unwritable = SqliteStore::open(std::path::Path::new("/proc/roster/none.db")).await;
    assert!(unwritable.is_err(), "an unusable path is an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_wait_for_each_other() {
    let dir = TempDir::new();
    let first = open(&dir).await;
    let second = open(&dir).await;
    let d = directory(&first, "Acme").await;
    let writes = |store: SqliteStore, prefix: &'static str| {
        tokio::spawn(async move {
            for i in 0..25 {
                store
                    .create_user(d.id, user(&format!("{prefix}{i}")))
                    .await?;
            }
            Ok::<_, StoreError>(())
        })
    };
    let (a, b) = (writes(first.clone(), "a"), writes(second.clone(), "b"));
    a.await
        .unwrap()
        .expect("no SQLITE_BUSY for the first store");
    b.await
        .unwrap()
        .expect("no SQLITE_BUSY for the second store");
    assert_eq!(second.list_users(d.id, &page(0)).await.unwrap().total, 50);
    let revisions: Vec<i64> = all_changes(&first, None)
        .await
        .iter()
        .map(|c| c.revision)
        .collect();
    assert_eq!(
        revisions,
        (1..=51).collect::<Vec<_>>(),
        "one dense log across both"
    );
}

#[tokio::test]
async fn an_unusable_path_is_a_clear_error() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    // A file where the data directory should be.
    let blocker = dir.0.join("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    match SqliteStore::open(&blocker.join("roster.db")).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("blocker"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // A file that is not a database.
    let garbage = dir.0.join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
    let opened = SqliteStore::open(&garbage).await;
    let migrated = match opened {
        Ok(store) => store.migrate().await,
        Err(e) => Err(e),
    };
    assert!(migrated.is_err(), "a corrupt file is refused");
}

#[tokio::test]
async fn pruning_removes_old_rows_of_large_transactions_and_keeps_young_ones() {
    let (store, _dir) = fresh().await;
    let d = directory(&store, "Acme").await;
    let g = store.create_group(d.id, group("big")).await.unwrap();
    // One transaction with more events than a pruning batch.
    let members: Vec<MemberRef> = users(&store, d.id, "u", 120)
        .await
        .iter()
        .map(member)
        .collect();
    store.add_members(d.id, g.id, &members).await.unwrap();
    let head = store.log_bounds().await.unwrap().stable_head;
    assert_eq!(head, 2 + 120 + 120);
    assert_eq!(store.prune_changes(0).await.unwrap(), head);
    assert_eq!(store.log_bounds().await.unwrap().pruned_through, head);
    assert!(
        store
            .read_changes(&ChangeFilter::default(), head, head, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Rows younger than the window stay, and so does everything after them.
    store.create_user(d.id, user("young")).await.unwrap();
    assert_eq!(store.prune_changes(3600).await.unwrap(), head);
    assert_eq!(
        store
            .read_changes(&ChangeFilter::default(), head, head + 1, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Set in the child process of `acknowledged_writes_survive_a_crash`: the
/// database file the child writes to before it aborts.
const CRASH_CHILD_DB: &str = "ROSTER_SQLITE_CRASH_CHILD_DB";

#[tokio::test]
async fn acknowledged_writes_survive_a_crash() {
    if let Ok(path) = std::env::var(CRASH_CHILD_DB) {
        return write_then_abort(PathBuf::from(path)).await;
    }
    let dir = TempDir::new();
    let store = open(&dir).await;
    let d = directory(&store, "Acme").await;
    store.close().await;

    // The child writes users, prints each id once the write is acknowledged,
    // then dies without closing anything (no checkpoint, no clean shutdown).
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "acknowledged_writes_survive_a_crash",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DB, dir.db())
        .env("ROSTER_SQLITE_CRASH_CHILD_DIRECTORY", d.id.to_string())
        .output()
        .expect("run the child");
    assert!(!output.status.success(), "the child aborts");
    let acknowledged: Vec<UserId> = String::from_utf8_lossy(&output.stdout)
        .lines()
        // The test harness may print on the same line before the child does.
        .filter_map(|line| line.split_once("acknowledged:").map(|(_, id)| id.trim()))
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(
        acknowledged.len(),
        20,
        "child output: {}",
        String::from_utf8_lossy(&output.stdout)
    );

    let store = open(&dir).await;
    for id in &acknowledged {
        store
            .get_user(d.id, *id)
            .await
            .expect("an acknowledged user survives the crash");
    }
    let revisions: Vec<i64> = all_changes(&store, None)
        .await
        .iter()
        .map(|c| c.revision)
        .collect();
    assert_eq!(revisions, (1..=21).collect::<Vec<_>>());
}

/// The child side: acknowledged writes, then an abrupt end.
async fn write_then_abort(path: PathBuf) {
    use std::io::Write;
    let dir: DirectoryId = std::env::var("ROSTER_SQLITE_CRASH_CHILD_DIRECTORY")
        .unwrap()
        .parse()
        .unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    for i in 0..20 {
        let created = store
            .create_user(dir, user(&format!("crash{i}")))
            .await
            .unwrap();
        let mut out = std::io::stdout().lock();
        writeln!(out, "acknowledged:{}", created.id).unwrap();
        out.flush().unwrap();
    }
    std::process::abort();
}

#[tokio::test]
async fn pool_stats_count_every_connection() {
    let (store, _dir) = fresh().await;
    store.ping().await.unwrap();
    let stats = store.pool_stats().expect("SQLite reports its pools");
    assert!(
        stats.size >= 2,
        "the writer and at least one reader are open: {stats:?}"
    );
    assert!(
        stats.idle <= stats.size && stats.size <= stats.max,
        "{stats:?}"
    );
}
