//! The gateway spreads its calls over every directory-service pod its
//! endpoint's name resolves to, and follows the name: a pod added later gets
//! traffic, a pod removed from it gets none. Real `roster directory`
//! processes on one PostgreSQL database, the real gateway over HTTP; only
//! the name resolution is the test's (a headless Service's DNS answer).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use roster_gateway::GatewayConfig;
use roster_gateway::upstream::Resolve;
use roster_proto::admin::DeprovisionPolicy;
use roster_testkit::app::{self, DirectoryProcess, Gateway};
use roster_testkit::eventually;

/// What the name `roster-directory` resolves to right now.
#[derive(Default)]
struct Pods(Mutex<Vec<SocketAddr>>);

impl Pods {
    fn set(&self, pods: &[&DirectoryProcess]) {
        *self.0.lock().unwrap() = pods.iter().map(|p| p.grpc).collect();
    }
}

impl Resolve for Pods {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        assert_eq!(host, "roster-directory");
        let addrs = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(addrs) })
    }
}

/// A gateway whose directory endpoint is `http://roster-directory:<port>`.
async fn gateway(pods: Arc<Pods>, port: u16) -> Gateway {
    let config = GatewayConfig {
        directory_endpoint: format!("http://roster-directory:{port}"),
        directory_refresh: Duration::from_millis(50),
        ..Default::default()
    };
    Gateway::start_resolving(config, pods).await
}

/// Creates a directory and a token through one pod's AdminService.
async fn scim_base(pod: &DirectoryProcess, gateway: &Gateway) -> (String, String) {
    let channel = app::connect(&pod.grpc.to_string()).await.unwrap();
    let scim = app::directory_with_token(channel, &gateway.root, DeprovisionPolicy::Delete).await;
    (format!("{}/Users", scim.base_url), scim.token)
}

/// Sends `n` SCIM list requests through the gateway; each must succeed.
async fn list_users(http: &reqwest::Client, url: &str, token: &str, n: usize) {
    for _ in 0..n {
        let response = http.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_balances_over_every_resolved_pod_and_follows_changes() {
    let url = roster_testkit::fresh_database("balancing").await;
    let a = DirectoryProcess::start(&url, &[]);
    let b = DirectoryProcess::start(&url, &[]);
    let c = DirectoryProcess::start(&url, &[]);
    let pods = Arc::new(Pods::default());
    pods.set(&[&a, &b]);
    // The name's port is irrelevant once it resolves: each address carries its own.
    let gateway = gateway(Arc::clone(&pods), 50051).await;
    let (users, token) = scim_base(&a, &gateway).await;
    let http = reqwest::Client::new();
    let wait = Duration::from_secs(60);
    let (http, users, token) = (&http, users.as_str(), token.as_str());
    let (a, b, c) = (&a, &b, &c);

    eventually("both pods receive calls", wait, || async move {
        list_users(http, users, token, 10).await;
        let (on_a, on_b) = (a.directory_calls(http).await, b.directory_calls(http).await);
        (on_a > 0.0 && on_b > 0.0).then_some(())
    })
    .await;
    assert_eq!(c.directory_calls(http).await, 0.0, "c is not resolved yet");

    pods.set(&[a, b, c]);
    eventually(
        "a pod added to the name receives calls",
        wait,
        || async move {
            list_users(http, users, token, 10).await;
            (c.directory_calls(http).await > 0.0).then_some(())
        },
    )
    .await;

    pods.set(&[a, c]);
    eventually(
        "a pod removed from the name stops receiving calls",
        wait,
        || async move {
            let before = b.directory_calls(http).await;
            list_users(http, users, token, 20).await;
            (b.directory_calls(http).await == before).then_some(())
        },
    )
    .await;
    let (b_before, ac_before) = (
        b.directory_calls(http).await,
        a.directory_calls(http).await + c.directory_calls(http).await,
    );
    list_users(http, users, token, 40).await;
    assert_eq!(
        b.directory_calls(http).await,
        b_before,
        "b still gets calls"
    );
    assert!(
        a.directory_calls(http).await + c.directory_calls(http).await >= ac_before + 40.0,
        "the remaining pods answer every call"
    );
}
