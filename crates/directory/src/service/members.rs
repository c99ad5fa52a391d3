//! Group members without a type.
//!
//! Most IdPs send group members as bare ids. Such members are first assumed
//! to be users; when the store rejects an id as unknown, each untyped id is
//! looked up (user, then group) and the write is retried once. Nested groups
//! therefore work without a `type`, and the common case costs no lookups.

use std::collections::HashMap;
use std::future::Future;

use roster_scim::error::ScimError;
use roster_scim::resource::MemberValue;
use roster_store::{DirectoryId, GroupId, MemberKind, MemberRef, Store, StoreError, UserId};

use crate::backend::Backend;
use crate::error::{ServiceError, ServiceResult};

/// Group-member values the client typed, plus kinds resolved by lookup.
#[derive(Debug, Clone, Default)]
pub(super) struct MemberKinds {
    resolved: HashMap<uuid::Uuid, MemberKind>,
    attempted: bool,
}

impl MemberKinds {
    /// Store references for `values`: the explicit type, else a resolved
    /// kind, else user.
    pub(super) fn refs(&self, values: &[MemberValue]) -> ServiceResult<Vec<MemberRef>> {
        values
            .iter()
            .map(|v| {
                let id = member_id(&v.value)?;
                let kind = explicit_kind(v)
                    .or_else(|| self.resolved.get(&id).copied())
                    .unwrap_or(MemberKind::User);
                Ok(MemberRef { id, kind })
            })
            .collect()
    }

    /// Whether resolving untyped members could change the outcome.
    fn can_resolve(&self, values: &[MemberValue]) -> bool {
        !self.attempted && values.iter().any(|v| explicit_kind(v).is_none())
    }

    /// Looks every untyped member up (user first, then group). An id that is
    /// neither keeps failing in the store, whose message is kept.
    async fn resolve(
        &mut self,
        store: &dyn Store,
        dir: DirectoryId,
        values: &[MemberValue],
    ) -> ServiceResult<()> {
        self.attempted = true;
        for v in values.iter().filter(|v| explicit_kind(v).is_none()) {
            let id = member_id(&v.value)?;
            if self.resolved.contains_key(&id) {
                continue;
            }
            if let Some(kind) = lookup_kind(store, dir, id).await? {
                self.resolved.insert(id, kind);
            }
        }
        Ok(())
    }
}

/// Runs a write naming the group members `values` (through
/// [`Backend::write`]); when the store rejects it and some members had no
/// type, looks those up and runs it once more with their kinds.
pub(super) async fn write_with_members<T, F, Fut>(
    backend: &Backend,
    dir: DirectoryId,
    values: &[MemberValue],
    op: F,
) -> ServiceResult<T>
where
    F: Fn(MemberKinds) -> Fut,
    Fut: Future<Output = ServiceResult<T>>,
{
    let mut kinds = MemberKinds::default();
    loop {
        match backend.write(op(kinds.clone())).await {
            Err(ServiceError::Store(StoreError::Invalid(_))) if kinds.can_resolve(values) => {
                kinds.resolve(backend.store(), dir, values).await?;
            }
            result => return result,
        }
    }
}

async fn lookup_kind(
    store: &dyn Store,
    dir: DirectoryId,
    id: uuid::Uuid,
) -> ServiceResult<Option<MemberKind>> {
    match store.get_user(dir, UserId(id)).await {
        Ok(_) => return Ok(Some(MemberKind::User)),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match store.get_group(dir, GroupId(id), false).await {
        Ok(_) => Ok(Some(MemberKind::Group)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The member kind a client wrote (`"User"` / `"Group"`, any case).
fn explicit_kind(v: &MemberValue) -> Option<MemberKind> {
    match v.r#type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("group") => Some(MemberKind::Group),
        Some(t) if t.eq_ignore_ascii_case("user") => Some(MemberKind::User),
        _ => None,
    }
}

fn member_id(value: &str) -> ServiceResult<uuid::Uuid> {
    value.trim().parse().map_err(|_| {
        ScimError::invalid_value(format!("member {value:?} does not exist in this directory"))
            .into()
    })
}
