//! Prometheus metrics of a Roster process, served on their own port.
//!
//! One process-wide registry (metrics are process state by nature); the
//! gateway records HTTP metrics through [`record_http`], the directory service
//! records gRPC metrics through [`GrpcMetricsLayer`] and sets the gauges.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/scim/v2/{directory_id}/Users/{id}`), never the raw path.
    pub route: String,
    pub status: u16,
}

/// Labels of HTTP latency histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// Labels of gRPC request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    /// `/package.Service/Method`.
    pub method: String,
    /// gRPC status code name (`OK`, `NOT_FOUND`, …).
    pub code: String,
}

/// Labels of gRPC latency histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

/// Labels of pool gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// `idle`, `in_use` or `max`.
    pub state: String,
}

/// Labels of the gateway's authentication metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why (`unknown_or_revoked_token`, `per_address`, …).
    pub reason: String,
}

/// Labels of the directory service's batched writers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriterLabels {
    /// `group_patches`, `user_creates` or `webhook_progress`.
    pub writer: String,
}

/// Labels of counters by outcome alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok` or `failed`.
    pub outcome: String,
}

/// Labels of webhook delivery counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `delivered`, `failed` (will retry), `gone` (410) or `dead_letter`.
    pub outcome: String,
}

/// Labels of per-endpoint webhook gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

/// Labels of a pulled directory's sync metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// `google`, `ldap` or `active_directory`.
    pub kind: String,
    pub directory: String,
}

/// Labels of sync runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncRunLabels {
    pub kind: String,
    pub directory: String,
    /// `ok`, `needs_confirmation`, or the error's cause (`source_unavailable`…).
    pub outcome: String,
}

/// Labels of the writes of syncs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncChangeLabels {
    pub kind: String,
    pub directory: String,
    /// `created`, `updated` or `removed`.
    pub change: String,
}

/// Every metric Roster exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub grpc_requests: Family<GrpcLabels, Counter>,
    pub grpc_duration: Family<MethodLabels, Histogram>,
    /// Open `WatchChanges` streams.
    pub watch_streams: Gauge,
    /// Newest stable revision of the change log.
    pub change_log_head: Gauge,
    /// Newest stable revision minus the lowest revision sent to an open stream.
    pub watch_lag: Gauge,
    /// Committed revisions not yet published to watchers.
    pub head_lag: Gauge,
    /// How long the oldest committed revision not yet published has waited.
    pub head_lag_seconds: Gauge<f64, AtomicU64>,
    /// Database pool connections by state.
    pub db_pool: Family<PoolLabels, Gauge>,
    /// Writes per transaction of the directory service's group commit.
    pub write_batch_size: Family<WriterLabels, Histogram>,
    /// Requests rejected by the per-directory rate limit.
    pub rate_limited: Counter,
    /// Gateway requests answered 401, by reason.
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Gateway requests refused with 429 before authentication, by limit.
    pub auth_throttled: Family<ReasonLabels, Counter>,
    /// Audit-trail entries the gateway dropped (queue full, or the directory
    /// service did not take a batch).
    pub activity_dropped: Counter,
    /// Connections the gateway opened to the directory service, by outcome
    /// (`ok`, `failed`).
    pub directory_dials: Family<OutcomeLabels, Counter>,
    /// Gateway calls sent a second time because the directory service had
    /// not processed them (GOAWAY, REFUSED_STREAM).
    pub directory_resent: Counter,
    /// `BatchListUsers` calls the gateway sent (keyed lookups gathered).
    pub directory_lookup_batches: Counter,
    /// Keyed lookups those calls carried.
    pub directory_batched_lookups: Counter,
    /// Webhook delivery attempts by outcome.
    pub webhook_deliveries: Family<WebhookLabels, Counter>,
    /// Webhook request latency (to the response's status).
    pub webhook_duration: Histogram,
    /// Revisions between the published head and an endpoint's cursor (the
    /// endpoints this replica delivers for).
    pub webhook_lag: Family<EndpointLabels, Gauge>,
    /// How long the event an endpoint is on has waited since it occurred.
    pub webhook_lag_seconds: Family<EndpointLabels, Gauge<f64, AtomicU64>>,
    /// Sync runs of pulled directories by outcome.
    pub sync_runs: Family<SyncRunLabels, Counter>,
    /// How long each sync run took.
    pub sync_duration: Family<SyncLabels, Histogram>,
    /// What sync runs wrote.
    pub sync_changes: Family<SyncChangeLabels, Counter>,
    /// When the last successful sync ended (Unix seconds).
    pub sync_last_success: Family<SyncLabels, Gauge<f64, AtomicU64>>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

/// A group-commit batch holds 1 to 128 writes.
fn batch_size_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 8,
    ))
}

/// Sync runs last from a fraction of a second to an hour on a first sync of
/// a large directory: 0.1 s … ~55 min.
fn sync_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.1, 2.0, 16,
    ))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("roster");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        let grpc_duration = Family::<MethodLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let watch_streams = Gauge::default();
        let change_log_head = Gauge::default();
        let watch_lag = Gauge::default();
        let head_lag = Gauge::default();
        let head_lag_seconds = Gauge::<f64, AtomicU64>::default();
        let db_pool = Family::<PoolLabels, Gauge>::default();
        let rate_limited = Counter::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let auth_throttled = Family::<ReasonLabels, Counter>::default();
        let activity_dropped = Counter::default();
        let directory_dials = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "gateway_directory_dials",
            "Connections the gateway opened to the directory service, by outcome",
            directory_dials.clone(),
        );
        let directory_resent = Counter::default();
        registry.register(
            "gateway_directory_resent",
            "Gateway calls sent again because the directory service had not processed them",
            directory_resent.clone(),
        );
        let directory_lookup_batches = Counter::default();
        registry.register(
            "gateway_directory_lookup_batches",
            "BatchListUsers calls the gateway sent, each carrying keyed lookups that arrived together",
            directory_lookup_batches.clone(),
        );
        let directory_batched_lookups = Counter::default();
        registry.register(
            "gateway_directory_batched_lookups",
            "Keyed lookups the gateway sent inside BatchListUsers calls",
            directory_batched_lookups.clone(),
        );
        registry.register(
            "gateway_activity_dropped",
            "Audit-trail entries of SCIM requests dropped (queue full or not recorded)",
            activity_dropped.clone(),
        );
        let write_batch_size = Family::<WriterLabels, Histogram>::new_with_constructor(
            batch_size_histogram as fn() -> Histogram,
        );
        registry.register(
            "write_batch_size",
            "Writes per transaction of the directory service's group commit, by writer",
            write_batch_size.clone(),
        );
        let webhook_deliveries = Family::<WebhookLabels, Counter>::default();
        let webhook_duration = latency_histogram();
        let webhook_lag = Family::<EndpointLabels, Gauge>::default();
        let webhook_lag_seconds = Family::<EndpointLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome",
            webhook_deliveries.clone(),
        );
        registry.register(
            "webhook_request_duration_seconds",
            "Webhook request latency",
            webhook_duration.clone(),
        );
        registry.register(
            "webhook_lag_revisions",
            "Published change-log head minus the endpoint's cursor",
            webhook_lag.clone(),
        );
        registry.register(
            "webhook_lag_seconds",
            "Age of the event the endpoint is being delivered",
            webhook_lag_seconds.clone(),
        );
        let sync_runs = Family::<SyncRunLabels, Counter>::default();
        let sync_duration = Family::<SyncLabels, Histogram>::new_with_constructor(
            sync_histogram as fn() -> Histogram,
        );
        let sync_changes = Family::<SyncChangeLabels, Counter>::default();
        let sync_last_success = Family::<SyncLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "sync_runs",
            "Syncs of pulled directories by source kind, directory and outcome",
            sync_runs.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Duration of syncs of pulled directories",
            sync_duration.clone(),
        );
        registry.register(
            "sync_changes",
            "Users and groups created, updated or removed by syncs of pulled directories",
            sync_changes.clone(),
        );
        registry.register(
            "sync_last_success_timestamp_seconds",
            "When the last successful sync of a pulled directory ended (Unix time)",
            sync_last_success.clone(),
        );
        registry.register(
            "http_requests",
            "SCIM HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "SCIM HTTP request latency",
            http_duration.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC requests by method and status code",
            grpc_requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC request latency (to first response)",
            grpc_duration.clone(),
        );
        registry.register(
            "watch_streams",
            "Open WatchChanges streams",
            watch_streams.clone(),
        );
        registry.register(
            "change_log_head_revision",
            "Newest stable change-log revision",
            change_log_head.clone(),
        );
        registry.register(
            "watch_lag_revisions",
            "Stable head minus the oldest revision sent to an open stream",
            watch_lag.clone(),
        );
        registry.register(
            "watch_head_lag_revisions",
            "Newest committed change-log revision minus the newest one published to watchers",
            head_lag.clone(),
        );
        registry.register(
            "watch_head_lag_seconds",
            "How long the oldest committed revision not yet published to watchers has waited",
            head_lag_seconds.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections by state",
            db_pool.clone(),
        );
        registry.register(
            "rate_limited_requests",
            "Requests rejected by the per-directory rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "gateway_auth_failures",
            "SCIM requests answered 401, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "gateway_auth_throttled",
            "SCIM requests refused before authentication (per-address failed-auth or global token-lookup limit)",
            auth_throttled.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            grpc_requests,
            grpc_duration,
            watch_streams,
            change_log_head,
            watch_lag,
            head_lag,
            head_lag_seconds,
            db_pool,
            write_batch_size,
            rate_limited,
            auth_failures,
            auth_throttled,
            activity_dropped,
            directory_dials,
            directory_resent,
            directory_lookup_batches,
            directory_batched_lookups,
            webhook_deliveries,
            webhook_duration,
            webhook_lag,
            webhook_lag_seconds,
            sync_runs,
            sync_duration,
            sync_changes,
            sync_last_success,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records the pool's connection counts.
    pub fn set_pool(&self, size: u32, idle: u32, max: u32) {
        let set = |state: &str, v: u32| {
            self.db_pool
                .get_or_create(&PoolLabels {
                    state: state.into(),
                })
                .set(i64::from(v));
        };
        set("idle", idle);
        set("in_use", size.saturating_sub(idle));
        set("max", max);
    }
}

impl Metrics {
    /// Counts one webhook attempt.
    pub fn webhook_attempt(&self, outcome: &str, seconds: f64) {
        self.webhook_deliveries
            .get_or_create(&WebhookLabels {
                outcome: outcome.into(),
            })
            .inc();
        self.webhook_duration.observe(seconds);
    }

    /// Sets an endpoint's lag gauges.
    pub fn webhook_lag(&self, endpoint: &str, revisions: i64, seconds: f64) {
        let labels = EndpointLabels {
            endpoint: endpoint.into(),
        };
        self.webhook_lag.get_or_create(&labels).set(revisions);
        self.webhook_lag_seconds.get_or_create(&labels).set(seconds);
    }
}

impl Metrics {
    /// Records one sync run of a pulled directory: `written` (created,
    /// updated, removed) when it succeeded.
    pub fn sync_run(
        &self,
        source: &SyncLabels,
        outcome: &str,
        seconds: f64,
        written: Option<[(&str, u64); 3]>,
    ) {
        self.sync_runs
            .get_or_create(&SyncRunLabels {
                kind: source.kind.clone(),
                directory: source.directory.clone(),
                outcome: outcome.into(),
            })
            .inc();
        self.sync_duration.get_or_create(source).observe(seconds);
        let Some(written) = written else { return };
        for (change, n) in written {
            self.sync_changes
                .get_or_create(&SyncChangeLabels {
                    kind: source.kind.clone(),
                    directory: source.directory.clone(),
                    change: change.into(),
                })
                .inc_by(n);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.sync_last_success.get_or_create(source).set(now);
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// `GET /metrics`, for the process's metrics listener.
pub fn router() -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(render_handler))
}

async fn render_handler() -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics().render(),
    )
}

/// Records one HTTP request: its count by method, route template and status,
/// and its latency by method and route (the gateway's `observe` middleware
/// calls it for every request it answered).
pub fn record_http(method: &str, route: &str, status: u16, started: Instant) {
    let m = metrics();
    m.http_duration
        .get_or_create(&RouteLabels {
            method: method.to_owned(),
            route: route.to_owned(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.http_requests
        .get_or_create(&HttpLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        })
        .inc();
}

/// Tower layer for a tonic server recording gRPC counts and latency.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let code = match &result {
                // Errors are sent trailers-only, so their status is in the headers;
                // a response without one started successfully.
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(|c| code_name(tonic::Code::from_i32(c)))
                    .unwrap_or("OK"),
                Err(_) => "TRANSPORT_ERROR",
            };
            record(method, code, started);
            result
        })
    }
}

/// Records one gRPC call that did not come through [`GrpcMetricsLayer`]
/// (the directory service called in the gateway's process): the same
/// series, `method` being the call's path (`/package.Service/Method`).
pub fn record_grpc_call(method: &str, code: tonic::Code, started: Instant) {
    record(method.to_owned(), code_name(code), started);
}

fn record(method: String, code: &'static str, started: Instant) {
    let m = metrics();
    m.grpc_duration
        .get_or_create(&MethodLabels {
            method: method.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.grpc_requests
        .get_or_create(&GrpcLabels {
            method,
            code: code.into(),
        })
        .inc();
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_metrics() {
        let m = metrics();
        m.rate_limited.inc();
        m.http_requests
            .get_or_create(&HttpLabels {
                method: "GET".into(),
                route: "/scim/v2/{directory_id}/Users".into(),
                status: 200,
            })
            .inc();
        let text = m.render();
        assert!(
            text.contains("roster_rate_limited_requests_total"),
            "{text}"
        );
        assert!(
            text.contains("route=\"/scim/v2/{directory_id}/Users\""),
            "{text}"
        );
        assert!(text.contains("roster_watch_streams"), "{text}");
        assert!(text.contains("roster_watch_head_lag_revisions"), "{text}");
        assert!(text.contains("roster_watch_head_lag_seconds"), "{text}");
    }
}
