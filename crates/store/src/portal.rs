//! The admin portal's state: the audit trail of SCIM requests, and the
//! single-use links and sessions that give a customer's IT admin access to
//! one directory (docs/portal.md).
//!
//! Each backend implements [`PortalStore`] in its own `portal.rs`; the
//! conformance suite (`tests/conformance/portal.rs`) runs against both.
//! Link and session secrets are never stored: only their SHA-256 hashes,
//! which the caller compares again in constant time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreResult;
use crate::model::{DirectoryId, PortalLinkId, PortalSessionId};

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

/// The `WHERE` and `ORDER BY` of an activity page, with parameters numbered
/// by `param` (`$n` or `?n`): directory, status low, status high, resource
/// type, before, after, limit.
pub(crate) fn activity_page_sql(query: &ActivityQuery, param: impl Fn(usize) -> String) -> String {
    // A live view asks for what came after its newest row, oldest first;
    // every other page is newest first.
    let order = if query.after.is_some() { "ASC" } else { "DESC" };
    let p: Vec<String> = (1..=7).map(param).collect();
    format!(
        "WHERE directory_id = {d} AND ({lo} IS NULL OR status >= {lo}) \
         AND ({hi} IS NULL OR status < {hi}) AND ({rt} IS NULL OR resource_type = {rt}) \
         AND ({before} IS NULL OR id < {before}) AND ({after} IS NULL OR id > {after}) \
         ORDER BY id {order} LIMIT {limit}",
        d = p[0],
        lo = p[1],
        hi = p[2],
        rt = p[3],
        before = p[4],
        after = p[5],
        limit = p[6],
    )
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
