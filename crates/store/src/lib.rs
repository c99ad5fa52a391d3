//! Roster's state: directories, tokens, users, groups, memberships and the
//! change log, in PostgreSQL (production) or SQLite (embedded default).
//!
//! Every mutation writes its change-log rows in the same transaction as the
//! state change (transactional outbox). All SQL of Roster lives in this crate.
//!
//! # Change-log ordering
//! Each change gets a `revision` from a sequence taken as the last step of its
//! transaction (after every row lock is held), so two changes of one resource
//! are always in commit order. Independent transactions can still commit out
//! of revision order; readers therefore deliver only up to the *stable head*:
//! the highest revision below which every revision is either committed or
//! known to belong to an aborted transaction. See `docs/watch.md`.
//!
//! # Shape
//! The rules of a write live once, in the backend-neutral `write` module:
//! version checks, the replay policy for transactions the database aborted
//! for a conflict, the queue of change rows, the group-editing state
//! machine and membership diff, and the create/replace/update/delete flows
//! of directories, users and groups. They are written against primitives
//! each backend implements (`write::WriteTx`: load a row for update, write
//! or delete a row, insert or delete membership rows; `write::Backend`:
//! begin, and commit, which appends the queued changes and wakes local
//! watchers), and [`Store`] is implemented once for every backend. The
//! backends keep what differs: the SQL, PostgreSQL's lock order, stable
//! head, NOTIFY and snapshot connections ([`postgres`]), SQLite's single
//! writer ([`sqlite`]). Both have the same files for the same jobs:
//! `tx.rs` (the primitives), `lists.rs` (reads of users, groups and
//! members), `changes.rs` (the change log), `credentials.rs`, `errors.rs`
//! (database errors to [`StoreError`]), and `webhooks.rs` and `portal.rs`
//! for the two writes each does its fastest way (a webhook's delivery
//! progress, a batch of the audit trail).
//!
//! What needs no backend of its own is written once: `rows.rs` (statements
//! with `$n` parameters, which both databases read, and their arguments
//! bound in each backend's column types — `Sql`; typed columns — `Cols`;
//! a live secret found by its hash, a statement streamed in pages from one
//! snapshot, ping; all over a `Dialect` implemented for both databases),
//! `directories.rs` (directories and tokens), `webhooks.rs` (endpoints — their configuration and their delivery state,
//! two rows — the delivery lease, and attempts), `sources.rs` (pulled directories), `keyed.rs` (a row by its
//! key, and its lease), `portal.rs` (the [`PortalStore`] supertrait: the
//! audit trail, portal links and sessions), `members.rs` (a group's
//! members, paged or streamed) and `page_token.rs` (the keyset page token
//! of a SCIM list).

mod credentials;
mod directories;
pub mod error;
mod filter_sql;
mod keyed;
mod members;
pub mod model;
mod page_token;
pub mod portal;
pub mod postgres;
pub mod produced;
mod rows;
mod sealed;
mod snapshot_slots;
mod sources;
pub mod sqlite;
mod webhooks;
mod write;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

pub use error::{StoreError, StoreResult};
pub use model::*;
pub use portal::PortalStore;
pub use sealed::SealedSecret;
pub use snapshot_slots::DEFAULT_SNAPSHOT_CONNECTIONS;
pub use sources::*;

/// How precisely a token's last use is recorded: the gateway re-checks a
/// token every few seconds, and a write each time would put a write on the
/// authentication path for no operator benefit.
pub const TOKEN_USE_GRANULARITY: chrono::Duration = chrono::Duration::seconds(60);

/// One PATCH of a group batch ([`Store::update_group_batch`]).
pub struct GroupEdit {
    pub if_version: Option<i64>,
    pub update: GroupUpdateFn,
}

/// Rewrites a user inside the transaction that holds its row lock: gets the
/// stored user, returns the new state or rejects. A `Fn`, not a `FnOnce`:
/// when the database aborts the transaction (deadlock, serialization
/// failure) the store replays it, calling the callback again on the state
/// it then finds, exactly as if the request had arrived a moment later.
pub type UserUpdateFn =
    Box<dyn Fn(&User) -> Result<UserWrite, Box<dyn std::error::Error + Send + Sync>> + Send + Sync>;

/// Rewrites a group's attributes and members inside its transaction: gets the
/// stored group (without members) and returns the operations to apply.
/// Replayable like [`UserUpdateFn`].
pub type GroupUpdateFn = Box<
    dyn Fn(&Group) -> Result<Vec<GroupOp>, Box<dyn std::error::Error + Send + Sync>> + Send + Sync,
>;

/// A group's members in pages, ordered by member id (see [`Store::read_group`]).
pub type MemberPages = BoxStream<'static, StoreResult<Vec<Member>>>;

/// The storage contract shared by the PostgreSQL and SQLite backends. The same
/// conformance suite (`tests/conformance/` in this crate) runs against both.
#[async_trait]
/// Its supertrait [`PortalStore`] holds the admin portal's part.
pub trait Store: PortalStore + Send + Sync + 'static {
    // --- directories and tokens ---
    async fn create_directory(&self, new: NewDirectory) -> StoreResult<Directory>;
    async fn get_directory(&self, id: DirectoryId) -> StoreResult<Directory>;
    async fn list_directories(&self, organization: Option<&str>) -> StoreResult<Vec<Directory>>;
    async fn update_directory(
        &self,
        id: DirectoryId,
        update: DirectoryUpdate,
    ) -> StoreResult<Directory>;
    /// Deletes the directory's users, groups and memberships, revokes its
    /// tokens and emits `directory.deleted`.
    async fn delete_directory(&self, id: DirectoryId) -> StoreResult<()>;
    /// Fails with [`StoreError::Limit`] when the directory already has two live tokens.
    async fn create_token(&self, new: NewToken) -> StoreResult<Token>;
    async fn list_tokens(
        &self,
        directory: DirectoryId,
        include_revoked: bool,
    ) -> StoreResult<Vec<Token>>;
    async fn revoke_token(&self, directory: DirectoryId, id: TokenId) -> StoreResult<()>;
    /// Finds the live token with this SHA-256 hash.
    async fn find_token(&self, hash: [u8; 32]) -> StoreResult<Option<(Token, [u8; 32])>>;
    /// Records that the token authenticated a request at `at`, unless it
    /// was already recorded within [`TOKEN_USE_GRANULARITY`] of `at`.
    async fn mark_token_used(&self, id: TokenId, at: DateTime<Utc>) -> StoreResult<()>;

    // --- service credentials (internal callers of the gRPC API) ---
    async fn create_credential(&self, new: NewCredential) -> StoreResult<Credential>;
    async fn list_credentials(&self, include_revoked: bool) -> StoreResult<Vec<Credential>>;
    /// Revoking twice is fine; an unknown credential is `NotFound`.
    async fn revoke_credential(&self, id: CredentialId) -> StoreResult<()>;
    /// Finds the live credential with this SHA-256 hash, with the stored hash.
    async fn find_credential(&self, hash: [u8; 32]) -> StoreResult<Option<(Credential, [u8; 32])>>;

    // --- webhook endpoints (docs/webhooks.md) ---
    /// Creates an endpoint; `NotFound("directory")` when it names an
    /// unknown directory.
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook>;
    async fn get_webhook(&self, id: WebhookId) -> StoreResult<Webhook>;
    /// The endpoints of `directory` (with the all-directories ones), or
    /// every endpoint when `None`, oldest first.
    async fn list_webhooks(&self, directory: Option<DirectoryId>) -> StoreResult<Vec<Webhook>>;
    /// The generation of each endpoint [`Store::list_webhooks`] would
    /// return, from the endpoints' configuration alone: what delivery reads
    /// after each range of the change log to see an admin's change, without
    /// touching the rows every delivery writes.
    async fn webhook_generations(
        &self,
        directory: Option<DirectoryId>,
    ) -> StoreResult<Vec<(WebhookId, i64)>>;
    /// Changes the fields that are set and bumps the generation.
    async fn update_webhook(&self, id: WebhookId, update: WebhookUpdate) -> StoreResult<Webhook>;
    /// Makes `sealed_secret` the secret and keeps the current one as the
    /// previous secret until `previous_until`; bumps the generation.
    async fn rotate_webhook_secret(
        &self,
        id: WebhookId,
        sealed_secret: Vec<u8>,
        previous_until: DateTime<Utc>,
    ) -> StoreResult<Webhook>;
    /// Deletes the endpoint and its attempts.
    async fn delete_webhook(&self, id: WebhookId) -> StoreResult<()>;
    /// Replay or skip: delivery continues after `cursor`, as a fresh,
    /// active endpoint (retry state cleared); bumps the generation.
    async fn reposition_webhook(&self, id: WebhookId, cursor: i64) -> StoreResult<Webhook>;
    /// Takes (or, for its holder, extends) the endpoint's delivery lease
    /// until `ttl` from now, when it is free, expired or already `owner`'s;
    /// returns the endpoint as the lease holder must see it, or `None` when
    /// another owner holds a live lease. One UPDATE takes it: two replicas
    /// racing for it cannot both win.
    async fn acquire_webhook_lease(
        &self,
        id: WebhookId,
        owner: &str,
        ttl: std::time::Duration,
    ) -> StoreResult<Option<Webhook>>;
    /// Gives the lease up (if `owner` holds it) so another replica may take
    /// it without waiting for the expiry.
    async fn release_webhook_lease(&self, id: WebhookId, owner: &str) -> StoreResult<()>;
    /// Records the lease holder's progress (and the attempt, keeping the
    /// newest [`WEBHOOK_ATTEMPTS_KEPT`]) in one transaction, only while
    /// `owner` holds the lease and the endpoint is at `generation`; false
    /// (nothing written) otherwise.
    async fn record_webhook_progress(
        &self,
        id: WebhookId,
        owner: &str,
        generation: i64,
        progress: &WebhookProgress,
    ) -> StoreResult<bool>;
    /// [`Store::record_webhook_progress`] of several endpoints (each at
    /// most once) held by `owner`: one result per item, in order, each as
    /// that call would give it. Delivery gathers the progress of every
    /// endpoint that finished a request at the same moment, so the store
    /// pays one statement for them.
    async fn record_webhooks_progress(
        &self,
        owner: &str,
        batch: &[EndpointProgress],
    ) -> Vec<StoreResult<bool>>;
    /// The newest attempts first, at most `limit`.
    async fn list_webhook_attempts(
        &self,
        id: WebhookId,
        limit: i64,
    ) -> StoreResult<Vec<WebhookAttempt>>;

    // --- pulled directories (docs/connectors/) ---
    /// Makes the directory a pulled one, or changes its settings (the
    /// schedule, status and lease are kept); `NotFound("directory")` when
    /// the directory does not exist.
    async fn put_source(
        &self,
        dir: DirectoryId,
        settings: SourceSettings,
    ) -> StoreResult<DirectorySource>;
    /// `NotFound("directory source")` for a SCIM directory.
    async fn get_source(&self, dir: DirectoryId) -> StoreResult<DirectorySource>;
    /// Every pulled directory.
    async fn list_sources(&self) -> StoreResult<Vec<DirectorySource>>;
    /// "Sync now" (`confirm`: also confirm the removals the safeguard
    /// stopped): makes the next run due at once.
    async fn schedule_sync(&self, dir: DirectoryId, confirm: bool) -> StoreResult<DirectorySource>;
    /// Takes (or extends, for its holder) the directory's sync lease until
    /// `ttl` from now when it is free, expired or already `owner`'s; `None`
    /// when another owner holds a live lease. One statement, as
    /// [`Store::acquire_webhook_lease`].
    async fn acquire_sync_lease(
        &self,
        dir: DirectoryId,
        owner: &str,
        ttl: std::time::Duration,
    ) -> StoreResult<Option<DirectorySource>>;
    /// Gives the lease up if `owner` holds it.
    async fn release_sync_lease(&self, dir: DirectoryId, owner: &str) -> StoreResult<()>;
    /// Records a run's report and the next run, only while `owner` holds
    /// the lease; false (nothing written) otherwise.
    async fn record_sync(
        &self,
        dir: DirectoryId,
        owner: &str,
        record: &SyncRecord,
    ) -> StoreResult<bool>;

    // --- sealing key rotation (docs/operations.md) ---
    /// Replaces the sealed `secret` by `new` if it still is `old`; whether
    /// it was replaced.
    async fn reseal(&self, secret: SealedSecret, old: &[u8], new: Vec<u8>) -> StoreResult<bool>;

    // --- users ---
    async fn create_user(&self, dir: DirectoryId, user: UserWrite) -> StoreResult<User>;
    /// Creates several users, in one transaction where the backend can:
    /// each as [`Store::create_user`] would (its row, its `user.created`
    /// change, its own error — a taken `userName` fails that user alone).
    /// One result per user, in order.
    async fn create_users(&self, dir: DirectoryId, users: Vec<UserWrite>)
    -> Vec<StoreResult<User>>;
    async fn get_user(&self, dir: DirectoryId, id: UserId) -> StoreResult<User>;
    async fn list_users(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<User>>;
    /// Replaces the user when `if_version` (if any) matches.
    async fn replace_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        user: UserWrite,
    ) -> StoreResult<User>;
    /// Read-modify-write under the row lock (PATCH).
    async fn update_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        update: UserUpdateFn,
    ) -> StoreResult<User>;
    /// Deletes the user, removing it from every group (with member.removed events).
    async fn delete_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
    ) -> StoreResult<()>;

    // --- groups ---
    async fn create_group(&self, dir: DirectoryId, group: GroupWrite) -> StoreResult<Group>;
    /// With `include_members`, the members are read in the group's snapshot.
    async fn get_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        include_members: bool,
    ) -> StoreResult<Group>;
    async fn list_groups(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<Group>>;
    async fn replace_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        group: GroupWrite,
    ) -> StoreResult<Group>;
    /// Read-modify-write under the row lock (PATCH); member operations touch
    /// only the named membership rows.
    async fn update_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        update: GroupUpdateFn,
    ) -> StoreResult<Group>;
    /// Group commit: several independent PATCHes of one group (concurrent
    /// requests, in arrival order) applied in ONE transaction that locks the
    /// group once and writes its row once, as if each had run alone in this
    /// order. Each edit gets its own result: its own version (one bump per
    /// edit that changed something), its own change rows (in order, stamped
    /// with that version), and its own error — an edit that fails changes
    /// nothing and fails no other (a failure inside the database work reruns
    /// that edit alone and the rest as a new batch). Returns one result per
    /// edit, in order.
    async fn update_group_batch(
        &self,
        dir: DirectoryId,
        id: GroupId,
        edits: Vec<GroupEdit>,
    ) -> Vec<StoreResult<Group>>;
    async fn delete_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
    ) -> StoreResult<()>;
    /// Idempotent: members already present are skipped. Returns (added, new group version).
    async fn add_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[MemberRef],
    ) -> StoreResult<(i64, i64)>;
    /// Idempotent: members already absent are skipped. Returns (removed, new group version).
    async fn remove_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[uuid::Uuid],
    ) -> StoreResult<(i64, i64)>;
    /// Keyset-paginated members, ordered by member id.
    async fn list_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        after: Option<uuid::Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<Member>>;

    /// The group (without members) and a stream of its members, ordered by
    /// member id in non-empty pages of at most `page_size`, all read in one
    /// snapshot: the members are exactly those of the returned version,
    /// however many pages the stream spans and whatever commits meanwhile.
    /// The snapshot (a read transaction) lives until the stream ends or is
    /// dropped, so consume it promptly.
    async fn read_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        page_size: i64,
    ) -> StoreResult<(Group, MemberPages)>;

    // --- change log ---
    /// Bounds of the change log (pruned-through and stable head).
    async fn log_bounds(&self) -> StoreResult<LogBounds>;
    /// Changes with `after < revision <= up_to` passing `filter`, in revision
    /// order, at most `limit`. `up_to` must not exceed a stable head. Fails
    /// with [`StoreError::CursorExpired`] when the log was pruned past
    /// `after`; otherwise nothing of the range is missing (the pruning bound
    /// is read in the same snapshot as the rows).
    async fn read_changes(
        &self,
        filter: &ChangeFilter,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChangeRecord>>;
    /// How many changes with `after < revision <= up_to` pass `filter`,
    /// counting at most `cap` (a webhook endpoint's lag in events).
    async fn count_changes(
        &self,
        filter: &ChangeFilter,
        after: i64,
        up_to: i64,
        cap: i64,
    ) -> StoreResult<i64>;
    /// Advances the stable head past `after` and returns the new one: the
    /// tailer calls this when woken. Resolves holes left by in-flight or
    /// aborted transactions.
    async fn advance_stable_head(&self, after: i64) -> StoreResult<i64>;
    /// Consistent snapshot of a directory (or all) for initial-state watches:
    /// items are streamed; the cursor says which changes they reflect. At
    /// most the store's snapshot cap are open at once (each holds one of
    /// its own connections until the stream is dropped or read to the end);
    /// one more fails at once with [`StoreError::Busy`].
    async fn snapshot(
        &self,
        dir: Option<DirectoryId>,
    ) -> StoreResult<(Cursor, BoxStream<'static, StoreResult<SnapshotItem>>)>;
    /// Deletes change-log rows older than `keep_secs` seconds (keeps at least
    /// up to the stable head minus nothing); returns the new pruned-through.
    async fn prune_changes(&self, keep_secs: i64) -> StoreResult<i64>;
    /// Gives the change log a new random epoch and returns it: every cursor
    /// issued before is refused from then on. The restore step after
    /// bringing back a backup (the restored log reuses revisions that
    /// consumers may already have seen from the lost history).
    async fn renew_log_epoch(&self) -> StoreResult<i64>;
    /// The highest committed revision as of the last stable-head advance,
    /// without a database call (for the head-lag metric). Unlike
    /// [`LogBounds::allocated_head`] it leaves out revisions that are not
    /// committed yet or never will be (an aborted write at the end of the
    /// log is no lag).
    fn newest_committed(&self) -> Option<i64> {
        None
    }
    /// Waits until another process may have committed changes (LISTEN/NOTIFY
    /// on PostgreSQL) or `timeout` passes.
    async fn wait_for_changes(&self, timeout: std::time::Duration) -> StoreResult<()>;
    /// Tells other processes that changes were committed (debounced by the caller).
    async fn notify_changes(&self) -> StoreResult<()>;
    /// Whether every commit of a change through this store wakes
    /// [`Store::wait_for_changes`] in this process by itself, so that a
    /// writer need not wake its tailer again (a second wake-up after the
    /// commit was already published only costs the tailer a useless look
    /// at the database).
    fn wakes_on_commit(&self) -> bool {
        false
    }
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Connection-pool usage, for metrics; `None` when the backend has no pool to report.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}

/// Connection-pool usage of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Open connections (idle and in use).
    pub size: u32,
    /// Idle open connections.
    pub idle: u32,
    /// The pool's maximum.
    pub max: u32,
}

impl PoolStats {
    /// The usage of `pools` together, whose maximum is `max`.
    pub(crate) fn of<DB: sqlx::Database>(pools: &[&sqlx::Pool<DB>], max: u32) -> PoolStats {
        PoolStats {
            size: pools.iter().map(|p| p.size()).sum(),
            idle: pools
                .iter()
                .map(|p| u32::try_from(p.num_idle()).unwrap_or(u32::MAX))
                .sum(),
            max,
        }
    }
}
