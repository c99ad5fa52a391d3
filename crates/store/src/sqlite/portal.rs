//! The admin portal's tables: activity, portal links and sessions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{Col, id_text, time_text};
use super::errors::map_db;
use crate::error::{StoreError, StoreResult, stored_hash};
use crate::model::{DirectoryId, PortalLinkId, PortalSessionId};
use crate::portal::*;
use crate::rows;
use crate::write::Backend;

#[async_trait]
impl PortalStore for SqliteStore {
    async fn record_activity(&self, entries: &[NewActivity]) -> StoreResult<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        // One transaction for the batch: one turn of the single writer.
        let mut tx = self.begin().await?;
        let mut recorded = 0;
        for e in entries {
            let done = sqlx::query(
                "INSERT INTO activity (directory_id, at, request_id, method, path, status, \
                 scim_type, detail, user_agent, client_address, resource_type, resource_id, \
                 revision, duration_ms, events) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15 \
                 WHERE EXISTS (SELECT 1 FROM directories WHERE id = ?1)",
            )
            .bind(id_text(e.directory_id.0))
            .bind(time_text(e.at))
            .bind(&e.request_id)
            .bind(&e.method)
            .bind(&e.path)
            .bind(e.status)
            .bind(e.scim_type.as_deref())
            .bind(e.detail.as_deref())
            .bind(e.user_agent.as_deref())
            .bind(e.client_address.as_deref())
            .bind(e.resource_type.as_deref())
            .bind(e.resource_id.as_deref())
            .bind(e.revision)
            .bind(e.duration_ms)
            .bind(e.events.as_deref())
            .execute(tx.conn())
            .await
            .map_err(map_db)?;
            recorded += done.rows_affected();
        }
        self.commit(tx).await?;
        Ok(recorded)
    }

    async fn list_activity(&self, query: &ActivityQuery) -> StoreResult<Vec<Activity>> {
        let filter = activity_page_sql(query, |n| format!("?{n}"));
        let sql = format!("SELECT {ACTIVITY_COLUMNS} FROM activity {filter}");
        let (lo, hi) = query.status.map(StatusClass::range).unzip();
        let q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(query.directory.0))
            .bind(lo)
            .bind(hi)
            .bind(query.resource_type.as_deref())
            .bind(query.before)
            .bind(query.after)
            .bind(query.limit);
        rows::all(q, &self.readers, decode_activity).await
    }

    async fn prune_activity(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM activity WHERE at < ?")
            .bind(time_text(before))
            .execute(tx.conn())
            .await
            .map_err(map_db)?;
        self.commit(tx).await?;
        Ok(done.rows_affected())
    }

    async fn create_portal_link(&self, new: NewPortalLink) -> StoreResult<PortalLink> {
        let mut tx = self.begin().await?;
        let link = PortalLink {
            id: PortalLinkId::new(),
            directory_id: new.directory_id,
            created_at: tx.now,
            expires_at: new.expires_at,
            used_at: None,
            revoked_at: None,
        };
        let done = sqlx::query(
            "INSERT INTO portal_links (id, directory_id, hash, created_at, expires_at) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM directories WHERE id = ?2)",
        )
        .bind(id_text(link.id.0))
        .bind(id_text(link.directory_id.0))
        .bind(&new.hash[..])
        .bind(time_text(link.created_at))
        .bind(time_text(link.expires_at))
        .execute(tx.conn())
        .await
        .map_err(map_db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("directory"));
        }
        self.commit(tx).await?;
        Ok(link)
    }

    async fn open_portal_link(
        &self,
        hash: [u8; 32],
        session: NewPortalSession,
        now: DateTime<Utc>,
    ) -> StoreResult<LinkExchange> {
        // The single writer makes two openings of one link take turns.
        let mut tx = self.begin().await?;
        let sql = format!("SELECT {LINK_COLUMNS}, hash FROM portal_links WHERE hash = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&hash[..])
            .fetch_optional(tx.conn())
            .await
            .map_err(map_db)?;
        let Some(row) = row else {
            return Ok(LinkExchange::Unknown);
        };
        let link = decode_link(&row)?;
        let stored = stored_hash(row.try_get("hash").map_err(map_db)?)?;
        if let Some(refused) = refusal(&link, now) {
            return Ok(refused);
        }
        sqlx::query("UPDATE portal_links SET used_at = ? WHERE id = ?")
            .bind(time_text(now))
            .bind(id_text(link.id.0))
            .execute(tx.conn())
            .await
            .map_err(map_db)?;
        let opened = PortalSession {
            id: PortalSessionId::new(),
            link_id: link.id,
            directory_id: link.directory_id,
            created_at: super::codec::now(),
            expires_at: session.expires_at,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO portal_sessions (id, link_id, directory_id, hash, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id_text(opened.id.0))
        .bind(id_text(opened.link_id.0))
        .bind(id_text(opened.directory_id.0))
        .bind(&session.hash[..])
        .bind(time_text(opened.created_at))
        .bind(time_text(opened.expires_at))
        .execute(tx.conn())
        .await
        .map_err(map_db)?;
        self.commit(tx).await?;
        Ok(LinkExchange::Opened(opened, stored))
    }

    async fn find_portal_session(
        &self,
        hash: [u8; 32],
    ) -> StoreResult<Option<(PortalSession, [u8; 32])>> {
        rows::live_secret(
            &self.readers,
            "portal_sessions",
            SESSION_COLUMNS,
            &hash,
            decode_session,
        )
        .await
    }

    async fn end_portal_session(&self, hash: [u8; 32]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE portal_sessions SET revoked_at = COALESCE(revoked_at, ?) WHERE hash = ?",
        )
        .bind(time_text(tx.now))
        .bind(&hash[..])
        .execute(tx.conn())
        .await
        .map_err(map_db)?;
        self.commit(tx).await
    }

    async fn revoke_portal_links(
        &self,
        directory: DirectoryId,
        link: Option<PortalLinkId>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let now = time_text(tx.now);
        let link = link.map(|l| id_text(l.0));
        let done = sqlx::query(
            "UPDATE portal_links SET revoked_at = COALESCE(revoked_at, ?1) \
             WHERE directory_id = ?2 AND (?3 IS NULL OR id = ?3)",
        )
        .bind(&now)
        .bind(id_text(directory.0))
        .bind(link.as_deref())
        .execute(tx.conn())
        .await
        .map_err(map_db)?;
        sqlx::query(
            "UPDATE portal_sessions SET revoked_at = COALESCE(revoked_at, ?1) \
             WHERE directory_id = ?2 AND (?3 IS NULL OR link_id = ?3)",
        )
        .bind(&now)
        .bind(id_text(directory.0))
        .bind(link.as_deref())
        .execute(tx.conn())
        .await
        .map_err(map_db)?;
        self.commit(tx).await?;
        Ok(done.rows_affected())
    }
}

fn decode_activity(row: &SqliteRow) -> StoreResult<Activity> {
    Ok(Activity {
        id: row.int("id")?,
        entry: NewActivity {
            directory_id: DirectoryId(row.id("directory_id")?),
            at: row.time("at")?,
            request_id: row.text("request_id")?,
            method: row.text("method")?,
            path: row.text("path")?,
            status: i32::try_from(row.int("status")?)
                .map_err(|_| StoreError::Internal("stored status out of range".into()))?,
            scim_type: row.opt_text("scim_type")?,
            detail: row.opt_text("detail")?,
            user_agent: row.opt_text("user_agent")?,
            client_address: row.opt_text("client_address")?,
            resource_type: row.opt_text("resource_type")?,
            resource_id: row.opt_text("resource_id")?,
            revision: row.try_get("revision").map_err(map_db)?,
            duration_ms: row.int("duration_ms")?,
            events: row.opt_text("events")?,
        },
    })
}

fn decode_link(row: &SqliteRow) -> StoreResult<PortalLink> {
    Ok(PortalLink {
        id: PortalLinkId(row.id("id")?),
        directory_id: DirectoryId(row.id("directory_id")?),
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        used_at: row.opt_time("used_at")?,
        revoked_at: row.opt_time("revoked_at")?,
    })
}

fn decode_session(row: &SqliteRow) -> StoreResult<PortalSession> {
    Ok(PortalSession {
        id: PortalSessionId(row.id("id")?),
        link_id: PortalLinkId(row.id("link_id")?),
        directory_id: DirectoryId(row.id("directory_id")?),
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        revoked_at: row.opt_time("revoked_at")?,
    })
}
