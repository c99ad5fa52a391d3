//! `kill -9` of a directory-service process that is delivering webhooks:
//! a second process takes the endpoint over once the lease expires and
//! resumes from the stored cursor; the receiver gets every event, in
//! order, and only the request that was in flight twice.

use std::time::Duration;

use roster_proto::admin::CreateWebhookEndpointRequest;
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_testkit::app::webhooks::{Answer, Receiver, verify_spec};
use roster_testkit::app::{
    connect, create_directory_named, create_user, free_port, spawn_directory, wait_for_grpc,
};

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_webhook_delivery_loses_nothing() {
    let url = roster_testkit::fresh_database("fault_webhooks").await;
    let key = roster_webhook::SealingKey::generate_text().expect("key");
    let env = [
        ("ROSTER_SECRET_KEY", key.as_str()),
        ("ROSTER_WEBHOOK_ALLOW_HTTP", "true"),
        ("ROSTER_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("ROSTER_WEBHOOK_BACKOFF_BASE_MS", "20"),
        ("ROSTER_WEBHOOK_LEASE_SECS", "2"),
        // Longer than the test: the hung request is in flight when killed.
        ("ROSTER_WEBHOOK_TIMEOUT_MS", "60000"),
    ];
    let grpc = format!("127.0.0.1:{}", free_port());
    let mut first = spawn_directory(&url, port_of(&grpc), &env);
    wait_for_grpc(&grpc).await;
    let channel = connect(&grpc).await.expect("connect");
    let mut admin = AdminServiceClient::new(channel.clone());
    let mut dir_client = DirectoryServiceClient::new(channel);
    let dir = create_directory_named(&mut admin, "acme").await;
    let receiver = Receiver::start(Box::new(|r, times| match (r.user_name(), times) {
        ("u3", 0) => Answer::Hang,
        _ => Answer::Status(200),
    }))
    .await;
    let created = admin
        .create_webhook_endpoint(CreateWebhookEndpointRequest {
            directory_id: dir.clone(),
            url: receiver.url.clone(),
            ..Default::default()
        })
        .await
        .expect("create endpoint")
        .into_inner();
    let names: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
    for name in &names {
        create_user(&mut dir_client, &dir, name).await;
    }
    receiver
        .wait_requests_for("u3", 1, Duration::from_secs(30))
        .await;
    first.kill9();

    let second_grpc = format!("127.0.0.1:{}", free_port());
    let _second = spawn_directory(&url, port_of(&second_grpc), &env);
    let accepted = receiver
        .wait_accepted(names.len(), Duration::from_secs(60))
        .await;
    let accepted: Vec<&str> = accepted.iter().map(|r| r.user_name()).collect();
    assert_eq!(accepted, names, "every event once accepted, in order");
    assert_eq!(
        receiver.requests_for("u3"),
        2,
        "only the in-flight event is sent twice"
    );
    let all = receiver.requests();
    assert!(all.iter().all(|r| verify_spec(&created.secret, r)));
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}
