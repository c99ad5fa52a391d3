use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use roster_proto::directory::Change;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};

use super::scim::{CONVERGE, Scim, http_client};

/// The `roster` binary of this build. Cargo builds a package's binaries
/// before its integration tests and puts them next to the `deps` folder
/// that holds the test executable; `CARGO_BIN_EXE_roster` (set by some
/// runners) wins when present.
pub fn roster_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_roster") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let binary = dir.join(format!("roster{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "no roster binary at {}: run the tests of the `roster` package with cargo",
        binary.display()
    );
    binary
}

/// A command running the `roster` binary.
pub fn roster() -> Command {
    let mut cmd = Command::new(roster_binary());
    // The embedded default must not pick up the CI's PostgreSQL.
    cmd.env_remove("DATABASE_URL");
    // Servers of tests running side by side would otherwise each open a
    // whole pool at start-up, more than PostgreSQL's 100 connections allow.
    cmd.env("ROSTER_DB_WARM_CONNECTIONS", "2");
    cmd
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "roster-test-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub use crate::free_port;

/// `http://host:port` for a gRPC address given with or without its scheme.
fn endpoint(grpc: &str) -> String {
    if grpc.contains("://") {
        grpc.to_string()
    } else {
        format!("http://{grpc}")
    }
}

/// Runs `roster admin <args>` against the directory service at `grpc`
/// (`host:port` or a URL) and parses its JSON output.
pub fn admin(grpc: &str, args: &[&str]) -> Value {
    admin_with_env(grpc, args, &[])
}

/// [`admin`] with extra environment variables.
pub fn admin_with_env(grpc: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = crate::run_ok(
        roster()
            .args(["admin", "--endpoint", &endpoint(grpc)])
            .args(args)
            .envs(env.iter().copied()),
        &format!("roster admin {args:?}"),
    );
    serde_json::from_slice(&out).expect("admin JSON")
}

/// `roster admin set-source <directory> --kind ldap` with `settings` (JSON)
/// and the bind password passed the way the docs say (an environment
/// variable, never the command line), plus `extra` arguments.
pub fn set_ldap_source(
    grpc: &str,
    directory: &str,
    settings: &str,
    password: &str,
    extra: &[&str],
) -> Value {
    let mut args = vec![
        "set-source",
        directory,
        "--kind",
        "ldap",
        "--settings",
        settings,
        "--credentials-env",
        "LDAP_BIND_PASSWORD",
    ];
    args.extend_from_slice(extra);
    admin_with_env(grpc, &args, &[("LDAP_BIND_PASSWORD", password)])
}

/// A directory named `name` and a token for it, created through `roster
/// admin` at `grpc`: `(directory id, token secret)`.
pub fn create_directory(grpc: &str, name: &str, env: &[(&str, &str)]) -> (String, String) {
    create_directory_with(grpc, &["--name", name], env)
}

/// [`create_directory`] with all the arguments of `create-directory`.
pub fn create_directory_with(grpc: &str, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let args: Vec<&str> = ["create-directory"].iter().chain(args).copied().collect();
    let created = admin_with_env(grpc, &args, env);
    let id = created["id"].as_str().expect("directory id").to_string();
    let token = admin_with_env(grpc, &["create-token", &id], env);
    let secret = token["secret"].as_str().expect("token secret").to_string();
    (id, secret)
}

/// A running `roster serve` and what its banner said.
pub struct Served {
    pub child: Child,
    pub base_url: String,
    pub token: Option<String>,
    pub directory_id: String,
    pub grpc: String,
    pub banner: Vec<String>,
    /// The server's stderr (its logs).
    pub log_path: PathBuf,
    /// `http://host:port/metrics`, when the banner printed one.
    pub metrics_url: Option<String>,
    /// The PostgreSQL database it serves, if not the embedded store.
    pub database_url: Option<String>,
}

impl Served {
    /// The gateway's root URL (`http://host:port`).
    pub fn http_root(&self) -> String {
        self.base_url
            .rsplit_once("/scim/v2/")
            .map(|(root, _)| root.to_string())
            .unwrap_or_default()
    }

    /// The server's logs so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM (as Kubernetes does on pod termination).
    pub fn terminate(&self) {
        signal(&self.child, "-TERM");
    }

    /// A SCIM client of the directory the banner announced, with its token.
    pub fn scim(&self) -> Scim {
        Scim::new(&self.base_url, self.token.as_deref().expect("banner token"))
    }

    /// Creates a directory of `provider` with `roster admin` (as an operator
    /// would) and a token for it; returns a SCIM client of it.
    pub fn directory(&self, provider: &str, deprovision_policy: &str) -> Scim {
        let (id, token) = create_directory_with(
            &self.grpc,
            &[
                "--name",
                provider,
                "--provider",
                provider,
                "--deprovision-policy",
                deprovision_policy,
            ],
            &[],
        );
        Scim::new(&format!("{}/scim/v2/{id}", self.http_root()), &token)
    }
}

impl Served {
    /// Reads `directory`'s change stream from the start until `done` holds
    /// (see [`super::watch::watch_until`]).
    pub async fn watch_until(
        &self,
        directory: &Scim,
        done: impl Fn(&[Change]) -> bool,
    ) -> Vec<Change> {
        super::watch::watch_until(&self.grpc, &directory.directory_id, done).await
    }

    /// Waits for exactly the event kinds `expected` of each user or group
    /// of `directory` (see [`super::watch::watch_sequences`]).
    pub async fn watch_sequences(
        &self,
        directory: &Scim,
        of: super::watch::Of,
        expected: &[(&str, &[&str])],
    ) -> Vec<Change> {
        super::watch::watch_sequences(&self.grpc, &directory.directory_id, of, expected).await
    }
}

/// An IdP replay's setup: `roster serve` on a fresh database, a directory
/// of `provider` with `deprovision_policy`, and a client of it that accepts
/// and sends `application/scim+json` (what every IdP asks for; a replay
/// adjusts the client to what its IdP sends).
pub async fn replay(provider: &str, deprovision_policy: &str) -> (Served, Scim) {
    let served = serve_postgres(&format!("idp_{provider}")).await;
    let idp = served
        .directory(provider, deprovision_policy)
        .with_headers(&[("accept", "application/scim+json")]);
    (served, idp)
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `roster serve` on the embedded SQLite store in `data_dir`.
pub fn serve(data_dir: &Path) -> Served {
    let mut cmd = roster();
    cmd.arg("serve").arg("--data-dir").arg(data_dir);
    spawn_serve(cmd)
}

/// Starts `roster serve` on a fresh PostgreSQL database.
pub async fn serve_postgres(prefix: &str) -> Served {
    serve_postgres_with(prefix, &[]).await
}

/// Starts `roster serve` on a fresh PostgreSQL database, with extra
/// environment variables.
pub async fn serve_postgres_with(prefix: &str, env: &[(&str, &str)]) -> Served {
    serve_database(&crate::fresh_database(prefix).await, env)
}

/// Starts `roster serve` on the PostgreSQL database at `url`, with extra
/// environment variables.
pub fn serve_database(url: &str, env: &[(&str, &str)]) -> Served {
    let mut cmd = roster();
    cmd.arg("serve").arg("--database-url").arg(url);
    cmd.envs(env.iter().copied());
    let mut served = spawn_serve(cmd);
    served.database_url = Some(url.to_string());
    served
}

fn spawn_serve(mut cmd: Command) -> Served {
    let log_path = temp_dir("log").join("roster.log");
    let mut child = cmd
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(&log_path).expect("log file"),
        ))
        .spawn()
        .expect("spawn roster serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("roster serve printed no complete banner; got {banner:?}; log:\n{log}")
            });
        let done = line.trim_start().starts_with("Store:");
        banner.push(line);
        if done {
            break;
        }
    }
    let field = |label: &str| {
        banner.iter().find_map(|l| {
            l.trim_start()
                .strip_prefix(label)
                .map(|v| v.trim().to_string())
        })
    };
    let required =
        |label: &str| field(label).unwrap_or_else(|| panic!("banner has no {label:?}: {banner:?}"));
    let base_url = required("SCIM base URL:");
    let token = Some(required("Bearer token:")).filter(|t| t.starts_with("rst_"));
    let directory_id = required("Directory id:");
    let grpc = required("gRPC:")
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let metrics_url = field("Metrics:");
    Served {
        child,
        base_url,
        token,
        directory_id,
        grpc,
        banner,
        log_path,
        metrics_url,
        database_url: None,
    }
}

fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot send {signal}");
}

/// A `roster` child process with its stderr captured to a file.
pub struct Process {
    pub child: Child,
    pub log_path: PathBuf,
}

impl Process {
    /// Starts `roster <args>` with `env`, logging to a fresh file.
    pub fn spawn(name: &str, args: &[String], env: &[(&str, &str)]) -> Self {
        let mut cmd = roster();
        cmd.args(args).envs(env.iter().copied());
        Self::start(name, cmd)
    }

    /// Starts `cmd` (stdout discarded), logging to a fresh file.
    pub fn start(name: &str, cmd: Command) -> Self {
        let (child, log_path) = spawn_to_log(name, cmd);
        Self { child, log_path }
    }

    /// The process's logs so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `kill -9`: no drain, no goodbye. Waits until the process is gone.
    pub fn kill9(&mut self) {
        signal(&self.child, "-KILL");
        let _ = self.child.wait();
    }

    /// Waits for the JSON log line whose message is `message` and returns its `field`.
    pub fn wait_logged(&self, message: &str, field: &str) -> String {
        wait_logged(&self.log_path, message, field)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `roster directory` on `database_url`, listening on `127.0.0.1:port`.
pub fn spawn_directory(database_url: &str, port: u16, env: &[(&str, &str)]) -> Process {
    let args = [
        "directory",
        "--database-url",
        database_url,
        "--grpc-addr",
        &format!("127.0.0.1:{port}"),
        "--metrics-addr",
        "off",
        "--progress-interval-ms",
        "200",
    ];
    Process::spawn("directory", &args.map(str::to_string), env)
}

/// `roster gateway` on `127.0.0.1:http_port`, calling the directory service on `grpc_port`.
pub fn spawn_gateway(grpc_port: u16, http_port: u16, env: &[(&str, &str)]) -> Process {
    let args = [
        "gateway",
        "--directory-endpoint",
        &format!("http://127.0.0.1:{grpc_port}"),
        "--http-addr",
        &format!("127.0.0.1:{http_port}"),
        "--metrics-addr",
        "off",
    ];
    Process::spawn("gateway", &args.map(str::to_string), env)
}

/// A running `roster directory` process (one directory-service pod) on
/// port 0, with its own metrics endpoint.
pub struct DirectoryProcess {
    pub process: Process,
    /// `host:port` of its gRPC listener.
    pub grpc: SocketAddr,
    /// `http://host:port/metrics` of its own Prometheus endpoint.
    pub metrics_url: String,
}

impl DirectoryProcess {
    /// Starts `roster directory` on the PostgreSQL database at `url` with
    /// extra arguments, and waits until it logged its listening addresses.
    pub fn start(url: &str, args: &[&str]) -> DirectoryProcess {
        let mut cmd = roster();
        cmd.args(["directory", "--database-url", url])
            .args([
                "--grpc-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(args);
        let process = Process::start("directory", cmd);
        let grpc = process.wait_logged("directory service listening", "addr");
        let metrics = process.wait_logged("metrics listening", "addr");
        DirectoryProcess {
            process,
            grpc: grpc.parse().expect("gRPC address"),
            metrics_url: format!("http://{metrics}/metrics"),
        }
    }

    /// Its logs so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// DirectoryService calls it has answered, by its own metrics.
    pub async fn directory_calls(&self, http: &reqwest::Client) -> f64 {
        let text = http
            .get(&self.metrics_url)
            .send()
            .await
            .expect("metrics endpoint")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| {
                l.starts_with(
                    "roster_grpc_requests_total{method=\"/roster.directory.v1.DirectoryService/",
                )
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Runs `cmd` with JSON logs to a file; returns the child and the file.
pub fn spawn_logged(mut cmd: Command) -> (Child, PathBuf) {
    cmd.args(["--log-format", "json"]);
    spawn_to_log("process", cmd)
}

fn spawn_to_log(name: &str, mut cmd: Command) -> (Child, PathBuf) {
    let log_path = temp_dir(name).join("roster.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn roster");
    (child, log_path)
}

/// Waits for the JSON log line whose message is `message` and returns its
/// `field`.
pub fn wait_logged(log_path: &Path, message: &str, field: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        let found = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == message)
            .and_then(|v| v["fields"][field].as_str().map(str::to_owned));
        if let Some(value) = found {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {message:?} log line; log:\n{log}"
        );
        // Polls a file another process appends to; nothing to wait on instead.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a gRPC server accepts connections on `grpc` (`host:port`).
pub async fn wait_for_grpc(grpc: &str) {
    crate::eventually(
        "the directory service accepts connections",
        CONVERGE,
        || async { connect(grpc).await.ok().map(|_| ()) },
    )
    .await;
}

/// Waits until the gateway at `root` answers `/healthz`.
pub async fn wait_for_http(root: &str) {
    let http = http_client();
    crate::eventually("the gateway answers /healthz", CONVERGE, || async {
        let r = http.get(format!("{root}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

/// A gRPC channel to `grpc` (`host:port` or a URL), failing fast when
/// nothing listens.
pub async fn connect(grpc: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(endpoint(grpc))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
}
