//! A source's secrets at rest: sealed with the server key (the webhook
//! secrets' key and format, `ROSTER_SECRET_KEY`), bound to the directory id
//! so a sealed value copied to another directory does not open.

use roster_store::DirectoryId;
use roster_webhook::SealingKey;

use crate::error::SyncError;

/// Sealing context: the directory id, under a label distinct from the
/// webhook endpoints' (whose context is the bare endpoint id).
pub fn context(dir: DirectoryId) -> Vec<u8> {
    format!("directory-source:{dir}").into_bytes()
}

pub fn seal(key: &SealingKey, dir: DirectoryId, secret: &str) -> Result<Vec<u8>, SyncError> {
    key.seal_bytes(secret.as_bytes(), &context(dir))
        .map_err(|_| SyncError::Credentials)
}

pub fn open(key: &SealingKey, dir: DirectoryId, sealed: &[u8]) -> Result<String, SyncError> {
    let bytes = key
        .open_bytes(sealed, &context(dir))
        .map_err(|_| SyncError::Credentials)?;
    String::from_utf8(bytes).map_err(|_| SyncError::Credentials)
}
