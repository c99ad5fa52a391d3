//! A directory's attribute mappings: IdP attribute paths copied onto
//! normalized user fields or `custom:<key>` attributes.
//!
//! Mappings run after normalization, on every user write, so a mapped value
//! overrides what the standard schema gave; a source that is absent from the
//! payload leaves the field as normalization set it.

use roster_scim::filter::{AttrPath, parse_attr_path};
use roster_scim::resource::lookup;
use roster_store::{AttributeMapping, UserFields};
use serde_json::Value;

use crate::error::{ServiceError, ServiceResult};

/// Prefix of targets that name a custom attribute.
pub const CUSTOM_PREFIX: &str = "custom:";

/// A normalized field a mapping may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ExternalId,
    DisplayName,
    GivenName,
    FamilyName,
    Title,
    Department,
    ManagerId,
    EmployeeNumber,
}

/// Where a mapping writes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Field(Field),
    Custom(String),
}

/// Parses a target: a field name (snake_case or SCIM camelCase, any case)
/// or `custom:<key>`.
fn target(text: &str) -> Option<Target> {
    if let Some(key) = text.strip_prefix(CUSTOM_PREFIX) {
        return (!key.trim().is_empty()).then(|| Target::Custom(key.trim().to_string()));
    }
    let normalized: String = text
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    let field = match normalized.as_str() {
        "externalid" => Field::ExternalId,
        "displayname" => Field::DisplayName,
        "givenname" => Field::GivenName,
        "familyname" => Field::FamilyName,
        "title" => Field::Title,
        "department" => Field::Department,
        "managerid" => Field::ManagerId,
        "employeenumber" => Field::EmployeeNumber,
        _ => return None,
    };
    Some(Target::Field(field))
}

/// Checks every mapping: the source must be a SCIM attribute path and the
/// target a known field or `custom:<key>`.
pub fn validate(mappings: &[AttributeMapping]) -> ServiceResult<()> {
    for m in mappings {
        parse_attr_path(&m.source).map_err(|e| {
            ServiceError::InvalidArgument(format!("mapping source {:?}: {}", m.source, e.detail))
        })?;
        target(&m.target).ok_or_else(|| {
            ServiceError::InvalidArgument(format!(
                "mapping target {:?} is neither a mappable field (external_id, display_name, given_name, \
                 family_name, title, department, manager_id, employee_number) nor custom:<key>",
                m.target
            ))
        })?;
    }
    Ok(())
}

/// Applies `mappings` to `fields` from the user's SCIM JSON. Mappings that do
/// not parse (stored before validation existed) are skipped.
pub fn apply(mappings: &[AttributeMapping], raw: &Value, fields: &mut UserFields) {
    for m in mappings {
        let (Ok(path), Some(target)) = (parse_attr_path(&m.source), target(&m.target)) else {
            continue;
        };
        if let Some(value) = source_text(raw, &path) {
            write(fields, target, value);
        }
    }
}

fn source_text(raw: &Value, path: &AttrPath) -> Option<String> {
    lookup(raw, path).and_then(scalar_text)
}

/// The text of a looked-up value: strings as they are, numbers and booleans
/// printed, complex values by their `value` sub-attribute, multi-valued ones
/// by their primary (else first) element.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => o.get("value").and_then(scalar_text),
        Value::Array(items) => {
            let primary = items
                .iter()
                .find(|i| i.get("primary").and_then(Value::as_bool) == Some(true));
            primary.or(items.first()).and_then(scalar_text)
        }
    }
}

fn write(fields: &mut UserFields, target: Target, value: String) {
    let slot = match target {
        Target::Custom(key) => {
            fields.custom_attributes.insert(key, value);
            return;
        }
        Target::Field(Field::ExternalId) => &mut fields.external_id,
        Target::Field(Field::DisplayName) => &mut fields.display_name,
        Target::Field(Field::GivenName) => &mut fields.given_name,
        Target::Field(Field::FamilyName) => &mut fields.family_name,
        Target::Field(Field::Title) => &mut fields.title,
        Target::Field(Field::Department) => &mut fields.department,
        Target::Field(Field::ManagerId) => &mut fields.manager_id,
        Target::Field(Field::EmployeeNumber) => &mut fields.employee_number,
    };
    *slot = Some(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(source: &str, target: &str) -> AttributeMapping {
        AttributeMapping {
            source: source.into(),
            target: target.into(),
        }
    }

    #[test]
    fn targets_accept_both_spellings_and_custom_keys() {
        assert_eq!(target("costCenter"), None);
        assert_eq!(target("department"), Some(Target::Field(Field::Department)));
        assert_eq!(
            target("employee_number"),
            Some(Target::Field(Field::EmployeeNumber))
        );
        assert_eq!(
            target("employeeNumber"),
            Some(Target::Field(Field::EmployeeNumber))
        );
        assert_eq!(
            target("custom:cost_center"),
            Some(Target::Custom("cost_center".into()))
        );
        assert_eq!(target("custom:"), None);
    }

    #[test]
    fn validation_rejects_unknown_targets() {
        assert!(validate(&[mapping("title", "custom:t")]).is_ok());
        assert!(matches!(
            validate(&[mapping("title", "userName")]),
            Err(ServiceError::InvalidArgument(_))
        ));
    }

    #[test]
    fn scalar_text_picks_primary_values() {
        let v = json!([{"value": "a"}, {"value": "b", "primary": true}]);
        assert_eq!(scalar_text(&v).as_deref(), Some("b"));
        assert_eq!(scalar_text(&json!({"value": 7})).as_deref(), Some("7"));
        assert_eq!(scalar_text(&json!(null)), None);
    }

    #[test]
    fn mapped_values_override_and_fill_custom_attributes() {
        let raw = json!({
            "userName": "a@example.com",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"costCenter": "CC-7", "division": "R&D"}
        });
        let mut fields = UserFields {
            department: Some("Sales".into()),
            ..Default::default()
        };
        let mappings = [
            mapping(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division",
                "department",
            ),
            mapping(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
                "custom:cost_center",
            ),
            mapping("nickName", "custom:nick"),
        ];
        apply(&mappings, &raw, &mut fields);
        assert_eq!(fields.department.as_deref(), Some("R&D"));
        assert_eq!(
            fields
                .custom_attributes
                .get("cost_center")
                .map(String::as_str),
            Some("CC-7")
        );
        assert!(!fields.custom_attributes.contains_key("nick"));
    }
}
