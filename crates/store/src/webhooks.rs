//! Webhook endpoints: where, what and how far each receiver has been
//! delivered, the lease that lets one replica deliver for it, and its
//! recent attempts. The delivery rules live in the directory service; the
//! store keeps the state they need to survive a crash.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{ChangeKind, DirectoryId};

/// Columns of an endpoint row, as both backends' decoders read them.
pub(crate) const COLUMNS: &str = "id, directory_id, url, kinds, description, enabled, disabled_reason, \
     status, secret, previous_secret, previous_secret_until, cursor, attempts, failing_since, \
     next_attempt_at, generation, lease_owner, lease_until, created_at, updated_at";

/// Columns of an attempt row.
pub(crate) const ATTEMPT_COLUMNS: &str =
    "revision, event_id, status_code, latency_ms, detail, succeeded, attempted_at";

/// Id of a webhook endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookId(pub Uuid);

impl WebhookId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for WebhookId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for WebhookId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where an endpoint's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookStatus {
    /// Delivering (or retrying the next event within the horizon).
    Active,
    /// The next event failed for the whole retry horizon: delivery waits,
    /// from the cursor, until an admin replays or skips.
    DeadLetter,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::DeadLetter => "dead_letter",
        }
    }
}

impl FromStr for WebhookStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "dead_letter" => Ok(Self::DeadLetter),
            _ => Err(format!("unknown webhook status {s:?}")),
        }
    }
}

/// A webhook endpoint as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: WebhookId,
    /// `None`: every directory.
    pub directory_id: Option<DirectoryId>,
    pub url: String,
    /// Empty: every kind.
    pub kinds: Vec<ChangeKind>,
    pub description: String,
    pub enabled: bool,
    /// Why delivery turned the endpoint off (410 Gone), if it did.
    pub disabled_reason: Option<String>,
    pub status: WebhookStatus,
    /// The signing secret, sealed (the store never sees it in clear).
    pub sealed_secret: Vec<u8>,
    /// The secret before the last rotation, still signed with until
    /// `previous_secret_until`.
    pub sealed_previous_secret: Option<Vec<u8>>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Every revision up to here is delivered or given up.
    pub cursor: i64,
    /// Failed attempts at the event after `cursor`.
    pub attempts: i32,
    /// When the event after `cursor` first failed.
    pub failing_since: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Bumped by every admin change: the lease holder's progress is refused
    /// once it is stale, so a replay or an edit is never overwritten.
    pub generation: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new endpoint. The caller picks the id: the secret is sealed with it.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: WebhookId,
    pub directory_id: Option<DirectoryId>,
    pub url: String,
    pub kinds: Vec<ChangeKind>,
    pub description: String,
    pub enabled: bool,
    pub sealed_secret: Vec<u8>,
    /// Delivery starts after this revision.
    pub cursor: i64,
}

/// The fields of an endpoint an admin may change (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    pub url: Option<String>,
    pub kinds: Option<Vec<ChangeKind>>,
    pub description: Option<String>,
    /// Enabling also clears `disabled_reason`.
    pub enabled: Option<bool>,
}

/// What the lease holder records after an attempt (or after passing
/// events the endpoint does not want).
#[derive(Debug, Clone)]
pub struct WebhookProgress {
    pub cursor: i64,
    pub attempts: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub status: WebhookStatus,
    /// Turns the endpoint off with this reason (410 Gone).
    pub disable: Option<String>,
    pub attempt: Option<NewWebhookAttempt>,
}

/// One endpoint's progress in a batch written at once
/// ([`crate::Store::record_webhooks_progress`]).
#[derive(Debug, Clone)]
pub struct EndpointProgress {
    pub id: WebhookId,
    /// The generation the lease holder delivered under.
    pub generation: i64,
    pub progress: WebhookProgress,
    /// Also drop the endpoint's attempts beyond the newest
    /// [`WEBHOOK_ATTEMPTS_KEPT`]. Finding them reads that many index
    /// entries, the costliest part of a progress write, so delivery asks
    /// for it only every few attempts; listings never show more than the
    /// newest [`WEBHOOK_ATTEMPTS_KEPT`] anyway.
    pub prune: bool,
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhookAttempt {
    pub revision: i64,
    pub event_id: String,
    /// `None` when no response arrived (timeout, connection refused).
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// The response body's first bytes, or the transport error.
    pub detail: String,
    pub succeeded: bool,
}

/// A recorded attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAttempt {
    pub attempt: NewWebhookAttempt,
    pub attempted_at: DateTime<Utc>,
}

/// Attempts kept per endpoint (the oldest go first).
pub const WEBHOOK_ATTEMPTS_KEPT: i64 = 100;

/// Kinds as stored: comma-separated dotted names, empty for every kind.
pub(crate) fn kinds_text(kinds: &[ChangeKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn parse_kinds(text: &str) -> Result<Vec<ChangeKind>, String> {
    text.split(',')
        .filter(|k| !k.is_empty())
        .map(str::parse)
        .collect()
}
