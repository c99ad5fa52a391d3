//! The bench's own database and the PostgreSQL settings it reports.

use anyhow::Context;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

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
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("roster_bench_{}", &uuid[..8]);
        let mut conn = PgConnection::connect(server_url)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(server_url)))?;
        // The name is [a-z0-9_] only, so quoting it as an identifier is safe.
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let _ = conn.close().await;
        let url = with_database(server_url, &name);
        Ok(Self {
            server_url: server_url.to_owned(),
            name,
            url,
        })
    }

    /// Drops the database (closing what is still connected to it).
    pub async fn drop_database(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.server_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot drop database {}", self.name))?;
        let _ = conn.close().await;
        Ok(())
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

/// The URL of another database on the same server.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

/// Hides the password of a database URL, for error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_and_query_kept() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
    }

    #[test]
    fn password_is_hidden() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
