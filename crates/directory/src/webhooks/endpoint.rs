//! One endpoint's delivery, by the replica holding its lease: read the log
//! from the endpoint's cursor, deliver each wanted event until it succeeds
//! or is given up, record progress, repeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prost::bytes::Bytes;
use roster_store::{
    ChangeFilter, ChangeRecord, EndpointProgress, NewWebhookAttempt, StoreError, Webhook,
    WebhookProgress, WebhookStatus,
};
use roster_webhook::{SigningSecret, WebhookError, signature_header};

use super::client::{Response, Signed, UrlError};
use super::connection::{Connection, Target};
use super::in_flight;
use super::pages::Page;
use super::{Shared, backoff};

/// Attempts recorded between two prunings of an endpoint's old attempts:
/// the attempts table holds at most this many beyond the newest kept.
const PRUNE_EVERY: u32 = 32;

/// Events delivered per page (between two looks at the stored endpoint).
const PAGE: usize = 100;

/// Why an endpoint task ends (each is logged once, where it happens).
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("shutting down")]
    Shutdown,
    #[error("the lease is held by another replica")]
    LeaseLost,
    #[error("the endpoint was disabled, deleted or dead-lettered")]
    NotDeliverable,
    #[error("the endpoint answered 410 Gone; disabled")]
    Gone,
    #[error("retry horizon exceeded; dead letter")]
    DeadLetter,
    #[error("the signing secret does not open: {0}")]
    Secret(#[from] WebhookError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The secrets an endpoint signs with right now.
struct Secrets {
    current: SigningSecret,
    /// The secret before a rotation, until the end of its overlap.
    previous: Option<(SigningSecret, DateTime<Utc>)>,
}

impl Secrets {
    /// The current secret must open; the previous one is only a courtesy
    /// to receivers still switching, so one that no longer opens (sealed
    /// with a lost key, the reason to rotate) or has expired is left out.
    fn open(shared: &Shared, hook: &Webhook) -> Result<Self, WebhookError> {
        let context = hook.id.0.as_bytes();
        let current = shared.key.open(&hook.sealed_secret, context)?;
        let previous = match (&hook.sealed_previous_secret, hook.previous_secret_until) {
            (Some(sealed), Some(until)) if until > Utc::now() => {
                match shared.key.open(sealed, context) {
                    Ok(secret) => Some((secret, until)),
                    Err(e) => {
                        tracing::warn!(error = %e, "the previous signing secret does not open; signing with the current one only");
                        None
                    }
                }
            }
            _ => None,
        };
        Ok(Self { current, previous })
    }

    fn header(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let now = Utc::now();
        let mut secrets = vec![&self.current];
        if let Some((previous, until)) = &self.previous
            && *until > now
        {
            secrets.push(previous);
        }
        signature_header(&secrets, msg_id, timestamp, body)
    }
}

/// The endpoint as its lease holder sees it.
struct Endpoint {
    shared: Arc<Shared>,
    hook: Webhook,
    secrets: Secrets,
    filter: ChangeFilter,
    /// Where requests go (a URL that no longer passes the checks fails
    /// each attempt, as a receiver that is down would).
    target: Result<Target, UrlError>,
    connection: Connection,
    /// The log's epoch, for the cursors in payloads.
    epoch: i64,
    /// When the lease must be renewed (half its time-to-live).
    renew_at: Instant,
    /// Attempts recorded since the store last pruned the endpoint's old
    /// ones (starts full: the first attempt of a lease prunes, so a
    /// replica restarting often cannot grow the table).
    unpruned: u32,
}

/// Runs until the endpoint needs no delivery from this replica, then
/// releases the lease (unless another replica holds it by then).
pub(super) async fn run(shared: Arc<Shared>, hook: Webhook) {
    let id = hook.id;
    let stop = match Endpoint::new(Arc::clone(&shared), hook).await {
        Ok(mut endpoint) => match endpoint.deliver_forever().await {
            Err(stop) => stop,
            Ok(never) => match never {},
        },
        Err(stop) => stop,
    };
    match &stop {
        Stop::Shutdown | Stop::NotDeliverable => tracing::debug!(reason = %stop, "delivery ends"),
        Stop::Gone | Stop::DeadLetter | Stop::LeaseLost => {
            tracing::warn!(reason = %stop, "delivery ends")
        }
        Stop::Secret(_) | Stop::Store(_) => tracing::error!(reason = %stop, "delivery ends"),
    }
    if !matches!(stop, Stop::LeaseLost) {
        let owner = &shared.config.replica;
        if let Err(e) = shared.store.release_webhook_lease(id, owner).await {
            tracing::warn!(error = %e, "cannot release the webhook lease; it expires");
        }
    }
}

impl Endpoint {
    async fn new(shared: Arc<Shared>, hook: Webhook) -> Result<Self, Stop> {
        let epoch = shared.store.log_bounds().await?.epoch;
        let secrets = Secrets::open(&shared, &hook)?;
        let renew_at = Instant::now() + shared.config.lease_ttl / 2;
        Ok(Self {
            filter: filter_of(&hook),
            target: Target::parse(&hook.url, &shared.config),
            connection: Connection::default(),
            shared,
            hook,
            secrets,
            epoch,
            renew_at,
            unpruned: PRUNE_EVERY,
        })
    }

    async fn deliver_forever(&mut self) -> Result<std::convert::Infallible, Stop> {
        let mut heads = self.shared.hub.head_updates();
        loop {
            self.renew_if_due().await?;
            let head = *heads.borrow_and_update();
            if self.hook.cursor >= head {
                self.wait_for(heads.changed()).await?;
                continue;
            }
            let Some(page) = self.read(head).await? else {
                continue;
            };
            if self.refresh(&page).await? {
                continue;
            }
            self.record_lag(head, page.first());
            if page.is_empty() {
                // Nothing the endpoint wants as far as the page goes: move past it.
                let progress = self.progress_at(page.covered);
                self.record(progress).await?;
                continue;
            }
            let max_bytes = self.shared.config.max_body_bytes;
            for (record, body) in page.deliveries(max_bytes) {
                if self.deliver(record, body).await? == Step::Restart {
                    break;
                }
            }
        }
    }

    /// The wanted changes after the cursor, at most a page; `None` when an
    /// admin changed the endpoint meanwhile (read again from its position).
    async fn read(&mut self, head: i64) -> Result<Option<Page>, Stop> {
        let (store, position) = (self.shared.store.as_ref(), (self.epoch, &self.filter));
        let read = self
            .shared
            .pages
            .read(store, position, self.hook.cursor, head, PAGE);
        match read.await {
            Ok(page) => Ok(Some(page)),
            // The log was pruned past the cursor: those events are gone, so
            // the endpoint waits for an admin to replay from what is left.
            Err(StoreError::CursorExpired { oldest, .. }) => {
                tracing::error!(
                    cursor = self.hook.cursor,
                    oldest,
                    "change log pruned past the endpoint"
                );
                let progress = WebhookProgress {
                    status: WebhookStatus::DeadLetter,
                    ..self.progress_at(self.hook.cursor)
                };
                if self.record(progress).await? {
                    return Ok(None);
                }
                Err(Stop::DeadLetter)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Delivers one event: attempts until one succeeds, the endpoint is
    /// gone, or the horizon passes. Each attempt is recorded before the next.
    /// `Restart` when an admin changed the endpoint meanwhile (a replay moves
    /// its cursor): the caller reads again from the stored position.
    async fn deliver(&mut self, record: &ChangeRecord, body: Bytes) -> Result<Step, Stop> {
        let msg_id = record.event_id.to_string();
        loop {
            if let Some(at) = self.hook.next_attempt_at
                && self.sleep_until(at).await?
            {
                return Ok(Step::Restart);
            }
            if self.renew_if_due().await? {
                return Ok(Step::Restart);
            }
            let request = self.shared.in_flight.start();
            let response = self.send(&msg_id, body.clone()).await;
            let attempt = NewWebhookAttempt {
                revision: record.revision,
                event_id: msg_id.clone(),
                status_code: response.status.map(i32::from),
                latency_ms: i64::try_from(response.latency.as_millis()).unwrap_or(i64::MAX),
                detail: response.detail.clone(),
                succeeded: response.succeeded(),
            };
            let (progress, outcome) = self.after(&response, record.revision, attempt);
            let latency = response.latency.as_secs_f64();
            roster_telemetry::metrics::metrics().webhook_attempt(outcome.label(), latency);
            if self.record_after(progress, request).await? {
                return Ok(Step::Restart);
            }
            match outcome {
                Outcome::Delivered => return Ok(Step::Done),
                Outcome::Retry => {}
                Outcome::Gone => return Err(Stop::Gone),
                Outcome::DeadLetter => return Err(Stop::DeadLetter),
            }
        }
    }

    async fn send(&mut self, msg_id: &str, body: Bytes) -> Response {
        let timestamp = Utc::now().timestamp();
        let signature = self.secrets.header(msg_id, timestamp, &body);
        let request = Signed {
            msg_id,
            timestamp,
            signature,
            body,
        };
        let shared = &self.shared;
        shared
            .sender
            .send(&mut self.connection, &self.target, request)
            .await
    }

    /// The progress to record after an attempt, and what it means.
    fn after(
        &self,
        response: &Response,
        revision: i64,
        attempt: NewWebhookAttempt,
    ) -> (WebhookProgress, Outcome) {
        if response.succeeded() {
            let progress = WebhookProgress {
                attempt: Some(attempt),
                ..self.progress_at(revision)
            };
            return (progress, Outcome::Delivered);
        }
        let now = Utc::now();
        let config = &self.shared.config;
        let attempts = self.hook.attempts.saturating_add(1);
        let failing_since = self.hook.failing_since.unwrap_or(now);
        let mut progress = WebhookProgress {
            cursor: self.hook.cursor,
            attempts,
            failing_since: Some(failing_since),
            next_attempt_at: None,
            status: WebhookStatus::Active,
            disable: None,
            attempt: Some(attempt),
        };
        if response.status == Some(410) {
            progress.disable = Some("the endpoint answered 410 Gone".into());
            return (progress, Outcome::Gone);
        }
        let horizon =
            chrono::Duration::from_std(config.retry_horizon).unwrap_or(chrono::Duration::MAX);
        if now - failing_since >= horizon {
            progress.status = WebhookStatus::DeadLetter;
            return (progress, Outcome::DeadLetter);
        }
        let delay = backoff::delay(
            attempts,
            config.backoff_base,
            config.backoff_max,
            rand::random::<f64>(),
        );
        progress.next_attempt_at =
            Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX));
        (progress, Outcome::Retry)
    }

    /// A clean position at `cursor`: everything up to it is done.
    fn progress_at(&self, cursor: i64) -> WebhookProgress {
        WebhookProgress {
            cursor,
            attempts: 0,
            failing_since: None,
            next_attempt_at: None,
            status: WebhookStatus::Active,
            disable: None,
            attempt: None,
        }
    }

    /// Writes progress while this replica holds the lease at the current
    /// generation; otherwise re-reads the endpoint (an admin changed it:
    /// true, nothing written) or stops (another replica took over).
    async fn record(&mut self, progress: WebhookProgress) -> Result<bool, Stop> {
        self.record_written(progress, None).await
    }

    /// [`Self::record`] after `request`, which counts as in flight until its
    /// progress is queued (the batch it joins waits for the others).
    async fn record_after(
        &mut self,
        progress: WebhookProgress,
        request: in_flight::Request,
    ) -> Result<bool, Stop> {
        self.record_written(progress, Some(request)).await
    }

    async fn record_written(
        &mut self,
        progress: WebhookProgress,
        request: Option<in_flight::Request>,
    ) -> Result<bool, Stop> {
        let prune = progress.attempt.is_some() && self.unpruned >= PRUNE_EVERY;
        let write = EndpointProgress {
            id: self.hook.id,
            generation: self.hook.generation,
            progress: progress.clone(),
            prune,
        };
        // The request stops counting as in flight once its progress is
        // queued, before a runner may look at the count.
        let queued = self
            .shared
            .progress
            .enqueue((), write, move || drop(request));
        let written = queued.await?;
        if written {
            if prune {
                self.unpruned = 0;
            } else if progress.attempt.is_some() {
                self.unpruned += 1;
            }
            self.apply(progress);
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }

    fn apply(&mut self, p: WebhookProgress) {
        self.hook.cursor = p.cursor;
        self.hook.attempts = p.attempts;
        self.hook.failing_since = p.failing_since;
        self.hook.next_attempt_at = p.next_attempt_at;
        self.hook.status = p.status;
        if p.disable.is_some() {
            self.hook.enabled = false;
        }
    }

    /// Takes an admin's change (a rotation, an edit, a replay) into account
    /// before `page` is sent: the page carries the endpoints' generations as
    /// stored after its changes were committed, so an event committed after
    /// a rotation is signed with the new secret too. True when the endpoint
    /// changed: the page is stale, read again from the stored cursor.
    async fn refresh(&mut self, page: &Page) -> Result<bool, Stop> {
        let stored = match page.generation_of(self.hook.id) {
            Some(generation) => generation,
            // Not in the page's list (created or deleted since): ask.
            None => match self.shared.store.get_webhook(self.hook.id).await {
                Ok(stored) => stored.generation,
                Err(StoreError::NotFound(_)) => return Err(Stop::NotDeliverable),
                Err(e) => return Err(e.into()),
            },
        };
        // Generations only grow: an older one is a page read before this
        // task's last look at the endpoint.
        if stored > self.hook.generation {
            return self.reload().await;
        }
        Ok(false)
    }

    /// Renews the lease and takes the endpoint as stored (a replay, an edit
    /// or a rotation since the last look), or stops. True when an admin
    /// changed it since this task last looked.
    async fn reload(&mut self) -> Result<bool, Stop> {
        let held = self
            .shared
            .store
            .acquire_webhook_lease(
                self.hook.id,
                &self.shared.config.replica,
                self.shared.config.lease_ttl,
            )
            .await;
        let hook = match held {
            Ok(Some(hook)) => hook,
            Ok(None) => return Err(self.why_not_held().await),
            Err(StoreError::NotFound(_)) => return Err(Stop::NotDeliverable),
            Err(e) => return Err(e.into()),
        };
        self.renew_at = Instant::now() + self.shared.config.lease_ttl / 2;
        if !hook.enabled || hook.status != WebhookStatus::Active {
            return Err(Stop::NotDeliverable);
        }
        let changed = hook.generation != self.hook.generation;
        if changed {
            self.secrets = Secrets::open(&self.shared, &hook)?;
            self.filter = filter_of(&hook);
            self.target = Target::parse(&hook.url, &self.shared.config);
        }
        self.hook = hook;
        Ok(changed)
    }

    /// Why the lease could not be renewed: the endpoint is gone, or another
    /// replica holds it.
    async fn why_not_held(&self) -> Stop {
        match self.shared.store.get_webhook(self.hook.id).await {
            Err(StoreError::NotFound(_)) => Stop::NotDeliverable,
            Err(e) => Stop::Store(e),
            Ok(_) => Stop::LeaseLost,
        }
    }

    /// Renews the lease when half its lifetime is gone; true when the
    /// endpoint changed meanwhile.
    async fn renew_if_due(&mut self) -> Result<bool, Stop> {
        if self.shared.shutdown.has_changed().is_err() || *self.shared.shutdown.borrow() {
            return Err(Stop::Shutdown);
        }
        if Instant::now() >= self.renew_at {
            return self.reload().await;
        }
        Ok(false)
    }

    /// Waits for `event`, renewing the lease meanwhile; ends on shutdown.
    /// True when the renewal found the endpoint changed. Also returns (false)
    /// when the idle connection ended: the caller waits again without it.
    async fn wait_for<F: std::future::Future>(&mut self, event: F) -> Result<bool, Stop> {
        let mut shutdown = self.shared.shutdown.clone();
        let renew = tokio::time::Instant::from_std(self.renew_at);
        let renew_due = tokio::select! {
            _ = event => false,
            () = super::stopped(&mut shutdown) => return Err(Stop::Shutdown),
            () = tokio::time::sleep_until(renew) => true,
            () = self.connection.idle_end() => false,
        };
        if renew_due {
            return self.renew_if_due().await;
        }
        Ok(false)
    }

    /// Sleeps until `at` (a retry's time), renewing the lease meanwhile;
    /// true (at once) when the endpoint changed.
    async fn sleep_until(&mut self, at: DateTime<Utc>) -> Result<bool, Stop> {
        loop {
            let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if left.is_zero() {
                return Ok(false);
            }
            if self.wait_for(tokio::time::sleep(left)).await? {
                return Ok(true);
            }
        }
    }

    fn record_lag(&self, head: i64, next: Option<&ChangeRecord>) {
        let seconds = next.map_or(0.0, |r| {
            (Utc::now() - r.occurred_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64()
        });
        roster_telemetry::metrics::metrics().webhook_lag(
            &self.hook.id.to_string(),
            head - self.hook.cursor,
            seconds,
        );
    }
}

/// What the page loop does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Delivered: on to the next event of the page.
    Done,
    /// The endpoint changed: read again from its stored position.
    Restart,
}

/// What an attempt means for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry,
    Gone,
    DeadLetter,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "failed",
            Self::Gone => "gone",
            Self::DeadLetter => "dead_letter",
        }
    }
}

fn filter_of(hook: &Webhook) -> ChangeFilter {
    ChangeFilter {
        directory_id: hook.directory_id,
        kinds: hook.kinds.clone(),
    }
}
