//! The cap on concurrent initial-state snapshots, the same on both backends.
//!
//! A snapshot holds a read transaction (a database connection) for as long
//! as its consumer reads, and consumers may be slow or stalled. Snapshots
//! therefore get their own connections, at most [`SnapshotSlots::cap`] of
//! them, apart from the pool that serves writes and ordinary reads; one
//! more snapshot is refused at once with [`StoreError::Busy`] (a retry
//! hint) rather than queued, so a crowd of reconnecting watchers can
//! neither starve writers nor pile up waiting callers.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{StoreError, StoreResult};

/// Snapshot connections a store opens at most unless configured otherwise.
pub const DEFAULT_SNAPSHOT_CONNECTIONS: u32 = 8;

/// What a refused snapshot tells its caller to wait before trying again:
/// long enough for a burst of reconnects to spread out.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// The slots of one store's snapshot connections.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotSlots {
    permits: Arc<Semaphore>,
    cap: u32,
}

/// One taken slot; shared by the reading task and the stream it feeds, so
/// it is free again once both are gone.
pub(crate) type Slot = Arc<OwnedSemaphorePermit>;

impl SnapshotSlots {
    pub(crate) fn new(cap: u32) -> Self {
        let cap = cap.max(1);
        Self {
            permits: Arc::new(Semaphore::new(cap as usize)),
            cap,
        }
    }

    /// How many snapshots may be open at once (the snapshot pool's size).
    pub(crate) fn cap(&self) -> u32 {
        self.cap
    }

    /// A free slot, or [`StoreError::Busy`] at once when all are taken.
    pub(crate) fn take(&self) -> StoreResult<Slot> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(Arc::new(permit)),
            Err(_) => Err(StoreError::Busy {
                what: format!(
                    "all {} initial-state snapshot connections are in use",
                    self.cap
                ),
                retry_after: RETRY_AFTER,
            }),
        }
    }
}

/// `items`, holding `slot` until the stream is dropped (a stalled consumer
/// keeps its slot even when the reading task already finished).
pub(crate) fn holding<T: Send + 'static>(
    items: BoxStream<'static, T>,
    slot: Slot,
) -> BoxStream<'static, T> {
    items
        .map(move |item| {
            let _held = &slot;
            item
        })
        .boxed()
}
