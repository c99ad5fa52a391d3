//! One trace spans gateway → directory service: with the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a local OTLP receiver started
//! here, a SCIM request exports spans of both halves under one trace id.

use roster_testkit::app;
use roster_testkit::app::bare_user;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio_stream::wrappers::TcpListenerStream;

/// (trace id, span name) of an exported span.
type ExportedSpan = (Vec<u8>, String);

/// Collects every exported span.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((span.trace_id, span.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scim_request_is_one_trace_across_gateway_and_directory_service() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let served = app::serve_postgres_with(
        "tracing",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("ROSTER_LOG_FORMAT", "json"),
        ],
    )
    .await;
    served
        .scim()
        .create("/Users", &bare_user("traced@example.com"))
        .await;

    // A trace holding both the gateway's HTTP span and the directory service's gRPC span.
    let trace_id = roster_testkit::eventually(
        "one trace with gateway and directory spans",
        Duration::from_secs(30),
        || {
            let spans = receiver.spans.lock().unwrap().clone();
            async move {
                let mut names: HashMap<Vec<u8>, HashSet<String>> = HashMap::new();
                for (trace, name) in spans {
                    names.entry(trace).or_default().insert(name);
                }
                names
                    .into_iter()
                    .find(|(_, n)| n.contains("grpc") && n.contains("http_request"))
                    .map(|(trace, _)| trace)
            }
        },
    )
    .await;

    // The JSON access-log line of that request carries the same trace id.
    let hex: String = trace_id.iter().map(|b| format!("{b:02x}")).collect();
    let needle = format!("\"trace_id\":\"{hex}\"");
    roster_testkit::eventually(
        "a JSON log line with the trace id",
        Duration::from_secs(10),
        || {
            let logs = served.logs();
            let found = logs
                .lines()
                .any(|l| l.trim_start().starts_with('{') && l.contains(&needle));
            async move { found.then_some(()) }
        },
    )
    .await;
}
