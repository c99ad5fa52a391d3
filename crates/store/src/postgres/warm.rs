//! Connections kept out of the pool between one-statement reads.
//!
//! sqlx's pool pings a connection when it takes it back (an empty `Sync`,
//! one round trip), so a lookup that is one statement costs two round trips
//! and two wake-ups of its PostgreSQL backend. A read that completed parks
//! its connection here instead, and the next read takes it without either.
//! Parked connections stay checked out of the pool, so they count against
//! its size: at most half of it is parked, the other half is always the
//! pool's. A connection parked longer than [`ALIVE_BYPASS`] is pinged
//! before use (the server may have gone away meanwhile; HikariCP's
//! "alive bypass window" makes the same trade), and one parked longer than
//! [`PARKED_AT_MOST`] goes back to the pool, whose lifetime rules apply.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection, Postgres};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::errors::map_db;
use crate::error::{StoreError, StoreResult};

/// A connection used this recently is taken as alive without a ping.
pub(super) const ALIVE_BYPASS: Duration = Duration::from_millis(500);

/// A connection parked this long goes back to the pool instead.
const PARKED_AT_MOST: Duration = Duration::from_secs(60);

pub(super) struct WarmConnections {
    parked: Mutex<Vec<Parked>>,
    cap: usize,
    bypass: Duration,
    /// For a pool of its own: one permit per connection, so a read waits
    /// for a connection that is parked or in use, not for the pool (which
    /// would never see a parked connection come back).
    permits: Option<Arc<Semaphore>>,
}

struct Parked {
    conn: PoolConnection<Postgres>,
    since: Instant,
}

impl WarmConnections {
    /// Parks at most half of a pool of `pool_size` connections.
    pub(super) fn new(pool_size: u32) -> Self {
        Self {
            parked: Mutex::new(Vec::new()),
            cap: (pool_size / 2) as usize,
            bypass: ALIVE_BYPASS,
            permits: None,
        }
    }

    /// Parks up to all `connections` of a pool that serves nothing else.
    pub(super) fn dedicated(connections: u32) -> Self {
        Self {
            cap: connections as usize,
            permits: Some(Arc::new(Semaphore::new(connections as usize))),
            ..Self::new(0)
        }
    }

    /// The most recently parked connection (alive, or pinged when parked
    /// for long), else one from the pool.
    pub(super) async fn take<'a>(&'a self, pool: &PgPool) -> StoreResult<Warm<'a>> {
        let permit = match &self.permits {
            Some(permits) => Some(
                Arc::clone(permits)
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Unavailable("lookup connections closed".into()))?,
            ),
            None => None,
        };
        while let Some(Parked { mut conn, since }) = self.pop() {
            let idle = since.elapsed();
            if idle >= PARKED_AT_MOST {
                continue; // dropped: back to the pool, which checks it
            }
            if idle < self.bypass || conn.ping().await.is_ok() {
                return Ok(self.warm(conn, permit));
            }
        }
        let conn = pool.acquire().await.map_err(map_db)?;
        Ok(self.warm(conn, permit))
    }

    /// Hands every parked connection back to the pool (before closing it:
    /// the pool waits for the connections it lent).
    pub(super) fn release_all(&self) {
        let parked = std::mem::take(&mut *self.parked.lock().unwrap_or_else(|p| p.into_inner()));
        drop(parked);
    }

    fn pop(&self) -> Option<Parked> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn warm(
        &self,
        conn: PoolConnection<Postgres>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Warm<'_> {
        Warm {
            conn: Some(conn),
            home: self,
            _permit: permit,
        }
    }

    /// Connections parked right now.
    pub(super) fn parked(&self) -> usize {
        self.parked.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A connection taken from [`WarmConnections`]. Dropped without
/// [`Warm::park`] (an error, or a future cancelled mid-statement), it goes
/// back to the pool, which pings it and discards it if it is broken.
pub(super) struct Warm<'a> {
    conn: Option<PoolConnection<Postgres>>,
    home: &'a WarmConnections,
    /// Released when this is dropped, after the connection is parked or
    /// back in the pool (fields drop in order).
    _permit: Option<OwnedSemaphorePermit>,
}

impl Warm<'_> {
    /// Parks the connection for the next read. Only after its statements
    /// completed: nothing of them is left on the wire.
    pub(super) fn park(mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut parked = self.home.parked.lock().unwrap_or_else(|p| p.into_inner());
        if parked.len() < self.home.cap {
            let since = Instant::now();
            parked.push(Parked { conn, since });
        }
    }
}

impl Deref for Warm<'_> {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.conn.as_deref().expect("taken until parked or dropped")
    }
}

impl DerefMut for Warm<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .expect("taken until parked or dropped")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pool(size: u32) -> PgPool {
        let url = std::env::var("DATABASE_URL").expect("DATABASE_URL for the PostgreSQL tests");
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(size)
            .connect(&url)
            .await
            .expect("connect")
    }

    async fn backend_pid(conn: &mut PgConnection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_parked_connection_is_taken_again_and_half_the_pool_at_most_is_parked() {
        let pool = pool(4).await;
        let warm = WarmConnections::new(4);
        let mut a = warm.take(&pool).await.unwrap();
        let pid = backend_pid(&mut a).await;
        let b = warm.take(&pool).await.unwrap();
        let c = warm.take(&pool).await.unwrap();
        a.park();
        b.park();
        c.park();
        assert_eq!(warm.parked(), 2, "half of a pool of 4");
        // The pool still has the other half: a write would not wait.
        let d = pool.acquire().await.unwrap();
        let e = pool.acquire().await.unwrap();
        drop((d, e));
        // LIFO: c was dropped (cap), b on top, then a.
        let _b = warm.take(&pool).await.unwrap();
        let mut a = warm.take(&pool).await.unwrap();
        assert_eq!(
            backend_pid(&mut a).await,
            pid,
            "the parked backend served the next read"
        );
    }

    #[tokio::test]
    async fn more_reads_than_connections_of_a_dedicated_pool_wait_for_a_parked_one() {
        let pool = pool(2).await;
        let warm = Arc::new(WarmConnections::dedicated(2));
        let reads = (0..8).map(|_| {
            let (warm, pool) = (Arc::clone(&warm), pool.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    let mut conn = warm.take(&pool).await.unwrap();
                    backend_pid(&mut conn).await;
                    conn.park();
                }
            })
        });
        let all = futures::future::try_join_all(reads);
        tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .expect("no read waits for the pool while connections are parked")
            .unwrap();
        // Every connection the reads used is parked, none went back to the
        // pool. Whether the pool opened one or two depends on timing: reads
        // that never overlap while nothing is parked share one.
        assert!(
            (1..=2).contains(&pool.size()),
            "{} connections",
            pool.size()
        );
        assert_eq!(warm.parked(), pool.size() as usize);
        assert_eq!(pool.num_idle(), 0);
    }

    #[tokio::test]
    async fn a_connection_dropped_unparked_goes_back_to_the_pool() {
        let pool = pool(2).await;
        let warm = WarmConnections::new(2);
        let a = warm.take(&pool).await.unwrap();
        drop(a);
        assert_eq!(warm.parked(), 0);
        // Both of the pool's connections are available again.
        let x = pool.acquire().await.unwrap();
        let y = tokio::time::timeout(Duration::from_secs(5), pool.acquire())
            .await
            .expect("the dropped connection returned to the pool")
            .unwrap();
        drop((x, y));
    }

    #[tokio::test]
    async fn a_parked_connection_whose_backend_died_is_replaced() {
        let pool = pool(4).await;
        // Every parked connection counts as idle past the bypass window.
        let warm = WarmConnections {
            bypass: Duration::ZERO,
            ..WarmConnections::new(4)
        };
        let mut a = warm.take(&pool).await.unwrap();
        let pid = backend_pid(&mut a).await;
        a.park();
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 10000)")
            .bind(pid)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(killed);
        // Pinged before use, found dead, replaced by one from the pool.
        let mut b = warm.take(&pool).await.unwrap();
        assert_ne!(backend_pid(&mut b).await, pid);
    }
}
