//! A cursor kept in the consumer's own PostgreSQL database, so it can be
//! written in the same transaction as the consumer's own changes: after a
//! crash, the mirror and the cursor agree, and no change is applied twice.

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};

use crate::cursor::CursorStore;
use crate::follow::BoxError;

/// Creates the table that holds one cursor per consumer name.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS roster_cursors (\
     consumer text PRIMARY KEY, cursor text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())";

/// The cursor of the consumer `name` in `roster_cursors`.
#[derive(Debug, Clone)]
pub struct PgCursor {
    pool: PgPool,
    name: String,
    /// The consumer writes the cursor itself, in its own transaction
    /// ([`PgCursor::save_in`]); [`CursorStore::save`] then does nothing.
    saved_by_consumer: bool,
}

impl PgCursor {
    /// Creates the table if needed.
    pub async fn open(pool: PgPool, name: impl Into<String>) -> Result<Self, sqlx::Error> {
        sqlx::query(CREATE_TABLE).execute(&pool).await?;
        Ok(Self {
            pool,
            name: name.into(),
            saved_by_consumer: false,
        })
    }

    /// The consumer saves the cursor with [`PgCursor::save_in`] inside the
    /// transaction that applies each change.
    pub fn saved_by_consumer(mut self) -> Self {
        self.saved_by_consumer = true;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes the cursor of `name` on `conn` (typically inside the
    /// transaction applying the change it follows).
    pub async fn save_in(
        conn: &mut PgConnection,
        name: &str,
        cursor: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO roster_cursors (consumer, cursor) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET cursor = excluded.cursor, updated_at = now()",
        )
        .bind(name)
        .bind(cursor)
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl CursorStore for PgCursor {
    async fn load(&mut self) -> Result<Option<String>, BoxError> {
        let cursor = sqlx::query_scalar("SELECT cursor FROM roster_cursors WHERE consumer = $1")
            .bind(&self.name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(cursor)
    }
    async fn save(&mut self, cursor: &str) -> Result<(), BoxError> {
        if !self.saved_by_consumer {
            let mut conn = self.pool.acquire().await?;
            Self::save_in(&mut conn, &self.name, cursor).await?;
        }
        Ok(())
    }
    async fn clear(&mut self) -> Result<(), BoxError> {
        sqlx::query("DELETE FROM roster_cursors WHERE consumer = $1")
            .bind(&self.name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
