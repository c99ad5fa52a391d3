//! Command line of `roster-bench`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// PostgreSQL used when neither `--database-url` nor `DATABASE_URL` is given.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Roster's benchmark suite. Each scenario creates its own database
/// (`roster_bench_<uuid8>`), starts the server under test in a separate
/// process, prints a table and writes the same figures as JSON.
#[derive(Debug, Parser)]
#[command(name = "roster-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// A scenario to run, or the hidden server half.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Users, groups and memberships created through the SCIM gateway as an IdP does.
    Onboarding(BenchArgs),
    /// `eq`, `co` and `sw` filters on userName/externalId at scale, through the gateway.
    Lookup(BenchArgs),
    /// Single-member PATCH add/remove on a huge group versus a small one.
    Churn(BenchArgs),
    /// Single-member PATCH adds (then removes) from many connections to ONE group.
    HotGroup(BenchArgs),
    /// SCIM write response to WatchChanges event, under onboarding load.
    WatchLatency(BenchArgs),
    /// Many concurrent WatchChanges streams while writes flow: delivery latency and RSS.
    Fanout(BenchArgs),
    /// Raw one-row INSERTs straight into PostgreSQL versus Roster's onboarding rate.
    Limit(BenchArgs),
    /// Signed webhooks to several endpoints while users are created: delivery rate and latency.
    Webhooks(BenchArgs),
    /// First sync of a big slapd directory into Roster, then a no-change re-sync.
    LdapSync(BenchArgs),
    /// Every scenario, one after the other.
    All(BenchArgs),
    /// The server under test (directory service + gateway); started by the bench itself.
    #[command(name = "__serve", hide = true)]
    Serve(ServeArgs),
}

impl Command {
    /// The scenario's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Onboarding(_) => "onboarding",
            Self::Lookup(_) => "lookup",
            Self::Churn(_) => "churn",
            Self::HotGroup(_) => "hot-group",
            Self::WatchLatency(_) => "watch-latency",
            Self::Fanout(_) => "fanout",
            Self::Limit(_) => "limit",
            Self::Webhooks(_) => "webhooks",
            Self::LdapSync(_) => "ldap-sync",
            Self::All(_) => "all",
            Self::Serve(_) => "__serve",
        }
    }
}

/// Flags shared by every scenario; each scenario reads the ones it needs.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// PostgreSQL server to run on (the bench creates and drops its own database there).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Where to write the JSON report (default `target/bench/<scenario>.json`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the bench database afterwards (to `EXPLAIN ANALYZE` against it).
    #[arg(long)]
    pub keep_database: bool,
    /// Concurrent HTTP workers, as an IdP's parallel connections.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// PostgreSQL connections of the server under test (`roster serve`'s default).
    #[arg(long, default_value_t = 16)]
    pub server_db_connections: u32,
    /// The server's gateway calls its directory service over loopback TCP
    /// (as separate `roster gateway` and `roster directory` processes do)
    /// instead of calling it directly in its process, as `roster serve` does.
    #[arg(long)]
    pub grpc_over_tcp: bool,
    /// The server under test as two processes, a gateway calling a directory
    /// service over loopback TCP, as `roster gateway` + `roster directory`
    /// (CPU and RSS are the sum of both).
    #[arg(long)]
    pub split_processes: bool,
    /// Tokio worker threads of each server process (`TOKIO_WORKER_THREADS`
    /// in its environment; default: one per CPU, as tokio sizes itself, which
    /// in a Kubernetes pod is its CPU limit). With `--split-processes`, `1`
    /// models two pods of one CPU each sharing this machine's two.
    #[arg(long)]
    pub server_worker_threads: Option<usize>,
    /// Messages buffered per WatchChanges stream in the server under test
    /// (default: the directory service's own).
    #[arg(long)]
    pub server_watch_buffer: Option<usize>,
    /// Whether the server under test records the audit trail of SCIM
    /// requests (docs/portal.md); `false` measures its cost.
    #[arg(long, env = "ROSTER_ACTIVITY_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub activity_log: bool,
    /// The server's log filter, as `roster serve --log` (default `info`, its
    /// default: one access-log line per request, text on stderr, which the
    /// bench reads and drops, as a container runtime would collect it;
    /// other lines are shown). `off` logs nothing, as the bench did before
    /// 2026-12-06 (ninth session).
    #[arg(long, default_value = "info")]
    pub server_log: String,

    /// Onboarding, watch-latency and limit: users to create.
    #[arg(long, default_value_t = 75_000)]
    pub users: usize,
    /// Onboarding: groups to create.
    #[arg(long, default_value_t = 500)]
    pub groups: usize,
    /// Onboarding: members added per PATCH (IdPs push memberships in batches).
    #[arg(long, default_value_t = 50)]
    pub patch_batch: usize,

    /// Lookup: users in the single big directory.
    #[arg(long, default_value_t = 1_000_000)]
    pub lookup_users: usize,
    /// Lookup: directories of the multi-directory case.
    #[arg(long, default_value_t = 100)]
    pub directories: usize,
    /// Lookup: users in each directory of the multi-directory case.
    #[arg(long, default_value_t = 10_000)]
    pub users_per_directory: usize,
    /// Lookup: requests per filter kind.
    #[arg(long, default_value_t = 2_000)]
    pub lookups: usize,
    /// Lookup: requests per `co`/`sw` probe, when fewer than `--lookups`
    /// (a `co` search at 1M users takes tens of milliseconds).
    #[arg(long)]
    pub pattern_lookups: Option<usize>,
    /// Lookup and churn: concurrent writers seeding rows through the Store API.
    #[arg(long, default_value_t = 32)]
    pub seed_concurrency: usize,

    /// Churn: members of the big group.
    #[arg(long, default_value_t = 100_000)]
    pub group_size: usize,
    /// Churn: members of the small group; hot-group: members of the group at the start.
    #[arg(long, default_value_t = 10)]
    pub small_group_size: usize,
    /// Churn: single-member PATCHes per group; hot-group: adds (and removes).
    #[arg(long, default_value_t = 2_000)]
    pub churn_ops: usize,
    /// Hot-group: users in the directory at least (the group's members, the
    /// newcomers, then users in no group), so that runs with different
    /// group sizes can use directories of the same size.
    #[arg(long, default_value_t = 0)]
    pub hot_group_directory_users: usize,

    /// Fan-out: concurrent WatchChanges streams.
    #[arg(long, default_value_t = 10_000)]
    pub streams: usize,
    /// Fan-out: streams multiplexed on one HTTP/2 connection.
    #[arg(long, default_value_t = 200)]
    pub streams_per_connection: usize,
    /// Fan-out: users created while the streams are open.
    #[arg(long, default_value_t = 200)]
    pub fanout_writes: usize,
    /// Fan-out: streams whose arrival times are recorded (spread evenly).
    #[arg(long, default_value_t = 100)]
    pub sample_streams: usize,

    /// Webhooks: endpoints, each receiving every event.
    #[arg(long, default_value_t = 10)]
    pub webhook_endpoints: usize,
    /// Webhooks: events (user creations) sent.
    #[arg(long, default_value_t = 20_000)]
    pub webhook_events: usize,
    /// Webhooks: events per second the writers aim at.
    #[arg(long, default_value_t = 1_000)]
    pub webhook_rate: usize,
    /// Ldap-sync: users in the slapd directory.
    #[arg(long, default_value_t = 100_000)]
    pub ldap_users: usize,
    /// Ldap-sync: groups (user i is a member of group i mod G).
    #[arg(long, default_value_t = 1_000)]
    pub ldap_groups: usize,

    /// The sealing key the server under test runs with (set by the
    /// webhooks scenario; webhooks are off without it).
    #[arg(skip)]
    pub webhook_key: Option<String>,
}

/// Flags of the hidden `__serve` subcommand.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// PostgreSQL database of the server under test.
    #[arg(long)]
    pub database_url: String,
    /// Gateway listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http_addr: SocketAddr,
    /// Directory service listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub grpc_addr: SocketAddr,
    /// PostgreSQL connections of the store.
    #[arg(long, default_value_t = 16)]
    pub db_max_connections: u32,
    /// The gateway calls the directory service over loopback TCP.
    #[arg(long)]
    pub grpc_over_tcp: bool,
    /// Which half of the server this process runs.
    #[arg(long, value_enum, default_value_t = Role::Both)]
    pub role: Role,
    /// The directory service the gateway calls (`--role gateway`).
    #[arg(long)]
    pub directory_endpoint: Option<String>,
    /// Messages buffered per watch stream (default: the service's own).
    #[arg(long)]
    pub watch_buffer: Option<usize>,
    /// Records the audit trail of SCIM requests.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub activity_log: bool,
    /// Webhook sealing key: turns webhooks on, receivers on loopback allowed.
    #[arg(long)]
    pub webhook_key: Option<String>,
    /// Log filter (as `roster serve --log`); none installs no subscriber.
    #[arg(long)]
    pub log: Option<String>,
}

/// What one `__serve` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The directory service and the gateway, as `roster serve`.
    Both,
    /// The directory service alone, as `roster directory`.
    Directory,
    /// The gateway alone, as `roster gateway`.
    Gateway,
}
