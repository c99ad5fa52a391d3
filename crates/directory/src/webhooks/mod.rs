//! Webhook delivery: every change of the log, signed (Standard Webhooks),
//! POSTed to each endpoint that wants it, in change-log order, at least
//! once, by exactly one replica at a time (docs/webhooks.md).
//!
//! - [`Deliveries`] runs in every directory-service process: every
//!   `scan_interval` it looks for enabled, active endpoints and tries to
//!   take their lease; for each lease it wins it runs one endpoint task.
//! - An endpoint task (`endpoint.rs`) reads the log from the endpoint's own
//!   cursor up to the hub's published head and delivers one event at a time:
//!   the next only once the previous succeeded or was given up. Its
//!   progress (cursor, retry state, attempt) is written after each attempt,
//!   before the next is sent, guarded by the lease and the endpoint's
//!   generation, so a crash redelivers at most the event in flight and an
//!   admin's replay is never overwritten. The progress writes of all the
//!   endpoints that finished a request at the same moment go in one
//!   statement (group commit), which waits up to `progress_linger` for the
//!   answers still in flight; each page of the log is read once for all
//!   the endpoints of a directory and each event's body encoded once.
//! - Nothing here runs in a SCIM request: a slow receiver never slows an
//!   identity provider down.

mod backoff;
pub mod client;
mod config;
pub mod connection;
mod endpoint;
pub(crate) mod in_flight;
mod pages;
pub mod payload;

use std::collections::HashMap;
use std::sync::Arc;

use roster_store::{Store, Webhook, WebhookId, WebhookStatus};
use roster_webhook::SealingKey;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

pub use config::WebhookConfig;

use crate::group_commit::{Batcher, WebhookProgressWrites};
use crate::watch::ChangeHub;

/// Why webhook delivery cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] rustls::Error),
}

/// What every endpoint task of a process shares.
pub(crate) struct Shared {
    store: Arc<dyn Store>,
    hub: Arc<ChangeHub>,
    config: Arc<WebhookConfig>,
    key: Arc<SealingKey>,
    sender: client::Sender,
    /// Gathers the progress writes of every endpoint of this replica that
    /// finished a request at the same moment into one statement.
    progress: Arc<Batcher<WebhookProgressWrites>>,
    /// The requests in flight, which a progress batch waits for.
    in_flight: Arc<in_flight::InFlight>,
    pages: pages::Pages,
    shutdown: watch::Receiver<bool>,
}

/// The delivery of one process. Dropping it (or aborting its task) stops
/// every delivery at once without releasing leases, as a crash would;
/// [`Deliveries::stop`] stops them in order and releases them.
pub struct Deliveries {
    stop: watch::Sender<bool>,
    /// `None` only once stopped.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Deliveries {
    /// Starts delivering, or returns `None` when no sealing key is
    /// configured (webhooks off).
    pub fn start(
        store: Arc<dyn Store>,
        hub: Arc<ChangeHub>,
        config: WebhookConfig,
    ) -> Result<Option<Self>, DeliveryError> {
        let Some(key) = config.sealing_key.clone() else {
            return Ok(None);
        };
        let config = Arc::new(config);
        let (stop, shutdown) = watch::channel(false);
        let in_flight = Arc::new(in_flight::InFlight::new(config.progress_linger));
        let progress = Batcher::new(WebhookProgressWrites {
            store: Arc::clone(&store),
            owner: config.replica.clone(),
            in_flight: Arc::clone(&in_flight),
        });
        let shared = Arc::new(Shared {
            store,
            hub,
            sender: client::Sender::new(Arc::clone(&config))?,
            progress,
            in_flight,
            pages: pages::Pages::default(),
            config,
            key,
            shutdown,
        });
        let span = tracing::info_span!("webhook_deliveries", replica = %shared.config.replica);
        let task = tokio::spawn(supervise(shared).instrument(span));
        Ok(Some(Self {
            stop,
            task: Some(task),
        }))
    }

    /// Stops every endpoint task after its current request and releases its
    /// lease, so another replica takes over at once.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops at once, leases kept until they expire (what `kill -9` does;
    /// for tests of crash safety).
    pub fn abort(self) {
        drop(self);
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Finds endpoints to deliver for and runs one task per lease won. The
/// tasks live in a `JoinSet` owned here: aborting this future aborts them.
async fn supervise(shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    let mut running: HashMap<WebhookId, tokio::task::AbortHandle> = HashMap::new();
    let mut shutdown = shared.shutdown.clone();
    loop {
        while let Some(done) = tasks.try_join_next_with_id() {
            let id = match done {
                Ok((id, ())) => id,
                Err(e) => e.id(),
            };
            running.retain(|_, handle| handle.id() != id);
        }
        match shared.store.list_webhooks(None).await {
            Ok(hooks) => {
                let wanted: Vec<Webhook> = hooks
                    .into_iter()
                    .filter(|h| wants_delivery(h, &running))
                    .collect();
                for hook in wanted {
                    if let Some(held) = take_lease(&shared, &hook).await {
                        let span = tracing::info_span!("webhook_endpoint", endpoint = %held.id);
                        let id = held.id;
                        let handle =
                            tasks.spawn(endpoint::run(Arc::clone(&shared), held).instrument(span));
                        running.insert(id, handle);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list webhook endpoints; will retry"),
        }
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            () = tokio::time::sleep(shared.config.scan_interval) => {}
        }
    }
    // Each task ends after its current request and releases its lease.
    while tasks.join_next().await.is_some() {}
}

/// Resolves once `shutdown` is set (or its sender is gone). The borrow
/// `wait_for` returns stays in here: it is not `Send`.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Enabled, not dead-lettered, not already delivered by this process, and
/// not visibly leased by another replica (saves a write per scan).
fn wants_delivery(hook: &Webhook, running: &HashMap<WebhookId, tokio::task::AbortHandle>) -> bool {
    let leased_elsewhere = hook
        .lease_until
        .is_some_and(|until| until > chrono::Utc::now());
    hook.enabled
        && hook.status == WebhookStatus::Active
        && !running.contains_key(&hook.id)
        && !leased_elsewhere
}

async fn take_lease(shared: &Shared, hook: &Webhook) -> Option<Webhook> {
    let owner = &shared.config.replica;
    match shared
        .store
        .acquire_webhook_lease(hook.id, owner, shared.config.lease_ttl)
        .await
    {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(endpoint = %hook.id, error = %e, "cannot take a webhook lease");
            None
        }
    }
}
