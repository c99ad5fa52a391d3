//! Service credentials as both backends read them (each writes them its
//! own way).

use crate::error::StoreResult;
use crate::model::{Credential, CredentialId};
use crate::rows::{self, Cols, Dialect, Sql};
use crate::write::Backend;

pub(crate) const CREDENTIAL_COLUMNS: &str = "id, name, scope, prefix, created_at, revoked_at";

/// A credential row ([`CREDENTIAL_COLUMNS`]).
pub(crate) fn decode_credential<DB: Dialect>(row: &DB::Row) -> StoreResult<Credential> {
    let c = Cols::<DB>(row);
    Ok(Credential {
        id: CredentialId(c.id("id")?),
        name: c.get("name")?,
        scope: c.parsed("scope")?,
        prefix: c.get("prefix")?,
        created_at: c.time("created_at")?,
        revoked_at: c.opt_time("revoked_at")?,
    })
}

/// [`crate::Store::list_credentials`]: oldest first.
pub(crate) async fn list<B: Backend>(b: &B, include_revoked: bool) -> StoreResult<Vec<Credential>> {
    let sql = format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM service_credentials WHERE ($1 OR revoked_at IS NULL) \
         ORDER BY {}",
        B::Db::BY_AGE
    );
    let credentials = Sql::new(sql).bind(include_revoked);
    credentials
        .all(b.readers(), decode_credential::<B::Db>)
        .await
}

/// [`crate::Store::find_credential`].
pub(crate) async fn find<B: Backend>(
    b: &B,
    hash: [u8; 32],
) -> StoreResult<Option<(Credential, [u8; 32])>> {
    let decode = decode_credential::<B::Db>;
    rows::live_secret(
        b.readers(),
        "service_credentials",
        CREDENTIAL_COLUMNS,
        &hash,
        decode,
    )
    .await
}
