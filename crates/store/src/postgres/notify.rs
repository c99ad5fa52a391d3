//! Waking waiters: LISTEN on `roster_changes` (other replicas' commits) and
//! direct wake-ups for commits made through this process.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{oneshot, watch};

/// The NOTIFY channel.
pub(crate) const CHANNEL: &str = "roster_changes";

/// How long the listener waits before reconnecting after a failure.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Counts wake-ups; waiters return when the count moved past what they saw.
pub(crate) struct Notifier {
    epoch: watch::Sender<u64>,
    /// The epoch the last returning waiter saw. The store is designed for
    /// one tailer per process (the directory service's fan-out): a wake-up
    /// that arrived between two waits is not lost but returns at once.
    seen: AtomicU64,
    options: PgConnectOptions,
    /// The payload of this store's notifications: its own come back on its
    /// LISTEN connection and are ignored, since its commits already woke
    /// local waiters directly.
    origin: String,
    /// Dropping the store drops this sender, which stops the listener task.
    listener: Mutex<Option<oneshot::Sender<()>>>,
    /// Set when another process may have committed (its notification came,
    /// or the LISTEN connection was (re)established and may have missed
    /// some): the next head advance must look at the database.
    foreign: Arc<AtomicBool>,
}

impl Notifier {
    pub fn new(options: PgConnectOptions) -> Self {
        Self {
            epoch: watch::Sender::new(0),
            seen: AtomicU64::new(0),
            options,
            origin: uuid::Uuid::new_v4().simple().to_string(),
            listener: Mutex::new(None),
            foreign: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether another process may have committed since the last
    /// [`Notifier::take_foreign`].
    pub fn foreign_pending(&self) -> bool {
        self.foreign.load(Ordering::Acquire)
    }

    /// Clears the foreign flag before the database is looked at; returns it.
    pub fn take_foreign(&self) -> bool {
        self.foreign.swap(false, Ordering::AcqRel)
    }

    /// The payload to send with `NOTIFY`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A commit through this process: wake local waiters.
    pub fn local_commit(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Returns when something may have been committed since the last return,
    /// or after `timeout`. Without a working LISTEN connection this is just
    /// a sleep of `timeout` (the caller polls then).
    pub async fn wait(&self, timeout: Duration) {
        self.ensure_listener();
        let mut rx = self.epoch.subscribe();
        let current = *rx.borrow_and_update();
        if current > self.seen.load(Ordering::Acquire) {
            self.seen.fetch_max(current, Ordering::AcqRel);
            return;
        }
        let _ = tokio::time::timeout(timeout, rx.changed()).await;
        let now = *rx.borrow();
        self.seen.fetch_max(now, Ordering::AcqRel);
    }

    fn ensure_listener(&self) {
        let mut guard = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_some() {
            return;
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        *guard = Some(stop_tx);
        tokio::spawn(listen(
            self.options.clone(),
            self.origin.clone(),
            Wake {
                epoch: self.epoch.clone(),
                foreign: Arc::clone(&self.foreign),
            },
            stop_rx,
        ));
    }
}

/// Forwards notifications into `epoch` until `stop` fires (the store was
/// dropped). Reconnects by itself; after a lost connection it bumps the
/// epoch once, since notifications may have been missed meanwhile.
async fn listen(
    options: PgConnectOptions,
    origin: String,
    wake: Wake,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let session = async {
            let mut listener = connect(&options).await?;
            listener.listen(CHANNEL).await?;
            wake.foreign();
            loop {
                match listener.try_recv().await? {
                    Some(n) if n.payload() == origin => {}
                    Some(_) => wake.foreign(),
                    None => return Ok::<(), sqlx::Error>(()),
                }
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            result = session => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "LISTEN connection failed; watchers fall back to polling");
                }
                wake.foreign();
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}

/// What the listener task wakes: the waiters, and the flag telling the
/// next head advance that another process may have committed.
struct Wake {
    epoch: watch::Sender<u64>,
    foreign: Arc<AtomicBool>,
}

impl Wake {
    fn foreign(&self) {
        // The flag first: a waiter woken by the epoch must see it.
        self.foreign.store(true, Ordering::Release);
        self.epoch.send_modify(|e| *e += 1);
    }
}

async fn connect(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    // A one-connection pool of its own: the listener must not hold one of
    // the store's pool connections forever.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    Ok(listener)
}
