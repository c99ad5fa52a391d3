//! `roster-bench`: Roster's benchmark suite. See `docs/performance.md`.
//!
//! ```sh
//! cargo run --release -p roster-bench -- onboarding --users 75000 --concurrency 16
//! ```

mod cli;
mod cpu;
mod db;
mod env;
mod load;
mod report;
mod scenarios;
mod scim;
mod seed;
mod server;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use clap::Parser;
use futures::FutureExt;

use crate::cli::{BenchArgs, Cli, Command};

/// The allocator of the `roster` binary, so that `__serve` runs as
/// `roster serve` does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Seconds since the bench started, for progress lines on stderr.
pub fn elapsed_tag() -> String {
    format!(
        "{:7.1}s",
        STARTED.get_or_init(Instant::now).elapsed().as_secs_f64()
    )
}

fn main() -> anyhow::Result<()> {
    STARTED.get_or_init(Instant::now);
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let name = cli.command.name();
    match cli.command {
        Command::Serve(args) => runtime.block_on(server::serve(args)),
        Command::Onboarding(args)
        | Command::Lookup(args)
        | Command::Churn(args)
        | Command::HotGroup(args)
        | Command::WatchLatency(args)
        | Command::Fanout(args)
        | Command::Limit(args)
        | Command::Webhooks(args)
        | Command::LdapSync(args)
        | Command::All(args) => runtime.block_on(bench(name, args)),
    }
}

async fn bench(name: &str, args: BenchArgs) -> anyhow::Result<()> {
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/bench/{name}.json")));
    // Whatever ends the scenario (an error, a panic, SIGINT or SIGTERM), the
    // databases it created are dropped below; they would otherwise stay on
    // the server (the server processes die with the bench, `kill_on_drop`).
    let scenario = std::panic::AssertUnwindSafe(scenarios::run(name, &args)).catch_unwind();
    let outcome = tokio::select! {
        finished = scenario => finished.map_err(|_| anyhow::anyhow!("the scenario panicked")),
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    let output = match outcome {
        Ok(Ok(output)) => output,
        Ok(Err(e)) | Err(e) => {
            for name in db::drop_live_databases().await {
                eprintln!("dropped database {name}");
            }
            return Err(e);
        }
    };
    report::write_json(&json, &output)
}

/// Resolves with the signal's name on SIGINT or SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
