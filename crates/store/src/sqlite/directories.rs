//! Directories and their bearer tokens.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{Col, id_text, json_text, reject_nul, time_text, to_json};
use super::errors::map_sqlx;
use super::tx::Event;
use crate::error::{StoreError, StoreResult};
use crate::model::*;

/// How many live tokens a directory may hold: two, so an IT admin can rotate
/// without downtime.
const MAX_LIVE_TOKENS: i64 = 2;

const DIRECTORY_COLUMNS: &str = "id, name, organization, provider, deprovision_policy, attribute_mappings, version, created_at, updated_at";
const TOKEN_COLUMNS: &str =
    "id, directory_id, name, prefix, hash, created_at, revoked_at, last_used_at";

impl SqliteStore {
    pub(super) async fn create_directory_impl(&self, new: NewDirectory) -> StoreResult<Directory> {
        reject_nul(&(&new.name, &new.organization, &new.attribute_mappings))?;
        let mut tx = self.begin_write().await?;
        let directory = Directory {
            id: DirectoryId::new(),
            name: new.name,
            organization: new.organization,
            provider: new.provider,
            deprovision_policy: new.deprovision_policy,
            attribute_mappings: new.attribute_mappings,
            created_at: tx.now,
            updated_at: tx.now,
        };
        sqlx::query(
            "INSERT INTO directories (id, name, organization, provider, deprovision_policy, \
             attribute_mappings, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
        )
        .bind(id_text(directory.id.0))
        .bind(&directory.name)
        .bind(&directory.organization)
        .bind(directory.provider.as_str())
        .bind(directory.deprovision_policy.as_str())
        .bind(json_text(&directory.attribute_mappings)?)
        .bind(time_text(directory.created_at))
        .bind(time_text(directory.updated_at))
        .execute(tx.conn())
        .await
        .map_err(map_sqlx)?;
        tx.emit(directory_event(
            ChangeKind::DirectoryCreated,
            &directory,
            1,
            Vec::new(),
        )?);
        self.commit(tx).await?;
        Ok(directory)
    }

    pub(super) async fn get_directory_impl(&self, id: DirectoryId) -> StoreResult<Directory> {
        let mut conn = self.read_conn().await?;
        Ok(load_directory(&mut conn, id).await?.0)
    }

    pub(super) async fn list_directories_impl(
        &self,
        organization: Option<&str>,
    ) -> StoreResult<Vec<Directory>> {
        let sql = format!(
            "SELECT {DIRECTORY_COLUMNS} FROM directories WHERE (?1 IS NULL OR organization = ?1) ORDER BY created_seq"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(organization)
            .fetch_all(&self.readers)
            .await
            .map_err(map_sqlx)?;
        rows.iter().map(decode_directory).collect()
    }

    pub(super) async fn update_directory_impl(
        &self,
        id: DirectoryId,
        update: DirectoryUpdate,
    ) -> StoreResult<Directory> {
        reject_nul(&(
            &update.name,
            &update.organization,
            &update.attribute_mappings,
        ))?;
        let mut tx = self.begin_write().await?;
        let (old, version) = load_directory(tx.conn(), id).await?;
        let new = apply_directory_update(&old, update, tx.now);
        let changed = directory_changes(&old, &new)?;
        if changed.is_empty() {
            return Ok(old);
        }
        let version = version + 1;
        sqlx::query(
            "UPDATE directories SET name = ?, organization = ?, provider = ?, deprovision_policy = ?, \
             attribute_mappings = ?, version = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&new.name)
        .bind(&new.organization)
        .bind(new.provider.as_str())
        .bind(new.deprovision_policy.as_str())
        .bind(json_text(&new.attribute_mappings)?)
        .bind(version)
        .bind(time_text(new.updated_at))
        .bind(id_text(id.0))
        .execute(tx.conn())
        .await
        .map_err(map_sqlx)?;
        tx.emit(directory_event(
            ChangeKind::DirectoryUpdated,
            &new,
            version,
            changed,
        )?);
        self.commit(tx).await?;
        Ok(new)
    }

    pub(super) async fn delete_directory_impl(&self, id: DirectoryId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let (directory, version) = load_directory(tx.conn(), id).await?;
        // Users, groups, memberships and tokens go with the directory
        // (ON DELETE CASCADE); its change-log rows stay.
        sqlx::query("DELETE FROM directories WHERE id = ?")
            .bind(id_text(id.0))
            .execute(tx.conn())
            .await
            .map_err(map_sqlx)?;
        tx.emit(directory_event(
            ChangeKind::DirectoryDeleted,
            &directory,
            version,
            Vec::new(),
        )?);
        self.commit(tx).await?;
        Ok(())
    }

    pub(super) async fn create_token_impl(&self, new: NewToken) -> StoreResult<Token> {
        reject_nul(&(&new.name, &new.prefix))?;
        let mut tx = self.begin_write().await?;
        load_directory(tx.conn(), new.directory_id).await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tokens WHERE directory_id = ? AND revoked_at IS NULL",
        )
        .bind(id_text(new.directory_id.0))
        .fetch_one(tx.conn())
        .await
        .map_err(map_sqlx)?;
        if live >= MAX_LIVE_TOKENS {
            return Err(StoreError::Limit(format!(
                "a directory holds at most {MAX_LIVE_TOKENS} live tokens: revoke one first"
            )));
        }
        let token = Token {
            id: TokenId::new(),
            directory_id: new.directory_id,
            name: new.name,
            prefix: new.prefix,
            created_at: tx.now,
            revoked_at: None,
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO tokens (id, directory_id, name, prefix, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id_text(token.id.0))
        .bind(id_text(token.directory_id.0))
        .bind(&token.name)
        .bind(&token.prefix)
        .bind(&new.hash[..])
        .bind(time_text(token.created_at))
        .execute(tx.conn())
        .await
        .map_err(map_sqlx)?;
        self.commit(tx).await?;
        Ok(token)
    }

    pub(super) async fn list_tokens_impl(
        &self,
        directory: DirectoryId,
        include_revoked: bool,
    ) -> StoreResult<Vec<Token>> {
        let mut conn = self.read_conn().await?;
        load_directory(&mut conn, directory).await?;
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE directory_id = ? AND (? OR revoked_at IS NULL) ORDER BY created_seq"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(directory.0))
            .bind(include_revoked)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_sqlx)?;
        rows.iter()
            .map(|row| decode_token(row).map(|(token, _)| token))
            .collect()
    }

    pub(super) async fn revoke_token_impl(
        &self,
        directory: DirectoryId,
        id: TokenId,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let found = sqlx::query(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND directory_id = ?",
        )
        .bind(time_text(tx.now))
        .bind(id_text(id.0))
        .bind(id_text(directory.0))
        .execute(tx.conn())
        .await
        .map_err(map_sqlx)?
        .rows_affected();
        if found == 0 {
            return Err(StoreError::NotFound("token"));
        }
        self.commit(tx).await?;
        Ok(())
    }

    pub(super) async fn mark_token_used_impl(
        &self,
        id: TokenId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE tokens SET last_used_at = ? WHERE id = ? \
             AND (last_used_at IS NULL OR last_used_at < ?)",
        )
        .bind(time_text(at))
        .bind(id_text(id.0))
        .bind(time_text(at - crate::TOKEN_USE_GRANULARITY))
        .execute(tx.conn())
        .await
        .map_err(map_sqlx)?;
        self.commit(tx).await?;
        Ok(())
    }

    pub(super) async fn find_token_impl(
        &self,
        hash: [u8; 32],
    ) -> StoreResult<Option<(Token, [u8; 32])>> {
        let sql =
            format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ? AND revoked_at IS NULL");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&hash[..])
            .fetch_optional(&self.readers)
            .await
            .map_err(map_sqlx)?;
        row.as_ref().map(decode_token).transpose()
    }
}

/// Loads a directory and its version, or fails with `NotFound("directory")`.
pub(super) async fn load_directory(
    conn: &mut SqliteConnection,
    id: DirectoryId,
) -> StoreResult<(Directory, i64)> {
    let sql = format!("SELECT {DIRECTORY_COLUMNS} FROM directories WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(id.0))
        .fetch_optional(conn)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound("directory"))?;
    Ok((decode_directory(&row)?, row.int("version")?))
}

/// Fails with `NotFound("directory")` unless the directory exists.
pub(super) async fn ensure_directory(
    conn: &mut SqliteConnection,
    id: DirectoryId,
) -> StoreResult<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM directories WHERE id = ?")
        .bind(id_text(id.0))
        .fetch_optional(conn)
        .await
        .map_err(map_sqlx)?;
    found.map(|_| ()).ok_or(StoreError::NotFound("directory"))
}

fn decode_directory(row: &SqliteRow) -> StoreResult<Directory> {
    Ok(Directory {
        id: DirectoryId(row.id("id")?),
        name: row.text("name")?,
        organization: row.text("organization")?,
        provider: row.parsed("provider")?,
        deprovision_policy: row.parsed("deprovision_policy")?,
        attribute_mappings: row.json("attribute_mappings")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn decode_token(row: &SqliteRow) -> StoreResult<(Token, [u8; 32])> {
    use sqlx::Row;
    let hash = crate::error::stored_hash(
        row.try_get("hash")
            .map_err(|e| StoreError::Internal(format!("cannot decode column hash: {e}")))?,
    )?;
    let token = Token {
        id: TokenId(row.id("id")?),
        directory_id: DirectoryId(row.id("directory_id")?),
        name: row.text("name")?,
        prefix: row.text("prefix")?,
        created_at: row.time("created_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        last_used_at: row.opt_time("last_used_at")?,
    };
    Ok((token, hash))
}

fn apply_directory_update(
    old: &Directory,
    update: DirectoryUpdate,
    now: chrono::DateTime<chrono::Utc>,
) -> Directory {
    Directory {
        id: old.id,
        name: update.name.unwrap_or_else(|| old.name.clone()),
        organization: update
            .organization
            .unwrap_or_else(|| old.organization.clone()),
        provider: update.provider.unwrap_or(old.provider),
        deprovision_policy: update.deprovision_policy.unwrap_or(old.deprovision_policy),
        attribute_mappings: update
            .attribute_mappings
            .unwrap_or_else(|| old.attribute_mappings.clone()),
        created_at: old.created_at,
        updated_at: now,
    }
}

/// The fields of a directory that differ, by their serialized names.
fn directory_changes(old: &Directory, new: &Directory) -> StoreResult<Vec<FieldChange>> {
    let (old, new) = (to_json(old)?, to_json(new)?);
    let fields = [
        "name",
        "organization",
        "provider",
        "deprovision_policy",
        "attribute_mappings",
    ];
    Ok(fields
        .into_iter()
        .filter(|f| old[f] != new[f])
        .map(|f| FieldChange {
            field: f.to_owned(),
            previous: old[f].clone(),
            current: new[f].clone(),
        })
        .collect())
}

fn directory_event(
    kind: ChangeKind,
    directory: &Directory,
    version: i64,
    changed_fields: Vec<FieldChange>,
) -> StoreResult<Event> {
    Ok(Event {
        directory_id: directory.id,
        kind,
        resource_id: directory.id.0,
        version,
        payload: to_json(directory)?,
        changed_fields,
    })
}
