//! The user flows.

use super::{Backend, Change, Lock, WriteTx, check_version, groups, user_field_changes};
use crate::error::StoreResult;
use crate::model::*;

pub(super) async fn create<B: Backend + ?Sized>(
    backend: &B,
    dir: DirectoryId,
    write: UserWrite,
) -> StoreResult<User> {
    let mut tx = backend.begin().await?;
    let user = tx.insert_user(dir, write).await?;
    tx.changes()
        .emit(Change::user(ChangeKind::UserCreated, &user, Vec::new())?);
    backend.commit(tx).await?;
    Ok(user)
}

/// PUT and PATCH: `update` gets the locked user and returns its new state.
pub(super) async fn update<B, F>(
    backend: &B,
    dir: DirectoryId,
    id: UserId,
    if_version: Option<i64>,
    update: F,
) -> StoreResult<User>
where
    B: Backend,
    F: FnOnce(&User) -> StoreResult<UserWrite>,
{
    let mut tx = backend.begin().await?;
    let old = tx.load_user(dir, id, Lock::Edit).await?;
    check_version(if_version, old.version)?;
    // A rejection drops `tx`, which rolls back: nothing was written.
    let write = update(&old)?;
    let user = write_update(&mut tx, &old, write).await?;
    backend.commit(tx).await?;
    Ok(user)
}

/// Stores `write` over `old` (version + 1) and queues the matching change.
/// A write that changes nothing (same fields, same JSON) is not stored and
/// emits nothing: IdPs resend unchanged resources, and consumers should not
/// see no-op events.
async fn write_update<T: WriteTx>(tx: &mut T, old: &User, write: UserWrite) -> StoreResult<User> {
    let changed = user_field_changes(&old.fields, &write.fields)?;
    if changed.is_empty() && old.raw == write.raw {
        return Ok(old.clone());
    }
    let mut user = tx.update_user(old, write).await?;
    user.group_ids = old.group_ids.clone();
    let kind = match (old.fields.active, user.fields.active) {
        (true, false) => ChangeKind::UserDeactivated,
        (false, true) => ChangeKind::UserReactivated,
        _ => ChangeKind::UserUpdated,
    };
    tx.changes().emit(Change::user(kind, &user, changed)?);
    Ok(user)
}

/// Removes the user from its groups (`member.removed` each, the groups get
/// new versions), then deletes it (`user.deleted` with its last state).
/// Lock order: the user's groups, then the user for deletion, which keeps
/// new memberships out meanwhile.
pub(super) async fn delete<B: Backend>(
    backend: &B,
    dir: DirectoryId,
    id: UserId,
    if_version: Option<i64>,
) -> StoreResult<()> {
    let mut tx = backend.begin().await?;
    let holders = tx.lock_groups_holding(dir, id.0).await?;
    let user = tx.load_user(dir, id, Lock::Delete).await?;
    check_version(if_version, user.version)?;
    groups::remove_from_locked_groups(&mut tx, dir, id.0, &holders).await?;
    tx.delete_user(id).await?;
    tx.changes()
        .emit(Change::user(ChangeKind::UserDeleted, &user, Vec::new())?);
    backend.commit(tx).await
}
