//! Follow a Roster directory's changes without ever losing your place.
//!
//! [`Follower`] wraps `WatchChanges` with everything a consumer otherwise
//! writes by hand (`docs/watch.md`, "Writing a consumer"):
//! - reconnects after any disconnect, with exponential backoff and full
//!   jitter, round-robin over the configured endpoints (replicas), honouring
//!   the server's retry pushback;
//! - resumes from the last cursor it persisted through a [`CursorStore`]
//!   (a file, your own PostgreSQL transaction, or memory);
//! - starts from a full snapshot (`initial_state`) when it has no cursor,
//!   and again, with a [`Consumer::snapshot_begins`] call saying why, when
//!   the server answers `OUT_OF_RANGE` (cursor expired, log restored) or a
//!   snapshot broke before its `SYNCED` marker;
//! - reports what it does to an [`Observer`] (metrics, logs).
//!
//! Applying a change twice is possible only if the process dies between
//! applying it and persisting its cursor; store the cursor in the same
//! transaction as your writes ([`postgres::PgCursor`]) to make that
//! impossible, or apply by version ([`supersedes`]).

mod backoff;
mod cursor;
mod follow;
mod list;
#[cfg(feature = "postgres")]
pub mod mirror;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod verify;

pub use backoff::Backoff;
pub use cursor::{CursorStore, FileCursor, MemoryCursor};
pub use follow::{
    BoxError, Consumer, FollowConfig, FollowError, Follower, NoObserver, Observer, Position,
    SnapshotReason, Start,
};
pub use roster_proto::directory::{Change, ChangeKind};

/// Whether `change` is newer than a stored copy at `stored_version` and so
/// should be applied: a later version, or the deletion of the version held
/// (a tombstone carries the resource's last version).
pub fn supersedes(change: &Change, stored_version: Option<i64>) -> bool {
    match stored_version {
        None => true,
        Some(v) if change.tombstone => change.version >= v,
        Some(v) => change.version > v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(version: i64, tombstone: bool) -> Change {
        Change {
            version,
            tombstone,
            ..Default::default()
        }
    }

    #[test]
    fn a_change_supersedes_older_copies_and_a_delete_its_own_version() {
        assert!(supersedes(&change(1, false), None));
        assert!(supersedes(&change(3, false), Some(2)));
        assert!(!supersedes(&change(2, false), Some(2)));
        assert!(!supersedes(&change(1, false), Some(2)));
        assert!(supersedes(&change(2, true), Some(2)));
        assert!(!supersedes(&change(1, true), Some(2)));
    }
}
