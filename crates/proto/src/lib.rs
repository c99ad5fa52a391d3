//! Generated gRPC contracts of Roster.
//!
//! `directory` holds `roster.directory.v1` (users, groups, memberships and the
//! `WatchChanges` stream); `admin` holds `roster.admin.v1` (directories and
//! bearer tokens). [`FILE_DESCRIPTOR_SET`] feeds gRPC server reflection.
//!
//! Clients use the generated messages as they are. The server traits are
//! generated apart so that `WatchChanges` answers with
//! [`directory::WatchChangesFrame`], the wire twin of `WatchChangesResponse`
//! that carries its change pre-encoded (see `build.rs`).

#![allow(clippy::all, missing_docs)]

/// `roster.directory.v1`.
pub mod directory {
    tonic::include_proto!("roster.directory.v1");
    // The server trait, whose `WatchChanges` answers with frames.
    include!(concat!(env!("OUT_DIR"), "/server/roster.directory.v1.rs"));
    pub use crate::frame::{WatchChangesFrame, encode_change, watch_changes_frame};
}

/// `roster.admin.v1`.
pub mod admin {
    tonic::include_proto!("roster.admin.v1");
    include!(concat!(env!("OUT_DIR"), "/server/roster.admin.v1.rs"));
}

mod frame;
pub mod internal_auth;

/// Encoded `FileDescriptorSet` of every Roster proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/roster_descriptor.bin"));
