//! SQLite backend (embedded default).
//!
//! `roster serve` without a `DATABASE_URL` keeps its state in one SQLite file
//! and runs as a single process. SQLite allows one writer at a time, so the
//! store has exactly one writer connection (every write is a
//! `BEGIN IMMEDIATE` transaction on it, queued in-process instead of failing
//! with SQLITE_BUSY) and a small pool of reader connections that read
//! consistent WAL snapshots concurrently with the writer.
//!
//! Because writes are serialized, change-log revisions are dense and in commit
//! order: the committed head is the stable head, list cursors carry no
//! `also_seen`, and waking watchers needs no more than an in-process signal.

mod changes;
pub(crate) mod codec;
mod credentials;
pub(crate) mod errors;
mod groups;
mod lists;
mod portal;
mod rekey;
mod tx;
mod users;
mod webhooks;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::watch;

use crate::PoolStats;
use crate::error::{StoreError, StoreResult};
use crate::portal::NewActivity;
use crate::snapshot_slots::{DEFAULT_SNAPSHOT_CONNECTIONS, SnapshotSlots};
use crate::write::{Backend, Pools, ProgressWrite};
use errors::map_db;
use tx::Tx;

/// How long a connection waits for a lock held by another connection (e.g.
/// `roster migrate` run against the same file) before giving up with
/// SQLITE_BUSY, mapped to [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reader connections: enough for concurrent list/get/watch reads.
const READERS: u32 = 4;

/// How long a write waits for the writer connection while other writes run.
/// Generous because writes queue here instead of failing on a lock.
const WRITER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);

/// The embedded store: one SQLite file, one process.
#[derive(Clone)]
pub struct SqliteStore {
    /// The only connection that writes.
    writer: SqlitePool,
    /// Connections for reads; they never write.
    readers: SqlitePool,
    /// Connections for snapshot streams, which hold a read transaction for
    /// as long as their (possibly slow) consumer reads: kept apart so they
    /// can never starve ordinary reads; capped by `snapshot_slots`.
    snapshots: SqlitePool,
    snapshot_slots: SnapshotSlots,
    /// The committed head revision, published after every commit that
    /// appended events; wakes `wait_for_changes`.
    heads: Arc<watch::Sender<i64>>,
    /// The highest head `advance_stable_head` returned: `wait_for_changes`
    /// returns at once when a later commit exists.
    observed_head: Arc<AtomicI64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directory when missing) the database
    /// file at `path`. Call [`SqliteStore::migrate`] before use.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        Self::open_with(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens a database file from a `sqlite:` URL, e.g. `sqlite://roster.db`.
    /// In-memory databases are refused: the store's separate writer and
    /// reader connections would each see a different (or a lock-shared)
    /// database.
    pub async fn open_url(url: &str) -> StoreResult<SqliteStore> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::Invalid(
                "a SQLite URL starts with sqlite:".into(),
            ));
        }
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::Invalid(
                "in-memory SQLite is not supported: give a database file".into(),
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("bad SQLite URL: {e}")))?;
        Self::open_with(options).await
    }

    async fn open_with(options: SqliteConnectOptions) -> StoreResult<SqliteStore> {
        create_parent_dir(options.get_filename())?;
        let path = options.get_filename().display().to_string();
        let options = options
            .create_if_missing(true)
            // WAL: readers see a consistent snapshot while the writer writes.
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged write survives a power loss, not only a
            // process crash (NORMAL may lose the last commits in WAL mode).
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let cannot_open = |e: sqlx::Error| {
            StoreError::Unavailable(format!("cannot open the SQLite database {path}: {e}"))
        };
        // The writer opens first: it creates the file and switches it to WAL
        // before any reader connects.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(WRITER_ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(cannot_open)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.clone())
            .await
            .map_err(cannot_open)?;
        Ok(SqliteStore {
            writer,
            readers,
            snapshots: snapshot_pool(options, DEFAULT_SNAPSHOT_CONNECTIONS),
            snapshot_slots: SnapshotSlots::new(DEFAULT_SNAPSHOT_CONNECTIONS),
            heads: Arc::new(watch::channel(0).0),
            observed_head: Arc::new(AtomicI64::new(0)),
        })
    }

    /// Caps concurrent snapshot streams at `connections` (at least one;
    /// default [`crate::DEFAULT_SNAPSHOT_CONNECTIONS`]). Call before the
    /// store is shared: clones made earlier keep the old cap.
    pub fn with_snapshot_connections(mut self, connections: u32) -> SqliteStore {
        let options = (*self.snapshots.connect_options()).clone();
        self.snapshots = snapshot_pool(options, connections);
        self.snapshot_slots = SnapshotSlots::new(connections);
        self
    }

    /// Applies the embedded migrations (`migrations/sqlite`).
    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("../../migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Internal(format!("SQLite migration failed: {e}")))?;
        rekey::rekey_if_pending(&self.writer).await?;
        let head = changes::read_bounds(&mut *self.read_conn().await?)
            .await?
            .stable_head;
        self.heads.send_replace(head);
        Ok(())
    }

    /// Closes every connection (checkpointing the WAL into the file).
    pub async fn close(&self) {
        self.snapshots.close().await;
        self.readers.close().await;
        self.writer.close().await;
    }

    async fn read_conn(&self) -> StoreResult<PoolConnection<Sqlite>> {
        self.readers.acquire().await.map_err(map_db)
    }

    /// A read transaction: every statement in it sees the same snapshot.
    async fn read_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.readers.begin().await.map_err(map_db)
    }
}

/// The snapshot connections, opened on demand; a slot is taken before a
/// connection is asked for, so nothing ever waits for one.
fn snapshot_pool(options: SqliteConnectOptions, connections: u32) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(SnapshotSlots::new(connections).cap())
        .min_connections(0)
        .connect_lazy_with(options)
}

/// Creates the directory a database file goes in, when missing.
fn create_parent_dir(file: &Path) -> StoreResult<()> {
    match file.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                parent.display()
            ))
        }),
        None => Ok(()),
    }
}

#[async_trait]
impl Backend for SqliteStore {
    type Tx = Tx;
    type Db = Sqlite;

    fn pools(&self) -> Pools<'_, Sqlite> {
        Pools {
            readers: &self.readers,
            writer: &self.writer,
        }
    }

    async fn begin(&self) -> StoreResult<Tx> {
        Tx::begin(&self.writer).await
    }

    /// Commits a write and wakes watchers when it appended changes.
    async fn commit(&self, tx: Tx) -> StoreResult<()> {
        if let Some(head) = tx.commit().await? {
            self.heads.send_if_modified(|current| {
                let newer = head > *current;
                *current = (*current).max(head);
                newer
            });
        }
        Ok(())
    }

    async fn record_activity(&self, entries: &[NewActivity]) -> StoreResult<u64> {
        portal::record_activity(self, entries).await
    }

    async fn record_webhook_progress(&self, write: ProgressWrite<'_>) -> StoreResult<bool> {
        webhooks::record_progress(self, write).await
    }

    async fn ping(&self) -> StoreResult<()> {
        crate::rows::ping(&self.readers).await
    }

    /// The three pools together: the writer, the readers and the snapshot
    /// connections.
    fn pool_stats(&self) -> Option<PoolStats> {
        let pools = [&self.writer, &self.readers, &self.snapshots];
        Some(PoolStats::of(
            &pools,
            1 + READERS + self.snapshot_slots.cap(),
        ))
    }
}
