//! Runs the real `roster` binary for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot send SIGTERM");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `roster` binary built for this test run.
pub fn roster() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roster"));
    // The embedded default must not pick up the CI's PostgreSQL.
    cmd.env_remove("DATABASE_URL");
    cmd
}

/// A fresh, empty data directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "roster-test-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Starts `roster serve` on the embedded SQLite store in `data_dir`.
pub fn serve(data_dir: &Path) -> Served {
    let mut cmd = roster();
    cmd.arg("serve").arg("--data-dir").arg(data_dir);
    spawn_serve(cmd)
}

/// Starts `roster serve` on a fresh PostgreSQL database (from the testkit).
pub async fn serve_postgres(prefix: &str) -> Served {
    serve_database(&roster_testkit::fresh_database(prefix).await, &[])
}

/// Starts `roster serve` on the PostgreSQL database at `url`, with extra
/// environment variables.
pub fn serve_database(url: &str, env: &[(&str, &str)]) -> Served {
    let mut cmd = roster();
    cmd.arg("serve").arg("--database-url").arg(url);
    cmd.envs(env.iter().copied());
    spawn_serve(cmd)
}

/// A directory of a given provider kind with its own token, on a running server.
pub struct TestDirectory {
    pub id: String,
    pub base_url: String,
    pub token: String,
}

impl Served {
    /// Creates a directory with `roster admin` (as an operator would) and a token for it.
    pub fn directory(&self, provider: &str, deprovision_policy: &str) -> TestDirectory {
        let endpoint = format!("http://{}", self.grpc);
        let created = admin(
            &endpoint,
            &[
                "create-directory",
                "--name",
                provider,
                "--provider",
                provider,
                "--deprovision-policy",
                deprovision_policy,
            ],
        );
        let id = created["id"].as_str().expect("directory id").to_string();
        let token = admin(&endpoint, &["create-token", &id]);
        let token = token["secret"].as_str().expect("token secret").to_string();
        let root = self.base_url.rsplit_once("/scim/v2/").expect("base url").0;
        TestDirectory {
            base_url: format!("{root}/scim/v2/{id}"),
            id,
            token,
        }
    }
}

/// Runs `roster admin <args>` against `endpoint` and parses its JSON output.
pub fn admin(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let out = roster()
        .args(["admin", "--endpoint", endpoint])
        .args(args)
        .output()
        .expect("roster admin");
    assert!(
        out.status.success(),
        "roster admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("admin JSON")
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
        banner
            .iter()
            .find_map(|l| {
                l.trim_start()
                    .strip_prefix(label)
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("banner has no {label:?}: {banner:?}"))
    };
    let base_url = field("SCIM base URL:");
    let token = Some(field("Bearer token:")).filter(|t| t.starts_with("rst_"));
    let directory_id = field("Directory id:");
    let grpc = field("gRPC:")
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let metrics_url = banner.iter().find_map(|l| {
        l.trim_start()
            .strip_prefix("Metrics:")
            .map(|v| v.trim().to_string())
    });
    Served {
        child,
        base_url,
        token,
        directory_id,
        grpc,
        banner,
        log_path,
        metrics_url,
    }
}

/// A running `roster directory` process (one directory-service pod).
pub struct DirectoryProcess {
    pub child: Child,
    /// `host:port` of its gRPC listener.
    pub grpc: std::net::SocketAddr,
    /// `http://host:port/metrics` of its own Prometheus endpoint.
    pub metrics_url: String,
    pub log_path: PathBuf,
}

impl Drop for DirectoryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
            ])
            .args(args);
        let (child, log_path) = spawn_logged(cmd);
        let grpc = wait_logged(&log_path, "directory service listening", "addr");
        let metrics = wait_logged(&log_path, "metrics listening", "addr");
        DirectoryProcess {
            child,
            grpc: grpc.parse().expect("gRPC address"),
            metrics_url: format!("http://{metrics}/metrics"),
            log_path,
        }
    }

    /// Its logs so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
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
    let log_path = temp_dir("process").join("roster.log");
    let child = cmd
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(&log_path).expect("log file"),
        ))
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
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["message"] == message)
            .and_then(|v| v["fields"][field].as_str().map(str::to_owned));
        if let Some(value) = found {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {message:?} log line; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
