//! Users and Groups between the dialects: a 1.1 body becomes the 2.0 body
//! the directory service stores, and a rendered 2.0 resource goes back out
//! as 1.1.

use serde_json::{Map, Value};

use crate::json::{get_ci, key_ci, remove_ci};
use crate::schema::{ENTERPRISE_USER_SCHEMA, ResourceKind};

use super::{CORE_SCHEMA, ENTERPRISE_SCHEMA, V1Error};

/// A 1.1 User or Group body (POST, PUT) as the equivalent 2.0 body.
///
/// ```
/// use roster_scim::{v1::resource::resource_to_v2, ResourceKind};
/// use serde_json::json;
/// let v2 = resource_to_v2(ResourceKind::User, json!({
///     "schemas": ["urn:scim:schemas:core:1.0", "urn:scim:schemas:extension:enterprise:1.0"],
///     "userName": "bjensen",
///     "urn:scim:schemas:extension:enterprise:1.0": {"manager": {"managerId": "m1"}}
/// }))?;
/// assert_eq!(v2["schemas"][0], "urn:ietf:params:scim:schemas:core:2.0:User");
/// assert_eq!(v2["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"], "m1");
/// # Ok::<(), roster_scim::v1::V1Error>(())
/// ```
pub fn resource_to_v2(kind: ResourceKind, body: Value) -> Result<Value, V1Error> {
    let Value::Object(mut obj) = body else {
        return Err(V1Error::NotAnObject);
    };
    // Server-owned; 1.1 clients often echo what they read.
    remove_ci(&mut obj, "meta");
    reject_operations(&obj)?;
    if let Some(extension) = remove_ci(&mut obj, ENTERPRISE_SCHEMA) {
        if key_ci(&obj, ENTERPRISE_USER_SCHEMA).is_some() {
            return Err(V1Error::DuplicateExtension);
        }
        obj.insert(
            ENTERPRISE_USER_SCHEMA.to_owned(),
            enterprise_to_v2(extension),
        );
    }
    map_schemas(&mut obj, |urn| schema_to_v2(kind, urn));
    Ok(Value::Object(obj))
}

/// A rendered 2.0 User or Group as SCIM 1.1.
///
/// ```
/// use roster_scim::v1::resource::resource_to_v1;
/// use serde_json::json;
/// let v1 = resource_to_v1(json!({
///     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1",
///     "displayName": "Ops",
///     "members": [{"value": "u1", "$ref": "https://h/Users/u1", "type": "User"}],
///     "meta": {"resourceType": "Group", "version": "W/\"2\""}
/// }));
/// assert_eq!(v1["schemas"], json!(["urn:scim:schemas:core:1.0"]));
/// assert_eq!(v1["members"], json!([{"value": "u1", "type": "User"}]));
/// assert_eq!(v1["meta"], json!({"version": "W/\"2\""}));
/// ```
pub fn resource_to_v1(body: Value) -> Value {
    let Value::Object(mut obj) = body else {
        return body;
    };
    map_schemas(&mut obj, schema_to_v1);
    if let Some(extension) = remove_ci(&mut obj, ENTERPRISE_USER_SCHEMA) {
        obj.insert(ENTERPRISE_SCHEMA.to_owned(), enterprise_to_v1(extension));
    }
    if let Some(Value::Object(meta)) = key_ci(&obj, "meta").cloned().and_then(|k| obj.get_mut(&k)) {
        remove_ci(meta, "resourceType");
    }
    for name in ["members", "groups"] {
        if let Some(Value::Array(items)) = key_ci(&obj, name).cloned().and_then(|k| obj.get_mut(&k))
        {
            items.iter_mut().for_each(drop_ref);
        }
    }
    Value::Object(obj)
}

/// A rendered 2.0 group member as a 1.1 member: `{value, display, type}`.
pub fn member_to_v1(mut member: Value) -> Value {
    drop_ref(&mut member);
    member
}

/// 1.1 has no `$ref`: references are ids.
fn drop_ref(element: &mut Value) {
    if let Value::Object(o) = element {
        remove_ci(o, "$ref");
    }
}

/// `"operation"` belongs to a PATCH; in a POST or PUT it would be stored.
fn reject_operations(obj: &Map<String, Value>) -> Result<(), V1Error> {
    for (name, value) in obj {
        let Value::Array(items) = value else { continue };
        let has_operation = items
            .iter()
            .filter_map(Value::as_object)
            .any(|o| get_ci(o, "operation").is_some());
        if has_operation {
            return Err(V1Error::OperationOutsidePatch(super::names::shorten(name)));
        }
    }
    Ok(())
}

/// Rewrites each URN of `schemas` (when it is a list), without repeats.
fn map_schemas(obj: &mut Map<String, Value>, map: impl Fn(&str) -> Option<&'static str>) {
    let Some(Value::Array(list)) = key_ci(obj, "schemas")
        .cloned()
        .and_then(|k| obj.get_mut(&k))
    else {
        return;
    };
    let mut out: Vec<Value> = Vec::with_capacity(list.len());
    for urn in list.drain(..) {
        let urn = match urn.as_str().and_then(&map) {
            Some(mapped) => Value::String(mapped.to_owned()),
            None => urn,
        };
        if !out.contains(&urn) {
            out.push(urn);
        }
    }
    *list = out;
}

fn schema_to_v2(kind: ResourceKind, urn: &str) -> Option<&'static str> {
    if urn.eq_ignore_ascii_case(CORE_SCHEMA) {
        Some(kind.core_schema().id)
    } else if urn.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
        Some(ENTERPRISE_USER_SCHEMA)
    } else {
        None
    }
}

fn schema_to_v1(urn: &str) -> Option<&'static str> {
    let core = [ResourceKind::User, ResourceKind::Group]
        .iter()
        .any(|k| urn.eq_ignore_ascii_case(k.core_schema().id));
    if core {
        Some(CORE_SCHEMA)
    } else if urn.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA) {
        Some(ENTERPRISE_SCHEMA)
    } else {
        None
    }
}

/// 1.1's `manager.managerId` is 2.0's `manager.value`.
fn enterprise_to_v2(mut extension: Value) -> Value {
    if let Some(obj) = extension.as_object_mut()
        && let Some(key) = key_ci(obj, "manager").cloned()
        && let Some(manager) = obj.remove(&key)
    {
        obj.insert(key, manager_to_v2(manager));
    }
    extension
}

/// A 1.1 `manager` (`{managerId, displayName}`) as 2.0's `{value, displayName}`.
pub(crate) fn manager_to_v2(mut manager: Value) -> Value {
    if let Some(obj) = manager.as_object_mut()
        && let Some(id) = remove_ci(obj, "managerId")
    {
        obj.insert("value".to_owned(), id);
    }
    manager
}

fn enterprise_to_v1(mut extension: Value) -> Value {
    if let Some(manager) = manager_mut(&mut extension) {
        remove_ci(manager, "$ref");
        if let Some(id) = remove_ci(manager, "value") {
            manager.insert("managerId".to_owned(), id);
        }
    }
    extension
}

fn manager_mut(extension: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = extension.as_object_mut()?;
    let key = key_ci(obj, "manager")?.clone();
    obj.get_mut(&key)?.as_object_mut()
}
