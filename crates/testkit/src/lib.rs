//! Test support: finds or starts a PostgreSQL server and makes throwaway
//! databases on it.
//!
//! Tests use real parts: a real PostgreSQL over a real connection. The server
//! is, in order of preference:
//! 1. the one named by `DATABASE_URL` (CI and developer machines run one on
//!    127.0.0.1:5432), or
//! 2. a throwaway cluster started from the PostgreSQL server binaries found on
//!    `PATH` or under `/usr/lib/postgresql/*/bin`.
//!
//! Without either, the tests fail with a clear message: a missing database is
//! never a silent skip.
//!
//! # Stopping the throwaway cluster
//! Statics are never dropped, so no guard can stop the cluster when the test
//! process exits. Instead the cluster is started by a small `sh` watchdog
//! that polls `/proc/<test pid>` once a second; when the test process is
//! gone it stops the cluster (`pg_ctl stop -m immediate`) and removes its
//! directory. This works however the test process ends (normal exit, panic,
//! `SIGKILL`), which an exit hook would not.
//!
//! Without features this crate depends on no Roster crate, so the store's
//! tests can use it; the `app` feature adds the spawn-app harness
//! ([`app`]) that every end-to-end test of the services goes through.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::OnceCell;

#[cfg(feature = "app")]
pub mod app;
#[cfg(feature = "google")]
pub mod google;
mod owned;
pub mod slapd;
pub use owned::{OwnedCluster, owned_cluster};

/// The message of the panic when no PostgreSQL can be found or started.
pub const NO_POSTGRES: &str = "PostgreSQL is needed for the tests: set DATABASE_URL or install the \
     PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql)";

/// How long a freshly started cluster may take to accept connections.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// A PostgreSQL server the tests may use, shared by the whole test process.
#[derive(Debug, Clone)]
pub struct PgServer {
    base_url: String,
}

impl PgServer {
    /// URL of the server's `postgres` database (superuser `postgres`).
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// URL of another database on the same server.
    pub fn database_url(&self, database: &str) -> String {
        with_database(&self.base_url, database)
    }
}

static SERVER: OnceCell<PgServer> = OnceCell::const_new();

/// The PostgreSQL server for this test process: `DATABASE_URL` if set, else a
/// throwaway cluster started once (and stopped when the process exits).
///
/// # Panics
/// With [`NO_POSTGRES`] when `DATABASE_URL` is unset and no server binaries
/// are installed, or when the server cannot be reached or started.
pub async fn postgres() -> PgServer {
    SERVER.get_or_init(init_server).await.clone()
}

async fn init_server() -> PgServer {
    let base_url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            let cluster = tokio::task::spawn_blocking(start_throwaway_cluster)
                .await
                .expect("starting the throwaway PostgreSQL cluster panicked");
            wait_until_accepting(&cluster).await;
            cluster
        }
    };
    let server = PgServer { base_url };
    drop_stale_test_databases(&server).await;
    server
}

/// Creates a uniquely named, empty database (`roster_test_<prefix>_<uuid8>`)
/// on the test server and returns its URL. Migrations are the store's job.
pub async fn fresh_database(prefix: &str) -> String {
    let server = postgres().await;
    let name = test_database_name(prefix);
    create_database(server.url(), &name)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"))
}

/// Creates the empty database `name` on the server of `server_url` and
/// returns its URL. `name` must be made of `[a-z0-9_]` only (as
/// [`unique_name`] makes it): it is quoted as an identifier, not escaped.
pub async fn create_database(server_url: &str, name: &str) -> Result<String, sqlx::Error> {
    assert!(is_plain_name(name), "not a plain database name: {name:?}");
    let mut conn = PgConnection::connect(server_url).await?;
    let created = sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    created?;
    Ok(with_database(server_url, name))
}

/// Drops database `name` (a plain name, as for [`create_database`]) on the
/// server of `server_url`, closing what is still connected to it.
pub async fn drop_database(server_url: &str, name: &str) -> Result<(), sqlx::Error> {
    assert!(is_plain_name(name), "not a plain database name: {name:?}");
    let mut conn = PgConnection::connect(server_url).await?;
    let dropped = sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
    let _ = conn.close().await;
    dropped.map(|_| ())
}

/// `{prefix}_` and eight random hex digits: a database name no other run uses.
pub fn unique_name(prefix: &str) -> String {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &unique[..8])
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Runs `cmd` to completion and returns its stdout; panics with `what` and
/// the command's stderr when it cannot run or exits non-zero.
pub fn run_ok(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A `sqlite:` URL for a database file `roster.db` inside `dir` (created if missing).
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("roster.db").display())
}

/// Polls `condition` every few milliseconds until it returns `Some`, or
/// panics with `what` after `deadline`. For tests that wait on a state
/// instead of sleeping.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = condition().await {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn test_database_name(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(30)
        .collect();
    unique_name(&format!("roster_test_{clean}"))
}

async fn connect_admin(server: &PgServer) -> PgConnection {
    PgConnection::connect(server.url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{NO_POSTGRES}\ncannot connect to {}: {e}",
                redact(server.url())
            )
        })
}

/// Test databases left behind by earlier runs pile up on a long-lived server
/// (no hook runs at process exit; one `cargo test --workspace` leaves about
/// a thousand, ~9 GB). Drops those created more than 20 minutes ago — far
/// longer than any test holds one, and the whole suite runs in minutes; a
/// database still in use makes `DROP` fail, which is ignored.
async fn drop_stale_test_databases(server: &PgServer) {
    let mut conn = connect_admin(server).await;
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database \
         WHERE datname LIKE 'roster\\_test\\_%' \
           AND (pg_stat_file('base/' || oid || '/PG_VERSION', true)).modification \
               < now() - interval '20 minutes'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    for name in stale {
        if is_plain_name(&name) {
            let drop = format!("DROP DATABASE IF EXISTS \"{name}\"");
            let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut conn).await;
        }
    }
    let _ = conn.close().await;
}

async fn wait_until_accepting(url: &str) {
    let until = Instant::now() + STARTUP_DEADLINE;
    loop {
        match PgConnection::connect(url).await {
            Ok(conn) => {
                let _ = conn.close().await;
                return;
            }
            Err(e) if Instant::now() >= until => {
                panic!("the throwaway PostgreSQL cluster did not accept connections: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Runs `initdb` into a temp dir and starts the cluster under a watchdog.
/// Returns the base URL.
fn start_throwaway_cluster() -> String {
    owned::start_cluster().url()
}

/// The `postgres` options of every cluster the testkit starts.
fn server_options(port: u16, root: &Path) -> String {
    format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=on -c max_connections=300",
        root.display()
    )
}

/// Starts the cluster in a `sh` that outlives nothing: it stops the cluster
/// and deletes `root` as soon as this process is gone.
#[expect(
    clippy::zombie_processes,
    reason = "the watchdog must outlive this process; it is never waited for"
)]
fn spawn_watchdog(bin: &Path, root: &Path, data: &Path, port: u16, run_as: Option<&str>) {
    let pg_ctl = bin.join("pg_ctl");
    let as_user = match run_as {
        Some(user) => format!("runuser -u {user} --"),
        None => String::new(),
    };
    let opts = server_options(port, root);
    let script = format!(
        r#"{as_user} "{pg_ctl}" -D "{data}" -l "{root}/log" -w -t 60 -o "{opts}" start >/dev/null 2>&1
while [ -d /proc/{parent} ]; do sleep 1; done
{as_user} "{pg_ctl}" -D "{data}" -m immediate -w stop >/dev/null 2>&1
rm -rf "{root}""#,
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        root = root.display(),
        parent = std::process::id(),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the PostgreSQL watchdog shell: {e}"));
}

fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// `initdb` and `pg_ctl` on `PATH`, else the newest `/usr/lib/postgresql/*/bin`.
fn find_server_binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = on_path.into_iter().find(|d| has_both(d)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a process that
/// must be told its port (or come back on it after a restart).
///
/// Nothing holds the port until the process binds it, so the port is drawn
/// at random from *below* the kernel's ephemeral range: a port from
/// `bind(":0")` would be one the kernel hands out next to every outgoing
/// connection and every other `:0` listener of the tests running alongside,
/// and a test once reached another test's server that had taken its
/// released port. Below that range only other `free_port` callers compete.
pub fn free_port() -> u16 {
    let (low, high) = below_ephemeral_range();
    let span = u128::from(high - low);
    for _ in 0..200 {
        let offset = uuid::Uuid::new_v4().as_u128() % span;
        let port = low + u16::try_from(offset).expect("offset below the span");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free TCP port on 127.0.0.1")
}

/// `[low, high)`: up to 12,000 ports just below the kernel's ephemeral port
/// range (Linux default 32768–60999) and above the well-known ones.
fn below_ephemeral_range() -> (u16, u16) {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_start.max(2048);
    (high.saturating_sub(12_000).max(1024), high)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The `postgres` system user if there is one (packages create it), else `nobody`.
fn unprivileged_user() -> String {
    let exists = |name: &str| {
        Command::new("id")
            .arg(name)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ["postgres", "nobody"]
        .into_iter()
        .find(|u| exists(u))
        .unwrap_or_else(|| {
            panic!("{NO_POSTGRES}\nrunning as root and no unprivileged user to run PostgreSQL as")
        })
        .to_string()
}

fn chown(dir: &Path, user: &str) {
    let ok = Command::new("chown")
        .arg(user)
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot hand {} to user {user}", dir.display());
}

/// Replaces the database name of a `postgres://` URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let scheme_end = without_query.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match without_query[scheme_end..].find('/') {
        Some(i) => &without_query[..scheme_end + i],
        None => without_query,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_come_from_below_the_ephemeral_range_and_are_bindable() {
        let (low, high) = below_ephemeral_range();
        assert!(1024 <= low && low < high, "{low}..{high}");
        let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
        for &port in &ports {
            assert!((low..high).contains(&port), "{port} not in {low}..{high}");
            TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert!(distinct.len() > 1, "always the same port: {ports:?}");
    }

    #[test]
    fn database_names_are_safe_identifiers() {
        let name = test_database_name("My-Test \"; DROP");
        assert!(name.starts_with("roster_test_my_test____drop_"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }

    #[tokio::test]
    async fn fresh_databases_are_distinct_and_usable() {
        let a = fresh_database("testkit").await;
        let b = fresh_database("testkit").await;
        assert_ne!(a, b);
        for url in [a, b] {
            let mut conn = PgConnection::connect(&url)
                .await
                .expect("connect to fresh database");
            let one: i32 = sqlx::query_scalar("SELECT 1")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(one, 1);
            let tables: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(tables, 0, "a fresh database is empty");
        }
    }

    #[tokio::test]
    async fn eventually_returns_the_value() {
        let mut n = 0;
        let v = eventually("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            let v = n;
            async move { (v >= 3).then_some(v) }
        })
        .await;
        assert_eq!(v, 3);
    }
}
