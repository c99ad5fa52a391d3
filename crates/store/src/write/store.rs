//! [`Store`], implemented once for every backend: the writes run the core
//! flows (replayed by the retry policy), the reads go to the backend.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::retry::retrying;
use super::{
    Backend, ChangeLog, Credentials, Directories, LogRead, MemberPage, ProgressWrite, Reads,
    SnapshotItems, directories, groups, users,
};
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::sealed::{self, SealedSecret};
use crate::sources::{self, DirectorySource, SourceSettings, SyncRecord};
use crate::webhooks;
use crate::{GroupEdit, GroupUpdateFn, MemberPages, PoolStats, Store, UserUpdateFn};

#[async_trait]
impl<B: Backend> Store for B {
    async fn create_directory(&self, new: NewDirectory) -> StoreResult<Directory> {
        retrying(|| directories::create(self, new.clone())).await
    }
    async fn get_directory(&self, id: DirectoryId) -> StoreResult<Directory> {
        Directories::get_directory(self, id).await
    }
    async fn list_directories(&self, organization: Option<&str>) -> StoreResult<Vec<Directory>> {
        Directories::list_directories(self, organization).await
    }
    async fn update_directory(
        &self,
        id: DirectoryId,
        u: DirectoryUpdate,
    ) -> StoreResult<Directory> {
        retrying(|| directories::update(self, id, u.clone())).await
    }
    async fn delete_directory(&self, id: DirectoryId) -> StoreResult<()> {
        retrying(|| directories::delete(self, id)).await
    }
    async fn create_token(&self, new: NewToken) -> StoreResult<Token> {
        retrying(|| directories::create_token(self, new.clone())).await
    }
    async fn list_tokens(
        &self,
        dir: DirectoryId,
        include_revoked: bool,
    ) -> StoreResult<Vec<Token>> {
        directories::list_tokens(self, dir, include_revoked).await
    }
    async fn revoke_token(&self, dir: DirectoryId, id: TokenId) -> StoreResult<()> {
        directories::revoke_token(self, dir, id).await
    }
    async fn find_token(&self, hash: [u8; 32]) -> StoreResult<Option<(Token, [u8; 32])>> {
        Directories::find_token(self, hash).await
    }
    async fn mark_token_used(&self, id: TokenId, at: DateTime<Utc>) -> StoreResult<()> {
        directories::mark_token_used(self, id, at).await
    }
    async fn create_credential(&self, new: NewCredential) -> StoreResult<Credential> {
        Credentials::create_credential(self, new).await
    }
    async fn list_credentials(&self, include_revoked: bool) -> StoreResult<Vec<Credential>> {
        Credentials::list_credentials(self, include_revoked).await
    }
    async fn revoke_credential(&self, id: CredentialId) -> StoreResult<()> {
        Credentials::revoke_credential(self, id).await
    }
    async fn find_credential(&self, hash: [u8; 32]) -> StoreResult<Option<(Credential, [u8; 32])>> {
        Credentials::find_credential(self, hash).await
    }

    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook> {
        if let Some(dir) = new.directory_id {
            Directories::get_directory(self, dir).await?;
        }
        webhooks::create(self, new).await
    }
    async fn get_webhook(&self, id: WebhookId) -> StoreResult<Webhook> {
        webhooks::get(self, id).await
    }
    async fn list_webhooks(&self, dir: Option<DirectoryId>) -> StoreResult<Vec<Webhook>> {
        webhooks::list(self, dir).await
    }
    async fn webhook_generations(
        &self,
        dir: Option<DirectoryId>,
    ) -> StoreResult<Vec<(WebhookId, i64)>> {
        webhooks::generations(self, dir).await
    }
    async fn update_webhook(&self, id: WebhookId, update: WebhookUpdate) -> StoreResult<Webhook> {
        webhooks::update(self, id, update).await
    }
    async fn rotate_webhook_secret(
        &self,
        id: WebhookId,
        sealed_secret: Vec<u8>,
        previous_until: DateTime<Utc>,
    ) -> StoreResult<Webhook> {
        webhooks::rotate_secret(self, id, sealed_secret, previous_until).await
    }
    async fn delete_webhook(&self, id: WebhookId) -> StoreResult<()> {
        webhooks::delete(self, id).await
    }
    async fn reposition_webhook(&self, id: WebhookId, cursor: i64) -> StoreResult<Webhook> {
        webhooks::reposition(self, id, cursor).await
    }
    async fn acquire_webhook_lease(
        &self,
        id: WebhookId,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Option<Webhook>> {
        webhooks::take_lease(self, id, owner, ttl).await
    }
    async fn release_webhook_lease(&self, id: WebhookId, owner: &str) -> StoreResult<()> {
        webhooks::release_lease(self, id, owner).await
    }
    async fn record_webhook_progress(
        &self,
        id: WebhookId,
        owner: &str,
        generation: i64,
        progress: &WebhookProgress,
    ) -> StoreResult<bool> {
        let write = ProgressWrite {
            id,
            owner,
            generation,
            progress,
        };
        Backend::record_webhook_progress(self, write).await
    }
    async fn record_webhooks_progress(
        &self,
        owner: &str,
        batch: &[EndpointProgress],
    ) -> Vec<StoreResult<bool>> {
        Backend::record_webhooks_progress(self, owner, batch).await
    }
    async fn list_webhook_attempts(
        &self,
        id: WebhookId,
        limit: i64,
    ) -> StoreResult<Vec<WebhookAttempt>> {
        // Batched progress prunes only now and then: more may be stored.
        webhooks::attempts(self, id, limit.clamp(0, WEBHOOK_ATTEMPTS_KEPT)).await
    }

    async fn put_source(
        &self,
        dir: DirectoryId,
        settings: SourceSettings,
    ) -> StoreResult<DirectorySource> {
        Directories::get_directory(self, dir).await?;
        sources::put(self, dir, settings).await
    }
    async fn get_source(&self, dir: DirectoryId) -> StoreResult<DirectorySource> {
        sources::SOURCES
            .get(self.readers(), dir.0, sources::decode::<B::Db>)
            .await
    }
    async fn list_sources(&self) -> StoreResult<Vec<DirectorySource>> {
        sources::list(self).await
    }
    async fn reseal(&self, secret: SealedSecret, old: &[u8], new: Vec<u8>) -> StoreResult<bool> {
        sealed::reseal(self, secret, old, new).await
    }
    async fn schedule_sync(&self, dir: DirectoryId, confirm: bool) -> StoreResult<DirectorySource> {
        sources::schedule(self, dir, confirm).await
    }
    async fn acquire_sync_lease(
        &self,
        dir: DirectoryId,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Option<DirectorySource>> {
        let leased = &sources::SOURCES;
        leased
            .take(self.writer(), dir.0, owner, ttl, sources::decode::<B::Db>)
            .await
    }
    async fn release_sync_lease(&self, dir: DirectoryId, owner: &str) -> StoreResult<()> {
        sources::SOURCES.release(self.writer(), dir.0, owner).await
    }
    async fn record_sync(
        &self,
        dir: DirectoryId,
        owner: &str,
        record: &SyncRecord,
    ) -> StoreResult<bool> {
        sources::record(self, dir, owner, record).await
    }

    async fn create_user(&self, dir: DirectoryId, user: UserWrite) -> StoreResult<User> {
        retrying(|| Backend::create_user(self, dir, user.clone())).await
    }
    async fn create_users(
        &self,
        dir: DirectoryId,
        users: Vec<UserWrite>,
    ) -> Vec<StoreResult<User>> {
        Backend::create_users(self, dir, users).await
    }
    async fn get_user(&self, dir: DirectoryId, id: UserId) -> StoreResult<User> {
        Reads::get_user(self, dir, id).await
    }
    async fn list_users(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<User>> {
        Reads::list_users(self, dir, query).await
    }
    async fn replace_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        user: UserWrite,
    ) -> StoreResult<User> {
        retrying(|| users::update(self, dir, id, if_version, |_| Ok(user.clone()))).await
    }
    async fn update_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
        update: UserUpdateFn,
    ) -> StoreResult<User> {
        // A replay calls the callback again on the state it then finds.
        let update = |old: &User| update(old).map_err(rejected);
        retrying(|| users::update(self, dir, id, if_version, update)).await
    }
    async fn delete_user(
        &self,
        dir: DirectoryId,
        id: UserId,
        if_version: Option<i64>,
    ) -> StoreResult<()> {
        retrying(|| users::delete(self, dir, id, if_version)).await
    }

    async fn create_group(&self, dir: DirectoryId, group: GroupWrite) -> StoreResult<Group> {
        retrying(|| groups::create(self, dir, group.clone())).await
    }
    async fn get_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        include_members: bool,
    ) -> StoreResult<Group> {
        Reads::get_group(self, dir, id, include_members).await
    }
    async fn list_groups(&self, dir: DirectoryId, query: &ListQuery) -> StoreResult<Page<Group>> {
        Reads::list_groups(self, dir, query).await
    }
    async fn replace_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        group: GroupWrite,
    ) -> StoreResult<Group> {
        let plan = |_: &Group| Ok(groups::replace_ops(group.clone()));
        retrying(|| groups::edit(self, dir, id, if_version, plan)).await
    }
    async fn update_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
        update: GroupUpdateFn,
    ) -> StoreResult<Group> {
        let plan = |old: &Group| update(old).map_err(rejected);
        retrying(|| groups::edit(self, dir, id, if_version, plan)).await
    }
    async fn update_group_batch(
        &self,
        dir: DirectoryId,
        id: GroupId,
        edits: Vec<GroupEdit>,
    ) -> Vec<StoreResult<Group>> {
        let mut pending: Vec<(usize, (Option<i64>, GroupPlan))> = edits
            .into_iter()
            .enumerate()
            .map(|(i, e)| (i, (e.if_version, plan_of(e.update))))
            .collect();
        let mut results: Vec<Option<StoreResult<Group>>> = pending.iter().map(|_| None).collect();
        while !pending.is_empty() {
            let batch: Vec<&(Option<i64>, GroupPlan)> = pending.iter().map(|(_, e)| e).collect();
            let attempt = retrying(|| groups::edit_batch(self, dir, id, &batch)).await;
            match attempt {
                Ok(groups::Batched::Done(done)) => {
                    for ((i, _), result) in pending.drain(..).zip(done) {
                        results[i] = Some(result);
                    }
                }
                Ok(groups::Batched::Failed { pos, .. }) => {
                    // That edit alone (with its own replays), then the rest
                    // as a new batch: concurrent requests have no order of
                    // their own, so running it first is one valid order.
                    let (i, (if_version, plan)) = pending.remove(pos);
                    let alone =
                        retrying(|| groups::edit(self, dir, id, if_version, |g: &Group| plan(g)))
                            .await;
                    results[i] = Some(alone);
                }
                Err(_) => {
                    // The batch itself failed (group gone, database away):
                    // each edit alone, for its own error.
                    for (i, (if_version, plan)) in pending.drain(..) {
                        let alone = retrying(|| {
                            groups::edit(self, dir, id, if_version, |g: &Group| plan(g))
                        })
                        .await;
                        results[i] = Some(alone);
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Internal("edit left unanswered".into()))))
            .collect()
    }
    async fn delete_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        if_version: Option<i64>,
    ) -> StoreResult<()> {
        retrying(|| groups::delete(self, dir, id, if_version)).await
    }
    async fn add_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[MemberRef],
    ) -> StoreResult<(i64, i64)> {
        let op = || GroupOp::AddMembers(members.to_vec());
        retrying(|| groups::change_members(self, dir, group, op())).await
    }
    async fn remove_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        members: &[Uuid],
    ) -> StoreResult<(i64, i64)> {
        let op = || GroupOp::RemoveMembers(members.to_vec());
        retrying(|| groups::change_members(self, dir, group, op())).await
    }
    async fn list_members(
        &self,
        dir: DirectoryId,
        group: GroupId,
        after: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<Member>> {
        let limit = limit.max(0);
        Reads::list_members(
            self,
            dir,
            MemberPage {
                group,
                after,
                limit,
            },
        )
        .await
    }
    async fn read_group(
        &self,
        dir: DirectoryId,
        id: GroupId,
        page_size: i64,
    ) -> StoreResult<(Group, MemberPages)> {
        Reads::read_group(self, dir, id, page_size).await
    }

    async fn log_bounds(&self) -> StoreResult<LogBounds> {
        ChangeLog::log_bounds(self).await
    }
    async fn read_changes(
        &self,
        filter: &ChangeFilter,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        let read = LogRead {
            filter,
            after,
            up_to,
            limit: limit.max(0),
        };
        let page = ChangeLog::read_log(self, &read).await?;
        // The bound comes from the rows' snapshot: a cursor the log was
        // pruned past is refused, never answered with a silent gap.
        if after < page.pruned_through {
            return Err(StoreError::CursorExpired {
                requested: after,
                oldest: page.pruned_through,
            });
        }
        Ok(page.changes)
    }
    async fn count_changes(
        &self,
        filter: &ChangeFilter,
        after: i64,
        up_to: i64,
        cap: i64,
    ) -> StoreResult<i64> {
        let read = LogRead {
            filter,
            after,
            up_to,
            limit: cap.max(0),
        };
        ChangeLog::count_log(self, &read).await
    }
    async fn advance_stable_head(&self, after: i64) -> StoreResult<i64> {
        ChangeLog::advance_stable_head(self, after).await
    }
    async fn snapshot(&self, dir: Option<DirectoryId>) -> StoreResult<(Cursor, SnapshotItems)> {
        ChangeLog::snapshot(self, dir).await
    }
    async fn prune_changes(&self, keep_secs: i64) -> StoreResult<i64> {
        ChangeLog::prune_changes(self, keep_secs).await
    }
    async fn renew_log_epoch(&self) -> StoreResult<i64> {
        ChangeLog::renew_log_epoch(self).await
    }
    fn newest_committed(&self) -> Option<i64> {
        ChangeLog::newest_committed(self)
    }
    async fn wait_for_changes(&self, timeout: Duration) -> StoreResult<()> {
        ChangeLog::wait_for_changes(self, timeout).await
    }
    async fn notify_changes(&self) -> StoreResult<()> {
        ChangeLog::notify_changes(self).await
    }
    fn wakes_on_commit(&self) -> bool {
        ChangeLog::wakes_on_commit(self)
    }
    async fn ping(&self) -> StoreResult<()> {
        Backend::ping(self).await
    }
    fn pool_stats(&self) -> Option<PoolStats> {
        Backend::pool_stats(self)
    }
}

/// A PATCH callback as the write core calls it.
type GroupPlan = Box<dyn Fn(&Group) -> StoreResult<Vec<GroupOp>> + Send + Sync>;

fn plan_of(update: GroupUpdateFn) -> GroupPlan {
    Box::new(move |old: &Group| update(old).map_err(rejected))
}

/// A rejection by a caller's callback (the PATCH engine).
fn rejected(e: Box<dyn std::error::Error + Send + Sync>) -> StoreError {
    StoreError::Rejected(e)
}
