//! The gateway's channel to the directory service: one connection per
//! resolved address of the endpoint's host, balanced, following DNS.
//!
//! tonic resolves a host name once per connection, so a single channel to a
//! headless Service sticks to one pod, and pods added later get no traffic.
//! Here a background task re-resolves the host every `directory_refresh` and
//! feeds the differences to tonic's balance channel. When resolution fails or
//! returns nothing the last known set stays; before anything was ever
//! resolved the channel holds the endpoint as configured, so calls fail fast
//! (503) instead of waiting for an address.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use roster_tls::{Pem, Reloading, TlsError, TlsFiles};
use tokio::sync::mpsc::Sender;
use tonic::transport::channel::Change;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use crate::config::GatewayConfig;
use crate::state::StartError;

/// Pending changes the balancer may buffer.
const CHANGE_BUFFER: usize = 64;

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

/// What the balancer knows a connection by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// The endpoint as configured (tonic resolves it when connecting); only
    /// present while no address is known.
    Configured,
    Addr(SocketAddr),
}

/// The configured endpoint, split into what resolution needs.
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

    /// The URI of one resolved address, with the configured scheme.
    fn uri_of(&self, addr: SocketAddr) -> Uri {
        let scheme = self.uri.scheme_str().unwrap_or("http");
        format!("{scheme}://{addr}")
            .parse()
            .expect("a scheme and a socket address form a URI")
    }
}

/// Builds the balanced, DNS-following channel and starts its resolver task
/// (must run inside a Tokio runtime). The task ends when the channel is
/// dropped.
pub fn balanced_channel(
    config: &GatewayConfig,
    resolver: Arc<dyn Resolve>,
) -> Result<Channel, StartError> {
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
        Some(files) => Some(client_tls(files.clone(), &target.host)?),
        None => None,
    };
    let template = Template::new(&target, tls);
    let (channel, changes) = Channel::balance_channel(CHANGE_BUFFER);
    changes
        .try_send(Change::Insert(
            Key::Configured,
            template.endpoint(target.uri.clone()),
        ))
        .expect("a new balance channel has room for one change");
    let follower = Follower {
        target,
        template,
        resolver,
        changes,
        known: HashSet::new(),
        failing: false,
    };
    tokio::spawn(follower.run(config.directory_refresh));
    Ok(channel)
}

/// The gateway's side of mutual TLS, following its files. Every address
/// is verified against the endpoint's host name, not its IP.
fn client_tls(files: TlsFiles, host: &str) -> Result<Reloading<ClientTlsConfig>, TlsError> {
    let host = host.to_owned();
    Reloading::load(files, move |pem: &Pem| {
        let config = tls_config(pem, &host);
        // tonic checks the pieces only when an endpoint takes them: do it
        // now, so bad files fail at start (or are skipped on reload).
        Channel::builder(Uri::from_static("https://check.invalid"))
            .tls_config(config.clone())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(config)
    })
}

/// A client configuration presenting `pem`'s certificate and accepting a
/// server certificate for `host` signed by `pem`'s CA.
pub fn tls_config(pem: &Pem, host: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .domain_name(host)
        .ca_certificate(Certificate::from_pem(&pem.ca_pem))
        .identity(Identity::from_pem(&pem.cert_pem, &pem.key_pem))
}

/// The settings every connection to the directory service shares.
struct Template {
    origin: Uri,
    tls: Option<Reloading<ClientTlsConfig>>,
}

impl Template {
    fn new(target: &Target, tls: Option<Reloading<ClientTlsConfig>>) -> Self {
        Self {
            origin: target.uri.clone(),
            tls,
        }
    }

    fn endpoint(&self, uri: Uri) -> Endpoint {
        // Requests keep the configured authority whichever pod they reach.
        let endpoint = Channel::builder(uri)
            .origin(self.origin.clone())
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let Some(tls) = &self.tls else {
            return endpoint;
        };
        // Checked when loaded; should it fail anyway, the https endpoint
        // without TLS refuses to connect (503), it never goes plain.
        endpoint
            .clone()
            .tls_config(tls.get().as_ref().clone())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot apply the directory TLS configuration");
                endpoint
            })
    }

    /// Whether the TLS files changed (and were reloaded) since the last look.
    fn tls_rotated(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.reload())
    }
}

/// The resolver task's state.
struct Follower {
    target: Target,
    template: Template,
    resolver: Arc<dyn Resolve>,
    changes: Sender<Change<Key, Endpoint>>,
    /// The addresses the balancer holds; empty while it holds `Configured`.
    known: HashSet<SocketAddr>,
    /// Whether the last resolution failed (to log only the transitions).
    failing: bool,
}

impl Follower {
    async fn run(mut self, every: Duration) {
        loop {
            if self.refresh().await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.changes.closed() => return,
            }
        }
    }

    /// Resolves once and applies the difference; `Err` when the channel is gone.
    async fn refresh(&mut self) -> Result<(), Closed> {
        if self.template.tls_rotated() {
            self.reconnect_all().await?;
        }
        let resolved = self
            .resolver
            .resolve(&self.target.host, self.target.port)
            .await;
        match resolved {
            Ok(addrs) if !addrs.is_empty() => {
                self.failing = false;
                self.apply(addrs.into_iter().collect()).await
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

    /// Inserts the new addresses before removing anything, so the balancer
    /// is never left empty.
    async fn apply(&mut self, addrs: HashSet<SocketAddr>) -> Result<(), Closed> {
        if addrs == self.known {
            return Ok(());
        }
        let added: Vec<_> = addrs.difference(&self.known).copied().collect();
        let removed: Vec<_> = self.known.difference(&addrs).copied().collect();
        for addr in &added {
            let endpoint = self.template.endpoint(self.target.uri_of(*addr));
            self.send(Change::Insert(Key::Addr(*addr), endpoint))
                .await?;
        }
        if self.known.is_empty() {
            self.send(Change::Remove(Key::Configured)).await?;
        }
        for addr in &removed {
            self.send(Change::Remove(Key::Addr(*addr))).await?;
        }
        tracing::info!(?added, ?removed, "directory service addresses changed");
        self.known = addrs;
        Ok(())
    }

    /// Replaces every connection (new ones present the rotated certificate);
    /// the balancer swaps each one once its replacement is ready.
    async fn reconnect_all(&mut self) -> Result<(), Closed> {
        let keys: Vec<Key> = if self.known.is_empty() {
            vec![Key::Configured]
        } else {
            self.known.iter().copied().map(Key::Addr).collect()
        };
        for key in keys {
            let uri = match &key {
                Key::Configured => self.target.uri.clone(),
                Key::Addr(addr) => self.target.uri_of(*addr),
            };
            let endpoint = self.template.endpoint(uri);
            self.send(Change::Insert(key, endpoint)).await?;
        }
        Ok(())
    }

    async fn send(&self, change: Change<Key, Endpoint>) -> Result<(), Closed> {
        self.changes.send(change).await.map_err(|_| Closed)
    }
}

/// The balance channel was dropped.
struct Closed;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_host_and_port() {
        let t = Target::parse("http://roster-directory:50051").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("roster-directory", 50051));
        let t = Target::parse("http://[::1]:7").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7));
        assert_eq!(
            t.uri_of("[::1]:7".parse().unwrap()).to_string(),
            "http://[::1]:7/"
        );
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

    /// The changes sent so far, as (inserted?, key).
    fn drain(rx: &mut tokio::sync::mpsc::Receiver<Change<Key, Endpoint>>) -> Vec<(bool, Key)> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| match c {
                Change::Insert(k, _) => (true, k),
                Change::Remove(k) => (false, k),
            })
            .collect()
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
        let (changes, mut rx) = tokio::sync::mpsc::channel(16);
        let target = Target::parse("http://dir:1").unwrap();
        let mut follower = Follower {
            template: Template::new(&target, None),
            target,
            resolver: Arc::new(script),
            changes,
            known: HashSet::new(),
            failing: false,
        };
        let mut step = async || {
            assert!(follower.refresh().await.is_ok());
            let mut sent = drain(&mut rx);
            sent.sort_by_key(|(_, k)| format!("{k:?}"));
            sent
        };
        assert_eq!(
            step().await,
            vec![],
            "nothing known: the configured endpoint stays"
        );
        assert_eq!(
            step().await,
            vec![
                (true, Key::Addr(a)),
                (true, Key::Addr(b)),
                (false, Key::Configured)
            ]
        );
        assert_eq!(step().await, vec![], "a failure keeps the set");
        assert_eq!(step().await, vec![], "an empty answer keeps the set");
        assert_eq!(step().await, vec![(false, Key::Addr(a))]);
    }
}

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

/// What the gateway's gRPC clients call: a channel to the directory
/// service's pods, or the service itself in the same process. Either way the
/// request carries the same metadata (request id, trace context, the
/// internal credential, which the directory service checks in both cases)
/// and the same protobuf messages; only HTTP/2 is left out of the direct one.
/// `DirectoryService` goes through here only as [`crate::remote::RemoteDirectory`]
/// (`roster gateway`); in `roster serve` it is called through its trait.
#[derive(Clone)]
pub enum Upstream {
    /// tonic over HTTP/2: TCP (optionally mutual TLS) or an in-process pipe.
    Channel(Channel),
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
            Self::Channel(channel) => tower::Service::poll_ready(channel, cx).map_err(Into::into),
            Self::Direct { service, .. } => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        match self {
            Self::Channel(channel) => {
                let call = tower::Service::call(channel, request);
                Box::pin(async move { call.await.map_err(Into::into) })
            }
            Self::Direct { service, timeout } => {
                let (call, timeout) = (service.call(request), *timeout);
                Box::pin(async move {
                    match tokio::time::timeout(timeout, call).await {
                        Ok(result) => result,
                        // What tonic's server answers when a call's deadline passes.
                        Err(_) => Ok(tonic::Status::cancelled("Timeout expired").into_http()),
                    }
                })
            }
        }
    }
}
