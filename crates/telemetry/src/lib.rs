//! Logs, traces and metrics for every Roster process, set up in one place.
//!
//! - [`init`] installs the tracing subscriber (text or JSON lines, with trace
//!   ids) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, an OTLP exporter.
//! - [`propagation`] carries the W3C trace context from the gateway to the
//!   directory service in gRPC metadata, so one trace spans both.
//! - [`metrics`] is the Prometheus registry; [`metrics::router`] serves it
//!   (on its own port, through the gateway's accept loop).

pub mod log_writer;
pub mod metrics;
pub mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with span fields and the trace id.
    Json,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {0:?}: {1}")]
    Filter(String, String),
    #[error("cannot set up the OTLP exporter for {0}: {1}")]
    Otlp(String, String),
    #[error("cannot install the logger: {0}")]
    Install(String),
    #[error("cannot start the log writer thread: {0}")]
    Logs(std::io::Error),
}

/// Flushes the logs and stops trace export when dropped (call
/// [`Telemetry::shutdown`] explicitly in async code to avoid blocking a
/// runtime thread).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    logs: log_writer::LogWriter,
}

impl Telemetry {
    /// Flushes pending spans and log lines and stops the exporter.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
        self.logs.flush();
    }
}

/// Installs the global subscriber. Must run inside a Tokio runtime when OTLP
/// export is configured (the exporter's gRPC channel needs the reactor).
pub fn init(
    format: LogFormat,
    filter: &str,
    service_name: &str,
) -> Result<Telemetry, TelemetryError> {
    let env_filter = EnvFilter::try_new(filter)
        .map_err(|e| TelemetryError::Filter(filter.into(), e.to_string()))?;
    let provider = otlp_provider(service_name)?;
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("roster"))
            .boxed()
    });
    let ansi = colours(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let logs = log_writer::LogWriter::spawn(std::io::stderr()).map_err(TelemetryError::Logs)?;
    let fmt_layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(logs.clone())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(logs.clone())
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(env_filter)
        .with(otel_layer)
        .with(fmt_layer)
        .try_init()
        .map_err(|e| TelemetryError::Install(e.to_string()))?;
    propagation::install();
    Ok(Telemetry { provider, logs })
}

/// Whether text logs carry ANSI colours: only on a terminal, and not when
/// `NO_COLOR` is set (<https://no-color.org>). Logs collected from a pipe
/// (a container's stderr, systemd's journal) stay plain text.
fn colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// An OTLP/gRPC span exporter when the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) variable is set.
fn otlp_provider(service_name: &str) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .ok()
        .filter(|e| !e.trim().is_empty());
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|e| TelemetryError::Otlp(endpoint.clone(), e.to_string()))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service_name.to_string());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    Ok(Some(provider))
}

#[cfg(test)]
mod tests {
    use super::colours;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(!colours(false, None), "a pipe gets plain text");
        assert!(!colours(true, Some("1".as_ref())));
        assert!(
            colours(true, Some("".as_ref())),
            "an empty NO_COLOR is unset"
        );
    }
}
