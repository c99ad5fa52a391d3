//! What a source reads: its users and groups, each keyed by the source's
//! stable id (LDAP `entryUUID`, AD `objectGUID`, Google's `id`), which
//! becomes the stored `externalId`.

use async_trait::async_trait;
use roster_scim::mapping::{self, SourcePath};
use roster_store::{AttributeMapping, UserFields};
use serde_json::Value;

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

/// The directory's attribute mappings, as a source applies them to its own
/// records (Google's User resource, an LDAP entry's attributes): the same
/// mechanism, paths and targets as for a SCIM directory
/// (`roster admin map-attribute`).
#[derive(Debug, Clone, Default)]
pub struct Mappings(Vec<AttributeMapping>);

impl Mappings {
    pub fn new(mappings: Vec<AttributeMapping>) -> Self {
        Self(mappings)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The source paths that parse (the others are skipped when applied).
    pub fn sources(&self) -> impl Iterator<Item = SourcePath> + '_ {
        self.0
            .iter()
            .filter_map(|m| mapping::source_path(&m.source).ok())
    }

    /// Copies the mapped values of `record` onto `fields`.
    pub fn apply(&self, record: &Value, fields: &mut UserFields) {
        let pairs = self
            .0
            .iter()
            .map(|m| (m.source.as_str(), m.target.as_str()));
        mapping::apply(pairs, record, fields);
    }
}
