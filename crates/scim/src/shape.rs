//! Schema shape checks of a whole resource document, run on every document
//! before it is stored (POST, PUT and the result of a PATCH): a value whose
//! JSON type contradicts the schema is `400 invalidValue`, never stored.
//! Documented IdP shapes are repaired before this runs (see `tolerance`).

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::schema::{AttrType, AttributeDef, ResourceKind, attributes_for, top_level_def};

/// Checks every attribute the schema defines (top-level, sub-attributes and
/// the enterprise extension), that every extension object is an object,
/// and that no string or key anywhere contains a NUL character.
pub(crate) fn check_document(doc: &Value, kind: ResourceKind) -> Result<(), ScimError> {
    check_no_nul(doc)?;
    let Some(obj) = doc.as_object() else {
        return Err(ScimError::invalid_syntax(
            "the resource must be a JSON object",
        ));
    };
    obj.iter()
        .try_for_each(|(key, value)| check_entry(kind, key, value, None))
}

/// [`check_document`] for the result of a PATCH, checking only what the
/// PATCH changed: a resource stored before these checks existed (say with
/// a numeric `employeeNumber`) can still be patched — deactivated, above
/// all — as long as the PATCH itself writes well-typed values.
pub(crate) fn check_patched(
    before: &Value,
    after: &Value,
    kind: ResourceKind,
) -> Result<(), ScimError> {
    check_no_nul(after)?;
    let (Some(old), Some(new)) = (before.as_object(), after.as_object()) else {
        return check_document(after, kind);
    };
    for (key, value) in new {
        let prior = old.get(key);
        if prior != Some(value) {
            check_entry(kind, key, value, prior)?;
        }
    }
    Ok(())
}

/// One top-level member; `prior` is its value before a PATCH (unchanged
/// extension attributes are not checked again).
fn check_entry(
    kind: ResourceKind,
    key: &str,
    value: &Value,
    prior: Option<&Value>,
) -> Result<(), ScimError> {
    if let Some(def) = top_level_def(kind, None, key) {
        check_value(value, def, key)
    } else if is_urn(key) {
        check_extension(kind, key, value, prior.and_then(Value::as_object))
    } else {
        Ok(())
    }
}

/// Extension data lives in an object under its URN; Roster keeps the
/// object of a schema it does not define verbatim, and checks the
/// attributes of one it defines.
fn check_extension(
    kind: ResourceKind,
    urn: &str,
    value: &Value,
    prior: Option<&Map<String, Value>>,
) -> Result<(), ScimError> {
    let ext = match value {
        Value::Null => return Ok(()),
        Value::Object(ext) => ext,
        _ => {
            return Err(ScimError::invalid_value(format!(
                "'{urn}' must be an object of extension attributes"
            )));
        }
    };
    if attributes_for(kind, Some(urn)).is_none() {
        return Ok(());
    }
    for (name, v) in ext {
        let unchanged = prior.is_some_and(|p| p.get(name) == Some(v));
        if let Some(def) = top_level_def(kind, Some(urn), name)
            && !unchanged
        {
            check_value(v, def, &format!("{urn}:{name}"))?;
        }
    }
    Ok(())
}

fn is_urn(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

fn check_value(value: &Value, def: &AttributeDef, path: &str) -> Result<(), ScimError> {
    if value.is_null() {
        return Ok(());
    }
    if !def.multi_valued {
        return check_single(value, def, path);
    }
    let Value::Array(items) = value else {
        return Err(mismatch(path, "an array"));
    };
    items
        .iter()
        .enumerate()
        .try_for_each(|(i, item)| check_single(item, def, &format!("{path}[{i}]")))
}

fn check_single(value: &Value, def: &AttributeDef, path: &str) -> Result<(), ScimError> {
    let ok = match def.ty {
        AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime => {
            value.is_string()
        }
        AttrType::Boolean => value.is_boolean(),
        AttrType::Decimal => value.is_number(),
        AttrType::Integer => value.is_i64() || value.is_u64(),
        AttrType::Complex => {
            let Value::Object(obj) = value else {
                return Err(mismatch(path, "an object"));
            };
            return check_sub_attributes(obj, def, path);
        }
    };
    if ok || value.is_null() {
        Ok(())
    } else {
        Err(mismatch(path, expected(def.ty)))
    }
}

fn check_sub_attributes(
    obj: &Map<String, Value>,
    def: &AttributeDef,
    path: &str,
) -> Result<(), ScimError> {
    for (name, v) in obj {
        if let Some(sub) = def.sub(name) {
            check_value(v, sub, &format!("{path}.{name}"))?;
        }
    }
    Ok(())
}

fn expected(ty: AttrType) -> &'static str {
    match ty {
        AttrType::Boolean => "a boolean",
        AttrType::Decimal => "a number",
        AttrType::Integer => "an integer",
        AttrType::Complex => "an object",
        _ => "a string",
    }
}

fn mismatch(path: &str, expected: &str) -> ScimError {
    ScimError::invalid_value(format!("'{path}' must be {expected}"))
}

/// Text with NUL characters cannot be stored (PostgreSQL refuses them) and
/// no IdP sends them: rejected as `invalidValue` before any database sees it.
pub(crate) fn check_no_nul(value: &Value) -> Result<(), ScimError> {
    if crate::text::contains_nul(value) {
        return Err(ScimError::invalid_value(
            "text must not contain NUL (U+0000) characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_user(doc: Value) -> Result<(), ScimError> {
        check_document(&doc, ResourceKind::User)
    }

    #[test]
    fn shapes_that_contradict_the_schema_are_invalid_values() {
        for doc in [
            json!({"userName": "a", "name": "Alice Anders"}),
            json!({"userName": "a", "emails": "a@example.com"}),
            json!({"userName": "a", "emails": [{"value": 42}]}),
            json!({"userName": "a", "title": ["x"]}),
            json!({"userName": "a", "active": "maybe"}),
            json!({"userName": 7}),
            json!({"userName": "a", "name": {"givenName": {"x": 1}}}),
            json!({"userName": "a", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": "x"}),
            json!({"userName": "a", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                {"employeeNumber": 701984}}),
            json!({"userName": "a", "urn:example:ext:1.0:User": ["not", "an", "object"]}),
        ] {
            let err = check_user(doc.clone()).unwrap_err();
            assert_eq!(err.status, 400, "{doc}");
            assert_eq!(err.scim_type, Some(crate::ScimType::InvalidValue), "{doc}");
        }
    }

    #[test]
    fn well_shaped_and_unknown_attributes_pass() {
        check_user(
            json!({"userName": "a", "name": {"givenName": "A", "x-custom": 1},
            "emails": [{"value": "a@b", "primary": true}], "active": null, "x-count": 5,
            "urn:example:ext:1.0:User": {"anything": [1, {"a": true}]}}),
        )
        .unwrap();
    }

    #[test]
    fn a_patch_is_checked_for_what_it_changed() {
        let ext = crate::schema::ENTERPRISE_USER_SCHEMA;
        let legacy = json!({"userName": "a", "active": true, ext: {"employeeNumber": 7}});
        let deactivated = json!({"userName": "a", "active": false, ext: {"employeeNumber": 7}});
        check_patched(&legacy, &deactivated, ResourceKind::User).unwrap();
        let retyped = json!({"userName": "a", "active": true, ext: {"employeeNumber": 8}});
        assert!(check_patched(&legacy, &retyped, ResourceKind::User).is_err());
        let named =
            json!({"userName": "a", "active": true, "name": "x", ext: {"employeeNumber": 7}});
        assert!(check_patched(&legacy, &named, ResourceKind::User).is_err());
    }

    #[test]
    fn nul_is_found_in_strings_and_keys() {
        assert!(check_no_nul(&json!({"a": ["ok", "b\u{0}"]})).is_err());
        assert!(check_no_nul(&json!({"k\u{0}": 1})).is_err());
        assert!(check_no_nul(&json!({"a": ["ok", 1, null]})).is_ok());
    }
}
