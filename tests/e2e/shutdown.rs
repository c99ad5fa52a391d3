//! SIGTERM: the process stops accepting, finishes the requests in flight,
//! ends WatchChanges streams with UNAVAILABLE (reconnect elsewhere) and exits
//! cleanly within the termination grace period.

use roster_testkit::app;
use roster_testkit::app::{BULK_REQUEST_SCHEMA, USER_SCHEMA};
use std::time::Duration;

use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::watch_changes_response::Payload;
use roster_proto::directory::{ChangeKind, WatchChangesRequest};
use serde_json::{Value, json};

const OPERATIONS: usize = 500;

fn bulk_body() -> Value {
    let ops: Vec<Value> = (0..OPERATIONS)
        .map(|i| {
            json!({
                "method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
                "data": {"schemas": [USER_SCHEMA], "userName": format!("drain{i}@example.com")}
            })
        })
        .collect();
    json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": ops})
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_and_ends_streams_with_unavailable() {
    let mut served = app::serve_postgres("sigterm").await;
    let token = served.token.clone().expect("token");
    let mut client = DirectoryServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .unwrap();
    let mut stream = client
        .watch_changes(WatchChangesRequest {
            directory_id: served.directory_id.clone(),
            kinds: vec![ChangeKind::UserCreated as i32],
            start: Some(Start::FromNow(())),
        })
        .await
        .unwrap()
        .into_inner();

    let bulk = tokio::spawn({
        let url = format!("{}/Bulk", served.base_url);
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/scim+json")
                .body(bulk_body().to_string())
                .send()
                .await
        }
    });

    // The first created user proves the bulk request is in flight.
    let first = tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("an event")
        .unwrap();
    assert!(matches!(
        first.and_then(|m| m.payload),
        Some(Payload::Change(_))
    ));
    served.terminate();

    let response = bulk
        .await
        .unwrap()
        .expect("the in-flight bulk request completes");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let ops = body["Operations"].as_array().expect("operations");
    assert_eq!(ops.len(), OPERATIONS);
    assert!(ops.iter().all(|o| o["status"] == "201"), "{body}");

    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("stream ends")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");

    let exit = roster_testkit::eventually("the process exits", Duration::from_secs(30), || {
        let status = served.child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(
        exit.success(),
        "exit status {exit:?}; logs:\n{}",
        served.logs()
    );
}
