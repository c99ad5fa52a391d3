//! SCIM 1.1, the pre-RFC dialect (`urn:scim:schemas:core:1.0`), as a codec
//! over the one model the rest of this crate keeps.
//!
//! Nothing here applies a PATCH, evaluates a filter or validates a
//! resource: a 1.1 request is *translated* into the 2.0 form the directory
//! service already understands (a resource body, a PatchOp, a filter), and
//! a rendered 2.0 resource is translated back into 1.1 on the way out. So
//! a user written in either dialect is stored, validated and announced on
//! the change stream the same way.
//!
//! What differs between the dialects, and where it is translated:
//!
//! | 1.1 | 2.0 | here |
//! | --- | --- | --- |
//! | `schemas: ["urn:scim:schemas:core:1.0"]` | `…:core:2.0:User` / `…:core:2.0:Group` | [`resource`] |
//! | `urn:scim:schemas:extension:enterprise:1.0`, `manager.managerId` | `…:enterprise:2.0:User`, `manager.value` | [`resource`], [`names`] |
//! | `meta` without `resourceType` | `meta.resourceType` | [`resource`] |
//! | `members` / `groups` as `{value, display, type}` | the same plus `$ref` | [`resource`] |
//! | PATCH: a partial resource, `meta.attributes`, `"operation": "delete"` | PatchOp | [`patch`] |
//! | filters: `eq co sw pr gt ge lt le`, `and`, `or`, `()` | also `ne ew not […]` | [`names`] |
//! | `{"Errors": [{"description", "code"}]}` | `urn:…:Error` | [`message`] |
//! | ListResponse without a message URN | `urn:…:ListResponse` | [`message`] |
//! | `/ServiceProviderConfigs`, `/Schemas/Users` | `/ServiceProviderConfig`, `/Schemas/{urn}` | [`message`] |
//!
//! Sources: the SCIM 1.1 core schema and API documents
//! (draft-scim-core-schema-01, draft-scim-api-01, published at simplecloud.info).

mod error;
pub mod message;
pub mod names;
pub mod patch;
pub mod resource;

pub use error::V1Error;

/// The SCIM 1.1 core schema URN (Users, Groups, list responses, errors).
pub const CORE_SCHEMA: &str = "urn:scim:schemas:core:1.0";
/// The SCIM 1.1 enterprise User extension URN.
pub const ENTERPRISE_SCHEMA: &str = "urn:scim:schemas:extension:enterprise:1.0";

#[cfg(test)]
mod tests;
