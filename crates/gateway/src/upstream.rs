//! The gateway's connections to the directory service: one per resolved
//! address of the endpoint's host, balanced, following DNS.
//!
//! A host name resolved once per connection would stick a gateway to one
//! pod of a headless Service, and pods added later would get no traffic.
//! Here a background task re-resolves the host every `directory_refresh` and
//! applies the differences to the connection pool ([`crate::pool`]). When
//! resolution fails or returns nothing the last known set stays; before
//! anything was ever resolved the pool dials the endpoint as configured, so
//! calls fail fast (503) instead of waiting for an address.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http::Uri;
use roster_tls::{ClientConfig, Pem, Reloading, TlsError, TlsFiles};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::config::GatewayConfig;
use crate::pool::{self, Dial, Pool, PoolConfig, WeakPool};
use crate::state::StartError;

/// Turns the endpoint's host and port into the addresses to connect to.
/// The gateway uses [`Dns`]; tests inject their own.
pub trait Resolve: Send + Sync + 'static {
    /// Every address `host:port` currently stands for.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct Dns;

impl Resolve for Dns {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The configured endpoint, split into what resolution and dialling need.
struct Target {
    uri: Uri,
    host: String,
    port: u16,
}

impl Target {
    fn parse(endpoint: &str) -> Result<Self, StartError> {
        let invalid = |reason: &str| StartError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = endpoint.parse().map_err(|e| invalid(&format!("{e}")))?;
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        // An IPv6 literal comes bracketed; the resolver wants it bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = match (uri.port_u16(), uri.scheme_str()) {
            (Some(port), _) => port,
            (None, Some("https")) => 443,
            (None, _) => 80,
        };
        Ok(Self { uri, host, port })
    }
}

/// Builds the balanced, DNS-following connection pool and starts its
/// resolver task (must run inside a Tokio runtime). The task ends once the
/// pool is dropped.
pub fn balanced_pool(
    config: &GatewayConfig,
    resolver: Arc<dyn Resolve>,
) -> Result<Pool, StartError> {
    let target = Target::parse(&config.directory_endpoint)?;
    let https = target.uri.scheme_str() == Some("https");
    if https != config.directory_tls.is_some() {
        return Err(StartError::InvalidEndpoint {
            endpoint: config.directory_endpoint.clone(),
            reason: "an https:// endpoint needs the directory TLS certificate, key and CA, \
                     and those need an https:// endpoint"
                .to_owned(),
        });
    }
    let tls = match &config.directory_tls {
        Some(files) => Some(client_tls(files.clone())?),
        None => None,
    };
    let invalid = |reason: &str| StartError::InvalidEndpoint {
        endpoint: config.directory_endpoint.clone(),
        reason: reason.to_owned(),
    };
    let pool = Pool::new(PoolConfig {
        scheme: target
            .uri
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("no scheme"))?,
        authority: target
            .uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid("no host"))?,
        host: target.host.clone(),
        port: target.port,
        tls,
        ping_interval: pool::PING_INTERVAL,
        ping_timeout: pool::PING_TIMEOUT,
    });
    let follower = Follower {
        target,
        pool: pool.downgrade(),
        resolver,
        known: HashSet::new(),
        failing: false,
    };
    tokio::spawn(follower.run(config.directory_refresh));
    Ok(pool)
}

/// The gateway's side of mutual TLS, following its files. The server's
/// certificate is verified against the endpoint's host name, whichever
/// address was dialled.
fn client_tls(files: TlsFiles) -> Result<Reloading<ClientConfig>, TlsError> {
    Reloading::load(files, roster_tls::client_config)
}

/// A tonic client configuration presenting `pem`'s certificate and
/// accepting a server certificate for `host` signed by `pem`'s CA (`roster
/// admin`'s channel to the directory service).
pub fn tls_config(pem: &Pem, host: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .domain_name(host)
        .ca_certificate(Certificate::from_pem(&pem.ca_pem))
        .identity(Identity::from_pem(&pem.cert_pem, &pem.key_pem))
}

/// The resolver task's state.
struct Follower {
    target: Target,
    pool: WeakPool,
    resolver: Arc<dyn Resolve>,
    /// The addresses the pool holds; empty while it dials the host as
    /// configured.
    known: HashSet<SocketAddr>,
    /// Whether the last resolution failed (to log only the transitions).
    failing: bool,
}

impl Follower {
    async fn run(mut self, every: Duration) {
        while self.refresh().await.is_ok() {
            tokio::time::sleep(every).await;
        }
    }

    /// Resolves once and applies the difference; `Err` when the pool is gone.
    async fn refresh(&mut self) -> Result<(), Closed> {
        let pool = self.pool.upgrade().ok_or(Closed)?;
        if pool.tls_rotated() {
            pool.redial_all();
        }
        drop(pool);
        let resolved = self
            .resolver
            .resolve(&self.target.host, self.target.port)
            .await;
        match resolved {
            Ok(addrs) if !addrs.is_empty() => {
                self.failing = false;
                self.apply(addrs.into_iter().collect())
            }
            Ok(_) => {
                self.report("it resolved to no address");
                Ok(())
            }
            Err(e) => {
                self.report(&e.to_string());
                Ok(())
            }
        }
    }

    fn report(&mut self, why: &str) {
        if !self.failing {
            tracing::warn!(
                host = %self.target.host,
                error = why,
                "cannot resolve the directory service; keeping the last known addresses"
            );
        }
        self.failing = true;
    }

    /// Inserts the new addresses before removing anything, so the pool is
    /// never left empty.
    fn apply(&mut self, addrs: HashSet<SocketAddr>) -> Result<(), Closed> {
        if addrs == self.known {
            return Ok(());
        }
        let pool = self.pool.upgrade().ok_or(Closed)?;
        let added: Vec<_> = addrs.difference(&self.known).copied().collect();
        let removed: Vec<_> = self.known.difference(&addrs).copied().collect();
        for addr in &added {
            pool.insert(Dial::Addr(*addr));
        }
        if self.known.is_empty() {
            pool.remove(&Dial::Host);
        }
        for addr in &removed {
            pool.remove(&Dial::Addr(*addr));
        }
        tracing::info!(?added, ?removed, "directory service addresses changed");
        self.known = addrs;
        Ok(())
    }
}

/// The pool was dropped.
struct Closed;

/// The directory service called in the gateway's own process (`roster
/// serve`): one tower service taking gRPC requests as HTTP requests with
/// tonic bodies, with no connection in between. Produced by
/// `roster_directory::Directory::direct_service` (the same routes behind the
/// same credential check, metrics and request span as its listeners).
pub type DirectService = tower::util::BoxCloneSyncService<
    tonic::codegen::http::Request<tonic::body::Body>,
    tonic::codegen::http::Response<tonic::body::Body>,
    tonic::codegen::StdError,
>;

/// What the gateway's gRPC clients call: the connection pool to the
/// directory service's pods, or the service itself in the same process. Either way the
/// request carries the same metadata (request id, trace context, the
/// internal credential, which the directory service checks in both cases)
/// and the same protobuf messages; only HTTP/2 is left out of the direct one.
/// `DirectoryService` goes through here only as [`crate::remote::RemoteDirectory`]
/// (`roster gateway`); in `roster serve` it is called through its trait.
#[derive(Clone)]
pub enum Upstream {
    /// HTTP/2 over TCP (optionally mutual TLS) to the directory service's pods.
    Pool(Pool),
    /// A direct call; `timeout` bounds the time to the response's head, as
    /// the tonic server does with the request's `grpc-timeout`.
    Direct {
        /// The directory service.
        service: DirectService,
        /// The per-call deadline.
        timeout: Duration,
    },
}

impl tower::Service<tonic::codegen::http::Request<tonic::body::Body>> for Upstream {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = tonic::codegen::StdError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        match self {
            Self::Pool(pool) => tower::Service::poll_ready(pool, cx),
            Self::Direct { service, .. } => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        match self {
            Self::Pool(pool) => Box::pin(pool.clone().send(request)),
            Self::Direct { service, timeout } => {
                let (call, timeout) = (service.call(request), *timeout);
                Box::pin(async move {
                    match tokio::time::timeout(timeout, call).await {
                        Ok(result) => result,
                        Err(_) => Ok(roster_proto::contract::deadline_exceeded().into_http()),
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_host_and_port() {
        let t = Target::parse("http://roster-directory:50051").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("roster-directory", 50051));
        let t = Target::parse("http://[::1]:7").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7));
        let t = Target::parse("https://dir.example").unwrap();
        assert_eq!(t.port, 443);
        assert!(Target::parse("not a uri").is_err());
        assert!(Target::parse("/path-only").is_err());
    }

    /// Answers from a script, one per resolution.
    struct Script(std::sync::Mutex<Vec<io::Result<Vec<SocketAddr>>>>);

    impl Resolve for Script {
        fn resolve<'a>(&'a self, _: &'a str, _: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
            let next = self.0.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    /// The pool's members, sorted.
    fn members(pool: &Pool) -> Vec<Dial> {
        let mut members = pool.members();
        members.sort_by_key(|d| format!("{d:?}"));
        members
    }

    #[tokio::test]
    async fn failed_or_empty_resolutions_keep_the_last_known_addresses() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.2:1".parse().unwrap(),
            "127.0.0.3:1".parse().unwrap(),
        );
        let script = Script(std::sync::Mutex::new(vec![
            Err(io::Error::other("SERVFAIL")),
            Ok(vec![a, b]),
            Err(io::Error::other("SERVFAIL")),
            Ok(vec![]),
            Ok(vec![b]),
        ]));
        let config = GatewayConfig {
            directory_endpoint: "http://dir:1".into(),
            ..Default::default()
        };
        let pool = Pool::new(PoolConfig {
            scheme: http::uri::Scheme::HTTP,
            authority: "dir:1".parse().unwrap(),
            host: "dir".into(),
            port: 1,
            tls: None,
            ping_interval: pool::PING_INTERVAL,
            ping_timeout: pool::PING_TIMEOUT,
        });
        let mut follower = Follower {
            target: Target::parse(&config.directory_endpoint).unwrap(),
            pool: pool.downgrade(),
            resolver: Arc::new(script),
            known: HashSet::new(),
            failing: false,
        };
        let mut step = async || {
            assert!(follower.refresh().await.is_ok());
            members(&pool)
        };
        assert_eq!(
            step().await,
            vec![Dial::Host],
            "nothing known: the configured endpoint stays"
        );
        assert_eq!(step().await, vec![Dial::Addr(a), Dial::Addr(b)]);
        assert_eq!(
            step().await,
            vec![Dial::Addr(a), Dial::Addr(b)],
            "a failure keeps the set"
        );
        assert_eq!(
            step().await,
            vec![Dial::Addr(a), Dial::Addr(b)],
            "an empty answer keeps the set"
        );
        assert_eq!(step().await, vec![Dial::Addr(b)]);
        drop(pool);
        assert!(
            follower.refresh().await.is_err(),
            "the task ends with the pool"
        );
    }
}
