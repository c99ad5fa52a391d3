//! Discovery endpoints (RFC 7644 §4): ServiceProviderConfig, Schemas,
//! ResourceTypes. They require a token like every SCIM endpoint, because
//! the IdPs send one anyway and the URL carries a directory id.

use axum::http::StatusCode;
use roster_scim::discovery::{
    ServiceProviderOptions, resource_type, resource_types, schema, schemas, service_provider_config,
};
use roster_scim::error::ScimError;
use roster_scim::v1;
use serde_json::Value;

use crate::config::GatewayConfig;
use crate::dialect::Dialect;
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

/// `GET /ServiceProviderConfig` (1.1: `/ServiceProviderConfigs`).
pub async fn get_service_provider_config(ctx: Ctx) -> HandlerResult {
    let options = provider_options(ctx.state().config());
    let body = match ctx.dialect() {
        Dialect::V2 => service_provider_config(&options, ctx.scim_base()),
        Dialect::V1 => v1::message::service_provider_config(&options, ctx.scim_base()),
    };
    Ok(scim_json(StatusCode::OK, &body))
}

/// `GET /Schemas`.
pub async fn list_schemas(ctx: Ctx) -> HandlerResult {
    let items = match ctx.dialect() {
        Dialect::V2 => schemas(ctx.scim_base()),
        Dialect::V1 => v1::message::schemas(ctx.scim_base()),
    };
    listed(&ctx, items)
}

/// `GET /Schemas/{id}` (1.1 clients also ask `/Schemas/Users`).
pub async fn get_schema(ctx: Ctx, ResourceId(id): ResourceId) -> HandlerResult {
    let item = match ctx.dialect() {
        Dialect::V2 => schema(ctx.scim_base(), &id),
        Dialect::V1 => v1::message::schema(ctx.scim_base(), &id),
    };
    found(item, "schema", &id)
}

/// `GET /ResourceTypes`.
pub async fn list_resource_types(ctx: Ctx) -> HandlerResult {
    listed(&ctx, resource_types(ctx.scim_base()))
}

/// `GET /ResourceTypes/{id}`.
pub async fn get_resource_type(ctx: Ctx, ResourceId(id): ResourceId) -> HandlerResult {
    found(resource_type(ctx.scim_base(), &id), "resource type", &id)
}

/// Every item of a discovery endpoint, as one list response page.
fn listed(ctx: &Ctx, items: Vec<Value>) -> HandlerResult {
    let total = items.len() as i64;
    let page = ctx.dialect().list_response(items, total, 1);
    Ok(scim_json(StatusCode::OK, &page))
}

/// One discovery item, or 404 naming `what` was not found.
fn found(item: Option<Value>, what: &str, id: &str) -> HandlerResult {
    let body = item.ok_or_else(|| ScimError::not_found(format!("{what} {id} not found")))?;
    Ok(scim_json(StatusCode::OK, &body))
}
