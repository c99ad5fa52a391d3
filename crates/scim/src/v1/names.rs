//! Attribute names, filters and `sortBy` of SCIM 1.1, as 2.0 text.
//!
//! 1.1 and 2.0 agree on the core attribute names, on case-insensitive
//! attribute names and operators, and on string values compared by the
//! schema's `caseExact` (draft-scim-api-01 §3.2.2, "Filtering" and
//! "Sorting"). They differ in the enterprise extension's URN (with `.` or
//! `:` before the attribute: 1.1 clients write both), in
//! `manager.managerId` (2.0: `manager.value`), and in the filter grammar:
//! 1.1 has only `eq co sw pr gt ge lt le`, `and`, `or` and parentheses.

use crate::filter::{self, AttrPath, CompareOp, Filter};
use crate::schema::ENTERPRISE_USER_SCHEMA;

use super::{CORE_SCHEMA, ENTERPRISE_SCHEMA, V1Error};

/// A 1.1 filter as the equivalent 2.0 filter text.
///
/// ```
/// use roster_scim::v1::names::filter_to_v2;
/// let f = filter_to_v2(r#"urn:scim:schemas:extension:enterprise:1.0.manager.managerId Eq "m1""#)?;
/// assert_eq!(f, r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m1""#);
/// assert!(filter_to_v2(r#"userName ne "x""#).is_err()); // 2.0 only
/// # Ok::<(), roster_scim::v1::V1Error>(())
/// ```
pub fn filter_to_v2(text: &str) -> Result<String, V1Error> {
    let mut parsed = filter::parse(&qualify(text))?;
    translate_filter(&mut parsed)?;
    Ok(parsed.to_string())
}

/// A `sortBy` or an `attributes` list of 1.1 names as 2.0 names.
///
/// ```
/// use roster_scim::v1::names::names_to_v2;
/// assert_eq!(
///     names_to_v2("userName,urn:scim:schemas:extension:enterprise:1.0"),
///     "userName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
/// );
/// ```
pub fn names_to_v2(text: &str) -> String {
    text.split(',')
        .map(
            |name| match filter::parse_attr_path(&qualify(name.trim())) {
                Ok(mut path) => {
                    translate_path(&mut path);
                    path.to_string()
                }
                // Left as sent: the 2.0 validation names the mistake.
                Err(_) => qualify(name),
            },
        )
        .collect::<Vec<_>>()
        .join(",")
}

/// One attribute path (PATCH `meta.attributes`) as a 2.0 path.
pub(crate) fn path_to_v2(text: &str) -> Result<AttrPath, V1Error> {
    let mut path = filter::parse_attr_path(&qualify(text.trim()))
        .map_err(|_| V1Error::AttributeName(shorten(text)))?;
    translate_path(&mut path);
    Ok(path)
}

/// `manager.managerId` of the enterprise extension is 2.0's `manager.value`.
fn translate_path(path: &mut AttrPath) {
    let enterprise = path
        .schema
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA));
    let manager_id = path.name.eq_ignore_ascii_case("manager")
        && path
            .sub_attr
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("managerId"));
    if enterprise && manager_id {
        path.sub_attr = Some("value".to_owned());
    }
}

/// Rejects what 1.1 does not define and translates every path. The
/// parser bounds the depth of the tree, so recursion is bounded too.
fn translate_filter(f: &mut Filter) -> Result<(), V1Error> {
    match f {
        Filter::Compare { op, path, .. } => {
            match op {
                CompareOp::Ne => return Err(V1Error::FilterConstruct("ne")),
                CompareOp::Ew => return Err(V1Error::FilterConstruct("ew")),
                _ => {}
            }
            translate_path(path);
            Ok(())
        }
        Filter::Present(path) => {
            translate_path(path);
            Ok(())
        }
        Filter::And(l, r) | Filter::Or(l, r) => {
            translate_filter(l)?;
            translate_filter(r)
        }
        Filter::Not(_) => Err(V1Error::FilterConstruct("not")),
        Filter::ValuePath { .. } => Err(V1Error::FilterConstruct("[…]")),
    }
}

/// Rewrites the 1.1 schema URNs that prefix attribute names, outside
/// string literals: `urn:scim:schemas:extension:enterprise:1.0.department`
/// (or `…:1.0:department`) becomes the 2.0 extension path, and
/// `urn:scim:schemas:core:1.0.userName` plain `userName`. The 2.0 parser
/// would otherwise read the `1.0` as an attribute name.
pub(crate) fn qualify(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with('"') {
            let end = literal_end(rest);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        // Only a whole name is a URN: `xurn:scim:…` is not one.
        if word_starts(&out)
            && let Some((replacement, used)) = urn_at(rest)
        {
            out.push_str(replacement);
            rest = &rest[used..];
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// Whether a name would start after `out` (as the parser splits words).
fn word_starts(out: &str) -> bool {
    out.chars()
        .next_back()
        .is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | '$')))
}

/// The replacement of a 1.1 URN at the start of `text` and the bytes it
/// replaces; `None` when `text` does not start with one.
fn urn_at(text: &str) -> Option<(&'static str, usize)> {
    const ENTERPRISE_2: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const ENTERPRISE_2_ATTR: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:";
    let starts = |urn: &str| {
        text.get(..urn.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(urn))
    };
    let separator = |urn: &str| {
        text.as_bytes()
            .get(urn.len())
            .is_some_and(|b| matches!(b, b'.' | b':'))
    };
    if starts(ENTERPRISE_SCHEMA) {
        return Some(if separator(ENTERPRISE_SCHEMA) {
            (ENTERPRISE_2_ATTR, ENTERPRISE_SCHEMA.len() + 1)
        } else {
            (ENTERPRISE_2, ENTERPRISE_SCHEMA.len())
        });
    }
    (starts(CORE_SCHEMA) && separator(CORE_SCHEMA)).then_some(("", CORE_SCHEMA.len() + 1))
}

/// Length of the JSON string literal at the start of `text` (all of
/// `text` when it is unterminated: the parser reports that).
fn literal_end(text: &str) -> usize {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return i + 1,
            _ => {}
        }
    }
    text.len()
}

/// Keeps error details short when they quote client input.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
