//! SCIM 1.1 PATCH (draft-scim-api-01 §3.3.2) as a 2.0 PatchOp.
//!
//! A 1.1 PATCH body is a partial resource. The server first removes every
//! attribute named in `meta.attributes`, then merges the body in:
//! singular attributes are replaced, complex ones have the sent
//! sub-attributes replaced, and multi-valued ones are added to — an element
//! whose `value` matches a stored element is merged into it, an element
//! with `"operation": "delete"` removes the stored element it matches (by
//! `value`, or by all its sub-attributes when it has none), and a delete of
//! an attribute also listed in `meta.attributes` is ignored. Replacing all
//! values of a multi-valued attribute is therefore "list it in
//! `meta.attributes`, then send the new values".
//!
//! Each of those rules is one RFC 7644 operation, so the result runs
//! through the same PATCH engine, group-member planning and change log as
//! a 2.0 PATCH:
//!
//! | 1.1 | 2.0 operation |
//! | --- | --- |
//! | `meta.attributes: ["title"]` | `remove` `title` |
//! | `"title": "x"`, `"name": {…}` | `replace` (complex values merge) |
//! | `"emails": [{"value": "a@b", …}]` | `add` `emails[value eq "a@b"]` (merges, or creates the element) |
//! | `"addresses": [{…}]` (no `value`) | `add` `addresses` |
//! | `{"value": "a@b", "operation": "delete"}` | `remove` `emails[value eq "a@b"]` |
//! | `{"type": "work", …, "operation": "delete"}` | `remove` `addresses[type eq "work" and …]` |
//! | Group `members` | `add` / `remove` on `members` with a list of ids |

use serde_json::{Map, Value, json};

use crate::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::json::{get_ci, remove_ci};
use crate::resource::PATCH_OP_SCHEMA;
use crate::schema::{ENTERPRISE_USER_SCHEMA, ResourceKind, top_level_def};

use super::names::{path_to_v2, shorten};
use super::resource::manager_to_v2;
use super::{ENTERPRISE_SCHEMA, V1Error};

/// A 1.1 PATCH body as the equivalent 2.0 PatchOp body, or `None` when it
/// changes nothing (`{"schemas": […]}`, an empty list of values): 2.0 has
/// no empty PatchOp, and 1.1 does not make a no-op an error.
///
/// ```
/// use roster_scim::{v1::patch::patch_to_v2, ResourceKind};
/// use serde_json::json;
/// let op = patch_to_v2(ResourceKind::User, json!({
///     "schemas": ["urn:scim:schemas:core:1.0"],
///     "meta": {"attributes": ["nickName"]},
///     "emails": [{"value": "old@example.com", "operation": "delete"}]
/// }))?.unwrap();
/// assert_eq!(op["Operations"], json!([
///     {"op": "remove", "path": "nickName"},
///     {"op": "remove", "path": "emails[value eq \"old@example.com\"]"}
/// ]));
/// # Ok::<(), roster_scim::v1::V1Error>(())
/// ```
pub fn patch_to_v2(kind: ResourceKind, body: Value) -> Result<Option<Value>, V1Error> {
    let Value::Object(obj) = body else {
        return Err(V1Error::NotAnObject);
    };
    let mut plan = Plan::default();
    if let Some(meta) = get_ci(&obj, "meta") {
        plan.clear(meta)?;
    }
    for (name, value) in &obj {
        plan.attribute(kind, name, value)?;
    }
    if plan.operations.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": plan.operations}),
    ))
}

/// The operations so far, and the attributes `meta.attributes` cleared.
#[derive(Default)]
struct Plan {
    operations: Vec<Value>,
    cleared: Vec<AttrPath>,
}

/// A run of member changes of one kind, sent as one operation so that a
/// PATCH of many members stays one store write.
enum MemberRun {
    Add(Vec<Value>),
    Remove(Vec<Value>),
}

impl Plan {
    /// `meta.attributes`: each named attribute is removed first.
    fn clear(&mut self, meta: &Value) -> Result<(), V1Error> {
        let Some(names) = meta.as_object().and_then(|m| get_ci(m, "attributes")) else {
            return Ok(());
        };
        let names = names.as_array().ok_or(V1Error::MetaAttributes)?;
        for name in names {
            let path = path_to_v2(name.as_str().ok_or(V1Error::MetaAttributes)?)?;
            self.operations
                .push(json!({"op": "remove", "path": path.to_string()}));
            self.cleared.push(path);
        }
        Ok(())
    }

    /// Whether `name` was cleared as a whole, so deletes of its values are
    /// ignored.
    fn is_cleared(&self, name: &str) -> bool {
        self.cleared.iter().any(|p| {
            p.schema.is_none() && p.sub_attr.is_none() && p.name.eq_ignore_ascii_case(name)
        })
    }

    fn attribute(&mut self, kind: ResourceKind, name: &str, value: &Value) -> Result<(), V1Error> {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            // Server-owned, or read-only and ignored in bodies as in 2.0.
            "schemas" | "meta" | "id" => Ok(()),
            "groups" if kind == ResourceKind::User => Ok(()),
            "members" if kind == ResourceKind::Group && !value.is_null() => {
                self.members(as_elements(value))
            }
            _ if is_enterprise(name) => self.enterprise(value),
            _ if name.contains(':') => {
                // Another extension, as a whole object: the engine merges it.
                self.push("replace", None, Some(json!({ name: value })));
                Ok(())
            }
            _ if value.is_null() || !is_multi_valued(kind, name, value) => {
                self.push("replace", Some(name.to_owned()), Some(value.clone()));
                Ok(())
            }
            _ => as_elements(value)
                .into_iter()
                .try_for_each(|element| self.element(name, element)),
        }
    }

    /// The enterprise extension's attributes, each replaced (all singular).
    fn enterprise(&mut self, value: &Value) -> Result<(), V1Error> {
        let Value::Object(fields) = value else {
            return Err(V1Error::ExtensionNotObject);
        };
        for (field, v) in fields {
            let v = match field.eq_ignore_ascii_case("manager") {
                true => manager_to_v2(v.clone()),
                false => v.clone(),
            };
            let path = format!("{ENTERPRISE_USER_SCHEMA}:{field}");
            self.push("replace", Some(path), Some(v));
        }
        Ok(())
    }

    /// One element of a multi-valued attribute other than `members`.
    fn element(&mut self, name: &str, element: &Value) -> Result<(), V1Error> {
        match delete_mark(element)? {
            Some(_) if self.is_cleared(name) => Ok(()),
            Some(fields) => {
                let filter =
                    identity(&fields).ok_or_else(|| V1Error::UnmatchableDelete(shorten(name)))?;
                self.push("remove", Some(format!("{name}[{filter}]")), None);
                Ok(())
            }
            None => {
                let by_value = element
                    .as_object()
                    .and_then(|o| get_ci(o, "value"))
                    .and_then(|v| equals("value", v));
                match by_value {
                    Some(filter) => self.push(
                        "add",
                        Some(format!("{name}[{filter}]")),
                        Some(element.clone()),
                    ),
                    None => self.push("add", Some(name.to_owned()), Some(json!([element]))),
                }
                Ok(())
            }
        }
    }

    /// Group members: consecutive adds and deletes each become one
    /// operation on `members`, in the order sent.
    fn members(&mut self, elements: Vec<&Value>) -> Result<(), V1Error> {
        let mut runs: Vec<MemberRun> = Vec::new();
        for element in elements {
            let id = member_id(element).ok_or(V1Error::MemberWithoutValue)?;
            match delete_mark(element)? {
                Some(_) if self.is_cleared("members") => {}
                Some(_) => match runs.last_mut() {
                    Some(MemberRun::Remove(ids)) => ids.push(json!({ "value": id })),
                    _ => runs.push(MemberRun::Remove(vec![json!({ "value": id })])),
                },
                None => match runs.last_mut() {
                    Some(MemberRun::Add(added)) => added.push(element.clone()),
                    _ => runs.push(MemberRun::Add(vec![element.clone()])),
                },
            }
        }
        for run in runs {
            let (op, values) = match run {
                MemberRun::Add(values) => ("add", values),
                MemberRun::Remove(values) => ("remove", values),
            };
            self.push(op, Some("members".to_owned()), Some(Value::Array(values)));
        }
        Ok(())
    }

    fn push(&mut self, op: &str, path: Option<String>, value: Option<Value>) {
        let mut operation = Map::new();
        operation.insert("op".to_owned(), op.into());
        if let Some(path) = path {
            operation.insert("path".to_owned(), path.into());
        }
        if let Some(value) = value {
            operation.insert("value".to_owned(), value);
        }
        self.operations.push(Value::Object(operation));
    }
}

fn is_enterprise(name: &str) -> bool {
    name.eq_ignore_ascii_case(ENTERPRISE_SCHEMA)
        || name.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA)
}

/// Multi-valued by the schema, or (for attributes it does not define) by
/// being sent as a list.
fn is_multi_valued(kind: ResourceKind, name: &str, value: &Value) -> bool {
    top_level_def(kind, None, name).map_or(value.is_array(), |d| d.multi_valued)
}

/// The elements of a multi-valued value; one object stands for a list of
/// one (as 2.0's `add` allows).
fn as_elements(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// The element's sub-attributes other than `operation` when it is marked
/// `"operation": "delete"`; `None` when it carries no `operation`.
fn delete_mark(element: &Value) -> Result<Option<Map<String, Value>>, V1Error> {
    let Some(obj) = element.as_object() else {
        return Ok(None);
    };
    let mut fields = obj.clone();
    match remove_ci(&mut fields, "operation") {
        None => Ok(None),
        Some(Value::String(op)) if op.eq_ignore_ascii_case("delete") => Ok(Some(fields)),
        Some(other) => Err(V1Error::Operation(shorten(&other.to_string()))),
    }
}

/// The filter that finds a stored element equal to `fields`: its `value`
/// when it has one, else every sub-attribute it has.
fn identity(fields: &Map<String, Value>) -> Option<Filter> {
    if let Some(value) = get_ci(fields, "value").filter(|v| !v.is_null()) {
        return equals("value", value);
    }
    let mut clauses = fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| equals(k, v));
    let first = clauses.next()??;
    clauses.try_fold(first, |all, clause| {
        Some(Filter::And(Box::new(all), Box::new(clause?)))
    })
}

/// `name eq <value>` for a simple value.
fn equals(name: &str, value: &Value) -> Option<Filter> {
    let value = match value {
        Value::String(s) => CompValue::String(s.clone()),
        Value::Bool(b) => CompValue::Bool(*b),
        Value::Number(n) => CompValue::Number(n.clone()),
        _ => return None,
    };
    Some(Filter::Compare {
        path: AttrPath::new(name),
        op: CompareOp::Eq,
        value,
    })
}

/// A member's id: its `value`, or a bare id string.
fn member_id(element: &Value) -> Option<&str> {
    match element {
        Value::String(id) => Some(id.as_str()),
        Value::Object(o) => get_ci(o, "value")?.as_str(),
        _ => None,
    }
    .filter(|id| !id.trim().is_empty())
}
