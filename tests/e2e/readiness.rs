//! Readiness follows the database: `/readyz` (gateway) and gRPC health
//! (directory service) go false while PostgreSQL is down and true again when
//! it returns; meanwhile SCIM requests get 503 with `Retry-After`, and the
//! service recovers without a restart.

use roster_testkit::app;
use roster_testkit::app::{ERROR_SCHEMA, USER_SCHEMA};
use std::time::Duration;

use roster_testkit::eventually;
use serde_json::Value;
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

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_postgres_and_scim_answers_503_meanwhile() {
    let pg = roster_testkit::owned_cluster().await;
    let served = app::serve_database(&pg.url(), &[]);
    let token = served.token.clone().expect("token");
    let http = reqwest::Client::new();
    let root = served.http_root();
    let wait = Duration::from_secs(60);

    eventually("ready", wait, || async {
        (readyz(&http, &root).await == Some(200)).then_some(())
    })
    .await;
    let body =
        serde_json::json!({"schemas": [USER_SCHEMA], "userName": "ready@example.com"}).to_string();
    let created = http
        .post(format!("{}/Users", served.base_url))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    pg.stop();
    eventually("gateway not ready", wait, || async {
        (readyz(&http, &root).await == Some(503)).then_some(())
    })
    .await;
    eventually("directory NOT_SERVING", wait, || async {
        (grpc_status(&served.grpc).await == Some(ServingStatus::NotServing)).then_some(())
    })
    .await;
    let during = http
        .get(format!("{}/Users", served.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(during.status(), 503, "SCIM while the database is down");
    assert!(
        during.headers().contains_key("retry-after"),
        "no Retry-After"
    );
    let error: Value = during.json().await.unwrap();
    assert_eq!(error["schemas"][0], ERROR_SCHEMA);

    pg.start().await;
    eventually("gateway ready again", wait, || async {
        (readyz(&http, &root).await == Some(200)).then_some(())
    })
    .await;
    eventually("directory SERVING again", wait, || async {
        (grpc_status(&served.grpc).await == Some(ServingStatus::Serving)).then_some(())
    })
    .await;
    let list: Value = http
        .get(format!(
            "{}/Users?filter=userName%20eq%20%22ready@example.com%22",
            served.base_url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["totalResults"], 1, "{list}");
}
