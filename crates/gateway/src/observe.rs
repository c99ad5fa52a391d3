//! Request ids, W3C trace context, tracing spans, access log and timeouts.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{Instrument, Span, field};

use crate::auth::directory_in_path;
use crate::dialect::Dialect;
use crate::error::GatewayError;
use crate::state::AppState;

/// Header carrying the request id, echoed on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// W3C trace-context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Longest client-supplied request id that is echoed instead of replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Per-request values forwarded to the directory service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMeta {
    /// The request id (client's, when acceptable, else generated).
    pub request_id: String,
    /// `traceparent` of the gateway's span for this request.
    pub traceparent: String,
}

impl CallMeta {
    /// Fresh ids for a request without usable headers.
    pub fn generate() -> Self {
        Self {
            request_id: new_request_id(),
            traceparent: child_traceparent(None),
        }
    }

    fn from_request(request: &Request) -> Self {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        Self {
            request_id: header(REQUEST_ID_HEADER)
                .filter(|id| acceptable_request_id(id))
                .map_or_else(new_request_id, str::to_owned),
            traceparent: child_traceparent(header(TRACEPARENT_HEADER)),
        }
    }
}

fn new_request_id() -> String {
    random_hex(rand::random::<u128>(), 32)
}

/// `bits` as `digits` lowercase hex digits, never all zeros (W3C Trace
/// Context forbids zero ids). The bits come from the thread's CSPRNG, not
/// `Uuid::new_v4`, which asks the kernel for each id: three `getrandom`
/// calls per request.
fn random_hex(bits: u128, digits: usize) -> String {
    format!("{:0digits$x}", bits.max(1))
}

fn acceptable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A `traceparent` for the gateway's own span: a child of `incoming` when
/// that is a valid version-00 header, else the root of a new trace.
pub fn child_traceparent(incoming: Option<&str>) -> String {
    let span_id = random_hex(u128::from(rand::random::<u64>()), 16);
    match incoming.and_then(parse_traceparent) {
        Some((trace_id, flags)) => format!("00-{trace_id}-{span_id}-{flags}"),
        None => format!("00-{}-{span_id}-01", random_hex(rand::random(), 32)),
    }
}

/// Trace id and flags of a valid `traceparent` (W3C Trace Context §3.2).
fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && nonzero(trace_id)
        && hex(parent_id, 16)
        && nonzero(parent_id)
        && hex(flags, 2);
    valid.then_some((trace_id, flags))
}

/// The one middleware around every route: marks the request's SCIM dialect
/// for the extractors and handlers, assigns ids, opens the request span,
/// enforces the request timeout, says `Connection: close` when the body was
/// left unread (`keep_alive`), counts the request in the HTTP metrics,
/// writes one access-log line and renders errors in the request's dialect
/// (`dialect::answer_in`). One layer instead of one each: every layer boxes
/// its future and clones the routes it wraps, on every request. The
/// Authorization header is never recorded.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (mut request, body) = crate::keep_alive::watch_body(request);
    let dialect = Dialect::of_path(request.uri().path());
    let call = CallMeta::from_request(&request);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let span = request_span(&request, &method, &route, &call);
    request.extensions_mut().insert(dialect);
    request.extensions_mut().insert(call.clone());
    let timeout = state.config().request_timeout;
    let mut response = async move {
        match tokio::time::timeout(timeout, answer_panics(next.run(request))).await {
            Ok(response) => response,
            Err(_) => GatewayError::Timeout.into_response(),
        }
    }
    .instrument(span.clone())
    .await;
    if let Ok(v) = HeaderValue::from_str(&call.request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    body.finish(&mut response, state.config().idle_timeout);
    let status = response.status().as_u16();
    log_access(&span, status, started);
    roster_telemetry::metrics::record_http(method.as_str(), &route, status, started);
    crate::dialect::answer_in(dialect, response)
}

/// The request's span. With OpenTelemetry installed it continues the
/// caller's trace and is what travels to the directory service; `CallMeta`
/// covers the rest.
fn request_span(request: &Request, method: &Method, route: &str, call: &CallMeta) -> Span {
    let directory_id = directory_in_path(request.uri().path()).unwrap_or("");
    let span = tracing::info_span!(
        "http_request",
        %method,
        route = %route,
        directory_id = %directory_id,
        request_id = %call.request_id,
        trace_id = field::Empty,
        status = field::Empty,
        latency_ms = field::Empty,
    );
    roster_telemetry::propagation::adopt_parent(&span, request.headers());
    span
}

/// Writes the access-log line of the request `span` belongs to. The line
/// names no field itself: the span around it carries them all, status and
/// latency included (text logs print them before the target, JSON logs
/// under "span"); repeating them doubled every line.
fn log_access(span: &Span, status: u16, started: Instant) {
    span.record("status", status);
    span.record("latency_ms", started.elapsed().as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::info!(target: "roster_gateway::access", "request"));
}

/// `answer`, or a 500 SCIM error if it panics: a bug below (in a handler, or
/// in the directory service called in this process) costs the one request
/// an error body, not the client its connection without an answer.
async fn answer_panics(answer: impl Future<Output = Response>) -> Response {
    use futures::FutureExt as _;
    match std::panic::AssertUnwindSafe(answer).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            GatewayError::Internal(format!("request handler panicked: {what}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_below_is_a_scim_500() {
        let response = answer_panics(async { panic!("a bug") }).await;
        assert_eq!(response.status(), 500);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert_eq!(body["detail"], "internal server error", "no detail leaks");

        let fine =
            answer_panics(async { axum::http::StatusCode::NO_CONTENT.into_response() }).await;
        assert_eq!(fine.status(), 204);
    }

    #[test]
    fn continues_valid_traces() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let out = child_traceparent(Some(incoming));
        let parts: Vec<&str> = out.split('-').collect();
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(parts[2], "00f067aa0ba902b7");
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01");
    }

    #[test]
    fn starts_new_traces_for_invalid_headers() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let out = child_traceparent(Some(bad));
            assert!(parse_traceparent(&out).is_some(), "{out}");
            assert!(!out.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{bad}");
        }
    }

    #[test]
    fn request_ids() {
        assert!(acceptable_request_id("abc-123"));
        assert!(!acceptable_request_id(""));
        assert!(!acceptable_request_id("has space"));
        assert!(!acceptable_request_id(&"x".repeat(129)));
        assert_eq!(new_request_id().len(), 32);
        assert_ne!(new_request_id(), new_request_id());
    }

    #[test]
    fn random_ids_have_their_width_and_are_never_zero() {
        assert_eq!(random_hex(0, 16), "0000000000000001");
        assert_eq!(random_hex(0xab, 32), format!("{:0>32}", "ab"));
        assert_eq!(random_hex(u128::from(u64::MAX), 16), "ffffffffffffffff");
        assert!(parse_traceparent(&child_traceparent(None)).is_some());
    }
}
