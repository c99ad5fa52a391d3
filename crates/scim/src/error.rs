//! SCIM errors (RFC 7644 §3.12).
//!
//! One error type, [`ScimError`], carries the HTTP status, the optional
//! `scimType` and a human-readable detail. It renders as the
//! `urn:ietf:params:scim:api:messages:2.0:Error` message with
//! [`ScimError::to_json`].

use std::fmt;

/// Schema URN of the SCIM error message.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` detail error keyword (RFC 7644 §3.12, Table 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    /// The filter syntax was invalid or the filter is not supported.
    InvalidFilter,
    /// The filter yields too many results to process.
    TooMany,
    /// One or more attribute values are already in use or reserved.
    Uniqueness,
    /// The modification is incompatible with an attribute's mutability.
    Mutability,
    /// The request body structure was invalid.
    InvalidSyntax,
    /// The `path` attribute was invalid or malformed.
    InvalidPath,
    /// The path did not yield an attribute that could be operated on.
    NoTarget,
    /// A required value was missing or a value was not compatible.
    InvalidValue,
    /// The specified SCIM protocol version is not supported.
    InvalidVers,
    /// The request cannot be completed because it would reveal sensitive data.
    Sensitive,
}

const ALL_SCIM_TYPES: [ScimType; 10] = [
    ScimType::InvalidFilter,
    ScimType::TooMany,
    ScimType::Uniqueness,
    ScimType::Mutability,
    ScimType::InvalidSyntax,
    ScimType::InvalidPath,
    ScimType::NoTarget,
    ScimType::InvalidValue,
    ScimType::InvalidVers,
    ScimType::Sensitive,
];

impl ScimType {
    /// The keyword exactly as written in RFC 7644 §3.12.
    ///
    /// ```
    /// use roster_scim::error::ScimType;
    /// assert_eq!(ScimType::NoTarget.as_str(), "noTarget");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }

    /// Parses a keyword (exact spelling, as on the wire).
    ///
    /// ```
    /// use roster_scim::error::ScimType;
    /// assert_eq!(ScimType::parse("invalidPath"), Some(ScimType::InvalidPath));
    /// assert_eq!(ScimType::parse("bogus"), None);
    /// ```
    pub fn parse(s: &str) -> Option<ScimType> {
        ALL_SCIM_TYPES.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for ScimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SCIM protocol error: HTTP status, optional `scimType`, detail.
///
/// ```
/// use roster_scim::error::ScimError;
/// let e = ScimError::invalid_filter("at byte 3: expected an operator");
/// assert_eq!(e.status, 400);
/// assert_eq!(e.to_json()["scimType"], "invalidFilter");
/// assert_eq!(e.to_json()["status"], "400");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    /// HTTP status code.
    pub status: u16,
    /// The RFC 7644 `scimType`, for the 400/409 family.
    pub scim_type: Option<ScimType>,
    /// Human-readable detail; never contains secrets.
    pub detail: String,
}

/// The 400 constructors: one per `scimType` of RFC 7644 §3.12, all alike.
macro_rules! bad_requests {
    ($($name:ident => $scim_type:ident;)*) => {
        $(
            #[doc = concat!("400 with [`ScimType::", stringify!($scim_type), "`].")]
            pub fn $name(detail: impl Into<String>) -> Self {
                Self::bad_request(ScimType::$scim_type, detail)
            }
        )*
    };
}

impl ScimError {
    /// A new error with an explicit status and type.
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }

    bad_requests! {
        invalid_filter => InvalidFilter;
        invalid_syntax => InvalidSyntax;
        invalid_path => InvalidPath;
        no_target => NoTarget;
        invalid_value => InvalidValue;
        mutability => Mutability;
        too_many => TooMany;
    }

    /// 409 `uniqueness`.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some(ScimType::Uniqueness), detail)
    }

    /// 404 without `scimType`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, None, detail)
    }

    /// 412 without `scimType` (ETag mismatch).
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(412, None, detail)
    }

    /// 401 without `scimType`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, None, detail)
    }

    /// 413 without `scimType`.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(413, None, detail)
    }

    /// Renders the RFC 7644 §3.12 error message. `status` is a string, as
    /// the RFC's examples show and IdPs expect.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(obj)) = (self.scim_type, body.as_object_mut()) {
            obj.insert("scimType".into(), t.as_str().into());
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scim_type_round_trips_through_its_keyword() {
        for t in ALL_SCIM_TYPES {
            assert_eq!(ScimType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn constructors_use_the_rfc_statuses() {
        assert_eq!(ScimError::uniqueness("x").status, 409);
        assert_eq!(ScimError::not_found("x").status, 404);
        assert_eq!(ScimError::precondition_failed("x").status, 412);
        assert_eq!(ScimError::unauthorized("x").status, 401);
        assert_eq!(ScimError::payload_too_large("x").status, 413);
        assert_eq!(ScimError::too_many("x").status, 400);
        assert_eq!(
            ScimError::mutability("x").scim_type,
            Some(ScimType::Mutability)
        );
    }

    #[test]
    fn json_without_scim_type_omits_the_member() {
        let body = ScimError::not_found("no such user").to_json();
        assert_eq!(body["schemas"][0], ERROR_SCHEMA);
        assert_eq!(body["status"], "404");
        assert_eq!(body["detail"], "no such user");
        assert!(body.get("scimType").is_none());
    }
}
