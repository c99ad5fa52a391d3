//! Mutual TLS configured the way an operator does it: `roster directory`
//! with `--tls-*` flags, `roster gateway` and `roster admin` with
//! `ROSTER_DIRECTORY_TLS_*` variables (as a Kubernetes Secret mount sets
//! them). Without a client certificate the directory service refuses;
//! probes use the plain health-only port.

use roster_testkit::app;
use std::path::Path;
use std::process::Command;

use roster_testkit::app::{DirectoryProcess, roster, spawn_logged, wait_logged};
use roster_tls::TlsFiles;
use roster_tls::testing::{Ca, write};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn with_client_tls(cmd: &mut Command, files: &TlsFiles) {
    cmd.env("ROSTER_DIRECTORY_TLS_CERT", &files.cert)
        .env("ROSTER_DIRECTORY_TLS_KEY", &files.key)
        .env("ROSTER_DIRECTORY_TLS_CA", &files.ca);
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_gateway_and_admin_use_mutual_tls_from_flags_and_env() {
    let dir = app::temp_dir("mtls-cli");
    let ca = Ca::new("roster internal CA");
    let server = write(&dir, "server", &ca.leaf(&["localhost"]), &ca);
    let client = write(&dir, "client", &ca.leaf(&["roster-gateway"]), &ca);
    let url = roster_testkit::fresh_database("mtls_cli").await;
    let pod = DirectoryProcess::start(
        &url,
        &[
            "--tls-cert",
            path(&server.cert),
            "--tls-key",
            path(&server.key),
            "--tls-client-ca",
            path(&server.ca),
            "--health-addr",
            "127.0.0.1:0",
        ],
    );
    let endpoint = format!("https://localhost:{}", pod.grpc.port());

    // Probes reach the plain health port without a certificate.
    let health = pod.process.wait_logged("health port listening", "addr");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{health}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut probe = HealthClient::new(channel);
    let status = probe
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    let mut admin = roster();
    admin.args(["admin", "--endpoint", &endpoint, "list-directories"]);
    with_client_tls(&mut admin, &client);
    let out = admin.output().unwrap();
    assert!(
        out.status.success(),
        "admin over mTLS: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        pod.logs()
    );

    let out = roster()
        .args(["admin", "--endpoint", &endpoint, "list-directories"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "admin without a client certificate");

    let mut gateway = roster();
    gateway.args([
        "gateway",
        "--directory-endpoint",
        &endpoint,
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "off",
    ]);
    with_client_tls(&mut gateway, &client);
    let (mut child, log) = spawn_logged(gateway);
    let root = wait_logged(&log, "gateway listening", "public_url");
    let root = &root;
    let ready = roster_testkit::eventually(
        "gateway ready over mTLS",
        std::time::Duration::from_secs(60),
        || async move {
            let r = reqwest::get(format!("{root}/readyz")).await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    ready
}
