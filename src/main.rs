//! The `roster` binary: `serve`, `gateway`, `directory`, `migrate`, `admin`, `watch`.

mod cli;
mod config;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use config::{Cli, Command};

/// jemalloc rather than glibc malloc: a SCIM call allocates many small JSON
/// and protobuf values, and glibc's malloc/free were ~19% of the server's
/// CPU under write load. mimalloc, used before, cost the server ~9 % more CPU
/// per webhook delivery than jemalloc, and no less on writes or lookups
/// (docs/performance.md, 2026-12-07).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        // Client subcommands print JSON on stdout; keep their logs quiet unless asked.
        let quiet = matches!(
            cli.command,
            Command::Admin(_) | Command::Watch(_) | Command::Verify(_)
        );
        let service = match &cli.command {
            Command::Gateway(_) => "roster-gateway",
            Command::Directory(_) => "roster-directory",
            _ => "roster",
        };
        let telemetry = telemetry::init(&cli.log, quiet, service)?;
        let result = match cli.command {
            Command::Serve(args) => cli::serve::serve(args).await,
            Command::Gateway(args) => cli::serve::gateway(args).await,
            Command::Directory(args) => cli::serve::directory(args).await,
            Command::Migrate(args) => cli::serve::migrate(args).await,
            Command::Admin(args) => cli::admin::run(args).await,
            Command::Watch(args) => cli::watch::run(args).await,
            Command::Verify(args) => cli::verify::run(args).await,
            Command::Mirror(args) => cli::mirror::run(args).await,
        };
        // Flush spans off the runtime threads.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Bad configuration ends with one clear sentence, not a backtrace.
fn fail(e: anyhow::Error) -> ExitCode {
    if e.downcast_ref::<cli::verify::Drift>().is_some() {
        return ExitCode::from(cli::verify::Drift::EXIT_STATUS);
    }
    eprintln!("roster: {e:#}");
    ExitCode::FAILURE
}
