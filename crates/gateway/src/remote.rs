//! A directory service in another process, called through the same
//! generated trait as the one in this process (`roster_directory::InProcess`):
//! each method forwards its request to a tonic client over [`Upstream`], so
//! the gateway's code holds one `DynDirectoryService` whichever it is.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt as _};
use roster_proto::directory as pd;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::directory_service_server::DirectoryService;
use roster_proto::directory::{WatchChangesFrame, encode_change, watch_changes_frame};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::lookups::{LookupCounts, Lookups, is_keyed_lookup};
use crate::upstream::Upstream;

/// See the module docs. Keyed lookups are gathered ([`Lookups`]).
#[derive(Clone)]
pub struct RemoteDirectory {
    client: DirectoryServiceClient<Upstream>,
    lookups: Arc<Lookups>,
}

impl RemoteDirectory {
    /// Calls go out on `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        let client = DirectoryServiceClient::new(upstream);
        let lookups = Lookups::new(client.clone());
        Self { client, lookups }
    }

    /// How many keyed lookups went out gathered, in how many calls.
    pub fn lookup_counts(&self) -> LookupCounts {
        self.lookups.counts()
    }
}

/// The whole trait: unary methods forward as they are, streams are boxed.
macro_rules! forward {
    ( $( $rpc:ident($req:ty) -> $resp:ty; )* ) => {
        #[tonic::async_trait]
        impl DirectoryService for RemoteDirectory {
            $(
                async fn $rpc(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    self.client.clone().$rpc(request).await
                }
            )*

            async fn list_users(
                &self,
                request: Request<pd::ListUsersRequest>,
            ) -> Result<Response<pd::ListUsersResponse>, Status> {
                if is_keyed_lookup(request.get_ref()) {
                    self.lookups.list_users(request).await
                } else {
                    self.client.clone().list_users(request).await
                }
            }

            type ReadGroupStream = BoxStream<pd::ReadGroupResponse>;

            async fn read_group(
                &self,
                request: Request<pd::ReadGroupRequest>,
            ) -> Result<Response<Self::ReadGroupStream>, Status> {
                let response = self.client.clone().read_group(request).await?;
                Ok(response.map(StreamExt::boxed))
            }

            type WatchChangesStream = BoxStream<WatchChangesFrame>;

            async fn watch_changes(
                &self,
                request: Request<pd::WatchChangesRequest>,
            ) -> Result<Response<Self::WatchChangesStream>, Status> {
                let response = self.client.clone().watch_changes(request).await?;
                Ok(response.map(|stream| stream.map_ok(frame_of).boxed()))
            }
        }
    };
}

forward! {
    create_user(pd::CreateUserRequest) -> pd::CreateUserResponse;
    get_user(pd::GetUserRequest) -> pd::GetUserResponse;
    batch_list_users(pd::BatchListUsersRequest) -> pd::BatchListUsersResponse;
    replace_user(pd::ReplaceUserRequest) -> pd::ReplaceUserResponse;
    patch_user(pd::PatchUserRequest) -> pd::PatchUserResponse;
    delete_user(pd::DeleteUserRequest) -> pd::DeleteUserResponse;
    create_group(pd::CreateGroupRequest) -> pd::CreateGroupResponse;
    get_group(pd::GetGroupRequest) -> pd::GetGroupResponse;
    list_groups(pd::ListGroupsRequest) -> pd::ListGroupsResponse;
    replace_group(pd::ReplaceGroupRequest) -> pd::ReplaceGroupResponse;
    patch_group(pd::PatchGroupRequest) -> pd::PatchGroupResponse;
    delete_group(pd::DeleteGroupRequest) -> pd::DeleteGroupResponse;
    add_group_members(pd::AddGroupMembersRequest) -> pd::AddGroupMembersResponse;
    remove_group_members(pd::RemoveGroupMembersRequest) -> pd::RemoveGroupMembersResponse;
    list_group_members(pd::ListGroupMembersRequest) -> pd::ListGroupMembersResponse;
    get_state_digest(pd::GetStateDigestRequest) -> pd::GetStateDigestResponse;
}

/// The server's form of a received `WatchChangesResponse` (its change
/// encoded again: the gateway never watches, this only keeps the trait whole).
fn frame_of(response: pd::WatchChangesResponse) -> WatchChangesFrame {
    use pd::watch_changes_response::Payload;
    let payload = response.payload.map(|payload| match payload {
        Payload::Change(change) => watch_changes_frame::Payload::Change(encode_change(&change)),
        Payload::Progress(progress) => watch_changes_frame::Payload::Progress(progress),
        Payload::Synced(synced) => watch_changes_frame::Payload::Synced(synced),
    });
    WatchChangesFrame {
        cursor: response.cursor,
        revision: response.revision,
        payload,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn a_received_watch_response_becomes_the_frame_that_encodes_to_it() {
        let change = pd::Change {
            event_id: "e1".into(),
            directory_id: "d1".into(),
            resource_id: "u1".into(),
            version: 3,
            ..Default::default()
        };
        let responses = [
            pd::WatchChangesResponse {
                cursor: "r7".into(),
                revision: 7,
                payload: Some(pd::watch_changes_response::Payload::Change(change)),
            },
            pd::WatchChangesResponse {
                cursor: "r8".into(),
                revision: 8,
                payload: Some(pd::watch_changes_response::Payload::Progress(
                    pd::Progress::default(),
                )),
            },
        ];
        for response in responses {
            let bytes = frame_of(response.clone()).encode_to_vec();
            assert_eq!(
                pd::WatchChangesResponse::decode(&bytes[..]).unwrap(),
                response
            );
        }
    }
}
