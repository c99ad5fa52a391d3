//! `DirectoryService` called in the caller's own process (`roster serve`):
//! the gateway calls the generated trait's methods on the service itself —
//! no HTTP request, no protobuf encoding or decoding, no body stream
//! (docs/performance.md, "the in-process call"). What the tonic server
//! gives a call over the wire, each call gets here too: its span (named by
//! the gRPC path, continuing the caller's trace, carrying the request id),
//! the `roster_grpc_*` metrics, and the deadline of its `grpc-timeout`
//! metadata. There is no credential check: the caller is this process.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use roster_proto::directory as pd;
use roster_proto::directory::directory_service_server::DirectoryService;
use tonic::codegen::BoxStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::grpc::Grpc;
use crate::service::DirectoryApi;

/// The directory service as its own gRPC trait, for a caller in this
/// process; see the module docs.
#[derive(Clone)]
pub struct InProcess(pub(crate) Grpc<DirectoryApi>);

impl InProcess {
    /// `BatchListUsers`' calls, each as a `ListUsers` of its own (its span,
    /// deadline and metrics, from its own metadata), run together so that
    /// the store gathers their keyed searches into one statement.
    pub(crate) async fn list_each(
        &self,
        calls: Vec<pd::BatchedListUsers>,
    ) -> Result<Vec<pd::BatchedListUsersResult>, Status> {
        use pd::batched_list_users_result::Result as Outcome;
        if calls.len() > roster_proto::batch::MAX_CALLS {
            return Err(Status::invalid_argument(format!(
                "a batch carries at most {} calls",
                roster_proto::batch::MAX_CALLS
            )));
        }
        let each = calls.into_iter().map(|call| {
            let metadata = roster_proto::batch::from_map(call.metadata);
            let request = call.request.unwrap_or_default();
            let request = Request::from_parts(metadata, tonic::Extensions::default(), request);
            async move {
                let result = match self.list_users(request).await {
                    Ok(response) => Outcome::Response(response.into_inner()),
                    Err(status) => Outcome::Status(roster_proto::batch::status_to_wire(&status)),
                };
                pd::BatchedListUsersResult {
                    result: Some(result),
                }
            }
        });
        Ok(futures::future::join_all(each).await)
    }
}

/// One call's span, start and deadline.
struct Call {
    path: &'static str,
    span: tracing::Span,
    started: Instant,
    deadline: Option<Duration>,
}

impl Call {
    fn begin(path: &'static str, metadata: &MetadataMap) -> Self {
        Self {
            path,
            span: crate::server::call_span(path, metadata.as_ref()),
            started: Instant::now(),
            deadline: metadata
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_grpc_timeout),
        }
    }

    /// Runs the call inside its span and deadline, and counts it as the
    /// server's metrics layer does (a stream's when its head is ready).
    async fn run<T>(self, call: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
        let call = call.instrument(self.span);
        let result = match self.deadline {
            Some(deadline) => tokio::time::timeout(deadline, call)
                .await
                .unwrap_or_else(|_| Err(roster_proto::contract::deadline_exceeded())),
            None => call.await,
        };
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        roster_telemetry::metrics::record_grpc_call(self.path, code, self.started);
        result
    }
}

/// `stream`, boxed, each poll inside `span`.
fn in_span<S, T>(stream: S, span: tracing::Span) -> BoxStream<T>
where
    S: futures::Stream<Item = Result<T, Status>> + Send + 'static,
{
    let mut stream = Box::pin(stream);
    futures::stream::poll_fn(move |cx| {
        let _entered = span.enter();
        stream.as_mut().poll_next(cx)
    })
    .boxed()
}

/// A `grpc-timeout` value (`TimeoutValue TimeoutUnit`: at most 8 digits and
/// one of `H M S m u n`, per the gRPC over HTTP/2 specification).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `/roster.directory.v1.DirectoryService/<method>`.
macro_rules! path {
    ($method:literal) => {
        concat!("/roster.directory.v1.DirectoryService/", $method)
    };
}

/// One trait method per line: unary calls pass through [`Call::run`];
/// streaming ones also box their stream and poll it inside the span.
macro_rules! in_process {
    (
        unary { $( $rpc:ident($req:ty) -> $resp:ty = $name:literal; )* }
        streams { $( $srpc:ident($sreq:ty) -> $assoc:ident<$item:ty> = $sname:literal; )* }
    ) => {
        #[tonic::async_trait]
        impl DirectoryService for InProcess {
            $(
                async fn $rpc(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    let call = Call::begin(path!($name), request.metadata());
                    call.run(self.0.$rpc(request)).await
                }
            )*
            $(
                type $assoc = BoxStream<$item>;

                async fn $srpc(
                    &self,
                    request: Request<$sreq>,
                ) -> Result<Response<Self::$assoc>, Status> {
                    let call = Call::begin(path!($sname), request.metadata());
                    let span = call.span.clone();
                    let response = call.run(self.0.$srpc(request)).await?;
                    Ok(response.map(|stream| in_span(stream, span)))
                }
            )*
        }
    };
}

in_process! {
    unary {
        create_user(pd::CreateUserRequest) -> pd::CreateUserResponse = "CreateUser";
        get_user(pd::GetUserRequest) -> pd::GetUserResponse = "GetUser";
        list_users(pd::ListUsersRequest) -> pd::ListUsersResponse = "ListUsers";
        batch_list_users(pd::BatchListUsersRequest) -> pd::BatchListUsersResponse = "BatchListUsers";
        replace_user(pd::ReplaceUserRequest) -> pd::ReplaceUserResponse = "ReplaceUser";
        patch_user(pd::PatchUserRequest) -> pd::PatchUserResponse = "PatchUser";
        delete_user(pd::DeleteUserRequest) -> pd::DeleteUserResponse = "DeleteUser";
        create_group(pd::CreateGroupRequest) -> pd::CreateGroupResponse = "CreateGroup";
        get_group(pd::GetGroupRequest) -> pd::GetGroupResponse = "GetGroup";
        list_groups(pd::ListGroupsRequest) -> pd::ListGroupsResponse = "ListGroups";
        replace_group(pd::ReplaceGroupRequest) -> pd::ReplaceGroupResponse = "ReplaceGroup";
        patch_group(pd::PatchGroupRequest) -> pd::PatchGroupResponse = "PatchGroup";
        delete_group(pd::DeleteGroupRequest) -> pd::DeleteGroupResponse = "DeleteGroup";
        add_group_members(pd::AddGroupMembersRequest) -> pd::AddGroupMembersResponse = "AddGroupMembers";
        remove_group_members(pd::RemoveGroupMembersRequest) -> pd::RemoveGroupMembersResponse = "RemoveGroupMembers";
        list_group_members(pd::ListGroupMembersRequest) -> pd::ListGroupMembersResponse = "ListGroupMembers";
        get_state_digest(pd::GetStateDigestRequest) -> pd::GetStateDigestResponse = "GetStateDigest";
    }
    streams {
        read_group(pd::ReadGroupRequest) -> ReadGroupStream<pd::ReadGroupResponse> = "ReadGroup";
        watch_changes(pd::WatchChangesRequest) -> WatchChangesStream<pd::WatchChangesFrame> = "WatchChanges";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_specification_writes_them() {
        assert_eq!(parse_grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("5M"), Some(Duration::from_secs(300)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "123456789S", "10s", "1.5S", "-1S", "10", "ten S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_request_timeout_set_by_tonic_is_the_calls_deadline() {
        let mut request = Request::new(());
        request.set_timeout(Duration::from_millis(1500));
        let call = Call::begin(path!("GetUser"), request.metadata());
        assert_eq!(call.deadline, Some(Duration::from_millis(1500)));
        assert_eq!(call.path, "/roster.directory.v1.DirectoryService/GetUser");
        assert!(
            Call::begin("/x", Request::new(()).metadata())
                .deadline
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_cancelled_and_counted() {
        let mut request = Request::new(());
        request.set_timeout(Duration::from_millis(20));
        let path = "/roster.test.InProcess/Slow";
        let call = Call::begin(path, request.metadata());
        let never = std::future::pending::<Result<(), Status>>();
        let status = call.run(never).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Cancelled);
        assert_eq!(status.message(), "Timeout expired", "tonic's own words");

        let ok = Call::begin(path, Request::new(()).metadata());
        assert_eq!(ok.run(async { Ok(7) }).await.unwrap(), 7);

        let text = roster_telemetry::metrics::metrics().render();
        for code in ["CANCELLED", "OK"] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with("roster_grpc_requests_total")
                        && l.contains(path)
                        && l.contains(&format!("code=\"{code}\""))),
                "{code}: {text}"
            );
        }
    }
}
