//! Fast seeding through the `roster_store::Store` API (the directory
//! service's own write path, minus gRPC and HTTP): each user is one
//! transaction with its change row, as in production, at high concurrency.

use std::sync::Arc;

use anyhow::anyhow;
use roster_store::postgres::PgStore;
use roster_store::{
    DirectoryId, Email, GroupWrite, MemberKind, MemberRef, Store, UserFields, UserWrite,
};
use uuid::Uuid;

use crate::load;
use crate::scim::{group_body, user_body};

/// Members added per `add_members` call when building a big group.
const MEMBER_BATCH: usize = 1000;

/// A store connection pool of the bench process itself, for seeding.
#[derive(Clone)]
pub struct Seeder {
    store: Arc<PgStore>,
    concurrency: usize,
}

impl Seeder {
    /// Connects with `concurrency` connections.
    pub async fn connect(url: &str, concurrency: usize) -> anyhow::Result<Self> {
        let store = PgStore::connect(url, concurrency as u32)
            .await
            .map_err(|e| anyhow!("cannot connect the seeder: {e}"))?;
        Ok(Self {
            store: Arc::new(store),
            concurrency,
        })
    }

    /// Creates users `range` of `prefix` in `dir` (the same rows the gateway
    /// would write for [`user_body`]); returns their ids in order and the
    /// load-run timing.
    pub async fn users(
        &self,
        dir: &str,
        prefix: &str,
        range: std::ops::Range<usize>,
    ) -> anyhow::Result<load::Timed<Uuid>> {
        let dir = DirectoryId(dir.parse()?);
        let store = Arc::clone(&self.store);
        let prefix = prefix.to_owned();
        let start = range.start;
        load::run(range.len(), self.concurrency, move |i| {
            let (store, prefix) = (Arc::clone(&store), prefix.clone());
            async move {
                let write = user_write(&prefix, start + i)?;
                let user = store
                    .create_user(dir, write)
                    .await
                    .map_err(|e| anyhow!("seeding user {}: {e}", start + i))?;
                Ok(user.id.0)
            }
        })
        .await
    }

    /// Creates a group holding `members` (added in batches); returns its id.
    pub async fn group(
        &self,
        dir: &str,
        prefix: &str,
        i: usize,
        members: &[Uuid],
    ) -> anyhow::Result<Uuid> {
        let dir = DirectoryId(dir.parse()?);
        let (raw, prepared) = roster_scim::resource::prepare_group(group_body(prefix, i))
            .map_err(|e| anyhow!("{e}"))?;
        let write = GroupWrite {
            display_name: prepared.display_name,
            external_id: prepared.external_id,
            raw,
            members: None,
        };
        let group = self
            .store
            .create_group(dir, write)
            .await
            .map_err(|e| anyhow!("seeding group: {e}"))?;
        let batches: Vec<Vec<MemberRef>> = members
            .chunks(MEMBER_BATCH)
            .map(|c| {
                c.iter()
                    .map(|&id| MemberRef {
                        id,
                        kind: MemberKind::User,
                    })
                    .collect()
            })
            .collect();
        let batches = Arc::new(batches);
        let store = Arc::clone(&self.store);
        let group_id = group.id;
        // Concurrent batches on one group only queue on its row lock: a few suffice.
        load::run(batches.len(), self.concurrency.min(4), move |b| {
            let (store, batches) = (Arc::clone(&store), Arc::clone(&batches));
            async move {
                store
                    .add_members(dir, group_id, &batches[b])
                    .await
                    .map_err(|e| anyhow!("seeding members: {e}"))?;
                Ok(())
            }
        })
        .await?;
        Ok(group_id.0)
    }
}

/// Refreshes the planner statistics of the users table after a bulk seed.
/// Autovacuum does the same within a minute or so of a bulk load in
/// production; without it, the planner still believes the table is empty
/// and picks per-directory scans for `co`/`sw` (see docs/performance.md).
pub async fn analyze_users(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql("ANALYZE users").execute(&mut conn).await?;
    let _ = conn.close().await;
    Ok(())
}

/// The store write the directory service makes for [`user_body`]`(prefix, i)`.
pub fn user_write(prefix: &str, i: usize) -> anyhow::Result<UserWrite> {
    let (raw, u) =
        roster_scim::resource::prepare_user(user_body(prefix, i)).map_err(|e| anyhow!("{e}"))?;
    let fields = UserFields {
        user_name: u.user_name,
        external_id: u.external_id,
        active: u.active,
        display_name: u.display_name,
        given_name: u.given_name,
        family_name: u.family_name,
        emails: u
            .emails
            .into_iter()
            .map(|e| Email {
                value: e.value,
                r#type: e.r#type,
                primary: e.primary,
            })
            .collect(),
        title: u.title,
        department: u.department,
        manager_id: u.manager_id,
        employee_number: u.employee_number,
        custom_attributes: Default::default(),
    };
    Ok(UserWrite { fields, raw })
}
