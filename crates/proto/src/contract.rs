//! The parts of the wire contract between the directory service and its
//! callers that the protos cannot express: metadata keys and shared request
//! bodies. Declared once here and imported on both sides.

/// gRPC metadata key carrying the RFC 7644 `scimType` of an error.
pub const SCIM_TYPE_METADATA: &str = "roster-scim-type";
/// gRPC metadata key carrying the HTTP status of the equivalent SCIM error.
pub const SCIM_STATUS_METADATA: &str = "roster-scim-status";

/// gRPC metadata key carrying, on `OUT_OF_RANGE`, the oldest cursor a watch
/// can still resume from.
pub const OLDEST_CURSOR_METADATA: &str = "roster-oldest-cursor";
/// gRPC metadata key carrying, in whole seconds, when a busy call may be
/// retried.
pub const RETRY_AFTER_METADATA: &str = "retry-after";
/// gRPC's own retry-pushback metadata key (milliseconds), honoured by
/// clients with a retry policy.
pub const RETRY_PUSHBACK_METADATA: &str = "grpc-retry-pushback-ms";
/// gRPC metadata key carrying the id of the SCIM request a call serves, so
/// the two services' log lines can be joined.
pub const REQUEST_ID_METADATA: &str = "x-request-id";

/// The SCIM PatchOp that deactivates a user: what a `DELETE /Users/{id}`
/// becomes under the deprovision policy `deactivate`.
pub const DEACTIVATE_PATCH: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#;
