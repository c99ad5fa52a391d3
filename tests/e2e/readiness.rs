//! Readiness follows the database: `/readyz` (gateway) and gRPC health
//! (directory service) go false while PostgreSQL is down and true again when
//! it returns; meanwhile SCIM requests get 503 with `Retry-After`, and the
//! service recovers without a restart.

use roster_testkit::app;
use roster_testkit::app::{ERROR_SCHEMA, bare_user};
use std::time::Duration;

use roster_testkit::eventually;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn readyz(client: &reqwest::Client, root: &str) -> Option<u16> {
    client
        .get(format!("{root}/readyz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn grpc_status(grpc: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    Some(reply.into_inner().status())
}

/// Waits until both halves report `ready`: the gateway's `/readyz` and the
/// directory service's gRPC health.
async fn wait_readiness(served: &app::Served, ready: bool) {
    let http = reqwest::Client::new();
    let root = served.http_root();
    let wait = Duration::from_secs(60);
    let (code, status) = match ready {
        true => (200, ServingStatus::Serving),
        false => (503, ServingStatus::NotServing),
    };
    eventually(&format!("/readyz {code}"), wait, || async {
        (readyz(&http, &root).await == Some(code)).then_some(())
    })
    .await;
    eventually(&format!("gRPC health {status:?}"), wait, || async {
        (grpc_status(&served.grpc).await == Some(status)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_postgres_and_scim_answers_503_meanwhile() {
    let pg = roster_testkit::owned_cluster().await;
    let served = app::serve_database(&pg.url(), &[]);
    wait_readiness(&served, true).await;
    let scim = served.scim();
    scim.create("/Users", &bare_user("ready@example.com")).await;

    pg.stop();
    wait_readiness(&served, false).await;
    let during = scim
        .get("/Users")
        .await
        .expect(503, "SCIM while the database is down");
    assert!(during.header("retry-after").is_some(), "no Retry-After");
    assert_eq!(during.body["schemas"][0], ERROR_SCHEMA);

    pg.start().await;
    wait_readiness(&served, true).await;
    assert_eq!(
        scim.count("/Users?filter=userName%20eq%20%22ready@example.com%22")
            .await,
        1,
        "list after the restart"
    );
}
