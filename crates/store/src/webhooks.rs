//! Webhook endpoints: where, what and how far each receiver has been
//! delivered, the lease that lets one replica deliver for it, and its
//! recent attempts. The delivery rules live in the directory service; the
//! store keeps the state they need to survive a crash.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::keyed::Keyed;
use crate::model::{ChangeKind, DirectoryId};
use crate::rows::{Arg, Cols, Dialect, Sql};
use crate::write::Backend;

/// Columns of an endpoint row, as [`decode`] reads them.
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

/// Webhook endpoints, leased for delivery.
pub(crate) const ENDPOINTS: Keyed = Keyed {
    table: "webhook_endpoints",
    key: "id",
    columns: COLUMNS,
    what: WHAT,
};

const WHAT: &str = "webhook endpoint";

// The statements of both backends (SQLite runs them on its single writer).
// Recording progress is each backend's own: see `Backend::record_webhook_progress`.

pub(crate) async fn create<B: Backend>(b: &B, new: NewWebhook) -> StoreResult<Webhook> {
    let sql = format!(
        "INSERT INTO webhook_endpoints (id, directory_id, url, kinds, description, enabled, \
           secret, cursor, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {now}, {now}) RETURNING {COLUMNS}",
        now = B::Db::later(9),
    );
    Sql::new(sql)
        .bind(new.id.0)
        .bind(new.directory_id.map(|d| d.0))
        .bind(new.url)
        .bind(kinds_text(&new.kinds))
        .bind(new.description)
        .bind(new.enabled)
        .bind(new.sealed_secret)
        .bind(new.cursor)
        .bind(Arg::NOW)
        .one(b.writer(), WHAT, decode::<B::Db>)
        .await
}

pub(crate) async fn list<B: Backend>(b: &B, dir: Option<DirectoryId>) -> StoreResult<Vec<Webhook>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhook_endpoints \
         WHERE $1 IS NULL OR directory_id = $1 OR directory_id IS NULL ORDER BY {}",
        B::Db::BY_AGE
    );
    Sql::new(sql)
        .bind(dir.map(|d| d.0))
        .all(b.readers(), decode::<B::Db>)
        .await
}

pub(crate) async fn update<B: Backend>(
    b: &B,
    id: WebhookId,
    u: WebhookUpdate,
) -> StoreResult<Webhook> {
    let set = "url = COALESCE($2, url), kinds = COALESCE($3, kinds), \
         description = COALESCE($4, description), enabled = COALESCE($5, enabled), \
         disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END";
    let kinds = u.kinds.as_deref().map(kinds_text);
    let args = [
        u.url.into(),
        kinds.into(),
        u.description.into(),
        u.enabled.into(),
    ];
    admin_change(b, id, set, args).await
}

pub(crate) async fn rotate_secret<B: Backend>(
    b: &B,
    id: WebhookId,
    sealed_secret: Vec<u8>,
    previous_until: DateTime<Utc>,
) -> StoreResult<Webhook> {
    let set = "previous_secret = secret, secret = $2, previous_secret_until = $3";
    admin_change(b, id, set, [sealed_secret.into(), previous_until.into()]).await
}

pub(crate) async fn delete<B: Backend>(b: &B, id: WebhookId) -> StoreResult<()> {
    let delete = Sql::new("DELETE FROM webhook_endpoints WHERE id = $1").bind(id.0);
    match delete.execute(b.writer()).await? {
        0 => Err(StoreError::NotFound(WHAT)),
        _ => Ok(()),
    }
}

/// Replay or skip: a fresh, active endpoint from `cursor`.
pub(crate) async fn reposition<B: Backend>(
    b: &B,
    id: WebhookId,
    cursor: i64,
) -> StoreResult<Webhook> {
    let set = "cursor = $2, status = 'active', attempts = 0, failing_since = NULL, \
         next_attempt_at = NULL";
    admin_change(b, id, set, [cursor.into()]).await
}

/// An admin's change of an endpoint: `set` (its parameters from `$2` on
/// are `args`), with the generation bumped, so that the lease holder's
/// progress, recorded at the old generation, can no longer overwrite it.
async fn admin_change<B: Backend, const N: usize>(
    b: &B,
    id: WebhookId,
    set: &str,
    args: [Arg; N],
) -> StoreResult<Webhook> {
    let sql = format!(
        "UPDATE webhook_endpoints SET {set}, generation = generation + 1, updated_at = {} \
         WHERE id = $1 RETURNING {COLUMNS}",
        B::Db::later(N + 2)
    );
    let change = args.into_iter().fold(Sql::new(sql).bind(id.0), Sql::bind);
    let change = change.bind(Arg::NOW);
    change.one(b.writer(), WHAT, decode::<B::Db>).await
}

pub(crate) async fn attempts<B: Backend>(
    b: &B,
    id: WebhookId,
    limit: i64,
) -> StoreResult<Vec<WebhookAttempt>> {
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE endpoint_id = $1 \
         ORDER BY id DESC LIMIT $2"
    );
    let attempts = Sql::new(sql).bind(id.0).bind(limit);
    attempts.all(b.readers(), decode_attempt::<B::Db>).await
}

/// An endpoint row ([`COLUMNS`]) of either backend.
pub(crate) fn decode<DB: Dialect>(row: &DB::Row) -> StoreResult<Webhook> {
    let c = Cols::<DB>(row);
    Ok(Webhook {
        id: WebhookId(c.id("id")?),
        directory_id: c.opt_id("directory_id")?.map(DirectoryId),
        url: c.get("url")?,
        kinds: parse_kinds(&c.get::<String>("kinds")?).map_err(StoreError::Internal)?,
        description: c.get("description")?,
        enabled: c.get("enabled")?,
        disabled_reason: c.get("disabled_reason")?,
        status: c.parsed("status")?,
        sealed_secret: c.get::<Option<Vec<u8>>>("secret")?.unwrap_or_default(),
        sealed_previous_secret: c.get("previous_secret")?,
        previous_secret_until: c.opt_time("previous_secret_until")?,
        cursor: c.get("cursor")?,
        attempts: c.get("attempts")?,
        failing_since: c.opt_time("failing_since")?,
        next_attempt_at: c.opt_time("next_attempt_at")?,
        generation: c.get("generation")?,
        lease_owner: c.get("lease_owner")?,
        lease_until: c.opt_time("lease_until")?,
        created_at: c.time("created_at")?,
        updated_at: c.time("updated_at")?,
    })
}

fn decode_attempt<DB: Dialect>(row: &DB::Row) -> StoreResult<WebhookAttempt> {
    let c = Cols::<DB>(row);
    Ok(WebhookAttempt {
        attempt: NewWebhookAttempt {
            revision: c.get("revision")?,
            event_id: c.get("event_id")?,
            status_code: c.get("status_code")?,
            latency_ms: c.get("latency_ms")?,
            detail: c.get("detail")?,
            succeeded: c.get("succeeded")?,
        },
        attempted_at: c.time("attempted_at")?,
    })
}
