//! One watcher: catches up from the database, then follows the hub.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::StreamExt;
use prost::bytes::Bytes;
use roster_proto::directory::watch_changes_frame::Payload;
use roster_proto::directory::{Progress, Synced, WatchChangesFrame, encode_change};
use roster_store::{ChangeFilter, ChangeKind, Cursor, DirectoryId, SnapshotItem, StoreError};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

use super::READ_PAGE;
use super::hub::{Batch, ChangeHub, HubEvent, OpenWatcher, encoded_change, page_end};
use super::planner::StartAt;
use crate::convert;
use crate::cursor;
use crate::error::ServiceError;

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

pub(super) struct Watcher {
    pub(super) hub: Arc<ChangeHub>,
    pub(super) filter: ChangeFilter,
    /// Everything up to here has been delivered or filtered out.
    pub(super) pos: Cursor,
    pub(super) events: broadcast::Receiver<HubEvent>,
    /// The hub head read together with `events`' subscription.
    pub(super) subscribed_head: i64,
    pub(super) out: mpsc::Sender<WatchChangesFrame>,
    pub(super) last_sent: Instant,
    /// Last revision sent, shared with the hub's lag metric.
    pub(super) sent: Arc<AtomicI64>,
}

impl Watcher {
    pub(super) async fn run(mut self, start: StartAt, abort: oneshot::Sender<ServiceError>) {
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
