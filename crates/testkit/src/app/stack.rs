use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster_directory::watch::ChangeHub;
use roster_directory::{Directory, DirectoryConfig};
use roster_gateway::{AppState, GatewayConfig};
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::{
    AttributeMapping, CreateDirectoryRequest, CreateTokenRequest, DeprovisionPolicy, ProviderKind,
    ResealSecretsRequest, UpdateDirectoryRequest,
};
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::{
    AddGroupMembersRequest, CreateGroupRequest, CreateUserRequest, GetGroupRequest, GetUserRequest,
    Group, ListGroupMembersRequest, ListGroupMembersResponse, ListOptions, ListUsersRequest,
    ListUsersResponse, MemberRef, PatchUserRequest, User,
};
use roster_store::Store;
use roster_store::postgres::PgStore;
use roster_store::sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::scim::Scim;
use super::watch::PROMPTLY;
use super::{GROUP_SCHEMA, USER_SCHEMA};

/// A migrated PostgreSQL store on a fresh database, and its URL.
pub async fn pg_store(prefix: &str) -> (Arc<PgStore>, String) {
    let url = crate::fresh_database(prefix).await;
    let store = replica_store(&url).await;
    store.migrate().await.expect("migrating the test database");
    (store, url)
}

/// Another store (own pool, own listener) on an existing database: a replica.
pub async fn replica_store(url: &str) -> Arc<PgStore> {
    Arc::new(
        PgStore::connect(url, 8)
            .await
            .expect("connecting to the test database"),
    )
}

/// A migrated SQLite store in a fresh temp directory.
pub async fn sqlite_store(prefix: &str) -> Arc<SqliteStore> {
    let dir = super::temp_dir(prefix);
    let store = SqliteStore::open(&dir.join("roster.db"))
        .await
        .expect("opening the test SQLite store");
    store
        .migrate()
        .await
        .expect("migrating the test SQLite store");
    Arc::new(store)
}

/// The store a test runs on. Every guarantee that applies to a single
/// process is checked on both (the embedded SQLite store keeps the same
/// promises as PostgreSQL within one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Stamps a test module `name` with one test per backend, each calling
/// `name(backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::app::Backend::Postgres).await
            }
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::app::Backend::Sqlite).await
            }
        }
    };
}

/// Directory-service settings for tests: fast progress markers.
pub fn test_config() -> DirectoryConfig {
    DirectoryConfig {
        progress_interval: Duration::from_millis(200),
        ..Default::default()
    }
}

/// A loopback listener on a port the system picks.
pub async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

/// A lazily connecting channel to `http://{addr}`.
pub fn lazy_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_lazy()
}

/// A directory service running in this process on a loopback port.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: Arc<ChangeHub>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), roster_directory::Error>>>,
}

impl Server {
    /// Starts a server over `store`.
    pub async fn start(store: Arc<dyn Store>, config: DirectoryConfig) -> Server {
        let directory = Directory::new(store, config).expect("building the directory service");
        Self::serve(directory).await
    }

    /// Serves a directory service built by the caller.
    pub async fn serve(directory: Directory) -> Server {
        let (listener, addr) = loopback().await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let hub = directory.hub();
        let task = tokio::spawn(directory.serve(listener, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            hub,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A connected channel to this server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connecting to the server")
    }

    /// A channel that lets the server send at most 64 KiB ahead of what
    /// the client reads (HTTP/2 flow control), to play a slow consumer.
    pub async fn narrow_channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .expect("connecting to the server")
    }

    /// A DirectoryService client.
    pub async fn directory(&self) -> DirectoryServiceClient<Channel> {
        DirectoryServiceClient::new(self.channel().await)
    }

    /// An AdminService client.
    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PROMPTLY, task)
                .await
                .expect("server did not stop in time")
                .expect("server task panicked")
                .expect("server failed");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One store, a directory service over it, clients: the usual setup of the
/// directory-service tests.
pub struct Env {
    pub store: Arc<dyn Store>,
    /// The database URL (empty for SQLite).
    pub url: String,
    pub server: Server,
    pub dir: DirectoryServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
}

impl Env {
    /// A fresh database and a server over it with [`test_config`].
    pub async fn new(prefix: &str) -> Env {
        Self::with_config(prefix, test_config()).await
    }

    /// A fresh store of `backend` and a server over it with [`test_config`].
    pub async fn on(backend: Backend, prefix: &str) -> Env {
        Self::on_with_config(backend, prefix, test_config()).await
    }

    /// [`Env::on`] with a directory named `name` in it, and its id: how
    /// most tests start.
    pub async fn on_with_directory(backend: Backend, prefix: &str, name: &str) -> (Env, String) {
        let mut env = Self::on(backend, prefix).await;
        let directory = env.directory(name).await;
        (env, directory)
    }

    /// A fresh store of `backend` and a server over it with `config`.
    pub async fn on_with_config(backend: Backend, prefix: &str, config: DirectoryConfig) -> Env {
        match backend {
            Backend::Postgres => Self::with_config(prefix, config).await,
            Backend::Sqlite => Self::over(sqlite_store(prefix).await, String::new(), config).await,
        }
    }

    /// A fresh database and a server over it with `config`.
    pub async fn with_config(prefix: &str, config: DirectoryConfig) -> Env {
        let (store, url) = pg_store(prefix).await;
        Self::over(store, url, config).await
    }

    /// A server with `config` over an existing store.
    pub async fn over(store: Arc<dyn Store>, url: String, config: DirectoryConfig) -> Env {
        let server = Server::start(Arc::clone(&store), config).await;
        let dir = server.directory().await;
        let admin = server.admin().await;
        Env {
            store,
            url,
            server,
            dir,
            admin,
        }
    }

    /// This server stopped and a new one with `config` started over the
    /// same store: a restart with new settings (a rotated key).
    pub async fn restart(self, config: DirectoryConfig) -> Env {
        self.server.shutdown().await;
        Self::over(self.store, self.url, config).await
    }

    /// `ResealSecrets` after a key rotation: (resealed, current, unopenable).
    pub async fn reseal(&self) -> (i32, i32, Vec<String>) {
        let req = ResealSecretsRequest {};
        let r = self.admin.clone().reseal_secrets(req).await;
        let r = r.expect("ResealSecrets").into_inner();
        (r.resealed, r.current, r.unopenable)
    }

    /// Creates a directory and returns its id.
    pub async fn directory(&mut self, name: &str) -> String {
        create_directory_named(&mut self.admin, name).await
    }

    /// Creates a user from `userName` and returns it.
    pub async fn user(&mut self, directory_id: &str, user_name: &str) -> User {
        create_user(&mut self.dir, directory_id, user_name).await
    }

    /// Creates the users `{prefix}{i}@example.com` for `i` in `0..n`, in
    /// that order, and returns them.
    pub async fn users(&mut self, directory_id: &str, prefix: &str, n: usize) -> Vec<User> {
        let mut users = Vec::with_capacity(n);
        for i in 0..n {
            let user_name = format!("{prefix}{i}@example.com");
            users.push(self.user(directory_id, &user_name).await);
        }
        users
    }

    /// Creates a group named `name` with the members `members` and returns it.
    pub async fn group(&mut self, directory_id: &str, name: &str, members: &[&str]) -> Group {
        create_group(&mut self.dir, directory_id, group_json(name, members)).await
    }
}

/// The status code of a gRPC call that must fail.
pub fn failure_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> tonic::Code {
    result.expect_err("the call must fail").code()
}

/// The reply of a gRPC call that must succeed.
#[track_caller]
pub fn succeeded<T>(result: Result<tonic::Response<T>, tonic::Status>) -> T {
    result.expect("the call must succeed").into_inner()
}

impl Env {
    /// `ListUsers` of `directory_id` with `options`.
    pub async fn list_users(
        &mut self,
        directory_id: &str,
        options: Option<ListOptions>,
    ) -> ListUsersResponse {
        let req = ListUsersRequest {
            directory_id: directory_id.into(),
            options,
        };
        self.dir
            .list_users(req)
            .await
            .expect("ListUsers")
            .into_inner()
    }

    // DirectoryService calls answering the resource, or the call's status
    // for the tests of failures.

    /// `CreateUser` of the SCIM resource `resource` (JSON text).
    pub async fn create_user(
        &mut self,
        directory_id: &str,
        resource: String,
    ) -> Result<User, tonic::Status> {
        let req = CreateUserRequest {
            directory_id: directory_id.into(),
            resource,
        };
        let reply = self.dir.create_user(req).await?.into_inner();
        Ok(reply.user.expect("user"))
    }

    /// `GetUser`.
    pub async fn get_user(&mut self, directory_id: &str, id: &str) -> Result<User, tonic::Status> {
        let req = GetUserRequest {
            directory_id: directory_id.into(),
            id: id.into(),
        };
        let reply = self.dir.get_user(req).await?.into_inner();
        Ok(reply.user.expect("user"))
    }

    /// `PatchUser` with the PatchOp `patch`.
    pub async fn patch_user(
        &mut self,
        directory_id: &str,
        id: &str,
        patch: &Value,
        if_version: Option<i64>,
    ) -> Result<User, tonic::Status> {
        let req = PatchUserRequest {
            directory_id: directory_id.into(),
            id: id.into(),
            patch: patch.to_string(),
            if_version,
        };
        let reply = self.dir.patch_user(req).await?.into_inner();
        Ok(reply.user.expect("user"))
    }

    /// `GetGroup`, with its members unless `exclude_members`.
    pub async fn get_group(
        &mut self,
        directory_id: &str,
        id: &str,
        exclude_members: bool,
    ) -> Result<Group, tonic::Status> {
        let req = GetGroupRequest {
            directory_id: directory_id.into(),
            id: id.into(),
            exclude_members,
        };
        let reply = self.dir.get_group(req).await?.into_inner();
        Ok(reply.group.expect("group"))
    }

    /// `AddGroupMembers`: how many of `members` were added.
    pub async fn add_members(
        &mut self,
        directory_id: &str,
        group_id: &str,
        members: Vec<MemberRef>,
    ) -> i64 {
        let req = AddGroupMembersRequest {
            directory_id: directory_id.into(),
            group_id: group_id.into(),
            members,
        };
        let reply = self.dir.add_group_members(req).await;
        reply.expect("AddGroupMembers").into_inner().added
    }

    /// `ListGroupMembers`: the page of at most `count` members after
    /// `page_token` (0 and "": the first page of the default size).
    pub async fn group_members(
        &mut self,
        directory_id: &str,
        group_id: &str,
        count: i32,
        page_token: String,
    ) -> ListGroupMembersResponse {
        let req = ListGroupMembersRequest {
            directory_id: directory_id.into(),
            group_id: group_id.into(),
            count,
            page_token,
        };
        let reply = self.dir.list_group_members(req).await;
        reply.expect("ListGroupMembers").into_inner()
    }
}

/// Replaces the attribute mappings of directory `id` with `mappings`
/// (`(source, target)` pairs) through AdminService.
pub async fn set_mappings(
    admin: &mut AdminServiceClient<Channel>,
    id: &str,
    mappings: &[(&str, &str)],
) -> Result<(), tonic::Status> {
    let req = UpdateDirectoryRequest {
        id: id.into(),
        attribute_mappings: mappings
            .iter()
            .map(|(source, target)| AttributeMapping {
                source: source.to_string(),
                target: target.to_string(),
            })
            .collect(),
        replace_attribute_mappings: true,
        ..Default::default()
    };
    admin.update_directory(req).await.map(|_| ())
}

/// Creates an Okta directory named `name` through AdminService.
pub async fn create_directory_named(admin: &mut AdminServiceClient<Channel>, name: &str) -> String {
    let req = CreateDirectoryRequest {
        name: name.into(),
        organization: "acme".into(),
        provider: ProviderKind::Okta as i32,
        ..Default::default()
    };
    admin
        .create_directory(req)
        .await
        .expect("CreateDirectory")
        .into_inner()
        .directory
        .expect("directory")
        .id
}

/// A directory (generic IdP, `policy`) and a token for it, created through
/// the AdminService on `channel`: a SCIM client of `gateway` for it.
pub async fn directory_with_token(
    channel: Channel,
    gateway: &str,
    policy: DeprovisionPolicy,
) -> Scim {
    let mut admin = AdminServiceClient::new(channel);
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
    let mut scim = Scim::new(
        &format!("{gateway}/scim/v2/{}", directory.id),
        &token.secret,
    );
    scim.token_id = token.token.map(|t| t.id).unwrap_or_default();
    scim
}

/// A minimal SCIM User resource, as the directory service receives it.
pub fn user_json(user_name: &str) -> String {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true
    })
    .to_string()
}

/// A SCIM Group resource with `members` (ids), as the directory service receives it.
pub fn group_json(name: &str, members: &[&str]) -> String {
    let members: Vec<_> = members.iter().map(|m| json!({"value": m})).collect();
    json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": members}).to_string()
}

/// Creates a group from the SCIM resource `resource` through DirectoryService.
pub async fn create_group(
    client: &mut DirectoryServiceClient<Channel>,
    directory_id: &str,
    resource: String,
) -> Group {
    let req = CreateGroupRequest {
        directory_id: directory_id.into(),
        resource,
    };
    client
        .create_group(req)
        .await
        .expect("CreateGroup")
        .into_inner()
        .group
        .expect("group")
}

/// Creates a user through DirectoryService.
pub async fn create_user(
    client: &mut DirectoryServiceClient<Channel>,
    directory_id: &str,
    user_name: &str,
) -> User {
    let req = CreateUserRequest {
        directory_id: directory_id.into(),
        resource: user_json(user_name),
    };
    client
        .create_user(req)
        .await
        .expect("CreateUser")
        .into_inner()
        .user
        .expect("user")
}

/// A gateway running in this process on a loopback port; stops when dropped.
pub struct Gateway {
    /// `http://127.0.0.1:<port>`.
    pub root: String,
    /// The gateway's state (its caches and counters).
    pub state: AppState,
    stop: watch::Sender<bool>,
}

impl Gateway {
    /// Starts a gateway with `config`; its `public_url` is set to where it listens.
    pub async fn start(mut config: GatewayConfig) -> Gateway {
        let (listener, addr) = loopback().await;
        config.public_url = format!("http://{addr}");
        Self::serve(
            AppState::new(config).expect("gateway state"),
            listener,
            addr,
        )
    }

    /// Starts a gateway with `config` that finds the directory-service pods
    /// through `resolver` instead of DNS.
    pub async fn start_resolving(
        mut config: GatewayConfig,
        resolver: Arc<dyn roster_gateway::upstream::Resolve>,
    ) -> Gateway {
        let (listener, addr) = loopback().await;
        config.public_url = format!("http://{addr}");
        let state = AppState::with_resolver(config, resolver).expect("gateway state");
        Self::serve(state, listener, addr)
    }

    fn serve(state: AppState, listener: TcpListener, addr: SocketAddr) -> Gateway {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(roster_gateway::serve_state(
            state.clone(),
            listener,
            until_stopped(stopped),
        ));
        Gateway {
            root: format!("http://{addr}"),
            state,
            stop,
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn until_stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A directory service and a gateway in this process on a fresh database.
pub struct Stack {
    /// The directory service's store (for seeding large data sets).
    pub store: Arc<PgStore>,
    pub server: Server,
    pub gateway: Gateway,
    channel: Channel,
    http: reqwest::Client,
}

impl Stack {
    /// Starts everything with the default gateway configuration.
    pub async fn start(prefix: &str) -> Stack {
        Self::start_with(prefix, |_| {}).await
    }

    /// Starts everything with one directory (deleting on deprovision) and
    /// a SCIM client of it: where most gateway tests begin. Keep the stack
    /// alive for as long as the client is used.
    pub async fn with_directory(prefix: &str) -> (Stack, Scim) {
        let stack = Self::start(prefix).await;
        let scim = stack.directory_with_token(DeprovisionPolicy::Delete).await;
        (stack, scim)
    }

    /// Starts everything, letting the test adjust the gateway configuration.
    pub async fn start_with(prefix: &str, configure: impl FnOnce(&mut GatewayConfig)) -> Stack {
        let (store, _) = pg_store(prefix).await;
        let server = Server::start(store.clone(), DirectoryConfig::default()).await;
        let mut config = GatewayConfig {
            directory_endpoint: format!("http://{}", server.addr),
            ..Default::default()
        };
        configure(&mut config);
        Stack {
            store,
            gateway: Gateway::start(config).await,
            channel: lazy_channel(server.addr),
            server,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// `http://127.0.0.1:<port>` of the gateway.
    pub fn base(&self) -> &str {
        &self.gateway.root
    }

    /// An AdminService client of the directory service.
    pub fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    /// A DirectoryService client of the directory service.
    pub fn directory(&self) -> DirectoryServiceClient<Channel> {
        DirectoryServiceClient::new(self.channel.clone())
    }

    /// Creates a directory and a token for it.
    pub async fn directory_with_token(&self, policy: DeprovisionPolicy) -> Scim {
        directory_with_token(self.channel.clone(), self.base(), policy)
            .await
            .with_http(self.http.clone())
    }

    /// A plain HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
