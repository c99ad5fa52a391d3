//! Roster's SCIM 2.0 REST gateway.
//!
//! Identity providers call `{public_url}/scim/v2/{directory_id}/...` with a
//! bearer token of that directory. The gateway holds no database: it checks
//! the token through `AdminService.AuthenticateToken`, turns each SCIM call
//! into `DirectoryService` gRPC and renders the answer as SCIM JSON
//! (RFC 7643 / RFC 7644). SCIM 1.1 clients call `/scim/v1/{directory_id}/...`
//! instead and reach the same handlers, translated at the edge (`dialect`).
//! See `docs/scim.md` for the surface and its limits.

pub mod activity;
pub mod auth;
pub mod body;
pub mod bulk;
pub mod client;
pub mod config;
pub mod dialect;
pub mod discovery;
pub mod error;
pub mod etag;
pub mod handlers;
pub mod keep_alive;
pub mod listen;
pub mod lookups;
mod lru;
pub mod members;
pub mod observe;
pub mod path;
pub mod pool;
pub mod portal;
pub mod query;
pub mod ratelimit;
pub mod remote;
pub mod render;
pub mod resources;
pub mod response;
pub mod state;
pub mod token_cache;
pub mod upstream;
pub mod wire_errors;

use std::future::Future;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{get, post};
use roster_scim::error::ScimError;
use serde_json::json;
use tokio::net::TcpListener;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

pub use config::GatewayConfig;
pub use error::GatewayError;
pub use state::{AppState, StartError};

use crate::handlers::{self as h, Write};
use crate::observe::CallMeta;
use crate::render::Kind;
use crate::resources::Ctx;
use crate::response::scim_json;

/// Health-checked service name: SERVING only while its database answers.
const DIRECTORY_SERVICE_NAME: &str = "roster.directory.v1.DirectoryService";

/// Prefix of every SCIM 2.0 route.
const SCIM: &str = "/scim/v2/{directory_id}";

/// Prefix of every SCIM 1.1 route (`path::normalize_request` also maps the
/// `…/v1/Users` and `….json` spellings of 1.1 clients onto these).
const SCIM_V1: &str = "/scim/v1/{directory_id}";

/// Serves the gateway on `listener` until `shutdown` completes, then drains
/// in-flight requests.
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    serve_state(AppState::new(config)?, listener, shutdown).await
}

/// [`serve`] with a state built by the caller (e.g. with
/// [`AppState::with_direct`]).
pub async fn serve_state(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    // Small responses must not wait for Nagle's algorithm (the directory
    // service's gRPC listener showed a 40 ms stall per call without it).
    // Requests hyper refuses before routing still get a SCIM error body
    // (inside `tap_io`, which still hands out the peer address).
    let listener = wire_errors::WithErrorBodies(listener);
    let listener = axum::serve::ListenerExt::tap_io(listener, |io| {
        let _ = io.get_ref().set_nodelay(true);
    });
    // Paths are normalized before routing (a layer on the Router would run
    // after the route was chosen); the peer address feeds the limits applied
    // before authentication.
    let idle_timeout = state.config().idle_timeout;
    let app = tower::Layer::layer(
        &tower::util::MapRequestLayer::new(path::normalize_request),
        router(state),
    );
    listen::serve(listener, app, idle_timeout, shutdown).await;
    Ok(())
}

/// Serves only the admin portal on `listener` (its own address, e.g. one
/// reachable from customers' browsers but not from IdPs), with the same
/// request ids, spans and metrics as the SCIM listener.
pub async fn serve_portal(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = portal::routes()
        .fallback(not_found_page)
        .layer(from_fn_with_state(state.clone(), observe::observe))
        .with_state(state.clone());
    listen::serve(listener, app, state.config().idle_timeout, shutdown).await;
    Ok(())
}

async fn not_found_page() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// The complete HTTP application.
pub fn router(state: AppState) -> Router {
    let portal = if state.config().portal && !state.config().portal_own_listener {
        portal::routes()
    } else {
        Router::new()
    };
    Router::new()
        .merge(scim_routes(state.clone()))
        .merge(portal)
        .merge(scim_v1_routes(state.clone()))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}

/// The routes of one resource type under `prefix`: its collection and its
/// resources.
fn resource_routes(router: Router<AppState>, prefix: &str, kind: Kind) -> Router<AppState> {
    let r = |path: &str| format!("{prefix}/{}{path}", kind.endpoint());
    router
        .route(
            &r(""),
            get(move |c: Ctx, q| h::list(kind, c, q))
                .post(move |c: Ctx, q, b| h::create(kind, c, q, b)),
        )
        .route(
            &r("/{id}"),
            get(move |c: Ctx, i, q, hd| h::get(kind, c, i, q, hd))
                .put(move |c: Ctx, i, q, hd, b| h::write(Write::Replace, kind, c, i, q, hd, b))
                .patch(move |c: Ctx, i, q, hd, b| h::write(Write::Patch, kind, c, i, q, hd, b))
                .delete(move |c: Ctx, i, hd| h::delete(kind, c, i, hd)),
        )
}

/// A resource type's 2.0 `.search` (1.1 has none).
fn search_route(router: Router<AppState>, kind: Kind) -> Router<AppState> {
    let path = format!("{SCIM}/{}/.search", kind.endpoint());
    router.route(&path, post(move |c: Ctx, b| h::search(kind, c, b)))
}

/// The `/scim/v2/{directory_id}` routes, all behind the token check.
fn scim_routes(state: AppState) -> Router<AppState> {
    let r = |path: &str| format!("{SCIM}{path}");
    let resources = resource_routes(
        resource_routes(Router::new(), SCIM, Kind::User),
        SCIM,
        Kind::Group,
    );
    search_route(search_route(resources, Kind::User), Kind::Group)
        .route(&r("/.search"), post(h::search_all))
        .route(&r("/Bulk"), post(bulk::handle))
        .route(
            &r("/ServiceProviderConfig"),
            get(discovery::get_service_provider_config),
        )
        .route(&r("/Schemas"), get(discovery::list_schemas))
        .route(&r("/Schemas/{id}"), get(discovery::get_schema))
        .route(&r("/ResourceTypes"), get(discovery::list_resource_types))
        .route(&r("/ResourceTypes/{id}"), get(discovery::get_resource_type))
        .route(&r("/Me"), get(me).post(me).put(me).patch(me).delete(me))
        .route_layer(from_fn_with_state(
            state.clone(),
            auth::require_directory_token,
        ))
        .route_layer(from_fn_with_state(state, activity::record))
}

/// The `/scim/v1/{directory_id}` routes: the same handlers, directory
/// calls and token check as 2.0, read and answered in 1.1
/// (`dialect::Dialect`). 1.1 discovery is `/ServiceProviderConfigs`
/// (the singular is accepted too) and `/Schemas`; 1.1 Bulk is not offered.
fn scim_v1_routes(state: AppState) -> Router<AppState> {
    let r = |path: &str| format!("{SCIM_V1}{path}");
    let provider_config = get(discovery::get_service_provider_config);
    resource_routes(
        resource_routes(Router::new(), SCIM_V1, Kind::User),
        SCIM_V1,
        Kind::Group,
    )
    .route(&r("/ServiceProviderConfigs"), provider_config.clone())
    .route(&r("/ServiceProviderConfig"), provider_config)
    .route(&r("/Schemas"), get(discovery::list_schemas))
    .route(&r("/Schemas/{id}"), get(discovery::get_schema))
    .route(&r("/Bulk"), post(v1_bulk))
    .route_layer(from_fn_with_state(
        state.clone(),
        auth::require_directory_token,
    ))
    .route_layer(from_fn_with_state(state, activity::record))
}

/// 1.1 Bulk messages are not translated; 2.0 Bulk serves the same directory.
async fn v1_bulk() -> Result<Response, GatewayError> {
    Err(ScimError::new(
        501,
        None,
        "Bulk is not offered over SCIM 1.1; use the /scim/v2 endpoint of this directory",
    )
    .into())
}

/// `/healthz`: the process is up.
async fn healthz() -> Response {
    scim_json(StatusCode::OK, &json!({ "status": "ok" }))
}

/// `/readyz`: the directory service answers its health check with SERVING.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let request = state.grpc(
        HealthCheckRequest {
            service: DIRECTORY_SERVICE_NAME.to_owned(),
        },
        &CallMeta::generate(),
    );
    let serving = match state.health().check(request).await {
        Ok(r) => r.into_inner().status() == ServingStatus::Serving,
        Err(_) => false,
    };
    if serving {
        scim_json(StatusCode::OK, &json!({ "status": "ready" }))
    } else {
        scim_json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "directory service not serving" }),
        )
    }
}

/// `/Me` is not offered: tokens belong to directories, not users
/// (RFC 7644 §3.11 allows 501).
async fn me() -> Result<Response, GatewayError> {
    Err(ScimError::new(501, None, "the /Me endpoint is not supported").into())
}

async fn not_found() -> GatewayError {
    ScimError::not_found("no such endpoint").into()
}

async fn method_not_allowed() -> GatewayError {
    ScimError::new(405, None, "method not allowed on this endpoint").into()
}
