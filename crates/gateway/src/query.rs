//! Query parameters of list and search requests (RFC 7644 §3.4.2, §3.4.3, §3.9).

use roster_proto::directory::SortOrder;
use roster_scim::error::ScimError;
use roster_scim::filter::{AttrPath, parse as parse_filter, parse_attr_path};
use roster_scim::projection::parse_attribute_list;
use roster_scim::resource::GROUP_SCHEMA;
use serde_json::Value;

/// Limits that clamp paging parameters.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    /// Largest `count` honoured.
    pub max_results: i64,
    /// `count` when none is given.
    pub default_page_size: i64,
}

/// The attribute selection of a request (`attributes`, `excludedAttributes`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    /// Attributes to return; empty means the defaults.
    pub attributes: Vec<AttrPath>,
    /// Attributes to leave out.
    pub excluded_attributes: Vec<AttrPath>,
}

impl Projection {
    /// Whether nothing needs to be removed from a rendered resource.
    pub fn is_default(&self) -> bool {
        self.attributes.is_empty() && self.excluded_attributes.is_empty()
    }

    /// A selection of everything but group members, for operations whose
    /// resource is not returned (bulk): members are then never read.
    pub fn without_members() -> Self {
        Self {
            attributes: Vec::new(),
            excluded_attributes: parse_attribute_list("members").unwrap_or_default(),
        }
    }

    /// Whether group members will not be rendered, so they need not be loaded.
    pub fn excludes_members(&self) -> bool {
        let excluded = self
            .excluded_attributes
            .iter()
            .any(|p| is_members(p) && p.sub_attr.is_none());
        let not_selected = !self.attributes.is_empty() && !self.attributes.iter().any(is_members);
        excluded || not_selected
    }
}

fn is_members(path: &AttrPath) -> bool {
    path.name.eq_ignore_ascii_case("members")
        && path
            .schema
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(GROUP_SCHEMA))
}

/// A validated, clamped list or search request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// The filter expression as sent, already checked to parse.
    pub filter: Option<String>,
    /// Attribute path to sort by.
    pub sort_by: Option<String>,
    /// Direction of the sort.
    pub sort_order: SortOrder,
    /// 1-based index of the first result, at least 1.
    pub start_index: i64,
    /// Results wanted, between 0 and the maximum.
    pub count: i64,
    /// Attribute selection.
    pub projection: Projection,
}

/// Raw, unvalidated parameters, from a query string or a SearchRequest body.
#[derive(Debug, Clone, Default)]
pub struct RawListParams {
    filter: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

impl RawListParams {
    /// Collects the SCIM parameters of a query string; names compare
    /// case-insensitively and unknown parameters are ignored.
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut raw = Self::default();
        for (name, value) in pairs {
            if let Some(slot) = raw.slot(name) {
                *slot = Some(value.clone());
            }
        }
        raw
    }

    /// Where the parameter `name` goes (any case); `None` for a parameter
    /// this service ignores.
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name.to_ascii_lowercase().as_str() {
            "filter" => &mut self.filter,
            "sortby" => &mut self.sort_by,
            "sortorder" => &mut self.sort_order,
            "startindex" => &mut self.start_index,
            "count" => &mut self.count,
            "attributes" => &mut self.attributes,
            "excludedattributes" => &mut self.excluded_attributes,
            _ => return None,
        })
    }

    /// Collects the parameters of a SearchRequest body (RFC 7644 §3.4.3).
    pub fn from_search_request(body: &Value) -> Result<Self, ScimError> {
        let obj = body.as_object().ok_or_else(|| {
            ScimError::invalid_syntax("a SearchRequest must be a JSON object".to_owned())
        })?;
        let mut raw = Self::default();
        for (name, value) in obj {
            if let Some(slot) = raw.slot(name) {
                *slot = search_value_text(name, value)?;
            }
        }
        Ok(raw)
    }

    /// Validates and clamps the parameters.
    pub fn validate(self, limits: PageLimits) -> Result<ListQuery, ScimError> {
        let filter = non_empty(self.filter);
        if let Some(f) = &filter {
            parse_filter(f)?;
        }
        let sort_by = non_empty(self.sort_by);
        if let Some(s) = &sort_by {
            parse_attr_path(s)?;
        }
        Ok(ListQuery {
            filter,
            sort_by,
            sort_order: parse_sort_order(self.sort_order.as_deref())?,
            start_index: clamp_start_index(self.start_index.as_deref())?,
            count: clamp_count(self.count.as_deref(), limits)?,
            projection: parse_projection(
                self.attributes.as_deref(),
                self.excluded_attributes.as_deref(),
            )?,
        })
    }
}

/// Reads `attributes` / `excludedAttributes` from a query string.
pub fn projection_from_pairs(pairs: &[(String, String)]) -> Result<Projection, ScimError> {
    let raw = RawListParams::from_pairs(pairs);
    parse_projection(
        raw.attributes.as_deref(),
        raw.excluded_attributes.as_deref(),
    )
}

fn parse_projection(
    attributes: Option<&str>,
    excluded: Option<&str>,
) -> Result<Projection, ScimError> {
    let list = |s: Option<&str>| match s.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => parse_attribute_list(s),
        None => Ok(Vec::new()),
    };
    Ok(Projection {
        attributes: list(attributes)?,
        excluded_attributes: list(excluded)?,
    })
}

/// Text of one SearchRequest member; attribute lists become comma-joined.
fn search_value_text(name: &str, value: &Value) -> Result<Option<String>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Array(items) => {
            let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            names.map(|n| Some(n.join(","))).ok_or_else(|| {
                ScimError::invalid_value(format!("\"{name}\" must be a list of strings"))
            })
        }
        _ => Err(ScimError::invalid_value(format!(
            "\"{name}\" has the wrong type"
        ))),
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn parse_sort_order(s: Option<&str>) -> Result<SortOrder, ScimError> {
    match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => Ok(SortOrder::Unspecified),
        Some("ascending") => Ok(SortOrder::Ascending),
        Some("descending") => Ok(SortOrder::Descending),
        Some(other) => Err(ScimError::invalid_value(format!(
            "sortOrder must be \"ascending\" or \"descending\", not \"{other}\""
        ))),
    }
}

/// Parses an integer parameter; out-of-range integers saturate so that
/// absurd values clamp instead of failing.
fn parse_integer(name: &str, s: &str) -> Result<i64, ScimError> {
    let s = s.trim();
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScimError::invalid_value(format!(
            "{name} must be an integer, not \"{s}\""
        )));
    }
    Ok(s.parse::<i64>().unwrap_or(if s.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    }))
}

/// `startIndex` below 1 is read as 1 (RFC 7644 §3.4.2.4).
fn clamp_start_index(s: Option<&str>) -> Result<i64, ScimError> {
    Ok(s.map(|s| parse_integer("startIndex", s))
        .transpose()?
        .unwrap_or(1)
        .max(1))
}

/// Negative `count` is read as 0 (RFC 7644 §3.4.2.4); above the maximum it
/// is capped, as the RFC lets a provider return fewer results than asked.
fn clamp_count(s: Option<&str>, limits: PageLimits) -> Result<i64, ScimError> {
    let requested = s.map(|s| parse_integer("count", s)).transpose()?;
    let count = requested.unwrap_or(limits.default_page_size);
    Ok(count.clamp(0, limits.max_results.max(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PageLimits = PageLimits {
        max_results: 1000,
        default_page_size: 100,
    };

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn query(list: &[(&str, &str)]) -> Result<ListQuery, ScimError> {
        RawListParams::from_pairs(&pairs(list)).validate(LIMITS)
    }

    #[test]
    fn defaults() {
        let q = query(&[]).unwrap();
        assert_eq!(q.start_index, 1);
        assert_eq!(q.count, 100);
        assert_eq!(q.filter, None);
        assert_eq!(q.sort_order, SortOrder::Unspecified);
        assert!(q.projection.is_default());
    }

    #[test]
    fn clamps_paging() {
        let q = query(&[("startIndex", "0"), ("count", "5000")]).unwrap();
        assert_eq!((q.start_index, q.count), (1, 1000));
        let q = query(&[("startindex", "-7"), ("COUNT", "-3")]).unwrap();
        assert_eq!((q.start_index, q.count), (1, 0));
        let q = query(&[("startIndex", "99999999999999999999999"), ("count", "2")]).unwrap();
        assert_eq!((q.start_index, q.count), (i64::MAX, 2));
    }

    #[test]
    fn rejects_non_numeric_paging() {
        for bad in [
            ("count", "ten"),
            ("startIndex", "1.5"),
            ("count", ""),
            ("count", "-"),
        ] {
            let err = query(&[bad]).unwrap_err();
            assert_eq!(err.status, 400);
            assert_eq!(err.to_json()["scimType"], "invalidValue", "{bad:?}");
        }
    }

    #[test]
    fn validates_filter_and_sort() {
        let q = query(&[
            ("filter", "userName eq \"x\""),
            ("sortBy", "userName"),
            ("sortOrder", "Descending"),
        ])
        .unwrap();
        assert_eq!(q.filter.as_deref(), Some("userName eq \"x\""));
        assert_eq!(q.sort_order, SortOrder::Descending);
        let err = query(&[("filter", "userName eq")]).unwrap_err();
        assert_eq!(err.to_json()["scimType"], "invalidFilter");
        assert_eq!(query(&[("sortOrder", "up")]).unwrap_err().status, 400);
    }

    #[test]
    fn members_exclusion() {
        let p = |list: &[(&str, &str)]| query(list).unwrap().projection.excludes_members();
        assert!(!p(&[]));
        assert!(p(&[("excludedAttributes", "members")]));
        assert!(p(&[("attributes", "displayName")]));
        assert!(!p(&[("attributes", "displayName,members")]));
        assert!(!p(&[("attributes", "members.value")]));
        assert!(!p(&[("excludedAttributes", "members.display")]));
    }

    #[test]
    fn search_request_bodies() {
        let body = serde_json::json!({
            "schemas": [roster_scim::resource::SEARCH_REQUEST_SCHEMA],
            "attributes": ["userName", "emails"],
            "filter": "userName sw \"a\"",
            "startIndex": 3,
            "count": 10
        });
        let q = RawListParams::from_search_request(&body)
            .unwrap()
            .validate(LIMITS)
            .unwrap();
        assert_eq!((q.start_index, q.count), (3, 10));
        assert_eq!(q.projection.attributes.len(), 2);
        let bad = serde_json::json!({"count": true});
        assert!(RawListParams::from_search_request(&bad).is_err());
        assert!(RawListParams::from_search_request(&serde_json::json!([1])).is_err());
    }
}
