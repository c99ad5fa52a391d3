//! Discovery endpoints (RFC 7644 §4): ServiceProviderConfig, Schemas,
//! ResourceTypes. They require a token like every SCIM endpoint, because
//! the IdPs send one anyway and the URL carries a directory id.

use axum::http::StatusCode;
use roster_scim::discovery::{
    ServiceProviderOptions, resource_type, resource_types, schema, schemas, service_provider_config,
};
use roster_scim::error::ScimError;
use roster_scim::list::list_response;
use serde_json::Value;

use crate::config::GatewayConfig;
use crate::handlers::{HandlerResult, ResourceId};
use crate::resources::Ctx;
use crate::response::scim_json;

/// What ServiceProviderConfig advertises, from the gateway's limits.
pub fn provider_options(config: &GatewayConfig) -> ServiceProviderOptions {
    ServiceProviderOptions {
        documentation_uri: config.documentation_uri.clone(),
        max_results: config.max_results,
        bulk_max_operations: i64::try_from(config.bulk_max_operations).unwrap_or(i64::MAX),
        bulk_max_payload_bytes: i64::try_from(config.bulk_max_payload_bytes).unwrap_or(i64::MAX),
        etag: true,
        sort: true,
        filter: true,
        change_password: false,
    }
}

/// `GET /ServiceProviderConfig`.
pub async fn get_service_provider_config(ctx: Ctx) -> HandlerResult {
    let options = provider_options(ctx.state().config());
    let body = service_provider_config(&options, ctx.scim_base());
    Ok(scim_json(StatusCode::OK, &body))
}

/// `GET /Schemas`.
pub async fn list_schemas(ctx: Ctx) -> HandlerResult {
    Ok(scim_json(
        StatusCode::OK,
        &as_list(schemas(ctx.scim_base())),
    ))
}

/// `GET /Schemas/{id}`.
pub async fn get_schema(ctx: Ctx, ResourceId(id): ResourceId) -> HandlerResult {
    let body = schema(ctx.scim_base(), &id)
        .ok_or_else(|| ScimError::not_found(format!("schema {id} not found")))?;
    Ok(scim_json(StatusCode::OK, &body))
}

/// `GET /ResourceTypes`.
pub async fn list_resource_types(ctx: Ctx) -> HandlerResult {
    Ok(scim_json(
        StatusCode::OK,
        &as_list(resource_types(ctx.scim_base())),
    ))
}

/// `GET /ResourceTypes/{id}`.
pub async fn get_resource_type(ctx: Ctx, ResourceId(id): ResourceId) -> HandlerResult {
    let body = resource_type(ctx.scim_base(), &id)
        .ok_or_else(|| ScimError::not_found(format!("resource type {id} not found")))?;
    Ok(scim_json(StatusCode::OK, &body))
}

fn as_list(items: Vec<Value>) -> Value {
    let total = items.len() as i64;
    list_response(items, total, 1)
}
