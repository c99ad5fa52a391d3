//! `WatchChanges`: one change tailer per process fanning out to every watcher.
//!
//! # How it fits together
//! The [`ChangeHub`] owns a single tailer task. When woken (by a local write,
//! by the store's cross-process notification, or by a fallback poll) it asks
//! the store to advance the *stable head* — the highest revision below which
//! every revision is committed or known aborted — reads the newly stable
//! changes in pages and publishes each page as a [`Batch`] covering the
//! revision range `(after, up_to]` on a broadcast channel.
//!
//! Each watcher keeps a position (a [`Cursor`]: everything up to `after` has
//! been processed, plus a few revisions above it already seen). It
//! subscribes to the broadcast and reads the hub's head in one atomic step,
//! catches up from the database up to that head, then applies broadcast
//! batches. Because batches are contiguous, a watcher can tell a gap (a
//! batch starting past its position) from an overlap (skipped by revision),
//! and falls back to a database catch-up on any gap, lag or reset. A slow
//! consumer therefore never makes the server buffer without bound: the
//! broadcast drops old batches and the watcher re-reads them from the
//! database at the consumer's pace. See `docs/watch.md` for the guarantees.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use prost::bytes::Bytes;
use roster_proto::directory::watch_changes_frame::Payload;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::{
    Progress, Synced, WatchChangesFrame, WatchChangesRequest, encode_change,
};
use roster_store::{
    ChangeFilter, ChangeKind, ChangeRecord, Cursor, DirectoryId, SnapshotItem, Store, StoreError,
};
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until, timeout};

use crate::convert;
use crate::cursor;
use crate::error::{ServiceError, ServiceResult};
use crate::lag::LagClock;

/// Changes read per database query, by the tailer and by catching-up watchers.
pub const READ_PAGE: i64 = 500;
/// Batches the broadcast keeps for watchers that fall behind before they
/// must catch up from the database instead.
const BROADCAST_CAPACITY: usize = 256;
/// At most one cross-replica notification per this interval (it bounds how
/// much later than local watchers other replicas' watchers are woken).
const NOTIFY_INTERVAL: Duration = Duration::from_millis(5);
/// Delay before retrying after a failed store call in a background loop.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Tuning of the change fan-out.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// A progress marker is sent after this long without any message.
    pub progress_interval: Duration,
    /// A watcher whose send buffer stays full this long is cut off.
    pub slow_consumer_timeout: Duration,
    /// The tailer re-checks the log at least this often even without any
    /// wake-up (covers a lost cross-process notification and aborted holes).
    pub poll_interval: Duration,
    /// Messages buffered per watcher between its task and the gRPC stream.
    /// Small on purpose: it only hands messages over to the stream. A
    /// watcher that cannot send leaves the shared batches in the broadcast
    /// (and re-reads the database once those are gone), so a deeper buffer
    /// only multiplies what 10,000 lagging streams hold each.
    pub buffer: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            progress_interval: Duration::from_secs(5),
            slow_consumer_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            buffer: 8,
        }
    }
}

/// A contiguous range of the change log: every committed change with
/// `after < revision <= up_to`, in revision order. Each record is converted
/// and encoded once, here; every watcher's frames share those bytes, so
/// 10,000 watchers cost 10,000 reference counts per change, not 10,000
/// copies of a `Change` that each stream encodes again.
#[derive(Debug)]
pub struct Batch {
    after: i64,
    up_to: i64,
    records: Vec<ChangeRecord>,
    /// The encoded `Change` of each record, in the same order.
    encoded: Vec<Bytes>,
}

impl Batch {
    fn new(after: i64, up_to: i64, records: Vec<ChangeRecord>) -> Self {
        let encoded = records.iter().map(encoded_change).collect();
        Self {
            after,
            up_to,
            records,
            encoded,
        }
    }
}

/// The frame payload of one change-log record.
fn encoded_change(record: &ChangeRecord) -> Bytes {
    encode_change(&convert::change(record))
}

/// What the tailer publishes.
#[derive(Debug, Clone)]
enum HubEvent {
    Batch(Arc<Batch>),
    /// The tailer may have missed rows (pruned under it): every watcher must
    /// re-read from the database, which detects an expired position.
    Reset,
}

struct HubState {
    /// Everything up to here has been published.
    head: i64,
    sender: broadcast::Sender<HubEvent>,
}

/// The per-process change fan-out: one tailer, any number of watchers.
pub struct ChangeHub {
    store: Arc<dyn Store>,
    config: WatchConfig,
    state: Mutex<HubState>,
    /// Wakes the tailer after a local write.
    tailer_wake: Notify,
    /// Wakes the notifier, which tells other replicas (coalescing).
    peer_wake: Notify,
    shutdown: watch::Sender<bool>,
    stats: Counters,
    /// Directories read by RPC handlers; invalidated by directory events.
    directories: crate::directory_cache::DirectoryCache,
}

/// Live counters of the fan-out, for operators and tests.
#[derive(Debug, Default)]
struct Counters {
    open_watchers: AtomicUsize,
    slow_consumers_cut: AtomicU64,
    /// Last revision sent by each open watcher, for the lag metric.
    positions: Mutex<HashMap<u64, Arc<AtomicI64>>>,
    next_watcher: AtomicU64,
}

/// A snapshot of the fan-out's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchStats {
    /// Watch streams currently served by this process.
    pub open_watchers: usize,
    /// Streams ended because their consumer did not read for too long.
    pub slow_consumers_cut: u64,
}

/// Counts a watcher as open for as long as it lives.
struct OpenWatcher(Arc<ChangeHub>, u64);

impl OpenWatcher {
    fn new(hub: &Arc<ChangeHub>, sent: &Arc<AtomicI64>) -> Self {
        hub.stats.open_watchers.fetch_add(1, Ordering::Relaxed);
        let id = hub.stats.next_watcher.fetch_add(1, Ordering::Relaxed);
        lock_positions(&hub.stats).insert(id, Arc::clone(sent));
        Self(Arc::clone(hub), id)
    }
}

impl Drop for OpenWatcher {
    fn drop(&mut self) {
        self.0.stats.open_watchers.fetch_sub(1, Ordering::Relaxed);
        lock_positions(&self.0.stats).remove(&self.1);
    }
}

fn lock_positions(stats: &Counters) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<AtomicI64>>> {
    // Plain map of counters: a panic elsewhere cannot leave it inconsistent.
    stats.positions.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChangeHub {
    /// A hub over `store`; call [`ChangeHub::spawn_tasks`] to start tailing.
    pub fn new(store: Arc<dyn Store>, config: WatchConfig) -> Arc<Self> {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        Arc::new(Self {
            store,
            config,
            state: Mutex::new(HubState { head: 0, sender }),
            tailer_wake: Notify::new(),
            peer_wake: Notify::new(),
            shutdown: watch::channel(false).0,
            stats: Counters::default(),
            directories: Default::default(),
        })
    }

    /// Starts the tailer and the cross-process notifier. They stop on
    /// [`ChangeHub::close`] or when the handles are aborted.
    pub fn spawn_tasks(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(Arc::clone(self).run_tailer()),
            tokio::spawn(Arc::clone(self).run_notifier()),
            tokio::spawn(Arc::clone(self).run_metrics()),
        ]
    }

    /// Publishes the fan-out's gauges (streams, head, lag, pool) every second.
    async fn run_metrics(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let mut shutdown = self.shutdown.subscribe();
        let mut clock = LagClock::default();
        loop {
            tokio::select! {
                _ = ticker.tick() => self.record_metrics(&mut clock),
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    fn record_metrics(&self, clock: &mut LagClock) {
        let m = roster_telemetry::metrics::metrics();
        let head = self.head();
        // As of the tailer's last look at the log (at least every poll
        // interval): no query of its own.
        if let Some(newest) = self.store.newest_committed() {
            m.head_lag.set((newest - head).max(0));
            let waited = clock.observe(newest, head, std::time::Instant::now());
            m.head_lag_seconds.set(waited.as_secs_f64());
        }
        let oldest_sent = lock_positions(&self.stats)
            .values()
            .map(|p| p.load(Ordering::Relaxed))
            .filter(|p| *p > 0)
            .min();
        m.change_log_head.set(head);
        m.watch_lag
            .set(oldest_sent.map_or(0, |sent| (head - sent).max(0)));
        m.watch_streams.set(
            i64::try_from(self.stats.open_watchers.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        if let Some(pool) = self.store.pool_stats() {
            m.set_pool(pool.size, pool.idle, pool.max);
        }
    }

    /// Called by RPC handlers after every successful write: wakes the local
    /// tailer at once and (debounced) the other replicas.
    pub fn local_write(&self) {
        // notify_one stores a permit when nobody waits, so a write that lands
        // while the tailer is busy still wakes it once afterwards.
        self.tailer_wake.notify_one();
        self.peer_wake.notify_one();
    }

    /// Ends the tailer and every watcher (their streams end with UNAVAILABLE).
    pub fn close(&self) {
        self.shutdown.send_replace(true);
    }

    /// The fan-out's counters.
    pub fn stats(&self) -> WatchStats {
        WatchStats {
            open_watchers: self.stats.open_watchers.load(Ordering::Relaxed),
            slow_consumers_cut: self.stats.slow_consumers_cut.load(Ordering::Relaxed),
        }
    }

    /// The directory cache shared by this process's RPC handlers.
    pub fn directories(&self) -> &crate::directory_cache::DirectoryCache {
        &self.directories
    }

    /// The highest revision published to watchers.
    pub fn head(&self) -> i64 {
        self.lock().head
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // The state is a pair of plain values; a panic elsewhere cannot leave
        // it inconsistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes and reads the head in one step: every batch after the
    /// returned head will be received.
    fn subscribe(&self) -> (broadcast::Receiver<HubEvent>, i64) {
        let state = self.lock();
        (state.sender.subscribe(), state.head)
    }

    /// Publishes the records of `(after, up_to]`. Nobody watching, nothing
    /// is encoded: the head moves under the lock [`ChangeHub::subscribe`]
    /// takes, so a watcher subscribing later starts from the new head.
    fn publish(&self, after: i64, up_to: i64, records: Vec<ChangeRecord>) {
        for r in &records {
            if matches!(
                r.kind,
                ChangeKind::DirectoryUpdated | ChangeKind::DirectoryDeleted
            ) {
                self.directories.forget(r.directory_id);
            }
        }
        {
            let mut state = self.lock();
            if state.sender.receiver_count() == 0 {
                state.head = state.head.max(up_to);
                return;
            }
        }
        // Encoded outside the lock; a watcher subscribing meanwhile still
        // sees the old head and so receives this batch.
        let batch = Arc::new(Batch::new(after, up_to, records));
        let mut state = self.lock();
        state.head = state.head.max(up_to);
        // Every receiver may have left meanwhile: that is fine.
        let _ = state.sender.send(HubEvent::Batch(batch));
    }

    fn publish_reset(&self) {
        self.directories.clear();
        let _ = self.lock().sender.send(HubEvent::Reset);
    }

    fn set_initial_head(&self, head: i64) {
        let mut state = self.lock();
        state.head = state.head.max(head);
    }

    fn is_closed(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn run_tailer(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        let mut head = loop {
            match self.store.log_bounds().await {
                Ok(bounds) => break bounds.stable_head,
                Err(e) => {
                    tracing::warn!(error = %e, "change tailer cannot read the log bounds; retrying")
                }
            }
            if self.is_closed() || sleep_or_shutdown(RETRY_DELAY, &mut shutdown).await {
                return;
            }
        };
        self.set_initial_head(head);
        while !self.is_closed() {
            if let Err(e) = self.advance(&mut head).await {
                tracing::warn!(error = %e, head, "change tailer failed to advance; will retry");
                if sleep_or_shutdown(RETRY_DELAY, &mut shutdown).await {
                    return;
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = self.tailer_wake.notified() => {}
                r = self.store.wait_for_changes(self.config.poll_interval) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "waiting for change notifications failed");
                        if sleep_or_shutdown(RETRY_DELAY, &mut shutdown).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Publishes everything between `head` and the store's new stable head.
    async fn advance(&self, head: &mut i64) -> Result<(), StoreError> {
        let target = self.store.advance_stable_head(*head).await?;
        while *head < target {
            let read = self
                .store
                .read_changes(&ChangeFilter::default(), *head, target, READ_PAGE)
                .await;
            let records = match read {
                Ok(records) => records,
                // Pruned past the tailer before it read anything: jump to the
                // oldest retained revision; watchers re-read and see OUT_OF_RANGE.
                Err(StoreError::CursorExpired { oldest, .. }) => {
                    tracing::error!(
                        head = *head,
                        oldest,
                        "change log pruned past the tailer; resetting watchers"
                    );
                    *head = oldest.max(*head);
                    self.set_initial_head(*head);
                    self.publish_reset();
                    continue;
                }
                Err(e) => return Err(e),
            };
            // `read_changes` checked the pruning bound in the rows' own
            // snapshot: a page it returns has no holes.
            let up_to = page_end(&records, target);
            self.publish(*head, up_to, records);
            *head = up_to;
        }
        Ok(())
    }

    async fn run_notifier(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = self.peer_wake.notified() => {}
            }
            // One notification in flight at a time; writes meanwhile leave a
            // single permit, so bursts coalesce into one more notification.
            if let Err(e) = self.store.notify_changes().await {
                tracing::warn!(error = %e, "cannot notify other replicas of changes");
            }
            // Under write load a NOTIFY per commit costs the database a
            // statement each; one per interval wakes peers just as well.
            if sleep_or_shutdown(NOTIFY_INTERVAL, &mut shutdown).await {
                return;
            }
        }
    }
}

/// The end of the range a page of `records` covers: the last record's
/// revision when the page is full (more may follow), else `target`.
fn page_end(records: &[ChangeRecord], target: i64) -> i64 {
    match records.last() {
        Some(last) if records.len() as i64 >= READ_PAGE => last.revision,
        _ => target,
    }
}

/// Sleeps; returns true when shutdown was signalled meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = shutdown.changed() => true,
        () = tokio::time::sleep(d) => *shutdown.borrow(),
    }
}

// --- one watcher ---

/// Where a validated watch request starts.
#[derive(Debug, Clone)]
enum StartAt {
    Position(Cursor),
    InitialState,
}

/// The validated parts of a `WatchChangesRequest`.
#[derive(Debug, Clone)]
struct WatchPlan {
    filter: ChangeFilter,
    start: StartAt,
}

/// Validates a request and opens its stream. Errors about the request (bad
/// directory id, bad cursor, expired cursor) are returned here, before the
/// stream starts, so the RPC itself fails with the right status.
pub async fn open(hub: &Arc<ChangeHub>, req: WatchChangesRequest) -> ServiceResult<WatchStream> {
    if hub.is_closed() {
        return Err(ServiceError::ShuttingDown);
    }
    let plan = plan(hub, req).await?;
    let (tx, rx) = mpsc::channel(hub.config.buffer.max(1));
    let (abort_tx, abort_rx) = oneshot::channel();
    let (events, head) = hub.subscribe();
    let watcher = Watcher {
        hub: Arc::clone(hub),
        filter: plan.filter,
        pos: Cursor::default(),
        events,
        subscribed_head: head,
        out: tx,
        last_sent: Instant::now(),
        sent: Arc::new(AtomicI64::new(0)),
    };
    tokio::spawn(watcher.run(plan.start, abort_tx));
    Ok(WatchStream {
        messages: rx,
        abort: Some(abort_rx),
        done: false,
    })
}

async fn plan(hub: &ChangeHub, req: WatchChangesRequest) -> ServiceResult<WatchPlan> {
    let directory_id = match req.directory_id.as_str() {
        "" => None,
        id => Some(id.parse::<DirectoryId>().map_err(|_| {
            ServiceError::InvalidArgument(format!("malformed directory_id {id:?}"))
        })?),
    };
    // Resuming needs no live directory: the log still holds the events of a
    // deleted one (down to its `directory.deleted` tombstone).
    let resumes = matches!(
        req.start,
        Some(Start::AfterCursor(_) | Start::AfterRevision(_))
    );
    if let (Some(dir), false) = (directory_id, resumes) {
        hub.store.get_directory(dir).await?;
    }
    let kinds = req
        .kinds
        .iter()
        .map(|k| {
            convert::store_change_kind(*k)
                .ok_or_else(|| ServiceError::InvalidArgument(format!("unknown change kind {k}")))
        })
        .collect::<ServiceResult<Vec<_>>>()?;
    let start = match req.start {
        None | Some(Start::FromNow(())) => {
            let bounds = hub.store.log_bounds().await?;
            StartAt::Position(Cursor {
                after: bounds.stable_head.max(hub.head()),
                also_seen: Vec::new(),
                epoch: Some(bounds.epoch),
            })
        }
        Some(Start::AfterCursor(text)) => {
            StartAt::Position(checked(hub, cursor::decode(&text)?).await?)
        }
        Some(Start::AfterRevision(after)) if after >= 0 => StartAt::Position(
            checked(
                hub,
                Cursor {
                    after,
                    ..Cursor::default()
                },
            )
            .await?,
        ),
        Some(Start::AfterRevision(r)) => {
            return Err(ServiceError::InvalidArgument(format!(
                "after_revision must not be negative, got {r}"
            )));
        }
        Some(Start::InitialState(())) => StartAt::InitialState,
    };
    Ok(WatchPlan {
        filter: ChangeFilter {
            directory_id,
            kinds,
        },
        start,
    })
}

/// Rejects a resume position the change log does not cover: of another
/// history (epoch), beyond what it has handed out, or pruned. Returns it
/// with the log's epoch, which every cursor of the stream then carries.
///
/// "Beyond" compares with the *allocated* head, not the stable one: a
/// cursor from a replica whose stable head is ahead of this one's is valid
/// here too, and the watcher simply waits for this replica to catch up.
async fn checked(hub: &ChangeHub, pos: Cursor) -> ServiceResult<Cursor> {
    let bounds = hub.store.log_bounds().await?;
    if pos.epoch.is_some_and(|epoch| epoch != bounds.epoch) {
        return Err(ServiceError::CursorOfAnotherHistory);
    }
    let newest = pos.also_seen.iter().copied().fold(pos.after, i64::max);
    if newest > bounds.allocated_head {
        return Err(ServiceError::CursorAhead {
            requested: newest,
            newest: bounds.allocated_head,
        });
    }
    if pos.after < bounds.pruned_through {
        return Err(StoreError::CursorExpired {
            requested: pos.after,
            oldest: bounds.pruned_through,
        }
        .into());
    }
    Ok(Cursor {
        epoch: Some(bounds.epoch),
        ..pos
    })
}

/// Why a watcher stopped.
enum Stop {
    /// The client went away; nothing to report.
    Disconnected,
    /// End the stream with this error.
    Failed(ServiceError),
}

impl From<ServiceError> for Stop {
    fn from(e: ServiceError) -> Self {
        Stop::Failed(e)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Failed(e.into())
    }
}

struct Watcher {
    hub: Arc<ChangeHub>,
    filter: ChangeFilter,
    /// Everything up to here has been delivered or filtered out.
    pos: Cursor,
    events: broadcast::Receiver<HubEvent>,
    /// The hub head read together with `events`' subscription.
    subscribed_head: i64,
    out: mpsc::Sender<WatchChangesFrame>,
    last_sent: Instant,
    /// Last revision sent, shared with the hub's lag metric.
    sent: Arc<AtomicI64>,
}

impl Watcher {
    async fn run(mut self, start: StartAt, abort: oneshot::Sender<ServiceError>) {
        let _open = OpenWatcher::new(&self.hub, &self.sent);
        let result = match start {
            StartAt::Position(pos) => {
                self.pos = pos;
                self.follow().await
            }
            StartAt::InitialState => match self.initial_state().await {
                Ok(()) => self.follow().await,
                Err(stop) => Err(stop),
            },
        };
        if let Err(Stop::Failed(e)) = result {
            if matches!(e, ServiceError::SlowConsumer) {
                self.hub
                    .stats
                    .slow_consumers_cut
                    .fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(error = %e, "watch ended");
            // Ignored when the client already left.
            let _ = abort.send(e);
        }
    }

    /// Streams the snapshot as synthetic events, then SYNCED.
    async fn initial_state(&mut self) -> Result<(), Stop> {
        let (snapshot_cursor, mut items) =
            self.hub.store.snapshot(self.filter.directory_id).await?;
        let revision = snapshot_cursor.after;
        let mut group_directories: HashMap<uuid::Uuid, DirectoryId> = HashMap::new();
        while let Some(item) = items.next().await {
            let item = item?;
            let kind = match &item {
                SnapshotItem::User(_) => ChangeKind::UserCreated,
                SnapshotItem::Group(g) => {
                    group_directories.insert(g.id.0, g.directory_id);
                    ChangeKind::GroupCreated
                }
                SnapshotItem::Membership(_) => ChangeKind::MemberAdded,
            };
            if !self.wants(kind) {
                continue;
            }
            let mut change = convert::snapshot_change(&item);
            if let SnapshotItem::Membership(ms) = &item {
                let dir = self
                    .filter
                    .directory_id
                    .or_else(|| group_directories.get(&ms.group_id.0).copied());
                change.directory_id = dir.map(|d| d.to_string()).unwrap_or_default();
            }
            // A snapshot cannot be resumed half-way: its events carry no cursor.
            let payload = Payload::Change(encode_change(&change));
            self.send(String::new(), revision, payload).await?;
        }
        self.pos = snapshot_cursor;
        let encoded = cursor::encode(&self.pos);
        self.send(encoded, revision, Payload::Synced(Synced {}))
            .await
    }

    fn wants(&self, kind: ChangeKind) -> bool {
        self.filter.kinds.is_empty() || self.filter.kinds.contains(&kind)
    }

    /// Catches up, then follows the hub until the client leaves or fails.
    async fn follow(&mut self) -> Result<(), Stop> {
        let head = self.subscribed_head;
        self.catch_up_to(head).await?;
        let mut shutdown = self.hub.shutdown.subscribe();
        loop {
            if *shutdown.borrow_and_update() {
                return Err(ServiceError::ShuttingDown.into());
            }
            let progress_due = self.last_sent + self.hub.config.progress_interval;
            tokio::select! {
                biased;
                _ = shutdown.changed() => {}
                () = self.out.closed() => return Err(Stop::Disconnected),
                event = self.events.recv() => self.on_event(event).await?,
                () = sleep_until(progress_due) => self.send_progress().await?,
            }
        }
    }

    async fn on_event(
        &mut self,
        event: Result<HubEvent, broadcast::error::RecvError>,
    ) -> Result<(), Stop> {
        match event {
            Ok(HubEvent::Batch(batch)) if batch.after <= self.pos.after => self.apply(&batch).await,
            // A gap (batch past our position), a reset or a lag: re-read
            // from the database at our own pace.
            Ok(HubEvent::Batch(_))
            | Ok(HubEvent::Reset)
            | Err(broadcast::error::RecvError::Lagged(_)) => self.resubscribe_and_catch_up().await,
            Err(broadcast::error::RecvError::Closed) => Err(ServiceError::ShuttingDown.into()),
        }
    }

    async fn resubscribe_and_catch_up(&mut self) -> Result<(), Stop> {
        let (events, head) = self.hub.subscribe();
        self.events = events;
        self.catch_up_to(head).await
    }

    /// Reads `(pos, head]` from the database page by page.
    async fn catch_up_to(&mut self, head: i64) -> Result<(), Stop> {
        while self.pos.after < head {
            let store = &self.hub.store;
            let records = store
                .read_changes(&self.filter, self.pos.after, head, READ_PAGE)
                .await?;
            // An expired position fails the read itself (CursorExpired):
            // the bound and the rows come from one snapshot.
            let up_to = page_end(&records, head);
            let changes = records
                .iter()
                .map(|r| (r.revision, encoded_change(r)))
                .collect();
            self.deliver(changes, up_to).await?;
        }
        Ok(())
    }

    /// Applies a broadcast batch that starts at or before our position.
    async fn apply(&mut self, batch: &Batch) -> Result<(), Stop> {
        if batch.up_to <= self.pos.after {
            return Ok(());
        }
        let fresh = batch
            .records
            .iter()
            .zip(&batch.encoded)
            .filter(|(r, _)| r.revision > self.pos.after && self.filter.matches(r))
            // A reference to the batch's bytes, not a copy.
            .map(|(r, c)| (r.revision, c.clone()))
            .collect();
        self.deliver(fresh, batch.up_to).await
    }

    /// Sends `changes` (already filtered, in revision order, all above our
    /// position) and moves the position to `up_to`.
    async fn deliver(&mut self, changes: Vec<(i64, Bytes)>, up_to: i64) -> Result<(), Stop> {
        let already_seen: HashSet<i64> = self.pos.also_seen.iter().copied().collect();
        for (revision, change) in changes {
            if already_seen.contains(&revision) {
                continue;
            }
            let after = Cursor {
                after: revision,
                also_seen: self.pos.also_seen.clone(),
                epoch: self.pos.epoch,
            };
            self.pos = cursor::normalize(after);
            let encoded = cursor::encode(&self.pos);
            self.send(encoded, revision, Payload::Change(change))
                .await?;
        }
        let end = Cursor {
            after: up_to.max(self.pos.after),
            also_seen: std::mem::take(&mut self.pos.also_seen),
            epoch: self.pos.epoch,
        };
        self.pos = cursor::normalize(end);
        Ok(())
    }

    async fn send_progress(&mut self) -> Result<(), Stop> {
        let encoded = cursor::encode(&self.pos);
        self.send(encoded, self.pos.after, Payload::Progress(Progress {}))
            .await
    }

    /// Sends one message, cutting the consumer off when its buffer stays full.
    async fn send(&mut self, cursor: String, revision: i64, payload: Payload) -> Result<(), Stop> {
        let message = WatchChangesFrame {
            cursor,
            revision,
            payload: Some(payload),
        };
        let permit = match timeout(self.hub.config.slow_consumer_timeout, self.out.reserve()).await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(Stop::Disconnected),
            Err(_) => return Err(ServiceError::SlowConsumer.into()),
        };
        permit.send(message);
        self.last_sent = Instant::now();
        self.sent.fetch_max(revision, Ordering::Relaxed);
        Ok(())
    }
}

/// The response stream of one watch: buffered messages, or — as soon as the
/// watcher gives up (slow consumer, expired cursor, shutdown) — its error.
pub struct WatchStream {
    messages: mpsc::Receiver<WatchChangesFrame>,
    abort: Option<oneshot::Receiver<ServiceError>>,
    done: bool,
}

impl Stream for WatchStream {
    type Item = ServiceResult<WatchChangesFrame>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(abort) = self.abort.as_mut() {
            match Pin::new(abort).poll(cx) {
                Poll::Ready(Ok(error)) => {
                    // The error goes first: buffered messages would only
                    // delay telling a slow consumer to resume elsewhere.
                    self.done = true;
                    self.messages.close();
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Err(_)) => self.abort = None,
                Poll::Pending => {}
            }
        }
        self.messages.poll_recv(cx).map(|m| m.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_end_is_the_target_unless_the_page_is_full() {
        assert_eq!(page_end(&[], 42), 42);
    }

    fn membership_record(revision: i64, kind: ChangeKind) -> ChangeRecord {
        let membership = roster_store::Membership {
            group_id: roster_store::GroupId::new(),
            member_id: uuid::Uuid::new_v4(),
            member_kind: roster_store::MemberKind::User,
        };
        ChangeRecord {
            revision,
            event_id: uuid::Uuid::new_v4(),
            directory_id: DirectoryId::new(),
            kind,
            resource_id: membership.group_id.0,
            version: revision,
            occurred_at: chrono::Utc::now(),
            payload: serde_json::to_value(membership).unwrap(),
            changed_fields: Vec::new(),
        }
    }

    #[test]
    fn a_batch_encodes_each_record_as_its_change() {
        use prost::Message;
        let records = vec![
            membership_record(11, ChangeKind::MemberAdded),
            membership_record(12, ChangeKind::MemberRemoved),
        ];
        let batch = Batch::new(10, 12, records.clone());
        assert_eq!(batch.encoded.len(), records.len());
        for (record, bytes) in records.iter().zip(&batch.encoded) {
            let decoded = roster_proto::directory::Change::decode(bytes.clone()).unwrap();
            assert!(decoded.resource.is_some(), "payload not converted");
            assert_eq!(decoded, convert::change(record));
        }
    }

    #[tokio::test]
    async fn an_abort_is_delivered_before_buffered_messages() {
        let (tx, rx) = mpsc::channel(4);
        let (abort_tx, abort_rx) = oneshot::channel();
        tx.send(WatchChangesFrame::default()).await.unwrap();
        abort_tx.send(ServiceError::SlowConsumer).unwrap();
        let mut stream = WatchStream {
            messages: rx,
            abort: Some(abort_rx),
            done: false,
        };
        let first = stream.next().await.unwrap();
        assert!(matches!(first, Err(ServiceError::SlowConsumer)));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn messages_flow_until_the_watcher_ends() {
        let (tx, rx) = mpsc::channel(4);
        let (abort_tx, abort_rx) = oneshot::channel::<ServiceError>();
        tx.send(WatchChangesFrame {
            revision: 7,
            ..Default::default()
        })
        .await
        .unwrap();
        drop((tx, abort_tx));
        let mut stream = WatchStream {
            messages: rx,
            abort: Some(abort_rx),
            done: false,
        };
        assert_eq!(stream.next().await.unwrap().unwrap().revision, 7);
        assert!(stream.next().await.is_none());
    }
}
