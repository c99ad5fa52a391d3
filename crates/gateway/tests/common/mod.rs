//! The real stack on loopback: PostgreSQL (testkit), the directory service
//! over gRPC, and the gateway over HTTP, driven with reqwest.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use roster_gateway::GatewayConfig;
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::{
    CreateDirectoryRequest, CreateTokenRequest, DeprovisionPolicy, ProviderKind,
};
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_store::postgres::PgStore;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Channel;

/// A running directory service and gateway on a fresh database.
pub struct Stack {
    /// `http://127.0.0.1:<port>` of the gateway.
    pub base: String,
    /// Admin client of the directory service.
    pub admin: AdminServiceClient<Channel>,
    /// Directory client of the directory service.
    pub directory: DirectoryServiceClient<Channel>,
    /// The directory service's store (for seeding large data sets).
    pub store: Arc<PgStore>,
    /// The gateway's state (its caches and counters).
    pub state: roster_gateway::AppState,
    http: reqwest::Client,
    stop: watch::Sender<bool>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

impl Stack {
    /// Starts everything with the default gateway configuration.
    pub async fn start(prefix: &str) -> Stack {
        Self::start_with(prefix, |_| {}).await
    }

    /// Starts everything, letting the test adjust the gateway configuration.
    pub async fn start_with(prefix: &str, configure: impl FnOnce(&mut GatewayConfig)) -> Stack {
        let url = roster_testkit::fresh_database(prefix).await;
        let store = Arc::new(PgStore::connect(&url, 8).await.expect("connect store"));
        store.migrate().await.expect("migrate");
        let (stop, stop_rx) = watch::channel(false);

        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc_listener.local_addr().unwrap();
        tokio::spawn(roster_directory::serve(
            store.clone(),
            roster_directory::DirectoryConfig::default(),
            grpc_listener,
            stopped(stop_rx.clone()),
        ));

        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http_listener.local_addr().unwrap();
        let mut config = GatewayConfig {
            public_url: format!("http://{http_addr}"),
            directory_endpoint: format!("http://{grpc_addr}"),
            ..Default::default()
        };
        configure(&mut config);
        let state = roster_gateway::AppState::new(config).expect("gateway state");
        tokio::spawn(roster_gateway::serve_state(
            state.clone(),
            http_listener,
            stopped(stop_rx),
        ));

        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))
            .unwrap()
            .connect_lazy();
        Stack {
            base: format!("http://{http_addr}"),
            admin: AdminServiceClient::new(channel.clone()),
            directory: DirectoryServiceClient::new(channel),
            store,
            state,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            stop,
        }
    }

    /// Creates a directory and a token for it.
    pub async fn directory_with_token(&self, policy: DeprovisionPolicy) -> Scim {
        let mut admin = self.admin.clone();
        let directory = admin
            .create_directory(CreateDirectoryRequest {
                name: format!("dir-{}", uuid::Uuid::new_v4().simple()),
                organization: "acme".into(),
                provider: ProviderKind::Generic as i32,
                deprovision_policy: policy as i32,
                attribute_mappings: vec![],
            })
            .await
            .expect("create directory")
            .into_inner()
            .directory
            .expect("directory");
        let token = admin
            .create_token(CreateTokenRequest {
                directory_id: directory.id.clone(),
                name: "idp".into(),
            })
            .await
            .expect("create token")
            .into_inner();
        Scim {
            http: self.http.clone(),
            base: format!("{}/scim/v2/{}", self.base, directory.id),
            directory_id: directory.id,
            token: token.secret,
            token_id: token.token.map(|t| t.id).unwrap_or_default(),
        }
    }

    /// A plain HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// A SCIM client of one directory.
#[derive(Clone)]
pub struct Scim {
    http: reqwest::Client,
    /// `{gateway}/scim/v2/{directory_id}`.
    pub base: String,
    /// The directory id.
    pub directory_id: String,
    /// The bearer token.
    pub token: String,
    /// Id of the bearer token.
    pub token_id: String,
}

/// A response, read completely.
#[derive(Debug)]
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Parsed JSON body (`Null` when empty).
    pub body: Value,
}

impl Resp {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body's `scimType`.
    pub fn scim_type(&self) -> &str {
        self.body["scimType"].as_str().unwrap_or("")
    }

    /// `Resources` of a ListResponse (empty when absent).
    pub fn resources(&self) -> Vec<Value> {
        self.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Reads a response, checking that any body is SCIM JSON.
pub async fn read(response: reqwest::Response) -> Resp {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(ct.starts_with("application/scim+json"), "content type {ct}");
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    Resp {
        status,
        headers,
        body,
    }
}

impl Scim {
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

    /// A request builder with the bearer token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Resp {
        read(
            self.request(reqwest::Method::GET, path)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// `method` `path` with a JSON body.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Resp {
        let request = self
            .request(method, path)
            .header("content-type", "application/scim+json")
            .body(body.to_string());
        read(request.send().await.unwrap()).await
    }

    /// POST `path`.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// PUT `path`.
    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::PUT, path, body).await
    }

    /// PATCH `path` with a PatchOp of `operations`.
    pub async fn patch(&self, path: &str, operations: Value) -> Resp {
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": operations,
        });
        self.send(reqwest::Method::PATCH, path, &body).await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> Resp {
        read(
            self.request(reqwest::Method::DELETE, path)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Creates a user and returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        let r = self.post("/Users", &user(user_name)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }
}

/// A typical IdP user payload.
pub fn user(user_name: &str) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "externalId": format!("ext-{user_name}"),
        "name": {"givenName": "Given", "familyName": "Family"},
        "displayName": user_name,
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true
    })
}

/// A group payload with `members`.
pub fn group(display_name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|id| serde_json::json!({"value": id}))
        .collect();
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": display_name,
        "members": members
    })
}

/// Member ids of a rendered group, sorted.
pub fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}
