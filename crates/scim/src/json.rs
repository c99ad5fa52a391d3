//! Case-insensitive, URN-aware access to JSON resources (RFC 7643 §2.1:
//! attribute names and schema URNs are case-insensitive).

use serde_json::{Map, Value};

use crate::filter::AttrPath;

/// The key in `obj` equal to `name` ignoring ASCII case (exact match first).
pub(crate) fn key_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a String> {
    if let Some((k, _)) = obj.get_key_value(name) {
        return Some(k);
    }
    obj.keys().find(|k| k.eq_ignore_ascii_case(name))
}

/// `obj[name]` ignoring ASCII case.
pub(crate) fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let key = key_ci(obj, name)?;
    obj.get(key)
}

/// Removes `obj[name]` ignoring ASCII case.
pub(crate) fn remove_ci(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = key_ci(obj, name)?.clone();
    obj.remove(&key)
}

/// Whether `urn` names a core schema, whose attributes live at the top level.
pub(crate) fn is_core_schema(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(crate::schema::USER_SCHEMA)
        || urn.eq_ignore_ascii_case(crate::schema::GROUP_SCHEMA)
}

/// The object holding `path.name`: the resource itself for unqualified and
/// core-qualified paths, the extension object for extension URNs.
pub(crate) fn container<'a>(
    resource: &'a Value,
    path: &AttrPath,
) -> Option<&'a Map<String, Value>> {
    let obj = resource.as_object()?;
    match &path.schema {
        Some(urn) if !is_core_schema(urn) => get_ci(obj, urn)?.as_object(),
        _ => Some(obj),
    }
}

/// The value of the top-level attribute of `path` (ignores `sub_attr`).
pub(crate) fn top_value<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    get_ci(container(resource, path)?, &path.name)
}

/// Every leaf value `path` designates: array elements are flattened, and a
/// sub-attribute is taken from each element (RFC 7644 §3.4.2.2: a
/// multi-valued attribute matches if any of its values matches).
pub(crate) fn values_at<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(top) = top_value(resource, path) else {
        return Vec::new();
    };
    let elements: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let Some(sub) = &path.sub_attr else {
        return elements;
    };
    let mut out = Vec::new();
    for element in elements {
        match element.as_object().and_then(|o| get_ci(o, sub)) {
            Some(Value::Array(items)) => out.extend(items.iter()),
            Some(v) => out.push(v),
            None => {}
        }
    }
    out
}

/// The first member name `value` gives twice in one object when case is
/// ignored, with where: `(path, first spelling, second spelling)`.
///
/// Attribute names and schema URNs are case-insensitive (RFC 7643 §2.1), so
/// `{"userName": "a", "USERNAME": "b"}` names one attribute twice and means
/// nothing definite; stored as sent, one spelling would be read by some
/// code paths and the other by others.
pub fn case_insensitive_duplicate(value: &Value) -> Option<(String, String, String)> {
    duplicate_below(value, "")
}

/// [`case_insensitive_duplicate`] as the `400 invalidSyntax` a request
/// carrying one gets.
pub fn check_member_names(value: &Value) -> Result<(), crate::ScimError> {
    let Some((at, first, second)) = case_insensitive_duplicate(value) else {
        return Ok(());
    };
    let place = if at.is_empty() {
        String::new()
    } else {
        format!(" in \"{at}\"")
    };
    Err(crate::ScimError::invalid_syntax(format!(
        "\"{first}\" and \"{second}\"{place} name one attribute twice (attribute names are case-insensitive)"
    )))
}

fn duplicate_below(value: &Value, at: &str) -> Option<(String, String, String)> {
    match value {
        Value::Object(obj) => {
            if let Some((first, second)) = duplicate_key(obj) {
                return Some((at.to_owned(), first.to_owned(), second.to_owned()));
            }
            obj.iter().find_map(|(key, member)| {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                duplicate_below(member, &path)
            })
        }
        Value::Array(items) => items.iter().find_map(|item| duplicate_below(item, at)),
        _ => None,
    }
}

/// Two keys of `obj` equal ignoring ASCII case (a few keys are compared
/// pairwise; many are sorted, so a hostile object stays linearithmic).
fn duplicate_key(obj: &Map<String, Value>) -> Option<(&str, &str)> {
    if obj.len() <= 16 {
        let keys: Vec<&String> = obj.keys().collect();
        return keys.iter().enumerate().find_map(|(i, a)| {
            keys[i + 1..]
                .iter()
                .find(|b| a.eq_ignore_ascii_case(b))
                .map(|b| (a.as_str(), b.as_str()))
        });
    }
    let mut folded: Vec<(String, &str)> = obj
        .keys()
        .map(|k| (k.to_ascii_lowercase(), k.as_str()))
        .collect();
    folded.sort_unstable();
    folded
        .windows(2)
        .find(|w| w[0].0 == w[1].0)
        .map(|w| (w[0].1, w[1].1))
}

#[cfg(test)]
mod duplicate_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_a_name_given_twice_in_any_case_at_any_depth() {
        let top = json!({"userName": "a", "USERNAME": "b"});
        let (at, a, b) = case_insensitive_duplicate(&top).expect("duplicate");
        assert_eq!(at, "");
        assert!(a.eq_ignore_ascii_case("username") && b.eq_ignore_ascii_case("username") && a != b);
        let nested = json!({"emails": [{"value": "x"}, {"value": "y", "Value": "z"}]});
        assert_eq!(
            case_insensitive_duplicate(&nested).expect("duplicate").0,
            "emails"
        );
        let urn = json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "a"},
                         "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER": {"department": "b"}});
        assert!(case_insensitive_duplicate(&urn).is_some());
    }

    #[test]
    fn many_keys_are_checked_too() {
        let mut obj: Map<String, Value> = (0..1000).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_eq!(
            case_insensitive_duplicate(&Value::Object(obj.clone())),
            None
        );
        obj.insert("K999".into(), json!(0));
        let (_, a, b) = case_insensitive_duplicate(&Value::Object(obj)).expect("duplicate");
        assert!(a.eq_ignore_ascii_case("k999") && b.eq_ignore_ascii_case("k999"));
    }

    #[test]
    fn distinct_names_and_equal_values_are_fine() {
        let doc = json!({"userName": "a", "name": {"givenName": "a", "familyName": "a"},
                         "emails": [{"value": "a", "type": "work"}, {"value": "a", "type": "home"}]});
        assert_eq!(case_insensitive_duplicate(&doc), None);
    }
}
