//! Runs syncs: takes a directory's lease in the store (one replica at a
//! time, across crashes: an unreleased lease expires), reads the source,
//! reconciles, records the run's status and schedules the next run —
//! after the interval, or sooner with exponential backoff after an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use roster_store::{DirectoryId, DirectorySource, SourceKind, Store, SyncRecord, SyncStatus};
use roster_telemetry::metrics::{SyncLabels, metrics};
use roster_webhook::SealingKey;
use tokio::task::{AbortHandle, JoinHandle};

use crate::credentials;
use crate::error::{SourceError, SyncError};
use crate::google::{GoogleSettings, GoogleSource};
use crate::ldap::{LdapSettings, LdapSource};
use crate::reconcile;
use crate::snapshot::{Mappings, Source};

/// Defaults an admin gets when they set no value.
pub const DEFAULT_INTERVAL_SECS: i64 = 30 * 60;
pub const DEFAULT_MASS_DELETE_PERCENT: i32 = 20;

/// How a replica runs syncs.
#[derive(Debug, Clone)]
pub struct SyncerOptions {
    /// This replica's name in the leases.
    pub owner: String,
    /// How long a lease lasts without renewal; a replica that dies holding
    /// it blocks the directory for at most this long.
    pub lease_ttl: Duration,
    /// How often the replica looks for due directories.
    pub poll: Duration,
    /// The first retry after a source error; doubles per failure.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for SyncerOptions {
    fn default() -> Self {
        Self {
            // The pid makes the holder of a lease findable on a host.
            owner: format!(
                "pid-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            lease_ttl: Duration::from_secs(60),
            poll: Duration::from_secs(5),
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(3600),
        }
    }
}

/// Builds the source a directory reads from, opening its credentials; the
/// source applies the directory's attribute `mappings` to its records.
pub fn build_source(
    key: &SealingKey,
    row: &DirectorySource,
    mappings: Mappings,
) -> Result<Box<dyn Source>, SyncError> {
    let secret = match &row.settings.sealed_credentials {
        Some(sealed) => credentials::open(key, row.directory_id, sealed)?,
        None => String::new(),
    };
    match row.settings.kind {
        SourceKind::Ldap | SourceKind::ActiveDirectory => {
            let settings: LdapSettings = serde_json::from_value(row.settings.settings.clone())
                .map_err(|e| SourceError::Settings(e.to_string()))?;
            Ok(Box::new(LdapSource::new(
                row.settings.kind,
                settings,
                secret,
                mappings,
            )?))
        }
        SourceKind::Google => {
            let settings: GoogleSettings = serde_json::from_value(row.settings.settings.clone())
                .map_err(|e| SourceError::Settings(e.to_string()))?;
            Ok(Box::new(GoogleSource::new(settings, &secret, mappings)?))
        }
    }
}

/// One sync of `dir` if this replica gets its lease: `Ok(None)` when
/// another replica holds it. Records the run's status either way it ends.
#[tracing::instrument(skip(store, key, options), fields(owner = %options.owner))]
pub async fn sync_directory(
    store: &Arc<dyn Store>,
    key: &SealingKey,
    options: &SyncerOptions,
    dir: DirectoryId,
) -> Result<Option<SyncStatus>, SyncError> {
    let owner = options.owner.as_str();
    let Some(row) = store
        .acquire_sync_lease(dir, owner, options.lease_ttl)
        .await?
    else {
        return Ok(None);
    };
    let heartbeat = renew_lease(store.clone(), dir, options);
    let started = Utc::now();
    let clock = Instant::now();
    let outcome = run(store.as_ref(), key, &row).await;
    heartbeat.abort();
    record_metrics(&row, clock.elapsed(), &outcome);
    let status = status_of(&row, started, clock.elapsed(), &outcome);
    let next = next_run(&row, &status, &outcome, options);
    let record = SyncRecord {
        status: status.clone(),
        next_run_at: Utc::now() + next,
        used_confirmation: row.confirmed && outcome.is_ok(),
    };
    match &outcome {
        Ok(counts) => tracing::info!(?counts, "sync done"),
        Err(error) => tracing::warn!(%error, "sync failed"),
    }
    if !store.record_sync(dir, owner, &record).await? {
        tracing::warn!("lost the sync lease before recording the run");
    }
    store.release_sync_lease(dir, owner).await?;
    outcome.map(|_| Some(status))
}

fn record_metrics(
    row: &DirectorySource,
    took: Duration,
    outcome: &Result<reconcile::Counts, SyncError>,
) {
    let source = SyncLabels {
        kind: row.settings.kind.as_str().into(),
        directory: row.directory_id.to_string(),
    };
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let (label, written) = match outcome {
        Ok(c) => (
            "ok",
            Some([
                ("created", count(c.created)),
                ("updated", count(c.updated)),
                ("removed", count(c.removed)),
            ]),
        ),
        Err(error) => (error.cause(), None),
    };
    metrics().sync_run(&source, label, took.as_secs_f64(), written);
}

/// Read, diff, safeguard, write.
async fn run(
    store: &dyn Store,
    key: &SealingKey,
    row: &DirectorySource,
) -> Result<reconcile::Counts, SyncError> {
    let dir = row.directory_id;
    let directory = store.get_directory(dir).await?;
    let policy = directory.deprovision_policy;
    let source = build_source(key, row, Mappings::new(directory.attribute_mappings))?;
    let snapshot = source.read().await?;
    let stored = reconcile::load(store, dir).await?;
    let plan = reconcile::plan(&stored, &snapshot, policy);
    if !row.confirmed {
        reconcile::safeguard(&stored, &plan, row.settings.mass_delete_percent)
            .map_err(SyncError::NeedsConfirmation)?;
    }
    reconcile::apply(store, dir, policy, &stored, &snapshot, plan).await
}

/// Keeps the lease alive during a long sync (renewed at a third of its
/// life); the task is aborted when the run ends.
fn renew_lease(store: Arc<dyn Store>, dir: DirectoryId, options: &SyncerOptions) -> JoinHandle<()> {
    let (owner, ttl) = (options.owner.clone(), options.lease_ttl);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            match store.acquire_sync_lease(dir, &owner, ttl).await {
                Ok(Some(_)) => {}
                Ok(None) => tracing::warn!(directory = %dir, "sync lease taken by another replica"),
                Err(error) => {
                    tracing::warn!(directory = %dir, %error, "cannot renew the sync lease")
                }
            }
        }
    })
}

fn status_of(
    row: &DirectorySource,
    started: chrono::DateTime<Utc>,
    took: Duration,
    outcome: &Result<reconcile::Counts, SyncError>,
) -> SyncStatus {
    let mut status = SyncStatus {
        last_started_at: Some(started),
        last_finished_at: Some(Utc::now()),
        last_duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
        ..SyncStatus::default()
    };
    match outcome {
        Ok(counts) => {
            status.created = counts.created;
            status.updated = counts.updated;
            status.removed = counts.removed;
        }
        Err(SyncError::NeedsConfirmation(reason)) => {
            status.needs_confirmation = Some(reason.clone());
            status.last_error = Some(reason.clone());
        }
        Err(error) => {
            status.last_error = Some(error.to_string());
            status.failures = row.status.failures.saturating_add(1);
        }
    }
    status
}

/// After a source error: the base backoff doubled per consecutive failure
/// (or what a rate-limiting source asked for), never later than the
/// interval; otherwise the interval.
fn next_run(
    row: &DirectorySource,
    status: &SyncStatus,
    outcome: &Result<reconcile::Counts, SyncError>,
    options: &SyncerOptions,
) -> chrono::Duration {
    let interval = Duration::from_secs(u64::try_from(row.settings.interval_secs).unwrap_or(0));
    let wait = match outcome {
        Err(SyncError::Source(SourceError::RateLimited {
            retry_after: Some(after),
            ..
        })) => *after,
        Err(SyncError::NeedsConfirmation(_)) | Ok(_) => interval,
        Err(_) => {
            let exp = u32::try_from(status.failures.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
            (options.backoff_base * 2u32.pow(exp))
                .min(options.backoff_max)
                .min(interval)
        }
    };
    chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
}

/// Syncs every due pulled directory, each in its own task, until dropped.
pub struct Syncer {
    task: JoinHandle<()>,
    /// The syncs in flight, aborted with the syncer (their leases expire).
    running: Arc<Mutex<HashMap<DirectoryId, AbortHandle>>>,
}

impl Syncer {
    pub fn start(store: Arc<dyn Store>, key: Arc<SealingKey>, options: SyncerOptions) -> Self {
        let running = Arc::new(Mutex::new(HashMap::new()));
        let in_flight = Arc::clone(&running);
        let task = tokio::spawn(async move {
            loop {
                if let Err(error) = start_due(&store, &key, &options, &in_flight).await {
                    tracing::warn!(%error, "cannot list the pulled directories");
                }
                tokio::time::sleep(options.poll).await;
            }
        });
        Self { task, running }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.task.abort();
        for (_, sync) in self.running.lock().expect("running set").drain() {
            sync.abort();
        }
    }
}

async fn start_due(
    store: &Arc<dyn Store>,
    key: &Arc<SealingKey>,
    options: &SyncerOptions,
    running: &Arc<Mutex<HashMap<DirectoryId, AbortHandle>>>,
) -> Result<(), SyncError> {
    let now = Utc::now();
    for row in store.list_sources().await? {
        let due = row.next_run_at.is_none_or(|at| at <= now);
        let free = row.lease_until.is_none_or(|until| until < now)
            || row.lease_owner.as_deref() == Some(options.owner.as_str());
        let dir = row.directory_id;
        let mut in_flight = running.lock().expect("running set");
        if !due || !free || in_flight.contains_key(&dir) {
            continue;
        }
        let (store, key, options, done) =
            (store.clone(), key.clone(), options.clone(), running.clone());
        let sync = tokio::spawn(async move {
            // The outcome is recorded in the directory's status.
            let _ = sync_directory(&store, &key, &options, dir).await;
            done.lock().expect("running set").remove(&dir);
        });
        in_flight.insert(dir, sync.abort_handle());
    }
    Ok(())
}
