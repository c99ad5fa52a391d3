//! PATCH paths (RFC 7644 §3.5.2):
//! `attrPath [ "[" valFilter "]" ] [ "." subAttr ]`.

use std::fmt;

use crate::error::ScimError;
use crate::filter::parser::{Mode, Parser};
use crate::filter::{AttrPath, Filter, MAX_FILTER_LEN};

/// A parsed PATCH `path`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute, possibly URN-qualified and with a sub-attribute
    /// (`name.familyName`) when there is no value filter.
    pub attr: AttrPath,
    /// The value filter selecting elements of a multi-valued attribute.
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter (`emails[type eq "work"].value`).
    pub sub_attr: Option<String>,
}

impl PatchPath {
    /// A path to a plain attribute.
    pub fn attribute(attr: AttrPath) -> Self {
        PatchPath {
            attr,
            filter: None,
            sub_attr: None,
        }
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Parses a PATCH path. Errors are `invalidPath` with the byte position.
///
/// ```
/// use roster_scim::path::parse_patch_path;
/// let p = parse_patch_path(r#"emails[type eq "work"].value"#)?;
/// assert_eq!(p.attr.name, "emails");
/// assert_eq!(p.sub_attr.as_deref(), Some("value"));
/// assert_eq!(p.to_string(), r#"emails[type eq "work"].value"#);
/// assert!(parse_patch_path("emails[type eq").is_err());
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn parse_patch_path(input: &str) -> Result<PatchPath, ScimError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(ScimError::invalid_path("path too long"));
    }
    if input.trim().is_empty() {
        return Err(ScimError::invalid_path("invalid path: the path is empty"));
    }
    let (attr, filter, sub_attr) = Parser::new(input, Mode::PatchPath).parse_patch_path()?;
    Ok(PatchPath {
        attr,
        filter,
        sub_attr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScimType;

    #[test]
    fn rfc_patch_paths_parse() {
        for src in [
            "members",
            "name.familyName",
            r#"addresses[type eq "work"]"#,
            r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
            r#"members[value eq "2819c223-7f76-453a-919d-413861904646"].displayName"#,
            r#"emails[type eq "work" and value ew "example.com"]"#,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        ] {
            let p = parse_patch_path(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(p.to_string(), src);
        }
    }

    #[test]
    fn value_filter_with_sub_attribute() {
        let p = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr, AttrPath::new("emails"));
        assert!(p.filter.is_some());
        assert_eq!(p.sub_attr.as_deref(), Some("value"));
    }

    #[test]
    fn bad_paths_are_invalid_path_errors() {
        for (src, detail) in [
            ("", "invalid path: the path is empty"),
            (
                "emails[",
                "invalid path at byte 7: expected an attribute path, '(' or 'not (', found the end of the input",
            ),
            (
                r#"emails[type eq "w"]value"#,
                "invalid path at byte 19: expected '.' or the end of the path, found 'value'",
            ),
            (
                r#"emails[type eq "w"]."#,
                "invalid path at byte 20: expected a sub-attribute name, found the end of the input",
            ),
            (
                r#"name.givenName[type eq "w"]"#,
                "invalid path at byte 14: a value filter must follow a multi-valued attribute, not a sub-attribute",
            ),
            (
                "userName eq",
                "invalid path at byte 9: expected '[' or the end of the path, found 'eq'",
            ),
            (
                r#"emails[value[type eq "x"] pr]"#,
                "invalid path at byte 12: value paths cannot be nested",
            ),
        ] {
            let e = parse_patch_path(src).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{src}");
            assert_eq!(e.detail, detail, "{src}");
        }
    }
}
