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

    /// `DirectoryService` behind a pointer, its streams boxed: what the
    /// gateway calls, whether the directory service runs in its own process
    /// (`roster serve`: the service itself) or elsewhere (a tonic client
    /// wearing the same trait). One contract, two implementations.
    pub type DynDirectoryService = dyn directory_service_server::DirectoryService<
            ReadGroupStream = tonic::codegen::BoxStream<ReadGroupResponse>,
            WatchChangesStream = tonic::codegen::BoxStream<WatchChangesFrame>,
        >;
}

/// `roster.admin.v1`.
pub mod admin {
    tonic::include_proto!("roster.admin.v1");
    include!(concat!(env!("OUT_DIR"), "/server/roster.admin.v1.rs"));
}

pub mod batch;
pub mod contract;
mod frame;
pub mod internal_auth;

/// Encoded `FileDescriptorSet` of every Roster proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/roster_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message as _;

    /// Consumers generate stubs in other languages from `proto/`; Go's
    /// generator refuses a file without `go_package`.
    #[test]
    fn every_proto_declares_its_package_for_other_languages() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let ours: Vec<_> = set
            .file
            .iter()
            .filter(|f| f.package().starts_with("roster."))
            .collect();
        assert_eq!(
            ours.len(),
            2,
            "{:?}",
            set.file.iter().map(|f| f.name()).collect::<Vec<_>>()
        );
        for file in ours {
            let options = file.options.as_ref().expect("file options");
            let version = file.package().rsplit('.').next().unwrap();
            assert!(
                options.go_package().ends_with(&format!(
                    "/{version};{}{version}",
                    file.package().split('.').nth(1).unwrap()
                )),
                "{}: go_package {:?}",
                file.name(),
                options.go_package()
            );
            assert!(
                options.java_package().starts_with("dev.roster."),
                "{}",
                file.name()
            );
            assert!(options.java_multiple_files(), "{}", file.name());
            assert!(!options.csharp_namespace().is_empty(), "{}", file.name());
        }
    }
}
