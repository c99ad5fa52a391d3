//! One scenario's world: its own database, the server under test in its own
//! process, and the PostgreSQL settings to report.

use crate::cli::BenchArgs;
use crate::cpu::CpuMeter;
use crate::db::{BenchDatabase, PgSettings};
use crate::report::Report;
use crate::scim::ScimClient;
use crate::server::ServerProcess;

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
