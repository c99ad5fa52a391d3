//! The directory service: users, groups, memberships and the change stream
//! over a [`Store`], with no gRPC in it. It speaks the generated messages of
//! `roster.directory.v1` so that a caller in the same process can use it
//! as it is; [`crate::grpc`] puts it on the wire.
//!
//! Writes take SCIM JSON, run it through the SCIM engine (`roster-scim`) for
//! validation and normalization, apply the directory's attribute mappings,
//! and store the result through [`Backend::write`], which wakes the change
//! tailer.
//!
//! # Deprovisioning
//! `DeleteUser` always deletes. A directory's deprovision policy (delete or
//! deactivate) is applied by the caller that translates a SCIM `DELETE`: the
//! gateway reads the policy from the directory (returned by
//! `AuthenticateToken`) and, for `deactivate`, sends `PatchUser` with
//! [`DEACTIVATE_PATCH`] instead of `DeleteUser`. Keeping the decision there
//! keeps this RPC's meaning independent of configuration.

mod digest;
mod members;
mod reply;

use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use roster_proto::directory as pd;
use roster_proto::directory::{
    AddGroupMembersRequest, AddGroupMembersResponse, CreateGroupRequest, CreateGroupResponse,
    CreateUserRequest, CreateUserResponse, DeleteGroupRequest, DeleteGroupResponse,
    DeleteUserRequest, DeleteUserResponse, GetGroupRequest, GetGroupResponse, GetUserRequest,
    GetUserResponse, ListGroupMembersRequest, ListGroupMembersResponse, ListGroupsRequest,
    ListGroupsResponse, ListUsersRequest, ListUsersResponse, PatchGroupRequest, PatchGroupResponse,
    PatchUserRequest, PatchUserResponse, ReadGroupRequest, ReadGroupResponse,
    RemoveGroupMembersRequest, RemoveGroupMembersResponse, ReplaceGroupRequest,
    ReplaceGroupResponse, ReplaceUserRequest, ReplaceUserResponse, WatchChangesRequest,
};
use roster_scim::ResourceKind;
use roster_scim::error::ScimError;
use roster_scim::filter::{parse, parse_attr_path};
use roster_scim::patch::{GroupPatchStep, PatchRequest, apply, plan_group_patch};
use roster_scim::resource::{MemberValue, prepare_group, prepare_user};
use roster_store::{
    Directory, DirectoryId, Group, GroupEdit, GroupId, GroupOp, GroupWrite, LIST_MEMBER_BUDGET,
    ListQuery, Sort, Store, StoreResult, User, UserId, UserWrite,
};
use serde_json::Value;

use crate::backend::Backend;
use crate::convert;
use crate::error::{ServiceError, ServiceResult, parse_id};
use crate::mapping;
use crate::watch::{self, ChangeHub, WatchStream};
use members::{MemberKinds, write_with_members};
use reply::{fit_inline, omitting_members, page_info};

pub use roster_proto::contract::DEACTIVATE_PATCH;

/// Page size of list RPCs when the request leaves `count` at 0.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
/// Largest page a list RPC returns, whatever `count` asks for.
pub const MAX_PAGE_SIZE: i64 = 1000;
/// Members per ReadGroup message (and per store page).
const MEMBER_BATCH: i64 = 1000;

/// The directory service (see the module documentation).
#[derive(Clone)]
pub struct DirectoryApi {
    backend: Backend,
}

/// The message stream of ReadGroup.
pub type ReadGroupStream =
    tokio_stream::wrappers::UnboundedReceiverStream<ServiceResult<ReadGroupResponse>>;

/// Error type of the store's update callbacks.
type CallbackError = Box<dyn std::error::Error + Send + Sync>;

impl DirectoryApi {
    /// A directory service over `store`; writes wake `hub`'s watchers.
    pub fn new(store: Arc<dyn Store>, hub: Arc<ChangeHub>) -> Self {
        Self {
            backend: Backend::new(store, hub),
        }
    }

    fn store(&self) -> &dyn Store {
        self.backend.store()
    }

    async fn directory(&self, id: &str) -> ServiceResult<Directory> {
        let id = directory_id(id)?;
        let cache = self.backend.hub().directories();
        if let Some(directory) = cache.get(id) {
            return Ok(directory);
        }
        let generation = cache.generation();
        let directory = self.store().get_directory(id).await?;
        cache.insert(directory.clone(), generation);
        Ok(directory)
    }

    // --- users ---

    pub async fn create_user(&self, req: CreateUserRequest) -> ServiceResult<CreateUserResponse> {
        let directory = self.directory(&req.directory_id).await?;
        let write = user_write(&directory, parse_json(&req.resource)?)?;
        // Batched with the concurrent creations in this directory.
        let user = self.backend.user_creates().write(directory.id, write);
        let user = self.backend.write(user).await?;
        Ok(CreateUserResponse {
            user: Some(convert::user(&user)),
        })
    }

    pub async fn get_user(&self, req: GetUserRequest) -> ServiceResult<GetUserResponse> {
        let (dir, id) = (directory_id(&req.directory_id)?, user_id(&req.id)?);
        let user = Some(convert::user(&self.store().get_user(dir, id).await?));
        Ok(GetUserResponse { user })
    }

    pub async fn list_users(&self, req: ListUsersRequest) -> ServiceResult<ListUsersResponse> {
        let dir = directory_id(&req.directory_id)?;
        let page = self
            .store()
            .list_users(dir, &list_query(req.options, false)?)
            .await?;
        let info = page_info(&page);
        Ok(ListUsersResponse {
            users: page.items.iter().map(convert::user).collect(),
            total_results: info.total_results,
            next_page_token: info.next_page_token,
            revision: info.revision,
            cursor: info.cursor,
        })
    }

    pub async fn replace_user(
        &self,
        req: ReplaceUserRequest,
    ) -> ServiceResult<ReplaceUserResponse> {
        let directory = self.directory(&req.directory_id).await?;
        let id = user_id(&req.id)?;
        let write = user_write(&directory, parse_json(&req.resource)?)?;
        let user = self
            .store()
            .replace_user(directory.id, id, req.if_version, write);
        let user = self.backend.write(user).await?;
        Ok(ReplaceUserResponse {
            user: Some(convert::user(&user)),
        })
    }

    pub async fn patch_user(&self, req: PatchUserRequest) -> ServiceResult<PatchUserResponse> {
        let directory = self.directory(&req.directory_id).await?;
        let id = user_id(&req.id)?;
        let patch = PatchRequest::parse(&parse_json(&req.patch)?)?;
        let dir_id = directory.id;
        let update = Box::new(move |current: &User| -> Result<UserWrite, CallbackError> {
            let document = with_id(&current.raw, &current.id.to_string());
            let patched = apply(&document, ResourceKind::User, &patch.operations)?;
            Ok(user_write(&directory, patched)?)
        });
        let user = self.store().update_user(dir_id, id, req.if_version, update);
        let user = self.backend.write(user).await?;
        Ok(PatchUserResponse {
            user: Some(convert::user(&user)),
        })
    }

    pub async fn delete_user(&self, req: DeleteUserRequest) -> ServiceResult<DeleteUserResponse> {
        let (dir, id) = (directory_id(&req.directory_id)?, user_id(&req.id)?);
        let deleted = self.store().delete_user(dir, id, req.if_version);
        self.backend
            .write(deleted)
            .await
            .map(|()| DeleteUserResponse {})
    }

    // --- groups ---

    pub async fn create_group(
        &self,
        req: CreateGroupRequest,
    ) -> ServiceResult<CreateGroupResponse> {
        let dir = directory_id(&req.directory_id)?;
        let group = self
            .put_group(dir, parse_json(&req.resource)?, true, |write| {
                self.store().create_group(dir, write)
            })
            .await?;
        Ok(CreateGroupResponse { group: Some(group) })
    }

    pub async fn get_group(&self, req: GetGroupRequest) -> ServiceResult<GetGroupResponse> {
        let (dir, id) = (directory_id(&req.directory_id)?, group_id(&req.id)?);
        let group = match req.exclude_members {
            true => convert::group(&self.store().get_group(dir, id, false).await?),
            false => self.group_with_members(dir, id).await?,
        };
        Ok(GetGroupResponse { group: Some(group) })
    }

    /// ReadGroup: the group first, then its members in batches. The pages
    /// are drained at database speed into the response's queue, so a slow
    /// reader holds memory here but never a database snapshot.
    pub async fn read_group(&self, req: ReadGroupRequest) -> ServiceResult<ReadGroupStream> {
        let (dir, id) = (directory_id(&req.directory_id)?, group_id(&req.id)?);
        let (group, mut pages) = self.store().read_group(dir, id, MEMBER_BATCH).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let first = ReadGroupResponse {
            group: Some(convert::group(&group)),
            members: Vec::new(),
        };
        let _ = tx.send(Ok(first));
        tokio::spawn(async move {
            while let Some(page) = pages.next().await {
                let message = page
                    .map(|members| ReadGroupResponse {
                        group: None,
                        members: members.iter().map(convert::member).collect(),
                    })
                    .map_err(ServiceError::from);
                let failed = message.is_err();
                // A closed queue means the reader went away: stop reading.
                if tx.send(message).is_err() || failed {
                    break;
                }
            }
        });
        Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    }

    pub async fn list_groups(&self, req: ListGroupsRequest) -> ServiceResult<ListGroupsResponse> {
        let dir = directory_id(&req.directory_id)?;
        let query = list_query(req.options, !req.exclude_members)?;
        let page = self.store().list_groups(dir, &query).await?;
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
        let info = page_info(&page);
        Ok(ListGroupsResponse {
            groups,
            total_results: info.total_results,
            next_page_token: info.next_page_token,
            revision: info.revision,
            cursor: info.cursor,
        })
    }

    pub async fn replace_group(
        &self,
        req: ReplaceGroupRequest,
    ) -> ServiceResult<ReplaceGroupResponse> {
        let (dir, id) = (directory_id(&req.directory_id)?, group_id(&req.id)?);
        // A PUT without `members` keeps the members: IdPs that rename a group
        // with PUT would otherwise empty it by accident.
        let resource = parse_json(&req.resource)?;
        let replaces_members = has_key(&resource, "members");
        let group = self
            .put_group(dir, resource, replaces_members, |write| {
                self.store().replace_group(dir, id, req.if_version, write)
            })
            .await?;
        Ok(ReplaceGroupResponse { group: Some(group) })
    }

    pub async fn patch_group(&self, req: PatchGroupRequest) -> ServiceResult<PatchGroupResponse> {
        let (dir, id) = (directory_id(&req.directory_id)?, group_id(&req.id)?);
        let patch = PatchRequest::parse(&parse_json(&req.patch)?)?;
        let steps = plan_group_patch(&patch)?;
        let added: Vec<MemberValue> = steps.iter().flat_map(step_members).cloned().collect();
        let steps = &steps;
        let group = write_with_members(&self.backend, dir, &added, |kinds| async move {
            let update = group_update(steps.clone(), kinds);
            // Batched with the concurrent PATCHes of this group.
            Ok(self
                .backend
                .groups()
                .write(
                    (dir, id),
                    GroupEdit {
                        if_version: req.if_version,
                        update,
                    },
                )
                .await?)
        })
        .await?;
        if req.exclude_members {
            return Ok(PatchGroupResponse {
                group: Some(convert::group(&group)),
            });
        }
        // The write committed: a failed read-back answers the group as
        // written, with its members to be read separately.
        let group = match self.group_with_members(dir, id).await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(error = %e, "reading a patched group back failed");
                omitting_members(convert::group(&group))
            }
        };
        Ok(PatchGroupResponse { group: Some(group) })
    }

    pub async fn delete_group(
        &self,
        req: DeleteGroupRequest,
    ) -> ServiceResult<DeleteGroupResponse> {
        let (dir, id) = (directory_id(&req.directory_id)?, group_id(&req.id)?);
        let deleted = self.store().delete_group(dir, id, req.if_version);
        self.backend
            .write(deleted)
            .await
            .map(|()| DeleteGroupResponse {})
    }

    // --- memberships ---

    pub async fn add_group_members(
        &self,
        req: AddGroupMembersRequest,
    ) -> ServiceResult<AddGroupMembersResponse> {
        let (dir, group) = (directory_id(&req.directory_id)?, group_id(&req.group_id)?);
        let values: Vec<MemberValue> = req
            .members
            .iter()
            .map(|m| MemberValue {
                value: m.id.clone(),
                r#type: convert::member_kind(m.r#type).map(|k| k.as_str().to_string()),
                display: None,
            })
            .collect();
        let values = &values;
        let (added, version) = write_with_members(&self.backend, dir, values, |kinds| async move {
            Ok(self
                .store()
                .add_members(dir, group, &kinds.refs(values)?)
                .await?)
        })
        .await?;
        Ok(AddGroupMembersResponse { added, version })
    }

    pub async fn remove_group_members(
        &self,
        req: RemoveGroupMembersRequest,
    ) -> ServiceResult<RemoveGroupMembersResponse> {
        let (dir, group) = (directory_id(&req.directory_id)?, group_id(&req.group_id)?);
        // An id that is not a UUID cannot be a member: removing it is a no-op.
        let ids: Vec<uuid::Uuid> = req
            .member_ids
            .iter()
            .filter_map(|m| m.parse().ok())
            .collect();
        let removed = self.store().remove_members(dir, group, &ids);
        let (removed, version) = self.backend.write(removed).await?;
        Ok(RemoveGroupMembersResponse { removed, version })
    }

    pub async fn list_group_members(
        &self,
        req: ListGroupMembersRequest,
    ) -> ServiceResult<ListGroupMembersResponse> {
        let (dir, group) = (directory_id(&req.directory_id)?, group_id(&req.group_id)?);
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
            .store()
            .list_members(dir, group, after, limit + 1)
            .await?;
        let more = members.len() as i64 > limit;
        members.truncate(limit.max(0) as usize);
        let next_page_token = match members.last() {
            Some(last) if more => last.id.to_string(),
            _ => String::new(),
        };
        Ok(ListGroupMembersResponse {
            members: members.iter().map(convert::member).collect(),
            next_page_token,
        })
    }

    // --- changes ---

    /// WatchChanges: the request is checked here, so a bad one fails the
    /// call itself; later failures end the stream.
    pub async fn watch_changes(&self, req: WatchChangesRequest) -> ServiceResult<WatchStream> {
        watch::open(self.backend.hub(), req).await
    }

    /// Create and replace of a group: validates the Group body and writes it
    /// with `op`, its members included when `with_members`.
    async fn put_group<F, Fut>(
        &self,
        dir: DirectoryId,
        resource: Value,
        with_members: bool,
        op: F,
    ) -> ServiceResult<pd::Group>
    where
        F: Fn(GroupWrite) -> Fut,
        Fut: Future<Output = StoreResult<Group>>,
    {
        let (raw, prepared) = prepare_group(resource)?;
        let (raw, prepared, op) = (&raw, &prepared, &op);
        let group = write_with_members(&self.backend, dir, &prepared.members, |kinds| async move {
            let members = match with_members {
                true => Some(kinds.refs(&prepared.members)?),
                false => None,
            };
            let write = GroupWrite {
                display_name: prepared.display_name.clone(),
                external_id: prepared.external_id.clone(),
                raw: raw.clone(),
                members,
            };
            Ok(op(write).await?)
        })
        .await?;
        Ok(convert::group(&group))
    }

    /// GetGroup with members: the group and its members from one snapshot,
    /// inline only while they fit one message.
    async fn group_with_members(&self, dir: DirectoryId, id: GroupId) -> ServiceResult<pd::Group> {
        let (group, pages) = self.store().read_group(dir, id, MEMBER_BATCH).await?;
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
    let (raw, mut fields) = prepare_user(resource)?;
    mapping::apply(&directory.attribute_mappings, &raw, &mut fields);
    Ok(UserWrite { fields, raw })
}

/// The stored JSON with its `id`, as a PATCH target (paths may name `id`).
fn with_id(raw: &roster_store::Document, id: &str) -> Value {
    let mut document = raw.to_value();
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
    roster_scim::from_slice_unique(text.as_bytes())
        .map_err(|e| ScimError::invalid_syntax(format!("malformed JSON: {e}")).into())
}

pub(crate) fn directory_id(id: &str) -> ServiceResult<DirectoryId> {
    parse_id(id, "directory")
}

fn user_id(id: &str) -> ServiceResult<UserId> {
    parse_id(id, "user")
}

fn group_id(id: &str) -> ServiceResult<GroupId> {
    parse_id(id, "group")
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
    fn the_deactivate_patch_is_valid_json() {
        let v: Value = serde_json::from_str(DEACTIVATE_PATCH).unwrap();
        assert_eq!(v["Operations"][0]["value"], false);
    }
}
