//! Shared helpers of the IdP replay tests (`tests/idp_*.rs`): an HTTP client
//! that speaks with one IdP's headers, and a `WatchChanges` reader with a
//! deadline. Each replay test declares `mod support; mod idp_support;`.

#![allow(dead_code)]

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::watch_changes_response::Payload;
use roster_proto::directory::{Change, ChangeKind, WatchChangesRequest, change};
use serde_json::Value;

use crate::support::TestDirectory;

/// The SCIM PatchOp message schema.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The SCIM ListResponse message schema.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension schema.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// How long a test waits for the events it expects on `WatchChanges`.
const WATCH_DEADLINE: Duration = Duration::from_secs(30);

/// One HTTP answer, with the body parsed as JSON (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Panics with the whole answer unless the status is `expected`.
    pub fn expect(self, expected: u16, what: &str) -> Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "{what}: unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Panics unless the status is 2xx (IdPs accept 200 and 204 for PATCH).
    pub fn expect_success(self, what: &str) -> Self {
        assert!(
            self.status.is_success(),
            "{what}: status {}; body: {}",
            self.status,
            self.body
        );
        self
    }

    /// The `id` of the returned resource.
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.body))
            .to_string()
    }

    /// The `Resources` of a ListResponse (empty when absent, as RFC 7644 allows for zero results).
    pub fn resources(&self) -> Vec<Value> {
        self.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `totalResults` of a ListResponse, which IdPs require to be a JSON integer.
    pub fn total_results(&self) -> i64 {
        self.body["totalResults"]
            .as_i64()
            .unwrap_or_else(|| panic!("totalResults is not an integer: {}", self.body))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// An HTTP client that sends every request the way one IdP does.
pub struct IdpClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
    /// Headers the IdP sends on every request (User-Agent, Accept, ...).
    headers: Vec<(&'static str, String)>,
    /// The IdP's `Content-Type` for requests with a body.
    content_type: &'static str,
}

impl IdpClient {
    /// A client for `dir` sending `headers` on every request and `content_type` on bodies.
    pub fn new(
        dir: &TestDirectory,
        headers: &[(&'static str, &str)],
        content_type: &'static str,
    ) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url: dir.base_url.clone(),
            token: dir.token.clone(),
            headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            content_type,
        }
    }

    /// Sends `method` to `{base_url}{path}`; `path` may carry a raw query string
    /// (spaces and quotes are percent-encoded as an IdP's HTTP stack does).
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let url = reqwest::Url::parse(&format!("{}{}", self.base_url, path)).expect("request URL");
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.token);
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", self.content_type)
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{method} {path}: body is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }
}

/// Sends every PATCH in `bodies` to `path` at the same time, as IdPs that
/// parallelise membership updates do, and returns the answers in order.
pub async fn patch_concurrently(idp: &IdpClient, path: &str, bodies: &[Value]) -> Vec<Reply> {
    futures::future::join_all(bodies.iter().map(|body| idp.patch(path, body))).await
}

/// A PatchOp message with `operations`.
pub fn patch_op(operations: Value) -> Value {
    serde_json::json!({ "schemas": [PATCH_OP], "Operations": operations })
}

/// The member ids of a group resource, sorted.
pub fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Sorted copy of `ids`.
pub fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

/// The work e-mail address of a user resource.
pub fn work_email(user: &Value) -> Option<String> {
    user["emails"]
        .as_array()?
        .iter()
        .find(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("work"))
        })
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

/// The dotted name of a change kind, as in docs/events.md.
pub fn kind_name(kind: i32) -> &'static str {
    match ChangeKind::try_from(kind).unwrap_or(ChangeKind::Unspecified) {
        ChangeKind::UserCreated => "user.created",
        ChangeKind::UserUpdated => "user.updated",
        ChangeKind::UserDeactivated => "user.deactivated",
        ChangeKind::UserReactivated => "user.reactivated",
        ChangeKind::UserDeleted => "user.deleted",
        ChangeKind::GroupCreated => "group.created",
        ChangeKind::GroupUpdated => "group.updated",
        ChangeKind::GroupDeleted => "group.deleted",
        ChangeKind::MemberAdded => "member.added",
        ChangeKind::MemberRemoved => "member.removed",
        ChangeKind::DirectoryCreated => "directory.created",
        ChangeKind::DirectoryUpdated => "directory.updated",
        ChangeKind::DirectoryDeleted => "directory.deleted",
        ChangeKind::Unspecified => "unspecified",
    }
}

/// Whether `event` concerns user `user_id`: the user itself or one of its memberships.
pub fn concerns_user(event: &Change, user_id: &str) -> bool {
    match &event.resource {
        Some(change::Resource::Membership(m)) => m.member_id == user_id,
        _ => event.resource_id == user_id,
    }
}

/// Whether `event` concerns group `group_id`: the group itself or one of its memberships.
pub fn concerns_group(event: &Change, group_id: &str) -> bool {
    match &event.resource {
        Some(change::Resource::Membership(m)) => m.group_id == group_id,
        _ => event.resource_id == group_id,
    }
}

/// The kinds, in stream order, of the events that `keep` selects.
pub fn kinds_where(events: &[Change], keep: impl Fn(&Change) -> bool) -> Vec<&'static str> {
    events
        .iter()
        .filter(|e| keep(e))
        .map(|e| kind_name(e.kind))
        .collect()
}

/// The user carried by the last event of user `user_id` that has one.
pub fn last_user_payload(
    events: &[Change],
    user_id: &str,
) -> Option<roster_proto::directory::User> {
    events.iter().rev().find_map(|e| match &e.resource {
        Some(change::Resource::User(user)) if e.resource_id == user_id => Some(user.clone()),
        _ => None,
    })
}

/// Reads the directory's change stream from the beginning until `done` holds
/// for the events seen so far, or panics after a deadline with what it saw.
pub async fn watch_until(
    grpc: &str,
    directory_id: &str,
    done: impl Fn(&[Change]) -> bool,
) -> Vec<Change> {
    let mut client = DirectoryServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("gRPC connect");
    let request = WatchChangesRequest {
        directory_id: directory_id.to_string(),
        start: Some(Start::AfterRevision(0)),
        ..Default::default()
    };
    let mut stream = client
        .watch_changes(request)
        .await
        .expect("WatchChanges")
        .into_inner();
    let mut events: Vec<Change> = Vec::new();
    let read = async {
        while !done(&events) {
            let message = stream
                .message()
                .await
                .expect("WatchChanges stream")
                .expect("stream ended early");
            if let Some(Payload::Change(change)) = message.payload {
                events.push(change);
            }
        }
    };
    if tokio::time::timeout(WATCH_DEADLINE, read).await.is_err() {
        let seen: Vec<String> = events
            .iter()
            .map(|e| format!("{} {}", kind_name(e.kind), e.resource_id))
            .collect();
        panic!(
            "WatchChanges: expected events did not arrive within {WATCH_DEADLINE:?}; saw {seen:#?}"
        );
    }
    events
}

/// Waits until the stream holds, for every `(id, kinds)` pair, exactly the
/// kinds `kinds` among the events concerning user `id` — then returns all events.
pub async fn watch_user_sequences(
    grpc: &str,
    directory_id: &str,
    expected: &[(&str, &[&str])],
) -> Vec<Change> {
    let events = watch_until(grpc, directory_id, |events| {
        expected
            .iter()
            .all(|(id, kinds)| kinds_where(events, |e| concerns_user(e, id)).len() >= kinds.len())
    })
    .await;
    for (id, kinds) in expected {
        assert_eq!(
            &kinds_where(&events, |e| concerns_user(e, id)),
            kinds,
            "events of user {id}"
        );
    }
    events
}
