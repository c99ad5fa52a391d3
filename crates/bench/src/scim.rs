//! A SCIM client that behaves like an IdP's provisioning connector:
//! HTTP/1.1 keep-alive, one bearer token, JSON bodies.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The `userName` of bench user `i` (zero-padded so `sw`/`co` probes are unambiguous).
pub fn user_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:08}@bench.example")
}

/// The `externalId` of bench user `i`.
pub fn external_id(prefix: &str, i: usize) -> String {
    format!("ext-{prefix}{i:08}")
}

/// A realistic SCIM User body, about the size Okta and Entra send.
pub fn user_body(prefix: &str, i: usize) -> Value {
    let name = user_name(prefix, i);
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "userName": name,
        "externalId": external_id(prefix, i),
        "name": { "givenName": format!("Given{i}"), "familyName": format!("Family{i}") },
        "displayName": format!("Given{i} Family{i}"),
        "emails": [{ "value": name, "type": "work", "primary": true }],
        "active": true,
        "title": "Engineer",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": format!("Dept{}", i % 50),
            "employeeNumber": format!("{i}")
        }
    })
}

/// A SCIM Group body without members (IdPs push members with PATCH afterwards).
pub fn group_body(prefix: &str, i: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": format!("{prefix}group-{i:05}"),
        "externalId": format!("ext-{prefix}group-{i:05}"),
        "members": []
    })
}

/// A PatchOp adding or removing members.
pub fn members_patch(add: bool, ids: &[String]) -> Value {
    let op = if add {
        json!({ "op": "add", "path": "members", "value": ids.iter().map(|id| json!({ "value": id })).collect::<Vec<_>>() })
    } else {
        // Okta's form: a value filter in the path.
        let filter = ids
            .iter()
            .map(|id| format!("value eq \"{id}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        json!({ "op": "remove", "path": format!("members[{filter}]") })
    };
    json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [op] })
}

/// A created resource: its id and when its response was complete.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub responded_at: Instant,
}

/// One directory's SCIM endpoint with its token.
#[derive(Clone)]
pub struct ScimClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ScimClient {
    /// A client for `<http_root>/scim/v2/<directory>` keeping up to `connections` idle connections.
    pub fn new(
        http_root: &str,
        directory: &str,
        token: &str,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base: format!("{http_root}/scim/v2/{directory}"),
            token: token.to_owned(),
        })
    }

    /// POST /Users.
    pub async fn create_user(&self, body: &Value) -> anyhow::Result<Created> {
        self.create("Users", body).await
    }

    /// POST /Groups.
    pub async fn create_group(&self, body: &Value) -> anyhow::Result<Created> {
        self.create("Groups", body).await
    }

    async fn create(&self, resource: &str, body: &Value) -> anyhow::Result<Created> {
        let path = format!("/{resource}");
        let (bytes, responded_at) = self
            .send(Method::POST, &path, body, &[StatusCode::CREATED])
            .await?;
        let value: Value = serde_json::from_slice(&bytes)?;
        let id = value["id"]
            .as_str()
            .context("no id in the created resource")?
            .to_owned();
        Ok(Created { id, responded_at })
    }

    /// POST /Bulk creating one user per body of `users`; fails unless
    /// every operation answered 201.
    pub async fn bulk_create_users(&self, users: &[Value]) -> anyhow::Result<()> {
        let operations: Vec<Value> = users
            .iter()
            .enumerate()
            .map(|(i, data)| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": data}))
            .collect();
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": operations,
        });
        let (bytes, _) = self
            .send(Method::POST, "/Bulk", &body, &[StatusCode::OK])
            .await?;
        let answer: Value = serde_json::from_slice(&bytes)?;
        let ops = answer["Operations"]
            .as_array()
            .context("no Operations in the BulkResponse")?;
        let created = ops.iter().filter(|op| op["status"] == "201").count();
        if created != users.len() {
            bail!(
                "POST /Bulk: {created} of {} users created: {answer}",
                users.len()
            );
        }
        Ok(())
    }

    /// PATCH /Groups/{id} with a PatchOp; accepts 200 and 204.
    pub async fn patch_group(&self, id: &str, patch: &Value) -> anyhow::Result<()> {
        let path = format!("/Groups/{id}");
        let ok = [StatusCode::OK, StatusCode::NO_CONTENT];
        self.send(Method::PATCH, &path, patch, &ok).await?;
        Ok(())
    }

    /// Sends `body` to `path`; the body of the answer and when it was read,
    /// or an error unless the status is one of `ok`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        ok: &[StatusCode],
    ) -> anyhow::Result<(Vec<u8>, Instant)> {
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let responded_at = Instant::now();
        if !ok.contains(&status) {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok((bytes.to_vec(), responded_at))
    }

    /// GET /Users?filter=…; returns `totalResults`.
    pub async fn search_users(&self, filter: &str) -> anyhow::Result<i64> {
        let response = self
            .http
            .get(format!("{}/Users", self.base))
            .bearer_auth(&self.token)
            .query(&[("filter", filter)])
            .send()
            .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status != StatusCode::OK {
            bail!(
                "GET /Users?filter={filter}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let value: Value = serde_json::from_slice(&bytes)?;
        value["totalResults"]
            .as_i64()
            .context("no totalResults in the list response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_scim() {
        let (raw, user) = roster_scim::resource::prepare_user(user_body("a", 7)).unwrap();
        assert_eq!(user.user_name, "a00000007@bench.example");
        assert_eq!(user.department.as_deref(), Some("Dept7"));
        assert!(raw.get("userName").is_some());
        assert!(roster_scim::resource::prepare_group(group_body("a", 3)).is_ok());
    }

    #[test]
    fn removal_patch_names_every_member() {
        let p = members_patch(false, &["x".into(), "y".into()]);
        assert_eq!(
            p["Operations"][0]["path"],
            r#"members[value eq "x" or value eq "y"]"#
        );
    }
}
