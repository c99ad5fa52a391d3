//! The per-process fan-out: one tailer reads the change log and publishes
//! contiguous batches; the hub also keeps the fan-out's counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::bytes::Bytes;
use roster_proto::directory::encode_change;
use roster_store::{ChangeFilter, ChangeKind, ChangeRecord, Store, StoreError};
use tokio::sync::{Notify, broadcast, watch};

use super::{READ_PAGE, WatchConfig};
use crate::convert;
use crate::lag::LagClock;

/// Batches the broadcast keeps for watchers that fall behind before they
/// must catch up from the database instead.
const BROADCAST_CAPACITY: usize = 256;
/// At most one cross-replica notification per this interval (it bounds how
/// much later than local watchers other replicas' watchers are woken).
const NOTIFY_INTERVAL: Duration = Duration::from_millis(5);
/// Delay before retrying after a failed store call in a background loop.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// A contiguous range of the change log: every committed change with
/// `after < revision <= up_to`, in revision order. Each record is converted
/// and encoded once, here; every watcher's frames share those bytes, so
/// 10,000 watchers cost 10,000 reference counts per change, not 10,000
/// copies of a `Change` that each stream encodes again.
#[derive(Debug)]
pub struct Batch {
    pub(super) after: i64,
    pub(super) up_to: i64,
    pub(super) records: Vec<ChangeRecord>,
    /// The encoded `Change` of each record, in the same order.
    pub(super) encoded: Vec<Bytes>,
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
pub(super) fn encoded_change(record: &ChangeRecord) -> Bytes {
    encode_change(&convert::change(record))
}

/// What the tailer publishes.
#[derive(Debug, Clone)]
pub(super) enum HubEvent {
    Batch(Arc<Batch>),
    /// The head moved without a batch (the tailer's start, or rows pruned
    /// under it): every watcher must re-read from the database, which also
    /// detects an expired position.
    Reset,
}

struct HubState {
    /// Everything up to here has been published.
    head: i64,
    sender: broadcast::Sender<HubEvent>,
}

/// The per-process change fan-out: one tailer, any number of watchers.
pub struct ChangeHub {
    pub(super) store: Arc<dyn Store>,
    pub(super) config: WatchConfig,
    state: Mutex<HubState>,
    /// Wakes the tailer after a local write.
    tailer_wake: Notify,
    /// Wakes the notifier, which tells other replicas (coalescing).
    peer_wake: Notify,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) stats: Counters,
    /// Directories read by RPC handlers; invalidated by directory events.
    directories: crate::directory_cache::DirectoryCache,
    /// The published head, for background readers of the log (webhook
    /// delivery) that only need to know that it moved, not the batches.
    heads: watch::Sender<i64>,
}

/// Live counters of the fan-out, for operators and tests.
#[derive(Debug, Default)]
pub(super) struct Counters {
    open_watchers: AtomicUsize,
    pub(super) slow_consumers_cut: AtomicU64,
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
pub(super) struct OpenWatcher(Arc<ChangeHub>, u64);

impl OpenWatcher {
    pub(super) fn new(hub: &Arc<ChangeHub>, sent: &Arc<AtomicI64>) -> Self {
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
            heads: watch::channel(0).0,
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

    /// Called after every successful change-log write, from the services'
    /// one write path: wakes the local tailer at once and (debounced) the
    /// other replicas.
    pub fn local_write(&self) {
        // A store that wakes its waiters on commit already did, before this
        // write's caller got its answer; a second wake-up would only send
        // the tailer to the database for nothing.
        if !self.store.wakes_on_commit() {
            // notify_one stores a permit when nobody waits, so a write that
            // lands while the tailer is busy still wakes it once afterwards.
            self.tailer_wake.notify_one();
        }
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
    pub(super) fn subscribe(&self) -> (broadcast::Receiver<HubEvent>, i64) {
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
                self.heads.send_replace(state.head);
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
        self.heads.send_replace(state.head);
    }

    fn publish_reset(&self) {
        self.directories.clear();
        let _ = self.lock().sender.send(HubEvent::Reset);
    }

    /// Moves the head without a batch (the tailer's start, a pruned log).
    /// A watcher that subscribed below the new head would wait for a batch
    /// that never covers the rows it skips — at start-up, writes committed
    /// before the tailer's first look — so it is told to re-read from the
    /// database, as after a lag.
    fn set_initial_head(&self, head: i64) {
        let mut state = self.lock();
        let skipped = head > state.head;
        state.head = state.head.max(head);
        self.heads.send_replace(state.head);
        if skipped && state.sender.receiver_count() > 0 {
            let _ = state.sender.send(HubEvent::Reset);
        }
    }

    /// The published head, notified whenever it moves: a reader that needs
    /// no batches (webhook delivery) waits on this and reads the log itself.
    pub fn head_updates(&self) -> watch::Receiver<i64> {
        self.heads.subscribe()
    }

    pub(super) fn is_closed(&self) -> bool {
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
pub(super) fn page_end(records: &[ChangeRecord], target: i64) -> i64 {
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
            directory_id: roster_store::DirectoryId::new(),
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
}
