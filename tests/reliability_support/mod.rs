//! Shared helpers of the reliability, concurrency, hostile-input and
//! isolation tests: a SCIM client with a per-request timeout, an IdP-like
//! client that retries, the directory service and gateway as separate
//! processes, full read-backs, and `WatchChanges` readers (one that resumes
//! from its cursor across disconnects, one that reads the whole log).
//!
//! Each test file declares `mod support; mod reliability_support;`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::watch_changes_response::Payload;
use roster_proto::directory::{ListOptions, ListUsersRequest, WatchChangesRequest};
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};

/// The SCIM error message schema (RFC 7644 §3.12).
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The PatchOp message schema.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The BulkRequest message schema.
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Longest any single HTTP request of a test may take: a hang is a failure.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a fault test waits for the system to converge.
pub const CONVERGE: Duration = Duration::from_secs(90);

/// One HTTP answer; `body` is `Value::Null` when empty or not JSON.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The `id` of the returned resource.
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.text))
            .to_string()
    }

    /// Panics unless the status is `expected`.
    pub fn expect(self, expected: u16, what: &str) -> Self {
        assert_eq!(self.status, expected, "{what}: body {}", self.text);
        self
    }
}

/// An HTTP client whose every request fails after [`REQUEST_TIMEOUT`].
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client")
}

/// A SCIM client of one directory.
#[derive(Clone)]
pub struct Scim {
    pub http: reqwest::Client,
    pub base_url: String,
    pub token: String,
}

impl Scim {
    /// A client of `base_url` with `token`.
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            http: http_client(),
            base_url: base_url.to_string(),
            token: token.to_string(),
        }
    }

    /// Sends `method {base_url}{path}` with an optional JSON body; transport
    /// errors and timeouts are returned, not panicked on.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base_url, path))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        reply(request.send().await?).await
    }

    /// Like [`Scim::try_send`] but panics on a transport error or timeout.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.try_send(method.clone(), path, body, &[])
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    /// `POST path`.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `PATCH path`.
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// Creates a user and returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        self.post("/Users", &user(user_name))
            .await
            .expect(201, "create user")
            .id()
    }

    /// Creates a group and returns its id.
    pub async fn create_group(&self, name: &str) -> String {
        self.post("/Groups", &group(name))
            .await
            .expect(201, "create group")
            .id()
    }

    /// Every resource of `/Users` or `/Groups`, read page by page.
    pub async fn list_all(&self, endpoint: &str) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let page = self
                .get(&format!(
                    "{endpoint}?startIndex={}&count=500",
                    all.len() + 1
                ))
                .await
                .expect(200, "list");
            let resources = page.body["Resources"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = page.body["totalResults"].as_u64().expect("totalResults") as usize;
            let empty = resources.is_empty();
            all.extend(resources);
            if all.len() >= total || empty {
                return all;
            }
        }
    }

    /// The whole directory as one comparable value: users and groups
    /// (with members and group lists sorted), each ordered by id.
    pub async fn read_back(&self) -> Value {
        let mut users = self.list_all("/Users").await;
        let mut groups = self.list_all("/Groups").await;
        for resource in users.iter_mut().chain(groups.iter_mut()) {
            for key in ["members", "groups"] {
                if let Some(list) = resource.get_mut(key).and_then(Value::as_array_mut) {
                    list.sort_by_key(|m| m["value"].as_str().unwrap_or_default().to_string());
                }
            }
        }
        users.sort_by_key(|u| u["id"].as_str().unwrap_or_default().to_string());
        groups.sort_by_key(|g| g["id"].as_str().unwrap_or_default().to_string());
        json!({ "users": users, "groups": groups })
    }

    /// The id of the user with `user_name`, if one exists.
    pub async fn find_user(&self, user_name: &str) -> Option<String> {
        let filter = format!("userName eq \"{user_name}\"");
        let url = reqwest::Url::parse_with_params(
            &format!("{}/Users", self.base_url),
            &[("filter", filter.as_str())],
        )
        .expect("URL");
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        let found = reply(response).await.ok()?;
        (found.status == 200).then_some(())?;
        found.body["Resources"][0]["id"]
            .as_str()
            .map(str::to_string)
    }
}

/// Reads a response into a [`Reply`].
pub async fn reply(response: reqwest::Response) -> Result<Reply, reqwest::Error> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        headers,
        body,
        text,
    })
}

/// A SCIM User resource with `user_name`.
pub fn user(user_name: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": user_name, "active": true})
}

/// A SCIM Group resource named `name`.
pub fn group(name: &str) -> Value {
    json!({"schemas": [GROUP_SCHEMA], "displayName": name})
}

/// A PatchOp with `operations`.
pub fn patch_op(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

/// Panics unless `reply` is a 4xx SCIM error message (RFC 7644 §3.12):
/// the Error schema, `status` as the HTTP status in a string.
pub fn assert_scim_error(reply: &Reply, what: &str) {
    assert!(
        (400..500).contains(&reply.status),
        "{what}: status {} is not 4xx; body {}",
        reply.status,
        truncated(&reply.text)
    );
    assert_eq!(
        reply.body["schemas"][0],
        ERROR_SCHEMA,
        "{what}: not a SCIM error body: {}",
        truncated(&reply.text)
    );
    assert_eq!(
        reply.body["status"],
        json!(reply.status.to_string()),
        "{what}: status must be the HTTP status as a string: {}",
        truncated(&reply.text)
    );
}

/// At most 300 characters of `text`, for assertion messages.
pub fn truncated(text: &str) -> String {
    text.chars().take(300).collect()
}

// ---------------------------------------------------------------------------
// An IdP-like client: retries 5xx and transport errors, reconciles 409s.
// ---------------------------------------------------------------------------

/// What an IdP client went through, for assertions.
#[derive(Debug, Default)]
pub struct RetryLog {
    /// Retries after a 5xx or a transport error.
    pub retries: usize,
    /// 503 answers that carried `Retry-After`.
    pub unavailable_with_retry_after: usize,
    /// 5xx answers other than 503 (should be none).
    pub other_5xx: Vec<String>,
    /// Retried POSTs answered 409 and reconciled by `userName`.
    pub reconciled_conflicts: usize,
}

/// A SCIM client that behaves like an IdP connector: a 5xx answer or a
/// transport error is retried (with a short pause, as IdPs back off) until
/// `CONVERGE`; a 409 on a *retried* POST means the first attempt went
/// through, so the user is looked up by `userName`.
#[derive(Clone)]
pub struct RetryingIdp {
    pub scim: Scim,
    pub log: Arc<Mutex<RetryLog>>,
}

impl RetryingIdp {
    /// An IdP client of `base_url` with `token`.
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            scim: Scim::new(base_url, token),
            log: Arc::default(),
        }
    }

    /// Sends until the answer is not a 5xx nor a transport error; returns the
    /// final answer and whether it came after a retry.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> (Reply, bool) {
        let until = Instant::now() + CONVERGE;
        let mut retried = false;
        loop {
            match self.scim.try_send(method.clone(), path, body, &[]).await {
                Ok(reply) if reply.status < 500 => return (reply, retried),
                Ok(reply) => self.note_5xx(&reply),
                Err(_) => {}
            }
            assert!(
                Instant::now() < until,
                "{method} {path} did not succeed within {CONVERGE:?}"
            );
            self.log.lock().unwrap().retries += 1;
            retried = true;
            // IdPs back off before retrying; a short pause keeps the test quick.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn note_5xx(&self, reply: &Reply) {
        let mut log = self.log.lock().unwrap();
        if reply.status == 503 && reply.header("retry-after").is_some() {
            log.unavailable_with_retry_after += 1;
        } else {
            log.other_5xx
                .push(format!("{} {}", reply.status, truncated(&reply.text)));
        }
    }

    /// Creates user `user_name` exactly once from the IdP's point of view and
    /// returns its id: a 409 after a retry is reconciled by lookup.
    pub async fn create_user(&self, user_name: &str) -> String {
        let (reply, retried) = self
            .send(Method::POST, "/Users", Some(&user(user_name)))
            .await;
        match reply.status {
            201 => reply.id(),
            409 if retried => {
                self.log.lock().unwrap().reconciled_conflicts += 1;
                self.lookup(user_name).await
            }
            status => panic!("create {user_name}: {status} {}", reply.text),
        }
    }

    /// The id of `user_name`, retrying through outages.
    pub async fn lookup(&self, user_name: &str) -> String {
        let filter = format!("/Users?filter=userName%20eq%20%22{user_name}%22");
        let (found, _) = self.send(Method::GET, &filter, None).await;
        assert_eq!(found.status, 200, "lookup {user_name}: {}", found.text);
        found.body["Resources"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("409 for {user_name} but no such user: {}", found.text))
            .to_string()
    }

    /// Sends a PATCH until it succeeds (2xx), panicking on a 4xx.
    pub async fn patch_ok(&self, path: &str, body: &Value) {
        let (reply, _) = self.send(Method::PATCH, path, Some(body)).await;
        assert!(
            (200..300).contains(&reply.status),
            "PATCH {path}: {} {}",
            reply.status,
            reply.text
        );
    }

    /// Creates a group, retrying; a 409 after a retry is reconciled by lookup.
    pub async fn create_group(&self, name: &str) -> String {
        let (reply, retried) = self.send(Method::POST, "/Groups", Some(&group(name))).await;
        match reply.status {
            201 => reply.id(),
            409 if retried => {
                let filter = format!("/Groups?filter=displayName%20eq%20%22{name}%22");
                let (found, _) = self.send(Method::GET, &filter, None).await;
                found.body["Resources"][0]["id"]
                    .as_str()
                    .expect("group after 409")
                    .to_string()
            }
            status => panic!("create group {name}: {status} {}", reply.text),
        }
    }
}

// ---------------------------------------------------------------------------
// Separate processes: `roster directory` and `roster gateway`.
// ---------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `roster` child process with its stderr captured to a file.
pub struct Process {
    pub child: Child,
    pub log_path: PathBuf,
}

impl Process {
    /// Starts `roster <args>` with `env`, logging to a fresh file.
    pub fn spawn(name: &str, args: &[String], env: &[(&str, &str)]) -> Self {
        let log_path = crate::support::temp_dir(name).join("roster.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = crate::support::roster()
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn roster");
        Self { child, log_path }
    }

    /// The process's logs so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `kill -9`: no drain, no goodbye. Waits until the process is gone.
    pub fn kill9(&mut self) {
        let ok = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot send SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `roster directory` on `database_url`, listening on `127.0.0.1:port`.
pub fn spawn_directory(database_url: &str, port: u16, env: &[(&str, &str)]) -> Process {
    let args = [
        "directory",
        "--database-url",
        database_url,
        "--grpc-addr",
        &format!("127.0.0.1:{port}"),
        "--metrics-addr",
        "off",
        "--progress-interval-ms",
        "200",
    ];
    Process::spawn("directory", &args.map(str::to_string), env)
}

/// `roster gateway` on `127.0.0.1:http_port`, calling the directory service on `grpc_port`.
pub fn spawn_gateway(grpc_port: u16, http_port: u16, env: &[(&str, &str)]) -> Process {
    let args = [
        "gateway",
        "--directory-endpoint",
        &format!("http://127.0.0.1:{grpc_port}"),
        "--http-addr",
        &format!("127.0.0.1:{http_port}"),
        "--metrics-addr",
        "off",
    ];
    Process::spawn("gateway", &args.map(str::to_string), env)
}

/// Waits until a gRPC server accepts connections on `grpc` (`host:port`).
pub async fn wait_for_grpc(grpc: &str) {
    roster_testkit::eventually(
        "the directory service accepts connections",
        CONVERGE,
        || async { connect(grpc).await.ok().map(|_| ()) },
    )
    .await;
}

/// Waits until the gateway at `root` answers `/healthz`.
pub async fn wait_for_http(root: &str) {
    let http = http_client();
    roster_testkit::eventually("the gateway answers /healthz", CONVERGE, || async {
        let r = http.get(format!("{root}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

/// A gRPC channel to `grpc` (`host:port`), failing fast when nothing listens.
pub async fn connect(grpc: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{grpc}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
}

/// `roster admin <args>` against `grpc` (`host:port`) with optional extra env.
pub fn admin(grpc: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = crate::support::roster()
        .args(["admin", "--endpoint", &format!("http://{grpc}")])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("roster admin");
    assert!(
        out.status.success(),
        "roster admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("admin JSON")
}

/// A directory and a token created through `roster admin` on `grpc`:
/// `(directory id, token secret)`.
pub fn create_directory(grpc: &str, name: &str, env: &[(&str, &str)]) -> (String, String) {
    let created = admin(grpc, &["create-directory", "--name", name], env);
    let id = created["id"].as_str().expect("directory id").to_string();
    let token = admin(grpc, &["create-token", &id], env);
    let secret = token["secret"].as_str().expect("token secret").to_string();
    (id, secret)
}

// ---------------------------------------------------------------------------
// WatchChanges readers.
// ---------------------------------------------------------------------------

/// The identity of one delivered change, as compared between readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub revision: i64,
    pub event_id: String,
    pub kind: i32,
    pub resource_id: String,
    pub version: i64,
}

/// What a resuming watcher has seen so far.
#[derive(Debug, Default)]
pub struct WatchState {
    /// Every change, in delivery order.
    pub changes: Vec<Seen>,
    /// The cursor of the last message (change or progress).
    pub cursor: String,
    /// The revision of the last message.
    pub position: i64,
    /// How many times the stream was (re)established.
    pub connects: usize,
}

/// A `WatchChanges` consumer that persists its cursor after every message
/// and, whenever the stream breaks (or after `drop_every` messages, to
/// simulate a flaky consumer), reconnects with `after_cursor` — possibly to
/// a directory service that was just restarted.
pub struct ResumingWatcher {
    pub state: Arc<Mutex<WatchState>>,
    task: tokio::task::JoinHandle<()>,
}

impl ResumingWatcher {
    /// Starts watching `directory_id` on `grpc` from revision 0.
    pub fn start(grpc: &str, directory_id: &str, drop_every: Option<usize>) -> Self {
        let state = Arc::new(Mutex::new(WatchState::default()));
        let task = tokio::spawn(watch_forever(
            grpc.to_string(),
            directory_id.to_string(),
            drop_every,
            state.clone(),
        ));
        Self { state, task }
    }

    /// Waits until the watcher's position reached `revision`.
    pub async fn wait_for(&self, revision: i64) {
        roster_testkit::eventually("the resuming watcher catches up", CONVERGE, || async {
            (self.state.lock().unwrap().position >= revision).then_some(())
        })
        .await;
    }

    /// The changes seen so far.
    pub fn changes(&self) -> Vec<Seen> {
        self.state.lock().unwrap().changes.clone()
    }

    /// How many times the stream was established.
    pub fn connects(&self) -> usize {
        self.state.lock().unwrap().connects
    }
}

impl Drop for ResumingWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_forever(
    grpc: String,
    directory_id: String,
    drop_every: Option<usize>,
    state: Arc<Mutex<WatchState>>,
) {
    loop {
        let cursor = state.lock().unwrap().cursor.clone();
        let start = if cursor.is_empty() {
            Start::AfterRevision(0)
        } else {
            Start::AfterCursor(cursor)
        };
        if let Ok(mut stream) = open_watch(&grpc, &directory_id, start).await {
            state.lock().unwrap().connects += 1;
            let mut received = 0usize;
            while let Ok(Some(message)) = stream.message().await {
                record(&state, message);
                received += 1;
                if drop_every.is_some_and(|n| received >= n) {
                    break;
                }
            }
        }
        // Reconnect backoff, as a consumer would; not a synchronisation sleep.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record(state: &Mutex<WatchState>, message: roster_proto::directory::WatchChangesResponse) {
    let mut state = state.lock().unwrap();
    if let Some(Payload::Change(change)) = &message.payload {
        state.changes.push(Seen {
            revision: message.revision,
            event_id: change.event_id.clone(),
            kind: change.kind,
            resource_id: change.resource_id.clone(),
            version: change.version,
        });
    }
    if !message.cursor.is_empty() {
        state.cursor = message.cursor;
    }
    state.position = state.position.max(message.revision);
}

/// Opens a `WatchChanges` stream of `directory_id` on `grpc`.
pub async fn open_watch(
    grpc: &str,
    directory_id: &str,
    start: Start,
) -> Result<tonic::Streaming<roster_proto::directory::WatchChangesResponse>, String> {
    let channel = connect(grpc).await.map_err(|e| e.to_string())?;
    let request = WatchChangesRequest {
        directory_id: directory_id.to_string(),
        kinds: vec![],
        start: Some(start),
    };
    DirectoryServiceClient::new(channel)
        .watch_changes(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| s.to_string())
}

/// The change-log revision every change of `directory_id` committed so far
/// is at or below (from a `ListUsers` snapshot).
pub async fn head_revision(grpc: &str, directory_id: &str) -> i64 {
    let channel = connect(grpc).await.expect("gRPC connect");
    let request = ListUsersRequest {
        directory_id: directory_id.to_string(),
        options: Some(ListOptions {
            count: 1,
            ..Default::default()
        }),
    };
    DirectoryServiceClient::new(channel)
        .list_users(request)
        .await
        .expect("ListUsers")
        .into_inner()
        .revision
}

/// Reads the directory's change log from revision 0 up to `head` in one
/// uninterrupted stream: the reference the resuming watchers are compared with.
pub async fn full_log(grpc: &str, directory_id: &str, head: i64) -> Vec<Seen> {
    let state = Mutex::new(WatchState::default());
    let mut stream = open_watch(grpc, directory_id, Start::AfterRevision(0))
        .await
        .expect("WatchChanges from revision 0");
    let read = async {
        while state.lock().unwrap().position < head {
            let message = stream
                .message()
                .await
                .expect("full log stream")
                .expect("full log stream ended early");
            record(&state, message);
        }
    };
    tokio::time::timeout(CONVERGE, read)
        .await
        .expect("the full log reached the head");
    state.into_inner().unwrap().changes
}

/// Asserts that `seen` is exactly `reference`: same events, same order, no
/// duplicate event id, strictly increasing revisions.
pub fn assert_exactly_once_in_order(seen: &[Seen], reference: &[Seen], what: &str) {
    let mut ids = std::collections::HashSet::new();
    for s in seen {
        assert!(ids.insert(&s.event_id), "{what}: duplicate event {s:?}");
    }
    for pair in seen.windows(2) {
        assert!(
            pair[0].revision < pair[1].revision,
            "{what}: revisions not increasing: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    let missing: Vec<&Seen> = reference
        .iter()
        .filter(|r| !ids.contains(&r.event_id))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} committed changes never delivered, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(
        seen.len(),
        reference.len(),
        "{what}: extra events delivered"
    );
    assert_eq!(seen, reference, "{what}: order differs from the log");
}
