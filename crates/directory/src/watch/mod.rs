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

mod hub;
mod planner;
mod stream;
mod watcher;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use roster_proto::directory::WatchChangesRequest;
use roster_store::Cursor;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{ServiceError, ServiceResult};

pub use hub::{Batch, ChangeHub, WatchStats};
pub use stream::WatchStream;

/// Changes read per database query, by the tailer and by catching-up watchers.
pub const READ_PAGE: i64 = 500;

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

/// Validates a request and opens its stream. Errors about the request (bad
/// directory id, bad cursor, expired cursor) are returned here, before the
/// stream starts, so the RPC itself fails with the right status.
pub async fn open(hub: &Arc<ChangeHub>, req: WatchChangesRequest) -> ServiceResult<WatchStream> {
    if hub.is_closed() {
        return Err(ServiceError::ShuttingDown);
    }
    let plan = planner::plan(hub, req).await?;
    let (tx, rx) = mpsc::channel(hub.config.buffer.max(1));
    let (abort_tx, abort_rx) = oneshot::channel();
    let (events, head) = hub.subscribe();
    let watcher = watcher::Watcher {
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
    Ok(WatchStream::new(rx, abort_rx))
}
