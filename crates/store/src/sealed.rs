//! Re-sealing stored secrets after a rotation of the server's sealing key:
//! the directory service opens and seals (the store never sees a key), the
//! store swaps the bytes only if nobody changed them in between.

use crate::error::StoreResult;
use crate::model::DirectoryId;
use crate::rows::Sql;
use crate::webhooks::WebhookId;
use crate::write::Backend;

/// A stored sealed secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedSecret {
    /// A pulled directory's source credentials.
    SourceCredentials(DirectoryId),
    /// A webhook endpoint's signing secret.
    WebhookSecret(WebhookId),
    /// A webhook endpoint's signing secret before its last rotation.
    WebhookPreviousSecret(WebhookId),
}

impl SealedSecret {
    /// Table, key column, key, sealed column.
    fn place(self) -> (&'static str, &'static str, uuid::Uuid, &'static str) {
        match self {
            Self::SourceCredentials(d) => ("directory_sources", "directory_id", d.0, "credentials"),
            Self::WebhookSecret(w) => ("webhook_endpoints", "id", w.0, "secret"),
            Self::WebhookPreviousSecret(w) => ("webhook_endpoints", "id", w.0, "previous_secret"),
        }
    }
}

/// Compare-and-set: a concurrent admin change (new credentials, a secret
/// rotation) wins over a re-seal of the value it replaced. The plain
/// secret is unchanged, so an endpoint's generation is left alone.
pub(crate) async fn reseal<B: Backend>(
    b: &B,
    secret: SealedSecret,
    old: &[u8],
    new: Vec<u8>,
) -> StoreResult<bool> {
    let (table, key, id, column) = secret.place();
    let sql = format!("UPDATE {table} SET {column} = $3 WHERE {key} = $1 AND {column} = $2");
    let done = Sql::new(sql)
        .bind(id)
        .bind(old.to_vec())
        .bind(new)
        .execute(b.writer())
        .await?;
    Ok(done == 1)
}
