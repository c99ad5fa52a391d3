//! Building SCIM HTTP responses.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

/// Media type of every SCIM response body (RFC 7644 §3.1).
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json; charset=utf-8";

/// A response with a SCIM JSON body.
pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    scim_body(status, Body::from(bytes))
}

/// A response whose body is SCIM JSON, possibly still being written.
pub fn scim_body(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    response
}

/// A response without a body (204, 304).
pub fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// Adds an `ETag` header; values that are not valid header text are skipped.
pub fn with_etag(mut response: Response, etag: Option<&str>) -> Response {
    if let Some(value) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Adds a `Location` header.
pub fn with_location(mut response: Response, location: Option<&str>) -> Response {
    if let Some(value) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
