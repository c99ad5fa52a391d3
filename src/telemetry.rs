//! Sets up logging/tracing for the binary (see `roster-telemetry`).

use crate::config::{LogArgs, LogFormat};

/// Installs the global subscriber; client subcommands stay quiet unless asked.
pub fn init(
    args: &LogArgs,
    quiet: bool,
    service: &str,
) -> anyhow::Result<roster_telemetry::Telemetry> {
    let filter = if quiet && args.log == "info" {
        "warn"
    } else {
        args.log.as_str()
    };
    let format = match args.log_format {
        LogFormat::Text => roster_telemetry::LogFormat::Text,
        LogFormat::Json => roster_telemetry::LogFormat::Json,
    };
    Ok(roster_telemetry::init(format, filter, service)?)
}
