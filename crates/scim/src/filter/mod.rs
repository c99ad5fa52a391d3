//! SCIM filters (RFC 7644 §3.4.2.2): parse, render, evaluate.
//!
//! ```
//! use roster_scim::filter;
//! use serde_json::json;
//!
//! let f = filter::parse(r#"userName Eq "bjensen" and emails[type eq "work" and value co "@example.com"]"#)?;
//! assert_eq!(
//!     f.to_string(),
//!     r#"userName eq "bjensen" and emails[type eq "work" and value co "@example.com"]"#
//! );
//! let user = json!({
//!     "userName": "BJensen",
//!     "emails": [{"type": "work", "value": "bjensen@example.com"}]
//! });
//! assert!(filter::matches(&f, &user)); // userName is not caseExact
//! # Ok::<(), roster_scim::error::ScimError>(())
//! ```
//!
//! Chains of `and` / `or` are parsed into balanced trees (not left-deep
//! ones) so that very long filters cannot produce deep ASTs; the meaning is
//! unchanged because both operators are associative.

mod ast;
mod eval;
pub(crate) mod parser;

pub use ast::*;
pub use parser::{MAX_DEPTH, MAX_FILTER_LEN};

use crate::error::ScimError;
use crate::schema::ResourceKind;
use parser::{Mode, Parser};

/// Parses a filter (full RFC 7644 §3.4.2.2 grammar; keywords and operators
/// case-insensitive). Errors are `invalidFilter` and name the byte offset
/// and what was expected.
///
/// ```
/// use roster_scim::filter;
/// let err = filter::parse("userName eq").unwrap_err();
/// assert_eq!(err.detail, "invalid filter at byte 11: expected a value (string, number, true, false or null), found the end of the input");
/// ```
pub fn parse(input: &str) -> Result<Filter, ScimError> {
    check_length(input)?;
    if input.trim().is_empty() {
        return Err(ScimError::invalid_filter(
            "invalid filter: the filter is empty",
        ));
    }
    Parser::new(input, Mode::Filter).parse_complete_filter()
}

fn check_length(input: &str) -> Result<(), ScimError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(ScimError::invalid_filter(format!(
            "invalid filter: longer than {MAX_FILTER_LEN} bytes"
        )));
    }
    Ok(())
}

/// Parses a single attribute path such as `name.familyName` or
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`
/// (for `sortBy` and `attributes`). Errors are `invalidPath`.
///
/// ```
/// use roster_scim::filter::parse_attr_path;
/// let p = parse_attr_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")?;
/// assert_eq!(p.schema.as_deref(), Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
/// assert_eq!((p.name.as_str(), p.sub_attr.as_deref()), ("manager", Some("value")));
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn parse_attr_path(input: &str) -> Result<AttrPath, ScimError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(ScimError::invalid_path("attribute path too long"));
    }
    Parser::new(input, Mode::PatchPath).parse_complete_attr_path()
}

/// Whether `resource` matches `filter` (see the module docs of the
/// evaluator for the semantics the RFC leaves open). The resource kind is
/// taken from its `schemas` member.
///
/// ```
/// use roster_scim::filter::{matches, parse};
/// use serde_json::json;
/// let f = parse(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#)?;
/// assert!(matches(&f, &json!({"meta": {"lastModified": "2011-05-13T06:42:34+02:00"}})) == false);
/// assert!(matches(&f, &json!({"meta": {"lastModified": "2012-01-01T00:00:00Z"}})));
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn matches(filter: &Filter, resource: &serde_json::Value) -> bool {
    eval::matches(filter, resource)
}

/// [`matches()`] with an explicit resource kind (for resources whose
/// `schemas` member is missing).
///
/// ```
/// use roster_scim::{filter::{matches_kind, parse}, ResourceKind};
/// use serde_json::json;
/// let f = parse(r#"externalId eq "ABC""#)?;
/// assert!(!matches_kind(&f, &json!({"externalId": "abc"}), ResourceKind::Group)); // caseExact
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn matches_kind(filter: &Filter, resource: &serde_json::Value, kind: ResourceKind) -> bool {
    eval::matches_kind(filter, resource, kind)
}

/// Whether one element of the multi-valued attribute `parent` matches a
/// value filter whose paths are relative to the element (PATCH paths).
///
/// ```
/// use roster_scim::{filter::{matches_element, parse, AttrPath}, ResourceKind};
/// use serde_json::json;
/// let f = parse(r#"type eq "WORK""#)?;
/// let email = json!({"type": "work", "value": "a@b"});
/// assert!(matches_element(&f, &email, ResourceKind::User, &AttrPath::new("emails")));
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn matches_element(
    filter: &Filter,
    element: &serde_json::Value,
    kind: ResourceKind,
    parent: &AttrPath,
) -> bool {
    eval::matches_element(filter, element, kind, parent)
}

#[cfg(test)]
mod tests;
