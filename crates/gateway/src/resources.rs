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
    PatchUserRequest, ReadGroupRequest, ReplaceGroupRequest, ReplaceUserRequest, User,
};
use roster_scim::error::ScimError;
use roster_scim::projection::project;
use serde_json::Value;

use crate::activity::RequestEvents;
use crate::auth::AuthedDirectory;
use crate::dialect::Dialect;
use crate::error::GatewayError;
use crate::etag::{IfMatch, format_etag};
use crate::members::{GroupRead, MemberFeed, MemberSource, Rendered};
use crate::observe::CallMeta;
use crate::query::{ListQuery, Projection};
use crate::render::{Kind, location, render_group, render_user};
use crate::state::AppState;

/// What a successful operation answers.
#[derive(Debug)]
pub struct Outcome {
    /// HTTP status (200, 201, 204).
    pub status: StatusCode,
    /// The rendered resource, if the status has a body.
    pub body: Option<Value>,
    /// A group's members still to stream into `body`.
    pub members: Option<MemberFeed>,
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
    dialect: Dialect,
    scim_base: String,
    /// Where the audit trail gathers this request's events, when recorded.
    events: Option<RequestEvents>,
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
        let dialect = parts
            .extensions
            .get::<Dialect>()
            .copied()
            .unwrap_or_default();
        let mut ctx = Ctx::new(state.clone(), directory, call).in_dialect(dialect);
        ctx.events = parts.extensions.get::<RequestEvents>().cloned();
        Ok(ctx)
    }
}

/// A resource as found, with its version for conditional requests.
#[derive(Debug)]
pub struct Found {
    /// Rendered resource (projection applied).
    pub body: Value,
    /// Resource version.
    pub version: i64,
    /// A group's members still to stream into `body`.
    pub members: Option<MemberFeed>,
}

/// A page of a list: the total and the rendered resources.
#[derive(Debug)]
pub struct Listed {
    /// Every match across all pages.
    pub total: i64,
    /// The page.
    pub resources: Vec<Rendered>,
}

impl Ctx {
    /// A context for `directory`.
    pub fn new(state: AppState, directory: Arc<AuthedDirectory>, call: CallMeta) -> Self {
        let scim_base = state.config().scim_base(&directory.directory_id);
        Self {
            state,
            directory,
            call,
            dialect: Dialect::V2,
            scim_base,
            events: None,
        }
    }

    /// The same context answering in `dialect` (whose URLs differ).
    pub fn in_dialect(mut self, dialect: Dialect) -> Self {
        self.scim_base = self
            .state
            .config()
            .scim_base_in(dialect, &self.directory.directory_id);
        self.dialect = dialect;
        self
    }

    /// The dialect requests are read and answered in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// `{public_url}/scim/{v2|v1}/{directory_id}`.
    pub fn scim_base(&self) -> &str {
        &self.scim_base
    }

    fn dir_id(&self) -> String {
        self.directory.directory_id.clone()
    }

    /// The directory, id and expected version a write of one resource names.
    fn target(&self, id: &str, if_match: Option<IfMatch>) -> (String, String, Option<i64>) {
        (
            self.dir_id(),
            id.to_owned(),
            if_match.and_then(IfMatch::if_version),
        )
    }

    fn grpc<T>(&self, message: T) -> tonic::Request<T> {
        self.state.grpc(message, &self.call)
    }

    /// A write's reply, its events noted for the audit trail.
    fn written<T>(&self, reply: tonic::Response<T>) -> T {
        if let Some(events) = &self.events {
            events.note(reply.metadata());
        }
        reply.into_inner()
    }

    /// POST: creates a resource; 201 with the resource.
    pub async fn create(
        &self,
        kind: Kind,
        body: &Value,
        projection: &Projection,
    ) -> Result<Outcome, GatewayError> {
        let resource = resource_text(&*self.dialect.resource_in(kind.scim_kind(), body)?)?;
        let dir = self.dir_id();
        let client = self.state.directory();
        let rendered = match kind {
            Kind::User => {
                let req = self.grpc(CreateUserRequest {
                    directory_id: dir,
                    resource,
                });
                self.user_found(self.written(client.create_user(req).await?).user)?
            }
            Kind::Group => {
                let req = self.grpc(CreateGroupRequest {
                    directory_id: dir,
                    resource,
                });
                let group = self.written(client.create_group(req).await?).group;
                self.written_group(group, projection).await?
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
        let client = self.state.directory();
        let mut found = match kind {
            Kind::User => {
                let req = self.grpc(GetUserRequest {
                    directory_id: dir,
                    id: id.to_owned(),
                });
                self.user_found(client.get_user(req).await?.into_inner().user)?
            }
            Kind::Group if projection.excludes_members() => {
                let req = self.grpc(GetGroupRequest {
                    directory_id: dir,
                    id: id.to_owned(),
                    exclude_members: true,
                });
                self.group_found(client.get_group(req).await?.into_inner().group)?
            }
            Kind::Group => self.streamed_group(self.read_group(id).await?, projection),
        };
        apply_projection(&mut found.body, kind, projection);
        found.body = self.dialect.resource_out(found.body);
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
        let resource = resource_text(&*self.dialect.resource_in(kind.scim_kind(), body)?)?;
        let (dir, id, if_version) = self.target(id, if_match);
        let client = self.state.directory();
        let rendered = match kind {
            Kind::User => {
                let req = self.grpc(ReplaceUserRequest {
                    directory_id: dir,
                    id,
                    resource,
                    if_version,
                });
                self.user_found(self.written(client.replace_user(req).await?).user)?
            }
            Kind::Group => {
                let req = self.grpc(ReplaceGroupRequest {
                    directory_id: dir,
                    id,
                    resource,
                    if_version,
                });
                let group = self.written(client.replace_group(req).await?).group;
                self.written_group(group, projection).await?
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
        let Some(patch) = self.dialect.patch_in(kind.scim_kind(), body)? else {
            return self.unchanged(kind, id, if_match, projection).await;
        };
        let patch = patch_text(&patch)?;
        let (dir, id, if_version) = self.target(id, if_match);
        let client = self.state.directory();
        match kind {
            Kind::User => {
                let req = self.grpc(PatchUserRequest {
                    directory_id: dir,
                    id,
                    patch,
                    if_version,
                });
                let rendered = self.user_found(self.written(client.patch_user(req).await?).user)?;
                Ok(self.outcome(kind, StatusCode::OK, rendered, projection))
            }
            Kind::Group => {
                // Members, when the response shows them, are read back by
                // the streaming path, never in the write's reply.
                let req = self.grpc(PatchGroupRequest {
                    directory_id: dir,
                    id,
                    patch,
                    if_version,
                    exclude_members: true,
                });
                let group = self.written(client.patch_group(req).await?).group;
                if projection.is_default() {
                    let written = self.group_found(group)?;
                    return Ok(Outcome {
                        status: StatusCode::NO_CONTENT,
                        body: None,
                        members: None,
                        etag: Some(format_etag(written.version)),
                        location: json_location(&written.body),
                    });
                }
                let rendered = self.written_group(group, projection).await?;
                Ok(self.outcome(kind, StatusCode::OK, rendered, projection))
            }
        }
    }

    /// The answer of a PATCH that changes nothing: the resource as it is,
    /// as a PATCH would answer it, after the same `If-Match` check.
    async fn unchanged(
        &self,
        kind: Kind,
        id: &str,
        if_match: Option<IfMatch>,
        projection: &Projection,
    ) -> Result<Outcome, GatewayError> {
        // Groups answer 204 as for any PATCH, so their members are not read.
        let group_without_body = kind == Kind::Group && projection.is_default();
        let read = match group_without_body {
            true => Projection::without_members(),
            false => projection.clone(),
        };
        let found = self.get(kind, id, &read).await?;
        if let Some(expected) = if_match.and_then(IfMatch::if_version)
            && expected != found.version
        {
            return Err(ScimError::precondition_failed("the resource has changed").into());
        }
        let location = json_location(&found.body);
        Ok(Outcome {
            status: match group_without_body {
                true => StatusCode::NO_CONTENT,
                false => StatusCode::OK,
            },
            body: (!group_without_body).then_some(found.body),
            members: found.members,
            etag: Some(format_etag(found.version)),
            location,
        })
    }

    /// DELETE: removes a resource — or, for users of a directory whose
    /// policy is DEACTIVATE, sets `active` to false. Answers 204 either way.
    pub async fn delete(
        &self,
        kind: Kind,
        id: &str,
        if_match: Option<IfMatch>,
    ) -> Result<Outcome, GatewayError> {
        let (dir, id, if_version) = self.target(id, if_match);
        let client = self.state.directory();
        match kind {
            Kind::User if self.directory.deprovision_policy == DeprovisionPolicy::Deactivate => {
                let patch = roster_proto::contract::DEACTIVATE_PATCH.to_owned();
                let req = self.grpc(PatchUserRequest {
                    directory_id: dir,
                    id,
                    patch,
                    if_version,
                });
                self.written(client.patch_user(req).await?);
            }
            Kind::User => {
                let req = self.grpc(DeleteUserRequest {
                    directory_id: dir,
                    id,
                    if_version,
                });
                self.written(client.delete_user(req).await?);
            }
            Kind::Group => {
                let req = self.grpc(DeleteGroupRequest {
                    directory_id: dir,
                    id,
                    if_version,
                });
                self.written(client.delete_group(req).await?);
            }
        }
        Ok(Outcome {
            status: StatusCode::NO_CONTENT,
            body: None,
            members: None,
            etag: None,
            location: None,
        })
    }

    /// GET of a collection or a search: one page of resources.
    pub async fn list(&self, kind: Kind, query: &ListQuery) -> Result<Listed, GatewayError> {
        let options = list_options(query);
        let dir = self.dir_id();
        let client = self.state.directory();
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
                    .map(|u| Rendered {
                        body: render_user(u, &self.scim_base),
                        members: None,
                    })
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
                    .map(|g| self.listed_group(g, !exclude_members, &query.projection))
                    .collect::<Vec<_>>();
                (groups, resp.total_results)
            }
        };
        // count=0 asks only for totalResults (RFC 7644 §3.4.2.4); the RPC
        // reads 0 as "default", so one row was fetched and is dropped here.
        resources.truncate(usize::try_from(query.count).unwrap_or(usize::MAX));
        for r in &mut resources {
            apply_projection(&mut r.body, kind, &query.projection);
            r.body = self.dialect.resource_out(r.body.take());
        }
        Ok(Listed { total, resources })
    }

    /// A listed group; members the list reply could not carry are read
    /// with ReadGroup when the response body gets to them.
    fn listed_group(&self, group: &Group, with_members: bool, projection: &Projection) -> Rendered {
        let body = render_group(group, &self.scim_base, with_members);
        if !(with_members && group.members_omitted) {
            return Rendered {
                body,
                members: None,
            };
        }
        let (ctx, id) = (self.clone(), group.id.clone());
        Rendered {
            body,
            members: Some(self.feed(
                MemberSource::Deferred(Box::pin(async move { ctx.read_group(&id).await })),
                projection,
            )),
        }
    }

    /// Opens ReadGroup and receives its first message (the group).
    async fn read_group(&self, id: &str) -> Result<GroupRead, tonic::Status> {
        let req = self.grpc(ReadGroupRequest {
            directory_id: self.dir_id(),
            id: id.to_owned(),
        });
        let mut rest = self.state.directory().read_group(req).await?.into_inner();
        let first = futures::TryStreamExt::try_next(&mut rest)
            .await?
            .ok_or_else(|| tonic::Status::internal("ReadGroup ended before the group"))?;
        let group = first
            .group
            .ok_or_else(|| tonic::Status::internal("ReadGroup sent no group first"))?;
        Ok(GroupRead {
            group,
            first: first.members,
            rest,
        })
    }

    /// A group with its members streamed from `read`.
    fn streamed_group(&self, read: GroupRead, projection: &Projection) -> Found {
        Found {
            version: read.group.meta.as_ref().map_or(0, |m| m.version),
            body: render_group(&read.group, &self.scim_base, false),
            members: Some(self.feed(MemberSource::Open(Box::new(read)), projection)),
        }
    }

    fn feed(&self, source: MemberSource, projection: &Projection) -> MemberFeed {
        MemberFeed {
            source,
            scim_base: self.scim_base.clone(),
            projection: projection.clone(),
            dialect: self.dialect,
        }
    }

    /// The answer of a group write (which replies without members): when
    /// the response shows members and the group has some, they are read
    /// back by the streaming path. The write has committed, so a failed
    /// read-back answers the group as written instead of an error.
    async fn written_group(
        &self,
        group: Option<Group>,
        projection: &Projection,
    ) -> Result<Found, GatewayError> {
        let written = self.group_found(group.clone())?;
        let Some(group) = group.filter(|g| g.member_count > 0 && !projection.excludes_members())
        else {
            return Ok(written);
        };
        match self.read_group(&group.id).await {
            Ok(read) => Ok(self.streamed_group(read, projection)),
            Err(status) => {
                if status.code() != tonic::Code::NotFound {
                    tracing::warn!(error = %status.message(), "reading a written group back failed");
                }
                Ok(written)
            }
        }
    }

    fn user_found(&self, user: Option<User>) -> Result<Found, GatewayError> {
        let user = user
            .ok_or_else(|| GatewayError::Internal("directory service returned no user".into()))?;
        Ok(Found {
            version: user.meta.as_ref().map_or(0, |m| m.version),
            body: render_user(&user, &self.scim_base),
            members: None,
        })
    }

    /// A group from a reply without members.
    fn group_found(&self, group: Option<Group>) -> Result<Found, GatewayError> {
        let group = group
            .ok_or_else(|| GatewayError::Internal("directory service returned no group".into()))?;
        Ok(Found {
            version: group.meta.as_ref().map_or(0, |m| m.version),
            body: render_group(&group, &self.scim_base, false),
            members: None,
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
            body: Some(self.dialect.resource_out(found.body)),
            members: found.members,
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

/// Applies `attributes` / `excludedAttributes` to a rendered resource.
pub(crate) fn apply_projection(body: &mut Value, kind: Kind, projection: &Projection) {
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
