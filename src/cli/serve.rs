//! `serve`, `gateway`, `directory` and `migrate`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::{
    CreateDirectoryRequest, CreateTokenRequest, DeprovisionPolicy, ListDirectoriesRequest,
    ProviderKind,
};
use roster_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{
    ClientArgs, DirectoryArgs, DirectoryServiceArgs, GatewayArgs, GatewayHttpArgs, MetricsArgs,
    ServeArgs, StoreArgs, WebhookArgs,
};

/// Where the state lives, for the banner.
pub(super) enum StoreKind {
    Postgres,
    Sqlite(std::path::PathBuf),
}

/// `roster serve`: both halves in one process; the gateway calls the
/// directory service through its generated trait, without the wire.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (store, kind) = open_store(&args.process.store, Use::Serve).await?;
    let grpc = bind(
        args.process.directory.grpc_addr,
        "--grpc-addr / ROSTER_GRPC_ADDR",
    )
    .await?;
    let http = bind(args.http.http_addr, "--http-addr / ROSTER_HTTP_ADDR").await?;
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let public_url = args.http.public_url(http_addr);
    let (stop_directory, directory_stopped) = shutdown_channel();
    let (stop_gateway, gateway_stopped) = shutdown_channel();
    let metrics = spawn_metrics(&args.process.metrics, directory_stopped.clone()).await?;

    // The gateway calls the directory service in this process: users and
    // groups through the service's own gRPC trait (no encoding), admin and
    // health through the same routes and credential check as the listener,
    // without HTTP/2; other clients use the TCP listener.
    let dev_key = match &kind {
        StoreKind::Sqlite(_) => Some(args.process.store.data_dir.as_path()),
        StoreKind::Postgres => None,
    };
    let config = directory_config(&args.process.directory, dev_key)?;
    let directory = roster_directory::Directory::new(store, config)?;
    let (direct, in_process) = (directory.direct_service(), directory.in_process());
    let mut directory = tokio::spawn(directory.serve(grpc, wait(directory_stopped)));
    let endpoint = format!("http://{}", loopback(grpc_addr));
    let state = roster_gateway::AppState::with_direct(
        gateway_config(
            &args.http,
            &public_url,
            &endpoint,
            args.process.directory.internal_secret.clone(),
        ),
        direct,
        in_process,
    )?;
    spawn_portal(&args.http, &state, gateway_stopped.clone()).await?;
    let mut gateway = tokio::spawn(roster_gateway::serve_state(
        state,
        http,
        wait(gateway_stopped),
    ));
    let client = ClientArgs {
        endpoint,
        internal_secret: args.process.directory.internal_secret.clone(),
        tls: Default::default(),
    };
    print_banner(&client, &public_url, grpc_addr, metrics, &kind).await?;

    tokio::select! {
        r = &mut directory => return finished(r, "directory service"),
        r = &mut gateway => return finished(r, "gateway"),
        () = signal() => {}
    }
    // The gateway goes first: its in-flight requests still need the directory service.
    let _ = stop_gateway.send(true);
    drain(gateway, "gateway").await?;
    let _ = stop_directory.send(true);
    drain(directory, "directory service").await
}

/// `roster gateway`.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    check_endpoint(&args.directory_endpoint)?;
    let http = bind(args.http.http_addr, "--http-addr / ROSTER_HTTP_ADDR").await?;
    let public_url = args.http.public_url(http.local_addr()?);
    let (stop, stopped) = shutdown_channel();
    spawn_metrics(&args.metrics, stopped.clone()).await?;
    tracing::info!(%public_url, directory = %args.directory_endpoint, "gateway listening");
    let config = roster_gateway::GatewayConfig {
        directory_refresh: std::time::Duration::from_secs(args.directory_refresh_secs.max(1)),
        directory_tls: args.tls.files()?,
        ..gateway_config(
            &args.http,
            &public_url,
            &args.directory_endpoint,
            args.internal_secret.clone(),
        )
    };
    let state = roster_gateway::AppState::new(config)?;
    spawn_portal(&args.http, &state, stopped.clone()).await?;
    let server = tokio::spawn(roster_gateway::serve_state(state, http, wait(stopped)));
    run_until_signal(server, stop, "gateway").await
}

/// Serves the admin portal on `--portal-addr`, when given, until `stopped`.
/// A failure of that listener is logged; SCIM keeps running.
async fn spawn_portal(
    args: &GatewayHttpArgs,
    state: &roster_gateway::AppState,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(addr) = args.portal_addr.filter(|_| args.portal) else {
        return Ok(());
    };
    let listener = bind(addr, "--portal-addr / ROSTER_PORTAL_ADDR").await?;
    let bound = listener.local_addr()?;
    tracing::info!(portal = %format!("http://{bound}/portal"), "admin portal listening");
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = roster_gateway::serve_portal(state, listener, wait(stopped)).await {
            tracing::error!(%error, "the admin portal's listener failed");
        }
    });
    Ok(())
}

/// `roster directory`.
pub async fn directory(args: DirectoryArgs) -> anyhow::Result<()> {
    if args.process.store.database_url.is_none() && !args.allow_sqlite {
        return Err(anyhow!(
            "`roster directory` needs PostgreSQL: set DATABASE_URL or --database-url (the embedded \
             SQLite store is for `roster serve`; pass --allow-sqlite to run a lone directory service on it)"
        ));
    }
    let tls = args.tls.files()?;
    let (store, _) = open_store(&args.process.store, Use::Serve).await?;
    let grpc = bind(
        args.process.directory.grpc_addr,
        "--grpc-addr / ROSTER_GRPC_ADDR",
    )
    .await?;
    let mutual_tls = tls.is_some();
    tracing::info!(addr = %grpc.local_addr()?, mutual_tls, "directory service listening");
    let (stop, stopped) = shutdown_channel();
    spawn_metrics(&args.process.metrics, stopped.clone()).await?;
    let config = roster_directory::DirectoryConfig {
        tls,
        ..directory_config(&args.process.directory, None)?
    };
    let directory = roster_directory::Directory::new(store, config)?;
    if let Some(addr) = args.health_addr {
        let health = bind(addr, "--health-addr / ROSTER_HEALTH_ADDR").await?;
        tracing::info!(addr = %health.local_addr()?, "health port listening");
        directory.spawn_health_port(health, wait(stopped.clone()));
    }
    let server = tokio::spawn(directory.serve(grpc, wait(stopped)));
    run_until_signal(server, stop, "directory service").await
}

/// `roster migrate`.
pub async fn migrate(args: StoreArgs) -> anyhow::Result<()> {
    let args = StoreArgs {
        migrate: true,
        ..args
    };
    let (_, kind) = open_store(&args, Use::Once).await?;
    match kind {
        StoreKind::Postgres => println!("PostgreSQL schema is up to date."),
        StoreKind::Sqlite(path) => println!("SQLite schema at {} is up to date.", path.display()),
    }
    Ok(())
}

async fn run_until_signal<E: std::fmt::Display>(
    server: tokio::task::JoinHandle<Result<(), E>>,
    stop: watch::Sender<bool>,
    what: &str,
) -> anyhow::Result<()> {
    let mut server = server;
    tokio::select! {
        r = &mut server => return finished(r, what),
        () = signal() => {}
    }
    let _ = stop.send(true);
    drain(server, what).await
}

/// How long in-flight requests may take to finish after SIGTERM; inside
/// Kubernetes' default 30 s termination grace period.
const DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(25);

/// Waits for a server that was told to stop to finish its in-flight work.
async fn drain<E: std::fmt::Display>(
    server: tokio::task::JoinHandle<Result<(), E>>,
    what: &str,
) -> anyhow::Result<()> {
    match tokio::time::timeout(DRAIN_DEADLINE, server).await {
        Ok(r) => finished(r, what),
        Err(_) => Err(anyhow!(
            "{what} did not finish its in-flight requests within {DRAIN_DEADLINE:?}"
        )),
    }
}

/// A server task's end, as this command's result.
fn finished<E: std::fmt::Display>(
    r: Result<Result<(), E>, tokio::task::JoinError>,
    what: &str,
) -> anyhow::Result<()> {
    r.with_context(|| format!("{what} task failed"))?
        .map_err(|e| anyhow!("{what} stopped: {e}"))
}

/// What a store is opened for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// Requests from start-up on: PostgreSQL's pool is opened first
    /// (`--db-warm-connections`).
    Serve,
    /// One command's few statements.
    Once,
}

/// Opens PostgreSQL when a URL is given, else the embedded SQLite file.
pub(super) async fn open_store(
    args: &StoreArgs,
    usage: Use,
) -> anyhow::Result<(Arc<dyn Store>, StoreKind)> {
    match &args.database_url {
        Some(url) => {
            let shown = redact(url);
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(anyhow!(
                    "malformed DATABASE_URL {shown:?}: expected postgres://user@host:port/database"
                ));
            }
            let store = roster_store::postgres::PgStore::connect(url, args.db_max_connections)
                .await
                .map_err(|e| anyhow!("cannot connect to PostgreSQL at {shown}: {e}"))?
                .with_snapshot_connections(args.db_snapshot_connections);
            if args.migrate {
                store
                    .migrate()
                    .await
                    .map_err(|e| anyhow!("cannot migrate PostgreSQL at {shown}: {e}"))?;
            }
            let warm = args.db_warm_connections.unwrap_or(args.db_max_connections);
            // Fewer open connections only slow the first requests: not a
            // reason to refuse to start.
            if usage == Use::Serve
                && let Err(error) = store.warm_up(warm).await
            {
                tracing::warn!(%error, connections = warm, "cannot open the pool's connections at start-up");
            }
            Ok((Arc::new(store), StoreKind::Postgres))
        }
        None => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| {
                format!("cannot use data directory {}", args.data_dir.display())
            })?;
            let path = args.data_dir.join("roster.db");
            let store = roster_store::sqlite::SqliteStore::open(&path)
                .await
                .map_err(|e| anyhow!("cannot open the SQLite store at {}: {e}", path.display()))?
                .with_snapshot_connections(args.db_snapshot_connections);
            if args.migrate {
                store.migrate().await.map_err(|e| {
                    anyhow!("cannot migrate the SQLite store at {}: {e}", path.display())
                })?;
            }
            Ok((Arc::new(store), StoreKind::Sqlite(path)))
        }
    }
}

/// The directory service's settings. `dev_key_dir`: where `roster serve`
/// on SQLite keeps a generated webhook sealing key when none is given.
fn directory_config(
    args: &DirectoryServiceArgs,
    dev_key_dir: Option<&std::path::Path>,
) -> anyhow::Result<roster_directory::DirectoryConfig> {
    Ok(roster_directory::DirectoryConfig {
        progress_interval: args.progress_interval(),
        retention_secs: args.retention_secs,
        activity_retention: std::time::Duration::from_secs(args.activity_retention_secs),
        portal_session: std::time::Duration::from_secs(args.portal_session_secs),
        internal_secret: args.internal_secret.clone(),
        webhooks: webhook_config(&args.webhooks, dev_key_dir)?,
        sync_poll: std::time::Duration::from_secs(args.sync_poll_secs.max(1)),
        sync_lease: std::time::Duration::from_secs(args.sync_lease_secs.max(3)),
        ..Default::default()
    })
}

fn webhook_config(
    args: &WebhookArgs,
    dev_key_dir: Option<&std::path::Path>,
) -> anyhow::Result<roster_directory::webhooks::WebhookConfig> {
    use std::time::Duration;
    let key_text = match (&args.secret_key, dev_key_dir) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(dir)) => Some(dev_sealing_key(dir)?),
        (None, None) => None,
    };
    let sealing_key = key_text
        .map(|text| roster_webhook::SealingKey::parse_ring(&text, &args.secret_key_previous))
        .transpose()
        .map_err(|e| {
            anyhow!("--secret-key / ROSTER_SECRET_KEY or ROSTER_SECRET_KEY_PREVIOUS: {e}")
        })?
        .map(Arc::new);
    if sealing_key.is_none() {
        tracing::info!("webhooks are off: no --secret-key / ROSTER_SECRET_KEY");
    }
    let extra_roots = match &args.webhook_ca {
        Some(path) => roster_tls::read_certificates(path)
            .map_err(|e| anyhow!("--webhook-ca / ROSTER_WEBHOOK_CA: {e}"))?,
        None => Vec::new(),
    };
    Ok(roster_directory::webhooks::WebhookConfig {
        sealing_key,
        retry_horizon: Duration::from_secs(args.webhook_retry_horizon_secs),
        backoff_base: Duration::from_millis(args.webhook_backoff_base_ms.max(1)),
        backoff_max: Duration::from_secs(args.webhook_backoff_max_secs.max(1)),
        connect_timeout: Duration::from_millis(args.webhook_connect_timeout_ms.max(1)),
        request_timeout: Duration::from_millis(args.webhook_timeout_ms.max(1)),
        allow_http: args.webhook_allow_http,
        allow_private: args.webhook_allow_private,
        extra_roots,
        lease_ttl: Duration::from_secs(args.webhook_lease_secs.max(1)),
        ..Default::default()
    })
}

/// The sealing key of a single-process SQLite deployment: generated on
/// first start into the data directory (readable by its owner only). A
/// production deployment passes ROSTER_SECRET_KEY from its secret store
/// instead, so the key never sits next to the data it protects.
fn dev_sealing_key(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("webhook-sealing.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_string());
    }
    let text = roster_webhook::SealingKey::generate_text()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Ok(text)
}

fn gateway_config(
    args: &GatewayHttpArgs,
    public_url: &str,
    directory_endpoint: &str,
    internal_secret: Option<String>,
) -> roster_gateway::GatewayConfig {
    roster_gateway::GatewayConfig {
        public_url: public_url.to_string(),
        directory_endpoint: directory_endpoint.to_string(),
        internal_secret,
        max_body_bytes: args.max_body_bytes,
        rate_limit_per_directory: args.rate_limit_per_directory,
        auth_failures_per_address: args.auth_failures_per_address,
        auth_failure_burst: args.auth_failure_burst,
        token_lookups_per_second: args.token_lookups_per_second,
        token_cache_capacity: args.token_cache_capacity,
        client_address_header: args.client_address_header.clone(),
        activity_log: args.activity_log,
        portal: args.portal,
        portal_own_listener: args.portal && args.portal_addr.is_some(),
        ..Default::default()
    }
}

/// How long a metrics connection may wait for a request head: longer than
/// Prometheus's default scrape interval (1 min), so kept connections serve
/// the next scrape.
const METRICS_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(75);

/// Serves Prometheus metrics on their own port unless disabled with `off`.
async fn spawn_metrics(
    args: &MetricsArgs,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<Option<SocketAddr>> {
    if args.metrics_addr.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let addr: SocketAddr = args.metrics_addr.parse().with_context(|| {
        format!(
            "malformed metrics address {:?} (expected host:port or off)",
            args.metrics_addr
        )
    })?;
    let listener = bind(addr, "--metrics-addr / ROSTER_METRICS_ADDR").await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "metrics listening");
    // The gateway's accept loop: connection timeouts apply here too (a
    // scraper that opens a connection and sends nothing is dropped).
    tokio::spawn(roster_gateway::listen::serve(
        listener,
        roster_telemetry::metrics::router(),
        METRICS_IDLE_TIMEOUT,
        wait(stopped),
    ));
    Ok(Some(bound))
}

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (choose another address with {flag})"))
}

/// The address to dial for a listener bound to `addr` (0.0.0.0 → 127.0.0.1).
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// Hides the password of a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn shutdown_channel() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Resolves on Ctrl-C or SIGTERM.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}

/// Creates the first directory and token on first start and prints where to point an IdP.
async fn print_banner(
    client: &ClientArgs,
    public_url: &str,
    grpc: SocketAddr,
    metrics: Option<SocketAddr>,
    kind: &StoreKind,
) -> anyhow::Result<()> {
    let channel = super::connect(client).await?;
    let mut admin = AdminServiceClient::new(channel);
    let mut list = tonic::Request::new(ListDirectoriesRequest::default());
    super::authorize(&mut list, &client.internal_secret)?;
    let existing = admin
        .list_directories(list)
        .await
        .context("cannot list directories")?
        .into_inner();
    let (directory, secret) = match existing.directories.into_iter().next() {
        Some(d) => (d, None),
        None => {
            let mut create = tonic::Request::new(CreateDirectoryRequest {
                name: "default".into(),
                organization: "default".into(),
                provider: ProviderKind::Generic as i32,
                deprovision_policy: DeprovisionPolicy::Delete as i32,
                attribute_mappings: vec![],
            });
            super::authorize(&mut create, &client.internal_secret)?;
            let d = admin
                .create_directory(create)
                .await
                .context("cannot create the first directory")?;
            let d = d
                .into_inner()
                .directory
                .context("directory service returned no directory")?;
            let mut token = tonic::Request::new(CreateTokenRequest {
                directory_id: d.id.clone(),
                name: "default".into(),
            });
            super::authorize(&mut token, &client.internal_secret)?;
            let t = admin
                .create_token(token)
                .await
                .context("cannot create the first token")?;
            (d, Some(t.into_inner().secret))
        }
    };
    let store = match kind {
        StoreKind::Postgres => "PostgreSQL (DATABASE_URL)".to_string(),
        StoreKind::Sqlite(path) => format!("SQLite at {}", path.display()),
    };
    println!("Roster is running.");
    println!("  SCIM base URL: {public_url}/scim/v2/{}", directory.id);
    match secret {
        Some(s) => println!(
            "  Bearer token:  {s}\n                 (shown once; Roster stores only its hash)"
        ),
        None => println!(
            "  Bearer token:  shown at first start; make another with `roster admin create-token {}`",
            directory.id
        ),
    }
    println!("  Directory id:  {}", directory.id);
    println!(
        "  gRPC:          {grpc} (DirectoryService, AdminService, WatchChanges; reflection on)"
    );
    if let Some(addr) = metrics {
        println!("  Metrics:       http://{addr}/metrics");
    }
    println!("  Store:         {store}");
    Ok(())
}

/// Validates endpoint URLs up front so a typo is one clear sentence.
fn check_endpoint(url: &str) -> anyhow::Result<()> {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .map(|_| ())
        .map_err(|_| {
            anyhow!("malformed directory endpoint {url:?} (expected e.g. http://127.0.0.1:50051)")
        })
}
