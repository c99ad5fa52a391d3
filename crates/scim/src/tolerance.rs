//! The IdP tolerance layer: every deviation from RFC 7643/7644 that real
//! identity providers are documented or reported to send, accepted here
//! explicitly so that the core (filter, PATCH, resource) stays RFC-exact.
//!
//! Each function names the behaviour it exists for and has a unit test.

use serde_json::{Map, Value};

use crate::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::json::{get_ci, key_ci};
use crate::schema::{AttrType, AttributeDef, ResourceKind, top_level_def};

/// Operation names in any case: Entra ID sends `Replace`/`Add`/`Remove`
/// (Microsoft's SCIM guidance asks servers not to match `op` case-sensitively;
/// see also thomaspoignant/scim-patch#6);
/// RFC 7644 spells them in lower case.
pub(crate) fn op_name_matches(sent: &str, canonical: &str) -> bool {
    sent.trim().eq_ignore_ascii_case(canonical)
}

/// The `Operations` member under any casing (RFC 7643 §2.1 makes attribute
/// names case-insensitive, and hand-written clients send `operations`). It
/// must be an array: no IdP is documented to send a single object.
pub(crate) fn operations(body: &Map<String, Value>) -> Option<Vec<Value>> {
    match get_ci(body, "Operations")? {
        Value::Array(ops) => Some(ops.clone()),
        _ => None,
    }
}

/// A missing `schemas` member on a PatchOp body is accepted: hand-written
/// and SDK-based clients omit it (not attributed to a specific IdP; the
/// operations alone are unambiguous).
pub(crate) fn patch_schemas_missing_ok(body: &Map<String, Value>) -> bool {
    key_ci(body, "schemas").is_none()
}

/// An empty `"path": ""` means no path (clients serialising an unset
/// path as an empty string).
pub(crate) fn empty_path_is_absent(path: &str) -> bool {
    path.trim().is_empty()
}

/// Booleans as strings (`"True"`, `"False"`): Entra ID sends
/// `{"op":"Replace","path":"active","value":"False"}` (rancher/rancher#54025).
pub(crate) fn bool_from_string(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Repairs the documented IdP value shapes in every attribute the schema
/// defines, top-level and in extension objects: string booleans (Entra ID)
/// and the enterprise `manager` as a bare string (Entra ID). Any other shape
/// that contradicts the schema is left for `shape::check_document` to
/// reject. See the functions it calls for the IdP behaviour behind each.
pub(crate) fn normalize_shapes(doc: &mut Value, kind: ResourceKind) {
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    for (key, value) in obj.iter_mut() {
        if let Some(def) = top_level_def(kind, None, key) {
            repair_value(value, def);
        } else if let Value::Object(ext) = value
            && key.contains(':')
        {
            for (name, v) in ext.iter_mut() {
                if let Some(def) = top_level_def(kind, Some(key), name) {
                    repair_value(v, def);
                }
            }
        }
    }
}

fn repair_value(value: &mut Value, def: &AttributeDef) {
    wrap_scalar_in_complex(value, def);
    coerce_value(value, def);
}

/// A bare string where the enterprise `manager` belongs becomes
/// `{"value": …}`: Entra ID's manager mapping sends it that way
/// (apache/directory-scimple#1242, docs/idp/entra.md). Only `manager`: other
/// complex attributes sent as scalars are type errors.
pub(crate) fn wrap_scalar_in_complex(value: &mut Value, def: &AttributeDef) {
    if def.ty != AttrType::Complex || !def.name.eq_ignore_ascii_case("manager") {
        return;
    }
    if matches!(value, Value::String(_)) {
        let mut o = Map::new();
        o.insert("value".into(), value.take());
        *value = Value::Object(o);
    }
}

fn coerce_value(value: &mut Value, def: &AttributeDef) {
    match (def.ty, value) {
        (AttrType::Boolean, v @ Value::String(_)) => {
            if let Some(b) = bool_from_string(v) {
                *v = Value::Bool(b);
            }
        }
        (AttrType::Complex, Value::Array(items)) => {
            items
                .iter_mut()
                .for_each(|item| coerce_sub_attributes(item, def));
        }
        (AttrType::Complex, v @ Value::Object(_)) => coerce_sub_attributes(v, def),
        _ => {}
    }
}

fn coerce_sub_attributes(item: &mut Value, def: &AttributeDef) {
    if let Some(obj) = item.as_object_mut() {
        for (name, v) in obj.iter_mut() {
            if let Some(sub) = def.sub(name)
                && sub.ty == AttrType::Boolean
                && let Some(b) = bool_from_string(v)
            {
                *v = Value::Bool(b);
            }
        }
    }
}

/// A single value where an array is expected (`"value": {"value": "id"}`
/// for `add members`, `"emails": {...}`): a common client mistake, not
/// attributed to a specific IdP.
pub(crate) fn as_array(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// A path-less operation whose value is an array of objects
/// (`"value": [{"active": false}]`), a shape some custom connectors
/// produce (not attributed to a specific IdP): each object is applied in order.
pub(crate) fn pathless_values(value: &Value) -> Option<Vec<&Map<String, Value>>> {
    match value {
        Value::Object(obj) => Some(vec![obj]),
        Value::Array(items) => items.iter().map(|v| v.as_object()).collect(),
        _ => None,
    }
}

/// Okta sends `{"op":"replace","value":{"id":"<id>","active":false}}`:
/// an `id` equal to the resource's own id is not a modification.
pub(crate) fn is_unchanged_read_only(current: Option<&Value>, sent: &Value) -> bool {
    current.is_some_and(|c| c == sent)
}

/// `remove` of a multi-valued attribute with a `value` array removes just
/// those elements: Entra ID and Okta remove group members with
/// `{"op":"remove","path":"members","value":[{"value":"id"}]}`.
/// Elements are matched by their `value` sub-attribute, else by equality.
pub(crate) fn remove_listed_values(items: &mut Vec<Value>, listed: &Value) {
    // Hash the identities so that removing many values stays linear.
    let listed: std::collections::HashSet<String> =
        as_array(listed).iter().map(element_identity).collect();
    items.retain(|item| !listed.contains(&element_identity(item)));
}

/// What identifies an element of a multi-valued attribute: its `value`
/// sub-attribute when it has one, else the whole element.
pub(crate) fn element_identity(item: &Value) -> String {
    match item.as_object().and_then(|o| get_ci(o, "value")) {
        Some(v) => format!("v{v}"),
        None => format!("e{item}"),
    }
}

/// An `add`/`replace` whose value filter matches no element creates one
/// from the filter's `eq` clauses. Entra ID sends
/// `{"op":"Add","path":"emails[type eq \"work\"].value","value":"a@b"}` (and
/// `Replace`) for users without a work email and relies on creation; RFC
/// 7644 §3.5.2.3 would answer `noTarget` for `replace` (see
/// sourcegraph/sourcegraph-public-snapshot#49200, Captain-P-Goldfish/SCIM-SDK#416).
pub(crate) fn element_from_filter(filter: &Filter) -> Option<Map<String, Value>> {
    let mut element = Map::new();
    collect_equalities(filter, &mut element).then_some(element)
}

fn collect_equalities(filter: &Filter, out: &mut Map<String, Value>) -> bool {
    match filter {
        Filter::And(l, r) => collect_equalities(l, out) && collect_equalities(r, out),
        Filter::Compare {
            path:
                AttrPath {
                    schema: None,
                    name,
                    sub_attr: None,
                },
            op: CompareOp::Eq,
            value,
        } => {
            let v = match value {
                CompValue::String(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => return false,
            };
            out.insert(name.clone(), v);
            true
        }
        _ => false,
    }
}

/// A member given as a bare string id (`"value": ["id1", "id2"]`) or only
/// by `$ref` (`.../Users/<id>`): defensive, for custom connectors (not
/// attributed to a specific IdP).
pub(crate) fn member_id_from_loose(entry: &Value) -> Option<String> {
    match entry {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Object(o) => {
            let reference = get_ci(o, "$ref")?.as_str()?;
            let id = reference.trim_end_matches('/').rsplit('/').next()?;
            (!id.is_empty()).then(|| id.to_owned())
        }
        _ => None,
    }
}

/// A number where a string is expected, read as its decimal text. Not a
/// tolerance of new input any more (`shape` rejects numbers where the schema
/// defines strings): it reads resources stored before that check, and
/// member ids (which must then name an existing resource anyway).
pub(crate) fn string_from_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A blank string means "no value" for the normalized fields: OneLogin's
/// SCIM JSON Template sends `""` for every parameter the user has no value
/// for (`"title": ""`, `"manager": {"value": ""}`). The raw JSON keeps them.
pub(crate) fn blank_is_absent(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

/// A member `value` sent as a JSON number is read as its decimal string
/// (defensive, same reasoning as [`string_from_scalar`]).
pub(crate) fn member_value_string(v: &Value) -> Option<String> {
    string_from_scalar(v).filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn op_names_in_any_case() {
        assert!(op_name_matches("Replace", "replace"));
        assert!(op_name_matches("ADD", "add"));
        assert!(!op_name_matches("adds", "add"));
    }

    #[test]
    fn operations_key_in_any_case_and_single_object() {
        let body = json!({"operations": [{"op": "add"}]});
        assert_eq!(operations(body.as_object().unwrap()).unwrap().len(), 1);
        let body = json!({"Operations": {"op": "add"}});
        assert!(operations(body.as_object().unwrap()).is_none());
        let body = json!({"Operations": 3});
        assert!(operations(body.as_object().unwrap()).is_none());
    }

    #[test]
    fn missing_schemas_is_tolerated() {
        assert!(patch_schemas_missing_ok(
            json!({"Operations": []}).as_object().unwrap()
        ));
        assert!(!patch_schemas_missing_ok(
            json!({"schemas": []}).as_object().unwrap()
        ));
    }

    #[test]
    fn empty_path_means_no_path() {
        assert!(empty_path_is_absent("  "));
        assert!(!empty_path_is_absent("active"));
    }

    #[test]
    fn string_booleans() {
        assert_eq!(bool_from_string(&json!("False")), Some(false));
        assert_eq!(bool_from_string(&json!("TRUE")), Some(true));
        assert_eq!(bool_from_string(&json!("yes")), None);
        let mut doc = json!({"active": "False", "emails": [{"value": "a", "primary": "True"}],
                             "title": "True"});
        normalize_shapes(&mut doc, ResourceKind::User);
        assert_eq!(
            doc,
            json!({"active": false, "emails": [{"value": "a", "primary": true}], "title": "True"})
        );
    }

    #[test]
    fn shapes_are_repaired_from_the_schema() {
        let ext = crate::schema::ENTERPRISE_USER_SCHEMA;
        let mut doc = json!({"emails": {"value": "a@b", "primary": "true"}, "phoneNumbers": ["+1"],
            "name": "not complex", ext: {"manager": "m1"}, "urn:other:1.0:User": {"manager": "x"}});
        normalize_shapes(&mut doc, ResourceKind::User);
        assert_eq!(
            doc,
            json!({"emails": {"value": "a@b", "primary": true},
            "phoneNumbers": ["+1"], "name": "not complex",
            ext: {"manager": {"value": "m1"}}, "urn:other:1.0:User": {"manager": "x"}})
        );
        let mut group = json!({"members": {"value": "u1"}});
        normalize_shapes(&mut group, ResourceKind::Group);
        assert_eq!(group, json!({"members": {"value": "u1"}}));
    }

    #[test]
    fn single_values_become_arrays() {
        assert_eq!(
            as_array(&json!({"value": "1"})),
            vec![json!({"value": "1"})]
        );
        assert_eq!(as_array(&json!([1, 2])).len(), 2);
        assert!(as_array(&Value::Null).is_empty());
    }

    #[test]
    fn pathless_value_arrays() {
        assert_eq!(
            pathless_values(&json!([{"active": false}, {"title": "x"}]))
                .unwrap()
                .len(),
            2
        );
        assert!(pathless_values(&json!([1])).is_none());
        assert!(pathless_values(&json!("x")).is_none());
    }

    #[test]
    fn okta_same_id_is_unchanged() {
        assert!(is_unchanged_read_only(Some(&json!("abc")), &json!("abc")));
        assert!(!is_unchanged_read_only(Some(&json!("abc")), &json!("abd")));
        assert!(!is_unchanged_read_only(None, &json!("abc")));
    }

    #[test]
    fn remove_with_value_array() {
        let mut items = vec![
            json!({"value": "1"}),
            json!({"value": "2", "display": "x"}),
            json!("plain"),
        ];
        remove_listed_values(&mut items, &json!([{"value": "2"}, "plain"]));
        assert_eq!(items, vec![json!({"value": "1"})]);
    }

    #[test]
    fn elements_are_created_from_eq_filters() {
        let f = crate::filter::parse(r#"type eq "work" and primary eq true"#).unwrap();
        assert_eq!(
            Value::Object(element_from_filter(&f).unwrap()),
            json!({"type": "work", "primary": true})
        );
        let f = crate::filter::parse(r#"type eq "work" or type eq "home""#).unwrap();
        assert!(element_from_filter(&f).is_none());
    }

    #[test]
    fn loose_member_ids() {
        assert_eq!(member_id_from_loose(&json!("abc")), Some("abc".into()));
        assert_eq!(
            member_id_from_loose(&json!({"$ref": "https://x/scim/v2/Users/abc"})),
            Some("abc".into())
        );
        assert_eq!(member_id_from_loose(&json!({"display": "Bob"})), None);
    }

    #[test]
    fn blank_strings_are_absent() {
        assert_eq!(blank_is_absent("  ".into()), None);
        assert_eq!(blank_is_absent("x".into()), Some("x".into()));
    }

    #[test]
    fn numbers_where_strings_are_expected() {
        assert_eq!(string_from_scalar(&json!(701984)), Some("701984".into()));
        assert_eq!(member_value_string(&json!(42)), Some("42".into()));
        assert_eq!(member_value_string(&json!(" ")), None);
        assert_eq!(string_from_scalar(&json!(true)), None);
    }
}
