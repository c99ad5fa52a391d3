//! Discovery documents (RFC 7643 §5–§6, RFC 7644 §4): ServiceProviderConfig,
//! Schemas and ResourceTypes, generated from the same definitions in
//! [`crate::schema`] that drive validation, projection and filtering.

use serde_json::{Map, Value, json};

use crate::filter::AttrPath;
use crate::schema::{ALL_SCHEMAS, AttrType, AttributeDef, ResourceKind, SchemaDef, attribute_def};

/// ServiceProviderConfig schema URN.
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// Schema (meta-schema) URN.
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// ResourceType schema URN.
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";

/// What the deployment supports, for the ServiceProviderConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProviderOptions {
    /// Human-readable help URL.
    pub documentation_uri: Option<String>,
    /// Largest page a list request returns.
    pub max_results: i64,
    /// Bulk operations per request; 0 disables bulk.
    pub bulk_max_operations: i64,
    /// Bulk payload limit in bytes.
    pub bulk_max_payload_bytes: i64,
    /// Whether ETags are supported.
    pub etag: bool,
    /// Whether `sortBy` is supported.
    pub sort: bool,
    /// Whether `filter` is supported.
    pub filter: bool,
    /// Whether password changes are supported.
    pub change_password: bool,
}

fn base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

/// The ServiceProviderConfig document.
///
/// ```
/// use roster_scim::discovery::{service_provider_config, ServiceProviderOptions};
/// let doc = service_provider_config(&ServiceProviderOptions {
///     documentation_uri: None, max_results: 200, bulk_max_operations: 0,
///     bulk_max_payload_bytes: 0, etag: true, sort: true, filter: true, change_password: false,
/// }, "https://scim.example.com/v2/");
/// assert_eq!(doc["patch"]["supported"], true);
/// assert_eq!(doc["bulk"]["supported"], false);
/// assert_eq!(doc["meta"]["location"], "https://scim.example.com/v2/ServiceProviderConfig");
/// ```
pub fn service_provider_config(opts: &ServiceProviderOptions, base_url: &str) -> Value {
    let mut doc = json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "patch": {"supported": true},
        "bulk": {
            "supported": opts.bulk_max_operations > 0,
            "maxOperations": opts.bulk_max_operations,
            "maxPayloadSize": opts.bulk_max_payload_bytes,
        },
        "filter": {"supported": opts.filter, "maxResults": opts.max_results},
        "changePassword": {"supported": opts.change_password},
        "sort": {"supported": opts.sort},
        "etag": {"supported": opts.etag},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication scheme using the OAuth Bearer Token Standard",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", base(base_url)),
        },
    });
    if let (Some(uri), Some(obj)) = (&opts.documentation_uri, doc.as_object_mut()) {
        obj.insert("documentationUri".into(), uri.clone().into());
    }
    doc
}

fn attribute_json(def: &AttributeDef) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), def.name.into());
    o.insert("type".into(), def.ty.as_str().into());
    o.insert("multiValued".into(), def.multi_valued.into());
    o.insert("description".into(), def.description.into());
    o.insert("required".into(), def.required.into());
    if def.ty != AttrType::Complex {
        o.insert("caseExact".into(), def.case_exact.into());
    }
    if !def.canonical_values.is_empty() {
        o.insert("canonicalValues".into(), json!(def.canonical_values));
    }
    if def.ty == AttrType::Reference {
        o.insert("referenceTypes".into(), json!(def.reference_types));
    }
    o.insert("mutability".into(), def.mutability.as_str().into());
    o.insert("returned".into(), def.returned.as_str().into());
    o.insert("uniqueness".into(), def.uniqueness.as_str().into());
    if def.ty == AttrType::Complex {
        let subs: Vec<Value> = def.sub_attributes.iter().map(attribute_json).collect();
        o.insert("subAttributes".into(), Value::Array(subs));
    }
    Value::Object(o)
}

fn schema_json(def: &SchemaDef, base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": def.id,
        "name": def.name,
        "description": def.description,
        "attributes": def.attributes.iter().map(attribute_json).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Schema",
            "location": format!("{}/Schemas/{}", base(base_url), def.id),
        },
    })
}

/// The User, EnterpriseUser and Group schema documents (RFC 7643 §8.7.1).
///
/// ```
/// let docs = roster_scim::discovery::schemas("https://h/scim/v2");
/// assert_eq!(docs.len(), 3);
/// assert_eq!(docs[0]["attributes"][0]["name"], "userName");
/// ```
pub fn schemas(base_url: &str) -> Vec<Value> {
    ALL_SCHEMAS
        .iter()
        .map(|d| schema_json(d, base_url))
        .collect()
}

/// One schema document by URN (case-insensitive).
///
/// ```
/// let doc = roster_scim::discovery::schema("https://h/v2",
///     "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user").unwrap();
/// assert_eq!(doc["name"], "EnterpriseUser");
/// ```
pub fn schema(base_url: &str, id: &str) -> Option<Value> {
    ALL_SCHEMAS
        .iter()
        .find(|d| d.id.eq_ignore_ascii_case(id))
        .map(|d| schema_json(d, base_url))
}

fn resource_type_json(kind: ResourceKind, base_url: &str) -> Value {
    let core = kind.core_schema();
    let extensions: Vec<Value> = kind
        .extensions()
        .iter()
        .map(|s| json!({"schema": s.id, "required": false}))
        .collect();
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": format!("/{}s", kind.name()),
        "description": core.description,
        "schema": core.id,
        "schemaExtensions": extensions,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{}/ResourceTypes/{}", base(base_url), kind.name()),
        },
    })
}

/// The User (with the Enterprise extension) and Group resource types.
///
/// ```
/// let types = roster_scim::discovery::resource_types("https://h/scim/v2");
/// assert_eq!(types[0]["endpoint"], "/Users");
/// assert_eq!(types[0]["schemaExtensions"][0]["required"], false);
/// ```
pub fn resource_types(base_url: &str) -> Vec<Value> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .map(|k| resource_type_json(k, base_url))
        .collect()
}

/// One resource type by id (`User`, `Group`; case-insensitive).
///
/// ```
/// let group = roster_scim::discovery::resource_type("https://h/v2", "group").unwrap();
/// assert_eq!(group["schema"], "urn:ietf:params:scim:schemas:core:2.0:Group");
/// ```
pub fn resource_type(base_url: &str, id: &str) -> Option<Value> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .find(|k| k.name().eq_ignore_ascii_case(id))
        .map(|k| resource_type_json(k, base_url))
}

/// Whether string comparisons on `path` are case-sensitive, from the schema
/// (`id`, `externalId`, `meta.version` … true; `userName`, `displayName`,
/// `emails.value` … false). Unknown attributes are case-insensitive. Used
/// by the evaluator and by the SQL translation.
///
/// ```
/// use roster_scim::{discovery::attribute_case_exact, filter::AttrPath, ResourceKind};
/// assert!(attribute_case_exact(ResourceKind::User, &AttrPath::new("externalId")));
/// assert!(!attribute_case_exact(ResourceKind::User, &AttrPath::new("USERNAME")));
/// ```
pub fn attribute_case_exact(kind: ResourceKind, path: &AttrPath) -> bool {
    attribute_def(kind, path).is_some_and(|d| d.case_exact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_documents_carry_rfc_characteristics() {
        let user = schema("https://h/v2", "URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER").unwrap();
        let attrs = user["attributes"].as_array().unwrap();
        let by_name = |n: &str| attrs.iter().find(|a| a["name"] == n).unwrap().clone();
        let user_name = by_name("userName");
        assert_eq!(user_name["required"], true);
        assert_eq!(user_name["uniqueness"], "server");
        assert_eq!(user_name["caseExact"], false);
        assert_eq!(by_name("password")["returned"], "never");
        assert_eq!(by_name("groups")["mutability"], "readOnly");
        let emails = by_name("emails");
        assert_eq!(emails["multiValued"], true);
        let subs = emails["subAttributes"].as_array().unwrap();
        assert!(
            subs.iter()
                .any(|s| s["name"] == "type" && s["canonicalValues"][0] == "work")
        );
        assert_eq!(
            user["meta"]["location"],
            format!("https://h/v2/Schemas/{}", crate::schema::USER_SCHEMA)
        );
        assert!(schema("https://h/v2", "urn:nope").is_none());
    }

    #[test]
    fn enterprise_and_group_schemas() {
        let ent = schema("h", crate::schema::ENTERPRISE_USER_SCHEMA).unwrap();
        let manager = ent["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "manager")
            .unwrap()
            .clone();
        assert_eq!(manager["subAttributes"].as_array().unwrap().len(), 3);
        let group = schema("h", crate::schema::GROUP_SCHEMA).unwrap();
        let members = &group["attributes"][1];
        assert_eq!(members["name"], "members");
        assert_eq!(
            members["subAttributes"][1]["referenceTypes"],
            json!(["User", "Group"])
        );
    }

    #[test]
    fn resource_type_lookup() {
        assert_eq!(resource_type("h", "group").unwrap()["endpoint"], "/Groups");
        assert_eq!(
            resource_type("h", "Group").unwrap()["schemaExtensions"],
            json!([])
        );
        assert!(resource_type("h", "Device").is_none());
    }

    #[test]
    fn case_exactness_from_the_same_definitions() {
        let k = ResourceKind::User;
        assert!(attribute_case_exact(k, &AttrPath::new("id")));
        assert!(attribute_case_exact(
            k,
            &AttrPath::with_sub("meta", "version")
        ));
        assert!(!attribute_case_exact(
            k,
            &AttrPath::with_sub("emails", "value")
        ));
        assert!(!attribute_case_exact(k, &AttrPath::new("nonexistent")));
        assert!(attribute_case_exact(
            ResourceKind::Group,
            &AttrPath::new("externalId")
        ));
        assert!(!attribute_case_exact(
            ResourceKind::Group,
            &AttrPath::new("displayName")
        ));
        let ext = AttrPath {
            schema: Some(crate::schema::ENTERPRISE_USER_SCHEMA.into()),
            name: "employeeNumber".into(),
            sub_attr: None,
        };
        assert!(!attribute_case_exact(k, &ext));
    }

    #[test]
    fn service_provider_config_reflects_options() {
        let opts = ServiceProviderOptions {
            documentation_uri: Some("https://docs".into()),
            max_results: 100,
            bulk_max_operations: 50,
            bulk_max_payload_bytes: 1_048_576,
            etag: false,
            sort: true,
            filter: true,
            change_password: false,
        };
        let doc = service_provider_config(&opts, "https://h/v2");
        assert_eq!(doc["documentationUri"], "https://docs");
        assert_eq!(
            doc["bulk"],
            json!({"supported": true, "maxOperations": 50, "maxPayloadSize": 1_048_576})
        );
        assert_eq!(doc["filter"]["maxResults"], 100);
        assert_eq!(doc["etag"]["supported"], false);
    }
}
