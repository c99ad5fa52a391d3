//! The SCIM dialect of a request: 2.0 under `/scim/v2/`, 1.1 under
//! `/scim/v1/`. Both reach the same directories, tokens and
//! directory-service calls; only the JSON at the edge differs, and the
//! `roster_scim::v1` codec translates it. Everything dialect-specific in
//! the gateway goes through this type.

use std::borrow::Cow;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use roster_scim::ResourceKind;
use roster_scim::error::ScimError;
use roster_scim::v1;
use serde_json::Value;

/// Which SCIM version a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// SCIM 2.0 (RFC 7643/7644), the model's own form.
    #[default]
    V2,
    /// SCIM 1.1 (`urn:scim:schemas:core:1.0`), translated at the edge.
    V1,
}

/// The error a response carries, kept so that the dialect layer can
/// render it in the request's dialect after the handler has answered.
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub ScimError);

impl Dialect {
    /// The dialect of a request path.
    pub fn of_path(path: &str) -> Dialect {
        match path.starts_with("/scim/v1/") {
            true => Dialect::V1,
            false => Dialect::V2,
        }
    }

    /// The version segment of its URLs (`/scim/{segment}/{directory_id}`).
    pub fn segment(self) -> &'static str {
        match self {
            Dialect::V2 => "v2",
            Dialect::V1 => "v1",
        }
    }

    /// A resource body of a POST or PUT, as the model's 2.0 body (2.0
    /// bodies are not copied).
    pub fn resource_in(
        self,
        kind: ResourceKind,
        body: &Value,
    ) -> Result<Cow<'_, Value>, ScimError> {
        match self {
            Dialect::V2 => Ok(Cow::Borrowed(body)),
            Dialect::V1 => Ok(Cow::Owned(v1::resource::resource_to_v2(
                kind,
                body.clone(),
            )?)),
        }
    }

    /// A PATCH body, as a 2.0 PatchOp; `None` for a 1.1 PATCH that
    /// changes nothing (2.0 has no empty PatchOp to send for it).
    pub fn patch_in(
        self,
        kind: ResourceKind,
        body: &Value,
    ) -> Result<Option<Cow<'_, Value>>, ScimError> {
        match self {
            Dialect::V2 => Ok(Some(Cow::Borrowed(body))),
            Dialect::V1 => Ok(v1::patch::patch_to_v2(kind, body.clone())?.map(Cow::Owned)),
        }
    }

    /// A query parameter's value, as 2.0 text: 1.1 filters, `sortBy` and
    /// `attributes` name attributes in the 1.1 way.
    pub fn query_in(self, name: &str, value: String) -> Result<String, ScimError> {
        if self == Dialect::V2 {
            return Ok(value);
        }
        match name.to_ascii_lowercase().as_str() {
            "filter" if !value.trim().is_empty() => Ok(v1::names::filter_to_v2(&value)?),
            "sortby" | "attributes" | "excludedattributes" => Ok(v1::names::names_to_v2(&value)),
            _ => Ok(value),
        }
    }

    /// A rendered (and projected) resource, in this dialect.
    pub fn resource_out(self, body: Value) -> Value {
        match self {
            Dialect::V2 => body,
            Dialect::V1 => v1::resource::resource_to_v1(body),
        }
    }

    /// A rendered group member, in this dialect.
    pub fn member_out(self, member: Value) -> Value {
        match self {
            Dialect::V2 => member,
            Dialect::V1 => v1::resource::member_to_v1(member),
        }
    }

    /// A list response around `resources` (already in this dialect).
    pub fn list_response(self, resources: Vec<Value>, total: i64, start_index: i64) -> Value {
        match self {
            Dialect::V2 => roster_scim::list::list_response(resources, total, start_index),
            Dialect::V1 => v1::message::list_response(resources, total, start_index),
        }
    }

    /// The error body of `error`.
    pub fn error_body(self, error: &ScimError) -> Value {
        match self {
            Dialect::V2 => error.to_json(),
            Dialect::V1 => v1::message::error_body(error),
        }
    }
}

/// Media type of 1.1 bodies: `application/scim+json` came with 2.0.
const V1_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Renders every error answered under `/scim/v1/` — by a handler, the
/// token check, a limit, the timeout or the 404/405 fallbacks — as a 1.1
/// error, with its status and headers unchanged (`observe` calls it on
/// every response, having told the extractors and handlers the dialect).
pub fn answer_in(dialect: Dialect, mut response: Response) -> Response {
    if dialect == Dialect::V2 {
        return response;
    }
    if let Some(ErrorMessage(error)) = response.extensions_mut().remove::<ErrorMessage>() {
        let bytes = serde_json::to_vec(&dialect.error_body(&error)).unwrap_or_default();
        response.headers_mut().remove(header::CONTENT_LENGTH);
        *response.body_mut() = Body::from(bytes);
    }
    if response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(V1_CONTENT_TYPE),
        );
    }
    response
}
