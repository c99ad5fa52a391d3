//! `--webhook-ca` / `ROSTER_WEBHOOK_CA`: a directory service trusts an
//! in-cluster receiver whose certificate comes from a private CA, over
//! https, and refuses it without the CA.

use std::sync::Arc;

use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::admin::{CreateWebhookEndpointRequest, SendTestWebhookEventRequest};
use roster_testkit::app::webhooks::{Reply, serve_http1};
use roster_testkit::app::{
    connect, create_directory_named, free_port, spawn_directory, wait_for_grpc,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpListener;

/// An https receiver on loopback answering 204 to every request; its port.
async fn tls_receiver(leaf: &roster_tls::testing::Leaf) -> u16 {
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_http1(tls, || Reply {
                        response: b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                        close: false,
                    })
                    .await;
                }
            });
        }
    });
    port
}

/// Sends a test event to an https endpoint on `receiver_port` through a
/// directory service started with `extra_env`; the attempt's status code
/// (0: no answer) and detail.
async fn test_event(receiver_port: u16, extra_env: &[(&str, &str)]) -> (i32, String) {
    let url = roster_testkit::fresh_database("webhook_ca").await;
    let key = roster_webhook::SealingKey::generate_text().expect("key");
    let mut env = vec![
        ("ROSTER_SECRET_KEY", key.as_str()),
        ("ROSTER_WEBHOOK_ALLOW_PRIVATE", "true"),
    ];
    env.extend_from_slice(extra_env);
    let port = free_port();
    let _directory = spawn_directory(&url, port, &env);
    let grpc = format!("127.0.0.1:{port}");
    wait_for_grpc(&grpc).await;
    let mut admin = AdminServiceClient::new(connect(&grpc).await.expect("connect"));
    let dir = create_directory_named(&mut admin, "acme").await;
    let endpoint = admin
        .create_webhook_endpoint(CreateWebhookEndpointRequest {
            directory_id: dir,
            url: format!("https://localhost:{receiver_port}/hooks"),
            ..Default::default()
        })
        .await
        .expect("create endpoint")
        .into_inner()
        .endpoint
        .expect("endpoint");
    let attempt = admin
        .send_test_webhook_event(SendTestWebhookEventRequest { id: endpoint.id })
        .await
        .expect("send test event")
        .into_inner()
        .attempt
        .expect("attempt");
    (attempt.status_code, attempt.detail)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_is_trusted_only_when_configured() {
    let ca = roster_tls::testing::Ca::new("in-cluster CA");
    let receiver = tls_receiver(&ca.leaf(&["localhost"])).await;
    let dir = roster_testkit::app::temp_dir("webhook_ca");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let ca_path = ca_file.to_str().expect("path");

    let (status, detail) = test_event(receiver, &[("ROSTER_WEBHOOK_CA", ca_path)]).await;
    assert_eq!(status, 204, "{detail}");

    let (status, detail) = test_event(receiver, &[]).await;
    assert_eq!(status, 0, "{detail}");
    assert!(detail.contains("TLS"), "{detail}");
}
