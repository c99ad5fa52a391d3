//! Entity tags: `W/"<version>"` (RFC 7644 §3.14).

/// The ETag of a resource version.
pub fn format_etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// What an `If-Match` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version.
    Any,
    /// Exactly this version.
    Version(i64),
    /// A tag this server never issues: the precondition can never hold.
    Never,
}

impl IfMatch {
    /// The `if_version` to send over gRPC, or `None` for "any".
    pub fn if_version(self) -> Option<i64> {
        match self {
            Self::Any => None,
            Self::Version(v) => Some(v),
            // No stored version is negative, so the write fails with 412.
            Self::Never => Some(-1),
        }
    }
}

/// Parses an `If-Match` header (or a bulk operation's `version`). Only the
/// first tag of a list is honoured; weak and strong tags compare alike,
/// because SCIM versions are weak tags (RFC 7644 §3.14).
pub fn parse_if_match(value: &str) -> IfMatch {
    let first = value.split(',').next().unwrap_or("").trim();
    if first == "*" {
        return IfMatch::Any;
    }
    parse_tag(first).map_or(IfMatch::Never, IfMatch::Version)
}

/// Whether an `If-None-Match` header matches `version` (so a GET answers 304).
pub fn if_none_match_hits(value: &str, version: i64) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || parse_tag(tag) == Some(version))
}

fn parse_tag(tag: &str) -> Option<i64> {
    let opaque = tag.strip_prefix("W/").unwrap_or(tag);
    let inner = opaque.strip_prefix('"')?.strip_suffix('"')?;
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_weak_tags() {
        assert_eq!(format_etag(7), "W/\"7\"");
    }

    #[test]
    fn parses_if_match_forms() {
        assert_eq!(parse_if_match("*"), IfMatch::Any);
        assert_eq!(parse_if_match("W/\"3\""), IfMatch::Version(3));
        assert_eq!(parse_if_match("\"3\""), IfMatch::Version(3));
        assert_eq!(parse_if_match(" W/\"3\" , W/\"4\""), IfMatch::Version(3));
        assert_eq!(parse_if_match("W/\"abc\""), IfMatch::Never);
        assert_eq!(parse_if_match("3"), IfMatch::Never);
        assert_eq!(IfMatch::Never.if_version(), Some(-1));
        assert_eq!(IfMatch::Any.if_version(), None);
    }

    #[test]
    fn if_none_match_compares_versions() {
        assert!(if_none_match_hits("W/\"2\"", 2));
        assert!(if_none_match_hits("W/\"1\", W/\"2\"", 2));
        assert!(if_none_match_hits("*", 9));
        assert!(!if_none_match_hits("W/\"1\"", 2));
        assert!(!if_none_match_hits("garbage", 2));
    }
}
