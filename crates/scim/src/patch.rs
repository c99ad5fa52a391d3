//! PATCH (RFC 7644 §3.5.2): parsing PatchOp bodies, applying operations to
//! a resource atomically, and planning Group member changes.
//!
//! The strict semantics follow the RFC; every deviation accepted from real
//! IdPs goes through the crate's `tolerance` module.

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::{AttrPath, CompValue, CompareOp, Filter, parse_attr_path};
use crate::json::{get_ci, is_core_schema, key_ci, remove_ci};
use crate::path::{PatchPath, parse_patch_path};
use crate::resource::{
    MemberValue, PATCH_OP_SCHEMA, USER_SCHEMA, list_present_extensions, parse_members,
};
use crate::schema::{Mutability, top_level_def};
use crate::tolerance;

pub use crate::schema::ResourceKind;

/// Longest accepted list of operations in one PATCH request.
pub const MAX_OPERATIONS: usize = 10_000;

/// The three PATCH operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchOpKind {
    /// `add`
    Add,
    /// `replace`
    Replace,
    /// `remove`
    Remove,
}

impl PatchOpKind {
    /// The RFC keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Replace => "replace",
            PatchOpKind::Remove => "remove",
        }
    }

    fn parse(name: &str) -> Option<PatchOpKind> {
        [PatchOpKind::Add, PatchOpKind::Replace, PatchOpKind::Remove]
            .into_iter()
            .find(|k| tolerance::op_name_matches(name, k.as_str()))
    }
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// What to do.
    pub op: PatchOpKind,
    /// Where; `None` targets the resource itself.
    pub path: Option<PatchPath>,
    /// The value (absent for most removes).
    pub value: Option<Value>,
}

/// A parsed `urn:ietf:params:scim:api:messages:2.0:PatchOp` body.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    /// The operations, in order.
    pub operations: Vec<PatchOp>,
}

impl PatchRequest {
    /// Parses a PatchOp body, applying the tolerance layer (operation names
    /// in any case, missing `schemas`, JSON-encoded values, …).
    ///
    /// ```
    /// use roster_scim::patch::{PatchOpKind, PatchRequest};
    /// use serde_json::json;
    /// let req = PatchRequest::parse(&json!({
    ///     "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    ///     "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
    /// }))?;
    /// assert_eq!(req.operations[0].op, PatchOpKind::Replace);
    /// # Ok::<(), roster_scim::error::ScimError>(())
    /// ```
    pub fn parse(body: &Value) -> Result<PatchRequest, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("the PATCH body must be a JSON object"))?;
        check_patch_schemas(obj)?;
        let ops = tolerance::operations(obj).ok_or_else(|| {
            ScimError::invalid_syntax("the PATCH body needs an 'Operations' array")
        })?;
        if ops.is_empty() {
            return Err(ScimError::invalid_syntax("'Operations' must not be empty"));
        }
        if ops.len() > MAX_OPERATIONS {
            return Err(ScimError::too_many(format!(
                "at most {MAX_OPERATIONS} operations per request"
            )));
        }
        let operations = ops
            .iter()
            .enumerate()
            .map(|(i, op)| parse_op(op).map_err(|e| prefix(e, i)))
            .collect::<Result<_, _>>()?;
        Ok(PatchRequest { operations })
    }
}

fn prefix(mut e: ScimError, index: usize) -> ScimError {
    e.detail = format!("Operations[{index}]: {}", e.detail);
    e
}

fn check_patch_schemas(obj: &Map<String, Value>) -> Result<(), ScimError> {
    if tolerance::patch_schemas_missing_ok(obj) {
        return Ok(());
    }
    let listed = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ok = listed
        .iter()
        .filter_map(Value::as_str)
        .any(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA));
    if ok {
        Ok(())
    } else {
        Err(ScimError::invalid_syntax(format!(
            "'schemas' must contain {PATCH_OP_SCHEMA}"
        )))
    }
}

fn parse_op(raw: &Value) -> Result<PatchOp, ScimError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("each operation must be an object"))?;
    let name = get_ci(obj, "op")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let op = PatchOpKind::parse(name)
        .ok_or_else(|| ScimError::invalid_syntax("'op' must be one of add, replace, remove"))?;
    let path = match get_ci(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if tolerance::empty_path_is_absent(s) => None,
        Some(Value::String(s)) => Some(parse_patch_path(s)?),
        Some(_) => return Err(ScimError::invalid_path("'path' must be a string")),
    };
    let value = get_ci(obj, "value").cloned();
    validate_op_shape(op, path.as_ref(), value.as_ref())?;
    Ok(PatchOp { op, path, value })
}

fn validate_op_shape(
    op: PatchOpKind,
    path: Option<&PatchPath>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    match (op, path, value) {
        // RFC 7644 §3.5.2.2: remove without a path fails with noTarget.
        (PatchOpKind::Remove, None, _) => Err(ScimError::no_target("'remove' requires a 'path'")),
        (PatchOpKind::Add | PatchOpKind::Replace, _, None) => Err(ScimError::invalid_value(
            format!("'{}' requires a 'value'", op.as_str()),
        )),
        (PatchOpKind::Add | PatchOpKind::Replace, None, Some(v))
            if tolerance::pathless_values(v).is_none() =>
        {
            Err(ScimError::invalid_value(
                "without a 'path', 'value' must be an object of attributes",
            ))
        }
        _ => Ok(()),
    }
}

/// Applies `ops` to a copy of `resource` and returns the result; on any
/// error nothing is applied (atomic). Mutability is enforced: readOnly
/// attributes (`id`, `meta`, User `groups`) cannot be changed (`mutability`)
/// except that re-sending the current `id` is accepted (Okta). `userName`
/// (User) / `displayName` (Group) must remain (`invalidValue`).
///
/// ```
/// use roster_scim::patch::{apply, PatchRequest, ResourceKind};
/// use serde_json::json;
/// let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
///                   "id": "1", "userName": "bjensen", "emails": []});
/// let req = PatchRequest::parse(&json!({"Operations": [
///     {"op": "add", "path": "emails[type eq \"work\"].value", "value": "b@example.com"},
///     {"op": "replace", "value": {"id": "1", "active": false, "name.familyName": "Jensen"}}
/// ]}))?;
/// let out = apply(&user, ResourceKind::User, &req.operations)?;
/// assert_eq!(out["emails"], json!([{"type": "work", "value": "b@example.com"}]));
/// assert_eq!(out["active"], false);
/// assert_eq!(out["name"]["familyName"], "Jensen");
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn apply(resource: &Value, kind: ResourceKind, ops: &[PatchOp]) -> Result<Value, ScimError> {
    let mut doc = resource.clone();
    if !doc.is_object() {
        return Err(ScimError::invalid_value(
            "the resource is not a JSON object",
        ));
    }
    for (i, op) in ops.iter().enumerate() {
        apply_op(&mut doc, kind, op).map_err(|e| prefix(e, i))?;
        if kind == ResourceKind::User && removes_active(op) {
            set_inactive(&mut doc);
        }
    }
    tolerance::normalize_shapes(&mut doc, kind);
    if kind == ResourceKind::User {
        list_present_extensions(&mut doc);
    }
    check_required(&doc, kind)?;
    crate::shape::check_patched(resource, &doc, kind)?;
    Ok(doc)
}

/// `remove` of `active`. RFC 7643 gives `active` no default, and a User
/// without it is read as active on creation (IdPs omit it there). Removing
/// it is an IdP withdrawing the user's active status, so the user becomes
/// inactive, stored as an explicit `false` so that GET and the change log
/// say the same (docs/scim.md, "PATCH").
fn removes_active(op: &PatchOp) -> bool {
    op.op == PatchOpKind::Remove
        && op.path.as_ref().is_some_and(|p| {
            p.filter.is_none()
                && p.sub_attr.is_none()
                && p.attr.sub_attr.is_none()
                && p.attr.name.eq_ignore_ascii_case("active")
                && p.attr
                    .schema
                    .as_deref()
                    .is_none_or(|s| s.eq_ignore_ascii_case(USER_SCHEMA))
        })
}

fn set_inactive(doc: &mut Value) {
    if let Some(obj) = doc.as_object_mut() {
        remove_ci(obj, "active");
        obj.insert("active".into(), Value::Bool(false));
    }
}

fn check_required(doc: &Value, kind: ResourceKind) -> Result<(), ScimError> {
    let name = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    let ok = doc
        .as_object()
        .and_then(|o| get_ci(o, name))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty());
    if ok {
        Ok(())
    } else {
        Err(ScimError::invalid_value(format!(
            "'{name}' is required and cannot be removed or emptied"
        )))
    }
}

fn apply_op(doc: &mut Value, kind: ResourceKind, op: &PatchOp) -> Result<(), ScimError> {
    match (&op.path, &op.value) {
        (Some(path), value) => apply_path(doc, kind, op.op, path, value.as_ref()),
        (None, Some(value)) => {
            let objects = tolerance::pathless_values(value).ok_or_else(|| {
                ScimError::invalid_value("without a 'path', 'value' must be an object")
            })?;
            for obj in objects {
                for (key, v) in obj {
                    apply_key(doc, kind, op.op, key, v)?;
                }
            }
            Ok(())
        }
        (None, None) => Err(ScimError::no_target(
            "the operation has neither path nor value",
        )),
    }
}

/// One member of a path-less value object. Keys may be plain attribute
/// names, extension URNs holding an object, or paths (`name.familyName`,
/// `urn:…:User:employeeNumber`) — Entra ID sends the latter
/// (Captain-P-Goldfish/scim-for-keycloak#26).
fn apply_key(
    doc: &mut Value,
    kind: ResourceKind,
    op: PatchOpKind,
    key: &str,
    value: &Value,
) -> Result<(), ScimError> {
    if key.eq_ignore_ascii_case("schemas") {
        merge_schemas(doc, value);
        return Ok(());
    }
    if names_extension_object(doc, kind, key, value) {
        return apply_extension_object(doc, kind, op, key, Some(value));
    }
    let path = if key.contains(['.', ':', '[']) {
        parse_patch_path(key)?
    } else {
        PatchPath::attribute(parse_attr_path(key).map_err(|e| ScimError::invalid_path(e.detail))?)
    };
    apply_path(doc, kind, op, &path, Some(value))
}

/// Whether `key` is an extension schema URN (whole extension object),
/// rather than a URN-qualified attribute path.
fn names_extension_object(doc: &Value, kind: ResourceKind, key: &str, value: &Value) -> bool {
    if !key.contains(':') {
        return false;
    }
    let known = is_known_schema(kind, key);
    let present = doc.as_object().is_some_and(|o| key_ci(o, key).is_some());
    if known || present {
        return true;
    }
    // An unknown URN whose schema prefix is not one we know, holding an
    // object: an unknown extension, preserved as-is.
    let Some((prefix, _)) = key.rsplit_once(':') else {
        return false;
    };
    value.is_object() && !is_known_schema(kind, prefix)
}

/// Whether `urn` is a core schema or an extension of `kind`.
fn is_known_schema(kind: ResourceKind, urn: &str) -> bool {
    is_core_schema(urn) || kind.extension(urn).is_some()
}

fn merge_schemas(doc: &mut Value, value: &Value) {
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    let list = obj
        .entry("schemas")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = list else { return };
    for urn in tolerance::as_array(value).iter().filter_map(Value::as_str) {
        let present = list
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)));
        if !present {
            list.push(urn.into());
        }
    }
}

/// add/replace/remove of a whole extension object
/// (`"urn:…:enterprise:2.0:User": {...}` or `path: "urn:…:enterprise:2.0:User"`).
fn apply_extension_object(
    doc: &mut Value,
    kind: ResourceKind,
    op: PatchOpKind,
    urn: &str,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let canonical = kind.extension(urn).map_or(urn, |s| s.id);
    let core = is_core_schema(urn);
    if op == PatchOpKind::Remove {
        if core {
            return Err(ScimError::invalid_path("the core schema cannot be removed"));
        }
        if let Some(obj) = doc.as_object_mut() {
            remove_ci(obj, urn);
        }
        return Ok(());
    }
    let Some(Value::Object(fields)) = value else {
        return Err(ScimError::invalid_value(format!(
            "the value for '{}' must be an object",
            shorten(urn)
        )));
    };
    if !core {
        merge_schemas(doc, &Value::String(canonical.to_owned()));
    }
    for (name, v) in fields {
        // A core-URN object holds top-level attributes.
        let path = PatchPath::attribute(AttrPath {
            schema: (!core).then(|| canonical.to_owned()),
            name: name.clone(),
            sub_attr: None,
        });
        apply_path(doc, kind, op, &path, Some(v))?;
    }
    Ok(())
}

fn is_extension_path(kind: ResourceKind, doc: &Value, path: &PatchPath) -> Option<String> {
    if path.filter.is_some() || path.sub_attr.is_some() || path.attr.sub_attr.is_some() {
        return None;
    }
    let schema = path.attr.schema.as_deref()?;
    let full = format!("{schema}:{}", path.attr.name);
    let known = kind.extension(&full).is_some();
    let present = doc
        .as_object()
        .is_some_and(|o| get_ci(o, &full).is_some_and(Value::is_object));
    // Extension URNs conventionally end in the resource type
    // (`urn:…:2.0:User`), so a new custom extension is recognised too.
    let conventional = path.attr.name.eq_ignore_ascii_case(kind.name());
    (known || present || conventional).then_some(full)
}

fn apply_path(
    doc: &mut Value,
    kind: ResourceKind,
    op: PatchOpKind,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    // The other resource type's core URN would otherwise qualify a
    // top-level attribute with no definition, so no mutability check: a
    // Group's `id` or `meta` could be written (found by the v1_codec fuzz
    // target).
    if let Some(urn) = path.attr.schema.as_deref()
        && is_core_schema(urn)
        && !urn.eq_ignore_ascii_case(kind.core_schema().id)
    {
        return Err(ScimError::invalid_path(format!(
            "'{}' is not an attribute of a {}",
            shorten(&path.attr.to_string()),
            kind.name()
        )));
    }
    if let Some(urn) = is_extension_path(kind, doc, path) {
        return apply_extension_object(doc, kind, op, &urn, value);
    }
    if check_mutability(doc, kind, op, path, value)? == Mutable::UnchangedReadOnly {
        return Ok(());
    }
    let op = match (op, value) {
        // RFC 7643 §2.5: null is unassigned, so replacing with null removes.
        (PatchOpKind::Replace, Some(Value::Null)) => PatchOpKind::Remove,
        (PatchOpKind::Add, Some(Value::Null)) => return Ok(()),
        (op, _) => op,
    };
    let def = top_level_def(kind, path.attr.schema.as_deref(), &path.attr.name);
    let Some(container) = container_mut(doc, &path.attr, op != PatchOpKind::Remove) else {
        return Ok(()); // remove from an absent extension: nothing to do
    };
    let multi = def.map(|d| d.multi_valued);
    match &path.filter {
        None => apply_plain(container, op, path, value, multi),
        Some(filter) => apply_filtered(container, kind, op, path, filter, value),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Mutable {
    Yes,
    UnchangedReadOnly,
}

fn check_mutability(
    doc: &Value,
    kind: ResourceKind,
    op: PatchOpKind,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<Mutable, ScimError> {
    let Some(def) = top_level_def(kind, path.attr.schema.as_deref(), &path.attr.name) else {
        return Ok(Mutable::Yes);
    };
    if def.mutability != Mutability::ReadOnly {
        return Ok(Mutable::Yes);
    }
    let whole_attribute = path.filter.is_none() && path.attr.sub_attr.is_none();
    if op != PatchOpKind::Remove
        && whole_attribute
        && let Some(v) = value
        && tolerance::is_unchanged_read_only(crate::json::top_value(doc, &path.attr), v)
    {
        return Ok(Mutable::UnchangedReadOnly);
    }
    Err(ScimError::mutability(format!(
        "attribute '{}' is readOnly",
        def.name
    )))
}

/// The object holding `attr.name`: the resource, or its extension object
/// (created when `create`).
fn container_mut<'a>(
    doc: &'a mut Value,
    attr: &AttrPath,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let obj = doc.as_object_mut()?;
    let Some(urn) = attr.schema.as_deref().filter(|u| !is_core_schema(u)) else {
        return Some(obj);
    };
    let key = match key_ci(obj, urn) {
        Some(k) => k.clone(),
        None if create => {
            obj.insert(urn.to_owned(), Value::Object(Map::new()));
            urn.to_owned()
        }
        None => return None,
    };
    let slot = obj.get_mut(&key)?;
    if !slot.is_object() && create {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Key to write `name` under: the existing key in any case, else the
/// schemas' spelling of it (a PATCH to `DisplayName` of a group without one
/// stores `displayName`, which clients read by its exact name), else `name`.
fn slot_key(obj: &Map<String, Value>, name: &str) -> String {
    key_ci(obj, name).cloned().unwrap_or_else(|| {
        crate::schema::canonical_spelling(name)
            .unwrap_or(name)
            .to_owned()
    })
}

fn apply_plain(
    container: &mut Map<String, Value>,
    op: PatchOpKind,
    path: &PatchPath,
    value: Option<&Value>,
    multi: Option<bool>,
) -> Result<(), ScimError> {
    let name = &path.attr.name;
    if let Some(sub) = &path.attr.sub_attr {
        return apply_sub_attribute(container, op, name, sub, value);
    }
    let key = slot_key(container, name);
    let is_multi = multi.unwrap_or_else(|| {
        container.get(&key).is_some_and(Value::is_array) || value.is_some_and(Value::is_array)
    });
    match (op, value) {
        (PatchOpKind::Remove, Some(listed)) if is_multi => {
            if let Some(Value::Array(items)) = container.get_mut(&key) {
                tolerance::remove_listed_values(items, listed);
                if items.is_empty() {
                    container.remove(&key);
                }
            }
            Ok(())
        }
        (PatchOpKind::Remove, _) => {
            container.remove(&key);
            Ok(())
        }
        (_, None) => Err(ScimError::invalid_value("a value is required")),
        (PatchOpKind::Add, Some(v)) if is_multi => {
            let slot = container
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(tolerance::as_array(slot));
            }
            if let Value::Array(items) = slot {
                // RFC 7644 §3.5.2.1: a value already present is not added
                // again. Hashed so that large adds stay linear.
                let mut present: std::collections::HashSet<String> =
                    items.iter().map(Value::to_string).collect();
                let mut new_primary = None;
                for item in tolerance::as_array(v) {
                    if present.insert(item.to_string()) {
                        if is_primary(&item) {
                            new_primary = Some(items.len());
                        }
                        items.push(item);
                    }
                }
                keep_single_primary(items, new_primary);
            }
            Ok(())
        }
        (PatchOpKind::Replace, Some(v)) if is_multi => {
            let mut items = tolerance::as_array(v);
            let last_primary = items.iter().rposition(is_primary);
            keep_single_primary(&mut items, last_primary);
            container.insert(key, Value::Array(items));
            Ok(())
        }
        (_, Some(v)) => {
            set_or_merge(container, key, v);
            Ok(())
        }
    }
}

/// Sets a single-valued attribute; complex values are merged into an
/// existing object (RFC 7644 §3.5.2.1/§3.5.2.3: unspecified sub-attributes
/// are left unchanged).
fn set_or_merge(container: &mut Map<String, Value>, key: String, v: &Value) {
    match (container.get_mut(&key), v) {
        (Some(Value::Object(existing)), Value::Object(new)) => {
            for (k, sub) in new {
                let k = slot_key(existing, k);
                if sub.is_null() {
                    existing.remove(&k);
                } else {
                    existing.insert(k, sub.clone());
                }
            }
        }
        _ => {
            container.insert(key, v.clone());
        }
    }
}

fn apply_sub_attribute(
    container: &mut Map<String, Value>,
    op: PatchOpKind,
    name: &str,
    sub: &str,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let key = slot_key(container, name);
    if op == PatchOpKind::Remove {
        match container.get_mut(&key) {
            Some(Value::Object(parent)) => {
                remove_ci(parent, sub);
                if parent.is_empty() {
                    container.remove(&key);
                }
            }
            Some(Value::Array(items)) => items
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(|o| {
                    remove_ci(o, sub);
                }),
            _ => {}
        }
        return Ok(());
    }
    let Some(v) = value else {
        return Err(ScimError::invalid_value("a value is required"));
    };
    let slot = container
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    match slot {
        Value::Object(parent) => {
            let k = slot_key(parent, sub);
            parent.insert(k, v.clone());
            Ok(())
        }
        Value::Array(items) if !items.is_empty() => {
            for o in items.iter_mut().filter_map(Value::as_object_mut) {
                let k = slot_key(o, sub);
                o.insert(k, v.clone());
            }
            Ok(())
        }
        Value::Array(_) => Err(ScimError::no_target(format!(
            "'{}' has no values to set '{}' on; use a value filter",
            shorten(name),
            shorten(sub)
        ))),
        other => {
            // A scalar where an object belongs: replace it with the object.
            let mut parent = Map::new();
            parent.insert(sub.to_owned(), v.clone());
            *other = Value::Object(parent);
            Ok(())
        }
    }
}

fn apply_filtered(
    container: &mut Map<String, Value>,
    kind: ResourceKind,
    op: PatchOpKind,
    path: &PatchPath,
    filter: &Filter,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let key = slot_key(container, &path.attr.name);
    let mut items = match container.remove(&key) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        // Tolerance: a single object stored where an array belongs.
        Some(other) => vec![other],
    };
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| crate::filter::matches_element(filter, item, kind, &path.attr))
        .map(|(i, _)| i)
        .collect();
    let result = edit_matched(&mut items, &matched, op, path, filter, value);
    if !items.is_empty() {
        container.insert(key, Value::Array(items));
    }
    result
}

fn edit_matched(
    items: &mut Vec<Value>,
    matched: &[usize],
    op: PatchOpKind,
    path: &PatchPath,
    filter: &Filter,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if op == PatchOpKind::Remove {
        remove_matched(items, matched, path.sub_attr.as_deref());
        return Ok(()); // removing nothing is a success: IdPs retry removes
    }
    let Some(v) = value else {
        return Err(ScimError::invalid_value("a value is required"));
    };
    if matched.is_empty() {
        return create_from_filter(items, path, filter, v);
    }
    for &i in matched {
        let Some(Value::Object(element)) = items.get_mut(i) else {
            continue;
        };
        match (&path.sub_attr, op, v) {
            (Some(sub), _, v) => {
                let k = slot_key(element, sub);
                element.insert(k, v.clone());
            }
            (None, PatchOpKind::Replace, Value::Object(new)) => *element = new.clone(),
            (None, _, Value::Object(new)) => {
                for (k, sub) in new {
                    let k = slot_key(element, k);
                    element.insert(k, sub.clone());
                }
            }
            (None, _, _) => {
                return Err(ScimError::invalid_value(
                    "the value for a filtered path without sub-attribute must be an object",
                ));
            }
        }
    }
    let winner = matched
        .iter()
        .rev()
        .copied()
        .find(|&i| items.get(i).is_some_and(is_primary));
    keep_single_primary(items, winner);
    Ok(())
}

fn is_primary(item: &Value) -> bool {
    item.as_object()
        .and_then(|o| get_ci(o, "primary"))
        .and_then(tolerance::bool_from_string)
        == Some(true)
}

/// RFC 7643 §2.4: `"primary": true` appears at most once in a multi-valued
/// attribute. The element the operation just made primary keeps it.
fn keep_single_primary(items: &mut [Value], winner: Option<usize>) {
    let Some(winner) = winner else { return };
    for (i, item) in items.iter_mut().enumerate() {
        if i == winner || !is_primary(item) {
            continue;
        }
        if let Some(o) = item.as_object_mut()
            && let Some(k) = key_ci(o, "primary").cloned()
        {
            o.insert(k, Value::Bool(false));
        }
    }
}

fn remove_matched(items: &mut Vec<Value>, matched: &[usize], sub: Option<&str>) {
    match sub {
        Some(sub) => {
            for &i in matched {
                if let Some(Value::Object(o)) = items.get_mut(i) {
                    remove_ci(o, sub);
                }
            }
        }
        None => {
            // `matched` is ascending, so a binary search keeps this n·log m.
            let mut index = 0;
            items.retain(|_| {
                let keep = matched.binary_search(&index).is_err();
                index += 1;
                keep
            });
        }
    }
}

fn create_from_filter(
    items: &mut Vec<Value>,
    path: &PatchPath,
    filter: &Filter,
    v: &Value,
) -> Result<(), ScimError> {
    let Some(mut element) = tolerance::element_from_filter(filter) else {
        return Err(ScimError::no_target(format!(
            "no value of '{}' matches the filter, and the filter does not describe a new value",
            shorten(&path.attr.to_string())
        )));
    };
    match (&path.sub_attr, v) {
        (Some(sub), v) => {
            element.insert(sub.clone(), v.clone());
        }
        (None, Value::Object(new)) => {
            for (k, sub) in new {
                let k = slot_key(&element, k);
                element.insert(k, sub.clone());
            }
        }
        (None, _) => {
            return Err(ScimError::invalid_value(
                "the value for a filtered path without sub-attribute must be an object",
            ));
        }
    }
    let element = Value::Object(element);
    let primary = is_primary(&element);
    items.push(element);
    if primary {
        let last = items.len() - 1;
        keep_single_primary(items, Some(last));
    }
    Ok(())
}

/// A step of a Group PATCH, in request order.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupPatchStep {
    /// Operations not touching `members`, to run through [`apply`] on the
    /// group JSON (without members).
    Attributes(Vec<PatchOp>),
    /// Add these members (idempotent).
    AddMembers(Vec<MemberValue>),
    /// Remove the members with these ids (absent ids are fine).
    RemoveMembers(Vec<String>),
    /// Replace all members with these.
    ReplaceMembers(Vec<MemberValue>),
    /// Remove every member.
    RemoveAllMembers,
}

/// Splits a Group PATCH into attribute edits and member changes, so that
/// membership can be changed without loading all members. Consecutive steps
/// of the same kind are merged; order is preserved.
///
/// Supported member forms: `add`/`replace` on `members` (array or single
/// object), `remove` of `members` (all), `remove` with
/// `members[value eq "id"]` (possibly `or`-ed), `remove` on `members` with a
/// `value` array (Entra ID, Okta), and path-less values holding `members`.
///
/// ```
/// use roster_scim::patch::{plan_group_patch, GroupPatchStep, PatchRequest};
/// use serde_json::json;
/// let req = PatchRequest::parse(&json!({"Operations": [
///     {"op": "remove", "path": "members[value eq \"u1\" or value eq \"u2\"]"},
///     {"op": "add", "path": "members", "value": [{"value": "u3"}]},
///     {"op": "replace", "path": "displayName", "value": "Ops"}
/// ]}))?;
/// let plan = plan_group_patch(&req)?;
/// assert_eq!(plan[0], GroupPatchStep::RemoveMembers(vec!["u1".into(), "u2".into()]));
/// assert!(matches!(&plan[1], GroupPatchStep::AddMembers(m) if m[0].value == "u3"));
/// assert!(matches!(&plan[2], GroupPatchStep::Attributes(ops) if ops.len() == 1));
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn plan_group_patch(req: &PatchRequest) -> Result<Vec<GroupPatchStep>, ScimError> {
    let mut steps = Vec::new();
    for (i, op) in req.operations.iter().enumerate() {
        for step in plan_op(op).map_err(|e| prefix(e, i))? {
            push_merged(&mut steps, step);
        }
    }
    Ok(steps)
}

fn push_merged(steps: &mut Vec<GroupPatchStep>, step: GroupPatchStep) {
    use GroupPatchStep as S;
    match (steps.last_mut(), step) {
        (Some(S::Attributes(a)), S::Attributes(b)) => a.extend(b),
        (Some(S::AddMembers(a)), S::AddMembers(b)) => a.extend(b),
        (Some(S::RemoveMembers(a)), S::RemoveMembers(b)) => a.extend(b),
        (_, step) => steps.push(step),
    }
}

fn is_members_attr(attr: &AttrPath) -> bool {
    attr.name.eq_ignore_ascii_case("members")
        && attr
            .schema
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(crate::schema::GROUP_SCHEMA))
}

fn plan_op(op: &PatchOp) -> Result<Vec<GroupPatchStep>, ScimError> {
    match &op.path {
        None => plan_pathless(op),
        Some(path) if is_members_attr(&path.attr) => plan_members_path(op, path).map(|s| vec![s]),
        Some(_) => Ok(vec![GroupPatchStep::Attributes(vec![op.clone()])]),
    }
}

/// A path-less op may carry `members` among other attributes.
fn plan_pathless(op: &PatchOp) -> Result<Vec<GroupPatchStep>, ScimError> {
    let Some(objects) = op.value.as_ref().and_then(tolerance::pathless_values) else {
        return Ok(vec![GroupPatchStep::Attributes(vec![op.clone()])]);
    };
    let mut steps = Vec::new();
    for obj in objects {
        let mut rest = obj.clone();
        let members = remove_ci(&mut rest, "members");
        if !rest.is_empty() {
            steps.push(GroupPatchStep::Attributes(vec![PatchOp {
                op: op.op,
                path: None,
                value: Some(Value::Object(rest)),
            }]));
        }
        if let Some(members) = members {
            let list = parse_members(&members)?;
            steps.push(match op.op {
                PatchOpKind::Replace => GroupPatchStep::ReplaceMembers(list),
                _ => GroupPatchStep::AddMembers(list),
            });
        }
    }
    Ok(steps)
}

fn plan_members_path(op: &PatchOp, path: &PatchPath) -> Result<GroupPatchStep, ScimError> {
    if path.sub_attr.is_some() || path.attr.sub_attr.is_some() {
        return Err(ScimError::invalid_path(
            "member sub-attributes cannot be modified; add or remove whole members",
        ));
    }
    match (&path.filter, op.op) {
        (Some(filter), PatchOpKind::Remove) => member_ids_from_filter(filter)
            .map(GroupPatchStep::RemoveMembers)
            .ok_or_else(|| {
                ScimError::invalid_filter(format!(
                    "unsupported member filter '{}': only 'value eq \"<id>\"', optionally joined with 'or', is supported",
                    shorten(&filter.to_string())
                ))
            }),
        (Some(_), _) => Err(ScimError::no_target(
            "a filtered 'members' path is only supported with 'remove'",
        )),
        (None, PatchOpKind::Remove) => match &op.value {
            None | Some(Value::Null) => Ok(GroupPatchStep::RemoveAllMembers),
            // Entra ID / Okta: remove with a value array of members.
            Some(v) => Ok(GroupPatchStep::RemoveMembers(
                parse_members(v)?.into_iter().map(|m| m.value).collect(),
            )),
        },
        (None, PatchOpKind::Add) => Ok(GroupPatchStep::AddMembers(parse_members(
            op.value.as_ref().unwrap_or(&Value::Null),
        )?)),
        (None, PatchOpKind::Replace) => Ok(GroupPatchStep::ReplaceMembers(parse_members(
            op.value.as_ref().unwrap_or(&Value::Null),
        )?)),
    }
}

/// Keeps error details short when they quote client input.
fn shorten(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Ids from `value eq "a" or value eq "b"`; `None` for any other shape.
fn member_ids_from_filter(filter: &Filter) -> Option<Vec<String>> {
    let mut ids = Vec::new();
    let mut stack = vec![filter];
    while let Some(f) = stack.pop() {
        match f {
            Filter::Or(l, r) => {
                stack.push(r);
                stack.push(l);
            }
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::String(id),
            } if path.schema.is_none()
                && path.sub_attr.is_none()
                && path.name.eq_ignore_ascii_case("value") =>
            {
                ids.push(id.clone());
            }
            _ => return None,
        }
    }
    Some(ids)
}

#[cfg(test)]
mod tests;
