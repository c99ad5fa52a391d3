//! The bench's own database and the PostgreSQL settings it reports.

use anyhow::Context;
pub use roster_testkit::redact;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::sync::Mutex;

/// The databases this process created and has not dropped or kept yet, by
/// server URL and name: what [`drop_live_databases`] drops when the bench is
/// interrupted, so that an aborted run leaves nothing behind.
static LIVE: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<(String, String)>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Drops every database this process created and still holds (the bench
/// calls it when interrupted, or when a scenario panicked); returns their
/// names.
pub async fn drop_live_databases() -> Vec<String> {
    let live = std::mem::take(&mut *live());
    let mut dropped = Vec::new();
    for (server_url, name) in live {
        if roster_testkit::drop_database(&server_url, &name)
            .await
            .is_ok()
        {
            dropped.push(name);
        }
    }
    dropped
}

/// A database `roster_bench_<uuid8>` created for one scenario.
pub struct BenchDatabase {
    server_url: String,
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl BenchDatabase {
    /// Creates a fresh, empty database on the server of `server_url`.
    pub async fn create(server_url: &str) -> anyhow::Result<Self> {
        let name = roster_testkit::unique_name("roster_bench");
        let url = roster_testkit::create_database(server_url, &name)
            .await
            .with_context(|| format!("cannot create database {name} at {}", redact(server_url)))?;
        live().push((server_url.to_owned(), name.clone()));
        Ok(Self {
            server_url: server_url.to_owned(),
            name,
            url,
        })
    }

    /// Drops the database (closing what is still connected to it).
    pub async fn drop_database(self) -> anyhow::Result<()> {
        roster_testkit::drop_database(&self.server_url, &self.name)
            .await
            .with_context(|| format!("cannot drop database {}", self.name))?;
        self.forget();
        Ok(())
    }

    /// The newest revision of the change log (0 when it is empty).
    pub async fn newest_revision(&self) -> anyhow::Result<i64> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let newest: i64 = sqlx::query_scalar("SELECT COALESCE(max(revision), 0) FROM changes")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(newest)
    }

    /// Leaves the database in place (`--keep-database`): an interrupted
    /// bench no longer drops it.
    pub fn keep(self) {
        self.forget();
    }

    fn forget(&self) {
        live().retain(|(url, name)| !(url == &self.server_url && name == &self.name));
    }
}

/// The PostgreSQL settings that bound write and read figures.
#[derive(Debug, Clone, Serialize)]
pub struct PgSettings {
    pub server_version: String,
    pub synchronous_commit: String,
    pub fsync: String,
    pub shared_buffers: String,
    pub max_connections: String,
    pub wal_level: String,
}

impl PgSettings {
    /// Reads the settings with `SHOW`.
    pub async fn read(url: &str) -> anyhow::Result<Self> {
        let mut conn = PgConnection::connect(url).await?;
        let mut show = async |name: &str| -> anyhow::Result<String> {
            let v: String = sqlx::query_scalar(AssertSqlSafe(format!("SHOW {name}")))
                .fetch_one(&mut conn)
                .await?;
            Ok(v)
        };
        let settings = Self {
            server_version: show("server_version").await?,
            synchronous_commit: show("synchronous_commit").await?,
            fsync: show("fsync").await?,
            shared_buffers: show("shared_buffers").await?,
            max_connections: show("max_connections").await?,
            wal_level: show("wal_level").await?,
        };
        let _ = conn.close().await;
        Ok(settings)
    }
}
