//! The list-then-watch snapshot: users, groups and their members read page
//! by page through the list RPCs and handed to the consumer as synthetic
//! events, then a watch from the first page's cursor (docs/watch.md, "List,
//! then watch"). Changes committed while listing may arrive again from the
//! watch; applied by version (`crate::supersedes`) they are harmless.

use roster_proto::directory::change::Resource;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::{
    Change, ChangeKind, Group, ListGroupMembersRequest, ListGroupsRequest, ListOptions,
    ListUsersRequest, MemberType, Membership, User,
};
use tonic::Status;
use tonic::transport::Channel;

use crate::follow::{BoxError, Consumer, Position};

/// Why a listing stopped.
pub(crate) enum ListFailed {
    Status(Status),
    Consumer(BoxError),
}

impl From<Status> for ListFailed {
    fn from(status: Status) -> Self {
        ListFailed::Status(status)
    }
}

const PAGE: i32 = 500;

/// Everything the caller may see, as synthetic events; returns the cursor
/// and revision to watch from.
pub(crate) async fn snapshot(
    client: &mut DirectoryServiceClient<Channel>,
    authorize: &(dyn Fn(&mut tonic::metadata::MetadataMap) -> Result<(), Status> + Sync),
    directory: &str,
    wants: &(dyn Fn(ChangeKind) -> bool + Sync),
    consumer: &mut dyn Consumer,
) -> Result<(String, i64), ListFailed> {
    let mut from: Option<(String, i64)> = None;
    let mut token = String::new();
    loop {
        let mut request = tonic::Request::new(ListUsersRequest {
            directory_id: directory.into(),
            options: Some(page(&token)),
        });
        authorize(request.metadata_mut())?;
        let page = client.list_users(request).await?.into_inner();
        from.get_or_insert((page.cursor.clone(), page.revision));
        for user in page.users {
            if wants(ChangeKind::UserCreated) {
                apply(consumer, user_created(directory, user)).await?;
            }
        }
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    loop {
        let mut request = tonic::Request::new(ListGroupsRequest {
            directory_id: directory.into(),
            options: Some(page(&token)),
            exclude_members: true,
        });
        authorize(request.metadata_mut())?;
        let page = client.list_groups(request).await?.into_inner();
        for group in page.groups {
            let (id, version) = (
                group.id.clone(),
                group.meta.as_ref().map_or(0, |m| m.version),
            );
            if wants(ChangeKind::GroupCreated) {
                apply(consumer, group_created(directory, group)).await?;
            }
            if wants(ChangeKind::MemberAdded) {
                members(client, authorize, directory, &id, version, consumer).await?;
            }
        }
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    Ok(from.unwrap_or_default())
}

async fn members(
    client: &mut DirectoryServiceClient<Channel>,
    authorize: &(dyn Fn(&mut tonic::metadata::MetadataMap) -> Result<(), Status> + Sync),
    directory: &str,
    group: &str,
    version: i64,
    consumer: &mut dyn Consumer,
) -> Result<(), ListFailed> {
    let mut token = String::new();
    loop {
        let mut request = tonic::Request::new(ListGroupMembersRequest {
            directory_id: directory.into(),
            group_id: group.into(),
            count: PAGE,
            page_token: token,
        });
        authorize(request.metadata_mut())?;
        let page = client.list_group_members(request).await?.into_inner();
        for member in page.members {
            let membership = Membership {
                group_id: group.into(),
                member_id: member.id,
                member_type: if member.r#type == MemberType::Group as i32 {
                    MemberType::Group as i32
                } else {
                    MemberType::User as i32
                },
            };
            let change = synthetic(
                ChangeKind::MemberAdded,
                directory,
                group,
                version,
                Resource::Membership(membership),
            );
            apply(consumer, change).await?;
        }
        token = page.next_page_token;
        if token.is_empty() {
            return Ok(());
        }
    }
}

fn page(token: &str) -> ListOptions {
    ListOptions {
        count: PAGE,
        page_token: token.into(),
        ..Default::default()
    }
}

async fn apply(consumer: &mut dyn Consumer, change: Change) -> Result<(), ListFailed> {
    let at = Position {
        cursor: "",
        revision: 0,
    };
    consumer
        .apply(&change, at)
        .await
        .map_err(ListFailed::Consumer)
}

fn user_created(directory: &str, user: User) -> Change {
    let (id, version) = (user.id.clone(), user.meta.as_ref().map_or(0, |m| m.version));
    synthetic(
        ChangeKind::UserCreated,
        directory,
        &id,
        version,
        Resource::User(user),
    )
}

fn group_created(directory: &str, group: Group) -> Change {
    let (id, version) = (
        group.id.clone(),
        group.meta.as_ref().map_or(0, |m| m.version),
    );
    synthetic(
        ChangeKind::GroupCreated,
        directory,
        &id,
        version,
        Resource::Group(group),
    )
}

/// A snapshot event shaped like the ones `initial_state` streams.
fn synthetic(
    kind: ChangeKind,
    directory: &str,
    id: &str,
    version: i64,
    resource: Resource,
) -> Change {
    Change {
        kind: kind as i32,
        directory_id: directory.into(),
        resource_id: id.into(),
        version,
        resource: Some(resource),
        synthetic: true,
        ..Default::default()
    }
}
