//! What both services stand on: the store, and the change hub that must hear
//! of every write to the change log.

use std::future::Future;
use std::sync::Arc;

use roster_store::Store;

use crate::error::{ServiceError, ServiceResult};
use crate::group_commit::{Batcher, GroupPatches, UserCreates};
use crate::watch::ChangeHub;

/// The store and the hub of one server, shared by its services.
#[derive(Clone)]
pub(crate) struct Backend {
    store: Arc<dyn Store>,
    hub: Arc<ChangeHub>,
    groups: Arc<Batcher<GroupPatches>>,
    user_creates: Arc<Batcher<UserCreates>>,
}

impl Backend {
    pub(crate) fn new(store: Arc<dyn Store>, hub: Arc<ChangeHub>) -> Self {
        let groups = Batcher::new(GroupPatches(Arc::clone(&store)));
        let user_creates = Batcher::new(UserCreates(Arc::clone(&store)));
        Self {
            store,
            hub,
            groups,
            user_creates,
        }
    }

    /// Group PATCHes, batched per group (group commit). Like the store,
    /// run through [`Backend::write`].
    pub(crate) fn groups(&self) -> &Arc<Batcher<GroupPatches>> {
        &self.groups
    }

    /// User creations, batched per directory (group commit). Like the
    /// store, run through [`Backend::write`].
    pub(crate) fn user_creates(&self) -> &Arc<Batcher<UserCreates>> {
        &self.user_creates
    }

    /// The store, for reads. Writes that append to the change log go through
    /// [`Backend::write`].
    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub(crate) fn hub(&self) -> &Arc<ChangeHub> {
        &self.hub
    }

    /// Runs a write and, once it succeeded, wakes the change tailer (and,
    /// debounced, the other replicas). Every change-log write goes through
    /// here, so a new write path cannot leave watchers waiting for the next
    /// poll. A failed write committed nothing and wakes nobody.
    pub(crate) async fn write<T, E>(
        &self,
        op: impl Future<Output = Result<T, E>>,
    ) -> ServiceResult<T>
    where
        E: Into<ServiceError>,
    {
        let written = op.await.map_err(Into::into)?;
        self.hub.local_write();
        Ok(written)
    }
}
