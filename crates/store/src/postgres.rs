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
//!    (`lock_members`, or the locking part of `add_memberships`' one
//!    statement, which reads every locked row before its insert can run),
//!    or `FOR UPDATE` on the user or group being deleted, which waits for
//!    every add that already holds its key share;
//! 3. then membership rows, and last the change rows (the revisions). A
//!    group write deferred to the commit (`defer_group_write`) goes in the change
//!    rows' statement: its row lock is held since step 1, so it waits for
//!    nothing after the revisions are taken.
//!
//! A deletion reads the groups holding its member before it can lock the
//! member, so an add committed in between would be a group it does not
//! hold: the deletion then rolls back and is replayed (see
//! `remove_from_locked_groups` in the write core) rather than lock a group out of
//! order. What the order cannot exclude (a serialization failure, a path
//! that breaks the rule) is aborted by
//! PostgreSQL with SQLSTATE 40P01/40001 and replayed by the write core's
//! retry policy (`crate::write`) a few times with a short jittered backoff;
//! only then does the caller see [`StoreError::Unavailable`].
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
//! per burst of writes through [`Store::notify_changes`](crate::Store::notify_changes) (debounced), and
//! writes made through this very process wake local waiters directly.

mod changes;
mod coalesce;
mod credentials;
mod document;
pub(crate) mod errors;
mod groups;
mod head;
mod lists;
mod lookups;
mod notify;
mod portal;
mod recent;
mod rekey;
mod snapshot;
mod tx;
mod users;
mod warm;
mod webhooks;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres};

use self::errors::map_db;
use self::head::HeadState;
use self::recent::RecentChanges;
use self::tx::Tx;
use crate::PoolStats;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::portal::NewActivity;
use crate::produced::Produced;
use crate::snapshot_slots::{DEFAULT_SNAPSHOT_CONNECTIONS, SnapshotSlots};
use crate::write::{Backend, ChangeQueue, Pools, ProgressWrite};

/// The embedded migrations of `migrations/postgres`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// How long the stable head may wait for this process's writes in flight
/// (instead of asking the database) to fill a hole below its own commits;
/// past that the hole is looked for in the database as before.
const LOCAL_HOLE_PATIENCE: Duration = Duration::from_millis(5);

/// Advisory lock key held while migrating, so only one replica migrates.
const MIGRATION_LOCK: i64 = 0x526f_7374_6572_4d67; // "RosterMg"

/// The PostgreSQL store. Cheap to clone (shares the pools and the head).
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections of the pool kept between one-statement reads (`warm.rs`).
    warm: Arc<warm::WarmConnections>,
    /// Connections of initial-state snapshots, which hold a REPEATABLE READ
    /// transaction as long as their consumer reads: apart from `pool`, so
    /// they can never starve writes (see `snapshot_slots`).
    snapshots: PgPool,
    snapshot_slots: SnapshotSlots,
    /// Connections of webhook progress writes, apart from `pool`: their
    /// commits do not wait for the WAL flush, and they plan by primary key
    /// (`postgres/webhooks.rs`, `progress_pool`).
    progress: PgPool,
    /// Connections of keyed lookups, planned once per statement (`lookups.rs`).
    lookups: Arc<lookups::Lookups>,
    /// Keyed searches waiting for a lookup connection, run together.
    coalescer: Arc<coalesce::Coalescer>,
    /// The progress connections kept between batches.
    progress_warm: Arc<warm::WarmConnections>,
    head: Arc<Mutex<HeadState>>,
    /// This process's latest committed change rows, for the tailer.
    recent: Arc<Mutex<RecentChanges>>,
    /// Writes of this process that may hold revisions not yet committed.
    taking: Arc<AtomicUsize>,
    /// Since when the head has waited at a hole for local writes in flight.
    hole_since: Arc<Mutex<Option<(i64, Instant)>>>,
    notifier: Arc<notify::Notifier>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects a pool of at most `max_connections` (plus one dedicated
    /// LISTEN connection, opened on the first [`Store::wait_for_changes`](crate::Store::wait_for_changes),
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
            // sqlx pings every connection it hands out (a round trip before
            // each transaction); only one idle long enough for the server to
            // have gone away meanwhile is worth it (as in `warm.rs`).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= warm::ALIVE_BYPASS {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(map_db)?;
        let lookups = Arc::new(lookups::Lookups::new(&options, max_connections.max(1)));
        Ok(PgStore {
            warm: Arc::new(warm::WarmConnections::new(max_connections.max(1))),
            coalescer: Arc::new(coalesce::Coalescer::new(Arc::clone(&lookups))),
            lookups,
            snapshots: snapshot_pool(&options, DEFAULT_SNAPSHOT_CONNECTIONS),
            snapshot_slots: SnapshotSlots::new(DEFAULT_SNAPSHOT_CONNECTIONS),
            progress: webhooks::progress_pool(&options),
            progress_warm: Arc::new(warm::WarmConnections::dedicated(
                webhooks::PROGRESS_CONNECTIONS,
            )),
            pool,
            head: Arc::new(Mutex::new(HeadState::default())),
            recent: Arc::new(Mutex::new(RecentChanges::default())),
            taking: Arc::new(AtomicUsize::new(0)),
            hole_since: Arc::new(Mutex::new(None)),
            notifier: Arc::new(notify::Notifier::new(options)),
        })
    }

    /// Opens `connections` of the pool now (at most its size) and leaves
    /// them idle, and with any, every keyed-lookup connection, so that the
    /// first burst of requests after start-up does not wait for new
    /// connections: each is a PostgreSQL backend to start and, where the
    /// server offers TLS, a handshake, and a burst of them at once stalls
    /// every request behind them. Unused ones close after the pool's idle
    /// timeout, as any other.
    pub async fn warm_up(&self, connections: u32) -> StoreResult<()> {
        if connections == 0 {
            return Ok(());
        }
        let wanted = connections.min(self.pool.options().get_max_connections());
        let opened = futures::future::try_join_all((0..wanted).map(|_| self.pool.acquire()))
            .await
            .map_err(map_db)?;
        drop(opened);
        self.lookups.warm_up().await
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

    /// Closes the pools once every connection is back: the ones parked
    /// between reads first.
    pub async fn close(&self) {
        self.warm.release_all();
        self.progress_warm.release_all();
        self.lookups.close().await;
        self.pool.close().await;
        self.snapshots.close().await;
        self.progress.close().await;
    }

    /// The generic plan of the batched webhook progress statement on a
    /// progress connection, as `EXPLAIN` prints it (for tests: it must find
    /// the delivery state rows by primary key).
    #[doc(hidden)]
    pub async fn webhook_progress_plan(&self) -> StoreResult<String> {
        webhooks::batch_generic_plan(&self.progress).await
    }

    /// One batch of webhook progress on a progress connection, kept out of
    /// its pool between batches (`warm.rs`).
    async fn progress_batch(
        &self,
        owner: &str,
        batch: &[EndpointProgress],
    ) -> StoreResult<std::collections::HashSet<uuid::Uuid>> {
        let mut conn = self.progress_warm.take(&self.progress).await?;
        let written = webhooks::progress_at_once(&mut conn, owner, batch).await;
        if written.is_ok() {
            conn.park();
        }
        written
    }

    /// [`Self::progress_batch`], each endpoint's result; a value one endpoint
    /// cannot store fails the statement, and each then meets its own fate
    /// alone.
    async fn progress_batch_or_each(
        &self,
        owner: &str,
        batch: &[EndpointProgress],
    ) -> Vec<StoreResult<bool>> {
        match self.progress_batch(owner, batch).await {
            Ok(ids) => batch.iter().map(|e| Ok(ids.contains(&e.id.0))).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "batched webhook progress failed; one by one");
                crate::write::each_progress(self, owner, batch).await
            }
        }
    }

    /// The underlying pool (for tests and tools; all SQL stays in this crate).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn conn(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(map_db)
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

    /// Change rows this process just committed: they are kept for the
    /// tailer (`recent.rs`), the head walks over their revisions without a
    /// query (see `head.rs`), local waiters are woken, and the request that
    /// wrote them learns them (`crate::produced`). The rows are kept before
    /// the head moves, so a tailer that sees the new head finds them.
    fn committed(&self, rows: Vec<ChangeRecord>) {
        if rows.is_empty() {
            return;
        }
        let produced: Vec<Produced> = rows.iter().map(changes::produced).collect();
        let revisions: Vec<i64> = produced.iter().map(|p| p.revision).collect();
        self.recent().committed(rows);
        self.head
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .committed_locally(&revisions);
        self.notifier.local_commit();
        crate::produced::report(produced);
    }

    /// Marks a write that takes revisions as in flight until the returned
    /// guard drops: after its commit (whose rows [`PgStore::committed`]
    /// reported), or its failure, or its cancellation.
    fn taking_revisions(&self) -> TakingRevisions {
        self.taking.fetch_add(1, Ordering::AcqRel);
        TakingRevisions {
            taking: Arc::clone(&self.taking),
            notifier: Arc::clone(&self.notifier),
            committed: false,
        }
    }

    /// Whether the head should wait for this process's writes in flight
    /// rather than ask the database: local commits wait above a hole at the
    /// head, no other process is known to have committed, and a local
    /// write that may hold the hole's revisions is still running — it
    /// wakes the tailer when it ends, and then its commit moves the head
    /// with no query at all. An observation now could not resolve the hole
    /// while that write runs; it would only delay the next step. A hole that
    /// stays longer than [`LOCAL_HOLE_PATIENCE`] (an aborted revision, one of
    /// another process not yet announced) is observed as before.
    fn await_local_writes(&self) -> bool {
        let head = {
            let state = self.head.lock().unwrap_or_else(|p| p.into_inner());
            if !state.local_pending() {
                return false;
            }
            state.head()
        };
        if self.notifier.foreign_pending() || self.taking.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut since = self.hole_since.lock().unwrap_or_else(|p| p.into_inner());
        match *since {
            Some((at, start)) if at == head => start.elapsed() < LOCAL_HOLE_PATIENCE,
            _ => {
                *since = Some((head, Instant::now()));
                true
            }
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentChanges> {
        // Plain rows by revision: a panic elsewhere cannot leave them
        // inconsistent.
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The head, when this process's own commits moved it (past `after`)
    /// since the last call and no other process may have committed since
    /// the database was last looked at: then nothing needs the stable-head
    /// query. Any hole left above it (another process's revision, an
    /// aborted one) is looked for in the database by the next call that
    /// finds no local progress.
    fn locally_advanced(&self, after: i64) -> Option<i64> {
        let mut state = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let moved = state.take_local_progress();
        let head = state.head();
        (moved && head > after && !self.notifier.foreign_pending()).then_some(head)
    }
}

/// A write that may hold revisions not yet committed (see
/// [`PgStore::taking_revisions`]); its end wakes the tailer, which may
/// have been waiting for it to fill a hole.
struct TakingRevisions {
    taking: Arc<AtomicUsize>,
    notifier: Arc<notify::Notifier>,
    /// Set once the write's rows went to [`PgStore::committed`], which
    /// woke the waiters already.
    committed: bool,
}

impl TakingRevisions {
    fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for TakingRevisions {
    fn drop(&mut self) {
        self.taking.fetch_sub(1, Ordering::AcqRel);
        if !self.committed {
            self.notifier.local_commit();
        }
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

#[async_trait]
impl Backend for PgStore {
    type Tx = Tx;
    type Db = Postgres;

    fn pools(&self) -> Pools<'_, Postgres> {
        Pools::one(&self.pool)
    }

    async fn begin(&self) -> StoreResult<Tx> {
        Ok(Tx {
            tx: self.pool.begin().await.map_err(map_db)?,
            changes: ChangeQueue::default(),
            now: None,
            group_bump: None,
        })
    }

    async fn commit(&self, mut tx: Tx) -> StoreResult<()> {
        let changes = tx.changes.take();
        let taking = (!changes.is_empty()).then(|| self.taking_revisions());
        let bump = tx.group_bump.take();
        let rows = changes::insert_changes(&mut tx.tx, &changes, bump.as_ref()).await?;
        tx.tx.commit().await.map_err(map_db)?;
        self.committed(rows);
        if let Some(taking) = taking {
            taking.committed();
        }
        Ok(())
    }

    async fn create_user(&self, dir: DirectoryId, write: UserWrite) -> StoreResult<User> {
        self.create_user_impl(dir, write).await
    }

    async fn create_users(
        &self,
        dir: DirectoryId,
        writes: Vec<UserWrite>,
    ) -> Vec<StoreResult<User>> {
        self.create_users_impl(dir, writes).await
    }

    async fn record_activity(&self, entries: &[NewActivity]) -> StoreResult<u64> {
        portal::record_activity(&self.pool, entries).await
    }

    async fn record_webhook_progress(&self, write: ProgressWrite<'_>) -> StoreResult<bool> {
        webhooks::record_progress(&self.progress, write).await
    }

    async fn record_webhooks_progress(
        &self,
        owner: &str,
        batch: &[EndpointProgress],
    ) -> Vec<StoreResult<bool>> {
        if batch.is_empty() {
            return Vec::new();
        }
        if batch.iter().all(|e| e.progress.disable.is_none()) {
            return self.progress_batch_or_each(owner, batch).await;
        }
        // An endpoint turned off (410 Gone) changes its configuration row
        // too: alone, in a transaction of its own (rare).
        let (alone, together): (Vec<usize>, Vec<usize>) =
            (0..batch.len()).partition(|&i| batch[i].progress.disable.is_some());
        let mut results: Vec<Option<StoreResult<bool>>> = (0..batch.len()).map(|_| None).collect();
        if !together.is_empty() {
            let written: Vec<EndpointProgress> =
                together.iter().map(|&i| batch[i].clone()).collect();
            let each = self.progress_batch_or_each(owner, &written).await;
            for (&i, result) in together.iter().zip(each) {
                results[i] = Some(result);
            }
        }
        if !alone.is_empty() {
            let written: Vec<EndpointProgress> = alone.iter().map(|&i| batch[i].clone()).collect();
            let each = crate::write::each_progress(self, owner, &written).await;
            for (&i, result) in alone.iter().zip(each) {
                results[i] = Some(result);
            }
        }
        results.into_iter().flatten().collect()
    }

    async fn ping(&self) -> StoreResult<()> {
        crate::rows::ping(&self.pool).await
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let max = self.pool.options().get_max_connections();
        let stats = PoolStats::of(&[&self.pool], max);
        // Parked between reads: lent by the pool, idle all the same.
        let parked = u32::try_from(self.warm.parked()).unwrap_or(u32::MAX);
        Some(PoolStats {
            idle: stats.idle.saturating_add(parked),
            ..stats
        })
    }
}
