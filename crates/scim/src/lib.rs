//! SCIM 2.0 protocol (RFC 7643 / RFC 7644) without I/O.
//!
//! Everything here is pure and safe on hostile input: no panics, no
//! unbounded recursion, linear-time parsing.

pub mod discovery;
pub mod error;
pub mod filter;
mod json;
pub mod list;
pub mod patch;
pub mod path;
pub mod projection;
pub mod resource;
pub mod schema;
mod tolerance;

pub use error::{ERROR_SCHEMA, ScimError, ScimType};
pub use schema::ResourceKind;
