//! The gRPC face of the two services. Each RPC decodes its request, calls
//! the plain service's method of the same name, and encodes the answer; a
//! [`ServiceError`] becomes a `tonic::Status` here and nowhere else. No
//! business rule lives in this module, so a caller in the same process can
//! use [`DirectoryApi`] and [`AdminApi`] directly and get the same answers.

use futures::TryStreamExt;
use futures::stream::MapErr;
use roster_proto::admin as pa;
use roster_proto::admin::admin_service_server::{AdminService, AdminServiceServer};
use roster_proto::contract::{EVENTS_METADATA, Events};
use roster_proto::directory as pd;
use roster_proto::directory::directory_service_server::{DirectoryService, DirectoryServiceServer};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::admin::AdminApi;
use crate::error::{ServiceError, ServiceResult};
use crate::service::{DirectoryApi, ReadGroupStream};
use crate::watch::WatchStream;

/// Serves a plain service over tonic.
#[derive(Clone)]
pub struct Grpc<S>(pub S);

/// `DirectoryService` as a tonic service.
pub fn directory_server(api: DirectoryApi) -> DirectoryServiceServer<Grpc<DirectoryApi>> {
    DirectoryServiceServer::new(Grpc(api))
}

/// `AdminService` as a tonic service.
pub fn admin_server(api: AdminApi) -> AdminServiceServer<Grpc<AdminApi>> {
    AdminServiceServer::new(Grpc(api))
}

/// A server-streaming reply: the service's stream with its errors encoded.
pub type StatusStream<S> = MapErr<S, fn(ServiceError) -> Status>;

/// A unary reply, carrying the change-log events the call committed
/// (`EVENTS_METADATA`) for the gateway's audit trail.
async fn unary<T>(call: impl Future<Output = ServiceResult<T>>) -> Result<Response<T>, Status> {
    let (reply, mut produced) = roster_store::produced::collect(call).await;
    let mut response = Response::new(reply?);
    if !produced.is_empty() {
        produced.sort_by_key(|p| p.revision);
        let mut events = Events::default();
        for p in &produced {
            events.push(p.kind.as_str(), p.revision, 1);
        }
        if let Ok(value) = MetadataValue::try_from(events.encode()) {
            response.metadata_mut().insert(EVENTS_METADATA, value);
        }
    }
    Ok(response)
}

async fn streaming<S>(
    call: impl Future<Output = ServiceResult<S>>,
) -> Result<Response<StatusStream<S>>, Status>
where
    S: futures::TryStream<Error = ServiceError>,
{
    let to_status: fn(ServiceError) -> Status = Status::from;
    Ok(Response::new(call.await?.map_err(to_status)))
}

/// Implements a tonic service trait for `Grpc<service>`, one RPC per line:
/// its request and reply types, and the request fields its span records.
macro_rules! adapter {
    (
        $service:ty => $trait:ident {
            $( $rpc:ident($req:ty) -> $resp:ty [$($field:ident = $from:ident),*]; )*
        }
        $( streams {
            $( $srpc:ident($sreq:ty) -> $assoc:ident = $stream:ty [$($sfield:ident = $sfrom:ident),*]; )*
        } )?
        $( others { $($other:item)* } )?
    ) => {
        #[tonic::async_trait]
        impl $trait for Grpc<$service> {
            $($($other)*)?
            $(
                #[tracing::instrument(skip_all, fields($($field = %request.get_ref().$from),*))]
                async fn $rpc(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    unary(self.0.$rpc(request.into_inner())).await
                }
            )*
            $($(
                type $assoc = StatusStream<$stream>;

                #[tracing::instrument(skip_all, fields($($sfield = %request.get_ref().$sfrom),*))]
                async fn $srpc(
                    &self,
                    request: Request<$sreq>,
                ) -> Result<Response<Self::$assoc>, Status> {
                    streaming(self.0.$srpc(request.into_inner())).await
                }
            )*)?
        }
    };
}

adapter! {
    DirectoryApi => DirectoryService {
        create_user(pd::CreateUserRequest) -> pd::CreateUserResponse [directory = directory_id];
        get_user(pd::GetUserRequest) -> pd::GetUserResponse [directory = directory_id, id = id];
        list_users(pd::ListUsersRequest) -> pd::ListUsersResponse [directory = directory_id];
        replace_user(pd::ReplaceUserRequest) -> pd::ReplaceUserResponse [directory = directory_id, id = id];
        patch_user(pd::PatchUserRequest) -> pd::PatchUserResponse [directory = directory_id, id = id];
        delete_user(pd::DeleteUserRequest) -> pd::DeleteUserResponse [directory = directory_id, id = id];
        create_group(pd::CreateGroupRequest) -> pd::CreateGroupResponse [directory = directory_id];
        get_group(pd::GetGroupRequest) -> pd::GetGroupResponse [directory = directory_id, id = id];
        list_groups(pd::ListGroupsRequest) -> pd::ListGroupsResponse [directory = directory_id];
        replace_group(pd::ReplaceGroupRequest) -> pd::ReplaceGroupResponse [directory = directory_id, id = id];
        patch_group(pd::PatchGroupRequest) -> pd::PatchGroupResponse [directory = directory_id, id = id];
        delete_group(pd::DeleteGroupRequest) -> pd::DeleteGroupResponse [directory = directory_id, id = id];
        add_group_members(pd::AddGroupMembersRequest) -> pd::AddGroupMembersResponse [directory = directory_id, group = group_id];
        remove_group_members(pd::RemoveGroupMembersRequest) -> pd::RemoveGroupMembersResponse [directory = directory_id, group = group_id];
        list_group_members(pd::ListGroupMembersRequest) -> pd::ListGroupMembersResponse [directory = directory_id, group = group_id];
        get_state_digest(pd::GetStateDigestRequest) -> pd::GetStateDigestResponse [directory = directory_id];
    }
    streams {
        read_group(pd::ReadGroupRequest) -> ReadGroupStream = ReadGroupStream [directory = directory_id, id = id];
        watch_changes(pd::WatchChangesRequest) -> WatchChangesStream = WatchStream [directory = directory_id];
    }
    others {
        async fn batch_list_users(
            &self,
            request: Request<pd::BatchListUsersRequest>,
        ) -> Result<Response<pd::BatchListUsersResponse>, Status> {
            let calls = request.into_inner().calls;
            let results = crate::InProcess(self.clone()).list_each(calls).await?;
            Ok(Response::new(pd::BatchListUsersResponse { results }))
        }
    }
}

adapter! {
    AdminApi => AdminService {
        create_directory(pa::CreateDirectoryRequest) -> pa::CreateDirectoryResponse [name = name];
        get_directory(pa::GetDirectoryRequest) -> pa::GetDirectoryResponse [directory = id];
        list_directories(pa::ListDirectoriesRequest) -> pa::ListDirectoriesResponse [];
        update_directory(pa::UpdateDirectoryRequest) -> pa::UpdateDirectoryResponse [directory = id];
        delete_directory(pa::DeleteDirectoryRequest) -> pa::DeleteDirectoryResponse [directory = id];
        create_token(pa::CreateTokenRequest) -> pa::CreateTokenResponse [directory = directory_id];
        list_tokens(pa::ListTokensRequest) -> pa::ListTokensResponse [directory = directory_id];
        revoke_token(pa::RevokeTokenRequest) -> pa::RevokeTokenResponse [directory = directory_id, token = token_id];
        create_service_credential(pa::CreateServiceCredentialRequest) -> pa::CreateServiceCredentialResponse [name = name];
        list_service_credentials(pa::ListServiceCredentialsRequest) -> pa::ListServiceCredentialsResponse [];
        revoke_service_credential(pa::RevokeServiceCredentialRequest) -> pa::RevokeServiceCredentialResponse [id = id];
        authenticate_token(pa::AuthenticateTokenRequest) -> pa::AuthenticateTokenResponse [];
        record_activity(pa::RecordActivityRequest) -> pa::RecordActivityResponse [];
        list_activity(pa::ListActivityRequest) -> pa::ListActivityResponse [directory = directory_id];
        create_portal_link(pa::CreatePortalLinkRequest) -> pa::CreatePortalLinkResponse [directory = directory_id];
        revoke_portal_links(pa::RevokePortalLinksRequest) -> pa::RevokePortalLinksResponse [directory = directory_id];
        open_portal_link(pa::OpenPortalLinkRequest) -> pa::OpenPortalLinkResponse [];
        authenticate_portal_session(pa::AuthenticatePortalSessionRequest) -> pa::AuthenticatePortalSessionResponse [];
        end_portal_session(pa::EndPortalSessionRequest) -> pa::EndPortalSessionResponse [];
        create_webhook_endpoint(pa::CreateWebhookEndpointRequest) -> pa::CreateWebhookEndpointResponse [directory = directory_id];
        get_webhook_endpoint(pa::GetWebhookEndpointRequest) -> pa::GetWebhookEndpointResponse [endpoint = id];
        list_webhook_endpoints(pa::ListWebhookEndpointsRequest) -> pa::ListWebhookEndpointsResponse [directory = directory_id];
        update_webhook_endpoint(pa::UpdateWebhookEndpointRequest) -> pa::UpdateWebhookEndpointResponse [endpoint = id];
        delete_webhook_endpoint(pa::DeleteWebhookEndpointRequest) -> pa::DeleteWebhookEndpointResponse [endpoint = id];
        rotate_webhook_secret(pa::RotateWebhookSecretRequest) -> pa::RotateWebhookSecretResponse [endpoint = id];
        replay_webhook_endpoint(pa::ReplayWebhookEndpointRequest) -> pa::ReplayWebhookEndpointResponse [endpoint = id];
        skip_webhook_event(pa::SkipWebhookEventRequest) -> pa::SkipWebhookEventResponse [endpoint = id];
        list_webhook_attempts(pa::ListWebhookAttemptsRequest) -> pa::ListWebhookAttemptsResponse [endpoint = id];
        send_test_webhook_event(pa::SendTestWebhookEventRequest) -> pa::SendTestWebhookEventResponse [endpoint = id];
        set_directory_source(pa::SetDirectorySourceRequest) -> pa::SetDirectorySourceResponse [directory = directory_id];
        get_directory_source(pa::GetDirectorySourceRequest) -> pa::GetDirectorySourceResponse [directory = directory_id];
        sync_directory_now(pa::SyncDirectoryNowRequest) -> pa::SyncDirectoryNowResponse [directory = directory_id];
        reseal_secrets(pa::ResealSecretsRequest) -> pa::ResealSecretsResponse [];
    }
}
