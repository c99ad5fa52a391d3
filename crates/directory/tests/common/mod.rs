//! Shared support of the directory-service tests: a real PostgreSQL database
//! per test, a real server on a loopback port, real tonic clients.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster_directory::watch::ChangeHub;
use roster_directory::{Directory, DirectoryConfig};
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::{CreateDirectoryRequest, ProviderKind};
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::watch_changes_response::Payload;
use roster_proto::directory::{
    Change, ChangeKind, CreateUserRequest, User, WatchChangesRequest, WatchChangesResponse,
};
use roster_store::Store;
use roster_store::postgres::PgStore;
use roster_store::sqlite::SqliteStore;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Streaming;
use tonic::transport::Channel;

/// How long a test waits for something that should happen promptly.
pub const PROMPTLY: Duration = Duration::from_secs(10);

/// A migrated PostgreSQL store on a fresh database; also returns its URL.
pub async fn pg_store(prefix: &str) -> (Arc<dyn Store>, String) {
    let url = roster_testkit::fresh_database(prefix).await;
    let store = connect(&url).await;
    store.migrate().await.expect("migrating the test database");
    (Arc::new(store), url)
}

/// Another store (own pool, own listener) on an existing database: a replica.
pub async fn replica_store(url: &str) -> Arc<dyn Store> {
    Arc::new(connect(url).await)
}

async fn connect(url: &str) -> PgStore {
    PgStore::connect(url, 5)
        .await
        .expect("connecting to the test database")
}

/// The store a test runs on. Every guarantee that applies to a single
/// process is checked on both (the embedded SQLite store keeps the
/// same promises as PostgreSQL within one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A migrated SQLite store in a fresh temp directory.
pub async fn sqlite_store(prefix: &str) -> Arc<dyn Store> {
    let dir =
        std::env::temp_dir().join(format!("roster-{prefix}-{}", uuid::Uuid::new_v4().simple()));
    let store = SqliteStore::open(&dir.join("roster.db"))
        .await
        .expect("opening the test SQLite store");
    store
        .migrate()
        .await
        .expect("migrating the test SQLite store");
    Arc::new(store)
}

/// Stamps a test module `name` with one test per backend, each calling
/// `name(backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await
            }
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
        }
    };
}

/// Settings for tests: fast progress markers, everything else default.
pub fn test_config() -> DirectoryConfig {
    DirectoryConfig {
        progress_interval: Duration::from_millis(200),
        ..Default::default()
    }
}

/// A directory service running on a loopback port.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: Arc<ChangeHub>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), roster_directory::Error>>>,
}

impl Server {
    /// Starts a server over `store`.
    pub async fn start(store: Arc<dyn Store>, config: DirectoryConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let directory = Directory::new(store, config).expect("building the directory service");
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

    /// A channel to this server.
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

/// One store, one server, clients: the usual test setup.
pub struct Env {
    pub store: Arc<dyn Store>,
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

    /// A fresh store of `backend` and a server over it with `config`
    /// (`url` is empty for SQLite).
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

    async fn over(store: Arc<dyn Store>, url: String, config: DirectoryConfig) -> Env {
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

    /// Creates a directory and returns its id.
    pub async fn directory(&mut self, name: &str) -> String {
        create_directory(&mut self.admin, name).await
    }

    /// Creates a user from `userName` and returns it.
    pub async fn user(&mut self, directory_id: &str, user_name: &str) -> User {
        create_user(&mut self.dir, directory_id, user_name).await
    }
}

/// Creates a directory through AdminService.
pub async fn create_directory(admin: &mut AdminServiceClient<Channel>, name: &str) -> String {
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
        .unwrap()
        .id
}

/// A minimal SCIM User resource.
pub fn user_json(user_name: &str) -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true
    })
    .to_string()
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
        .unwrap()
}

/// Opens a watch stream.
pub async fn watch(
    client: &mut DirectoryServiceClient<Channel>,
    directory_id: &str,
    kinds: &[ChangeKind],
    start: Start,
) -> Streaming<WatchChangesResponse> {
    let req = WatchChangesRequest {
        directory_id: directory_id.into(),
        kinds: kinds.iter().map(|k| *k as i32).collect(),
        start: Some(start),
    };
    client
        .watch_changes(req)
        .await
        .expect("WatchChanges")
        .into_inner()
}

/// The next message of a stream, within [`PROMPTLY`].
pub async fn next_message(stream: &mut Streaming<WatchChangesResponse>) -> WatchChangesResponse {
    tokio::time::timeout(PROMPTLY, stream.message())
        .await
        .expect("no watch message in time")
        .expect("watch stream failed")
        .expect("watch stream ended")
}

/// The next change (skipping progress markers) and its message, within [`PROMPTLY`].
pub async fn next_change(
    stream: &mut Streaming<WatchChangesResponse>,
) -> (WatchChangesResponse, Change) {
    tokio::time::timeout(PROMPTLY, async {
        loop {
            let msg = stream
                .message()
                .await
                .expect("watch stream failed")
                .expect("watch stream ended");
            if let Some(Payload::Change(c)) = msg.payload.clone() {
                return (msg, c);
            }
        }
    })
    .await
    .expect("no change in time")
}

/// Collects every message that arrives within `window`; the stream must
/// stay open meanwhile.
pub async fn messages_during(
    stream: &mut Streaming<WatchChangesResponse>,
    window: Duration,
) -> Vec<WatchChangesResponse> {
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + window;
    while let Ok(msg) = tokio::time::timeout_at(until, stream.message()).await {
        out.push(
            msg.expect("watch stream failed")
                .expect("watch stream ended"),
        );
    }
    out
}

/// The change kind of a change.
pub fn kind(c: &Change) -> ChangeKind {
    ChangeKind::try_from(c.kind).unwrap()
}
