//! Directories and their bearer tokens as both backends read them.

use async_trait::async_trait;

use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::rows::{self, Cols, Dialect, On, Sql};
use crate::write::{Backend, Directories};

pub(crate) const DIRECTORY_COLUMNS: &str = "id, name, organization, provider, \
     deprovision_policy, attribute_mappings, version, created_at, updated_at";

pub(crate) const TOKEN_COLUMNS: &str =
    "id, directory_id, name, prefix, created_at, revoked_at, last_used_at";

#[async_trait]
impl<B: Backend> Directories for B {
    async fn get_directory(&self, id: DirectoryId) -> StoreResult<Directory> {
        Ok(load_directory(self.readers(), id, false).await?.0)
    }

    async fn list_directories(&self, organization: Option<&str>) -> StoreResult<Vec<Directory>> {
        let sql = format!(
            "SELECT {DIRECTORY_COLUMNS} FROM directories \
             WHERE ($1 IS NULL OR organization = $1) ORDER BY {}",
            B::Db::BY_AGE
        );
        let list = Sql::new(sql).bind(organization);
        list.all(self.readers(), |r| Ok(decode_directory::<B::Db>(r)?.0))
            .await
    }

    async fn tokens_of(&self, dir: DirectoryId, include_revoked: bool) -> StoreResult<Vec<Token>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE directory_id = $1 \
             AND ($2 OR revoked_at IS NULL) ORDER BY {}",
            B::Db::BY_AGE
        );
        let tokens = Sql::new(sql).bind(dir.0).bind(include_revoked);
        tokens.all(self.readers(), decode_token::<B::Db>).await
    }

    async fn find_token(&self, hash: [u8; 32]) -> StoreResult<Option<(Token, [u8; 32])>> {
        let decode = decode_token::<B::Db>;
        rows::live_secret(self.readers(), "tokens", TOKEN_COLUMNS, &hash, decode).await
    }
}

/// A directory and its version, or `NotFound("directory")`; with `lock`,
/// locked against concurrent changes ([`Dialect::FOR_UPDATE`]).
pub(crate) async fn load_directory<'e, DB: Dialect>(
    on: impl Into<On<'e, DB>>,
    id: DirectoryId,
    lock: bool,
) -> StoreResult<(Directory, i64)> {
    let lock = if lock { DB::FOR_UPDATE } else { "" };
    let sql = format!("SELECT {DIRECTORY_COLUMNS} FROM directories WHERE id = $1 {lock}");
    let load = Sql::new(sql).bind(id.0);
    load.one(on, "directory", decode_directory::<DB>).await
}

/// A directory row ([`DIRECTORY_COLUMNS`]) and its version.
pub(crate) fn decode_directory<DB: Dialect>(row: &DB::Row) -> StoreResult<(Directory, i64)> {
    let c = Cols::<DB>(row);
    let mappings = DB::read_json(row, "attribute_mappings")?;
    let directory = Directory {
        id: DirectoryId(c.id("id")?),
        name: c.get("name")?,
        organization: c.get("organization")?,
        provider: c.parsed("provider")?,
        deprovision_policy: c.parsed("deprovision_policy")?,
        attribute_mappings: serde_json::from_value(mappings).map_err(bad_json)?,
        created_at: c.time("created_at")?,
        updated_at: c.time("updated_at")?,
    };
    Ok((directory, c.get("version")?))
}

/// A token row ([`TOKEN_COLUMNS`]).
pub(crate) fn decode_token<DB: Dialect>(row: &DB::Row) -> StoreResult<Token> {
    let c = Cols::<DB>(row);
    Ok(Token {
        id: TokenId(c.id("id")?),
        directory_id: DirectoryId(c.id("directory_id")?),
        name: c.get("name")?,
        prefix: c.get("prefix")?,
        created_at: c.time("created_at")?,
        revoked_at: c.opt_time("revoked_at")?,
        last_used_at: c.opt_time("last_used_at")?,
    })
}

fn bad_json(error: serde_json::Error) -> StoreError {
    tracing::error!(error = %error, "stored JSON does not decode");
    StoreError::Internal("stored JSON does not decode".into())
}
