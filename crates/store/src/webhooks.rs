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
use crate::model::{ChangeKind, DirectoryId};
use crate::rows::{Arg, Cols, Dialect, On, Sql, begin_write, commit};
use crate::write::Backend;

/// Columns of an endpoint as [`decode`] reads them, from [`FROM`]: its
/// configuration (`e`) and its delivery state (`p`).
pub(crate) const COLUMNS: &str = "e.id AS id, e.directory_id AS directory_id, e.url AS url, \
     e.kinds AS kinds, e.description AS description, e.enabled AS enabled, \
     e.disabled_reason AS disabled_reason, p.status AS status, e.secret AS secret, \
     e.previous_secret AS previous_secret, e.previous_secret_until AS previous_secret_until, \
     p.cursor AS cursor, p.attempts AS attempts, p.failing_since AS failing_since, \
     p.next_attempt_at AS next_attempt_at, e.generation AS generation, \
     p.lease_owner AS lease_owner, p.lease_until AS lease_until, e.created_at AS created_at, \
     e.updated_at AS updated_at, p.updated_at AS progressed_at";

/// An endpoint is two rows: its configuration in `webhook_endpoints`
/// (read by lists and generation checks, written by admins) and its
/// delivery state in `webhook_progress` (written after every delivery, by
/// primary key only), so that the readers of the one never share the
/// pages of the other's updates (docs/performance.md, sixth session).
const FROM: &str = "webhook_endpoints e JOIN webhook_progress p ON p.endpoint_id = e.id";

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

const WHAT: &str = "webhook endpoint";

// The statements of both backends (SQLite runs them on its single writer).
// Recording progress is each backend's own: see `Backend::record_webhook_progress`.

pub(crate) async fn create<B: Backend>(b: &B, new: NewWebhook) -> StoreResult<Webhook> {
    let mut tx = begin_write(b.writer()).await?;
    let endpoint = format!(
        "INSERT INTO webhook_endpoints (id, directory_id, url, kinds, description, enabled, \
           secret, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, {now}, {now})",
        now = B::Db::later(8),
    );
    Sql::new(endpoint)
        .bind(new.id.0)
        .bind(new.directory_id.map(|d| d.0))
        .bind(new.url)
        .bind(kinds_text(&new.kinds))
        .bind(new.description)
        .bind(new.enabled)
        .bind(new.sealed_secret)
        .bind(Arg::NOW)
        .execute(&mut tx)
        .await?;
    let progress = format!(
        "INSERT INTO webhook_progress (endpoint_id, generation, cursor, updated_at) \
         VALUES ($1, 1, $2, {})",
        B::Db::later(3),
    );
    let progress = Sql::new(progress).bind(new.id.0).bind(new.cursor);
    progress.bind(Arg::NOW).execute(&mut tx).await?;
    let created = get_on(&mut tx, new.id).await?;
    commit(tx).await?;
    Ok(created)
}

pub(crate) async fn get<B: Backend>(b: &B, id: WebhookId) -> StoreResult<Webhook> {
    get_on(b.readers(), id).await
}

async fn get_on<'e, DB: Dialect>(on: impl Into<On<'e, DB>>, id: WebhookId) -> StoreResult<Webhook> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE e.id = $1");
    Sql::new(sql).bind(id.0).one(on, WHAT, decode::<DB>).await
}

pub(crate) async fn list<B: Backend>(b: &B, dir: Option<DirectoryId>) -> StoreResult<Vec<Webhook>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} \
         WHERE $1 IS NULL OR e.directory_id = $1 OR e.directory_id IS NULL ORDER BY {}",
        B::Db::BY_AGE
    );
    Sql::new(sql)
        .bind(dir.map(|d| d.0))
        .all(b.readers(), decode::<B::Db>)
        .await
}

/// The generation of each endpoint [`list`] would return, read from the
/// configuration rows alone (none of the delivery state's pages).
pub(crate) async fn generations<B: Backend>(
    b: &B,
    dir: Option<DirectoryId>,
) -> StoreResult<Vec<(WebhookId, i64)>> {
    let sql = "SELECT id, generation FROM webhook_endpoints \
         WHERE $1 IS NULL OR directory_id = $1 OR directory_id IS NULL";
    fn row<DB: Dialect>(row: &DB::Row) -> StoreResult<(WebhookId, i64)> {
        let c = Cols::<DB>(row);
        Ok((WebhookId(c.id("id")?), c.get("generation")?))
    }
    Sql::new(sql)
        .bind(dir.map(|d| d.0))
        .all(b.readers(), row::<B::Db>)
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
    admin_change(b, id, (set, args), ("", [])).await
}

pub(crate) async fn rotate_secret<B: Backend>(
    b: &B,
    id: WebhookId,
    sealed_secret: Vec<u8>,
    previous_until: DateTime<Utc>,
) -> StoreResult<Webhook> {
    let set = "previous_secret = secret, secret = $2, previous_secret_until = $3";
    let args = [sealed_secret.into(), previous_until.into()];
    admin_change(b, id, (set, args), ("", [])).await
}

/// Deletes the endpoint, its delivery state (by cascade, first: its row
/// lock waits for a progress write in flight, whose attempt the next
/// statement then sees) and its attempts (PostgreSQL keeps no foreign key
/// from them, which would lock the endpoint at every attempt).
pub(crate) async fn delete<B: Backend>(b: &B, id: WebhookId) -> StoreResult<()> {
    let mut tx = begin_write(b.writer()).await?;
    let delete = Sql::new("DELETE FROM webhook_endpoints WHERE id = $1").bind(id.0);
    if delete.execute(&mut tx).await? == 0 {
        return Err(StoreError::NotFound(WHAT));
    }
    let attempts = Sql::new("DELETE FROM webhook_attempts WHERE endpoint_id = $1").bind(id.0);
    attempts.execute(&mut tx).await?;
    commit(tx).await
}

/// Replay or skip: a fresh, active endpoint from `cursor`.
pub(crate) async fn reposition<B: Backend>(
    b: &B,
    id: WebhookId,
    cursor: i64,
) -> StoreResult<Webhook> {
    let progress = ", cursor = $3, status = 'active', attempts = 0, failing_since = NULL, \
         next_attempt_at = NULL";
    admin_change(b, id, ("", []), (progress, [cursor.into()])).await
}

/// An admin's change of an endpoint, in one transaction: `endpoint` (SQL
/// assignments whose parameters from `$2` on are its args; empty for none)
/// on the configuration row, with the generation bumped, then the delivery
/// state row takes the new generation (`$2`) and `progress` (assignments
/// starting with a comma, parameters from `$3` on). The lease holder's
/// progress, guarded by the old generation on the delivery state row, can
/// no longer overwrite it. The configuration row is locked first, as every
/// writer of both rows does.
async fn admin_change<B: Backend, const N: usize, const M: usize>(
    b: &B,
    id: WebhookId,
    (endpoint, endpoint_args): (&str, [Arg; N]),
    (progress, progress_args): (&str, [Arg; M]),
) -> StoreResult<Webhook> {
    let comma = if endpoint.is_empty() { "" } else { ", " };
    let sql = format!(
        "UPDATE webhook_endpoints SET {endpoint}{comma}generation = generation + 1, \
           updated_at = {} \
         WHERE id = $1 RETURNING generation",
        B::Db::later(N + 2)
    );
    let change = endpoint_args
        .into_iter()
        .fold(Sql::new(sql).bind(id.0), Sql::bind);
    let mut tx = begin_write(b.writer()).await?;
    fn generation<DB: Dialect>(row: &DB::Row) -> StoreResult<i64> {
        Cols::<DB>(row).get("generation")
    }
    let generation = change
        .bind(Arg::NOW)
        .one(&mut tx, WHAT, generation::<B::Db>)
        .await?;
    let sql =
        format!("UPDATE webhook_progress SET generation = $2{progress} WHERE endpoint_id = $1");
    let change = progress_args
        .into_iter()
        .fold(Sql::new(sql).bind(id.0).bind(generation), Sql::bind);
    change.execute(&mut tx).await?;
    let changed = get_on(&mut tx, id).await?;
    commit(tx).await?;
    Ok(changed)
}

/// Takes (or renews) the delivery lease of endpoint `id` for `owner` for
/// `ttl` if it is free, expired or already `owner`'s: one UPDATE of the
/// delivery state row (on PostgreSQL its row lock serializes racing
/// replicas; SQLite's single writer runs one at a time), then the endpoint
/// as it stands.
pub(crate) async fn take_lease<B: Backend>(
    b: &B,
    id: WebhookId,
    owner: &str,
    ttl: std::time::Duration,
) -> StoreResult<Option<Webhook>> {
    let sql = format!(
        "UPDATE webhook_progress SET lease_owner = $2, lease_until = {until} \
         WHERE endpoint_id = $1 \
           AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < {now})",
        until = B::Db::later(3),
        now = B::Db::later(4),
    );
    let take = Sql::new(sql).bind(id.0).bind(owner).bind(Arg::Later(ttl));
    if take.bind(Arg::NOW).execute(b.writer()).await? == 0 {
        return Ok(None);
    }
    match get_on(b.writer(), id).await {
        Ok(hook) => Ok(Some(hook)),
        // Deleted since: not taken.
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Gives the lease of endpoint `id` back, if `owner` still holds it.
pub(crate) async fn release_lease<B: Backend>(
    b: &B,
    id: WebhookId,
    owner: &str,
) -> StoreResult<()> {
    let sql = "UPDATE webhook_progress SET lease_owner = NULL, lease_until = NULL \
         WHERE endpoint_id = $1 AND lease_owner = $2";
    Sql::new(sql)
        .bind(id.0)
        .bind(owner)
        .execute(b.writer())
        .await?;
    Ok(())
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
        // The later of the last admin change and the last progress.
        updated_at: c.time("updated_at")?.max(c.time("progressed_at")?),
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
