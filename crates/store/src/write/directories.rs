//! The directory flows, and the creation of a directory's tokens.

/// A directory holds at most this many live tokens: two, so an IT admin can
/// rotate without downtime.
const MAX_LIVE_TOKENS: i64 = 2;

use super::changes::directory_field_changes;
use super::{Backend, Change, Directories, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::model::*;

pub(super) async fn create<B: Backend>(backend: &B, new: NewDirectory) -> StoreResult<Directory> {
    let mut tx = backend.begin().await?;
    let dir = tx.insert_directory(new).await?;
    tx.changes().emit(Change::directory(
        ChangeKind::DirectoryCreated,
        &dir,
        1,
        Vec::new(),
    )?);
    backend.commit(tx).await?;
    Ok(dir)
}

/// An update that changes nothing is not stored and emits nothing.
pub(super) async fn update<B: Backend>(
    backend: &B,
    id: DirectoryId,
    update: DirectoryUpdate,
) -> StoreResult<Directory> {
    let mut tx = backend.begin().await?;
    let (old, _) = tx.load_directory(id).await?;
    let new = Directory {
        name: update.name.unwrap_or_else(|| old.name.clone()),
        organization: update
            .organization
            .unwrap_or_else(|| old.organization.clone()),
        provider: update.provider.unwrap_or(old.provider),
        deprovision_policy: update.deprovision_policy.unwrap_or(old.deprovision_policy),
        attribute_mappings: update
            .attribute_mappings
            .unwrap_or_else(|| old.attribute_mappings.clone()),
        ..old.clone()
    };
    let changed = directory_field_changes(&old, &new)?;
    if changed.is_empty() {
        return Ok(old);
    }
    let (dir, version) = tx.update_directory(&new).await?;
    tx.changes().emit(Change::directory(
        ChangeKind::DirectoryUpdated,
        &dir,
        version,
        changed,
    )?);
    backend.commit(tx).await?;
    Ok(dir)
}

/// Deletes the directory under its lock, with everything in it; its
/// tokens can never authenticate again. Its change-log rows stay.
pub(super) async fn delete<B: Backend>(backend: &B, id: DirectoryId) -> StoreResult<()> {
    let mut tx = backend.begin().await?;
    let (dir, version) = tx.load_directory(id).await?;
    tx.delete_directory(id).await?;
    tx.changes().emit(Change::directory(
        ChangeKind::DirectoryDeleted,
        &dir,
        version,
        Vec::new(),
    )?);
    backend.commit(tx).await
}

/// The count and the insert run under the directory's lock, so two
/// concurrent creations cannot both see one live token and exceed the limit.
pub(super) async fn create_token<B: Backend>(backend: &B, new: NewToken) -> StoreResult<Token> {
    let mut tx = backend.begin().await?;
    tx.load_directory(new.directory_id).await?;
    if tx.live_tokens(new.directory_id).await? >= MAX_LIVE_TOKENS {
        return Err(StoreError::Limit(format!(
            "a directory holds at most {MAX_LIVE_TOKENS} live tokens: revoke one first"
        )));
    }
    let token = tx.insert_token(new).await?;
    backend.commit(tx).await?;
    Ok(token)
}

/// Revoking twice is fine; an unknown token is `NotFound`.
pub(super) async fn revoke_token<B: Backend>(
    backend: &B,
    dir: DirectoryId,
    id: TokenId,
) -> StoreResult<()> {
    let mut tx = backend.begin().await?;
    if !tx.revoke_token(dir, id).await? {
        return Err(StoreError::NotFound("token"));
    }
    backend.commit(tx).await
}

/// Records a use at most once per [`crate::TOKEN_USE_GRANULARITY`].
pub(super) async fn mark_token_used<B: Backend>(
    backend: &B,
    id: TokenId,
    at: chrono::DateTime<chrono::Utc>,
) -> StoreResult<()> {
    let mut tx = backend.begin().await?;
    tx.touch_token(id, at, at - crate::TOKEN_USE_GRANULARITY)
        .await?;
    backend.commit(tx).await
}

/// An unknown directory is `NotFound`, not an empty list.
pub(super) async fn list_tokens<B: Backend>(
    backend: &B,
    dir: DirectoryId,
    include_revoked: bool,
) -> StoreResult<Vec<Token>> {
    backend.get_directory(dir).await?;
    backend.tokens_of(dir, include_revoked).await
}
