//! An endpoint's own HTTP/1.1 connection, driven by the endpoint's task.
//!
//! A delivery is one request at a time on one connection, so the client
//! needs no pool and no task per connection: the endpoint task polls the
//! connection while it waits for its answer, and the connection sits idle
//! (unpolled) in between. This is what reqwest did for us at about twice
//! the CPU: its pool, its redirect and retry layers (each re-parsing the
//! URL) and a second task woken for every request (docs/performance.md).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::http::uri::PathAndQuery;
use hyper::http::{HeaderValue, Uri};
use hyper_util::rt::TokioIo;
use prost::bytes::Bytes;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use super::client::{UrlError, check_url, is_private};
use super::config::WebhookConfig;

/// A connection idle longer than this is not reused: receivers behind
/// load balancers close theirs after about a minute, and a request on a
/// connection closed without a word would wait for its timeout.
const IDLE_REUSE: Duration = Duration::from_secs(50);

/// Where an endpoint's requests go, parsed once from its URL.
#[derive(Debug, Clone)]
pub struct Target {
    tls: bool,
    /// The name to resolve and, over TLS, to verify (IPv6 without brackets).
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority.
    authority: HeaderValue,
    path: Uri,
}

impl Target {
    /// The URL checked as [`check_url`] does.
    pub fn parse(url: &str, config: &WebhookConfig) -> Result<Self, UrlError> {
        let url = check_url(url, config)?;
        let malformed = |what: &str| UrlError::Malformed(what.into());
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(v4)) => v4.to_string(),
            Some(url::Host::Ipv6(v6)) => v6.to_string(),
            None => return Err(malformed("no host")),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| malformed("no port"))?;
        let authority = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(malformed("no host")),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let path = PathAndQuery::try_from(path).map_err(|e| malformed(&e.to_string()))?;
        Ok(Self {
            tls: url.scheme() == "https",
            host,
            port,
            authority: HeaderValue::try_from(authority).map_err(|e| malformed(&e.to_string()))?,
            path: Uri::from(path),
        })
    }

    pub(super) fn authority(&self) -> &HeaderValue {
        &self.authority
    }

    pub(super) fn path(&self) -> &Uri {
        &self.path
    }

    fn same_server(&self, other: &Self) -> bool {
        self.tls == other.tls && self.port == other.port && self.host == other.host
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, io::Error),
    #[error("{0} resolves to no allowed (public) address")]
    NoAllowedAddress(String),
    #[error("{0}: {1}")]
    Tcp(SocketAddr, io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, io::Error),
    #[error("{0} is not a valid TLS server name")]
    ServerName(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP handshake: {0}")]
    Handshake(hyper::Error),
}

/// Opens connections: resolves with the system resolver, drops private
/// addresses (unless allowed), so a public name pointing inside the network
/// is refused when it is called, not only when it is configured.
pub struct Connector {
    allow_private: bool,
    timeout: Duration,
    tls: tokio_rustls::TlsConnector,
}

impl Connector {
    pub fn new(config: &WebhookConfig, tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            allow_private: config.allow_private,
            timeout: config.connect_timeout,
            tls: tokio_rustls::TlsConnector::from(tls),
        }
    }

    /// A new connection to `target`, within the connect timeout.
    async fn connect(&self, target: &Target) -> Result<Live, ConnectError> {
        tokio::time::timeout(self.timeout, self.open(target))
            .await
            .map_err(|_| ConnectError::Timeout(self.timeout))?
    }

    async fn open(&self, target: &Target) -> Result<Live, ConnectError> {
        let tcp = self.tcp(target).await?;
        let stream = if target.tls {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| ConnectError::ServerName(target.host.clone()))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError::Tls(target.host.clone(), e))?;
            Either::Right(Box::new(tls))
        } else {
            Either::Left(tcp)
        };
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        Ok(Live {
            target: target.clone(),
            sender,
            driver: Some(Box::pin(driver)),
            idle_since: Instant::now(),
        })
    }

    async fn tcp(&self, target: &Target) -> Result<TcpStream, ConnectError> {
        let found = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| ConnectError::Resolve(target.host.clone(), e))?;
        let allowed: Vec<SocketAddr> = found
            .filter(|a| self.allow_private || !is_private(a.ip()))
            .collect();
        let mut last = ConnectError::NoAllowedAddress(target.host.clone());
        for addr in allowed {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    // Small requests, answered at once: no Nagle delay.
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Err(e) => last = ConnectError::Tcp(addr, e),
            }
        }
        Err(last)
    }
}

/// The connection future hyper needs polled for its requests to progress.
type Driver = http1::Connection<TokioIo<Stream>, Full<Bytes>>;

/// An open connection.
struct Live {
    target: Target,
    sender: http1::SendRequest<Full<Bytes>>,
    /// `None` once the connection ended.
    driver: Option<Pin<Box<Driver>>>,
    idle_since: Instant,
}

/// An endpoint's connection, open or not.
#[derive(Default)]
pub struct Connection {
    live: Option<Live>,
    /// [`IDLE_REUSE`] unless a test shortens it.
    idle_limit: Option<Duration>,
}

/// What a request got: the status and the body's first bytes.
pub struct Answer {
    pub status: u16,
    pub prefix: Vec<u8>,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("connect: {0}")]
    Connect(#[from] ConnectError),
    #[error("request: {}", chain(.0))]
    Http(#[from] hyper::Error),
}

impl Connection {
    /// Sends `request` to `target` on this connection, or on a new one when
    /// there is none, it goes elsewhere, it was closed or idle too long. A
    /// request that a reused connection could not even send (it was closed
    /// as the request left) goes out on a new one; one that was sent and
    /// got no answer is a failed attempt.
    pub async fn send(
        &mut self,
        connector: &Connector,
        target: &Target,
        request: hyper::Request<Full<Bytes>>,
        prefix_limit: usize,
    ) -> Result<Answer, RequestError> {
        let request = match self.reusable(target) {
            Some(live) => match self.exchange(live, request, prefix_limit).await {
                Err(Failed {
                    unsent: Some(request),
                    error,
                }) => {
                    tracing::debug!(error = %error, "a reused webhook connection was closed; sending on a new one");
                    request
                }
                done => return done.map_err(|f| f.error),
            },
            None => request,
        };
        let live = connector.connect(target).await?;
        let answered = self.exchange(live, request, prefix_limit).await;
        answered.map_err(|f| f.error)
    }

    /// Resolves once the open connection has been idle for `IDLE_REUSE`,
    /// and closes it; never while none is open. An endpoint waiting for
    /// events awaits this too, so an idle endpoint holds no socket (also
    /// none that the receiver closed and nobody read) for longer than that.
    pub async fn idle_end(&mut self) {
        let Some(live) = &self.live else {
            return std::future::pending().await;
        };
        let deadline = live.idle_since + self.idle_limit();
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
        self.live = None;
    }

    fn idle_limit(&self) -> Duration {
        self.idle_limit.unwrap_or(IDLE_REUSE)
    }

    /// The open connection if it can carry a request to `target`.
    fn reusable(&mut self, target: &Target) -> Option<Live> {
        let mut live = self.live.take()?;
        if !live.target.same_server(target) || live.idle_since.elapsed() > self.idle_limit() {
            return None;
        }
        // Lets hyper read what arrived while nobody polled: a connection
        // it finds broken is not reused (one the receiver merely closed
        // fails the request as unsent, which `send` sends again).
        if let Some(driver) = live.driver.as_mut()
            && driver.as_mut().now_or_never().is_some()
        {
            return None;
        }
        (live.driver.is_some() && !live.sender.is_closed()).then_some(live)
    }

    /// One request and the first bytes of its answer; keeps the connection
    /// when the answer was read to its end and the connection stays open.
    async fn exchange(
        &mut self,
        mut live: Live,
        request: hyper::Request<Full<Bytes>>,
        prefix_limit: usize,
    ) -> Result<Answer, Failed> {
        if let Err(error) = drive(&mut live.driver, live.sender.ready()).await {
            let unsent = Some(request);
            return Err(Failed {
                unsent,
                error: error.into(),
            });
        }
        let sent = live.sender.try_send_request(request);
        let response = match drive(&mut live.driver, sent).await {
            Ok(response) => response,
            Err(mut e) => {
                let unsent = e.take_message();
                let error = e.into_error().into();
                return Err(Failed { unsent, error });
            }
        };
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut prefix = Vec::new();
        let complete = loop {
            match drive(&mut live.driver, body.frame()).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let room = prefix_limit.saturating_sub(prefix.len());
                        prefix.extend_from_slice(&data[..data.len().min(room)]);
                        if data.len() > room {
                            // A long answer is not read to its end: the
                            // connection goes with it.
                            break false;
                        }
                    }
                }
                Some(Err(_)) => break false,
                None => break true,
            }
        };
        if complete && live.driver.is_some() {
            live.idle_since = Instant::now();
            self.live = Some(live);
        }
        Ok(Answer { status, prefix })
    }
}

/// A request that got no answer, and the request itself when it was never
/// written to the connection.
struct Failed {
    unsent: Option<hyper::Request<Full<Bytes>>>,
    error: RequestError,
}

/// Awaits `fut` while polling the connection it needs; once the connection
/// ends, `fut` resolves on its own (hyper fails what was in flight).
async fn drive<F: Future>(driver: &mut Option<Pin<Box<Driver>>>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Some(d) = driver.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            *driver = None;
        }
        fut.as_mut().poll(cx)
    })
    .await
}

/// An error with its causes (hyper's own message alone is often only
/// "connection error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Plain TCP, or TLS over it.
type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use roster_testkit::app::webhooks::{Reply, serve_http1};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::webhooks::client::{Response, Sender, Signed};

    /// How the test receiver answers each request of a connection.
    #[derive(Clone, Copy)]
    enum Script {
        /// `202 Accepted`, "ok", connection kept.
        KeepAlive,
        /// As `KeepAlive`, then the receiver closes the connection unasked
        /// (as an idle timeout does).
        CloseAfter,
        /// `Connection: close` in the answer.
        CloseHeader,
        /// A body of 1,000 bytes.
        Long,
    }

    /// A loopback HTTP/1.1 receiver; counts connections and requests.
    struct Receiver {
        port: u16,
        connections: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
        /// A message each time the receiver has closed a connection.
        closed: mpsc::UnboundedReceiver<()>,
    }

    impl Receiver {
        async fn start(script: Script, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let connections = Arc::new(AtomicUsize::new(0));
            let requests = Arc::new(AtomicUsize::new(0));
            let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
            let (closing, closed) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    c.fetch_add(1, Ordering::SeqCst);
                    let (r, tls, closing) = (Arc::clone(&r), tls.clone(), closing.clone());
                    tokio::spawn(async move {
                        match tls {
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(tcp).await {
                                    serve(stream, script, r).await;
                                }
                            }
                            None => serve(tcp, script, r).await,
                        }
                        let _ = closing.send(());
                    });
                }
            });
            Self {
                port,
                connections,
                requests,
                closed,
            }
        }

        fn counts(&self) -> (usize, usize) {
            let c = self.connections.load(Ordering::SeqCst);
            (c, self.requests.load(Ordering::SeqCst))
        }
    }

    /// Answers requests on one connection as `script` says.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        stream: S,
        script: Script,
        requests: Arc<AtomicUsize>,
    ) {
        serve_http1(stream, || {
            requests.fetch_add(1, Ordering::SeqCst);
            let response = match script {
                Script::KeepAlive | Script::CloseAfter => {
                    "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok".to_owned()
                }
                Script::CloseHeader => {
                    "HTTP/1.1 202 Accepted\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
                        .to_owned()
                }
                Script::Long => format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{}",
                    "x".repeat(1000)
                ),
            };
            let close = matches!(script, Script::CloseAfter | Script::CloseHeader);
            Reply {
                response: response.into_bytes(),
                close,
            }
        })
        .await;
    }

    fn config(allow_private: bool) -> Arc<WebhookConfig> {
        Arc::new(WebhookConfig {
            allow_http: true,
            allow_private,
            response_prefix_bytes: 16,
            ..WebhookConfig::default()
        })
    }

    async fn post(
        sender: &Sender,
        connection: &mut Connection,
        url: &str,
        config: &WebhookConfig,
    ) -> Response {
        let target = Target::parse(url, config);
        let request = Signed {
            msg_id: "msg_1",
            timestamp: 1,
            signature: "v1,c2ln".into(),
            body: Bytes::from_static(b"{}"),
        };
        sender.send(connection, &target, request).await
    }

    /// Sends three requests on one connection; the answers and the
    /// receiver's (connections, requests).
    async fn three(script: Script) -> (Vec<Response>, (usize, usize)) {
        let mut receiver = Receiver::start(script, None).await;
        let config = config(true);
        let sender = Sender::new(Arc::clone(&config)).unwrap();
        let url = format!("http://127.0.0.1:{}/hook?x=1", receiver.port);
        let mut connection = Connection::default();
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(post(&sender, &mut connection, &url, &config).await);
            if !matches!(script, Script::KeepAlive) {
                // The receiver's close arrives before the next request, as
                // it does between two deliveries.
                receiver.closed.recv().await;
            }
        }
        (answers, receiver.counts())
    }

    #[tokio::test]
    async fn one_connection_carries_every_request() {
        let (answers, counts) = three(Script::KeepAlive).await;
        assert!(
            answers
                .iter()
                .all(|a| a.status == Some(202) && a.detail == "ok")
        );
        assert_eq!(counts, (1, 3));
    }

    #[tokio::test]
    async fn a_connection_the_receiver_closed_is_replaced_without_a_failure() {
        for script in [Script::CloseAfter, Script::CloseHeader] {
            let (answers, counts) = three(script).await;
            let statuses: Vec<_> = answers.iter().map(|a| a.status).collect();
            assert_eq!(statuses, [Some(202); 3], "{:?}", answers);
            assert_eq!(counts, (3, 3));
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_limit() {
        let mut connection = Connection {
            idle_limit: Some(Duration::from_millis(50)),
            ..Connection::default()
        };
        assert!(connection.idle_end().now_or_never().is_none(), "none open");
        let mut receiver = Receiver::start(Script::KeepAlive, None).await;
        let config = config(true);
        let sender = Sender::new(Arc::clone(&config)).unwrap();
        let url = format!("http://127.0.0.1:{}/hook", receiver.port);
        let answer = post(&sender, &mut connection, &url, &config).await;
        assert_eq!(answer.status, Some(202));
        assert!(connection.live.is_some(), "kept after the answer");
        connection.idle_end().await;
        assert!(connection.live.is_none());
        // The receiver sees the connection closed.
        receiver.closed.recv().await;
        assert_eq!(receiver.counts(), (1, 1));
    }

    #[tokio::test]
    async fn a_long_answer_is_cut_and_its_connection_not_reused() {
        let (answers, counts) = three(Script::Long).await;
        for a in &answers {
            assert_eq!(
                (a.status, a.detail.as_str()),
                (Some(200), "x".repeat(16).as_str())
            );
        }
        assert_eq!(counts, (3, 3));
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_private_address_is_refused() {
        let receiver = Receiver::start(Script::KeepAlive, None).await;
        let config = config(false);
        let sender = Sender::new(Arc::clone(&config)).unwrap();
        let url = format!("http://localhost:{}/hook", receiver.port);
        let answer = post(&sender, &mut Connection::default(), &url, &config).await;
        assert_eq!(answer.status, None);
        assert!(
            answer.detail.contains("no allowed (public) address"),
            "{}",
            answer.detail
        );
        assert_eq!(receiver.counts(), (0, 0));
    }

    #[tokio::test]
    async fn https_is_verified_against_the_trusted_roots() {
        let ca = roster_tls::testing::Ca::new("receivers");
        let leaf = ca.leaf(&["localhost"]);
        let chain = vec![leaf.der.clone()];
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let receiver = Receiver::start(Script::KeepAlive, Some(acceptor)).await;
        let url = format!("https://localhost:{}/hook", receiver.port);
        let ca_der = CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap();
        let config = Arc::new(WebhookConfig {
            allow_private: true,
            extra_roots: vec![ca_der],
            ..WebhookConfig::default()
        });
        let trusting = Sender::new(Arc::clone(&config)).unwrap();
        let mut connection = Connection::default();
        for _ in 0..2 {
            let answer = post(&trusting, &mut connection, &url, &config).await;
            assert_eq!(answer.status, Some(202), "{}", answer.detail);
        }
        assert_eq!(receiver.counts(), (1, 2));

        // The public roots do not know the test CA.
        let config = Arc::new(WebhookConfig {
            extra_roots: Vec::new(),
            ..(*config).clone()
        });
        let public = Sender::new(Arc::clone(&config)).unwrap();
        let answer = post(&public, &mut Connection::default(), &url, &config).await;
        assert_eq!(answer.status, None);
        assert!(
            answer.detail.starts_with("connect: TLS"),
            "{}",
            answer.detail
        );
        assert_eq!(receiver.counts().1, 2);
    }
}
