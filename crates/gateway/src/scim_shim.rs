//! Stand-ins for the roster-scim modules (list, projection, discovery,
//! resource constants) until that crate exports them; then removed.
#![allow(missing_docs, dead_code)]
pub mod resource {
    pub use roster_scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
    pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
    pub const BULK_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
}
pub mod patch {
    pub use roster_scim::ResourceKind;
}
pub mod list {
    use serde_json::{Value, json};
    pub fn list_response(r: Vec<Value>, total: i64, start: i64) -> Value {
        json!({"schemas":[super::resource::LIST_RESPONSE_SCHEMA],"totalResults":total,"itemsPerPage":r.len(),"startIndex":start,"Resources":r})
    }
}
pub mod projection {
    use roster_scim::ResourceKind;
    use roster_scim::error::ScimError;
    use roster_scim::filter::{AttrPath, parse_attr_path};
    use serde_json::Value;
    pub fn parse_attribute_list(s: &str) -> Result<Vec<AttrPath>, ScimError> {
        s.split(',').map(|p| parse_attr_path(p.trim())).collect()
    }
    pub fn project(v: &mut Value, _k: ResourceKind, attrs: &[AttrPath], excl: &[AttrPath]) {
        if let Value::Object(o) = v {
            let always = ["id", "schemas", "meta"];
            o.retain(|k, _| {
                always.contains(&k.as_str())
                    || ((attrs.is_empty() || attrs.iter().any(|a| a.name.eq_ignore_ascii_case(k)))
                        && !excl
                            .iter()
                            .any(|a| a.sub_attr.is_none() && a.name.eq_ignore_ascii_case(k)))
            });
        }
    }
}
pub mod discovery {
    use serde_json::{Value, json};
    pub struct ServiceProviderOptions {
        pub documentation_uri: Option<String>,
        pub max_results: i64,
        pub bulk_max_operations: i64,
        pub bulk_max_payload_bytes: i64,
        pub etag: bool,
        pub sort: bool,
        pub filter: bool,
        pub change_password: bool,
    }
    pub fn service_provider_config(o: &ServiceProviderOptions, base: &str) -> Value {
        json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch":{"supported":true},"bulk":{"supported":true,"maxOperations":o.bulk_max_operations,"maxPayloadSize":o.bulk_max_payload_bytes},
            "filter":{"supported":o.filter,"maxResults":o.max_results},"changePassword":{"supported":o.change_password},
            "sort":{"supported":o.sort},"etag":{"supported":o.etag},
            "authenticationSchemes":[{"type":"oauthbearertoken","name":"OAuth Bearer Token","description":"x"}],
            "meta":{"resourceType":"ServiceProviderConfig","location":format!("{base}/ServiceProviderConfig")}})
    }
    pub fn schemas(base: &str) -> Vec<Value> {
        vec![
            json!({"id":"urn:ietf:params:scim:schemas:core:2.0:User","meta":{"location":format!("{base}/Schemas/x")}}),
        ]
    }
    pub fn schema(base: &str, id: &str) -> Option<Value> {
        schemas(base).into_iter().find(|s| s["id"] == id)
    }
    pub fn resource_types(base: &str) -> Vec<Value> {
        vec![
            json!({"id":"User","endpoint":"/Users","meta":{"location":format!("{base}/ResourceTypes/User")}}),
            json!({"id":"Group","endpoint":"/Groups","meta":{"location":format!("{base}/ResourceTypes/Group")}}),
        ]
    }
    pub fn resource_type(base: &str, id: &str) -> Option<Value> {
        resource_types(base).into_iter().find(|s| s["id"] == id)
    }
}
