//! The server under test, in its own process so that its CPU time and RSS
//! are its own: the bench re-executes itself with the hidden `__serve`
//! subcommand, which wires the directory service and the gateway exactly as
//! `roster serve` does (see `src/cli/serve.rs` of the root package): the
//! gateway calls the directory service in its process, or with
//! `--grpc-over-tcp` over loopback TCP, as a `roster gateway` calls a
//! `roster directory`; `--split-processes` runs those two as two processes.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::{
    CreateDirectoryRequest, CreateTokenRequest, DeprovisionPolicy, ProviderKind,
};
use roster_store::Store;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use crate::cli::{BenchArgs, Role, ServeArgs};

/// The tracing target of the gateway's access log.
const ACCESS_LOG_TARGET: &str = "roster_gateway::access";

/// First word of the line the child prints once it accepts requests.
const READY: &str = "READY";
/// How long the child may take to migrate and start listening.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// Child side: runs the directory service and the gateway until stdin is
/// closed (the parent died or dropped its handle) so no server outlives
/// its bench.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // As `roster serve` logs by default: text on stderr.
    let _telemetry = match &args.log {
        Some(filter) => Some(roster_telemetry::init(
            roster_telemetry::LogFormat::Text,
            filter,
            "roster",
        )?),
        None => None,
    };
    let http = listen(args.http_addr).context("cannot bind the HTTP address")?;
    if args.role == Role::Gateway {
        let endpoint = args
            .directory_endpoint
            .context("--role gateway needs --directory-endpoint")?;
        let config = roster_gateway::GatewayConfig {
            public_url: format!("http://{}", http.local_addr()?),
            directory_endpoint: endpoint.clone(),
            activity_log: args.activity_log,
            ..Default::default()
        };
        let state = roster_gateway::AppState::new(config)?;
        let addr = http.local_addr()?;
        let gateway = tokio::spawn(roster_gateway::serve_state(
            state,
            http,
            std::future::pending(),
        ));
        let grpc = endpoint.trim_start_matches("http://");
        println!("{READY} http={addr} grpc={grpc}");
        return tokio::select! {
            r = gateway => bail!("gateway stopped: {:?}", r?.err()),
            () = stdin_closed() => Ok(()),
        };
    }
    let store =
        roster_store::postgres::PgStore::connect(&args.database_url, args.db_max_connections)
            .await
            .map_err(|e| anyhow!("cannot connect to PostgreSQL: {e}"))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow!("cannot migrate: {e}"))?;
    store
        .warm_up(args.db_max_connections)
        .await
        .map_err(|e| anyhow!("cannot open the pool's connections: {e}"))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let grpc = listen(args.grpc_addr).context("cannot bind the gRPC address")?;
    let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
    let endpoint = format!("http://{grpc_addr}");
    let gateway_config = roster_gateway::GatewayConfig {
        public_url: format!("http://{http_addr}"),
        directory_endpoint: endpoint,
        activity_log: args.activity_log,
        ..Default::default()
    };
    let mut directory_config = roster_directory::DirectoryConfig::default();
    if let Some(buffer) = args.watch_buffer {
        directory_config.watch_buffer = buffer;
    }
    if let Some(key) = &args.webhook_key {
        let key = roster_webhook::SealingKey::parse(key)?;
        directory_config.webhooks = roster_directory::webhooks::WebhookConfig {
            sealing_key: Some(Arc::new(key)),
            // The bench's receivers listen on loopback over plain HTTP.
            allow_http: true,
            allow_private: true,
            scan_interval: Duration::from_millis(200),
            ..Default::default()
        };
    }
    let directory = roster_directory::Directory::new(store, directory_config)?;
    // As in `roster serve`: the gateway calls the directory service directly.
    let (direct, in_process) = (directory.direct_service(), directory.in_process());
    let directory = tokio::spawn(directory.serve(grpc, std::future::pending()));
    if args.role == Role::Directory {
        drop(http);
        println!("{READY} http=- grpc={grpc_addr}");
        return tokio::select! {
            r = directory => bail!("directory service stopped: {:?}", r?.err()),
            () = stdin_closed() => Ok(()),
        };
    }
    let state = if args.grpc_over_tcp {
        roster_gateway::AppState::new(gateway_config)?
    } else {
        roster_gateway::AppState::with_direct(gateway_config, direct, in_process)?
    };
    let gateway = tokio::spawn(roster_gateway::serve_state(
        state,
        http,
        std::future::pending(),
    ));
    println!("{READY} http={http_addr} grpc={grpc_addr}");
    tokio::select! {
        r = directory => bail!("directory service stopped: {:?}", r?.err()),
        r = gateway => bail!("gateway stopped: {:?}", r?.err()),
        () = stdin_closed() => Ok(()),
    }
}

/// A listener on `addr` (the servers set TCP_NODELAY on what they accept).
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Parent side: the running server process (two with `--split-processes`:
/// the directory service, then the gateway) and where it listens.
pub struct ServerProcess {
    children: Vec<Child>,
    /// Gateway root, e.g. `http://127.0.0.1:41234`.
    pub http_root: String,
    /// Directory service endpoint, e.g. `http://127.0.0.1:41235`.
    pub grpc_endpoint: String,
}

impl ServerProcess {
    /// Starts `<this executable> __serve` on `database_url` (with `split`,
    /// one for the directory service and one for the gateway) and waits
    /// until it listens.
    pub async fn start(database_url: &str, args: &BenchArgs) -> anyhow::Result<Self> {
        let mut command = vec!["--database-url".to_owned(), database_url.to_owned()];
        command.extend([
            "--db-max-connections".into(),
            args.server_db_connections.to_string(),
        ]);
        if args.grpc_over_tcp {
            command.push("--grpc-over-tcp".into());
        }
        if let Some(buffer) = args.server_watch_buffer {
            command.extend(["--watch-buffer".into(), buffer.to_string()]);
        }
        command.extend(["--activity-log".into(), args.activity_log.to_string()]);
        if let Some(key) = &args.webhook_key {
            command.extend(["--webhook-key".into(), key.clone()]);
        }
        if args.server_log != "off" {
            command.extend(["--log".into(), args.server_log.clone()]);
        }
        let workers = args.server_worker_threads;
        if !args.split_processes {
            let (child, http, grpc) = spawn_serve(&command, workers).await?;
            return Ok(Self {
                children: vec![child],
                http_root: format!("http://{http}"),
                grpc_endpoint: format!("http://{grpc}"),
            });
        }
        let mut directory = command.clone();
        directory.extend(["--role".into(), "directory".into()]);
        let (directory, _, grpc) = spawn_serve(&directory, workers).await?;
        let grpc_endpoint = format!("http://{grpc}");
        command.extend(["--role".into(), "gateway".into()]);
        command.extend(["--directory-endpoint".into(), grpc_endpoint.clone()]);
        let (gateway, http, _) = spawn_serve(&command, workers).await?;
        Ok(Self {
            children: vec![directory, gateway],
            http_root: format!("http://{http}"),
            grpc_endpoint,
        })
    }

    /// Resident set size of the server (both processes when split), in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        self.children
            .iter()
            .map(|c| rss_of(c.id().context("the server process has exited")?))
            .sum()
    }

    /// Process ids of the server.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// A gRPC channel to the directory service.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Channel::from_shared(self.grpc_endpoint.clone())?
            .connect()
            .await
            .context("cannot connect to the directory service")
    }

    /// Creates a directory and a bearer token for it; returns (id, secret).
    pub async fn create_directory(&self, name: &str) -> anyhow::Result<(String, String)> {
        let mut admin = AdminServiceClient::new(self.channel().await?);
        let created = admin
            .create_directory(CreateDirectoryRequest {
                name: name.to_owned(),
                organization: "bench".into(),
                provider: ProviderKind::Generic as i32,
                deprovision_policy: DeprovisionPolicy::Delete as i32,
                attribute_mappings: vec![],
            })
            .await?
            .into_inner();
        let id = created
            .directory
            .context("no directory in the response")?
            .id;
        let token = admin
            .create_token(CreateTokenRequest {
                directory_id: id.clone(),
                name: "bench".into(),
            })
            .await?
            .into_inner();
        Ok((id, token.secret))
    }

    /// Stops the server (the gateway first) and waits for it to exit.
    pub async fn stop(mut self) {
        while let Some(mut child) = self.children.pop() {
            drop(child.stdin.take());
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// Starts `<this executable> __serve <args>` (with `workers` tokio worker
/// threads, if given); returns it and the HTTP and gRPC addresses its ready
/// line names.
async fn spawn_serve(
    args: &[String],
    workers: Option<usize>,
) -> anyhow::Result<(Child, String, String)> {
    let exe = std::env::current_exe().context("cannot find the bench executable")?;
    let mut command = Command::new(exe);
    if let Some(workers) = workers {
        command.env("TOKIO_WORKER_THREADS", workers.to_string());
    }
    let mut child = command
        .arg("__serve")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the server process")?;
    let stderr = child.stderr.take().context("server stderr")?;
    tokio::spawn(show_all_but_access_log(stderr));
    let stdout = child.stdout.take().context("server stdout")?;
    let line = tokio::time::timeout(START_DEADLINE, first_ready_line(stdout))
        .await
        .map_err(|_| anyhow!("the server process did not start within {START_DEADLINE:?}"))??;
    let (http, grpc) = parse_ready(&line)?;
    Ok((child, http, grpc))
}

/// Reads the server's log as a container runtime would, and shows every
/// line but the access log's (one per request).
async fn show_all_but_access_log(stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if !line.contains(ACCESS_LOG_TARGET) {
            eprintln!("{line}");
        }
    }
}

async fn first_ready_line(stdout: tokio::process::ChildStdout) -> anyhow::Result<String> {
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if line.starts_with(READY) {
            return Ok(line);
        }
    }
    bail!("the server process exited before listening (see its stderr above)")
}

fn parse_ready(line: &str) -> anyhow::Result<(String, String)> {
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("malformed ready line {line:?}"))
    };
    Ok((field("http=")?, field("grpc=")?))
}

/// `VmRSS` of a process from `/proc/<pid>/status`, in bytes.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    memory_of(pid, "VmRSS")
}

/// A memory field (`VmRSS`, `VmHWM`: the peak RSS) of a process from
/// `/proc/<pid>/status`, in bytes.
pub fn memory_of(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("cannot read /proc status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no {field} in /proc status"))?;
    Ok(kib * 1024)
}
