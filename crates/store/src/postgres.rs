//! PostgreSQL backend.
//!
//! # Why the change log is ordered the way it is
//! Every mutation is one READ COMMITTED transaction: it takes row locks on
//! what it changes (`FOR NO KEY UPDATE` for updates, `FOR UPDATE` for
//! deletes, `FOR KEY SHARE` on the rows it references), changes state, and
//! then, as its last statement, appends its change rows taking revisions
//! from the `change_revision` sequence. Taking revisions last means two
//! changes of the same resource are ordered by the row lock: the second
//! writer cannot take its revision before the first committed.
//!
//! We deliberately do not serialize writers on a per-directory "revision"
//! row: on these machines that costs ~80% of the insert rate (the commit
//! flush happens while the lock is held; see shared/pg-facts). The price is
//! that independent transactions may commit out of revision order, and an
//! aborted transaction leaves a permanent hole. Readers therefore deliver
//! only up to the *stable head* (`head.rs` has the argument): the head walks
//! over consecutive committed revisions, and moves past a hole only once
//! every transaction that was in progress when the hole was seen has
//! finished, after which the hole is either filled or permanent. The
//! bookkeeping lives in this process ([`PgStore`] holds it behind a mutex);
//! every replica computes the same heads from the database alone.
//!
//! # The one lock order
//! Every write that locks more than one row takes its locks in this order,
//! so two writers can wait for each other but never in a cycle:
//! 0. the directory row, before anything in it: `FOR UPDATE` to delete the
//!    directory, `FOR KEY SHARE` (the foreign key of a creation's first
//!    statement) to create a user or group in it;
//! 1. the groups whose memberships or counts it changes, `FOR NO KEY
//!    UPDATE`, in ascending id order when there are several (a group
//!    PATCH/PUT and the gRPC add/remove paths lock their one group first;
//!    deleting a user first locks every group holding it, deleting a group
//!    those and itself);
//! 2. then member rows: `FOR KEY SHARE` on the users and groups being added
//!    (`resolve_members`), or `FOR UPDATE` on the user or group being
//!    deleted, which waits for every add that already holds its key share;
//! 3. then membership rows, and last the change rows (the revisions).
//!
//! A deletion reads the groups holding its member before it can lock the
//! member, so an add committed in between would be a group it does not
//! hold: the deletion then rolls back and is replayed (see
//! `groups::remove_from_locked_groups`) rather than lock a group out of
//! order. What the order cannot exclude (a serialization failure, a path
//! that breaks the rule) is aborted by
//! PostgreSQL with SQLSTATE 40P01/40001 and replayed by
//! [`PgStore::retrying`] up to [`ATTEMPTS`] times with a short jittered
//! backoff; only then does the caller see [`StoreError::Unavailable`].
//!
//! A list reads in one REPEATABLE READ transaction whose first statement
//! advances the stable head H *in the list's own snapshot*; every revision
//! <= H is then visible in that snapshot, and the list's cursor is
//! `{after: H, also_seen: revisions > H visible in the snapshot}`: exact, so
//! list-then-watch neither misses nor repeats a change.
//!
//! Watchers are woken with LISTEN/NOTIFY on `roster_changes`, but NOTIFY is
//! never sent inside a write transaction: a notifying commit takes a global
//! lock and would serialize all writers again. Callers send one notification
//! per burst of writes through [`Store::notify_changes`] (debounced), and
//! writes made through this very process wake local waiters directly.

mod changes;
mod credentials;
mod directories;
mod errors;
mod groups;
mod head;
mod lists;
mod notify;
mod rekey;
mod snapshot;
mod users;

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use self::changes::NewChange;
use self::errors::map_db;
use self::head::HeadState;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::snapshot_slots::{DEFAULT_SNAPSHOT_CONNECTIONS, SnapshotSlots};
use crate::{GroupUpdateFn, MemberPages, Store, UserUpdateFn};

/// The embedded migrations of `migrations/postgres`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Advisory lock key held while migrating, so only one replica migrates.
const MIGRATION_LOCK: i64 = 0x526f_7374_6572_4d67; // "RosterMg"

/// How often a transaction that hit a serialization failure or deadlock is
/// run in all before the caller sees [`StoreError::Unavailable`]. A
/// deletion that raced an add needs one replay per racing add.
const ATTEMPTS: u32 = 6;

/// Backoff before the first replay; doubled before each further one, with
/// jitter so that the transactions that collided do not collide again.
const FIRST_BACKOFF: Duration = Duration::from_millis(2);

/// The PostgreSQL store. Cheap to clone (shares the pools and the head).
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections of initial-state snapshots, which hold a REPEATABLE READ
    /// transaction as long as their consumer reads: apart from `pool`, so
    /// they can never starve writes (see `snapshot_slots`).
    snapshots: PgPool,
    snapshot_slots: SnapshotSlots,
    head: Arc<Mutex<HeadState>>,
    notifier: Arc<notify::Notifier>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects a pool of at most `max_connections` (plus one dedicated
    /// LISTEN connection, opened on the first [`Store::wait_for_changes`],
    /// and up to [`crate::DEFAULT_SNAPSHOT_CONNECTIONS`] snapshot
    /// connections, opened on demand; see
    /// [`PgStore::with_snapshot_connections`]).
    /// Does not migrate: call [`PgStore::migrate`].
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<PgStore> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|_| StoreError::Invalid("invalid PostgreSQL URL".into()))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(map_db)?;
        Ok(PgStore {
            snapshots: snapshot_pool(&options, DEFAULT_SNAPSHOT_CONNECTIONS),
            snapshot_slots: SnapshotSlots::new(DEFAULT_SNAPSHOT_CONNECTIONS),
            pool,
            head: Arc::new(Mutex::new(HeadState::default())),
            notifier: Arc::new(notify::Notifier::new(options)),
        })
    }

    /// Caps concurrent initial-state snapshots at `connections` (at least
    /// one), each on its own connection outside the main pool. Call before
    /// the store is shared: clones made earlier keep the old cap.
    pub fn with_snapshot_connections(mut self, connections: u32) -> PgStore {
        let options = self.pool.connect_options();
        self.snapshots = snapshot_pool(&options, connections);
        self.snapshot_slots = SnapshotSlots::new(connections);
        self
    }

    /// Applies the embedded migrations, holding an advisory lock so that
    /// replicas starting together migrate one at a time.
    pub async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(map_db)?;
        let result = match MIGRATOR.run(&mut *conn).await {
            Ok(()) => rekey::finish_user_name_key(&mut conn).await,
            Err(e) => {
                tracing::error!(error = %e, "migration failed");
                Err(StoreError::Internal("migration failed".into()))
            }
        };
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
        result?;
        unlock.map_err(map_db)?;
        Ok(())
    }

    /// The underlying pool (for tests and tools; all SQL stays in this crate).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn conn(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(map_db)
    }

    async fn begin_write(&self) -> StoreResult<WriteTx> {
        Ok(WriteTx {
            tx: self.pool.begin().await.map_err(map_db)?,
            changes: Vec::new(),
        })
    }

    /// Replays `op` when it failed on a serialization failure or deadlock
    /// (or a deletion found a group it had not locked), after a jittered
    /// exponential backoff.
    async fn retrying<T, F, Fut>(&self, mut op: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if errors::is_retryable(&e) && attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Advances the stable head using `conn` and returns it (possibly moved
    /// further by concurrent callers).
    async fn advance_on(&self, conn: &mut PgConnection, after: i64) -> StoreResult<i64> {
        self.advance_in_snapshot(conn, after).await?;
        Ok(self.known_head())
    }

    /// Advances the stable head with observations read on `conn` and returns
    /// the head *as established by those observations alone*: when `conn` is
    /// in a REPEATABLE READ transaction, every revision at or below the
    /// returned head is visible in its snapshot. (The shared head may have
    /// been moved further meanwhile by a caller with a newer snapshot, so it
    /// cannot be used for a cursor.) The state is copied before the first
    /// query, i.e. before the snapshot is taken, so what it already knows was
    /// resolved before that snapshot.
    async fn advance_in_snapshot(&self, conn: &mut PgConnection, after: i64) -> StoreResult<i64> {
        let mut local = self.head.lock().unwrap_or_else(|p| p.into_inner()).clone();
        loop {
            let from = local.head().max(after);
            let obs = changes::observe(conn, from).await?;
            let batch_full = obs.revisions.len() as i64 >= changes::HEAD_BATCH;
            let last_read = obs.revisions.last().copied();
            let head = local.observe(&obs);
            self.head
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .observe(&obs);
            // A full batch walked to its end may have more behind it.
            if !(batch_full && last_read == Some(head)) {
                return Ok(head);
            }
        }
    }

    fn known_head(&self) -> i64 {
        self.head.lock().unwrap_or_else(|p| p.into_inner()).head()
    }
}

/// The snapshot connections, opened on demand: a slot is taken before a
/// connection is asked for, so the pool never has a waiter beyond its size.
fn snapshot_pool(options: &PgConnectOptions, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(SnapshotSlots::new(connections).cap())
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options.clone())
}

/// A write transaction collecting the change rows it appends at commit.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Postgres>,
    changes: Vec<NewChange>,
}

impl WriteTx {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    fn emit(&mut self, change: NewChange) {
        self.changes.push(change);
    }

    /// Appends the change rows (taking their revisions) and commits.
    async fn commit(mut self, store: &PgStore) -> StoreResult<()> {
        changes::insert_changes(&mut self.tx, &self.changes).await?;
        self.tx.commit().await.map_err(map_db)?;
        if !self.changes.is_empty() {
            store.notifier.local_commit();
        }
        Ok(())
    }
}

/// A random wait in `[b/2, b]`, `b` = [`FIRST_BACKOFF`] doubled per earlier replay.
fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_BACKOFF * 2u32.pow(attempt.saturating_sub(1).min(8));
    ceiling.mul_f64(rand::random_range(0.5..=1.0))
}

/// Fails with [`StoreError::VersionMismatch`] when `expected` is set and differs.
fn check_version(expected: Option<i64>, actual: i64) -> StoreResult<()> {
    match expected {
        Some(expected) if expected != actual => {
            Err(StoreError::VersionMismatch { expected, actual })
        }
        _ => Ok(()),
    }
}

/// The members of `fields` whose values differ between two JSON objects.
fn diff_fields(
    old: &serde_json::Value,
    new: &serde_json::Value,
    fields: &[&str],
) -> Vec<FieldChange> {
    fields
        .iter()
        .filter(|f| old[**f] != new[**f])
        .map(|f| FieldChange {
            field: (*f).to_owned(),
            previous: old[*f].clone(),
            current: new[*f].clone(),
        })
        .collect()
}

#[async_trait]
impl Store for PgStore {
    fn pool_stats(&self) -> Option<crate::PoolStats> {
        Some(crate::PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        })
    }

    async fn create_directory(&self, new: NewDirectory) -> StoreResult<Directory> {
        self.retrying(|| self.create_directory_impl(new.clone()))
            .await
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
        self.retrying(|| self.update_directory_impl(id, update.clone()))
            .await
    }

    async fn delete_directory(&self, id: DirectoryId) -> StoreResult<()> {
        self.retrying(|| self.delete_directory_impl(id)).await
    }

    async fn create_token(&self, new: NewToken) -> StoreResult<Token> {
        self.retrying(|| self.create_token_impl(new.clone())).await
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
        self.retrying(|| self.create_user_impl(dir, user.clone()))
            .await
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
        self.retrying(|| self.replace_user_impl(dir, id, if_version, user.clone()))
            .await
    }

    async fn update_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        update: UserUpdateFn,
    ) -> StoreResult<User> {
        // A replay calls the callback again on the state it then finds.
        self.retrying(|| self.update_user_impl(dir, id, if_version, &update))
            .await
    }

    async fn delete_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
    ) -> StoreResult<()> {
        self.retrying(|| self.delete_user_impl(dir, id, if_version))
            .await
    }

    async fn create_group(&self, dir: DirectoryId, group: GroupWrite) -> StoreResult<Group> {
        self.retrying(|| self.create_group_impl(dir, group.clone()))
            .await
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
        self.retrying(|| self.replace_group_impl(dir, id, if_version, group.clone()))
            .await
    }

    async fn update_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        update: GroupUpdateFn,
    ) -> StoreResult<Group> {
        self.retrying(|| self.update_group_impl(dir, id, if_version, &update))
            .await
    }

    async fn delete_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
    ) -> StoreResult<()> {
        self.retrying(|| self.delete_group_impl(dir, id, if_version))
            .await
    }

    async fn add_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[MemberRef],
    ) -> StoreResult<(i64, i64)> {
        self.retrying(|| self.add_members_impl(dir, group, members))
            .await
    }

    async fn remove_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[uuid::Uuid],
    ) -> StoreResult<(i64, i64)> {
        self.retrying(|| self.remove_members_impl(dir, group, members))
            .await
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
        let mut conn = self.conn().await?;
        let stable_head = self.advance_on(&mut conn, 0).await?;
        let (pruned_through, epoch, allocated_head) = changes::log_state(&mut conn).await?;
        Ok(LogBounds {
            pruned_through,
            stable_head,
            allocated_head,
            epoch,
        })
    }

    async fn read_changes(
        &self,
        filter: &ChangeFilter,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        let mut conn = self.conn().await?;
        changes::read(&mut conn, filter, after, up_to, limit).await
    }

    async fn advance_stable_head(&self, after: i64) -> StoreResult<i64> {
        let mut conn = self.conn().await?;
        self.advance_on(&mut conn, after).await
    }

    async fn snapshot(
        &self,
        dir: Option<DirectoryId>,
    ) -> StoreResult<(Cursor, BoxStream<'static, StoreResult<SnapshotItem>>)> {
        self.snapshot_impl(dir).await
    }

    async fn prune_changes(&self, keep_secs: i64) -> StoreResult<i64> {
        let mut conn = self.conn().await?;
        let head = self.advance_on(&mut conn, 0).await?;
        changes::prune(&mut conn, keep_secs.max(0), head).await
    }

    async fn renew_log_epoch(&self) -> StoreResult<i64> {
        changes::renew_epoch(&mut *self.conn().await?).await
    }

    fn newest_committed(&self) -> Option<i64> {
        Some(self.head.lock().unwrap_or_else(|p| p.into_inner()).newest())
    }

    async fn wait_for_changes(&self, timeout: Duration) -> StoreResult<()> {
        self.notifier.wait(timeout).await;
        Ok(())
    }

    async fn notify_changes(&self) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify('roster_changes', $1)")
            .bind(self.notifier.origin())
            .execute(&self.pool)
            .await
            .map_err(map_db)?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_db)?;
        Ok(())
    }
}
