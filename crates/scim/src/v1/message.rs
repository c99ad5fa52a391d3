//! SCIM 1.1 messages: errors, list responses and the discovery documents.

use serde_json::{Map, Value, json};

use crate::discovery::ServiceProviderOptions;
use crate::error::ScimError;
use crate::schema::{
    AttrType, AttributeDef, COMMON_ATTRIBUTES, ENTERPRISE_USER, GROUP, Mutability, SchemaDef, USER,
};

use super::{CORE_SCHEMA, ENTERPRISE_SCHEMA};

/// A SCIM 1.1 error body: `{"Errors": [{"description", "code"}]}`, the
/// code being the HTTP status as a string (1.1 has no `scimType`).
///
/// ```
/// use roster_scim::{v1::message::error_body, ScimError};
/// let body = error_body(&ScimError::not_found("no such user"));
/// assert_eq!(body, serde_json::json!({"Errors": [{"description": "no such user", "code": "404"}]}));
/// ```
pub fn error_body(error: &ScimError) -> Value {
    json!({"Errors": [{"description": error.detail, "code": error.status.to_string()}]})
}

/// A SCIM 1.1 list response (no message URN: `schemas` is the core schema).
///
/// ```
/// use roster_scim::v1::message::list_response;
/// let page = list_response(vec![serde_json::json!({"id": "1"})], 7, 1);
/// assert_eq!(page["schemas"][0], "urn:scim:schemas:core:1.0");
/// assert_eq!((page["totalResults"].as_i64(), page["itemsPerPage"].as_i64()), (Some(7), Some(1)));
/// ```
pub fn list_response(resources: Vec<Value>, total_results: i64, start_index: i64) -> Value {
    let mut page = json!({
        "schemas": [CORE_SCHEMA],
        "totalResults": total_results,
        "itemsPerPage": resources.len(),
        "startIndex": start_index,
    });
    // Moved in, not through `json!`, which would serialize a deep copy.
    page["Resources"] = Value::Array(resources);
    page
}

/// The 1.1 `/ServiceProviderConfigs` document. Bulk is not offered over
/// 1.1 (its 1.1 message shapes are not translated).
pub fn service_provider_config(opts: &ServiceProviderOptions, base_url: &str) -> Value {
    let mut doc = json!({
        "schemas": [CORE_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": opts.filter, "maxResults": opts.max_results},
        "changePassword": {"supported": opts.change_password},
        "sort": {"supported": opts.sort},
        "etag": {"supported": opts.etag},
        "xmlDataFormat": {"supported": false},
        "authenticationSchemes": [{
            "name": "OAuth Bearer Token",
            "description": "Authentication scheme using the OAuth Bearer Token Standard",
            "specUrl": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true,
        }],
        "meta": {"location": format!("{}/ServiceProviderConfigs", base_url.trim_end_matches('/'))},
    });
    if let (Some(uri), Some(obj)) = (&opts.documentation_uri, doc.as_object_mut()) {
        obj.insert("documentationUrl".into(), uri.clone().into());
    }
    doc
}

/// A 1.1 schema document: which schema, resource and endpoint it
/// describes, and the 2.0 definition it is generated from.
struct V1Schema {
    id: &'static str,
    name: &'static str,
    schema: &'static str,
    endpoint: &'static str,
    def: &'static SchemaDef,
    /// Whether `id`, `externalId` and `meta` are listed (core schemas).
    common: bool,
}

static SCHEMAS: [V1Schema; 3] = [
    V1Schema {
        id: "urn:scim:schemas:core:1.0:User",
        name: "User",
        schema: CORE_SCHEMA,
        endpoint: "/Users",
        def: &USER,
        common: true,
    },
    V1Schema {
        id: ENTERPRISE_SCHEMA,
        name: "EnterpriseUser",
        schema: ENTERPRISE_SCHEMA,
        endpoint: "/Users",
        def: &ENTERPRISE_USER,
        common: false,
    },
    V1Schema {
        id: "urn:scim:schemas:core:1.0:Group",
        name: "Group",
        schema: CORE_SCHEMA,
        endpoint: "/Groups",
        def: &GROUP,
        common: true,
    },
];

/// The 1.1 User, enterprise extension and Group schema documents,
/// generated from the same definitions as the 2.0 ones.
pub fn schemas(base_url: &str) -> Vec<Value> {
    SCHEMAS.iter().map(|s| schema_json(s, base_url)).collect()
}

/// One 1.1 schema document by its id or by its resource or endpoint name
/// (`/Schemas/Users`, as 1.1 clients ask), ignoring case.
///
/// ```
/// use roster_scim::v1::message::schema;
/// let users = schema("https://h/scim/v1/d", "Users").unwrap();
/// assert_eq!(users["id"], "urn:scim:schemas:core:1.0:User");
/// assert!(schema("https://h/scim/v1/d", "Nope").is_none());
/// ```
pub fn schema(base_url: &str, id: &str) -> Option<Value> {
    let wanted = |s: &V1Schema| {
        [s.id, s.name, s.endpoint.trim_start_matches('/')]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(id))
    };
    SCHEMAS
        .iter()
        .find(|s| wanted(s))
        .map(|s| schema_json(s, base_url))
}

fn schema_json(s: &V1Schema, base_url: &str) -> Value {
    let common = COMMON_ATTRIBUTES.iter().filter(|_| s.common);
    let attributes: Vec<Value> = common
        .chain(s.def.attributes)
        .map(|d| attribute_json(d, s.schema, None))
        .collect();
    json!({
        "id": s.id,
        "name": s.name,
        "description": s.def.description,
        "schema": s.schema,
        "endpoint": s.endpoint,
        "attributes": attributes,
        "meta": {"location": format!("{}/Schemas/{}", base_url.trim_end_matches('/'), s.id)},
    })
}

/// A 1.1 attribute definition (draft-scim-core-schema-01 §10): no
/// `mutability`/`returned`, but `readOnly` and `schema`; no `reference`
/// type nor `$ref`; the enterprise manager's id is `managerId`.
fn attribute_json(def: &AttributeDef, schema: &str, parent: Option<&str>) -> Value {
    let name = match (parent, def.name) {
        (Some("manager"), "value") => "managerId",
        (_, name) => name,
    };
    let mut o = Map::new();
    o.insert("name".into(), name.into());
    o.insert("type".into(), v1_type(def.ty).into());
    o.insert("multiValued".into(), def.multi_valued.into());
    if def.multi_valued {
        o.insert(
            "multiValuedAttributeChildName".into(),
            child_name(def.name).into(),
        );
    }
    o.insert("description".into(), def.description.into());
    o.insert("schema".into(), schema.into());
    o.insert(
        "readOnly".into(),
        (def.mutability == Mutability::ReadOnly).into(),
    );
    o.insert("required".into(), def.required.into());
    o.insert("caseExact".into(), def.case_exact.into());
    if def.ty == AttrType::Complex {
        let subs: Vec<Value> = def
            .sub_attributes
            .iter()
            .filter(|d| d.name != "$ref" && d.name != "resourceType")
            .map(|d| attribute_json(d, schema, Some(def.name)))
            .collect();
        o.insert("subAttributes".into(), Value::Array(subs));
    }
    Value::Object(o)
}

fn v1_type(ty: AttrType) -> &'static str {
    match ty {
        AttrType::Reference => "string",
        other => other.as_str(),
    }
}

/// The 1.1 name of one value of a multi-valued attribute
/// (`emails` → `email`, `addresses` → `address`).
fn child_name(name: &str) -> String {
    if let Some(stem) = name.strip_suffix("sses") {
        format!("{stem}ss")
    } else {
        name.strip_suffix('s').unwrap_or(name).to_owned()
    }
}
