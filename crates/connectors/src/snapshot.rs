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

/// A directory that Roster reads (rather than one that pushes to Roster).
#[async_trait]
pub trait Source: Send + Sync {
    /// Reads every user and group under the configured scope.
    async fn read(&self) -> Result<SourceSnapshot, SourceError>;
}
