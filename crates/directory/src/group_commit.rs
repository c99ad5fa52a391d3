//! Group commit of group PATCHes: concurrent PATCHes of ONE group are
//! gathered and written in one store transaction
//! ([`Store::update_group_batch`]), so the group's row lock is taken, and
//! its row written, once per batch instead of once per request.
//!
//! Gathering: the first PATCH of a group that finds no batch running
//! starts a runner task for that group and queues itself; PATCHes arriving
//! while a batch is being written queue behind it and form the next batch
//! (at most [`MAX_BATCH`], in arrival order). Nobody waits for a batch to
//! fill: a lone PATCH is written at once, exactly as before (it goes to
//! [`Store::update_group`]), and under contention the batch is what
//! arrived during the previous batch's transaction — the wait is at most
//! one transaction, which a request used to spend waiting for the row lock
//! anyway. Each request gets its own result once its batch committed; the
//! store isolates failures (see [`Store::update_group_batch`]). The runner
//! is a task of its own, so a caller that goes away cannot abandon a batch
//! half-way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use roster_store::{
    DirectoryId, Group, GroupEdit, GroupId, GroupUpdateFn, Store, StoreError, StoreResult,
};
use tokio::sync::oneshot;

/// The largest batch: bounds one transaction's length and lock time.
pub(crate) const MAX_BATCH: usize = 64;

type Key = (DirectoryId, GroupId);

struct Waiting {
    edit: GroupEdit,
    reply: oneshot::Sender<StoreResult<Group>>,
}

/// The per-group queues of one process.
pub(crate) struct GroupCommit {
    store: Arc<dyn Store>,
    /// A key is present exactly while a runner serves that group.
    queues: Mutex<HashMap<Key, Vec<Waiting>>>,
}

impl GroupCommit {
    pub(crate) fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            store,
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// [`Store::update_group`], batched with the concurrent PATCHes of the
    /// same group.
    pub(crate) async fn update_group(
        self: &Arc<Self>,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        update: GroupUpdateFn,
    ) -> StoreResult<Group> {
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            edit: GroupEdit { if_version, update },
            reply,
        };
        let start = {
            let mut queues = self.queues.lock().expect("group commit queues");
            match queues.get_mut(&(dir, id)) {
                Some(queue) => {
                    queue.push(waiting);
                    false
                }
                None => {
                    queues.insert((dir, id), vec![waiting]);
                    true
                }
            }
        };
        if start {
            tokio::spawn(Arc::clone(self).run((dir, id)));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("group write abandoned".into())))
    }

    /// Writes the group's queue batch by batch until it is empty.
    async fn run(self: Arc<Self>, key: Key) {
        let mut guard = Runner {
            commit: &self,
            key,
            finished: false,
        };
        loop {
            let batch: Vec<Waiting> = {
                let mut queues = self.queues.lock().expect("group commit queues");
                let Some(queue) = queues.get_mut(&key) else {
                    break;
                };
                if queue.is_empty() {
                    queues.remove(&key);
                    break;
                }
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            let (dir, id) = key;
            if batch.len() == 1 {
                let Waiting { edit, reply } = batch.into_iter().next().expect("one");
                let result = self
                    .store
                    .update_group(dir, id, edit.if_version, edit.update)
                    .await;
                let _ = reply.send(result);
                continue;
            }
            let (edits, replies): (Vec<GroupEdit>, Vec<_>) =
                batch.into_iter().map(|w| (w.edit, w.reply)).unzip();
            let results = self.store.update_group_batch(dir, id, edits).await;
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        guard.finished = true;
    }
}

/// Removes a runner's queue if it ends without emptying it (a panic), so
/// the group is not left without a runner; the queued callers get an error.
struct Runner<'a> {
    commit: &'a GroupCommit,
    key: Key,
    finished: bool,
}

impl Drop for Runner<'_> {
    fn drop(&mut self) {
        if !self.finished
            && let Ok(mut queues) = self.commit.queues.lock()
        {
            queues.remove(&self.key);
        }
    }
}
