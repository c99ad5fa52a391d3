//! Subcommand implementations.

pub mod admin;
pub mod mirror;
pub mod serve;
pub mod verify;
pub mod watch;

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};

use crate::config::ClientArgs;

/// Connects to a directory service for the client subcommands.
pub async fn connect(args: &ClientArgs) -> anyhow::Result<Channel> {
    endpoint(args, &args.endpoint)?
        .connect()
        .await
        .with_context(|| format!("cannot reach the directory service at {} (is `roster serve` or `roster directory` running?)", args.endpoint))
}

/// The directory-service endpoint `address`, with the client's TLS
/// settings, not yet connected.
pub fn endpoint(args: &ClientArgs, address: &str) -> anyhow::Result<Endpoint> {
    let endpoint = Endpoint::from_shared(endpoint_url(address)).with_context(|| {
        format!("malformed directory endpoint {address:?} (expected e.g. http://127.0.0.1:50051)")
    })?;
    let endpoint = match args.tls.files()? {
        Some(files) => {
            anyhow::ensure!(
                endpoint.uri().scheme_str() == Some("https"),
                "mutual TLS needs an https:// directory endpoint, not {address:?}"
            );
            let host = endpoint.uri().host().unwrap_or_default().to_owned();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let pem = files.read()?;
            endpoint
                .tls_config(roster_gateway::upstream::tls_config(&pem, host))
                .context("cannot use the directory TLS certificates")?
        }
        None => endpoint,
    };
    Ok(endpoint)
}

/// The banner prints the gRPC address as `host:port`; operators paste it as
/// is, so a missing scheme means plain-text HTTP/2.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// Adds the internal secret, when configured, to a request.
pub fn authorize<T>(req: &mut tonic::Request<T>, secret: &Option<String>) -> anyhow::Result<()> {
    if let Some(secret) = secret {
        let value = format!("Bearer {secret}")
            .parse()
            .context("the internal secret contains characters not allowed in a header")?;
        req.metadata_mut().insert("authorization", value);
    }
    Ok(())
}
