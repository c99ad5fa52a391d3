//! The admin portal's tables: activity, portal links and sessions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::PgStore;
use super::errors::map_db;
use crate::error::{StoreError, StoreResult};
use crate::model::{DirectoryId, PortalLinkId, PortalSessionId};
use crate::portal::*;
use crate::rows;

#[async_trait]
impl PortalStore for PgStore {
    async fn record_activity(&self, entries: &[NewActivity]) -> StoreResult<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let column = |f: fn(&NewActivity) -> Option<String>| -> Vec<Option<String>> {
            entries.iter().map(f).collect()
        };
        // One statement for the whole batch: the gateway sends requests in
        // batches so the audit trail costs one insert per batch, not one per
        // SCIM request.
        let sql = "INSERT INTO activity (directory_id, at, request_id, method, path, status, \
             scim_type, detail, user_agent, client_address, resource_type, resource_id, \
             revision, duration_ms, events) \
             SELECT t.directory_id, t.at, t.request_id, t.method, t.path, t.status, t.scim_type, \
             t.detail, t.user_agent, t.client_address, t.resource_type, t.resource_id, \
             t.revision, t.duration_ms, t.events \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], \
             $6::int4[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
             $12::text[], $13::int8[], $14::int8[], $15::text[]) WITH ORDINALITY AS t(directory_id, \
             at, request_id, method, path, status, scim_type, detail, user_agent, client_address, \
             resource_type, resource_id, revision, duration_ms, events, ord) \
             WHERE EXISTS (SELECT 1 FROM directories d WHERE d.id = t.directory_id) \
             ORDER BY t.ord";
        let done = sqlx::query(sql)
            .bind(
                entries
                    .iter()
                    .map(|e| e.directory_id.0)
                    .collect::<Vec<Uuid>>(),
            )
            .bind(entries.iter().map(|e| e.at).collect::<Vec<DateTime<Utc>>>())
            .bind(column(|e| Some(e.request_id.clone())))
            .bind(column(|e| Some(e.method.clone())))
            .bind(column(|e| Some(e.path.clone())))
            .bind(entries.iter().map(|e| e.status).collect::<Vec<i32>>())
            .bind(column(|e| e.scim_type.clone()))
            .bind(column(|e| e.detail.clone()))
            .bind(column(|e| e.user_agent.clone()))
            .bind(column(|e| e.client_address.clone()))
            .bind(column(|e| e.resource_type.clone()))
            .bind(column(|e| e.resource_id.clone()))
            .bind(
                entries
                    .iter()
                    .map(|e| e.revision)
                    .collect::<Vec<Option<i64>>>(),
            )
            .bind(entries.iter().map(|e| e.duration_ms).collect::<Vec<i64>>())
            .bind(column(|e| e.events.clone()))
            .execute(&self.pool)
            .await
            .map_err(map_db)?;
        Ok(done.rows_affected())
    }

    async fn list_activity(&self, query: &ActivityQuery) -> StoreResult<Vec<Activity>> {
        let filter = activity_page_sql(query, |n| {
            let cast = ["uuid", "int4", "int4", "text", "int8", "int8", "int8"][n - 1];
            format!("${n}::{cast}")
        });
        let sql = format!("SELECT {ACTIVITY_COLUMNS} FROM activity {filter}");
        let (lo, hi) = query.status.map(StatusClass::range).unzip();
        let q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(query.directory.0)
            .bind(lo)
            .bind(hi)
            .bind(query.resource_type.as_deref())
            .bind(query.before)
            .bind(query.after)
            .bind(query.limit);
        rows::all(q, &self.pool, decode_activity).await
    }

    async fn prune_activity(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM activity WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(map_db)?;
        Ok(done.rows_affected())
    }

    async fn create_portal_link(&self, new: NewPortalLink) -> StoreResult<PortalLink> {
        let sql = format!(
            "INSERT INTO portal_links (id, directory_id, hash, expires_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM directories WHERE id = $2) \
             RETURNING {LINK_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(PortalLinkId::new().0)
            .bind(new.directory_id.0)
            .bind(&new.hash[..])
            .bind(new.expires_at)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_db)?;
        row.as_ref()
            .map(decode_link)
            .transpose()?
            .ok_or(StoreError::NotFound("directory"))
    }

    async fn open_portal_link(
        &self,
        hash: [u8; 32],
        session: NewPortalSession,
        now: DateTime<Utc>,
    ) -> StoreResult<LinkExchange> {
        let mut tx = self.pool.begin().await.map_err(map_db)?;
        // The row lock makes two concurrent openings of one link take turns:
        // the second sees it used.
        let sql =
            format!("SELECT {LINK_COLUMNS}, hash FROM portal_links WHERE hash = $1 FOR UPDATE");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&hash[..])
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_db)?;
        let Some(row) = row else {
            return Ok(LinkExchange::Unknown);
        };
        let link = decode_link(&row)?;
        let stored = crate::error::stored_hash(row.try_get("hash").map_err(map_db)?)?;
        if let Some(refused) = refusal(&link, now) {
            return Ok(refused);
        }
        sqlx::query("UPDATE portal_links SET used_at = $2 WHERE id = $1")
            .bind(link.id.0)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_db)?;
        let sql = format!(
            "INSERT INTO portal_sessions (id, link_id, directory_id, hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SESSION_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(PortalSessionId::new().0)
            .bind(link.id.0)
            .bind(link.directory_id.0)
            .bind(&session.hash[..])
            .bind(now)
            .bind(session.expires_at)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_db)?;
        let opened = decode_session(&row)?;
        tx.commit().await.map_err(map_db)?;
        Ok(LinkExchange::Opened(opened, stored))
    }

    async fn find_portal_session(
        &self,
        hash: [u8; 32],
    ) -> StoreResult<Option<(PortalSession, [u8; 32])>> {
        rows::live_secret(
            &self.pool,
            "portal_sessions",
            SESSION_COLUMNS,
            &hash,
            decode_session,
        )
        .await
    }

    async fn end_portal_session(&self, hash: [u8; 32]) -> StoreResult<()> {
        sqlx::query(
            "UPDATE portal_sessions SET revoked_at = COALESCE(revoked_at, now()) WHERE hash = $1",
        )
        .bind(&hash[..])
        .execute(&self.pool)
        .await
        .map_err(map_db)?;
        Ok(())
    }

    async fn revoke_portal_links(
        &self,
        directory: DirectoryId,
        link: Option<PortalLinkId>,
    ) -> StoreResult<u64> {
        let revoked: i64 = sqlx::query_scalar(
            "WITH links AS (UPDATE portal_links SET revoked_at = COALESCE(revoked_at, now()) \
             WHERE directory_id = $1 AND ($2::uuid IS NULL OR id = $2) RETURNING id), \
             sessions AS (UPDATE portal_sessions SET revoked_at = COALESCE(revoked_at, now()) \
             WHERE link_id IN (SELECT id FROM links)) \
             SELECT count(*) FROM links",
        )
        .bind(directory.0)
        .bind(link.map(|l| l.0))
        .fetch_one(&self.pool)
        .await
        .map_err(map_db)?;
        Ok(u64::try_from(revoked).unwrap_or(0))
    }
}

fn decode_activity(row: &PgRow) -> StoreResult<Activity> {
    let get = |name: &str| -> StoreResult<Option<String>> { row.try_get(name).map_err(map_db) };
    Ok(Activity {
        id: row.try_get("id").map_err(map_db)?,
        entry: NewActivity {
            directory_id: DirectoryId(row.try_get("directory_id").map_err(map_db)?),
            at: row.try_get("at").map_err(map_db)?,
            request_id: row.try_get("request_id").map_err(map_db)?,
            method: row.try_get("method").map_err(map_db)?,
            path: row.try_get("path").map_err(map_db)?,
            status: row.try_get("status").map_err(map_db)?,
            scim_type: get("scim_type")?,
            detail: get("detail")?,
            user_agent: get("user_agent")?,
            client_address: get("client_address")?,
            resource_type: get("resource_type")?,
            resource_id: get("resource_id")?,
            revision: row.try_get("revision").map_err(map_db)?,
            duration_ms: row.try_get("duration_ms").map_err(map_db)?,
            events: get("events")?,
        },
    })
}

fn decode_link(row: &PgRow) -> StoreResult<PortalLink> {
    Ok(PortalLink {
        id: PortalLinkId(row.try_get("id").map_err(map_db)?),
        directory_id: DirectoryId(row.try_get("directory_id").map_err(map_db)?),
        created_at: row.try_get("created_at").map_err(map_db)?,
        expires_at: row.try_get("expires_at").map_err(map_db)?,
        used_at: row.try_get("used_at").map_err(map_db)?,
        revoked_at: row.try_get("revoked_at").map_err(map_db)?,
    })
}

fn decode_session(row: &PgRow) -> StoreResult<PortalSession> {
    Ok(PortalSession {
        id: PortalSessionId(row.try_get("id").map_err(map_db)?),
        link_id: PortalLinkId(row.try_get("link_id").map_err(map_db)?),
        directory_id: DirectoryId(row.try_get("directory_id").map_err(map_db)?),
        created_at: row.try_get("created_at").map_err(map_db)?,
        expires_at: row.try_get("expires_at").map_err(map_db)?,
        revoked_at: row.try_get("revoked_at").map_err(map_db)?,
    })
}
