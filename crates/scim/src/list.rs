//! `ListResponse` (RFC 7644 §3.4.2) and sorting (§3.4.2.3).

use std::cmp::Ordering;

use serde_json::{Value, json};

use crate::error::ScimError;
use crate::filter::AttrPath;
use crate::resource::{LIST_RESPONSE_SCHEMA, lookup};
use crate::schema::{AttrType, ResourceKind, attribute_def};

/// `sortOrder` (RFC 7644 §3.4.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// The default.
    #[default]
    Ascending,
    /// Reverse order.
    Descending,
}

impl SortOrder {
    /// Parses `ascending` / `descending` (any case); absent means
    /// ascending. Anything else is `invalidValue`.
    ///
    /// ```
    /// use roster_scim::list::SortOrder;
    /// assert_eq!(SortOrder::parse(None)?, SortOrder::Ascending);
    /// assert_eq!(SortOrder::parse(Some("Descending"))?, SortOrder::Descending);
    /// assert!(SortOrder::parse(Some("up")).is_err());
    /// # Ok::<(), roster_scim::error::ScimError>(())
    /// ```
    pub fn parse(s: Option<&str>) -> Result<SortOrder, ScimError> {
        match s.map(str::trim) {
            None | Some("") => Ok(SortOrder::Ascending),
            Some(s) if s.eq_ignore_ascii_case("ascending") => Ok(SortOrder::Ascending),
            Some(s) if s.eq_ignore_ascii_case("descending") => Ok(SortOrder::Descending),
            Some(_) => Err(ScimError::invalid_value(
                "sortOrder must be 'ascending' or 'descending'",
            )),
        }
    }
}

/// Compares two resources by `path` the way RFC 7644 §3.4.2.3 sorts: a
/// multi-valued attribute sorts by its primary value, else its first;
/// strings compare case-insensitively unless `caseExact`; `dateTime`
/// chronologically; missing values sort last when ascending (and so first
/// when descending, like PostgreSQL's default `NULLS LAST`/`NULLS FIRST`).
///
/// ```
/// use roster_scim::list::{compare_for_sort, SortOrder};
/// use roster_scim::{filter::AttrPath, ResourceKind};
/// use serde_json::json;
/// let mut users = vec![json!({"userName": "b"}), json!({}), json!({"userName": "A"})];
/// let path = AttrPath::new("userName");
/// users.sort_by(|x, y| compare_for_sort(x, y, ResourceKind::User, &path, SortOrder::Ascending));
/// assert_eq!(users, vec![json!({"userName": "A"}), json!({"userName": "b"}), json!({})]);
/// ```
pub fn compare_for_sort(
    a: &Value,
    b: &Value,
    kind: ResourceKind,
    path: &AttrPath,
    order: SortOrder,
) -> Ordering {
    let def = attribute_def(kind, path);
    let ord = match (sort_key(a, path), sort_key(b, path)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => compare_values(
            x,
            y,
            def.is_some_and(|d| d.case_exact),
            def.is_some_and(|d| d.ty == AttrType::DateTime),
        ),
    };
    match order {
        SortOrder::Ascending => ord,
        SortOrder::Descending => ord.reverse(),
    }
}

fn sort_key<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    lookup(resource, path)
        .filter(|v| !v.is_null())
        .and_then(sort_scalar)
}

/// A complex value sorts by its `value` sub-attribute.
fn sort_scalar(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(o) => crate::json::get_ci(o, "value").filter(|v| !v.is_object()),
        Value::Array(items) => items.first().and_then(sort_scalar),
        other => Some(other),
    }
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Bool(_) => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        _ => 3,
    }
}

fn compare_values(a: &Value, b: &Value, case_exact: bool, date_time: bool) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            if date_time
                && let (Ok(dx), Ok(dy)) = (
                    chrono::DateTime::parse_from_rfc3339(x),
                    chrono::DateTime::parse_from_rfc3339(y),
                )
            {
                return dx.cmp(&dy);
            }
            if case_exact {
                x.cmp(y)
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => x
                .as_f64()
                .zip(y.as_f64())
                .and_then(|(f, g)| f.partial_cmp(&g))
                .unwrap_or(Ordering::Equal),
        },
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// Builds a ListResponse; `itemsPerPage` is the number of resources given.
///
/// ```
/// use roster_scim::list::list_response;
/// use serde_json::json;
/// let page = list_response(vec![json!({"id": "1"})], 10, 1);
/// assert_eq!(page["totalResults"], 10);
/// assert_eq!(page["itemsPerPage"], 1);
/// assert_eq!(page["Resources"][0]["id"], "1");
/// ```
pub fn list_response(resources: Vec<Value>, total_results: i64, start_index: i64) -> Value {
    let mut page = json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total_results,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
    });
    // Moved in, not through `json!`, which would serialize a deep copy.
    page["Resources"] = Value::Array(resources);
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut rs: Vec<Value>, path: &str, order: SortOrder) -> Vec<Value> {
        let p = crate::filter::parse_attr_path(path).unwrap();
        rs.sort_by(|a, b| compare_for_sort(a, b, ResourceKind::User, &p, order));
        rs
    }

    #[test]
    fn multi_valued_sorts_by_primary_then_first() {
        let a = json!({"emails": [{"value": "z@x"}, {"value": "a@x", "primary": true}]});
        let b = json!({"emails": [{"value": "m@x"}]});
        assert_eq!(
            sorted(
                vec![b.clone(), a.clone()],
                "emails.value",
                SortOrder::Ascending
            ),
            vec![a, b]
        );
    }

    #[test]
    fn case_exactness_dates_and_nulls() {
        let rs = vec![
            json!({"externalId": "b"}),
            json!({"externalId": "B"}),
            json!({"externalId": null}),
        ];
        assert_eq!(
            sorted(rs.clone(), "externalId", SortOrder::Ascending),
            vec![
                json!({"externalId": "B"}),
                json!({"externalId": "b"}),
                json!({"externalId": null})
            ]
        );
        assert_eq!(
            sorted(rs, "externalId", SortOrder::Descending)[0],
            json!({"externalId": null})
        );
        let early = json!({"meta": {"lastModified": "2020-01-01T10:00:00+05:00"}});
        let late = json!({"meta": {"lastModified": "2020-01-01T06:00:00Z"}});
        assert_eq!(
            sorted(
                vec![late.clone(), early.clone()],
                "meta.lastModified",
                SortOrder::Ascending
            ),
            vec![early, late]
        );
    }

    #[test]
    fn empty_list_has_all_members() {
        let page = list_response(Vec::new(), 0, 1);
        assert_eq!(page["schemas"][0], LIST_RESPONSE_SCHEMA);
        assert_eq!(page["itemsPerPage"], 0);
        assert_eq!(page["startIndex"], 1);
        assert_eq!(page["Resources"], json!([]));
    }
}
