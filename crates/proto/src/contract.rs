//! The parts of the wire contract between the directory service and its
//! callers that the protos cannot express: error metadata keys and shared
//! request bodies. Declared once here and imported on both sides.

/// gRPC metadata key carrying the RFC 7644 `scimType` of an error.
pub const SCIM_TYPE_METADATA: &str = "roster-scim-type";
/// gRPC metadata key carrying the HTTP status of the equivalent SCIM error.
pub const SCIM_STATUS_METADATA: &str = "roster-scim-status";

/// The SCIM PatchOp that deactivates a user: what a `DELETE /Users/{id}`
/// becomes under the deprovision policy `deactivate`.
pub const DEACTIVATE_PATCH: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#;
