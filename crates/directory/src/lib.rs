//! Roster's gRPC directory service.
//!
//! - [`service::DirectoryApi`] implements `roster.directory.v1.DirectoryService`
//!   (users, groups, memberships, `WatchChanges`);
//! - [`admin::AdminApi`] implements `roster.admin.v1.AdminService`
//!   (directories and bearer tokens);
//! - [`watch`] holds the per-process change tailer and the watch streams;
//! - [`serve`] runs both services with health checking and reflection.
//!
//! Every failure is a [`error::ServiceError`], mapped to a `tonic::Status`
//! in one place.

pub mod admin;
mod backend;
pub mod convert;
pub mod credentials;
pub mod cursor;
pub mod directory_cache;
pub mod error;
pub mod grpc;
mod lag;
pub mod local;
pub mod mapping;
pub mod server;
pub mod service;
pub mod watch;

pub use local::{LocalListener, local_channel};
pub use server::{Directory, DirectoryConfig, Error, serve};
