//! The spawn-app harness: every end-to-end test of every crate starts the
//! system through these functions, so a change to how the services are
//! built or launched touches this module only.
//!
//! Three ways to run the system, all on loopback port 0 and each over its
//! own fresh database:
//! - [`Served`] / [`serve_postgres`]: the real `roster` binary (`roster serve`),
//!   and [`Process`] / [`DirectoryProcess`] for the split deployment;
//! - [`Stack`]: the directory service and the gateway in this process;
//! - [`Env`] / [`Server`]: the directory service alone, with gRPC clients.
//!
//! Clients: [`Scim`] (SCIM over HTTP, answers read into one [`Reply`]),
//! [`RetryingIdp`] (an IdP connector that retries), and the `WatchChanges`
//! readers of [`watch`]; and a webhook receiver ([`webhooks`]).

mod portal;
mod process;
mod reply;
mod scim;
mod stack;
pub mod watch;
pub mod webhooks;

pub use portal::*;
pub use process::*;
pub use reply::{Reply, truncated};
pub use scim::*;
pub use stack::*;
pub use watch::*;

pub use roster_scim::ERROR_SCHEMA;
pub use roster_scim::resource::{
    BULK_REQUEST_SCHEMA, BULK_RESPONSE_SCHEMA, LIST_RESPONSE_SCHEMA, PATCH_OP_SCHEMA,
    SEARCH_REQUEST_SCHEMA,
};
pub use roster_scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
