//! Roster's directory service.
//!
//! - [`service::DirectoryApi`] holds the rules of `roster.directory.v1`
//!   (users, groups, memberships, `WatchChanges`) and
//!   [`admin::AdminApi`] those of `roster.admin.v1` (directories, bearer
//!   tokens, service credentials): plain Rust over a `Store`, speaking the
//!   generated messages;
//! - [`grpc`] puts both on the wire, one line per RPC; it is where a
//!   [`error::ServiceError`] becomes a `tonic::Status` (by the mapping in
//!   [`error`]);
//! - [`watch`] holds the per-process change tailer and the watch streams;
//! - [`serve`] runs both services with health checking and reflection.

pub mod admin;
mod backend;
pub mod convert;
pub mod credentials;
pub mod cursor;
pub mod directory_cache;
pub mod error;
mod group_commit;
pub mod grpc;
pub mod in_process;
mod lag;
pub mod local;
pub mod mapping;
pub mod portal;
pub mod server;
pub mod service;
pub mod watch;
pub mod webhooks;

pub use in_process::InProcess;
pub use local::DirectService;
pub use server::{Directory, DirectoryConfig, Error, serve};
