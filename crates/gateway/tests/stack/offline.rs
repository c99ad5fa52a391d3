//! The gateway over real HTTP while its directory service is unreachable:
//! it must start, report not-ready, refuse unauthenticated calls and answer
//! 503 with Retry-After rather than hang or fail with 500.

use roster_testkit::app::ERROR_SCHEMA;
use std::net::SocketAddr;
use std::time::Duration;

use roster_gateway::GatewayConfig;
use roster_testkit::app::{Gateway, loopback};
use serde_json::Value;

/// A gateway configuration pointed at a loopback port nothing listens on.
async fn offline_config(request_timeout: Duration) -> GatewayConfig {
    let (_, dead) = loopback().await;
    GatewayConfig {
        directory_endpoint: format!("http://{dead}"),
        request_timeout,
        ..Default::default()
    }
}

async fn start() -> Gateway {
    Gateway::start(offline_config(Duration::from_secs(10)).await).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/scim+json"),
        "{content_type}"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn health_and_readiness() {
    let gw = start().await;
    let health = client()
        .get(format!("{}/healthz", gw.root))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = client()
        .get(format!("{}/readyz", gw.root))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}

#[tokio::test]
async fn missing_token_is_401_with_challenge() {
    let gw = start().await;
    let response = client()
        .get(format!("{}/scim/v2/some-directory/Users", gw.root))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"roster\""
    );
    assert_eq!(response.headers()["x-request-id"], "req-123");
    let body = json_of(response).await;
    assert_eq!(body["schemas"][0], ERROR_SCHEMA);
    assert_eq!(body["status"], "401");
}

#[tokio::test]
async fn malformed_authorization_is_401() {
    let gw = start().await;
    for value in ["Basic dXNlcjpwdw==", "Bearer", "Bearer a b"] {
        let response = client()
            .get(format!("{}/scim/v2/d/ServiceProviderConfig", gw.root))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{value}");
    }
}

#[tokio::test]
async fn unreachable_directory_service_is_503_with_retry_after() {
    let gw = start().await;
    let response = client()
        .get(format!("{}/scim/v2/d/Users", gw.root))
        .bearer_auth("some-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(response.headers().contains_key("x-request-id"));
    let body = json_of(response).await;
    assert_eq!(body["status"], "503");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_scim_errors() {
    let gw = start().await;
    let response = client()
        .get(format!("{}/nope", gw.root))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(json_of(response).await["status"], "404");
    let response = client()
        .delete(format!("{}/scim/v2/d/Users", gw.root))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(json_of(response).await["status"], "405");
}

/// A resolver whose every lookup fails, as DNS does before a headless
/// Service has any ready pod.
struct NoDns;

impl roster_gateway::upstream::Resolve for NoDns {
    fn resolve<'a>(
        &'a self,
        _: &'a str,
        _: u16,
    ) -> futures::future::BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async { Err(std::io::Error::other("no such host")) })
    }
}

#[tokio::test]
async fn unresolvable_directory_endpoint_starts_and_answers_503() {
    // Far beyond the client's 20 s: a call waiting for an address that
    // never comes would hang, not turn into a timeout answer.
    let config = offline_config(Duration::from_secs(3600)).await;
    let gateway = Gateway::start_resolving(config, std::sync::Arc::new(NoDns)).await;
    let base = &gateway.root;
    let ready = client().get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let response = client()
        .get(format!("{base}/scim/v2/d/Users"))
        .bearer_auth("some-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
}
