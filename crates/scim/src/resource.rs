//! Users and Groups (RFC 7643 §4): validating request bodies, cleaning
//! them for storage and extracting the normalized fields the directory
//! indexes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::AttrPath;
use crate::json::{get_ci, key_ci, remove_ci, top_value};
use crate::{shape, tolerance};

pub use crate::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, ResourceKind, USER_SCHEMA};

/// `ListResponse` message URN.
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// `PatchOp` message URN.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// `SearchRequest` message URN.
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// `BulkRequest` message URN.
pub const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// `BulkResponse` message URN.
pub const BULK_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// One group member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// The member's id (a User or Group id of this service provider).
    pub value: String,
    /// `User` or `Group`, when the client said.
    pub r#type: Option<String>,
    /// Display name as sent by the client.
    pub display: Option<String>,
}

/// One email of a user.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NormalizedEmail {
    /// The address.
    pub value: String,
    /// `work`, `home`, `other`… or empty when the client sent no type.
    #[serde(default)]
    pub r#type: String,
    /// Whether the client marked it primary.
    #[serde(default)]
    pub primary: bool,
}

/// The fields of a User the directory indexes: the one normalized user type,
/// which the store keeps as it is (there it is named `UserFields`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NormalizedUser {
    /// `userName` (required, non-empty).
    pub user_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// `active`; `true` when absent.
    pub active: bool,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `name.givenName`.
    pub given_name: Option<String>,
    /// `name.familyName`.
    pub family_name: Option<String>,
    /// `emails`.
    pub emails: Vec<NormalizedEmail>,
    /// `title`.
    pub title: Option<String>,
    /// Enterprise extension `department`.
    pub department: Option<String>,
    /// Enterprise extension `manager.value`.
    pub manager_id: Option<String>,
    /// Enterprise extension `employeeNumber`.
    pub employee_number: Option<String>,
    /// Values a directory's attribute mappings copy from other paths of the
    /// payload, by key; normalization leaves it empty.
    pub custom_attributes: BTreeMap<String, String>,
}

/// A validated Group body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedGroup {
    /// `displayName` (required, non-empty).
    pub display_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// `members`.
    pub members: Vec<MemberValue>,
}

/// Validates and cleans a POST/PUT User body.
///
/// * `schemas` must list the core User URN when present; when it is
///   missing (some IdPs omit it on PUT) it is filled in — a tolerance.
/// * `userName` is required and must be a non-empty string (`invalidValue`).
/// * readOnly `id`, `meta`, `groups` are dropped (RFC 7644 §3.3: ignored);
///   `password` is dropped too: this service never stores credentials.
/// * unknown extension objects are kept; the enterprise URN is added to
///   `schemas` when its object is present.
///
/// Returns the JSON to store as `raw` and the normalized fields.
///
/// ```
/// use roster_scim::resource::prepare_user;
/// use serde_json::json;
/// let (raw, user) = prepare_user(json!({
///     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
///     "id": "ignored", "userName": "bjensen", "active": "False",
///     "emails": [{"value": "b@example.com", "type": "work", "primary": true}]
/// }))?;
/// assert!(raw.get("id").is_none());
/// assert_eq!(raw["active"], false);
/// assert!(!user.active);
/// assert_eq!(user.emails[0].value, "b@example.com");
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn prepare_user(body: Value) -> Result<(Value, NormalizedUser), ScimError> {
    let mut raw = prepare_common(body, ResourceKind::User)?;
    if let Some(obj) = raw.as_object_mut() {
        remove_ci(obj, "groups");
        remove_ci(obj, "password");
    }
    tolerance::normalize_shapes(&mut raw, ResourceKind::User);
    list_present_extensions(&mut raw);
    shape::check_document(&raw, ResourceKind::User)?;
    let normalized = normalize_user(&raw)?;
    Ok((raw, normalized))
}

/// Validates and cleans a POST/PUT Group body. The returned JSON has no
/// `members`; they are returned separately.
///
/// ```
/// use roster_scim::resource::prepare_group;
/// use serde_json::json;
/// let (raw, group) = prepare_group(json!({
///     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
///     "displayName": "Admins", "members": [{"value": "u1", "display": "Bob"}]
/// }))?;
/// assert!(raw.get("members").is_none());
/// assert_eq!(group.members[0].value, "u1");
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn prepare_group(body: Value) -> Result<(Value, PreparedGroup), ScimError> {
    let mut raw = prepare_common(body, ResourceKind::Group)?;
    tolerance::normalize_shapes(&mut raw, ResourceKind::Group);
    let members_json = raw
        .as_object_mut()
        .and_then(|o| remove_ci(o, "members"))
        .unwrap_or(Value::Null);
    if !(members_json.is_array() || members_json.is_null()) {
        return Err(ScimError::invalid_value("'members' must be an array"));
    }
    let members = parse_members(&members_json)?;
    shape::check_no_nul(&members_json)?;
    shape::check_document(&raw, ResourceKind::Group)?;
    let obj = as_object(&raw)?;
    let display_name = required_string(obj, "displayName")?;
    let external_id = optional_string(obj, "externalId")?;
    Ok((
        raw,
        PreparedGroup {
            display_name,
            external_id,
            members,
        },
    ))
}

fn as_object(v: &Value) -> Result<&Map<String, Value>, ScimError> {
    v.as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the request body must be a JSON object"))
}

/// Shared POST/PUT cleaning: object check, schemas, readOnly removal.
fn prepare_common(body: Value, kind: ResourceKind) -> Result<Value, ScimError> {
    let Value::Object(mut obj) = body else {
        return Err(ScimError::invalid_syntax(
            "the request body must be a JSON object",
        ));
    };
    check_schemas(&mut obj, kind)?;
    remove_ci(&mut obj, "id");
    remove_ci(&mut obj, "meta");
    Ok(Value::Object(obj))
}

fn check_schemas(obj: &mut Map<String, Value>, kind: ResourceKind) -> Result<(), ScimError> {
    let core = kind.core_schema().id;
    let Some(key) = key_ci(obj, "schemas").cloned() else {
        // Tolerance: clients that omit `schemas` get the core URN filled in;
        // the endpoint already says which resource type this is.
        obj.insert("schemas".into(), Value::Array(vec![core.into()]));
        return Ok(());
    };
    let schemas = obj.remove(&key).unwrap_or(Value::Null);
    let list = schemas.as_array().map(Vec::as_slice).unwrap_or_default();
    let urns: Option<Vec<String>> = if schemas.is_array() {
        list.iter().map(|v| v.as_str().map(str::to_owned)).collect()
    } else {
        None
    };
    let Some(urns) = urns else {
        return Err(ScimError::invalid_value(
            "'schemas' must be an array of URN strings",
        ));
    };
    if !urns.iter().any(|u| u.eq_ignore_ascii_case(core)) {
        return Err(ScimError::invalid_value(format!(
            "'schemas' must contain {core}"
        )));
    }
    obj.insert(
        "schemas".into(),
        Value::Array(urns.into_iter().map(Value::String).collect()),
    );
    Ok(())
}

/// Adds the enterprise URN to `schemas` when the extension object exists.
pub(crate) fn list_present_extensions(raw: &mut Value) {
    let Some(obj) = raw.as_object_mut() else {
        return;
    };
    let has_ext = get_ci(obj, ENTERPRISE_USER_SCHEMA).is_some_and(Value::is_object);
    if !has_ext {
        return;
    }
    let schemas = obj
        .entry("schemas")
        .or_insert_with(|| Value::Array(vec![USER_SCHEMA.into()]));
    if let Value::Array(list) = schemas
        && !list.iter().any(|s| {
            s.as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA))
        })
    {
        list.push(ENTERPRISE_USER_SCHEMA.into());
    }
}

/// Extracts the normalized fields of a stored User (used after PATCH).
/// Errors are `invalidValue` naming the offending attribute.
///
/// ```
/// use roster_scim::resource::normalize_user;
/// use serde_json::json;
/// let user = normalize_user(&json!({"userName": "bjensen", "name": {"familyName": "Jensen"},
///     "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m1"}}}))?;
/// assert_eq!(user.family_name.as_deref(), Some("Jensen"));
/// assert_eq!(user.manager_id.as_deref(), Some("m1"));
/// assert!(user.active);
/// assert!(normalize_user(&json!({"userName": ""})).is_err());
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn normalize_user(raw: &Value) -> Result<NormalizedUser, ScimError> {
    let obj = as_object(raw)?;
    let ext = get_ci(obj, ENTERPRISE_USER_SCHEMA).and_then(Value::as_object);
    let name = get_ci(obj, "name").and_then(Value::as_object);
    Ok(NormalizedUser {
        user_name: required_string(obj, "userName")?,
        external_id: optional_string(obj, "externalId")?,
        active: match get_ci(obj, "active") {
            None | Some(Value::Null) => true,
            Some(v) => tolerance::bool_from_string(v)
                .ok_or_else(|| ScimError::invalid_value("'active' must be a boolean"))?,
        },
        display_name: optional_string(obj, "displayName")?,
        given_name: name
            .map(|n| optional_string(n, "givenName"))
            .transpose()?
            .flatten(),
        family_name: name
            .map(|n| optional_string(n, "familyName"))
            .transpose()?
            .flatten(),
        emails: normalize_emails(get_ci(obj, "emails"))?,
        title: optional_string(obj, "title")?,
        department: ext
            .map(|e| optional_string(e, "department"))
            .transpose()?
            .flatten(),
        manager_id: ext.map(manager_id).transpose()?.flatten(),
        employee_number: ext
            .map(|e| optional_string(e, "employeeNumber"))
            .transpose()?
            .flatten(),
        custom_attributes: BTreeMap::new(),
    })
}

fn manager_id(ext: &Map<String, Value>) -> Result<Option<String>, ScimError> {
    match get_ci(ext, "manager") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => optional_string(m, "value"),
        // Tolerance: Entra ID sends the manager as a bare string
        // (apache/directory-scimple#1242); stored data may predate repair.
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(_) => Err(ScimError::invalid_value(
            "'manager' must be an object with a 'value'",
        )),
    }
}

fn normalize_emails(v: Option<&Value>) -> Result<Vec<NormalizedEmail>, ScimError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let Some(items) = v.as_array() else {
        return Err(ScimError::invalid_value("'emails' must be an array"));
    };
    for item in items {
        let Value::Object(o) = item else {
            return Err(ScimError::invalid_value("'emails' entries must be objects"));
        };
        let Some(value) = optional_string(o, "value")? else {
            continue;
        };
        out.push(NormalizedEmail {
            value,
            r#type: optional_string(o, "type")?.unwrap_or_default(),
            primary: get_ci(o, "primary")
                .and_then(tolerance::bool_from_string)
                .unwrap_or(false),
        });
    }
    Ok(out)
}

fn required_string(obj: &Map<String, Value>, name: &str) -> Result<String, ScimError> {
    match optional_string(obj, name)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ScimError::invalid_value(format!(
            "'{name}' is required and must be a non-empty string"
        ))),
    }
}

/// New values were type-checked before (`shape`); a number here can only
/// come from a resource stored before those checks, and is read as its
/// decimal text so that such a user can still be patched (deactivated).
fn optional_string(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ScimError> {
    match get_ci(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => tolerance::string_from_scalar(v)
            .map(tolerance::blank_is_absent)
            .ok_or_else(|| ScimError::invalid_value(format!("'{name}' must be a string"))),
    }
}

/// Parses a `members` value (array, or a single member — a tolerance) into
/// [`MemberValue`]s. A member without a usable `value` (e.g. `display`
/// only) is rejected with `invalidValue`: it cannot be resolved to a
/// resource, and silently dropping it would leave the group wrong.
///
/// ```
/// use roster_scim::resource::parse_members;
/// use serde_json::json;
/// let members = parse_members(&json!([{"value": "u1", "type": "User"}, "u2"]))?;
/// assert_eq!(members[1].value, "u2");
/// assert!(parse_members(&json!([{"display": "Bob"}])).is_err());
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn parse_members(v: &Value) -> Result<Vec<MemberValue>, ScimError> {
    tolerance::as_array(v).iter().map(parse_member).collect()
}

fn parse_member(entry: &Value) -> Result<MemberValue, ScimError> {
    let obj = entry.as_object();
    let value = obj
        .and_then(|o| get_ci(o, "value"))
        .and_then(tolerance::member_value_string)
        .or_else(|| tolerance::member_id_from_loose(entry));
    let Some(value) = value else {
        return Err(ScimError::invalid_value(
            "every member needs a 'value' with the member's id (members given only by 'display' cannot be resolved)",
        ));
    };
    let text = |name: &str| {
        obj.and_then(|o| get_ci(o, name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(MemberValue {
        value,
        r#type: text("type"),
        display: text("display"),
    })
}

/// Renders a member as SCIM JSON (`value`, `type`, `display`).
pub fn member_json(m: &MemberValue) -> Value {
    let mut o = Map::new();
    o.insert("value".into(), m.value.clone().into());
    if let Some(t) = &m.r#type {
        o.insert("type".into(), t.clone().into());
    }
    if let Some(d) = &m.display {
        o.insert("display".into(), d.clone().into());
    }
    Value::Object(o)
}

/// The value at `path`, matching names and URNs case-insensitively.
/// For a sub-attribute of a multi-valued attribute (`emails.value`) this
/// is the sub-attribute of the `primary` element, else of the first
/// element that has it.
///
/// ```
/// use roster_scim::{filter::parse_attr_path, resource::lookup};
/// use serde_json::json;
/// let user = json!({"Emails": [{"value": "a@x"}, {"value": "b@x", "primary": true}],
///     "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}});
/// assert_eq!(lookup(&user, &parse_attr_path("emails.value")?), Some(&json!("b@x")));
/// let dept = parse_attr_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:Department")?;
/// assert_eq!(lookup(&user, &dept), Some(&json!("R&D")));
/// # Ok::<(), roster_scim::error::ScimError>(())
/// ```
pub fn lookup<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    let top = top_value(resource, path)?;
    let Some(sub) = &path.sub_attr else {
        return Some(top);
    };
    match top {
        Value::Object(o) => get_ci(o, sub),
        Value::Array(items) => {
            let sub_of = |item: &'a Value| item.as_object().and_then(|o| get_ci(o, sub));
            let is_primary = |item: &&'a Value| {
                item.as_object()
                    .and_then(|o| get_ci(o, "primary"))
                    .and_then(tolerance::bool_from_string)
                    == Some(true)
            };
            items
                .iter()
                .find(is_primary)
                .and_then(sub_of)
                .or_else(|| items.iter().find_map(sub_of))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
