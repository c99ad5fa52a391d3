//! Pulled directories: directories that cannot push SCIM (Active Directory,
//! LDAP, Google Workspace) are read on a schedule and reconciled into the
//! store.
//!
//! A sync is: read the whole source into a [`SourceSnapshot`] (a
//! [`Source`] per kind: [`ldap`]), diff it against the directory's stored
//! users and groups ([`reconcile::plan`]), check the mass-deletion
//! safeguard, and write the differences through the very `Store` methods
//! the SCIM gateway uses ([`reconcile::apply`]) — so the change log, the
//! versions and the `WatchChanges` events are those of a SCIM directory,
//! and a consumer cannot tell how a change arrived. [`runner`] schedules
//! syncs per directory under a lease in the store (one replica at a time),
//! backs off on source errors, and records each run's status.

pub mod credentials;
pub mod error;
pub mod google;
pub mod ldap;
pub mod reconcile;
pub mod runner;
pub mod snapshot;

pub use error::{SourceError, SyncError};
pub use snapshot::{Mappings, Source, SourceGroup, SourceMember, SourceSnapshot, SourceUser};
