//! Compiles the protos with the pure-Rust `protox`, so no system `protoc` is needed.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("roster/directory/v1/directory.proto"),
        root.join("roster/admin/v1/admin.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Server reflection serves this descriptor set.
    std::fs::write(out.join("roster_descriptor.bin"), fds.encode_to_vec())?;
    // Messages and clients, as every consumer sees them.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds.clone())?;
    // The server traits, generated apart so that `WatchChanges` can answer
    // with `WatchChangesFrame` (src/frame.rs), which is wire-identical to
    // `WatchChangesResponse` but carries its change pre-encoded: one encoding
    // per change shared by every stream instead of one per stream. Every
    // other type is the one generated above, hence no messages in this pass.
    let servers = out.join("server");
    std::fs::create_dir_all(&servers)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&servers)
        .extern_path(".roster.directory.v1", "crate::directory")
        .extern_path(".roster.admin.v1", "crate::admin")
        .extern_path(
            ".roster.directory.v1.WatchChangesResponse",
            "crate::directory::WatchChangesFrame",
        )
        .compile_fds(fds)?;
    Ok(())
}
