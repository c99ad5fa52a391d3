//! What a source reads: its users and groups, each keyed by the source's
//! stable id (LDAP `entryUUID`, AD `objectGUID`, Google's `id`), which
//! becomes the stored `externalId`.

use async_trait::async_trait;
use roster_store::UserFields;

use crate::error::SourceError;

/// A user as the source has it, already mapped to the normalized model.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceUser {
    /// The source's stable id (also `fields.external_id`).
    pub external_id: String,
    pub fields: UserFields,
}

/// A member of a source group, by the member's stable id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceMember {
    User(String),
    Group(String),
    /// Known by id only (an AD extended DN's GUID read in an incremental
    /// sync, where the member itself may not have been read): whichever
    /// stored or read user or group has that id.
    Any(String),
}

/// A group as the source has it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceGroup {
    pub external_id: String,
    pub display_name: String,
    /// Members the source lists that are not in the snapshot (outside the
    /// base DN, filtered out) are dropped by the reconciliation.
    pub members: Vec<SourceMember>,
}

/// A full read of a source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceSnapshot {
    pub users: Vec<SourceUser>,
    pub groups: Vec<SourceGroup>,
}

/// What one sync read: everything, or only what changed since `cursor`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceRead {
    pub snapshot: SourceSnapshot,
    /// `false`: the snapshot holds only the users and groups changed since
    /// the previous read, so absence from it does not mean removal.
    pub complete: bool,
    /// Where the next read starts (kept in the sync status); `None`: full.
    pub cursor: Option<serde_json::Value>,
}

/// A directory that Roster reads (rather than one that pushes to Roster).
#[async_trait]
pub trait Source: Send + Sync {
    /// Reads every user and group under the configured scope.
    async fn read(&self) -> Result<SourceSnapshot, SourceError>;

    /// Reads what changed since `cursor` (the previous read's), for
    /// sources that can; the others read everything.
    async fn read_since(
        &self,
        _cursor: Option<&serde_json::Value>,
    ) -> Result<SourceRead, SourceError> {
        Ok(SourceRead {
            snapshot: self.read().await?,
            complete: true,
            cursor: None,
        })
    }
}
