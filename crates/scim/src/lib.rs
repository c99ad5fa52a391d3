//! SCIM 2.0 protocol (RFC 7643 / RFC 7644) without I/O, and a SCIM 1.1
//! codec ([`v1`]) that translates the older dialect onto the same model.
//!
//! Everything here is pure and safe on hostile input: no panics, no
//! unbounded recursion, linear-time parsing. Strict RFC semantics live in
//! `filter`, `patch` and `resource`; every accepted IdP deviation is in the
//! private `tolerance` module, each naming the behaviour it exists for.
//!
//! ```
//! use roster_scim::{filter, patch, resource, ResourceKind};
//! use serde_json::json;
//!
//! // POST /Users
//! let (raw, user) = resource::prepare_user(json!({
//!     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
//!     "userName": "bjensen@example.com", "active": true
//! }))?;
//! assert_eq!(user.user_name, "bjensen@example.com");
//!
//! // PATCH /Users/{id} as Entra ID sends it
//! let req = patch::PatchRequest::parse(&json!({"Operations": [
//!     {"op": "Replace", "path": "active", "value": "False"}
//! ]}))?;
//! let patched = patch::apply(&raw, ResourceKind::User, &req.operations)?;
//! assert_eq!(resource::normalize_user(&patched)?.active, false);
//!
//! // GET /Users?filter=...
//! let f = filter::parse(r#"userName eq "BJENSEN@example.com" and active eq false"#)?;
//! assert!(filter::matches(&f, &patched));
//! # Ok::<(), roster_scim::ScimError>(())
//! ```

pub mod discovery;
pub mod error;
pub mod filter;
mod json;
pub mod list;
pub mod mapping;
pub mod patch;
pub mod path;
pub mod projection;
pub mod resource;
pub mod schema;
mod shape;
pub mod text;
mod tolerance;
pub mod v1;

pub use error::{ERROR_SCHEMA, ScimError, ScimType};
pub use json::from_slice_unique;
pub use schema::ResourceKind;
