//! The one place that builds the tracing subscriber.

use tracing_subscriber::EnvFilter;

use crate::config::{LogArgs, LogFormat};

/// Installs the global subscriber: text or JSON lines on stderr.
pub fn init(args: &LogArgs, quiet: bool) -> anyhow::Result<()> {
    let directive = if quiet && args.log == "info" { "warn" } else { args.log.as_str() };
    let filter = EnvFilter::try_new(directive)
        .map_err(|e| anyhow::anyhow!("invalid log filter {directive:?}: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
