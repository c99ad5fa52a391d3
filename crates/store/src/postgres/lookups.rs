//! Connections for keyed lookups: a user by id, a search by `eq` on `id`,
//! `userName` or `externalId` (what an IdP sends before every write).
//!
//! PostgreSQL plans a prepared statement anew for each execution while it
//! judges the plan made for the values ("custom") cheaper than the one
//! made for any values ("generic"), and for these statements it often does,
//! although both are the same index probe: planning then costs more than
//! running the statement (~0.1 ms per lookup here; `plan_cache_mode =
//! force_generic_plan` on the bench's database took PostgreSQL's CPU per
//! lookup from 0.27–0.28 to 0.16–0.20 ms). These connections are opened
//! with `plan_cache_mode = force_generic_plan`, so each statement is planned
//! once per connection; statements whose best plan depends on the values
//! (`sw`, `co`, ranges, sorting by a pattern) stay on the main pool. The
//! connections are opened on demand, at most a quarter of the main pool's
//! size and never more than [`MAX`], and kept between lookups (`warm.rs`).

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::warm::{Warm, WarmConnections};
use crate::error::StoreResult;

/// Lookup connections at most: two cores' worth of index probes in flight.
pub(super) const MAX: u32 = 4;

pub(super) struct Lookups {
    pool: PgPool,
    warm: WarmConnections,
    size: usize,
}

impl Lookups {
    pub(super) fn new(options: &PgConnectOptions, main_pool_size: u32) -> Self {
        let size = (main_pool_size / 4).clamp(1, MAX);
        let options = options
            .clone()
            .options([("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(size)
            .min_connections(0)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_lazy_with(options);
        Self {
            pool,
            warm: WarmConnections::dedicated(size),
            size: size as usize,
        }
    }

    /// How many lookup connections there are at most.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    pub(super) async fn take(&self) -> StoreResult<Warm<'_>> {
        self.warm.take(&self.pool).await
    }

    /// Opens every lookup connection now and parks it (see
    /// [`crate::postgres::PgStore::warm_up`]).
    pub(super) async fn warm_up(&self) -> StoreResult<()> {
        let taken = futures::future::try_join_all((0..self.size).map(|_| self.take())).await?;
        for conn in taken {
            conn.park();
        }
        Ok(())
    }

    pub(super) async fn close(&self) {
        self.warm.release_all();
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lookup_connections_plan_once_and_are_kept() {
        let url = std::env::var("DATABASE_URL").expect("DATABASE_URL for the PostgreSQL tests");
        let lookups = Lookups::new(&url.parse().unwrap(), 16);
        let mut conn = lookups.take().await.unwrap();
        let mode: String = sqlx::query_scalar("SELECT current_setting('plan_cache_mode')")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode, "force_generic_plan");
        conn.park();
        assert_eq!(lookups.warm.parked(), 1);
        lookups.close().await;
        assert_eq!(lookups.warm.parked(), 0);
    }

    #[tokio::test]
    async fn warming_up_opens_and_parks_every_lookup_connection() {
        let url = std::env::var("DATABASE_URL").expect("DATABASE_URL for the PostgreSQL tests");
        let lookups = Lookups::new(&url.parse().unwrap(), 12);
        assert_eq!(lookups.size(), 3);
        lookups.warm_up().await.unwrap();
        assert_eq!(lookups.warm.parked(), 3);
        assert_eq!(lookups.pool.size(), 3);
        lookups.close().await;
    }
}
