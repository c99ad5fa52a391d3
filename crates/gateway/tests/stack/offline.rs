//! The gateway over real HTTP while its directory service is unreachable:
//! it must start, report not-ready, refuse unauthenticated calls and answer
//! 503 with Retry-After rather than hang or fail with 500.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use roster_gateway::GatewayConfig;
use roster_testkit::app::{ERROR_SCHEMA, Gateway, Reply, loopback};

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

/// `method {root}{path}` with `headers`, answered within 20 s (a hang is a
/// failure).
async fn call(gw: &Gateway, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut request = client.request(method, format!("{}{path}", gw.root));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Reply::read(request.send().await.unwrap()).await.unwrap()
}

/// `GET path` with `headers`.
async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    call(gw, Method::GET, path, headers).await
}

/// Panics unless `reply` is a SCIM error with `status`.
fn assert_scim_error(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.text);
    reply.assert_scim_json();
    assert_eq!(reply.body["status"], status.to_string());
}

const TOKEN: (&str, &str) = ("authorization", "Bearer some-token");

#[tokio::test]
async fn health_and_readiness() {
    let gw = start().await;
    assert_eq!(get(&gw, "/healthz", &[]).await.status, 200);
    assert_eq!(get(&gw, "/readyz", &[]).await.status, 503);
}

#[tokio::test]
async fn missing_token_is_401_with_challenge() {
    let gw = start().await;
    let reply = get(
        &gw,
        "/scim/v2/some-directory/Users",
        &[("x-request-id", "req-123")],
    )
    .await;
    assert_scim_error(&reply, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"roster\"")
    );
    assert_eq!(reply.header("x-request-id"), Some("req-123"));
    assert_eq!(reply.body["schemas"][0], ERROR_SCHEMA);
}

#[tokio::test]
async fn malformed_authorization_is_401() {
    let gw = start().await;
    for value in ["Basic dXNlcjpwdw==", "Bearer", "Bearer a b"] {
        let path = "/scim/v2/d/ServiceProviderConfig";
        let reply = get(&gw, path, &[("authorization", value)]).await;
        assert_eq!(reply.status, 401, "{value}");
    }
}

#[tokio::test]
async fn unreachable_directory_service_is_503_with_retry_after() {
    let gw = start().await;
    let reply = get(&gw, "/scim/v2/d/Users", &[TOKEN]).await;
    assert_scim_error(&reply, 503);
    assert!(reply.header("retry-after").is_some());
    assert!(reply.header("x-request-id").is_some());
}

#[tokio::test]
async fn unknown_routes_and_methods_are_scim_errors() {
    let gw = start().await;
    assert_scim_error(&get(&gw, "/nope", &[]).await, 404);
    let delete = call(&gw, Method::DELETE, "/scim/v2/d/Users", &[]).await;
    assert_scim_error(&delete, 405);
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
    let gw = Gateway::start_resolving(config, std::sync::Arc::new(NoDns)).await;
    assert_eq!(get(&gw, "/readyz", &[]).await.status, 503);
    let reply = get(&gw, "/scim/v2/d/Users", &[TOKEN]).await;
    assert_eq!(reply.status, 503);
    assert!(reply.header("retry-after").is_some());
}

/// A connection that never completes a request head (a slow-loris client)
/// or stays idle after its last answer is closed after `idle_timeout`
/// rather than held for ever.
#[tokio::test]
async fn slow_and_idle_connections_are_closed_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = GatewayConfig {
        idle_timeout: Duration::from_millis(500),
        ..offline_config(Duration::from_secs(10)).await
    };
    let gw = Gateway::start(config).await;
    let addr: SocketAddr = gw.root.trim_start_matches("http://").parse().unwrap();

    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: roster\r\n")
        .await
        .unwrap();
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: roster\r\n\r\n")
        .await
        .unwrap();

    let read_all = |mut socket: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut answer))
            .await
            .expect("the gateway closed the connection")
            .expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let (slow, idle) = tokio::join!(read_all(slow), read_all(idle));
    assert_eq!(slow, "", "a half-sent head gets no answer");
    assert!(idle.starts_with("HTTP/1.1 200 "), "{idle}");
    // The answer told the client how long it may keep the connection: the
    // idle timeout less a margin, at least a second.
    assert!(
        idle.to_ascii_lowercase()
            .contains("\r\nkeep-alive: timeout=1\r\n"),
        "{idle}"
    );
}
