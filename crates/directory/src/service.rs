//! `DirectoryService`: users, groups and memberships over a [`Store`].
//!
//! Writes take SCIM JSON, run it through the SCIM engine (`roster-scim`) for
//! validation and normalization, apply the directory's attribute mappings,
//! and store the result; every successful write wakes the change tailer.
//!
//! # Deprovisioning
//! `DeleteUser` always deletes. A directory's deprovision policy (delete or
//! deactivate) is applied by the caller that translates a SCIM `DELETE`: the
//! gateway reads the policy from the directory (returned by
//! `AuthenticateToken`) and, for `deactivate`, sends `PatchUser` with
//! [`DEACTIVATE_PATCH`] instead of `DeleteUser`. Keeping the decision there
//! keeps this RPC's meaning independent of configuration.
//!
//! # Group members without a type
//! Most IdPs send group members as bare ids. Such members are first assumed
//! to be users; when the store rejects an id as unknown, each untyped id is
//! looked up (user, then group) and the write is retried once. Nested groups
//! therefore work without a `type`, and the common case costs no lookups.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use prost::Message;
use roster_proto::directory as pd;
use roster_proto::directory::directory_service_server::DirectoryService;
use roster_scim::ResourceKind;
use roster_scim::error::ScimError;
use roster_scim::filter::{parse, parse_attr_path};
use roster_scim::patch::{GroupPatchStep, PatchRequest, apply, plan_group_patch};
use roster_scim::resource::{MemberValue, NormalizedUser, prepare_group, prepare_user};
use roster_store::{
    Directory, DirectoryId, Group, GroupId, GroupOp, GroupWrite, LIST_MEMBER_BUDGET, ListQuery,
    MemberKind, MemberRef, Sort, Store, StoreError, User, UserFields, UserId, UserWrite,
};
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::cursor;
use crate::error::{ServiceError, ServiceResult};
use crate::mapping;
use crate::watch::{self, ChangeHub, WatchStream};

/// Page size of list RPCs when the request leaves `count` at 0.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
/// Largest page a list RPC returns, whatever `count` asks for.
pub const MAX_PAGE_SIZE: i64 = 1000;
/// Members per ReadGroup message (and per store page).
const MEMBER_BATCH: i64 = 1000;
/// Most bytes of groups a unary reply carries (tonic decodes at most 4 MiB
/// per message by default).
const MAX_INLINE_BYTES: usize = 3 * 1024 * 1024;
pub use roster_proto::contract::DEACTIVATE_PATCH;

/// The `DirectoryService` implementation.
#[derive(Clone)]
pub struct DirectoryApi {
    store: Arc<dyn Store>,
    hub: Arc<ChangeHub>,
}

/// The message stream of ReadGroup.
pub type ReadGroupStream =
    tokio_stream::wrappers::UnboundedReceiverStream<Result<pd::ReadGroupResponse, Status>>;

/// Error type of the store's update callbacks.
type CallbackError = Box<dyn std::error::Error + Send + Sync>;

impl DirectoryApi {
    /// A directory service over `store`; writes wake `hub`'s watchers.
    pub fn new(store: Arc<dyn Store>, hub: Arc<ChangeHub>) -> Self {
        Self { store, hub }
    }

    async fn directory(&self, id: &str) -> ServiceResult<Directory> {
        let id = directory_id(id)?;
        let cache = self.hub.directories();
        if let Some(directory) = cache.get(id) {
            return Ok(directory);
        }
        let generation = cache.generation();
        let directory = self.store.get_directory(id).await?;
        cache.insert(directory.clone(), generation);
        Ok(directory)
    }

    // --- users ---

    async fn create_user(&self, req: pd::CreateUserRequest) -> ServiceResult<User> {
        let directory = self.directory(&req.directory_id).await?;
        let write = user_write(&directory, parse_json(&req.resource)?)?;
        let user = self.store.create_user(directory.id, write).await?;
        self.hub.local_write();
        Ok(user)
    }

    async fn replace_user(&self, req: pd::ReplaceUserRequest) -> ServiceResult<User> {
        let directory = self.directory(&req.directory_id).await?;
        let id = user_id(&req.id)?;
        let write = user_write(&directory, parse_json(&req.resource)?)?;
        let user = self
            .store
            .replace_user(directory.id, id, req.if_version, write)
            .await?;
        self.hub.local_write();
        Ok(user)
    }

    async fn patch_user(&self, req: pd::PatchUserRequest) -> ServiceResult<User> {
        let directory = self.directory(&req.directory_id).await?;
        let id = user_id(&req.id)?;
        let patch = PatchRequest::parse(&parse_json(&req.patch)?)?;
        let dir_id = directory.id;
        let update = Box::new(move |current: &User| -> Result<UserWrite, CallbackError> {
            let document = with_id(&current.raw, &current.id.to_string());
            let patched = apply(&document, ResourceKind::User, &patch.operations)?;
            Ok(user_write(&directory, patched)?)
        });
        let user = self
            .store
            .update_user(dir_id, id, req.if_version, update)
            .await?;
        self.hub.local_write();
        Ok(user)
    }

    async fn delete_user(&self, req: pd::DeleteUserRequest) -> ServiceResult<()> {
        let dir = directory_id(&req.directory_id)?;
        self.store
            .delete_user(dir, user_id(&req.id)?, req.if_version)
            .await?;
        self.hub.local_write();
        Ok(())
    }

    // --- groups ---

    async fn create_group(&self, req: pd::CreateGroupRequest) -> ServiceResult<Group> {
        let dir = directory_id(&req.directory_id)?;
        let resource = parse_json(&req.resource)?;
        let (raw, prepared) = prepare_group(resource)?;
        let mut kinds = MemberKinds::default();
        loop {
            let write = GroupWrite {
                display_name: prepared.display_name.clone(),
                external_id: prepared.external_id.clone(),
                raw: raw.clone(),
                members: Some(kinds.refs(&prepared.members)?),
            };
            match self.store.create_group(dir, write).await {
                Err(StoreError::Invalid(_)) if kinds.can_resolve(&prepared.members) => {
                    kinds.resolve(self, dir, &prepared.members).await?;
                }
                result => {
                    let group = result?;
                    self.hub.local_write();
                    return Ok(group);
                }
            }
        }
    }

    async fn replace_group(&self, req: pd::ReplaceGroupRequest) -> ServiceResult<Group> {
        let dir = directory_id(&req.directory_id)?;
        let id = group_id(&req.id)?;
        let resource = parse_json(&req.resource)?;
        // A PUT without `members` keeps the members: IdPs that rename a group
        // with PUT would otherwise empty it by accident.
        let replaces_members = has_key(&resource, "members");
        let (raw, prepared) = prepare_group(resource)?;
        let mut kinds = MemberKinds::default();
        loop {
            let members = if replaces_members {
                Some(kinds.refs(&prepared.members)?)
            } else {
                None
            };
            let write = GroupWrite {
                display_name: prepared.display_name.clone(),
                external_id: prepared.external_id.clone(),
                raw: raw.clone(),
                members,
            };
            match self
                .store
                .replace_group(dir, id, req.if_version, write)
                .await
            {
                Err(StoreError::Invalid(_)) if kinds.can_resolve(&prepared.members) => {
                    kinds.resolve(self, dir, &prepared.members).await?;
                }
                result => {
                    let group = result?;
                    self.hub.local_write();
                    return Ok(group);
                }
            }
        }
    }

    async fn patch_group(&self, req: pd::PatchGroupRequest) -> ServiceResult<pd::Group> {
        let dir = directory_id(&req.directory_id)?;
        let id = group_id(&req.id)?;
        let patch = PatchRequest::parse(&parse_json(&req.patch)?)?;
        let steps = plan_group_patch(&patch)?;
        let added: Vec<MemberValue> = steps.iter().flat_map(step_members).cloned().collect();
        let mut kinds = MemberKinds::default();
        let group = loop {
            let update = group_update(steps.clone(), kinds.clone());
            match self
                .store
                .update_group(dir, id, req.if_version, update)
                .await
            {
                Err(StoreError::Invalid(_)) if kinds.can_resolve(&added) => {
                    kinds.resolve(self, dir, &added).await?;
                }
                result => break result?,
            }
        };
        self.hub.local_write();
        if req.exclude_members {
            return Ok(convert::group(&group));
        }
        // The write committed: a failed read-back answers the group as
        // written, with its members to be read separately.
        match self.group_with_members(dir, id).await {
            Ok(read) => Ok(read),
            Err(e) => {
                tracing::warn!(error = %e, "reading a patched group back failed");
                Ok(omitting_members(convert::group(&group)))
            }
        }
    }

    /// GetGroup with members: the group and its members from one snapshot,
    /// inline only while they fit one message.
    async fn group_with_members(&self, dir: DirectoryId, id: GroupId) -> ServiceResult<pd::Group> {
        let (group, pages) = self.store.read_group(dir, id, MEMBER_BATCH).await?;
        if group.member_count > LIST_MEMBER_BUDGET {
            // Dropping `pages` ends the snapshot without reading a member.
            return Ok(omitting_members(convert::group(&group)));
        }
        let members = pages.try_concat().await?;
        let mut reply = convert::group(&group);
        reply.members = members.iter().map(convert::member).collect();
        fit_inline(std::slice::from_mut(&mut reply));
        Ok(reply)
    }

    /// ReadGroup: the group first, then its members in batches. The pages
    /// are drained at database speed into the response's queue, so a slow
    /// reader holds memory here but never a database snapshot.
    async fn read_group(&self, req: pd::ReadGroupRequest) -> ServiceResult<ReadGroupStream> {
        let dir = directory_id(&req.directory_id)?;
        let (group, mut pages) = self
            .store
            .read_group(dir, group_id(&req.id)?, MEMBER_BATCH)
            .await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let first = pd::ReadGroupResponse {
            group: Some(convert::group(&group)),
            members: Vec::new(),
        };
        let _ = tx.send(Ok(first));
        tokio::spawn(async move {
            while let Some(page) = pages.next().await {
                let message = page
                    .map(|members| pd::ReadGroupResponse {
                        group: None,
                        members: members.iter().map(convert::member).collect(),
                    })
                    .map_err(|e| Status::from(ServiceError::from(e)));
                let failed = message.is_err();
                // A closed queue means the reader went away: stop reading.
                if tx.send(message).is_err() || failed {
                    break;
                }
            }
        });
        Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    }

    async fn delete_group(&self, req: pd::DeleteGroupRequest) -> ServiceResult<()> {
        let dir = directory_id(&req.directory_id)?;
        self.store
            .delete_group(dir, group_id(&req.id)?, req.if_version)
            .await?;
        self.hub.local_write();
        Ok(())
    }

    async fn add_members(&self, req: pd::AddGroupMembersRequest) -> ServiceResult<(i64, i64)> {
        let dir = directory_id(&req.directory_id)?;
        let group = group_id(&req.group_id)?;
        let values: Vec<MemberValue> = req
            .members
            .iter()
            .map(|m| MemberValue {
                value: m.id.clone(),
                r#type: convert::member_kind(m.r#type).map(|k| k.as_str().to_string()),
                display: None,
            })
            .collect();
        let mut kinds = MemberKinds::default();
        loop {
            let refs = kinds.refs(&values)?;
            match self.store.add_members(dir, group, &refs).await {
                Err(StoreError::Invalid(_)) if kinds.can_resolve(&values) => {
                    kinds.resolve(self, dir, &values).await?;
                }
                result => {
                    let counts = result?;
                    self.hub.local_write();
                    return Ok(counts);
                }
            }
        }
    }

    async fn remove_members(
        &self,
        req: pd::RemoveGroupMembersRequest,
    ) -> ServiceResult<(i64, i64)> {
        let dir = directory_id(&req.directory_id)?;
        let group = group_id(&req.group_id)?;
        // An id that is not a UUID cannot be a member: removing it is a no-op.
        let ids: Vec<uuid::Uuid> = req
            .member_ids
            .iter()
            .filter_map(|m| m.parse().ok())
            .collect();
        let counts = self.store.remove_members(dir, group, &ids).await?;
        self.hub.local_write();
        Ok(counts)
    }

    async fn list_members(
        &self,
        req: pd::ListGroupMembersRequest,
    ) -> ServiceResult<pd::ListGroupMembersResponse> {
        let dir = directory_id(&req.directory_id)?;
        let group = group_id(&req.group_id)?;
        let after = match req.page_token.as_str() {
            "" => None,
            token => Some(
                token
                    .parse::<uuid::Uuid>()
                    .map_err(|_| ServiceError::InvalidArgument("malformed page_token".into()))?,
            ),
        };
        let limit = page_size(req.count);
        // One extra row tells whether another page exists.
        let mut members = self
            .store
            .list_members(dir, group, after, limit + 1)
            .await?;
        let more = members.len() as i64 > limit;
        members.truncate(limit.max(0) as usize);
        let next_page_token = match members.last() {
            Some(last) if more => last.id.to_string(),
            _ => String::new(),
        };
        Ok(pd::ListGroupMembersResponse {
            members: members.iter().map(convert::member).collect(),
            next_page_token,
        })
    }
}

/// A group reply whose requested members are not inline: a group with
/// members says so (they are read with ReadGroup).
fn omitting_members(mut group: pd::Group) -> pd::Group {
    group.members.clear();
    group.members_omitted = group.member_count > 0;
    group
}

/// Keeps a unary reply under tonic's default 4 MiB decode limit, whatever
/// the members' display names weigh: omits the members of the largest
/// groups until the groups encode in [`MAX_INLINE_BYTES`].
fn fit_inline(groups: &mut [pd::Group]) {
    let mut size: usize = groups.iter().map(Message::encoded_len).sum();
    while size > MAX_INLINE_BYTES {
        let Some(largest) = groups
            .iter_mut()
            .filter(|g| !g.members.is_empty())
            .max_by_key(|g| g.members.len())
        else {
            return;
        };
        let before = largest.encoded_len();
        *largest = omitting_members(std::mem::take(largest));
        size = size - before + largest.encoded_len();
    }
}

/// Group-member values the client typed, plus kinds resolved by lookup.
#[derive(Debug, Clone, Default)]
struct MemberKinds {
    resolved: HashMap<uuid::Uuid, MemberKind>,
    attempted: bool,
}

impl MemberKinds {
    /// Store references for `values`: the explicit type, else a resolved
    /// kind, else user.
    fn refs(&self, values: &[MemberValue]) -> ServiceResult<Vec<MemberRef>> {
        values
            .iter()
            .map(|v| {
                let id = member_id(&v.value)?;
                let kind = explicit_kind(v)
                    .or_else(|| self.resolved.get(&id).copied())
                    .unwrap_or(MemberKind::User);
                Ok(MemberRef { id, kind })
            })
            .collect()
    }

    /// Whether resolving untyped members could change the outcome.
    fn can_resolve(&self, values: &[MemberValue]) -> bool {
        !self.attempted && values.iter().any(|v| explicit_kind(v).is_none())
    }

    /// Looks every untyped member up (user first, then group). An id that is
    /// neither keeps failing in the store, whose message is kept.
    async fn resolve(
        &mut self,
        api: &DirectoryApi,
        dir: DirectoryId,
        values: &[MemberValue],
    ) -> ServiceResult<()> {
        self.attempted = true;
        for v in values.iter().filter(|v| explicit_kind(v).is_none()) {
            let id = member_id(&v.value)?;
            if self.resolved.contains_key(&id) {
                continue;
            }
            if let Some(kind) = lookup_kind(api.store.as_ref(), dir, id).await? {
                self.resolved.insert(id, kind);
            }
        }
        Ok(())
    }
}

async fn lookup_kind(
    store: &dyn Store,
    dir: DirectoryId,
    id: uuid::Uuid,
) -> ServiceResult<Option<MemberKind>> {
    match store.get_user(dir, UserId(id)).await {
        Ok(_) => return Ok(Some(MemberKind::User)),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match store.get_group(dir, GroupId(id), false).await {
        Ok(_) => Ok(Some(MemberKind::Group)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The member kind a client wrote (`"User"` / `"Group"`, any case).
fn explicit_kind(v: &MemberValue) -> Option<MemberKind> {
    match v.r#type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("group") => Some(MemberKind::Group),
        Some(t) if t.eq_ignore_ascii_case("user") => Some(MemberKind::User),
        _ => None,
    }
}

fn member_id(value: &str) -> ServiceResult<uuid::Uuid> {
    value.trim().parse().map_err(|_| {
        ScimError::invalid_value(format!("member {value:?} does not exist in this directory"))
            .into()
    })
}

/// Members a PATCH step adds (they may need their kind resolved).
fn step_members(step: &GroupPatchStep) -> &[MemberValue] {
    match step {
        GroupPatchStep::AddMembers(m) | GroupPatchStep::ReplaceMembers(m) => m,
        _ => &[],
    }
}

/// The store callback of a group PATCH: turns the planned steps into store
/// operations against the locked group.
fn group_update(steps: Vec<GroupPatchStep>, kinds: MemberKinds) -> roster_store::GroupUpdateFn {
    Box::new(
        move |current: &Group| -> Result<Vec<GroupOp>, CallbackError> {
            let mut document = with_id(&current.raw, &current.id.to_string());
            let mut ops = Vec::with_capacity(steps.len());
            for step in &steps {
                let op = match step {
                    GroupPatchStep::Attributes(patch_ops) => {
                        document = apply(&document, ResourceKind::Group, patch_ops)?;
                        let (raw, prepared) = prepare_group(document.clone())?;
                        GroupOp::SetAttributes {
                            display_name: prepared.display_name,
                            external_id: prepared.external_id,
                            raw,
                        }
                    }
                    GroupPatchStep::AddMembers(values) => GroupOp::AddMembers(kinds.refs(values)?),
                    GroupPatchStep::ReplaceMembers(values) => {
                        GroupOp::ReplaceMembers(kinds.refs(values)?)
                    }
                    GroupPatchStep::RemoveMembers(ids) => {
                        // Ids that are not UUIDs cannot be members: nothing to remove.
                        GroupOp::RemoveMembers(
                            ids.iter().filter_map(|i| i.trim().parse().ok()).collect(),
                        )
                    }
                    GroupPatchStep::RemoveAllMembers => GroupOp::RemoveAllMembers,
                };
                ops.push(op);
            }
            Ok(ops)
        },
    )
}

/// Validates and normalizes a SCIM User, then applies the directory's mappings.
fn user_write(directory: &Directory, resource: Value) -> ServiceResult<UserWrite> {
    let (raw, normalized) = prepare_user(resource)?;
    let mut fields = user_fields(normalized);
    mapping::apply(&directory.attribute_mappings, &raw, &mut fields);
    Ok(UserWrite { fields, raw })
}

fn user_fields(n: NormalizedUser) -> UserFields {
    UserFields {
        user_name: n.user_name,
        external_id: n.external_id,
        active: n.active,
        display_name: n.display_name,
        given_name: n.given_name,
        family_name: n.family_name,
        emails: n
            .emails
            .into_iter()
            .map(|e| roster_store::Email {
                value: e.value,
                r#type: e.r#type,
                primary: e.primary,
            })
            .collect(),
        title: n.title,
        department: n.department,
        manager_id: n.manager_id,
        employee_number: n.employee_number,
        custom_attributes: Default::default(),
    }
}

/// The stored JSON with its `id`, as a PATCH target (paths may name `id`).
fn with_id(raw: &Value, id: &str) -> Value {
    let mut document = raw.clone();
    if let Some(object) = document.as_object_mut() {
        object.insert("id".into(), Value::String(id.to_string()));
    }
    document
}

/// Whether a JSON object has `key` (attribute names are case-insensitive).
fn has_key(value: &Value, key: &str) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.keys().any(|k| k.eq_ignore_ascii_case(key)))
}

fn parse_json(text: &str) -> ServiceResult<Value> {
    serde_json::from_str(text)
        .map_err(|e| ScimError::invalid_syntax(format!("malformed JSON: {e}")).into())
}

fn directory_id(id: &str) -> ServiceResult<DirectoryId> {
    id.parse().map_err(|_| ServiceError::NotFound("directory"))
}

fn user_id(id: &str) -> ServiceResult<UserId> {
    id.parse().map_err(|_| ServiceError::NotFound("user"))
}

fn group_id(id: &str) -> ServiceResult<GroupId> {
    id.parse().map_err(|_| ServiceError::NotFound("group"))
}

/// Caps a requested page size: 0 means the default; a negative count asks
/// for totals only (SCIM `count=0`).
pub fn page_size(count: i32) -> i64 {
    match i64::from(count) {
        0 => DEFAULT_PAGE_SIZE,
        c if c < 0 => 0,
        c => c.min(MAX_PAGE_SIZE),
    }
}

fn list_query(options: Option<pd::ListOptions>, include_members: bool) -> ServiceResult<ListQuery> {
    let o = options.unwrap_or_default();
    let filter = match o.filter.trim() {
        "" => None,
        text => Some(parse(text)?),
    };
    let sort = match o.sort_by.trim() {
        "" => None,
        path => Some(Sort {
            path: parse_attr_path(path)?,
            descending: o.sort_order == pd::SortOrder::Descending as i32,
        }),
    };
    Ok(ListQuery {
        filter,
        sort,
        start_index: o.start_index.max(1),
        count: page_size(o.count),
        page_token: Some(o.page_token).filter(|t| !t.is_empty()),
        include_members,
        omit_cursor: o.omit_cursor,
    })
}

fn user_reply(user: &User) -> Option<pd::User> {
    Some(convert::user(user))
}

fn group_reply(group: &Group) -> Option<pd::Group> {
    Some(convert::group(group))
}

#[tonic::async_trait]
impl DirectoryService for DirectoryApi {
    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id))]
    async fn create_user(
        &self,
        request: Request<pd::CreateUserRequest>,
    ) -> Result<Response<pd::CreateUserResponse>, Status> {
        let user = DirectoryApi::create_user(self, request.into_inner()).await?;
        Ok(Response::new(pd::CreateUserResponse {
            user: user_reply(&user),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, id = %request.get_ref().id))]
    async fn get_user(
        &self,
        request: Request<pd::GetUserRequest>,
    ) -> Result<Response<pd::GetUserResponse>, Status> {
        let req = request.into_inner();
        let dir = directory_id(&req.directory_id)?;
        let user = self
            .store
            .get_user(dir, user_id(&req.id)?)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(pd::GetUserResponse {
            user: user_reply(&user),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id))]
    async fn list_users(
        &self,
        request: Request<pd::ListUsersRequest>,
    ) -> Result<Response<pd::ListUsersResponse>, Status> {
        let req = request.into_inner();
        let dir = directory_id(&req.directory_id)?;
        let query = list_query(req.options, false)?;
        let page = self
            .store
            .list_users(dir, &query)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(pd::ListUsersResponse {
            users: page.items.iter().map(convert::user).collect(),
            total_results: page.total,
            next_page_token: page.next_page_token.unwrap_or_default(),
            // Everything up to `after` is in the page; the cursor also names
            // the few later revisions the page already reflects.
            revision: page.cursor.as_ref().map_or(0, |c| c.after),
            cursor: page.cursor.as_ref().map(cursor::encode).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, id = %request.get_ref().id))]
    async fn replace_user(
        &self,
        request: Request<pd::ReplaceUserRequest>,
    ) -> Result<Response<pd::ReplaceUserResponse>, Status> {
        let user = DirectoryApi::replace_user(self, request.into_inner()).await?;
        Ok(Response::new(pd::ReplaceUserResponse {
            user: user_reply(&user),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, id = %request.get_ref().id))]
    async fn patch_user(
        &self,
        request: Request<pd::PatchUserRequest>,
    ) -> Result<Response<pd::PatchUserResponse>, Status> {
        let user = DirectoryApi::patch_user(self, request.into_inner()).await?;
        Ok(Response::new(pd::PatchUserResponse {
            user: user_reply(&user),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, id = %request.get_ref().id))]
    async fn delete_user(
        &self,
        request: Request<pd::DeleteUserRequest>,
    ) -> Result<Response<pd::DeleteUserResponse>, Status> {
        DirectoryApi::delete_user(self, request.into_inner()).await?;
        Ok(Response::new(pd::DeleteUserResponse {}))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id))]
    async fn create_group(
        &self,
        request: Request<pd::CreateGroupRequest>,
    ) -> Result<Response<pd::CreateGroupResponse>, Status> {
        let group = DirectoryApi::create_group(self, request.into_inner()).await?;
        Ok(Response::new(pd::CreateGroupResponse {
            group: group_reply(&group),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, id = %request.get_ref().id))]
    async fn get_group(
        &self,
        request: Request<pd::GetGroupRequest>,
    ) -> Result<Response<pd::GetGroupResponse>, Status> {
        let req = request.into_inner();
        let (dir, id) = (directory_id(&req.directory_id)?, group_id(&req.id)?);
        let group = match req.exclude_members {
            true => convert::group(
                &self
                    .store
                    .get_group(dir, id, false)
                    .await
                    .map_err(ServiceError::from)?,
            ),
            false => self.group_with_members(dir, id).await?,
        };
        Ok(Response::new(pd::GetGroupResponse { group: Some(group) }))
    }

    type ReadGroupStream = ReadGroupStream;

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, id = %request.get_ref().id))]
    async fn read_group(
        &self,
        request: Request<pd::ReadGroupRequest>,
    ) -> Result<Response<Self::ReadGroupStream>, Status> {
        Ok(Response::new(
            DirectoryApi::read_group(self, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id))]
    async fn list_groups(
        &self,
        request: Request<pd::ListGroupsRequest>,
    ) -> Result<Response<pd::ListGroupsResponse>, Status> {
        let req = request.into_inner();
        let dir = directory_id(&req.directory_id)?;
        let query = list_query(req.options, !req.exclude_members)?;
        let page = self
            .store
            .list_groups(dir, &query)
            .await
            .map_err(ServiceError::from)?;
        let mut groups: Vec<pd::Group> = page
            .items
            .iter()
            .map(|g| match (req.exclude_members, &g.members) {
                // Past the page's member budget: not loaded.
                (false, None) => omitting_members(convert::group(g)),
                _ => convert::group(g),
            })
            .collect();
        fit_inline(&mut groups);
        Ok(Response::new(pd::ListGroupsResponse {
            groups,
            total_results: page.total,
            next_page_token: page.next_page_token.unwrap_or_default(),
            revision: page.cursor.as_ref().map_or(0, |c| c.after),
            cursor: page.cursor.as_ref().map(cursor::encode).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, id = %request.get_ref().id))]
    async fn replace_group(
        &self,
        request: Request<pd::ReplaceGroupRequest>,
    ) -> Result<Response<pd::ReplaceGroupResponse>, Status> {
        let group = DirectoryApi::replace_group(self, request.into_inner()).await?;
        Ok(Response::new(pd::ReplaceGroupResponse {
            group: group_reply(&group),
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, id = %request.get_ref().id))]
    async fn patch_group(
        &self,
        request: Request<pd::PatchGroupRequest>,
    ) -> Result<Response<pd::PatchGroupResponse>, Status> {
        let group = DirectoryApi::patch_group(self, request.into_inner()).await?;
        Ok(Response::new(pd::PatchGroupResponse { group: Some(group) }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, id = %request.get_ref().id))]
    async fn delete_group(
        &self,
        request: Request<pd::DeleteGroupRequest>,
    ) -> Result<Response<pd::DeleteGroupResponse>, Status> {
        DirectoryApi::delete_group(self, request.into_inner()).await?;
        Ok(Response::new(pd::DeleteGroupResponse {}))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, group = %request.get_ref().group_id))]
    async fn add_group_members(
        &self,
        request: Request<pd::AddGroupMembersRequest>,
    ) -> Result<Response<pd::AddGroupMembersResponse>, Status> {
        let (added, version) = self.add_members(request.into_inner()).await?;
        Ok(Response::new(pd::AddGroupMembersResponse {
            added,
            version,
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, group = %request.get_ref().group_id))]
    async fn remove_group_members(
        &self,
        request: Request<pd::RemoveGroupMembersRequest>,
    ) -> Result<Response<pd::RemoveGroupMembersResponse>, Status> {
        let (removed, version) = self.remove_members(request.into_inner()).await?;
        Ok(Response::new(pd::RemoveGroupMembersResponse {
            removed,
            version,
        }))
    }

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id, group = %request.get_ref().group_id))]
    async fn list_group_members(
        &self,
        request: Request<pd::ListGroupMembersRequest>,
    ) -> Result<Response<pd::ListGroupMembersResponse>, Status> {
        Ok(Response::new(
            self.list_members(request.into_inner()).await?,
        ))
    }

    type WatchChangesStream = WatchStream;

    #[tracing::instrument(skip_all, fields(directory = %request.get_ref().directory_id))]
    async fn watch_changes(
        &self,
        request: Request<pd::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let stream = watch::open(&self.hub, request.into_inner()).await?;
        Ok(Response::new(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_capped() {
        assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5), 5);
        assert_eq!(page_size(1_000_000), MAX_PAGE_SIZE);
        assert_eq!(page_size(-1), 0);
    }

    #[test]
    fn malformed_json_is_invalid_syntax() {
        match parse_json("{nope") {
            Err(ServiceError::Scim(e)) => assert_eq!(e.status, 400),
            other => panic!("expected a SCIM error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_ids_are_not_found() {
        assert!(matches!(
            user_id("bob"),
            Err(ServiceError::NotFound("user"))
        ));
        assert!(matches!(group_id(""), Err(ServiceError::NotFound("group"))));
    }

    #[test]
    fn unary_replies_omit_members_that_do_not_fit() {
        let group = |members: usize, display: usize| pd::Group {
            id: format!("g{members}"),
            member_count: members as i64,
            members: (0..members)
                .map(|i| pd::Member {
                    id: uuid::Uuid::from_u128(i as u128).to_string(),
                    r#type: pd::MemberType::User as i32,
                    display: "x".repeat(display),
                })
                .collect(),
            ..Default::default()
        };
        // Long display names: 5,000 members of ~1 KiB do not fit 3 MiB.
        let mut page = vec![group(3, 10), group(5_000, 1_000), group(0, 0)];
        fit_inline(&mut page);
        assert_eq!(page[1].members.len(), 0);
        assert!(page[1].members_omitted);
        assert_eq!(page[0].members.len(), 3);
        assert!(!page[0].members_omitted && !page[2].members_omitted);
        let size: usize = page.iter().map(Message::encoded_len).sum();
        assert!(size <= MAX_INLINE_BYTES);
    }

    #[test]
    fn the_deactivate_patch_is_valid_json() {
        let v: Value = serde_json::from_str(DEACTIVATE_PATCH).unwrap();
        assert_eq!(v["Operations"][0]["value"], false);
    }
}
