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

mod codec;
mod credentials;
mod directories;
mod errors;
mod groups;
mod list;
mod log;
mod rekey;
mod tx;
mod users;

use chrono::{DateTime, Utc};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::watch;

use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::snapshot_slots::{DEFAULT_SNAPSHOT_CONNECTIONS, SnapshotSlots};
use crate::{GroupUpdateFn, MemberPages, PoolStats, Store, UserUpdateFn};
use errors::map_sqlx;
use tx::WriteTx;

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
        let head = log::read_bounds(&mut *self.read_conn().await?)
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

    async fn begin_write(&self) -> StoreResult<WriteTx> {
        WriteTx::begin(&self.writer).await
    }

    /// Commits a write and wakes watchers when it appended events.
    async fn commit(&self, tx: WriteTx) -> StoreResult<()> {
        if let Some(head) = tx.commit().await? {
            self.heads.send_if_modified(|current| {
                let newer = head > *current;
                *current = (*current).max(head);
                newer
            });
        }
        Ok(())
    }

    async fn read_conn(&self) -> StoreResult<PoolConnection<Sqlite>> {
        self.readers.acquire().await.map_err(map_sqlx)
    }

    /// A read transaction: every statement in it sees the same snapshot.
    async fn read_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.readers.begin().await.map_err(map_sqlx)
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

/// Fails with [`StoreError::VersionMismatch`] when `expected` is set and
/// differs from the stored version.
fn check_version(expected: Option<i64>, actual: i64) -> StoreResult<()> {
    match expected {
        Some(expected) if expected != actual => {
            Err(StoreError::VersionMismatch { expected, actual })
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_directory(&self, new: NewDirectory) -> StoreResult<Directory> {
        self.create_directory_impl(new).await
    }
    async fn get_directory(&self, id: DirectoryId) -> StoreResult<Directory> {
        self.get_directory_impl(id).await
    }
    async fn list_directories(&self, organization: Option<&str>) -> StoreResult<Vec<Directory>> {
        self.list_directories_impl(organization).await
    }
    async fn update_directory(
        &self,
        id: DirectoryId,
        update: DirectoryUpdate,
    ) -> StoreResult<Directory> {
        self.update_directory_impl(id, update).await
    }
    async fn delete_directory(&self, id: DirectoryId) -> StoreResult<()> {
        self.delete_directory_impl(id).await
    }
    async fn create_token(&self, new: NewToken) -> StoreResult<Token> {
        self.create_token_impl(new).await
    }
    async fn list_tokens(
        &self,
        directory: DirectoryId,
        include_revoked: bool,
    ) -> StoreResult<Vec<Token>> {
        self.list_tokens_impl(directory, include_revoked).await
    }
    async fn revoke_token(&self, directory: DirectoryId, id: TokenId) -> StoreResult<()> {
        self.revoke_token_impl(directory, id).await
    }
    async fn find_token(&self, hash: [u8; 32]) -> StoreResult<Option<(Token, [u8; 32])>> {
        self.find_token_impl(hash).await
    }
    async fn mark_token_used(&self, id: TokenId, at: DateTime<Utc>) -> StoreResult<()> {
        self.mark_token_used_impl(id, at).await
    }
    async fn create_credential(&self, new: NewCredential) -> StoreResult<Credential> {
        self.create_credential_impl(new).await
    }
    async fn list_credentials(&self, include_revoked: bool) -> StoreResult<Vec<Credential>> {
        self.list_credentials_impl(include_revoked).await
    }
    async fn revoke_credential(&self, id: CredentialId) -> StoreResult<()> {
        self.revoke_credential_impl(id).await
    }
    async fn find_credential(&self, hash: [u8; 32]) -> StoreResult<Option<(Credential, [u8; 32])>> {
        self.find_credential_impl(hash).await
    }

    async fn create_user(&self, dir: DirectoryId, user: UserWrite) -> StoreResult<User> {
        self.create_user_impl(dir, user).await
    }
    async fn get_user(&self, dir: DirectoryId, id: UserId) -> StoreResult<User> {
        self.get_user_impl(dir, id).await
    }
    async fn list_users(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<User>> {
        self.list_users_impl(dir, query).await
    }
    async fn replace_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        user: UserWrite,
    ) -> StoreResult<User> {
        self.replace_user_impl(dir, id, if_version, user).await
    }
    async fn update_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        update: UserUpdateFn,
    ) -> StoreResult<User> {
        self.update_user_impl(dir, id, if_version, update).await
    }
    async fn delete_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
    ) -> StoreResult<()> {
        self.delete_user_impl(dir, id, if_version).await
    }

    async fn create_group(&self, dir: DirectoryId, group: GroupWrite) -> StoreResult<Group> {
        self.create_group_impl(dir, group).await
    }
    async fn get_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        include_members: bool,
    ) -> StoreResult<Group> {
        self.get_group_impl(dir, id, include_members).await
    }
    async fn list_groups(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<Group>> {
        self.list_groups_impl(dir, query).await
    }
    async fn replace_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        group: GroupWrite,
    ) -> StoreResult<Group> {
        self.replace_group_impl(dir, id, if_version, group).await
    }
    async fn update_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        update: GroupUpdateFn,
    ) -> StoreResult<Group> {
        self.update_group_impl(dir, id, if_version, update).await
    }
    async fn delete_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
    ) -> StoreResult<()> {
        self.delete_group_impl(dir, id, if_version).await
    }
    async fn add_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[MemberRef],
    ) -> StoreResult<(i64, i64)> {
        self.add_members_impl(dir, group, members).await
    }
    async fn remove_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[uuid::Uuid],
    ) -> StoreResult<(i64, i64)> {
        self.remove_members_impl(dir, group, members).await
    }
    async fn read_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        page_size: i64,
    ) -> StoreResult<(Group, MemberPages)> {
        self.read_group_impl(dir, id, page_size).await
    }

    async fn list_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        after: Option<uuid::Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<Member>> {
        self.list_members_impl(dir, group, after, limit).await
    }

    async fn log_bounds(&self) -> StoreResult<LogBounds> {
        self.log_bounds_impl().await
    }
    async fn read_changes(
        &self,
        filter: &ChangeFilter,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        self.read_changes_impl(filter, after, up_to, limit).await
    }
    async fn advance_stable_head(&self, after: i64) -> StoreResult<i64> {
        self.advance_stable_head_impl(after).await
    }
    async fn snapshot(
        &self,
        dir: Option<DirectoryId>,
    ) -> StoreResult<(Cursor, BoxStream<'static, StoreResult<SnapshotItem>>)> {
        self.snapshot_impl(dir).await
    }
    async fn prune_changes(&self, keep_secs: i64) -> StoreResult<i64> {
        self.prune_changes_impl(keep_secs).await
    }
    async fn renew_log_epoch(&self) -> StoreResult<i64> {
        self.renew_log_epoch_impl().await
    }
    fn newest_committed(&self) -> Option<i64> {
        // The last committed revision (every commit publishes it here).
        Some(*self.heads.borrow())
    }
    async fn wait_for_changes(&self, timeout: Duration) -> StoreResult<()> {
        self.wait_for_changes_impl(timeout).await
    }
    /// A no-op: the only process on the file already wakes its watchers on
    /// commit.
    async fn notify_changes(&self) -> StoreResult<()> {
        Ok(())
    }
    /// The three pools together: the writer, the readers and the snapshot
    /// connections.
    fn pool_stats(&self) -> Option<PoolStats> {
        let pools = [&self.writer, &self.readers, &self.snapshots];
        Some(PoolStats {
            size: pools.iter().map(|p| p.size()).sum(),
            idle: pools
                .iter()
                .map(|p| u32::try_from(p.num_idle()).unwrap_or(u32::MAX))
                .sum(),
            max: 1 + READERS + self.snapshot_slots.cap(),
        })
    }
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }
}
