//! A directory's attribute mappings: a value at a source path copied onto
//! a normalized user field or a `custom:<key>` attribute.
//!
//! The source is a path into the document a user came from: the SCIM JSON
//! an IdP pushed (a SCIM attribute path,
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter`),
//! or, for a pulled directory, the source's own record (an LDAP attribute,
//! `employeeNumber`; a Google User field, `organizations.costCenter`, or a
//! dotted path into it, `customSchemas.EmployeeData.costCenter`).
//!
//! Mappings run after normalization, on every user write, so a mapped value
//! overrides what the standard schema gave; a source that is absent from the
//! document leaves the field as normalization set it.

use serde_json::Value;

use crate::filter::parser::is_attr_name;
use crate::filter::{AttrPath, parse_attr_path};
use crate::json::get_ci;
use crate::resource::{NormalizedUser as UserFields, lookup};

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

/// Where a mapping reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcePath {
    /// A SCIM attribute path (at most one sub-attribute).
    Scim(AttrPath),
    /// `name.name.name…`: deeper objects of a pulled source's record.
    Dotted(Vec<String>),
}

impl SourcePath {
    /// Its names from the top of the document, without a schema URN.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Self::Scim(p) => std::iter::once(p.name.as_str())
                .chain(p.sub_attr.as_deref())
                .collect(),
            Self::Dotted(names) => names.iter().map(String::as_str).collect(),
        }
    }

    /// Whether the path is a top-level name with neither schema nor
    /// sub-attribute (an LDAP attribute).
    pub fn is_plain(&self) -> bool {
        matches!(self, Self::Scim(p) if p.schema.is_none() && p.sub_attr.is_none())
    }
}

/// Parses a mapping's source.
pub fn source_path(text: &str) -> Result<SourcePath, String> {
    let scim = match parse_attr_path(text) {
        Ok(path) => return Ok(SourcePath::Scim(path)),
        Err(e) => e.detail,
    };
    let names: Vec<String> = text.split('.').map(str::to_owned).collect();
    if text.contains(':') || names.len() < 3 || !names.iter().all(|n| is_attr_name(n)) {
        return Err(scim);
    }
    Ok(SourcePath::Dotted(names))
}

/// Checks one mapping: the source must be an attribute path and the target
/// a known field or `custom:<key>`.
pub fn check(source: &str, target_text: &str) -> Result<(), String> {
    source_path(source).map_err(|detail| format!("mapping source {source:?}: {detail}"))?;
    target(target_text).ok_or_else(|| {
        format!(
            "mapping target {target_text:?} is neither a mappable field (external_id, display_name, given_name, \
             family_name, title, department, manager_id, employee_number) nor custom:<key>"
        )
    })?;
    Ok(())
}

/// Applies `(source, target)` mappings to `fields` from `document` (the
/// user's SCIM JSON, or a pulled source's record). Mappings that do not
/// parse (stored before validation existed) are skipped.
pub fn apply<'a>(
    mappings: impl IntoIterator<Item = (&'a str, &'a str)>,
    document: &Value,
    fields: &mut UserFields,
) {
    for (source, target_text) in mappings {
        let (Ok(path), Some(target)) = (source_path(source), target(target_text)) else {
            continue;
        };
        if let Some(value) = source_text(document, &path) {
            write(fields, target, value);
        }
    }
}

fn source_text(document: &Value, path: &SourcePath) -> Option<String> {
    match path {
        SourcePath::Scim(path) => lookup(document, path).and_then(scalar_text),
        SourcePath::Dotted(names) => names
            .iter()
            .try_fold(document, |value, name| match value {
                Value::Object(o) => get_ci(o, name),
                // A multi-valued step: its primary (else first) element.
                Value::Array(items) => items
                    .iter()
                    .find(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
                    .or(items.first())
                    .and_then(|i| i.as_object())
                    .and_then(|o| get_ci(o, name)),
                _ => None,
            })
            .and_then(scalar_text),
    }
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
    fn validation_rejects_unknown_targets_and_bad_paths() {
        assert!(check("title", "custom:t").is_ok());
        assert!(check("customSchemas.EmployeeData.costCenter", "custom:t").is_ok());
        assert!(check("title", "userName").is_err());
        assert!(check("a..b", "title").is_err());
        assert!(check("urn:x:y.a.b", "title").is_err());
    }

    #[test]
    fn dotted_paths_walk_a_pulled_record() {
        let record = json!({
            "customSchemas": {"EmployeeData": {"costCenter": "CC-9",
                "projects": [{"type": "work", "value": "apollo"}]}},
            "organizations": [{"costCenter": "CC-1"}, {"costCenter": "CC-2", "primary": true}],
            "employeeNumber": ["42"]
        });
        let mut fields = UserFields::default();
        let mappings = [
            (
                "customSchemas.EmployeeData.costCenter",
                "custom:cost_center",
            ),
            ("customschemas.employeedata.projects", "custom:project"),
            ("organizations.costCenter", "custom:org_cost_center"),
            ("employeeNumber", "employee_number"),
            ("customSchemas.Missing.field", "title"),
        ];
        apply(mappings, &record, &mut fields);
        let custom = |k: &str| fields.custom_attributes.get(k).map(String::as_str);
        assert_eq!(custom("cost_center"), Some("CC-9"));
        assert_eq!(custom("project"), Some("apollo"));
        assert_eq!(custom("org_cost_center"), Some("CC-2"));
        assert_eq!(fields.employee_number.as_deref(), Some("42"));
        assert_eq!(fields.title, None);
        assert_eq!(
            source_path("customSchemas.EmployeeData.costCenter")
                .unwrap()
                .names(),
            ["customSchemas", "EmployeeData", "costCenter"]
        );
        assert!(source_path("employeeNumber").unwrap().is_plain());
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
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division",
                "department",
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
                "custom:cost_center",
            ),
            ("nickName", "custom:nick"),
        ];
        apply(mappings, &raw, &mut fields);
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
