//! Group commit: concurrent writes that share a key are gathered and written
//! in one store transaction, so what they contend on — a group's row lock,
//! a transaction commit (its WAL flush) — is paid once per batch instead of
//! once per request. Three writes use it: PATCHes of ONE group
//! ([`Store::update_group_batch`], the group's row locked and written once
//! per batch), user creations in one directory
//! ([`Store::create_users`], one commit per batch) and the progress of the
//! webhook endpoints this replica delivers for
//! ([`Store::record_webhooks_progress`], one statement per batch).
//!
//! Gathering: a write of a key queues itself and, while fewer than
//! [`BatchWrite::RUNNERS`] runner tasks serve that key (and, beyond the
//! first, at least [`BatchWrite::EXTRA_RUNNER_BACKLOG`] writes wait), starts
//! another; writes arriving while the runners are writing queue behind them
//! and form the next batches (at most [`BatchWrite::MAX_BATCH`] each, in
//! arrival order). One runner per group for PATCHes (they would wait for
//! the same row lock); for creations one per directory, up to four while
//! more than a whole batch waits (they share no lock, only the commit, but
//! overlapping commits delay the directory's watchers). Nobody waits for a batch to fill: a
//! lone write goes alone, exactly as without batching, and under contention
//! the batch is what arrived during the previous batch's transaction — the
//! wait is at most one transaction, which a request used to spend waiting
//! for the lock or the WAL flush anyway. Each request gets its own result
//! once its batch committed; the store isolates failures. The runner is a
//! task of its own, so a caller that goes away cannot abandon a batch
//! half-way.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use roster_store::produced::{self, Produced};
use roster_store::{
    DirectoryId, EndpointProgress, Group, GroupEdit, GroupId, Store, StoreError, StoreResult, User,
    UserWrite,
};
use roster_telemetry::metrics::{Histogram, WriterLabels};
use tokio::sync::oneshot;
use tonic::async_trait;

/// One kind of write that can be batched.
#[async_trait]
pub(crate) trait BatchWrite: Send + Sync + 'static {
    /// What a batch shares (a group, a directory).
    type Key: Copy + Eq + Hash + Send + Sync + 'static;
    type Item: Send + 'static;
    type Done: Send + 'static;
    /// The writer's label in `roster_write_batch_size`.
    const NAME: &'static str;
    /// Batches of one key written at once: 1 where they would only queue
    /// for the same row lock, more where they contend on nothing but the
    /// commit itself.
    const RUNNERS: usize;
    /// Writes that must be waiting before a runner beyond the first starts
    /// (and below which such a runner retires): 1 where overlapping
    /// batches cost nothing, more where they do.
    const EXTRA_RUNNER_BACKLOG: usize = 1;
    /// The largest batch: bounds one transaction's length and lock time.
    const MAX_BATCH: usize;
    /// Waits, before a batch is taken, for writes known to be coming
    /// (none by default: a batch is what arrived meanwhile).
    async fn gather(&self) {}
    /// A write that arrived alone.
    async fn one(&self, key: Self::Key, item: Self::Item) -> StoreResult<Self::Done>;
    /// A batch: one result per item, in order.
    async fn many(&self, key: Self::Key, items: Vec<Self::Item>) -> Vec<StoreResult<Self::Done>>;
    /// Whether a change-log row of a batch's commit belongs to the item
    /// that produced `done`.
    fn produced(done: &Self::Done, row: &Produced) -> bool;
}

/// A write's result, with the change-log rows its commit appended (the
/// runner commits on the caller's behalf, in its own task, so it hands the
/// rows back for the caller's `produced::collect`).
type Answer<W> = (StoreResult<<W as BatchWrite>::Done>, Vec<Produced>);

type Queue<W> = Vec<(<W as BatchWrite>::Item, oneshot::Sender<Answer<W>>)>;

/// A key's waiting writes and how many runners serve it.
struct Line<W: BatchWrite> {
    waiting: Queue<W>,
    runners: usize,
}

/// The per-key queues of one process for one kind of write.
pub(crate) struct Batcher<W: BatchWrite> {
    writer: W,
    /// This writer's series of `roster_write_batch_size`.
    batch_sizes: Histogram,
    /// A key is present exactly while at least one runner serves it.
    queues: Mutex<HashMap<W::Key, Line<W>>>,
}

impl<W: BatchWrite> Batcher<W> {
    pub(crate) fn new(writer: W) -> Arc<Self> {
        let batch_sizes = roster_telemetry::metrics::metrics()
            .write_batch_size
            .get_or_create(&WriterLabels {
                writer: W::NAME.into(),
            })
            .clone();
        Arc::new(Self {
            writer,
            batch_sizes,
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// Writes `item`, batched with the concurrent writes of `key`.
    pub(crate) async fn write(
        self: &Arc<Self>,
        key: W::Key,
        item: W::Item,
    ) -> StoreResult<W::Done> {
        self.enqueue(key, item, || {}).await
    }

    /// Queues `item` at once, calls `queued` (before a runner is started, so
    /// that what a [`BatchWrite::gather`] waits for is already settled when
    /// the runner looks) and returns a future of its result.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        key: W::Key,
        item: W::Item,
        queued: impl FnOnce(),
    ) -> impl std::future::Future<Output = StoreResult<W::Done>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queues = self.queues.lock().expect("group commit queues");
            let line = queues.entry(key).or_insert_with(|| Line {
                waiting: Vec::new(),
                runners: 0,
            });
            line.waiting.push((item, reply));
            // Another runner only while the ones running are all busy, and
            // beyond the first only for a backlog worth it.
            let start = line.runners == 0
                || (line.runners < W::RUNNERS && line.waiting.len() >= W::EXTRA_RUNNER_BACKLOG);
            if start {
                line.runners += 1;
            }
            start
        };
        queued();
        if start {
            tokio::spawn(Arc::clone(self).run(key));
        }
        async move {
            let (result, produced) = answer.await.unwrap_or_else(|_| {
                let abandoned = StoreError::Unavailable("batched write abandoned".into());
                (Err(abandoned), Vec::new())
            });
            produced::report(produced);
            result
        }
    }

    /// Writes the key's queue batch by batch until it is empty.
    async fn run(self: Arc<Self>, key: W::Key) {
        let mut guard = Runner {
            batcher: &self,
            key,
            finished: false,
        };
        loop {
            self.writer.gather().await;
            let Some(batch) = self.next_batch(key) else {
                break;
            };
            self.batch_sizes.observe(batch.len() as f64);
            if batch.len() == 1 {
                let (item, reply) = batch.into_iter().next().expect("one");
                let _ = reply.send(produced::collect(self.writer.one(key, item)).await);
                continue;
            }
            let (items, replies): (Vec<W::Item>, Vec<_>) = batch.into_iter().unzip();
            let (results, rows) = produced::collect(self.writer.many(key, items)).await;
            for (reply, result) in replies.into_iter().zip(results) {
                let own = match &result {
                    Ok(done) => rows
                        .iter()
                        .filter(|r| W::produced(done, r))
                        .copied()
                        .collect(),
                    Err(_) => Vec::new(),
                };
                let _ = reply.send((result, own));
            }
        }
        guard.finished = true;
    }

    /// Takes the next batch, or retires the runner when the queue is empty
    /// (and the key with its last runner).
    fn next_batch(&self, key: W::Key) -> Option<Queue<W>> {
        let mut queues = self.queues.lock().expect("group commit queues");
        let line = queues.get_mut(&key)?;
        // An extra runner leaves once the backlog that started it is gone:
        // the others take what still waits.
        let extra_idle = line.runners > 1 && line.waiting.len() < W::EXTRA_RUNNER_BACKLOG;
        if line.waiting.is_empty() || extra_idle {
            line.runners -= 1;
            if line.runners == 0 {
                queues.remove(&key);
            }
            return None;
        }
        let n = line.waiting.len().min(W::MAX_BATCH);
        Some(line.waiting.drain(..n).collect())
    }
}

/// Retires a runner that ends without emptying its queue (a panic); the
/// last one removes the queue, so the key is not left without a runner and
/// the queued callers get an error.
struct Runner<'a, W: BatchWrite> {
    batcher: &'a Batcher<W>,
    key: W::Key,
    finished: bool,
}

impl<W: BatchWrite> Drop for Runner<'_, W> {
    fn drop(&mut self) {
        if !self.finished
            && let Ok(mut queues) = self.batcher.queues.lock()
            && let Some(line) = queues.get_mut(&self.key)
        {
            line.runners = line.runners.saturating_sub(1);
            if line.runners == 0 {
                queues.remove(&self.key);
            }
        }
    }
}

/// PATCHes of one group.
pub(crate) struct GroupPatches(pub(crate) Arc<dyn Store>);

#[async_trait]
impl BatchWrite for GroupPatches {
    type Key = (DirectoryId, GroupId);
    type Item = GroupEdit;
    type Done = Group;
    const NAME: &'static str = "group_patches";
    /// The group's row lock would serialize them anyway.
    const RUNNERS: usize = 1;
    const MAX_BATCH: usize = 64;

    async fn one(&self, (dir, id): Self::Key, edit: GroupEdit) -> StoreResult<Group> {
        self.0
            .update_group(dir, id, edit.if_version, edit.update)
            .await
    }

    async fn many(&self, (dir, id): Self::Key, edits: Vec<GroupEdit>) -> Vec<StoreResult<Group>> {
        self.0.update_group_batch(dir, id, edits).await
    }

    /// Each edit of a batch gets its own version, and its rows carry it.
    fn produced(done: &Group, row: &Produced) -> bool {
        row.resource_id == done.id.0 && row.version == done.version
    }
}

/// User creations in one directory.
pub(crate) struct UserCreates(pub(crate) Arc<dyn Store>);

#[async_trait]
impl BatchWrite for UserCreates {
    type Key = DirectoryId;
    type Item = UserWrite;
    type Done = User;
    const NAME: &'static str = "user_creates";
    /// Creations lock nothing shared: a few batches can commit side by
    /// side, which pays when the backlog is more than one batch (POST
    /// /Bulk, many importers)...
    const RUNNERS: usize = 4;
    /// ...but not for less: one runner already takes everything waiting,
    /// and overlapping commits of one directory hold its watchers back (a
    /// batch's events wait for every older revision's commit) and only
    /// add PostgreSQL backends competing for the cores.
    const EXTRA_RUNNER_BACKLOG: usize = Self::MAX_BATCH;
    const MAX_BATCH: usize = 128;

    async fn one(&self, dir: DirectoryId, write: UserWrite) -> StoreResult<User> {
        self.0.create_user(dir, write).await
    }

    async fn many(&self, dir: DirectoryId, writes: Vec<UserWrite>) -> Vec<StoreResult<User>> {
        self.0.create_users(dir, writes).await
    }

    fn produced(done: &User, row: &Produced) -> bool {
        row.resource_id == done.id.0
    }
}

/// The progress of the webhook endpoints one replica delivers for, after
/// each attempt. Every endpoint has at most one write in flight (it sends
/// its next event only once this one is stored), so a batch holds each
/// endpoint once: what finished a request while the previous batch was
/// written, and the answers that arrive while the batch waits (briefly)
/// for the requests still in flight.
pub(crate) struct WebhookProgressWrites {
    pub(crate) store: Arc<dyn Store>,
    /// The lease owner: this replica.
    pub(crate) owner: String,
    /// The endpoints' requests still waiting for an answer.
    pub(crate) in_flight: Arc<crate::webhooks::in_flight::InFlight>,
}

#[async_trait]
impl BatchWrite for WebhookProgressWrites {
    /// One replica, one lease owner: every endpoint's writes go together.
    type Key = ();
    type Item = EndpointProgress;
    /// Whether it was written (the lease and the generation still held).
    type Done = bool;
    const NAME: &'static str = "webhook_progress";
    /// The endpoints' rows share no lock: two statements may overlap, so
    /// a batch never waits for more than one other batch's statement.
    const RUNNERS: usize = 2;
    const MAX_BATCH: usize = 256;

    /// Endpoints that keep up answer together: their progress goes in the
    /// batch of their round, not in two or three statements.
    async fn gather(&self) {
        self.in_flight.settled().await;
    }

    /// Alone, still through the batch statement: it prunes only when asked.
    async fn one(&self, (): (), e: EndpointProgress) -> StoreResult<bool> {
        let mut results = self.many((), vec![e]).await;
        results
            .pop()
            .unwrap_or_else(|| Err(StoreError::Internal("no progress result".into())))
    }

    async fn many(&self, (): (), batch: Vec<EndpointProgress>) -> Vec<StoreResult<bool>> {
        self.store
            .record_webhooks_progress(&self.owner, &batch)
            .await
    }
    /// Progress appends no change-log rows.
    fn produced(_: &bool, _: &Produced) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    /// Answers each item with itself once the test lets a write through,
    /// counting the writes in flight at once.
    struct Gated {
        gate: Arc<Semaphore>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl Gated {
        async fn pass<T>(&self, answer: T) -> T {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            self.gate.acquire().await.expect("gate").forget();
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            answer
        }
    }

    #[async_trait]
    impl BatchWrite for Arc<Gated> {
        type Key = ();
        type Item = u32;
        type Done = u32;
        const NAME: &'static str = "test_gated";
        const RUNNERS: usize = 4;
        const EXTRA_RUNNER_BACKLOG: usize = 3;
        const MAX_BATCH: usize = 3;

        async fn one(&self, (): (), item: u32) -> StoreResult<u32> {
            self.pass(Ok(item)).await
        }
        async fn many(&self, (): (), items: Vec<u32>) -> Vec<StoreResult<u32>> {
            self.pass(items.into_iter().map(Ok).collect()).await
        }
        fn produced(_: &u32, _: &Produced) -> bool {
            false
        }
    }

    fn runners(batcher: &Batcher<Arc<Gated>>) -> usize {
        let queues = batcher.queues.lock().unwrap();
        queues.get(&()).map_or(0, |line| line.runners)
    }

    #[tokio::test]
    async fn a_runner_beyond_the_first_starts_only_for_a_full_backlog() {
        let gated = Arc::new(Gated {
            gate: Arc::new(Semaphore::new(0)),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let batcher = Batcher::new(Arc::clone(&gated));
        let mut answers = vec![tokio::spawn(batcher.enqueue((), 0, || {}))];
        while gated.in_flight.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The first runner holds write 0; two more wait, short of the backlog.
        answers.extend((1..=2).map(|i| tokio::spawn(batcher.enqueue((), i, || {}))));
        assert_eq!(runners(&batcher), 1);
        // A third waiting write makes a backlog: a second runner starts.
        answers.push(tokio::spawn(batcher.enqueue((), 3, || {})));
        assert_eq!(runners(&batcher), 2);
        answers.extend((4..=6).map(|i| tokio::spawn(batcher.enqueue((), i, || {}))));
        gated.gate.add_permits(100);
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.await.unwrap().unwrap(), i as u32);
        }
        assert!(gated.most_in_flight.load(Ordering::SeqCst) <= 3);
        assert_eq!(runners(&batcher), 0, "every runner retired");
        // Every write was in exactly one observed batch, of at most three.
        let series = |name: &str| {
            let rendered = roster_telemetry::metrics::metrics().render();
            let prefix = format!("roster_write_batch_size_{name}{{writer=\"test_gated\"}} ");
            rendered
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map(|v| v.parse::<f64>().unwrap())
        };
        assert_eq!(series("sum"), Some(7.0), "writes in batches");
        assert!(series("count").unwrap() >= 3.0, "batches of at most three");
    }
}
