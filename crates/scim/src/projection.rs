//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5), driven by the
//! `returned` rules of the schema definitions: `id`, `schemas` and `meta`
//! are always returned, `password` never.

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::{AttrPath, parse_attr_path};
use crate::json::{is_core_schema, key_ci};
use crate::schema::{ResourceKind, Returned, top_level_def};

/// Parses a comma-separated attribute list (`userName,name.givenName`).
/// Blank entries are skipped; errors are `invalidPath`.
///
/// ```
/// use roster_scim::projection::parse_attribute_list;
/// let list = parse_attribute_list("userName, name.familyName")?;
/// assert_eq!(list.len(), 2);
/// assert!(parse_attribute_list("userName,emails[").is_err());
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn parse_attribute_list(s: &str) -> Result<Vec<AttrPath>, ScimError> {
    s.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(parse_attr_path)
        .collect()
}

/// Applies `attributes` (when non-empty) or else `excludedAttributes` to a
/// resource in place. Attributes whose `returned` is `always` are kept and
/// `never` ones are always removed. Names and URNs match case-insensitively;
/// a whole extension can be named by its URN.
///
/// ```
/// use roster_scim::projection::{parse_attribute_list, project};
/// use roster_scim::ResourceKind;
/// use serde_json::json;
/// let mut user = json!({"id": "1", "schemas": [], "userName": "b", "title": "t",
///                       "name": {"givenName": "B", "familyName": "J"}});
/// project(&mut user, ResourceKind::User, &parse_attribute_list("name.familyName")?, &[]);
/// assert_eq!(user, json!({"id": "1", "schemas": [], "name": {"familyName": "J"}}));
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn project(
    resource: &mut Value,
    kind: ResourceKind,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    remove_never_returned(obj, kind);
    if !attributes.is_empty() {
        keep_only(obj, kind, attributes);
    } else {
        for path in excluded {
            exclude(obj, kind, path);
        }
    }
}

fn returned(kind: ResourceKind, schema: Option<&str>, name: &str) -> Option<Returned> {
    if name.eq_ignore_ascii_case("schemas") && schema.is_none() {
        return Some(Returned::Always);
    }
    if name.eq_ignore_ascii_case("meta") && schema.is_none() {
        // Returned with every resource so clients always get version/location.
        return Some(Returned::Always);
    }
    top_level_def(kind, schema, name).map(|d| d.returned)
}

fn remove_never_returned(obj: &mut Map<String, Value>, kind: ResourceKind) {
    obj.retain(|k, _| returned(kind, None, k) != Some(Returned::Never));
}

/// The extension URN a path names as a whole (`urn:…:enterprise:2.0:User`
/// parses as schema `urn:…:2.0` + name `User`).
fn whole_extension<'a>(obj: &'a Map<String, Value>, path: &AttrPath) -> Option<&'a String> {
    if path.sub_attr.is_some() {
        return None;
    }
    let schema = path.schema.as_deref()?;
    key_ci(obj, &format!("{schema}:{}", path.name))
}

/// Which requested paths fall into `container` (None = top level).
fn requested_in<'p>(
    obj: &Map<String, Value>,
    paths: &'p [AttrPath],
    container: Option<&str>,
) -> Vec<&'p AttrPath> {
    paths
        .iter()
        .filter(|p| whole_extension(obj, p).is_none())
        .filter(|p| match (container, p.schema.as_deref()) {
            (None, None) => true,
            (None, Some(s)) => is_core_schema(s),
            (Some(c), Some(s)) => c.eq_ignore_ascii_case(s),
            (Some(_), None) => false,
        })
        .collect()
}

fn keep_only(obj: &mut Map<String, Value>, kind: ResourceKind, attributes: &[AttrPath]) {
    let whole: Vec<String> = attributes
        .iter()
        .filter_map(|p| whole_extension(obj, p).cloned())
        .collect();
    let top_requests = requested_in(obj, attributes, None);
    let mut kept = Map::new();
    for (key, value) in std::mem::take(obj) {
        if returned(kind, None, &key) == Some(Returned::Always) || whole.contains(&key) {
            kept.insert(key, value);
        } else if key.contains(':') {
            let requests = requested_in(&kept, attributes, Some(&key));
            if let Some(v) = select_in_extension(value, &requests) {
                kept.insert(key, v);
            }
        } else if let Some(v) = select(value, &key, &top_requests) {
            kept.insert(key, v);
        }
    }
    *obj = kept;
}

fn select_in_extension(value: Value, requests: &[&AttrPath]) -> Option<Value> {
    let Value::Object(ext) = value else {
        return None;
    };
    let selected: Map<String, Value> = ext
        .into_iter()
        .filter_map(|(k, v)| select(v, &k, requests).map(|v| (k, v)))
        .collect();
    (!selected.is_empty()).then_some(Value::Object(selected))
}

/// The part of attribute `key` the requests ask for, if any.
fn select(value: Value, key: &str, requests: &[&AttrPath]) -> Option<Value> {
    let matching: Vec<&&AttrPath> = requests
        .iter()
        .filter(|p| p.name.eq_ignore_ascii_case(key))
        .collect();
    if matching.is_empty() {
        return None;
    }
    if matching.iter().any(|p| p.sub_attr.is_none()) {
        return Some(value);
    }
    let subs: Vec<&str> = matching
        .iter()
        .filter_map(|p| p.sub_attr.as_deref())
        .collect();
    let keep_subs = |o: Map<String, Value>| -> Map<String, Value> {
        o.into_iter()
            .filter(|(k, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
            .collect()
    };
    match value {
        Value::Object(o) => Some(Value::Object(keep_subs(o))),
        Value::Array(items) => Some(Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(o) => Value::Object(keep_subs(o)),
                    other => other,
                })
                .collect(),
        )),
        _ => None,
    }
}

fn exclude(obj: &mut Map<String, Value>, kind: ResourceKind, path: &AttrPath) {
    if let Some(key) = whole_extension(obj, path).cloned() {
        obj.remove(&key);
        return;
    }
    let schema = path.schema.as_deref().filter(|s| !is_core_schema(s));
    if path.sub_attr.is_none() && returned(kind, schema, &path.name) == Some(Returned::Always) {
        return;
    }
    let container = match schema {
        None => Some(&mut *obj),
        Some(urn) => key_ci(obj, urn)
            .cloned()
            .and_then(|k| obj.get_mut(&k))
            .and_then(Value::as_object_mut),
    };
    let Some(container) = container else { return };
    let Some(key) = key_ci(container, &path.name).cloned() else {
        return;
    };
    let Some(sub) = &path.sub_attr else {
        container.remove(&key);
        return;
    };
    let remove_sub = |o: &mut Map<String, Value>| {
        if let Some(k) = key_ci(o, sub).cloned() {
            o.remove(&k);
        }
    };
    match container.get_mut(&key) {
        Some(Value::Object(o)) => remove_sub(o),
        Some(Value::Array(items)) => items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(remove_sub),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EXT: &str = crate::schema::ENTERPRISE_USER_SCHEMA;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT],
            "id": "1", "meta": {"resourceType": "User"}, "userName": "b", "password": "secret",
            "name": {"givenName": "B", "familyName": "J"},
            "emails": [{"value": "a@x", "type": "work"}, {"value": "b@x", "type": "home"}],
            EXT: {"department": "D", "manager": {"value": "m"}},
            "urn:example:custom:2.0:User": {"badge": "42"}
        })
    }

    fn projected(attrs: &str, excluded: &str) -> Value {
        let mut u = user();
        project(
            &mut u,
            ResourceKind::User,
            &parse_attribute_list(attrs).unwrap(),
            &parse_attribute_list(excluded).unwrap(),
        );
        u
    }

    #[test]
    fn password_is_never_returned() {
        assert!(projected("", "").get("password").is_none());
        assert!(projected("password", "").get("password").is_none());
    }

    #[test]
    fn attributes_keep_only_requested_plus_always() {
        let u = projected("userName,emails.value", "");
        assert_eq!(
            u,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT],
                "id": "1", "meta": {"resourceType": "User"}, "userName": "b",
                "emails": [{"value": "a@x"}, {"value": "b@x"}]
            })
        );
    }

    #[test]
    fn extension_attributes_and_whole_extensions() {
        let u = projected(&format!("{EXT}:department"), "");
        assert_eq!(u[EXT], json!({"department": "D"}));
        assert!(u.get("userName").is_none());
        let u = projected(
            &format!("{},urn:example:custom:2.0:User", EXT.to_lowercase()),
            "",
        );
        assert_eq!(
            u[EXT],
            json!({"department": "D", "manager": {"value": "m"}})
        );
        assert_eq!(u["urn:example:custom:2.0:User"], json!({"badge": "42"}));
        let u = projected("urn:ietf:params:scim:schemas:core:2.0:User:userName", "");
        assert_eq!(u["userName"], "b");
    }

    #[test]
    fn excluded_attributes() {
        let u = projected("", "emails,name.givenName,id,meta");
        assert!(u.get("emails").is_none());
        assert_eq!(u["name"], json!({"familyName": "J"}));
        assert_eq!(u["id"], "1", "id is returned always");
        assert!(u.get("meta").is_some());
        let u = projected("", &format!("{EXT}:manager,urn:example:custom:2.0:User"));
        assert_eq!(u[EXT], json!({"department": "D"}));
        assert!(u.get("urn:example:custom:2.0:User").is_none());
    }

    #[test]
    fn attributes_win_over_excluded() {
        let u = projected("userName", "userName");
        assert_eq!(u["userName"], "b");
    }
}
