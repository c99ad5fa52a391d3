//! One scenario's world: its own database, the server under test in its own
//! process, and the PostgreSQL settings to report.

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use roster_proto::directory::WatchChangesRequest;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;

use crate::cli::BenchArgs;
use crate::cpu::CpuMeter;
use crate::db::{BenchDatabase, PgSettings};
use crate::report::Report;
use crate::scim::ScimClient;
use crate::server::ServerProcess;

/// How long [`Env::settle`] waits for the server to publish what was seeded.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A fresh database with a running server on it.
pub struct Env {
    pub database: BenchDatabase,
    pub server: ServerProcess,
    pub settings: PgSettings,
    keep_database: bool,
}

impl Env {
    /// Creates the database and starts the server (which migrates it).
    pub async fn start(args: &BenchArgs) -> anyhow::Result<Self> {
        let database = BenchDatabase::create(&args.database_url).await?;
        let settings = PgSettings::read(&database.url).await?;
        let server = match ServerProcess::start(&database.url, args).await {
            Ok(s) => s,
            Err(e) => {
                let _ = database.drop_database().await;
                return Err(e);
            }
        };
        eprintln!(
            "[{}] database {}, server at {}",
            crate::elapsed_tag(),
            database.name,
            server.http_root
        );
        Ok(Self {
            database,
            server,
            settings,
            keep_database: args.keep_database,
        })
    }

    /// Runs `work` on a fresh environment, then tears the environment down
    /// whatever the outcome (a failed teardown wins over the work's result).
    pub async fn with<T>(
        args: &BenchArgs,
        work: impl AsyncFnOnce(&Env) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let env = Env::start(args).await?;
        let result = work(&env).await;
        env.finish().await?;
        result
    }

    /// Waits until the server has published every change committed so far.
    ///
    /// Seeding writes through the bench's own store, so the server's change
    /// hub reads those changes back from the log as another replica's
    /// writes; a scenario measured while it does would be charged for that
    /// catch-up (in production a server publishes its own writes from their
    /// commits). A watch from just before the newest revision gets its
    /// first event once the hub has published that far.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let newest = self.database.newest_revision().await?;
        if newest == 0 {
            return Ok(());
        }
        let mut client = DirectoryServiceClient::new(self.server.channel().await?);
        let request = WatchChangesRequest {
            directory_id: String::new(),
            kinds: Vec::new(),
            start: Some(Start::AfterRevision(newest - 1)),
        };
        let mut stream = client
            .watch_changes(request)
            .await
            .context("cannot open WatchChanges")?
            .into_inner();
        let caught_up = async {
            while let Some(message) = stream.next().await {
                if message?.revision >= newest {
                    return Ok(());
                }
            }
            bail!("the watch stream ended before revision {newest}")
        };
        tokio::time::timeout(SETTLE_TIMEOUT, caught_up)
            .await
            .with_context(|| format!("revision {newest} not published within {SETTLE_TIMEOUT:?}"))?
    }

    /// An empty report carrying this environment's settings.
    pub fn report(&self, scenario: &str) -> Report {
        Report::new(scenario, self.settings.clone())
    }

    /// A meter of the CPU the server's processes and the database use.
    pub fn cpu_meter(&self) -> CpuMeter {
        CpuMeter::new(self.server.pids(), &self.database.url)
    }

    /// Creates a directory and a SCIM client for it.
    pub async fn directory(
        &self,
        name: &str,
        connections: usize,
    ) -> anyhow::Result<(String, ScimClient)> {
        let (id, token) = self.server.create_directory(name).await?;
        let client = ScimClient::new(&self.server.http_root, &id, &token, connections)?;
        Ok((id, client))
    }

    /// Stops the server and drops the database (unless asked to keep it).
    pub async fn finish(self) -> anyhow::Result<()> {
        self.server.stop().await;
        if self.keep_database {
            eprintln!(
                "kept database {} ({})",
                self.database.name,
                crate::db::redact(&self.database.url)
            );
            self.database.keep();
            return Ok(());
        }
        self.database.drop_database().await
    }
}
