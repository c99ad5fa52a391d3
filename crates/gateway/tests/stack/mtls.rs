//! Mutual TLS between the gateway and the directory service, over real TLS
//! on loopback: a gateway with a certificate from the trusted CA works; one
//! whose certificate or trust is wrong is refused and answers 503 (never
//! 401, which would make an IdP quarantine the integration); a client
//! without a certificate is refused; and replacing the server's certificate
//! files changes what new connections see, without a restart.

use std::sync::Arc;
use std::time::Duration;

use roster_gateway::GatewayConfig;
use roster_proto::admin::DeprovisionPolicy;
use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_testkit::app::{self, Gateway, Server};
use roster_tls::TlsFiles;
use roster_tls::testing::{Ca, Leaf, write};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A directory service on PostgreSQL that requires mutual TLS.
async fn directory_service(files: TlsFiles) -> Server {
    let (store, _) = app::pg_store("mtls").await;
    let config = roster_directory::DirectoryConfig {
        tls: Some(files),
        ..Default::default()
    };
    Server::start(store, config).await
}

/// A gRPC client of the directory service presenting `identity`.
fn grpc_client(port: u16, ca: &Ca, identity: Option<&Leaf>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .domain_name("localhost")
        .ca_certificate(Certificate::from_pem(ca.pem()));
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy()
}

/// Creates a directory and a token; returns the SCIM path and the token.
async fn directory_with_token(channel: Channel) -> (String, String) {
    let scim = app::directory_with_token(channel, "", DeprovisionPolicy::Delete).await;
    (format!("{}/Users", scim.base_url), scim.token)
}

/// A gateway reaching the directory service at `endpoint`.
async fn gateway(endpoint: String, tls: Option<TlsFiles>) -> Gateway {
    Gateway::start(GatewayConfig {
        directory_endpoint: endpoint,
        directory_tls: tls,
        // The gateway looks at its own certificate files once per refresh.
        directory_refresh: Duration::from_millis(50),
        request_timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .await
}

/// The certificate the directory service presents to a new connection.
async fn served_certificate(port: u16, ca: &Ca, client: &Leaf) -> CertificateDer<'static> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![client.der.clone()],
            PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with a trusted client certificate");
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

async fn get(root: &str, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{root}{path}"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap()
}

/// 503 with Retry-After and a SCIM error body, no bearer challenge.
async fn assert_outage(response: reqwest::Response, why: &str) {
    assert_eq!(response.status(), 503, "{why}");
    assert!(response.headers().contains_key("retry-after"), "{why}");
    assert!(
        !response.headers().contains_key("www-authenticate"),
        "{why}"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["schemas"][0], app::ERROR_SCHEMA, "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_admits_trusted_gateways_refuses_others_and_follows_rotation() {
    let dir = app::temp_dir("mtls");
    let ca = Ca::new("roster internal CA");
    let other_ca = Ca::new("someone else's CA");
    let server_leaf = ca.leaf(&["localhost"]);
    let server_files = write(&dir, "server", &server_leaf, &ca);
    let server = directory_service(server_files.clone()).await;
    let port = server.addr.port();
    let gateway_leaf = ca.leaf(&["roster-gateway"]);
    let endpoint = format!("https://localhost:{port}");

    let (users, token) = directory_with_token(grpc_client(port, &ca, Some(&gateway_leaf))).await;

    let trusted = gateway(
        endpoint.clone(),
        Some(write(&dir, "gateway", &gateway_leaf, &ca)),
    )
    .await;
    assert_eq!(get(&trusted.root, &users, &token).await.status(), 200);

    let foreign_leaf = other_ca.leaf(&["roster-gateway"]);
    let foreign_cert = TlsFiles {
        ca: server_files.ca.clone(),
        ..write(&dir, "foreign", &foreign_leaf, &other_ca)
    };
    let refused = gateway(endpoint.clone(), Some(foreign_cert)).await;
    assert_outage(
        get(&refused.root, &users, &token).await,
        "client certificate from another CA",
    )
    .await;

    let wrong_trust = gateway(
        endpoint.clone(),
        Some(write(&dir, "distrust", &gateway_leaf, &other_ca)),
    )
    .await;
    assert_outage(
        get(&wrong_trust.root, &users, &token).await,
        "server certificate not signed by the trusted CA",
    )
    .await;

    let plain = gateway(format!("http://localhost:{port}"), None).await;
    assert_outage(
        get(&plain.root, &users, &token).await,
        "plain HTTP/2 to a TLS port",
    )
    .await;

    let mut anonymous = AdminServiceClient::new(grpc_client(port, &ca, None));
    let refused = anonymous
        .list_directories(roster_proto::admin::ListDirectoriesRequest::default())
        .await;
    assert!(
        refused.is_err(),
        "a client without a certificate is refused"
    );

    assert_eq!(
        served_certificate(port, &ca, &gateway_leaf).await,
        server_leaf.der
    );
    let rotated = ca.leaf(&["localhost"]);
    write(&dir, "server", &rotated, &ca);
    assert_eq!(
        served_certificate(port, &ca, &gateway_leaf).await,
        rotated.der,
        "a new connection gets the rotated certificate"
    );
    let after = gateway(
        endpoint.clone(),
        Some(write(&dir, "gateway2", &gateway_leaf, &ca)),
    )
    .await;
    assert_eq!(get(&after.root, &users, &token).await.status(), 200);
    assert_eq!(get(&trusted.root, &users, &token).await.status(), 200);

    // The gateway follows its own files too: swapped for a certificate the
    // directory service does not trust, its new connections are refused;
    // swapped back, they are accepted again.
    for (leaf, status, what) in [
        (
            &foreign_leaf,
            503,
            "the gateway reconnects with its new certificate",
        ),
        (
            &gateway_leaf,
            200,
            "the gateway reconnects with a trusted certificate",
        ),
    ] {
        write(&dir, "gateway", leaf, &ca);
        roster_testkit::eventually(what, Duration::from_secs(30), || async {
            (get(&trusted.root, &users, &token).await.status() == status).then_some(())
        })
        .await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
