//! A directory's attribute mappings (`roster_scim::mapping`), checked and
//! applied with the store's mapping rows.

use roster_scim::mapping;
use roster_store::{AttributeMapping, UserFields};
use serde_json::Value;

use crate::error::{ServiceError, ServiceResult};

/// Checks every mapping: the source must be an attribute path and the
/// target a known field or `custom:<key>`.
pub fn validate(mappings: &[AttributeMapping]) -> ServiceResult<()> {
    for m in mappings {
        mapping::check(&m.source, &m.target).map_err(ServiceError::InvalidArgument)?;
    }
    Ok(())
}

/// Applies `mappings` to `fields` from the user's SCIM JSON.
pub fn apply(mappings: &[AttributeMapping], raw: &Value, fields: &mut UserFields) {
    mapping::apply(pairs(mappings), raw, fields);
}

fn pairs(mappings: &[AttributeMapping]) -> impl Iterator<Item = (&str, &str)> {
    mappings
        .iter()
        .map(|m| (m.source.as_str(), m.target.as_str()))
}
