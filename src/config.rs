//! Configuration: one typed struct per subcommand, from flags and `ROSTER_*`
//! environment variables (flags win), with defaults that make `roster serve`
//! work on a fresh machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Roster: SCIM 2.0 directory sync. Identity providers provision users and
/// groups over SCIM; your services follow every change through `WatchChanges`.
#[derive(Debug, Parser)]
#[command(name = "roster", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway and the directory service in one process (the gateway
    /// calls the directory service's gRPC routes directly, without HTTP/2).
    /// Without a database URL, state goes to an embedded SQLite file; on
    /// first start a directory and a token are created.
    Serve(ServeArgs),
    /// Run only the SCIM gateway (HTTP), calling a directory service.
    Gateway(GatewayArgs),
    /// Run only the directory service (gRPC) on PostgreSQL.
    Directory(DirectoryArgs),
    /// Apply database migrations and exit.
    Migrate(StoreArgs),
    /// Manage directories and tokens through a running directory service.
    Admin(AdminArgs),
    /// Tail `WatchChanges` as JSON lines.
    Watch(WatchArgs),
    /// Compare a consumer's copy of a directory (JSON lines) with Roster's
    /// state digest and list what differs; exits 2 when something does.
    Verify(VerifyArgs),
    /// Mirror a directory's users, groups and memberships into tables of
    /// your own PostgreSQL database, exactly once per change, until stopped
    /// (the example consumer of docs/consumers.md).
    Mirror(MirrorArgs),
}

/// Logging.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info,roster_gateway=debug`.
    #[arg(long, env = "ROSTER_LOG", default_value = "info", global = true)]
    pub log: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with span fields.
    Json,
}

/// Where state lives.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// PostgreSQL URL (production store). When unset, `serve` uses the
    /// embedded SQLite store in `--data-dir` (`directory` only with
    /// `--allow-sqlite`).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory of the embedded SQLite store.
    #[arg(long, env = "ROSTER_DATA_DIR", default_value = "./roster-data")]
    pub data_dir: PathBuf,
    /// Maximum PostgreSQL connections of this process for writes and reads
    /// (initial-state snapshots have their own, below; LISTEN takes one more).
    #[arg(long, env = "ROSTER_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// PostgreSQL connections of that pool opened at start-up, before the
    /// service listens (default: all of them; 0: on demand). The first
    /// burst of requests after a start or a rollout then does not wait for
    /// new connections (a backend each, and a TLS handshake where offered).
    #[arg(long, env = "ROSTER_DB_WARM_CONNECTIONS")]
    pub db_warm_connections: Option<u32>,
    /// Initial-state snapshots open at once (each holds its own database
    /// connection while its watcher reads; both stores); one more is
    /// answered RESOURCE_EXHAUSTED with a retry hint.
    #[arg(long, env = "ROSTER_DB_SNAPSHOT_CONNECTIONS", default_value_t = roster_store::DEFAULT_SNAPSHOT_CONNECTIONS)]
    pub db_snapshot_connections: u32,
    /// Apply pending migrations at start-up.
    #[arg(long, env = "ROSTER_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,
}

/// Settings of the directory service.
#[derive(Debug, Clone, Args)]
pub struct DirectoryServiceArgs {
    /// Address the gRPC directory service listens on.
    #[arg(long, env = "ROSTER_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Shared secret that gRPC callers must present as `authorization: Bearer
    /// <secret>`; unset allows any caller that can reach the port.
    #[arg(long, env = "ROSTER_INTERNAL_SECRET", hide_env_values = true)]
    pub internal_secret: Option<String>,
    /// How long the change log is kept, in seconds (cursors older than this
    /// get OUT_OF_RANGE).
    #[arg(long, env = "ROSTER_RETENTION_SECS", default_value_t = 7 * 24 * 3600)]
    pub retention_secs: i64,
    /// How long the audit trail of SCIM requests is kept, in seconds.
    #[arg(long, env = "ROSTER_ACTIVITY_RETENTION_SECS", default_value_t = 30 * 24 * 3600)]
    pub activity_retention_secs: u64,
    /// How long an admin-portal session lasts after its link was opened, in
    /// seconds (at most 30 days); then the IT admin needs a new link.
    #[arg(long, env = "ROSTER_PORTAL_SESSION_SECS", default_value_t = 8 * 3600,
          value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 3600))]
    pub portal_session_secs: u64,
    /// Progress-marker interval of idle WatchChanges streams, in milliseconds.
    #[arg(long, env = "ROSTER_PROGRESS_INTERVAL_MS", default_value_t = 5000)]
    pub progress_interval_ms: u64,
    /// How often this replica looks for pulled directories (Google, LDAP,
    /// Active Directory) due a sync, in seconds; each directory has its own
    /// interval (docs/connectors/).
    #[arg(long, env = "ROSTER_SYNC_POLL_SECS", default_value_t = 5)]
    pub sync_poll_secs: u64,
    /// How long a replica's lease on a directory's sync lasts without
    /// renewal (renewed every third of it), in seconds: a replica that dies
    /// mid-sync delays the directory's next sync by at most this long.
    #[arg(long, env = "ROSTER_SYNC_LEASE_SECS", default_value_t = 60)]
    pub sync_lease_secs: u64,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// Webhook delivery (docs/webhooks.md).
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// Key that seals webhook signing secrets at rest: base64 of 32 random
    /// bytes (`openssl rand -base64 32`), the same on every replica. Without
    /// it webhooks are off (`roster serve` on SQLite keeps a generated one
    /// in its data directory instead).
    #[arg(long, env = "ROSTER_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Previous sealing keys during a rotation, comma-separated: values they
    /// sealed still open, new values are sealed with `--secret-key` only.
    /// Drop them once `roster admin reseal` reports nothing left
    /// (docs/operations.md).
    #[arg(
        long,
        env = "ROSTER_SECRET_KEY_PREVIOUS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub secret_key_previous: Vec<String>,
    /// How long an endpoint's next event is retried before the endpoint is
    /// marked failing (dead letter), in seconds.
    #[arg(long, env = "ROSTER_WEBHOOK_RETRY_HORIZON_SECS", default_value_t = 3 * 24 * 3600)]
    pub webhook_retry_horizon_secs: u64,
    /// First retry delay in milliseconds (doubling, with jitter).
    #[arg(long, env = "ROSTER_WEBHOOK_BACKOFF_BASE_MS", default_value_t = 1000)]
    pub webhook_backoff_base_ms: u64,
    /// Longest retry delay, in seconds.
    #[arg(long, env = "ROSTER_WEBHOOK_BACKOFF_MAX_SECS", default_value_t = 3600)]
    pub webhook_backoff_max_secs: u64,
    /// Connect timeout of a webhook request, in milliseconds.
    #[arg(
        long,
        env = "ROSTER_WEBHOOK_CONNECT_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub webhook_connect_timeout_ms: u64,
    /// Timeout of a whole webhook request, in milliseconds.
    #[arg(long, env = "ROSTER_WEBHOOK_TIMEOUT_MS", default_value_t = 15000)]
    pub webhook_timeout_ms: u64,
    /// How long a replica's claim on an endpoint lasts without renewal, in
    /// seconds: after a replica dies, another takes its endpoints over
    /// within this time.
    #[arg(long, env = "ROSTER_WEBHOOK_LEASE_SECS", default_value_t = 60)]
    pub webhook_lease_secs: u64,
    /// Allow `http://` endpoints (development only).
    #[arg(long, env = "ROSTER_WEBHOOK_ALLOW_HTTP", default_value_t = false)]
    pub webhook_allow_http: bool,
    /// Allow endpoints at private, loopback and link-local addresses
    /// (in-cluster receivers); refused by default against SSRF.
    #[arg(long, env = "ROSTER_WEBHOOK_ALLOW_PRIVATE", default_value_t = false)]
    pub webhook_allow_private: bool,
    /// CA certificate(s) (PEM) trusted for `https://` webhook receivers
    /// besides the public roots: in-cluster receivers whose certificates
    /// come from a private CA. Read at start.
    #[arg(long, env = "ROSTER_WEBHOOK_CA")]
    pub webhook_ca: Option<PathBuf>,
}

/// Mutual TLS on the directory service's gRPC port.
#[derive(Debug, Clone, Args)]
pub struct DirectoryTlsArgs {
    /// Certificate chain (PEM) the directory service presents; with
    /// `--tls-key` and `--tls-client-ca` it turns on mutual TLS: every caller
    /// must present a certificate signed by the client CA. The files are
    /// re-read when they change (rotation without restart).
    #[arg(long, env = "ROSTER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "ROSTER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) that callers' certificates must chain to.
    #[arg(long, env = "ROSTER_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

/// Mutual TLS towards the directory service, for its clients.
#[derive(Debug, Clone, Default, Args)]
pub struct DirectoryClientTlsArgs {
    /// Certificate chain (PEM) presented to the directory service; with
    /// `--directory-tls-key` and `--directory-tls-ca` (and an `https://`
    /// endpoint) calls go over mutual TLS. Re-read when the files change.
    #[arg(long, env = "ROSTER_DIRECTORY_TLS_CERT", global = true)]
    pub directory_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--directory-tls-cert`.
    #[arg(long, env = "ROSTER_DIRECTORY_TLS_KEY", global = true)]
    pub directory_tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) the directory service's certificate must
    /// chain to; it must be issued for the endpoint's host name.
    #[arg(long, env = "ROSTER_DIRECTORY_TLS_CA", global = true)]
    pub directory_tls_ca: Option<PathBuf>,
}

/// Settings of the SCIM gateway.
#[derive(Debug, Clone, Args)]
pub struct GatewayHttpArgs {
    /// Address the SCIM gateway listens on.
    #[arg(long, env = "ROSTER_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Public base URL of the gateway as IdPs reach it (used in SCIM
    /// `meta.location`); defaults to `http://<http-addr>`.
    #[arg(long, env = "ROSTER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ROSTER_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Requests per second allowed per directory (0 disables the limit).
    #[arg(long, env = "ROSTER_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit_per_directory: u32,
    /// Failed authentications per second a client address may sustain
    /// before its requests without a known-valid token get 429 (0 disables).
    #[arg(long, env = "ROSTER_AUTH_FAILURES_PER_ADDRESS", default_value_t = 10)]
    pub auth_failures_per_address: u32,
    /// Failed authentications a client address may make at once.
    #[arg(long, env = "ROSTER_AUTH_FAILURE_BURST", default_value_t = 100)]
    pub auth_failure_burst: u32,
    /// Token checks per second at the directory service for tokens the
    /// gateway's cache does not know, across all clients (0 disables).
    #[arg(long, env = "ROSTER_TOKEN_LOOKUPS_PER_SECOND", default_value_t = 500)]
    pub token_lookups_per_second: u32,
    /// Valid (and, separately, rejected) tokens the gateway's cache holds.
    #[arg(long, env = "ROSTER_TOKEN_CACHE_CAPACITY", default_value_t = 10_000)]
    pub token_cache_capacity: usize,
    /// Header in which a trusted reverse proxy puts the client's address
    /// (e.g. `x-forwarded-for`; its right-most entry is used). Unset: the
    /// TCP peer address. Set it only when every request comes through that
    /// proxy, or clients can pick their own address.
    #[arg(long, env = "ROSTER_CLIENT_ADDRESS_HEADER")]
    pub client_address_header: Option<String>,
    /// Record every SCIM request in the audit trail (`roster admin activity`,
    /// the portal's activity page).
    #[arg(long, env = "ROSTER_ACTIVITY_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub activity_log: bool,
    /// Serve the admin portal under /portal.
    #[arg(long, env = "ROSTER_PORTAL", default_value_t = true, action = clap::ArgAction::Set)]
    pub portal: bool,
    /// Serve the admin portal on this address of its own instead of the
    /// SCIM listener's (e.g. reachable from customers' browsers only).
    #[arg(long, env = "ROSTER_PORTAL_ADDR")]
    pub portal_addr: Option<SocketAddr>,
}

/// Where Prometheus metrics are served.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Address of the Prometheus `/metrics` endpoint (its own port, so it is
    /// never exposed with the SCIM surface); `off` disables it.
    #[arg(long, env = "ROSTER_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: String,
}

/// What every process running the directory service takes (`roster serve`
/// and `roster directory`): its metrics port, its store and the service's
/// settings.
#[derive(Debug, Clone, Args)]
pub struct DirectoryProcessArgs {
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub directory: DirectoryServiceArgs,
}

/// `roster serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub process: DirectoryProcessArgs,
    #[command(flatten)]
    pub http: GatewayHttpArgs,
}

/// `roster gateway`.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub http: GatewayHttpArgs,
    /// gRPC endpoint of the directory service.
    #[arg(
        long,
        env = "ROSTER_DIRECTORY_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub directory_endpoint: String,
    /// How often the endpoint's host is resolved again, in seconds; calls are
    /// spread over every address it resolves to (e.g. every pod behind a
    /// headless Service).
    #[arg(long, env = "ROSTER_DIRECTORY_REFRESH_SECS", default_value_t = 5)]
    pub directory_refresh_secs: u64,
    /// Shared secret to present to the directory service.
    #[arg(long, env = "ROSTER_INTERNAL_SECRET", hide_env_values = true)]
    pub internal_secret: Option<String>,
    #[command(flatten)]
    pub tls: DirectoryClientTlsArgs,
}

/// `roster directory`.
#[derive(Debug, Clone, Args)]
pub struct DirectoryArgs {
    #[command(flatten)]
    pub process: DirectoryProcessArgs,
    /// Run on the embedded SQLite store in `--data-dir` when no database URL
    /// is set. A split deployment needs PostgreSQL (the gateway and every
    /// replica must see one store), so without this flag a missing
    /// `DATABASE_URL` is an error.
    #[arg(long, env = "ROSTER_ALLOW_SQLITE", default_value_t = false)]
    pub allow_sqlite: bool,
    #[command(flatten)]
    pub tls: DirectoryTlsArgs,
    /// Also serve `grpc.health.v1` alone, in plain text, on this address:
    /// the kubelet's gRPC probe cannot present a client certificate to the
    /// mutual-TLS port.
    #[arg(long, env = "ROSTER_HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,
}

/// Connection to a running directory service, for the client subcommands.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// gRPC endpoint of the directory service.
    /// `host:port` without a scheme means `http://host:port`.
    // `global` lets the connection flags follow the subcommand too
    // (`roster admin create-directory … --endpoint X`).
    #[arg(
        long,
        env = "ROSTER_DIRECTORY_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub endpoint: String,
    /// Shared secret to present to the directory service.
    #[arg(
        long,
        env = "ROSTER_INTERNAL_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub internal_secret: Option<String>,
    #[command(flatten)]
    pub tls: DirectoryClientTlsArgs,
}

/// `roster admin`.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Admin operations.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// List directories.
    ListDirectories {
        /// Only this organization's directories.
        #[arg(long)]
        organization: Option<String>,
    },
    /// Create a directory and print it as JSON.
    CreateDirectory {
        #[arg(long)]
        name: String,
        /// Tenant key of your customer.
        #[arg(long, default_value = "")]
        organization: String,
        /// okta, entra, onelogin, jumpcloud, google, pingone, rippling or generic.
        #[arg(long, default_value = "generic")]
        provider: String,
        /// What a SCIM DELETE of a user does: delete or deactivate.
        #[arg(long, default_value = "delete")]
        deprovision_policy: String,
    },
    /// Show a directory.
    GetDirectory { id: String },
    /// Delete a directory with all its data and tokens.
    DeleteDirectory { id: String },
    /// Map an IdP attribute onto a normalized field or `custom:<key>`
    /// (replaces the mapping of the same source).
    MapAttribute {
        directory_id: String,
        /// SCIM path in the IdP's payload, e.g. urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter
        source: String,
        /// Normalized field (department, title, employee_number, ...) or custom:<key>.
        target: String,
    },
    /// Create a bearer token; the secret is printed once.
    CreateToken {
        directory_id: String,
        #[arg(long, default_value = "token")]
        name: String,
    },
    /// List a directory's tokens (never their secrets).
    ListTokens {
        directory_id: String,
        #[arg(long)]
        include_revoked: bool,
    },
    /// Revoke a token.
    RevokeToken {
        directory_id: String,
        token_id: String,
    },
    /// Create a service credential for an internal caller (a consumer, a
    /// gateway); the secret (`rsc_…`) is printed once. `read`: directory
    /// reads and WatchChanges; `gateway`: what the SCIM gateway calls;
    /// `admin`: everything.
    CreateCredential {
        #[arg(long)]
        name: String,
        /// read, gateway or admin.
        #[arg(long, default_value = "read")]
        scope: String,
    },
    /// List service credentials (never their secrets).
    ListCredentials {
        #[arg(long)]
        include_revoked: bool,
    },
    /// Revoke a service credential (refused within seconds).
    RevokeCredential { id: String },
    /// Print a directory's SCIM requests (the audit trail), newest first:
    /// method, path, status, SCIM error, user agent, resource — never a body
    /// or a credential.
    Activity {
        directory_id: String,
        /// all, success, failure, client-error or server-error.
        #[arg(long)]
        outcome: Option<String>,
        /// Only requests about this resource type (User, Group, Bulk, ...).
        #[arg(long)]
        resource: Option<String>,
        /// Entries per page (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: i32,
        /// The `next_page_token` of the previous page.
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Create a single-use admin-portal link for a directory and print its
    /// URL (once): the customer's IT admin opens it to connect their IdP.
    PortalLink {
        directory_id: String,
        /// How long the link may wait to be opened: 15m, 24h, 3d (at most 30d).
        #[arg(long, default_value = "24h")]
        expires: String,
        /// The gateway's public base URL, to print the link with.
        #[arg(long, env = "ROSTER_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Revoke a directory's portal links (one with --link, else all) and the
    /// sessions opened with them.
    RevokePortalLinks {
        directory_id: String,
        #[arg(long)]
        link: Option<String>,
    },
    /// Create a webhook endpoint; its signing secret (`whsec_…`) is printed
    /// once.
    CreateWebhook {
        /// Receiver URL (https://).
        url: String,
        /// Only this directory's changes; omit for every directory.
        #[arg(long)]
        directory: Option<String>,
        /// Only these kinds, e.g. user.deactivated,user.deleted.
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// List webhook endpoints with their delivery state and lag.
    ListWebhooks {
        /// Only those receiving this directory's changes.
        #[arg(long)]
        directory: Option<String>,
    },
    /// Show one webhook endpoint.
    GetWebhook { id: String },
    /// Change a webhook endpoint.
    UpdateWebhook {
        id: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// true or false.
        #[arg(long)]
        enabled: Option<bool>,
        /// Replace the kinds (`all` for every kind).
        #[arg(long, value_delimiter = ',')]
        kinds: Option<Vec<String>>,
    },
    /// Delete a webhook endpoint.
    DeleteWebhook { id: String },
    /// Issue a new signing secret (printed once); the old one keeps signing
    /// alongside it for the overlap.
    RotateWebhookSecret {
        id: String,
        /// Seconds the old secret stays valid (default 24 h).
        #[arg(long, default_value_t = 0)]
        overlap_secs: i64,
    },
    /// Deliver again after a position (`--cursor` or `--after-revision`);
    /// also brings a dead-lettered endpoint back.
    ReplayWebhook {
        id: String,
        #[arg(
            long,
            conflicts_with = "after_revision",
            required_unless_present = "after_revision"
        )]
        cursor: Option<String>,
        #[arg(long)]
        after_revision: Option<i64>,
    },
    /// Give up the event an endpoint is stuck on and continue after it.
    SkipWebhookEvent { id: String },
    /// Recent delivery attempts of an endpoint (status, latency, response).
    WebhookAttempts {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// Send a signed test.ping to an endpoint now.
    TestWebhook { id: String },
    /// Make a directory pulled from Google Workspace, LDAP or Active
    /// Directory, or change its source (docs/connectors/). The credentials
    /// (bind password, service-account key JSON) are read from a file or an
    /// environment variable, never from the command line, and are stored
    /// sealed; omit both to keep the stored ones.
    SetSource {
        directory_id: String,
        /// google, ldap or active_directory.
        #[arg(long)]
        kind: String,
        /// The connector's settings as JSON, or @path to a JSON file.
        #[arg(long, default_value = "{}")]
        settings: String,
        /// A file holding the credentials.
        #[arg(long, conflicts_with = "credentials_env")]
        credentials_file: Option<std::path::PathBuf>,
        /// An environment variable holding the credentials.
        #[arg(long)]
        credentials_env: Option<String>,
        /// Seconds between syncs (default 1800).
        #[arg(long, default_value_t = 0)]
        interval_secs: i64,
        /// Stop a sync that would remove or deactivate more than this
        /// percentage of the users (default 20).
        #[arg(long, default_value_t = 0)]
        mass_delete_percent: i32,
    },
    /// A pulled directory's source settings and last sync status.
    GetSource { directory_id: String },
    /// Sync a pulled directory now; `--confirm-removals` also applies the
    /// removals the mass-deletion safeguard stopped.
    SyncNow {
        directory_id: String,
        #[arg(long)]
        confirm_removals: bool,
    },
    /// After a rotation of the sealing key: seal again under the current
    /// `ROSTER_SECRET_KEY` every stored secret (sources' credentials,
    /// webhook signing secrets) a key of `ROSTER_SECRET_KEY_PREVIOUS`
    /// sealed. Once it reports `resealed` 0 and no `unopenable`, the
    /// previous keys can be removed (docs/operations.md).
    Reseal,
    /// Give the change log a new epoch, directly in the database (no
    /// directory service needed): the step after restoring a backup, before
    /// starting Roster. Every cursor issued before is then refused with
    /// OUT_OF_RANGE, so consumers start again instead of skipping changes.
    NewEpoch {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `roster watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Directory to watch; omit to watch every directory.
    #[arg(long)]
    pub directory: Option<String>,
    /// Resume after this cursor (from an earlier line's `cursor`).
    #[arg(long, conflicts_with_all = ["after_revision", "initial_state"])]
    pub cursor: Option<String>,
    /// Start after this change-log revision (0 = everything retained).
    #[arg(long, conflicts_with = "initial_state")]
    pub after_revision: Option<i64>,
    /// Start with the current state as synthetic events, then a SYNCED line.
    #[arg(long)]
    pub initial_state: bool,
    /// Only these kinds, e.g. user.created,member.added.
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Exit after this many change events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Also print progress markers.
    #[arg(long)]
    pub progress: bool,
    /// Keep going across disconnects: reconnect with backoff and resume
    /// after the last line printed (where it resumed goes to stderr).
    #[arg(long)]
    pub follow: bool,
    /// With --follow: keep the last cursor in this file, and resume from it
    /// when started again.
    #[arg(long, requires = "follow")]
    pub cursor_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The directory to mirror.
    #[arg(long)]
    pub directory: String,
    /// The PostgreSQL database to mirror into (tables `mirror_users`,
    /// `mirror_groups`, `mirror_memberships`, `roster_cursors`).
    #[arg(long, env = "ROSTER_MIRROR_DATABASE_URL", hide_env_values = true)]
    pub mirror_database_url: String,
    /// The consumer's name: its cursor's key in `roster_cursors`.
    #[arg(long, default_value = "mirror")]
    pub name: String,
    /// Take snapshots through the list RPCs instead of `initial_state`.
    #[arg(long)]
    pub list_then_watch: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The directory the copy mirrors.
    #[arg(long)]
    pub directory: String,
    /// The copy, one JSON object per line: `{"kind":"user","id":…,"version":…}`
    /// or `{"kind":"group","id":…,"version":…,"members":[ids…]}`; `-` reads stdin.
    #[arg(long)]
    pub mirror: std::path::PathBuf,
}

impl DirectoryServiceArgs {
    /// Progress-marker interval as a duration.
    pub fn progress_interval(&self) -> Duration {
        Duration::from_millis(self.progress_interval_ms.max(10))
    }
}

impl GatewayHttpArgs {
    /// The public base URL, given the address actually bound.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_string()
    }
}

/// The three TLS files (certificate, key, CA) given together, or none of
/// them; `flags` name them in that order for the error.
fn tls_files(
    [cert, key, ca]: [&Option<PathBuf>; 3],
    flags: [&str; 3],
) -> anyhow::Result<Option<roster_tls::TlsFiles>> {
    match (cert, key, ca) {
        (Some(cert), Some(key), Some(ca)) => Ok(Some(roster_tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        })),
        (None, None, None) => Ok(None),
        _ => Err(anyhow::anyhow!(
            "mutual TLS needs all of {}, {} and {}",
            flags[0],
            flags[1],
            flags[2]
        )),
    }
}

impl DirectoryTlsArgs {
    const FLAGS: [&str; 3] = ["--tls-cert", "--tls-key", "--tls-client-ca"];

    /// The directory service's TLS files, when mutual TLS is on.
    pub fn files(&self) -> anyhow::Result<Option<roster_tls::TlsFiles>> {
        tls_files(
            [&self.tls_cert, &self.tls_key, &self.tls_client_ca],
            Self::FLAGS,
        )
    }
}

impl DirectoryClientTlsArgs {
    const FLAGS: [&str; 3] = [
        "--directory-tls-cert",
        "--directory-tls-key",
        "--directory-tls-ca",
    ];

    /// The client's TLS files, when mutual TLS is on.
    pub fn files(&self) -> anyhow::Result<Option<roster_tls::TlsFiles>> {
        let paths = [
            &self.directory_tls_cert,
            &self.directory_tls_key,
            &self.directory_tls_ca,
        ];
        tls_files(paths, Self::FLAGS)
    }
}
