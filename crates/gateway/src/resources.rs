//! SCIM resource operations as gRPC calls, shared by the HTTP handlers and
//! the bulk endpoint.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use roster_proto::admin::DeprovisionPolicy;
use roster_proto::directory::{
    CreateGroupRequest, CreateUserRequest, DeleteGroupRequest, DeleteUserRequest, GetGroupRequest,
    GetUserRequest, Group, ListGroupsRequest, ListOptions, ListUsersRequest, PatchGroupRequest,
    PatchUserRequest, ReplaceGroupRequest, ReplaceUserRequest, User,
};
use roster_scim::error::ScimError;
use roster_scim::list::list_response;
use roster_scim::projection::project;
use serde_json::Value;

use crate::auth::AuthedDirectory;
use crate::error::GatewayError;
use crate::etag::{IfMatch, format_etag};
use crate::observe::CallMeta;
use crate::query::{ListQuery, Projection};
use crate::render::{Kind, location, render_group, render_user};
use crate::state::AppState;

/// The PatchOp a DELETE sends when the directory deactivates instead.
const DEACTIVATE_PATCH: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#;

/// What a successful operation answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// HTTP status (200, 201, 204).
    pub status: StatusCode,
    /// The rendered resource, if the status has a body.
    pub body: Option<Value>,
    /// `W/"<version>"` of the resource, when known.
    pub etag: Option<String>,
    /// URL of the resource.
    pub location: Option<String>,
}

/// One authenticated request's view of its directory.
#[derive(Clone)]
pub struct Ctx {
    state: AppState,
    directory: Arc<AuthedDirectory>,
    call: CallMeta,
    scim_base: String,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let directory = parts
            .extensions
            .get::<Arc<AuthedDirectory>>()
            .cloned()
            .ok_or_else(|| GatewayError::Internal("a SCIM route without the token check".into()))?;
        let call = parts
            .extensions
            .get::<CallMeta>()
            .cloned()
            .unwrap_or_else(CallMeta::generate);
        Ok(Ctx::new(state.clone(), directory, call))
    }
}

/// A resource as found, with its version for conditional requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Rendered resource (projection applied).
    pub body: Value,
    /// Resource version.
    pub version: i64,
}

impl Ctx {
    /// A context for `directory`.
    pub fn new(state: AppState, directory: Arc<AuthedDirectory>, call: CallMeta) -> Self {
        let scim_base = state.config().scim_base(&directory.directory_id);
        Self {
            state,
            directory,
            call,
            scim_base,
        }
    }

    /// The state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// `{public_url}/scim/v2/{directory_id}`.
    pub fn scim_base(&self) -> &str {
        &self.scim_base
    }

    fn dir_id(&self) -> String {
        self.directory.directory_id.clone()
    }

    fn grpc<T>(&self, message: T) -> tonic::Request<T> {
        self.state.grpc(message, &self.call)
    }

    /// POST: creates a resource; 201 with the resource.
    pub async fn create(
        &self,
        kind: Kind,
        body: &Value,
        projection: &Projection,
    ) -> Result<Outcome, GatewayError> {
        let resource = resource_text(body)?;
        let dir = self.dir_id();
        let mut client = self.state.directory();
        let rendered = match kind {
            Kind::User => {
                let req = self.grpc(CreateUserRequest {
                    directory_id: dir,
                    resource,
                });
                self.user_found(client.create_user(req).await?.into_inner().user)?
            }
            Kind::Group => {
                let req = self.grpc(CreateGroupRequest {
                    directory_id: dir,
                    resource,
                });
                let group = client.create_group(req).await?.into_inner().group;
                self.group_found(self.load_members(group, projection).await?, true)?
            }
        };
        Ok(self.outcome(kind, StatusCode::CREATED, rendered, projection))
    }

    /// GET of one resource.
    pub async fn get(
        &self,
        kind: Kind,
        id: &str,
        projection: &Projection,
    ) -> Result<Found, GatewayError> {
        let dir = self.dir_id();
        let mut client = self.state.directory();
        let mut found = match kind {
            Kind::User => {
                let req = self.grpc(GetUserRequest {
                    directory_id: dir,
                    id: id.to_owned(),
                });
                self.user_found(client.get_user(req).await?.into_inner().user)?
            }
            Kind::Group => {
                let exclude_members = projection.excludes_members();
                let req = self.grpc(GetGroupRequest {
                    directory_id: dir,
                    id: id.to_owned(),
                    exclude_members,
                });
                self.group_found(
                    client.get_group(req).await?.into_inner().group,
                    !exclude_members,
                )?
            }
        };
        apply_projection(&mut found.body, kind, projection);
        Ok(found)
    }

    /// PUT: replaces a resource; 200 with the resource.
    pub async fn replace(
        &self,
        kind: Kind,
        id: &str,
        body: &Value,
        if_match: Option<IfMatch>,
        projection: &Projection,
    ) -> Result<Outcome, GatewayError> {
        let resource = resource_text(body)?;
        let (dir, id, if_version) = (
            self.dir_id(),
            id.to_owned(),
            if_match.and_then(IfMatch::if_version),
        );
        let mut client = self.state.directory();
        let rendered = match kind {
            Kind::User => {
                let req = self.grpc(ReplaceUserRequest {
                    directory_id: dir,
                    id,
                    resource,
                    if_version,
                });
                self.user_found(client.replace_user(req).await?.into_inner().user)?
            }
            Kind::Group => {
                let req = self.grpc(ReplaceGroupRequest {
                    directory_id: dir,
                    id,
                    resource,
                    if_version,
                });
                let group = client.replace_group(req).await?.into_inner().group;
                self.group_found(self.load_members(group, projection).await?, true)?
            }
        };
        Ok(self.outcome(kind, StatusCode::OK, rendered, projection))
    }

    /// PATCH: applies a PatchOp. Users answer 200 with the resource; groups
    /// answer 204 unless attributes were asked for, so that member changes
    /// on large groups never load the member list (RFC 7644 §3.5.2 allows both).
    pub async fn patch(
        &self,
        kind: Kind,
        id: &str,
        body: &Value,
        if_match: Option<IfMatch>,
        projection: &Projection,
    ) -> Result<Outcome, GatewayError> {
        let patch = patch_text(body)?;
        let (dir, id, if_version) = (
            self.dir_id(),
            id.to_owned(),
            if_match.and_then(IfMatch::if_version),
        );
        let mut client = self.state.directory();
        match kind {
            Kind::User => {
                let req = self.grpc(PatchUserRequest {
                    directory_id: dir,
                    id,
                    patch,
                    if_version,
                });
                let rendered = self.user_found(client.patch_user(req).await?.into_inner().user)?;
                Ok(self.outcome(kind, StatusCode::OK, rendered, projection))
            }
            Kind::Group => {
                let exclude_members = projection.is_default() || projection.excludes_members();
                let req = self.grpc(PatchGroupRequest {
                    directory_id: dir,
                    id,
                    patch,
                    if_version,
                    exclude_members,
                });
                let rendered = self.group_found(
                    client.patch_group(req).await?.into_inner().group,
                    !exclude_members,
                )?;
                if projection.is_default() {
                    let location = json_location(&rendered.body);
                    return Ok(Outcome {
                        status: StatusCode::NO_CONTENT,
                        body: None,
                        etag: Some(format_etag(rendered.version)),
                        location,
                    });
                }
                Ok(self.outcome(kind, StatusCode::OK, rendered, projection))
            }
        }
    }

    /// DELETE: removes a resource — or, for users of a directory whose
    /// policy is DEACTIVATE, sets `active` to false. Answers 204 either way.
    pub async fn delete(
        &self,
        kind: Kind,
        id: &str,
        if_match: Option<IfMatch>,
    ) -> Result<Outcome, GatewayError> {
        let (dir, id, if_version) = (
            self.dir_id(),
            id.to_owned(),
            if_match.and_then(IfMatch::if_version),
        );
        let mut client = self.state.directory();
        match kind {
            Kind::User if self.directory.deprovision_policy == DeprovisionPolicy::Deactivate => {
                let patch = DEACTIVATE_PATCH.to_owned();
                let req = self.grpc(PatchUserRequest {
                    directory_id: dir,
                    id,
                    patch,
                    if_version,
                });
                client.patch_user(req).await?;
            }
            Kind::User => {
                let req = self.grpc(DeleteUserRequest {
                    directory_id: dir,
                    id,
                    if_version,
                });
                client.delete_user(req).await?;
            }
            Kind::Group => {
                let req = self.grpc(DeleteGroupRequest {
                    directory_id: dir,
                    id,
                    if_version,
                });
                client.delete_group(req).await?;
            }
        }
        Ok(Outcome {
            status: StatusCode::NO_CONTENT,
            body: None,
            etag: None,
            location: None,
        })
    }

    /// GET of a collection or a search: a ListResponse.
    pub async fn list(&self, kind: Kind, query: &ListQuery) -> Result<Value, GatewayError> {
        let options = list_options(query);
        let dir = self.dir_id();
        let mut client = self.state.directory();
        let (mut resources, total) = match kind {
            Kind::User => {
                let req = self.grpc(ListUsersRequest {
                    directory_id: dir,
                    options: Some(options),
                });
                let resp = client.list_users(req).await?.into_inner();
                let users = resp
                    .users
                    .iter()
                    .map(|u| render_user(u, &self.scim_base))
                    .collect::<Vec<_>>();
                (users, resp.total_results)
            }
            Kind::Group => {
                let exclude_members = query.projection.excludes_members();
                let req = self.grpc(ListGroupsRequest {
                    directory_id: dir,
                    options: Some(options),
                    exclude_members,
                });
                let resp = client.list_groups(req).await?.into_inner();
                let groups = resp
                    .groups
                    .iter()
                    .map(|g| render_group(g, &self.scim_base, !exclude_members))
                    .collect::<Vec<_>>();
                (groups, resp.total_results)
            }
        };
        // count=0 asks only for totalResults (RFC 7644 §3.4.2.4); the RPC
        // reads 0 as "default", so one row was fetched and is dropped here.
        resources.truncate(usize::try_from(query.count).unwrap_or(usize::MAX));
        for r in &mut resources {
            apply_projection(r, kind, &query.projection);
        }
        Ok(list_response(resources, total, query.start_index))
    }

    /// Write RPCs may answer without the member list; when the response
    /// will show members and the group has some, they are read back.
    async fn load_members(
        &self,
        group: Option<Group>,
        projection: &Projection,
    ) -> Result<Option<Group>, GatewayError> {
        let needs_members = |g: &Group| {
            g.members.is_empty() && g.member_count > 0 && !projection.excludes_members()
        };
        let group = match group {
            Some(g) if needs_members(&g) => g,
            other => return Ok(other),
        };
        let req = self.grpc(GetGroupRequest {
            directory_id: self.dir_id(),
            id: group.id.clone(),
            exclude_members: false,
        });
        match self.state.directory().get_group(req).await {
            Ok(response) => Ok(response.into_inner().group.or(Some(group))),
            // Deleted in between: answer with what the write returned.
            Err(status) if status.code() == tonic::Code::NotFound => Ok(Some(group)),
            Err(status) => Err(status.into()),
        }
    }

    fn user_found(&self, user: Option<User>) -> Result<Found, GatewayError> {
        let user = user
            .ok_or_else(|| GatewayError::Internal("directory service returned no user".into()))?;
        Ok(Found {
            version: user.meta.as_ref().map_or(0, |m| m.version),
            body: render_user(&user, &self.scim_base),
        })
    }

    fn group_found(&self, group: Option<Group>, with_members: bool) -> Result<Found, GatewayError> {
        let group = group
            .ok_or_else(|| GatewayError::Internal("directory service returned no group".into()))?;
        Ok(Found {
            version: group.meta.as_ref().map_or(0, |m| m.version),
            body: render_group(&group, &self.scim_base, with_members),
        })
    }

    fn outcome(
        &self,
        kind: Kind,
        status: StatusCode,
        mut found: Found,
        projection: &Projection,
    ) -> Outcome {
        let location = json_location(&found.body).or_else(|| {
            found
                .body
                .get("id")
                .and_then(Value::as_str)
                .map(|id| location(&self.scim_base, kind, id))
        });
        apply_projection(&mut found.body, kind, projection);
        Outcome {
            status,
            body: Some(found.body),
            etag: Some(format_etag(found.version)),
            location,
        }
    }
}

fn json_location(body: &Value) -> Option<String> {
    body.pointer("/meta/location")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn apply_projection(body: &mut Value, kind: Kind, projection: &Projection) {
    if !projection.is_default() {
        project(
            body,
            kind.scim_kind(),
            &projection.attributes,
            &projection.excluded_attributes,
        );
    }
}

fn list_options(query: &ListQuery) -> ListOptions {
    ListOptions {
        filter: query.filter.clone().unwrap_or_default(),
        sort_by: query.sort_by.clone().unwrap_or_default(),
        sort_order: query.sort_order as i32,
        start_index: query.start_index,
        // The RPC reads 0 as "server default"; ask for one row instead.
        count: i32::try_from(query.count.max(1)).unwrap_or(i32::MAX),
        page_token: String::new(),
        // SCIM has no list-then-watch: skip the change-log cursor.
        omit_cursor: true,
    }
}

/// The JSON text of a resource body, which must be an object.
fn resource_text(body: &Value) -> Result<String, GatewayError> {
    if !body.is_object() {
        return Err(ScimError::invalid_syntax("the request body must be a JSON object").into());
    }
    Ok(body.to_string())
}

/// The JSON text of a PatchOp body, which must be an object.
fn patch_text(body: &Value) -> Result<String, GatewayError> {
    if !body.is_object() {
        return Err(ScimError::invalid_syntax("a PatchOp must be a JSON object").into());
    }
    Ok(body.to_string())
}
