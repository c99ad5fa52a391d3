//! The admin portal's state: the audit trail of SCIM requests, and the
//! single-use links and sessions that give a customer's IT admin access to
//! one directory (docs/portal.md).
//!
//! [`PortalStore`] is implemented here once for both backends, but for
//! recording activity, which each backend does its fastest way (its own
//! `portal.rs`); the conformance suite (`tests/conformance/portal.rs`) runs
//! against both.
//! Link and session secrets are never stored: only their SHA-256 hashes,
//! which the caller compares again in constant time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{StoreError, StoreResult};
use crate::model::{DirectoryId, PortalLinkId, PortalSessionId};
use crate::rows::{self, Arg, Cols, Dialect, Sql};
use crate::write::Backend;

/// One SCIM request as the gateway saw it. No body, no credential: the
/// path, the outcome and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivity {
    pub directory_id: DirectoryId,
    pub at: DateTime<Utc>,
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub status: i32,
    pub scim_type: Option<String>,
    pub detail: Option<String>,
    pub user_agent: Option<String>,
    pub client_address: Option<String>,
    /// `User`, `Group`, `Bulk`, … when the request names a resource type.
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// The newest change-log revision the request produced, when it
    /// produced any.
    pub revision: Option<i64>,
    /// Every change-log event it produced, in the wire contract's text form
    /// (`roster_proto::contract::events`); the store keeps it as it is.
    pub events: Option<String>,
    pub duration_ms: i64,
}

/// A recorded request with its id (increasing in recording order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub id: i64,
    pub entry: NewActivity,
}

/// Which outcomes a list keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 1xx–3xx.
    Success,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// 4xx and 5xx.
    Failure,
}

impl StatusClass {
    /// The HTTP statuses of the class, as a half-open range.
    pub fn range(self) -> (i32, i32) {
        match self {
            Self::Success => (100, 400),
            Self::ClientError => (400, 500),
            Self::ServerError => (500, 600),
            Self::Failure => (400, 600),
        }
    }
}

/// A page of one directory's activity: newest first below `before`, or
/// (with `after`) oldest first above it — what a live view polls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityQuery {
    pub directory: DirectoryId,
    pub status: Option<StatusClass>,
    pub resource_type: Option<String>,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: i64,
}

/// A portal link to create.
#[derive(Debug, Clone)]
pub struct NewPortalLink {
    pub directory_id: DirectoryId,
    pub hash: [u8; 32],
    pub expires_at: DateTime<Utc>,
}

/// A portal link, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalLink {
    pub id: PortalLinkId,
    pub directory_id: DirectoryId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The session a link is exchanged for.
#[derive(Debug, Clone)]
pub struct NewPortalSession {
    pub hash: [u8; 32],
    pub expires_at: DateTime<Utc>,
}

/// A portal session, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSession {
    pub id: PortalSessionId,
    pub link_id: PortalLinkId,
    pub directory_id: DirectoryId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What opening a link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkExchange {
    /// The link was live: it is now used, and this session was created.
    /// Carries the link's stored hash for the caller's constant-time check.
    Opened(PortalSession, [u8; 32]),
    /// Opened before: a link works once.
    AlreadyUsed,
    Expired,
    Revoked,
    /// No link has this hash.
    Unknown,
}

/// The portal's part of the store.
#[async_trait]
pub trait PortalStore {
    /// Records requests in one statement (one transaction); entries of
    /// directories that do not exist (a mistyped URL, a deleted directory)
    /// are skipped. Returns how many were recorded.
    async fn record_activity(&self, entries: &[NewActivity]) -> StoreResult<u64>;
    /// One page of a directory's activity (see [`ActivityQuery`]).
    async fn list_activity(&self, query: &ActivityQuery) -> StoreResult<Vec<Activity>>;
    /// Deletes activity recorded before `before`; returns how many rows.
    async fn prune_activity(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// `NotFound("directory")` when the directory does not exist.
    async fn create_portal_link(&self, new: NewPortalLink) -> StoreResult<PortalLink>;
    /// Marks the link with this hash used and creates `session`, in one
    /// transaction, when the link is live at `now`; otherwise says why not.
    async fn open_portal_link(
        &self,
        hash: [u8; 32],
        session: NewPortalSession,
        now: DateTime<Utc>,
    ) -> StoreResult<LinkExchange>;
    /// The live (not revoked) session with this hash, with the stored hash.
    /// Expiry is the caller's to check.
    async fn find_portal_session(
        &self,
        hash: [u8; 32],
    ) -> StoreResult<Option<(PortalSession, [u8; 32])>>;
    /// Revokes the session with this hash (signing out); unknown is fine.
    async fn end_portal_session(&self, hash: [u8; 32]) -> StoreResult<()>;
    /// Revokes a directory's links (one, or all when `link` is `None`) and
    /// every session opened with them. Returns how many links.
    async fn revoke_portal_links(
        &self,
        directory: DirectoryId,
        link: Option<PortalLinkId>,
    ) -> StoreResult<u64>;
}

#[async_trait]
impl<B: Backend> PortalStore for B {
    async fn record_activity(&self, entries: &[NewActivity]) -> StoreResult<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        Backend::record_activity(self, entries).await
    }

    async fn list_activity(&self, query: &ActivityQuery) -> StoreResult<Vec<Activity>> {
        // A live view asks for what came after its newest row, oldest
        // first; every other page is newest first.
        let order = if query.after.is_some() { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {ACTIVITY_COLUMNS} FROM activity \
             WHERE directory_id = $1 AND ($2 IS NULL OR status >= $2) \
             AND ($3 IS NULL OR status < $3) AND ($4 IS NULL OR resource_type = $4) \
             AND ($5 IS NULL OR id < $5) AND ($6 IS NULL OR id > $6) \
             ORDER BY id {order} LIMIT $7"
        );
        let (lo, hi) = query.status.map(StatusClass::range).unzip();
        Sql::new(sql)
            .bind(query.directory.0)
            .bind(lo)
            .bind(hi)
            .bind(query.resource_type.as_deref())
            .bind(query.before)
            .bind(query.after)
            .bind(query.limit)
            .all(self.readers(), decode_activity::<B::Db>)
            .await
    }

    async fn prune_activity(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let prune = Sql::new("DELETE FROM activity WHERE at < $1").bind(before);
        prune.execute(self.writer()).await
    }

    async fn create_portal_link(&self, new: NewPortalLink) -> StoreResult<PortalLink> {
        let sql = format!(
            "INSERT INTO portal_links (id, directory_id, hash, expires_at, created_at) \
             SELECT $1, $2, $3, $4, {} WHERE EXISTS (SELECT 1 FROM directories WHERE id = $2) \
             RETURNING {LINK_COLUMNS}",
            B::Db::later(5)
        );
        let create = Sql::new(sql)
            .bind(PortalLinkId::new().0)
            .bind(new.directory_id.0)
            .bind(&new.hash[..]);
        let create = create.bind(new.expires_at).bind(Arg::NOW);
        let created = create.optional(self.writer(), decode_link::<B::Db>).await?;
        created.ok_or(StoreError::NotFound("directory"))
    }

    async fn open_portal_link(
        &self,
        hash: [u8; 32],
        session: NewPortalSession,
        now: DateTime<Utc>,
    ) -> StoreResult<LinkExchange> {
        // Two concurrent openings of one link take turns (PostgreSQL's row
        // lock, SQLite's single writer): the second sees it used.
        let mut tx = rows::begin_write(self.writer()).await?;
        let sql = format!(
            "SELECT {LINK_COLUMNS}, hash FROM portal_links WHERE hash = $1 {}",
            B::Db::FOR_UPDATE
        );
        let find = Sql::new(sql).bind(&hash[..]);
        let Some((link, stored)) = find.optional(&mut tx, decode_hashed::<B::Db>).await? else {
            return Ok(LinkExchange::Unknown);
        };
        if let Some(refused) = refusal(&link, now) {
            return Ok(refused);
        }
        let used = Sql::new("UPDATE portal_links SET used_at = $2 WHERE id = $1");
        used.bind(link.id.0).bind(now).execute(&mut tx).await?;
        let sql = format!(
            "INSERT INTO portal_sessions (id, link_id, directory_id, hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SESSION_COLUMNS}"
        );
        let open = Sql::new(sql)
            .bind(PortalSessionId::new().0)
            .bind(link.id.0)
            .bind(link.directory_id.0)
            .bind(&session.hash[..]);
        let open = open.bind(now).bind(session.expires_at);
        let opened = open
            .one(&mut tx, "portal session", decode_session::<B::Db>)
            .await?;
        rows::commit(tx).await?;
        Ok(LinkExchange::Opened(opened, stored))
    }

    async fn find_portal_session(
        &self,
        hash: [u8; 32],
    ) -> StoreResult<Option<(PortalSession, [u8; 32])>> {
        let sessions = "portal_sessions";
        let decode = decode_session::<B::Db>;
        rows::live_secret(self.readers(), sessions, SESSION_COLUMNS, &hash, decode).await
    }

    async fn end_portal_session(&self, hash: [u8; 32]) -> StoreResult<()> {
        let sql = format!(
            "UPDATE portal_sessions SET revoked_at = COALESCE(revoked_at, {}) WHERE hash = $1",
            B::Db::later(2)
        );
        let end = Sql::new(sql).bind(&hash[..]).bind(Arg::NOW);
        end.execute(self.writer()).await?;
        Ok(())
    }

    async fn revoke_portal_links(
        &self,
        directory: DirectoryId,
        link: Option<PortalLinkId>,
    ) -> StoreResult<u64> {
        let revoke = |table: &str, link_column: &str| {
            let sql = format!(
                "UPDATE {table} SET revoked_at = COALESCE(revoked_at, {}) \
                 WHERE directory_id = $1 AND ($2 IS NULL OR {link_column} = $2)",
                B::Db::later(3)
            );
            let revoke = Sql::new(sql).bind(directory.0);
            revoke.bind(link.map(|l| l.0)).bind(Arg::NOW)
        };
        let mut tx = rows::begin_write(self.writer()).await?;
        let revoked = revoke("portal_links", "id").execute(&mut tx).await?;
        // A session belongs to its link's directory: the sessions of the
        // links revoked.
        revoke("portal_sessions", "link_id")
            .execute(&mut tx)
            .await?;
        rows::commit(tx).await?;
        Ok(revoked)
    }
}

/// Why a link cannot be opened at `now`, if it cannot: the one rule both
/// backends apply to the row they locked.
pub(crate) fn refusal(link: &PortalLink, now: DateTime<Utc>) -> Option<LinkExchange> {
    if link.revoked_at.is_some() {
        Some(LinkExchange::Revoked)
    } else if link.used_at.is_some() {
        Some(LinkExchange::AlreadyUsed)
    } else if link.expires_at <= now {
        Some(LinkExchange::Expired)
    } else {
        None
    }
}

/// Columns of an activity row, in the order both backends select them.
pub(crate) const ACTIVITY_COLUMNS: &str = "id, directory_id, at, request_id, method, path, \
     status, scim_type, detail, user_agent, client_address, resource_type, resource_id, \
     revision, duration_ms, events";

/// Columns of a portal link row.
pub(crate) const LINK_COLUMNS: &str =
    "id, directory_id, created_at, expires_at, used_at, revoked_at";

/// Columns of a portal session row.
pub(crate) const SESSION_COLUMNS: &str =
    "id, link_id, directory_id, created_at, expires_at, revoked_at";

fn decode_activity<DB: Dialect>(row: &DB::Row) -> StoreResult<Activity> {
    let c = Cols::<DB>(row);
    Ok(Activity {
        id: c.get("id")?,
        entry: NewActivity {
            directory_id: DirectoryId(c.id("directory_id")?),
            at: c.time("at")?,
            request_id: c.get("request_id")?,
            method: c.get("method")?,
            path: c.get("path")?,
            status: c.get("status")?,
            scim_type: c.get("scim_type")?,
            detail: c.get("detail")?,
            user_agent: c.get("user_agent")?,
            client_address: c.get("client_address")?,
            resource_type: c.get("resource_type")?,
            resource_id: c.get("resource_id")?,
            revision: c.get("revision")?,
            duration_ms: c.get("duration_ms")?,
            events: c.get("events")?,
        },
    })
}

fn decode_link<DB: Dialect>(row: &DB::Row) -> StoreResult<PortalLink> {
    let c = Cols::<DB>(row);
    Ok(PortalLink {
        id: PortalLinkId(c.id("id")?),
        directory_id: DirectoryId(c.id("directory_id")?),
        created_at: c.time("created_at")?,
        expires_at: c.time("expires_at")?,
        used_at: c.opt_time("used_at")?,
        revoked_at: c.opt_time("revoked_at")?,
    })
}

/// A link with its stored hash.
fn decode_hashed<DB: Dialect>(row: &DB::Row) -> StoreResult<(PortalLink, [u8; 32])> {
    let hash = Cols::<DB>(row)
        .get::<Option<Vec<u8>>>("hash")?
        .unwrap_or_default();
    Ok((decode_link::<DB>(row)?, crate::error::stored_hash(hash)?))
}

fn decode_session<DB: Dialect>(row: &DB::Row) -> StoreResult<PortalSession> {
    let c = Cols::<DB>(row);
    Ok(PortalSession {
        id: PortalSessionId(c.id("id")?),
        link_id: PortalLinkId(c.id("link_id")?),
        directory_id: DirectoryId(c.id("directory_id")?),
        created_at: c.time("created_at")?,
        expires_at: c.time("expires_at")?,
        revoked_at: c.opt_time("revoked_at")?,
    })
}
