use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::reply::{Reply, truncated};
use super::{GROUP_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA};

/// Longest any single HTTP request of a test may take: a hang is a failure.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a test waits for the system to converge after a fault.
pub const CONVERGE: Duration = Duration::from_secs(90);

/// An HTTP client whose every request fails after [`REQUEST_TIMEOUT`].
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client")
}

/// A SCIM client of one directory. By default it sends what a plain IdP
/// sends; [`Scim::with_headers`] and [`Scim::with_content_type`] make it
/// speak like one particular IdP.
#[derive(Clone)]
pub struct Scim {
    pub http: reqwest::Client,
    /// `{gateway}/scim/v2/{directory_id}`.
    pub base_url: String,
    pub directory_id: String,
    /// The bearer token.
    pub token: String,
    /// Id of the bearer token (empty when unknown).
    pub token_id: String,
    headers: Vec<(String, String)>,
    content_type: String,
    /// Speaks SCIM 1.1 ([`Scim::v1`]): answers must be 1.1's plain JSON.
    v1: bool,
}

impl Scim {
    /// A client of `base_url` with `token`.
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            http: http_client(),
            base_url: base_url.to_string(),
            directory_id: base_url.rsplit('/').next().unwrap_or_default().to_string(),
            token: token.to_string(),
            token_id: String::new(),
            headers: Vec::new(),
            content_type: "application/scim+json".to_string(),
            v1: false,
        }
    }

    /// The same directory, token and headers over SCIM 1.1
    /// (`/scim/v1/{directory_id}`), sending plain `application/json` as 1.1
    /// IdPs do; every answer with a body must then be 1.1's JSON.
    pub fn v1(&self) -> Scim {
        Scim {
            base_url: self.base_url.replace("/scim/v2/", "/scim/v1/"),
            content_type: "application/json".to_string(),
            v1: true,
            ..self.clone()
        }
    }

    /// The same client, sending `headers` on every request.
    pub fn with_headers(mut self, headers: &[(&str, &str)]) -> Self {
        self.headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    /// The same client, sending `content_type` with every body.
    pub fn with_content_type(mut self, content_type: &str) -> Self {
        self.content_type = content_type.to_string();
        self
    }

    /// The same client, sending one more header on every request.
    pub fn with_header(&self, name: &str, value: &str) -> Scim {
        let mut scim = self.clone();
        scim.headers.push((name.to_string(), value.to_string()));
        scim
    }

    /// The same directory and token over another HTTP client.
    pub fn with_http(&self, http: reqwest::Client) -> Scim {
        Scim {
            http,
            ..self.clone()
        }
    }

    /// The same directory with another token.
    pub fn with_token(&self, token: &str) -> Scim {
        Scim {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// A request builder for `{base_url}{path}` with the bearer token and
    /// the client's headers; `path` may carry a raw query string (spaces and
    /// quotes are percent-encoded as an IdP's HTTP stack does).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = reqwest::Url::parse(&format!("{}{}", self.base_url, path)).expect("request URL");
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
    }

    /// Sends `method {base_url}{path}` with an optional JSON body and extra
    /// headers; transport errors and timeouts are returned, not panicked on.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self.request(method, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", &self.content_type)
                .body(body.to_string());
        }
        Reply::read(request.send().await?).await
    }

    /// Like [`Scim::try_send`] but panics on a transport error or timeout,
    /// and on an answer that is not SCIM JSON (of 1.1 over [`Scim::v1`]).
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let reply = self
            .try_send(method.clone(), path, body, &[])
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if !self.v1 {
            reply.assert_scim_json();
        } else if !reply.text.is_empty() {
            assert_eq!(
                reply.header("content-type"),
                Some("application/json; charset=utf-8"),
                "{method} {path}: {}",
                reply.text
            );
            assert!(
                !reply.body.is_null(),
                "{method} {path}: not JSON: {}",
                reply.text
            );
        }
        reply
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

    /// `PATCH path` with a PatchOp of `operations`.
    pub async fn patch_ops(&self, path: &str, operations: Value) -> Reply {
        self.patch(path, &patch_op(operations)).await
    }

    /// The body of a `PATCH path` with a PatchOp of `operations`, which
    /// must answer 200.
    pub async fn patch_ok(&self, path: &str, operations: Value) -> Value {
        self.patch_ops(path, operations)
            .await
            .expect(200, path)
            .body
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// The body of `GET path`, which must answer 200.
    pub async fn get_ok(&self, path: &str) -> Value {
        self.get(path).await.expect(200, path).body
    }

    /// `totalResults` of `GET path`, which must answer 200.
    pub async fn count(&self, path: &str) -> i64 {
        self.get(path).await.expect(200, path).total_results()
    }

    /// Sends every PATCH in `bodies` to `path` at the same time, as IdPs
    /// that parallelise membership updates do; the answers are in order.
    pub async fn patch_concurrently(&self, path: &str, bodies: &[Value]) -> Vec<Reply> {
        futures::future::join_all(bodies.iter().map(|body| self.patch(path, body))).await
    }

    /// POSTs `body` to `endpoint`, which must answer 201; the new resource's id.
    pub async fn create(&self, endpoint: &str, body: &Value) -> String {
        self.post(endpoint, body)
            .await
            .expect(201, &format!("create at {endpoint}"))
            .id()
    }

    /// Creates a user from [`user`] and returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        self.create("/Users", &user(user_name)).await
    }

    /// Creates a group without members and returns its id.
    pub async fn create_group(&self, name: &str) -> String {
        self.create("/Groups", &group(name, &[])).await
    }

    /// Creates users `{prefix}{i}@example.com` for `i` in `0..n`, one
    /// after the other; their ids in that order.
    pub async fn create_users(&self, prefix: &str, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push(self.create_user(&format!("{prefix}{i}@example.com")).await);
        }
        ids
    }

    /// Creates groups `{prefix}{i}` for `i` in `0..n`, one after the other;
    /// their ids in that order.
    pub async fn create_groups(&self, prefix: &str, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push(self.create_group(&format!("{prefix}{i}")).await);
        }
        ids
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
            let resources = page.resources();
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

    /// The id of the user with `user_name`, if one exists and the gateway answers.
    pub async fn find_user(&self, user_name: &str) -> Option<String> {
        let path = format!("/Users?filter=userName%20eq%20%22{user_name}%22");
        let found = self.try_send(Method::GET, &path, None, &[]).await.ok()?;
        (found.status == 200).then_some(())?;
        found.body["Resources"][0]["id"]
            .as_str()
            .map(str::to_string)
    }
}

/// `s` percent-encoded for a URL query: everything but unreserved ASCII.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A typical IdP user payload.
pub fn user(user_name: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "externalId": format!("ext-{user_name}"),
        "name": {"givenName": "Given", "familyName": "Family"},
        "displayName": user_name,
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true
    })
}

/// A user with nothing but `userName` and `active`.
pub fn bare_user(user_name: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": user_name, "active": true})
}

/// A group payload with `members`.
pub fn group(display_name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
    json!({"schemas": [GROUP_SCHEMA], "displayName": display_name, "members": members})
}

/// A PatchOp message with `operations`.
pub fn patch_op(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
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
        super::ERROR_SCHEMA,
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

/// What an IdP client went through, for assertions.
#[derive(Debug, Default)]
pub struct RetryLog {
    /// Retries after a 5xx or a transport error.
    pub retries: usize,
    /// 503 answers that carried `Retry-After`.
    pub unavailable_with_retry_after: usize,
    /// 5xx answers other than 503 (should be none).
    pub other_5xx: Vec<String>,
    /// Retried POSTs answered 409 and reconciled by lookup.
    pub reconciled_conflicts: usize,
}

/// A SCIM client that behaves like an IdP connector: a 5xx answer or a
/// transport error is retried (with a short pause, as IdPs back off) until
/// [`CONVERGE`]; a 409 on a *retried* POST means the first attempt went
/// through, so the resource is looked up instead.
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

    /// Creates `body` at `endpoint` exactly once from the IdP's point of
    /// view and returns its id: a 409 after a retry is reconciled by looking
    /// up `attribute eq value`.
    async fn create_once(
        &self,
        endpoint: &str,
        body: &Value,
        attribute: &str,
        value: &str,
    ) -> String {
        let (reply, retried) = self.send(Method::POST, endpoint, Some(body)).await;
        match reply.status {
            201 => reply.id(),
            409 if retried => {
                self.log.lock().unwrap().reconciled_conflicts += 1;
                self.lookup(endpoint, attribute, value).await
            }
            status => panic!("create {value} at {endpoint}: {status} {}", reply.text),
        }
    }

    /// The id of user `user_name`, retrying through outages.
    pub async fn lookup_user(&self, user_name: &str) -> String {
        self.lookup("/Users", "userName", user_name).await
    }

    /// The id of the resource at `endpoint` whose `attribute` is `value`,
    /// retrying through outages.
    async fn lookup(&self, endpoint: &str, attribute: &str, value: &str) -> String {
        let filter = format!("{endpoint}?filter={attribute}%20eq%20%22{value}%22");
        let (found, _) = self.send(Method::GET, &filter, None).await;
        assert_eq!(found.status, 200, "lookup {value}: {}", found.text);
        found.body["Resources"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("409 for {value} but no such resource: {}", found.text))
            .to_string()
    }

    /// Creates user `user_name` once and returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        self.create_once("/Users", &bare_user(user_name), "userName", user_name)
            .await
    }

    /// Creates group `name` once and returns its id.
    pub async fn create_group(&self, name: &str) -> String {
        self.create_once("/Groups", &group(name, &[]), "displayName", name)
            .await
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
}
