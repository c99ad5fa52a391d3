//! HTTP handlers of the resource endpoints (RFC 7644 §3.3–§3.6).

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use roster_scim::error::ScimError;

use crate::body::JsonBody;
use crate::dialect::Dialect;
use crate::error::GatewayError;
use crate::etag::{IfMatch, format_etag, if_none_match_hits, parse_if_match};
use crate::members::{Rendered, list_body, resource_body};
use crate::query::{PageLimits, RawListParams, projection_from_pairs};
use crate::render::Kind;
use crate::resources::{Ctx, Listed, Outcome};
use crate::response::{empty, scim_body, with_etag, with_location};
use crate::state::AppState;

/// Result of every handler: a response or a SCIM error.
pub type HandlerResult = Result<Response, GatewayError>;

/// Query-string pairs; a malformed query string is a SCIM 400.
pub struct QueryPairs(pub Vec<(String, String)>);

impl FromRequestParts<AppState> for QueryPairs {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let query: Result<Query<Vec<(String, String)>>, QueryRejection> =
            Query::from_request_parts(parts, state).await;
        let Query(pairs) =
            query.map_err(|e| ScimError::invalid_value(format!("malformed query string: {e}")))?;
        // Filters and attribute names of another dialect become 2.0 here,
        // before anything reads them.
        let dialect = parts
            .extensions
            .get::<Dialect>()
            .copied()
            .unwrap_or_default();
        let pairs = pairs
            .into_iter()
            .map(|(name, value)| {
                let value = dialect.query_in(&name, value)?;
                Ok((name, value))
            })
            .collect::<Result<_, ScimError>>()?;
        Ok(Self(pairs))
    }
}

/// The `{id}` of a `/Users/{id}` or `/Groups/{id}` route.
pub struct ResourceId(pub String);

impl FromRequestParts<AppState> for ResourceId {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let path: Result<Path<(String, String)>, _> = Path::from_request_parts(parts, state).await;
        path.map(|Path((_, id))| Self(id))
            .map_err(|_| ScimError::not_found("resource not found").into())
    }
}

fn limits(ctx: &Ctx) -> PageLimits {
    let config = ctx.state().config();
    PageLimits {
        max_results: config.max_results,
        default_page_size: config.default_page_size.min(config.max_results),
    }
}

/// Renders an operation's outcome with its `ETag` and, for 201, `Location`.
pub fn outcome_response(outcome: Outcome) -> Response {
    let response = match outcome.body {
        Some(body) => {
            let rendered = Rendered {
                body,
                members: outcome.members,
            };
            scim_body(outcome.status, resource_body(rendered))
        }
        None => empty(outcome.status),
    };
    let response = with_etag(response, outcome.etag.as_deref());
    if outcome.status == StatusCode::CREATED {
        with_location(response, outcome.location.as_deref())
    } else {
        response
    }
}

fn if_match(headers: &HeaderMap) -> Option<IfMatch> {
    headers
        .get(header::IF_MATCH)
        .map(|v| v.to_str().map_or(IfMatch::Never, parse_if_match))
}

/// `GET /Users`, `GET /Groups`.
pub async fn list(kind: Kind, ctx: Ctx, QueryPairs(pairs): QueryPairs) -> HandlerResult {
    let query = RawListParams::from_pairs(&pairs).validate(limits(&ctx))?;
    list_reply(&ctx, ctx.list(kind, &query).await?, query.start_index)
}

fn list_reply(ctx: &Ctx, listed: Listed, start_index: i64) -> HandlerResult {
    let body = list_body(listed.resources, listed.total, start_index, ctx.dialect());
    Ok(scim_body(StatusCode::OK, body))
}

/// `POST /Users/.search`, `POST /Groups/.search` (RFC 7644 §3.4.3).
pub async fn search(kind: Kind, ctx: Ctx, JsonBody(body): JsonBody) -> HandlerResult {
    let query = RawListParams::from_search_request(&body)?.validate(limits(&ctx))?;
    list_reply(&ctx, ctx.list(kind, &query).await?, query.start_index)
}

/// `POST /.search`: users, then groups, paged as one sequence.
pub async fn search_all(ctx: Ctx, JsonBody(body): JsonBody) -> HandlerResult {
    let query = RawListParams::from_search_request(&body)?.validate(limits(&ctx))?;
    let users = ctx.list(Kind::User, &query).await?;
    let users_total = users.total;
    let mut resources = users.resources;
    let remaining = query.count - resources.len() as i64;
    // Skip the users that precede startIndex; groups continue the sequence.
    let mut group_query = query.clone();
    group_query.start_index = (query.start_index - users_total).max(1);
    group_query.count = if query.start_index + resources.len() as i64 > users_total {
        remaining
    } else {
        0
    };
    let groups = ctx.list(Kind::Group, &group_query).await?;
    resources.extend(groups.resources);
    resources.truncate(usize::try_from(query.count).unwrap_or(usize::MAX));
    let listed = Listed {
        total: users_total + groups.total,
        resources,
    };
    list_reply(&ctx, listed, query.start_index)
}

/// `POST /Users`, `POST /Groups`.
pub async fn create(
    kind: Kind,
    ctx: Ctx,
    QueryPairs(pairs): QueryPairs,
    JsonBody(body): JsonBody,
) -> HandlerResult {
    let projection = projection_from_pairs(&pairs)?;
    Ok(outcome_response(
        ctx.create(kind, &body, &projection).await?,
    ))
}

/// `GET /Users/{id}`, `GET /Groups/{id}`; `If-None-Match` with the current
/// version answers 304.
pub async fn get(
    kind: Kind,
    ctx: Ctx,
    ResourceId(id): ResourceId,
    QueryPairs(pairs): QueryPairs,
    headers: HeaderMap,
) -> HandlerResult {
    let projection = projection_from_pairs(&pairs)?;
    let found = ctx.get(kind, &id, &projection).await?;
    let etag = format_etag(found.version);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| if_none_match_hits(v, found.version));
    if not_modified {
        return Ok(with_etag(empty(StatusCode::NOT_MODIFIED), Some(&etag)));
    }
    let rendered = Rendered {
        body: found.body,
        members: found.members,
    };
    Ok(with_etag(
        scim_body(StatusCode::OK, resource_body(rendered)),
        Some(&etag),
    ))
}

/// The write a `PUT` or a `PATCH` of one resource asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// `PUT`: the body replaces the resource.
    Replace,
    /// `PATCH`: the body is a PatchOp.
    Patch,
}

/// `PUT` and `PATCH` of `/Users/{id}` and `/Groups/{id}`: the same inputs
/// and the same kind of answer.
pub async fn write(
    write: Write,
    kind: Kind,
    ctx: Ctx,
    ResourceId(id): ResourceId,
    QueryPairs(pairs): QueryPairs,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> HandlerResult {
    let projection = projection_from_pairs(&pairs)?;
    let if_match = if_match(&headers);
    let outcome = match write {
        Write::Replace => ctx.replace(kind, &id, &body, if_match, &projection).await?,
        Write::Patch => ctx.patch(kind, &id, &body, if_match, &projection).await?,
    };
    Ok(outcome_response(outcome))
}

/// `DELETE /Users/{id}`, `DELETE /Groups/{id}`.
pub async fn delete(
    kind: Kind,
    ctx: Ctx,
    ResourceId(id): ResourceId,
    headers: HeaderMap,
) -> HandlerResult {
    Ok(outcome_response(
        ctx.delete(kind, &id, if_match(&headers)).await?,
    ))
}
