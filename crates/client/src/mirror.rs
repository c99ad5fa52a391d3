//! The example consumer: mirrors one directory's users, groups and
//! memberships into the consumer's own PostgreSQL tables, exactly once per
//! change — each change is applied and its cursor saved in one transaction.
//!
//! Tables (created by [`PgMirror::open`]): `mirror_users`, `mirror_groups`,
//! `mirror_memberships`, plus `roster_cursors` ([`crate::postgres`]).

use async_trait::async_trait;
use roster_digest::{Item, Kind, Tree};
use roster_proto::directory::change::Resource;
use roster_proto::directory::{Change, ChangeKind, MemberType};
use sqlx::{PgConnection, PgPool};

use crate::follow::{BoxError, Consumer, Position, SnapshotReason};
use crate::postgres::{CREATE_TABLE, PgCursor};

const SCHEMA: &[&str] = &[
    CREATE_TABLE,
    "CREATE TABLE IF NOT EXISTS mirror_users (id text PRIMARY KEY, user_name text NOT NULL, \
     active boolean NOT NULL, version bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mirror_groups (id text PRIMARY KEY, display_name text NOT NULL, \
     version bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mirror_memberships (group_id text NOT NULL, member_id text NOT NULL, \
     member_type text NOT NULL, PRIMARY KEY (group_id, member_id))",
];

/// Mirrors one directory into PostgreSQL; pair it with
/// `PgCursor::open(pool, name).saved_by_consumer()` as the cursor store.
pub struct PgMirror {
    pool: PgPool,
    cursor_name: String,
}

impl PgMirror {
    /// Creates the mirror's tables if needed.
    pub async fn open(pool: PgPool, cursor_name: impl Into<String>) -> Result<Self, sqlx::Error> {
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&pool).await?;
        }
        Ok(Self {
            pool,
            cursor_name: cursor_name.into(),
        })
    }

    /// The mirror as the state digest sees it, for
    /// [`crate::verify::verify`].
    pub async fn state(&self) -> Result<Tree, sqlx::Error> {
        let mut tree = Tree::new();
        let users: Vec<(String, i64)> = sqlx::query_as("SELECT id, version FROM mirror_users")
            .fetch_all(&self.pool)
            .await?;
        for (id, version) in users {
            tree.insert(&Item {
                kind: Kind::User,
                id,
                version,
                members: Vec::new(),
            });
        }
        let groups: Vec<(String, i64, Vec<String>)> = sqlx::query_as(
            "SELECT g.id, g.version, COALESCE(array_agg(m.member_id) FILTER (WHERE m.member_id IS NOT NULL), '{}') \
             FROM mirror_groups g LEFT JOIN mirror_memberships m ON m.group_id = g.id GROUP BY g.id, g.version",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, version, members) in groups {
            tree.insert(&Item {
                kind: Kind::Group,
                id,
                version,
                members,
            });
        }
        Ok(tree)
    }

    /// In one transaction: `write`, then the cursor (when there is one).
    async fn in_transaction(&self, cursor: &str, change: Option<&Change>) -> Result<(), BoxError> {
        let mut tx = self.pool.begin().await?;
        if let Some(change) = change {
            apply(&mut tx, change).await?;
        }
        if !cursor.is_empty() {
            PgCursor::save_in(&mut tx, &self.cursor_name, cursor).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Consumer for PgMirror {
    /// The snapshot that follows is the whole directory: start empty.
    async fn snapshot_begins(&mut self, _reason: SnapshotReason) -> Result<(), BoxError> {
        let mut tx = self.pool.begin().await?;
        for table in ["mirror_memberships", "mirror_groups", "mirror_users"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM roster_cursors WHERE consumer = $1")
            .bind(&self.cursor_name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn apply(&mut self, change: &Change, at: Position<'_>) -> Result<(), BoxError> {
        self.in_transaction(at.cursor, Some(change)).await
    }

    async fn synced(&mut self, at: Position<'_>) -> Result<(), BoxError> {
        self.in_transaction(at.cursor, None).await
    }

    async fn progress(&mut self, at: Position<'_>) -> Result<(), BoxError> {
        self.in_transaction(at.cursor, None).await
    }
}

/// Applies one change; a stale copy is never written over a newer one.
async fn apply(conn: &mut PgConnection, change: &Change) -> Result<(), sqlx::Error> {
    let kind = ChangeKind::try_from(change.kind).unwrap_or(ChangeKind::Unspecified);
    match (&change.resource, change.tombstone) {
        (Some(Resource::User(_)), true) => {
            delete(conn, "mirror_users", "id", &change.resource_id).await?;
            delete(conn, "mirror_memberships", "member_id", &change.resource_id).await
        }
        (Some(Resource::User(u)), false) => sqlx::query(
            "INSERT INTO mirror_users (id, user_name, active, version) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET user_name = excluded.user_name, \
                 active = excluded.active, version = excluded.version \
                 WHERE mirror_users.version < excluded.version",
        )
        .bind(&u.id)
        .bind(&u.user_name)
        .bind(u.active)
        .bind(change.version)
        .execute(conn)
        .await
        .map(drop),
        (Some(Resource::Group(_)), true) => {
            delete(conn, "mirror_groups", "id", &change.resource_id).await?;
            delete(conn, "mirror_memberships", "group_id", &change.resource_id).await?;
            delete(conn, "mirror_memberships", "member_id", &change.resource_id).await
        }
        (Some(Resource::Group(g)), false) => sqlx::query(
            "INSERT INTO mirror_groups (id, display_name, version) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, \
                 version = excluded.version WHERE mirror_groups.version < excluded.version",
        )
        .bind(&g.id)
        .bind(&g.display_name)
        .bind(change.version)
        .execute(conn)
        .await
        .map(drop),
        (Some(Resource::Membership(m)), _) if kind == ChangeKind::MemberRemoved => {
            sqlx::query("DELETE FROM mirror_memberships WHERE group_id = $1 AND member_id = $2")
                .bind(&m.group_id)
                .bind(&m.member_id)
                .execute(&mut *conn)
                .await?;
            group_version(conn, &m.group_id, change.version).await
        }
        (Some(Resource::Membership(m)), _) => {
            let member_type = if m.member_type == MemberType::Group as i32 {
                "group"
            } else {
                "user"
            };
            sqlx::query(
                "INSERT INTO mirror_memberships (group_id, member_id, member_type) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&m.group_id)
            .bind(&m.member_id)
            .bind(member_type)
            .execute(&mut *conn)
            .await?;
            group_version(conn, &m.group_id, change.version).await
        }
        // Directory events change nothing a mirror of users and groups holds.
        _ => Ok(()),
    }
}

/// A membership event carries the group's version after it.
async fn group_version(
    conn: &mut PgConnection,
    group: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE mirror_groups SET version = $2 WHERE id = $1 AND version < $2")
        .bind(group)
        .bind(version)
        .execute(conn)
        .await
        .map(drop)
}

async fn delete(
    conn: &mut PgConnection,
    table: &str,
    column: &str,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE {column} = $1"
    )))
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}
