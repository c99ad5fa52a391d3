//! Assembling and running the gRPC server: the two Roster services behind an
//! optional shared-secret check, `grpc.health.v1`, server reflection, and
//! the background tasks (change tailer, notifier, pruning, health checks).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use roster_proto::admin::admin_service_server::AdminServiceServer;
use roster_proto::directory::directory_service_server::DirectoryServiceServer;
use roster_store::Store;
use roster_telemetry::metrics::GrpcMetricsLayer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic::transport::server::{Router, TcpIncoming};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::AdminApi;
use crate::credentials::{InternalAuth, InternalAuthLayer};
use crate::grpc::{self, Grpc};
use crate::local::DirectService;
use crate::local::ServerTls;
use crate::service::DirectoryApi;
use crate::watch::{ChangeHub, WatchConfig};
use crate::webhooks::{Deliveries, WebhookConfig};

/// Settings of the directory service.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// A watch stream sends a progress marker after this long without any
    /// other message.
    pub progress_interval: Duration,
    /// A watcher whose send buffer stays full this long is cut off with
    /// `RESOURCE_EXHAUSTED`.
    pub slow_consumer_timeout: Duration,
    /// How long the change log is kept, in seconds.
    pub retention_secs: i64,
    /// How often old change-log rows are pruned.
    pub prune_interval: Duration,
    /// How long the audit trail of SCIM requests is kept (docs/portal.md);
    /// pruned as often as the change log.
    pub activity_retention: Duration,
    /// How long an admin-portal session lasts after its link was opened
    /// (docs/portal.md).
    pub portal_session: Duration,
    /// The change tailer re-checks the log at least this often, even when no
    /// notification arrives (a lost notification, an aborted transaction).
    pub poll_interval: Duration,
    /// How often the database is pinged for the health service.
    pub health_interval: Duration,
    /// When set, every DirectoryService/AdminService call must carry
    /// `authorization: Bearer <secret>` (health and reflection stay open for
    /// probes).
    pub internal_secret: Option<String>,
    /// Messages buffered per watcher before it counts as slow.
    pub watch_buffer: usize,
    /// When set, the TCP listener speaks TLS with this certificate and
    /// requires client certificates signed by its CA (mutual TLS); the files
    /// are re-read when they change. In-process connections stay plain.
    pub tls: Option<roster_tls::TlsFiles>,
    /// Webhook delivery and administration (docs/webhooks.md); off without
    /// a sealing key.
    pub webhooks: WebhookConfig,
    /// How often this replica looks for pulled directories due a sync
    /// (docs/connectors/); syncs need the sealing key of `webhooks`.
    pub sync_poll: Duration,
    /// How long a replica's sync lease lasts without renewal: a replica that
    /// dies mid-sync blocks its directory for at most this long.
    pub sync_lease: Duration,
    /// The listener pings each HTTP/2 connection this often, and closes one
    /// whose peer has not answered a ping within `keepalive_timeout`: a
    /// consumer whose machine vanished without closing its connection (no
    /// FIN) would otherwise keep its `WatchChanges` stream until TCP gives up
    /// on the progress messages, ~15 minutes with Linux's defaults.
    pub keepalive_interval: Duration,
    /// See `keepalive_interval`.
    pub keepalive_timeout: Duration,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        let watch = WatchConfig::default();
        Self {
            progress_interval: watch.progress_interval,
            slow_consumer_timeout: watch.slow_consumer_timeout,
            retention_secs: 7 * 24 * 3600,
            prune_interval: Duration::from_secs(60),
            activity_retention: Duration::from_secs(30 * 24 * 3600),
            portal_session: crate::portal::DEFAULT_SESSION_TTL,
            poll_interval: watch.poll_interval,
            health_interval: Duration::from_secs(5),
            internal_secret: None,
            watch_buffer: watch.buffer,
            tls: None,
            webhooks: WebhookConfig::default(),
            sync_poll: Duration::from_secs(5),
            sync_lease: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

impl DirectoryConfig {
    fn watch(&self) -> WatchConfig {
        WatchConfig {
            progress_interval: self.progress_interval,
            slow_consumer_timeout: self.slow_consumer_timeout,
            poll_interval: self.poll_interval,
            buffer: self.watch_buffer,
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reflection service could not load the descriptor set.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS certificates could not be loaded.
    #[error("cannot load the TLS certificates: {0}")]
    Tls(#[from] roster_tls::TlsError),
    /// Webhook delivery could not start.
    #[error(transparent)]
    Webhooks(#[from] crate::webhooks::DeliveryError),
}

/// The middleware stack of the server: gRPC metrics per method and code.
type Layers = tower::layer::util::Stack<
    InternalAuthLayer,
    tower::layer::util::Stack<GrpcMetricsLayer, tower::layer::util::Identity>,
>;

/// A built server: the router plus the background tasks it needs. Dropping
/// it stops the tasks.
pub struct Directory {
    router: Router<Layers>,
    direct: DirectService,
    in_process: crate::InProcess,
    hub: Arc<ChangeHub>,
    health: HealthCheck,
    tasks: BackgroundTasks,
    tls: Option<Arc<ServerTls>>,
    /// Webhook delivery; `None` when webhooks are off.
    deliveries: Option<Deliveries>,
    /// Syncs of pulled directories; `None` without a sealing key (their
    /// credentials cannot be opened).
    syncer: Option<roster_connectors::runner::Syncer>,
}

impl Directory {
    /// Builds the services over `store` and starts the background tasks
    /// (must run inside a Tokio runtime).
    pub fn new(store: Arc<dyn Store>, config: DirectoryConfig) -> Result<Self, Error> {
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(roster_tls::reloading_server(files.clone())?)),
            None => None,
        };
        let hub = ChangeHub::new(Arc::clone(&store), config.watch());
        let mut tasks = BackgroundTasks(hub.spawn_tasks());
        let retention = config.retention_secs;
        tasks.0.push(tokio::spawn(prune_loop(
            Arc::clone(&store),
            retention,
            config.prune_interval,
        )));
        tasks.0.push(tokio::spawn(prune_activity_loop(
            Arc::clone(&store),
            config.activity_retention,
            config.prune_interval,
        )));

        let (reporter, health_service) = tonic_health::server::health_reporter();
        let health = HealthCheck {
            store: Arc::clone(&store),
            reporter,
            every: config.health_interval,
        };

        let auth = InternalAuthLayer(Arc::new(InternalAuth::new(
            config.internal_secret.as_deref(),
            Arc::clone(&store),
        )));
        let directory = DirectoryApi::new(Arc::clone(&store), Arc::clone(&hub));
        let in_process = crate::InProcess(crate::grpc::Grpc(directory.clone()));
        let deliveries = Deliveries::start(
            Arc::clone(&store),
            Arc::clone(&hub),
            config.webhooks.clone(),
        )?;
        let syncer = config.webhooks.sealing_key.clone().map(|key| {
            let options = roster_connectors::runner::SyncerOptions {
                poll: config.sync_poll,
                lease_ttl: config.sync_lease,
                ..Default::default()
            };
            roster_connectors::runner::Syncer::start(Arc::clone(&store), key, options)
        });
        let admin = AdminApi::new(store, Arc::clone(&hub))
            .with_webhooks(&config.webhooks)?
            .with_portal_session(config.portal_session);
        // One set of routes behind one stack of layers, served two ways: on
        // the listeners (HTTP/2) and, in `roster serve`, called directly by
        // the gateway in the same process (`Directory::direct_service`).
        let routes = tonic::service::Routes::new(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(grpc::directory_server(directory))
            .add_service(grpc::admin_server(admin));
        let direct = crate::local::direct_service(
            tower::ServiceBuilder::new()
                .layer(GrpcMetricsLayer)
                .layer(auth.clone())
                .service(routes.clone().prepare()),
            request_span,
        );
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(config.keepalive_interval))
            .http2_keepalive_timeout(Some(config.keepalive_timeout))
            .trace_fn(request_span)
            .layer(GrpcMetricsLayer)
            .layer(auth)
            .add_routes(routes);
        Ok(Self {
            router,
            direct,
            in_process,
            hub,
            health,
            tasks,
            tls,
            deliveries,
            syncer,
        })
    }

    /// Serves only `grpc.health.v1`, in plain text, on `listener` until
    /// `shutdown` resolves: for probes that cannot present a client
    /// certificate (the kubelet's gRPC probe) while the main port requires
    /// mutual TLS. It reports the same status as the main port.
    pub fn spawn_health_port(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        let service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(self.health.reporter.clone()),
        );
        tokio::spawn(async move {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "health port stopped");
            }
        })
    }

    /// The services as one tower service a caller in the same process calls
    /// without a connection: the same routes behind the same layers
    /// (credential check, metrics) and the same request span as a call that
    /// came over HTTP/2 — no framing, no socket or pipe. `roster serve`
    /// hands it to its gateway. It answers while this `Directory` (or the
    /// server it became) runs its background tasks.
    pub fn direct_service(&self) -> DirectService {
        self.direct.clone()
    }

    /// `DirectoryService` for the gateway in this process, called through
    /// its trait with no encoding at all (see [`crate::InProcess`]); the
    /// admin and health services stay behind [`Directory::direct_service`].
    pub fn in_process(&self) -> Arc<roster_proto::directory::DynDirectoryService> {
        Arc::new(self.in_process.clone())
    }

    /// The change fan-out of this server (counters, tests).
    pub fn hub(&self) -> Arc<ChangeHub> {
        Arc::clone(&self.hub)
    }

    /// Serves on `listener` until `shutdown` resolves. On shutdown, open
    /// watch streams end with `UNAVAILABLE` (resume from the last cursor) so
    /// the graceful shutdown does not wait on them forever.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let Self {
            router,
            direct: _,
            in_process: _,
            hub,
            health,
            mut tasks,
            tls,
            deliveries,
            syncer,
        } = self;
        // The real status is known before the first request can ask for it.
        let first = health.report(None).await;
        tasks.0.push(tokio::spawn(health.run(first)));
        // Without TCP_NODELAY a response's last HTTP/2 frames wait for the
        // client's delayed ACK: 40 ms per call (docs/performance.md).
        let tcp = TcpIncoming::from(listener).with_nodelay(Some(true));
        let incoming = crate::local::incoming(tcp, tls);
        let signal = async move {
            shutdown.await;
            hub.close();
        };
        let result = router.serve_with_incoming_shutdown(incoming, signal).await;
        // Each endpoint finishes its request in flight and releases its
        // lease, so another replica takes over without waiting for expiry.
        if let Some(deliveries) = deliveries {
            deliveries.stop().await;
        }
        // A sync cut here leaves its lease to expire; the next one converges.
        drop(syncer);
        drop(tasks);
        Ok(result?)
    }
}

/// Runs the directory service on `listener` until `shutdown` resolves.
pub async fn serve(
    store: Arc<dyn Store>,
    config: DirectoryConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    Directory::new(store, config)?
        .serve(listener, shutdown)
        .await
}

/// Background tasks, aborted when dropped.
struct BackgroundTasks(Vec<JoinHandle<()>>);

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Reflection over Roster's protos and the health service; v1alpha is
/// served too because older grpcurl releases only speak it.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(roster_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// One span per call, named by its gRPC path; `x-request-id` is recorded
/// when the gateway sends one. Nothing else from the headers is logged, so
/// no credential ends up in a log line.
fn request_span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    call_span(request.uri().path(), request.headers())
}

/// The span of a call to `path` carrying `headers` (over the wire or in
/// this process: [`crate::InProcess`]).
pub(crate) fn call_span(path: &str, headers: &tonic::codegen::http::HeaderMap) -> tracing::Span {
    let request_id = headers
        .get(roster_proto::contract::REQUEST_ID_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "grpc",
        path = %path,
        request_id,
        trace_id = tracing::field::Empty
    );
    // Continue the caller's trace (the gateway sends `traceparent`).
    roster_telemetry::propagation::adopt_parent(&span, headers);
    span
}

async fn prune_loop(store: Arc<dyn Store>, retention_secs: i64, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match store.prune_changes(retention_secs).await {
            Ok(pruned_through) => tracing::debug!(pruned_through, "change log pruned"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the change log"),
        }
    }
}

/// Deletes audit-trail entries older than `retention`, every `every`.
async fn prune_activity_loop(store: Arc<dyn Store>, retention: Duration, every: Duration) {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let before = chrono::Utc::now() - retention;
        match store.prune_activity(before).await {
            Ok(deleted) => tracing::debug!(deleted, "audit trail pruned"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the audit trail"),
        }
    }
}

const SERVICE_NAMES: [&str; 3] = [
    "",
    <DirectoryServiceServer<Grpc<DirectoryApi>> as NamedService>::NAME,
    <AdminServiceServer<Grpc<AdminApi>> as NamedService>::NAME,
];

/// Reports SERVING while the database answers and NOT_SERVING while it does not.
struct HealthCheck {
    store: Arc<dyn Store>,
    reporter: HealthReporter,
    every: Duration,
}

impl HealthCheck {
    /// Pings the database and publishes the status when it changed.
    async fn report(&self, last: Option<ServingStatus>) -> ServingStatus {
        let status = match self.store.ping().await {
            Ok(()) => ServingStatus::Serving,
            Err(e) => {
                tracing::warn!(error = %e, "database ping failed; reporting NOT_SERVING");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            for name in SERVICE_NAMES {
                self.reporter.set_service_status(name, status).await;
            }
        }
        status
    }

    async fn run(self, mut last: ServingStatus) {
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; `last` is fresh
        loop {
            ticker.tick().await;
            last = self.report(Some(last)).await;
        }
    }
}
