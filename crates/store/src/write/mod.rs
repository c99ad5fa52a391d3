//! The write core: every rule of a write that does not depend on the
//! database lives here once, for both backends. Version checks, the replay
//! policy, the change queue, the group-editing state machine, the
//! membership diff and the create/replace/update/delete flows of users,
//! groups and directories are written against two small traits:
//!
//! * [`WriteTx`]: one open write transaction of a backend: load a row for
//!   update, write or delete a row, insert or delete membership rows. Each
//!   primitive is one (or, on SQLite, a few) statements; none decides
//!   anything.
//! * [`Backend`]: opening and committing write transactions (committing
//!   appends the queued changes, taking their revisions, and wakes local
//!   watchers). Its supertraits [`Credentials`], [`Reads`] and
//!   [`ChangeLog`] are the reads and the writes that append no change,
//!   which are backend-specific throughout; each backend implements them in
//!   the file of the same name's job (`credentials.rs`, `lists.rs`,
//!   `changes.rs`). [`Directories`] (in `crate::directories`), the webhook
//!   endpoints (`crate::webhooks`), pulled directories (`crate::sources`)
//!   and the portal's tables (`crate::portal`) are read and written by
//!   statements shared by both backends, over `crate::rows::Sql` and the
//!   backend's [`Pools`].
//!
//! [`crate::Store`] is implemented once, for every [`Backend`], in
//! `store.rs`; what the core owns there besides the flows is the replay
//! policy (`retry.rs`) and the cursor-expiry check of change-log reads.
//! The order in which a flow calls the primitives is the lock order
//! PostgreSQL relies on (see `crate::postgres`); SQLite, with its single
//! writer, takes no row locks and follows the same order.

mod changes;
mod directories;
mod groups;
pub(crate) mod retry;
mod store;
mod users;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::rows::Dialect;
use crate::{MemberPages, PoolStats};

pub(crate) use changes::{Change, ChangeQueue, parse_member_kind, user_field_changes};
pub(crate) use retry::{conflict, retrying};

/// Why a write loads a row. PostgreSQL locks accordingly; SQLite's single
/// writer needs no row locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// The row changes but stays: other transactions may still reference it
    /// (`FOR NO KEY UPDATE`).
    Edit,
    /// The row goes: nothing may start referencing it (`FOR UPDATE`).
    Delete,
}

/// One open write transaction of a backend. Dropping it rolls back.
#[async_trait]
pub trait WriteTx: Send {
    /// The changes appended when this transaction commits.
    fn changes(&mut self) -> &mut ChangeQueue;

    /// The directory and its version, locked against concurrent changes
    /// (and token creations), or `NotFound("directory")`.
    async fn load_directory(&mut self, id: DirectoryId) -> StoreResult<(Directory, i64)>;
    /// Inserts a directory at version 1.
    async fn insert_directory(&mut self, new: NewDirectory) -> StoreResult<Directory>;
    /// Stores `new`'s attributes, bumps the version and the update time;
    /// returns the stored directory and its version.
    async fn update_directory(&mut self, new: &Directory) -> StoreResult<(Directory, i64)>;
    /// Deletes the directory with its users, groups and memberships, and
    /// revokes its tokens.
    async fn delete_directory(&mut self, id: DirectoryId) -> StoreResult<()>;
    /// How many unrevoked tokens the directory holds.
    async fn live_tokens(&mut self, dir: DirectoryId) -> StoreResult<i64>;
    async fn insert_token(&mut self, new: NewToken) -> StoreResult<Token>;
    /// Marks the token revoked (keeping an earlier revocation time); false
    /// when the directory has no such token.
    async fn revoke_token(&mut self, dir: DirectoryId, id: TokenId) -> StoreResult<bool>;
    /// Sets the token's last use to `at` unless it is already later than `since`.
    async fn touch_token(
        &mut self,
        id: TokenId,
        at: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// A user of `dir` with its group ids, or `NotFound("user")`.
    async fn load_user(&mut self, dir: DirectoryId, id: UserId, lock: Lock) -> StoreResult<User>;
    /// Inserts a user at version 1 (the directory must exist:
    /// `NotFound("directory")`).
    async fn insert_user(&mut self, dir: DirectoryId, write: UserWrite) -> StoreResult<User>;
    /// Stores `write` over `old` at version + 1; returns the stored user
    /// (without group ids).
    async fn update_user(&mut self, old: &User, write: UserWrite) -> StoreResult<User>;
    async fn delete_user(&mut self, id: UserId) -> StoreResult<()>;

    /// A group of `dir` without members, or `NotFound("group")`.
    async fn load_group(&mut self, dir: DirectoryId, id: GroupId, lock: Lock)
    -> StoreResult<Group>;
    /// Inserts a group at version 1 without members.
    async fn insert_group(&mut self, dir: DirectoryId, write: &GroupWrite) -> StoreResult<Group>;
    /// Stores `group`'s attributes, adds `count_delta` to its member count
    /// and sets `version`; returns the stored group.
    async fn update_group(
        &mut self,
        group: &Group,
        count_delta: i64,
        version: i64,
    ) -> StoreResult<Group>;
    /// Hands the last write of `group` in this transaction (only its
    /// member count and version changed since it was stored: adds
    /// `count_delta`, sets `version`) to the commit, when the backend can
    /// write it there; returns the `updated_at` it will store, or `None`
    /// when it must be written now ([`WriteTx::update_group`]). Nothing may
    /// read or write the group row once it is handed over.
    fn defer_group_write(
        &mut self,
        _group: &Group,
        _count_delta: i64,
        _version: i64,
    ) -> Option<DateTime<Utc>> {
        None
    }
    async fn delete_group(&mut self, id: GroupId) -> StoreResult<()>;
    /// Adds `delta` to the member count of each of `groups` and bumps their
    /// versions; returns the new versions.
    async fn bump_groups(&mut self, groups: &[Uuid], delta: i64) -> StoreResult<Vec<(Uuid, i64)>>;
    /// The groups of `dir` holding `member`, and `member` itself when it is
    /// a group, in ascending id order, locked for their membership change
    /// (step 1 of the lock order).
    async fn lock_groups_holding(
        &mut self,
        dir: DirectoryId,
        member: Uuid,
    ) -> StoreResult<Vec<Uuid>>;

    /// Those of `members` that are users or groups of `dir`, locked so that
    /// they cannot be deleted before this transaction ends.
    async fn lock_members(
        &mut self,
        dir: DirectoryId,
        members: &[MemberRef],
    ) -> StoreResult<HashSet<(MemberKind, Uuid)>>;
    /// Inserts the memberships not present yet; returns the ids inserted.
    async fn insert_memberships(
        &mut self,
        dir: DirectoryId,
        group: GroupId,
        members: &[MemberRef],
    ) -> StoreResult<HashSet<Uuid>>;
    /// Adds the members of each of `adds` to `group`, each add all or
    /// nothing: locks the named members as [`WriteTx::lock_members`] does
    /// and inserts the memberships of every add whose members are all users
    /// or groups of `dir`. One statement on PostgreSQL when the members are
    /// of one kind; the two primitives otherwise.
    async fn add_memberships(
        &mut self,
        dir: DirectoryId,
        group: GroupId,
        adds: &[&[MemberRef]],
    ) -> StoreResult<Added> {
        add_memberships_in_steps(self, dir, group, adds).await
    }
    /// Deletes the named memberships of `group` (`None`: all); returns
    /// those deleted, in no particular order.
    async fn delete_memberships(
        &mut self,
        group: GroupId,
        ids: Option<&[Uuid]>,
    ) -> StoreResult<Vec<MemberRef>>;
    /// Deletes every membership of `member`; returns the groups it was in.
    async fn leave_groups(&mut self, member: Uuid) -> StoreResult<Vec<(Uuid, MemberKind)>>;
    /// The member ids of `group`, ascending.
    async fn member_ids(&mut self, group: GroupId) -> StoreResult<Vec<Uuid>>;
}

/// What [`WriteTx::add_memberships`] did.
#[derive(Debug, Default)]
pub struct Added {
    /// Per add, in order, its first member that is no user or group of the
    /// directory (the add inserted nothing), or `None`.
    pub unknown: Vec<Option<MemberRef>>,
    /// The members inserted (not those that were members already).
    pub inserted: HashSet<Uuid>,
}

impl Added {
    /// `unknown` from the members found, in the order of `adds`.
    pub(crate) fn unknown_of(
        adds: &[&[MemberRef]],
        found: &HashSet<(MemberKind, Uuid)>,
    ) -> Vec<Option<MemberRef>> {
        adds.iter()
            .map(|add| {
                add.iter()
                    .find(|m| !found.contains(&(m.kind, m.id)))
                    .copied()
            })
            .collect()
    }
}

/// [`WriteTx::add_memberships`] as two statements: lock, then insert.
pub(crate) async fn add_memberships_in_steps<T: WriteTx + ?Sized>(
    tx: &mut T,
    dir: DirectoryId,
    group: GroupId,
    adds: &[&[MemberRef]],
) -> StoreResult<Added> {
    let all: Vec<MemberRef> = adds.iter().flat_map(|add| add.iter().copied()).collect();
    if all.is_empty() {
        return Ok(Added {
            unknown: vec![None; adds.len()],
            inserted: HashSet::new(),
        });
    }
    let found = tx.lock_members(dir, &all).await?;
    let unknown = Added::unknown_of(adds, &found);
    let valid: Vec<MemberRef> = adds
        .iter()
        .zip(&unknown)
        .filter(|(_, unknown)| unknown.is_none())
        .flat_map(|(add, _)| add.iter().copied())
        .collect();
    let inserted = match valid.is_empty() {
        true => HashSet::new(),
        false => tx.insert_memberships(dir, group, &valid).await?,
    };
    Ok(Added { unknown, inserted })
}

/// A store backend: write transactions for the core, plus the reads (and
/// the writes that append no change), grouped as the backends' files are.
#[async_trait]
pub trait Backend: Credentials + Reads + ChangeLog + Send + Sync + 'static {
    type Tx: WriteTx + 'static;
    /// The database, for the statements both backends share
    /// ([`crate::rows::Sql`]: webhook endpoints, pulled directories).
    type Db: Dialect;

    fn pools(&self) -> Pools<'_, Self::Db>;

    /// Where reads run.
    fn readers(&self) -> &sqlx::Pool<Self::Db> {
        self.pools().readers
    }
    /// Where a write of one statement that appends no change runs, as its
    /// own transaction.
    fn writer(&self) -> &sqlx::Pool<Self::Db> {
        self.pools().writer
    }

    async fn begin(&self) -> StoreResult<Self::Tx>;
    /// Appends the queued changes (taking their revisions last, after every
    /// row lock is held), commits, and wakes local watchers.
    async fn commit(&self, tx: Self::Tx) -> StoreResult<()>;

    /// Creates a user with its `user.created` change. The default goes
    /// through the transaction primitives; a backend may do it in fewer
    /// round trips.
    async fn create_user(&self, dir: DirectoryId, write: UserWrite) -> StoreResult<User> {
        users::create(self, dir, write).await
    }

    /// [`crate::Store::create_users`]. The default creates them one by one;
    /// a backend whose commits are costly does it in one transaction.
    async fn create_users(
        &self,
        dir: DirectoryId,
        writes: Vec<UserWrite>,
    ) -> Vec<StoreResult<User>> {
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            results.push(retrying(|| self.create_user(dir, write.clone())).await);
        }
        results
    }

    /// [`crate::PortalStore::record_activity`] of a non-empty batch: the
    /// gateway's audit trail, so each backend writes it its fastest way.
    async fn record_activity(&self, entries: &[crate::portal::NewActivity]) -> StoreResult<u64>;
    /// [`crate::Store::record_webhook_progress`]: after every delivery, so
    /// each backend writes it its fastest way.
    async fn record_webhook_progress(&self, write: ProgressWrite<'_>) -> StoreResult<bool>;

    /// [`crate::Store::record_webhooks_progress`]. The default records them
    /// one by one; a backend whose statements are costly does it in one.
    async fn record_webhooks_progress(
        &self,
        owner: &str,
        batch: &[EndpointProgress],
    ) -> Vec<StoreResult<bool>> {
        each_progress(self, owner, batch).await
    }

    async fn ping(&self) -> StoreResult<()>;
    fn pool_stats(&self) -> Option<PoolStats>;
}

/// The lease holder's progress at an endpoint, written only while `owner`
/// holds its lease and it is at `generation`.
pub struct ProgressWrite<'a> {
    pub id: WebhookId,
    pub owner: &'a str,
    pub generation: i64,
    pub progress: &'a WebhookProgress,
}

/// Records each endpoint's progress in a statement of its own.
pub(crate) async fn each_progress<B: Backend + ?Sized>(
    backend: &B,
    owner: &str,
    batch: &[EndpointProgress],
) -> Vec<StoreResult<bool>> {
    let mut results = Vec::with_capacity(batch.len());
    for e in batch {
        let write = ProgressWrite {
            id: e.id,
            owner,
            generation: e.generation,
            progress: &e.progress,
        };
        results.push(backend.record_webhook_progress(write).await);
    }
    results
}

/// The connection pools of a backend.
pub struct Pools<'a, DB: sqlx::Database> {
    /// Where reads run.
    pub readers: &'a sqlx::Pool<DB>,
    /// Where a write of one statement that appends no change runs, as its
    /// own transaction: PostgreSQL's pool, SQLite's single writer.
    pub writer: &'a sqlx::Pool<DB>,
}

impl<'a, DB: sqlx::Database> Pools<'a, DB> {
    /// Reads and writes on the same pool.
    pub fn one(pool: &'a sqlx::Pool<DB>) -> Self {
        Pools {
            readers: pool,
            writer: pool,
        }
    }
}

/// Directory and bearer-token reads.
#[async_trait]
pub trait Directories {
    async fn get_directory(&self, id: DirectoryId) -> StoreResult<Directory>;
    async fn list_directories(&self, organization: Option<&str>) -> StoreResult<Vec<Directory>>;
    /// The directory's tokens, oldest first, whether the directory exists or not.
    async fn tokens_of(&self, dir: DirectoryId, include_revoked: bool) -> StoreResult<Vec<Token>>;
    async fn find_token(&self, hash: [u8; 32]) -> StoreResult<Option<(Token, [u8; 32])>>;
}

/// Service credentials.
#[async_trait]
pub trait Credentials {
    async fn create_credential(&self, new: NewCredential) -> StoreResult<Credential>;
    async fn list_credentials(&self, include_revoked: bool) -> StoreResult<Vec<Credential>>;
    async fn revoke_credential(&self, id: CredentialId) -> StoreResult<()>;
    async fn find_credential(&self, hash: [u8; 32]) -> StoreResult<Option<(Credential, [u8; 32])>>;
}

/// Reads of users, groups and members.
#[async_trait]
pub trait Reads {
    async fn get_user(&self, dir: DirectoryId, id: UserId) -> StoreResult<User>;
    async fn list_users(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<User>>;
    async fn get_group(&self, dir: DirectoryId, id: GroupId, members: bool) -> StoreResult<Group>;
    async fn list_groups(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<Group>>;
    async fn read_group(&self, dir: DirectoryId, id: GroupId, page_size: i64) -> GroupRead;
    /// `NotFound("group")` unless the group is in `dir`.
    async fn list_members(&self, dir: DirectoryId, page: MemberPage) -> StoreResult<Vec<Member>>;
}

/// The change log: its bounds and stable head, reading, pruning,
/// snapshots, and waking watchers.
#[async_trait]
pub trait ChangeLog {
    async fn log_bounds(&self) -> StoreResult<LogBounds>;
    /// The rows of `read` and the pruning bound, from one snapshot.
    async fn read_log(&self, read: &LogRead<'_>) -> StoreResult<LogPage>;
    /// How many rows `read` would return, counting at most `read.limit`.
    async fn count_log(&self, read: &LogRead<'_>) -> StoreResult<i64>;
    async fn advance_stable_head(&self, after: i64) -> StoreResult<i64>;
    async fn snapshot(&self, dir: Option<DirectoryId>) -> StoreResult<(Cursor, SnapshotItems)>;
    async fn prune_changes(&self, keep_secs: i64) -> StoreResult<i64>;
    async fn renew_log_epoch(&self) -> StoreResult<i64>;
    fn newest_committed(&self) -> Option<i64>;
    async fn wait_for_changes(&self, timeout: Duration) -> StoreResult<()>;
    async fn notify_changes(&self) -> StoreResult<()>;
    /// See [`crate::Store::wakes_on_commit`].
    fn wakes_on_commit(&self) -> bool {
        false
    }
}

/// A group and a stream of its member pages, read in one snapshot.
pub type GroupRead = StoreResult<(Group, MemberPages)>;

/// A page of a group's members: the ids above `after`, at most `limit`.
pub struct MemberPage {
    pub group: GroupId,
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// A read of the change log: revisions in `(after, up_to]` passing
/// `filter`, in order, at most `limit`.
pub struct LogRead<'a> {
    pub filter: &'a ChangeFilter,
    pub after: i64,
    pub up_to: i64,
    pub limit: i64,
}

/// What a log read found, and the log's pruning bound in the same snapshot.
pub struct LogPage {
    pub pruned_through: i64,
    pub changes: Vec<ChangeRecord>,
}

/// The items of an initial-state snapshot.
pub type SnapshotItems = BoxStream<'static, StoreResult<SnapshotItem>>;

/// Fails with [`StoreError::VersionMismatch`] when `expected` is set and
/// differs from the stored version.
fn check_version(expected: Option<i64>, actual: i64) -> StoreResult<()> {
    match expected {
        Some(expected) if expected != actual => {
            Err(StoreError::VersionMismatch { expected, actual })
        }
        _ => Ok(()),
    }
}
