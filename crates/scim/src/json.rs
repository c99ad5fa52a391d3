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
