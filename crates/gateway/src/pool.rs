//! The gateway's HTTP/2 connections to the directory service (`roster
//! gateway`), driven with `h2` directly rather than through tonic's
//! `Channel`.
//!
//! Why not tonic's balance channel: a call through it crosses a buffer task
//! in front of the balancer, hyper's dispatch queue into the connection task
//! and a response task hyper spawns per request, and each crossing can be a
//! thread wake-up (without them a lone call costs the split deployment 15 %
//! less CPU; docs/performance.md, fourteenth session). Here the caller
//! opens the stream itself (h2 keeps the connection's state under a lock),
//! puts the request's HEADERS and DATA in h2's send buffer together, and is
//! woken by the connection task when the response arrives.
//!
//! The pool holds one connection per member (an address the endpoint's host
//! resolves to, or the endpoint as configured before any was resolved;
//! `upstream.rs` keeps the set current) and hands calls round robin to the
//! members whose connection is up. A member found down is redialled in the
//! background when its turn comes, at most once per [`REDIAL_AFTER`]; when no
//! member is up, the call waits for whichever member's dial succeeds first
//! (bounded by [`CONNECT_TIMEOUT`]) and fails with UNAVAILABLE if none does.
//! A request the server never saw (the connection had closed or sent GOAWAY
//! before the stream opened, or the server refused the stream) is sent once
//! more.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use http::header::USER_AGENT;
use http::{HeaderValue, Request, Response, Uri, uri};
use http_body::Frame;
use http_body_util::BodyExt as _;
use roster_tls::{ClientConfig, Reloading};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long a dial (TCP connect, then TLS and HTTP/2 handshakes) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A member whose dial failed is redialled in the background no sooner.
pub const REDIAL_AFTER: Duration = Duration::from_secs(1);
/// Every connection is pinged this often by default; one whose peer has
/// not answered within [`PING_TIMEOUT`] is closed (a pod that vanished
/// without a FIN would otherwise hold its calls until the request timeout).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// See [`PING_INTERVAL`].
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// hyper's client windows (what tonic's channel used): a `ReadGroup` stream
/// of a large group is not held back by HTTP/2's 64 KiB default.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a member connects to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dial {
    /// The endpoint's host, resolved when dialling (before any address is
    /// known).
    Host,
    /// One resolved address.
    Addr(SocketAddr),
}

/// Where and how the pool connects.
pub struct PoolConfig {
    /// `http` or `https`; with the authority, what every request carries
    /// whichever pod it reaches.
    pub scheme: uri::Scheme,
    /// The endpoint's authority as configured.
    pub authority: uri::Authority,
    /// The endpoint's host (also the name the server certificate must bear).
    pub host: String,
    /// The endpoint's port.
    pub port: u16,
    /// Mutual TLS, following its files; `None` for plain HTTP/2.
    pub tls: Option<Reloading<ClientConfig>>,
    /// How often each connection is pinged ([`PING_INTERVAL`]).
    pub ping_interval: Duration,
    /// How long a ping may go unanswered ([`PING_TIMEOUT`]).
    pub ping_timeout: Duration,
}

/// See the module docs. Cheap to clone; the connections close when the last
/// clone is dropped and their calls are done.
#[derive(Clone)]
pub struct Pool(Arc<Inner>);

/// A handle that does not keep the pool alive (the DNS follower's).
#[derive(Clone)]
pub struct WeakPool(Weak<Inner>);

struct Inner {
    config: PoolConfig,
    members: RwLock<Vec<Arc<Member>>>,
    turn: AtomicUsize,
}

impl Pool {
    /// A pool whose one member dials the host as configured (when the first
    /// call comes).
    pub fn new(config: PoolConfig) -> Self {
        let pool = Self(Arc::new(Inner {
            config,
            members: RwLock::new(Vec::new()),
            turn: AtomicUsize::new(0),
        }));
        pool.insert(Dial::Host);
        pool
    }

    /// A handle that does not keep the pool alive.
    pub fn downgrade(&self) -> WeakPool {
        WeakPool(Arc::downgrade(&self.0))
    }

    /// What the members dial, in no particular order.
    pub fn members(&self) -> Vec<Dial> {
        self.0.members().iter().map(|m| m.dial.clone()).collect()
    }

    /// Adds a member unless present; it is dialled when its turn comes.
    pub fn insert(&self, dial: Dial) {
        let mut members = self.0.members.write().unwrap_or_else(|p| p.into_inner());
        if !members.iter().any(|m| m.dial == dial) {
            members.push(Arc::new(Member::new(dial)));
        }
    }

    /// Removes a member; its connection closes once its calls are done.
    pub fn remove(&self, dial: &Dial) {
        let mut members = self.0.members.write().unwrap_or_else(|p| p.into_inner());
        members.retain(|m| m.dial != *dial);
    }

    /// Whether the TLS files changed (and were reloaded) since the last look.
    pub fn tls_rotated(&self) -> bool {
        self.0.config.tls.as_ref().is_some_and(Reloading::reload)
    }

    /// Opens a new connection for every member (presenting a rotated
    /// certificate); each replaces the old one once it is up.
    pub fn redial_all(&self) {
        for member in self.0.members().iter() {
            member.replace(&self.0);
        }
    }

    /// Sends `request` and returns the response whose body streams from the
    /// connection. Errors are tonic's to turn into a status: a failed dial
    /// is UNAVAILABLE, an `h2` error the code tonic gives it. A request the
    /// server never processed is sent once more.
    pub async fn send(
        self,
        request: Request<tonic::body::Body>,
    ) -> Result<Response<tonic::body::Body>, BoxError> {
        let outgoing = Outgoing::collect(request, &self.0).await?;
        match self.0.attempt(&outgoing).await {
            Err(Attempt::Unprocessed(_)) => {
                roster_telemetry::metrics::metrics().directory_resent.inc();
                self.0.attempt(&outgoing).await
            }
            answer => answer,
        }
        .map_err(Attempt::into_error)
    }
}

/// A request ready to be sent, as often as needed.
struct Outgoing {
    method: http::Method,
    uri: Uri,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Outgoing {
    async fn collect(request: Request<tonic::body::Body>, pool: &Inner) -> Result<Self, BoxError> {
        let (parts, body) = request.into_parts();
        // Every call the gateway makes sends one message (unary or
        // server-streaming): collecting it lets HEADERS and DATA leave together.
        let body = body.collect().await?.to_bytes();
        let mut headers = parts.headers;
        headers
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(concat!(
                "roster-gateway/",
                env!("CARGO_PKG_VERSION")
            )));
        Ok(Self {
            method: parts.method,
            uri: pool.absolute(&parts.uri)?,
            headers,
            body,
        })
    }

    fn head(&self) -> Request<()> {
        let mut head = Request::new(());
        *head.method_mut() = self.method.clone();
        *head.uri_mut() = self.uri.clone();
        *head.version_mut() = http::Version::HTTP_2;
        *head.headers_mut() = self.headers.clone();
        head
    }
}

/// Why one attempt at a call failed.
enum Attempt {
    /// The server never processed the request: it may be sent again.
    Unprocessed(h2::Error),
    Failed(BoxError),
}

impl Attempt {
    fn into_error(self) -> BoxError {
        match self {
            Self::Unprocessed(e) => e.into(),
            Self::Failed(e) => e,
        }
    }
}

impl WeakPool {
    /// The pool, while anything else holds it.
    pub fn upgrade(&self) -> Option<Pool> {
        self.0.upgrade().map(Pool)
    }
}

impl tower::Service<Request<tonic::body::Body>> for Pool {
    type Response = Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}

/// RFC 9113 §8.7: a stream above a GOAWAY's last stream id, or refused
/// with REFUSED_STREAM, was not processed and may be sent again.
fn never_processed(e: &h2::Error) -> bool {
    let reason = e.reason();
    e.is_remote()
        && ((e.is_go_away() && reason == Some(h2::Reason::NO_ERROR))
            || (e.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM)))
}

impl Inner {
    fn members(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Member>>> {
        self.members.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The request's path under the configured scheme and authority.
    fn absolute(&self, uri: &Uri) -> Result<Uri, BoxError> {
        let mut parts = uri::Parts::default();
        parts.scheme = Some(self.config.scheme.clone());
        parts.authority = Some(self.config.authority.clone());
        parts.path_and_query = uri.path_and_query().cloned();
        Ok(Uri::from_parts(parts)?)
    }

    /// Sends `outgoing` on a connection of the pool.
    async fn attempt(
        self: &Arc<Self>,
        outgoing: &Outgoing,
    ) -> Result<Response<tonic::body::Body>, Attempt> {
        let (member, conn) = self.pick().await.map_err(Attempt::Failed)?;
        let unprocessed = match conn.start(outgoing.head(), outgoing.body.clone()) {
            Ok(response) => match response.await {
                Ok(response) => return Ok(response.map(|s| tonic::body::Body::new(Recv(s)))),
                Err(e) if never_processed(&e) => e,
                Err(e) => return Err(Attempt::Failed(e.into())),
            },
            // Refused before the stream opened: the connection is gone.
            Err(e) => e,
        };
        // A refused stream leaves its connection as it was; anything else
        // refused here means the connection takes no more streams.
        if !unprocessed.is_reset() {
            member.retire(&conn);
        }
        Err(Attempt::Unprocessed(unprocessed))
    }

    /// The member whose turn it is if its connection is up, else the next
    /// one up (redialling the skipped one in the background), else whichever
    /// member's dial succeeds first.
    async fn pick(self: &Arc<Self>) -> Result<(Arc<Member>, Conn), BoxError> {
        let dials: Vec<_> = {
            let members = self.members();
            let count = members.len();
            if count == 0 {
                return Err(unavailable("no directory service address is known"));
            }
            let start = self.turn.fetch_add(1, Ordering::Relaxed) % count;
            let in_turn = members.iter().cycle().skip(start).take(count);
            for (place, member) in in_turn.enumerate() {
                if let Some(conn) = member.up() {
                    return Ok((Arc::clone(member), conn));
                }
                if place == 0 {
                    member.dial_if_due(self);
                }
            }
            members
                .iter()
                .map(|member| {
                    let member = Arc::clone(member);
                    let dial = member.dial_now(self);
                    async move { dial.await.map(|conn| (member, conn)) }.boxed()
                })
                .collect()
        };
        match futures::future::select_ok(dials).await {
            Ok((picked, _)) => Ok(picked),
            Err(why) => Err(unavailable(&format!(
                "cannot connect to the directory service: {why}"
            ))),
        }
    }

    /// A new connection to `dial`.
    async fn open(&self, dial: &Dial) -> Result<Conn, BoxError> {
        let connect = async {
            let tcp = match dial {
                Dial::Addr(addr) => TcpStream::connect(addr).await?,
                Dial::Host => {
                    TcpStream::connect((self.config.host.as_str(), self.config.port)).await?
                }
            };
            tcp.set_nodelay(true)?;
            match &self.config.tls {
                None => Conn::handshake(tcp, &self.config).await,
                Some(tls) => {
                    let tls = roster_tls::connect(tls.get(), &self.config.host, tcp).await?;
                    Conn::handshake(tls, &self.config).await
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
    }
}

fn unavailable(message: &str) -> BoxError {
    Box::new(tonic::Status::unavailable(message))
}

/// A dial in progress, awaited by every call that needs it.
type Dialing = Shared<BoxFuture<'static, Result<Conn, Arc<str>>>>;

/// One address and its connection.
struct Member {
    dial: Dial,
    slot: Mutex<Slot>,
}

enum Slot {
    /// No connection; `failed` says when the last dial failed.
    Down {
        failed: Option<Instant>,
    },
    Dialing(Dialing),
    Up(Conn),
}

impl Member {
    fn new(dial: Dial) -> Self {
        Self {
            dial,
            slot: Mutex::new(Slot::Down { failed: None }),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection, if it is up.
    fn up(&self) -> Option<Conn> {
        let mut slot = self.slot();
        match &*slot {
            Slot::Up(conn) if conn.is_open() => Some(conn.clone()),
            Slot::Up(_) => {
                *slot = Slot::Down { failed: None };
                None
            }
            _ => None,
        }
    }

    /// The connection: up, being dialled, or dialled now.
    fn dial_now(self: &Arc<Self>, pool: &Arc<Inner>) -> Dialing {
        let mut slot = self.slot();
        match &*slot {
            Slot::Up(conn) if conn.is_open() => {
                futures::future::ready(Ok(conn.clone())).boxed().shared()
            }
            Slot::Dialing(dialing) => dialing.clone(),
            _ => {
                let dialing = self.spawn_dial(pool);
                *slot = Slot::Dialing(dialing.clone());
                dialing
            }
        }
    }

    /// Starts a dial unless one is running or the last failed too recently.
    fn dial_if_due(self: &Arc<Self>, pool: &Arc<Inner>) {
        let due = match &*self.slot() {
            Slot::Down { failed } => failed.is_none_or(|at| at.elapsed() >= REDIAL_AFTER),
            Slot::Up(conn) => !conn.is_open(),
            Slot::Dialing(_) => false,
        };
        if due {
            drop(self.dial_now(pool));
        }
    }

    /// Dials a replacement, keeping the current connection until it is up.
    fn replace(self: &Arc<Self>, pool: &Arc<Inner>) {
        let dialing = self.spawn_dial(pool);
        let mut slot = self.slot();
        if !matches!(*slot, Slot::Up(_)) {
            *slot = Slot::Dialing(dialing);
        }
    }

    /// Dials in a task of its own (a call that stops waiting does not stop
    /// it) that records the outcome in the slot.
    fn spawn_dial(self: &Arc<Self>, pool: &Arc<Inner>) -> Dialing {
        let (member, pool) = (Arc::clone(self), Arc::clone(pool));
        let task = tokio::spawn(async move {
            let outcome = pool
                .open(&member.dial)
                .await
                .map_err(|e| Arc::<str>::from(e.to_string()));
            member.settle(&outcome);
            outcome
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(Arc::from(format!("the dial task failed: {e}"))))
        }
        .boxed()
        .shared()
    }

    fn settle(&self, outcome: &Result<Conn, Arc<str>>) {
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        roster_telemetry::metrics::metrics()
            .directory_dials
            .get_or_create(&roster_telemetry::metrics::OutcomeLabels {
                outcome: label.into(),
            })
            .inc();
        let mut slot = self.slot();
        match outcome {
            Ok(conn) => *slot = Slot::Up(conn.clone()),
            Err(why) => {
                tracing::debug!(dial = ?self.dial, error = %why, "cannot connect to the directory service");
                // A failed replacement keeps the connection it was to replace.
                if !matches!(&*slot, Slot::Up(conn) if conn.is_open()) {
                    *slot = Slot::Down {
                        failed: Some(Instant::now()),
                    };
                }
            }
        }
    }

    /// Forgets `conn` (it refused a request) unless already replaced.
    fn retire(&self, conn: &Conn) {
        let mut slot = self.slot();
        if matches!(&*slot, Slot::Up(current) if Arc::ptr_eq(&current.open, &conn.open)) {
            *slot = Slot::Down { failed: None };
        }
    }
}

/// One HTTP/2 connection; a task of its own drives it.
#[derive(Clone)]
struct Conn {
    send: h2::client::SendRequest<Bytes>,
    /// Cleared when the connection's task ends.
    open: Arc<AtomicBool>,
}

impl Conn {
    async fn handshake<T>(io: T, config: &PoolConfig) -> Result<Self, BoxError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, mut connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(io)
            .await?;
        let ping = connection.ping_pong();
        let open = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&open);
        let watch = watch(ping, config.ping_interval, config.ping_timeout);
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "directory service connection ended");
                    }
                }
                () = watch => {
                    tracing::warn!("directory service connection unanswered; closing it");
                }
            }
            flag.store(false, Ordering::Release);
        });
        Ok(Self { send, open })
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Opens a stream with the request's HEADERS and DATA.
    fn start(
        &self,
        head: Request<()>,
        body: Bytes,
    ) -> Result<h2::client::ResponseFuture, h2::Error> {
        let mut send = self.send.clone();
        let (response, mut stream) = send.send_request(head, body.is_empty())?;
        if !body.is_empty() {
            stream.send_data(body, true)?;
        }
        Ok(response)
    }
}

/// Returns when the peer stops answering PINGs.
async fn watch(ping: Option<h2::PingPong>, every: Duration, timeout: Duration) {
    let Some(mut ping) = ping else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(every).await;
        let pong = tokio::time::timeout(timeout, ping.ping(h2::Ping::opaque())).await;
        if !matches!(pong, Ok(Ok(_))) {
            return;
        }
    }
}

/// A response body read from its h2 stream, giving the read bytes' window
/// back to the server.
struct Recv(h2::RecvStream);

impl http_body::Body for Recv {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let stream = &mut self.0;
        if let Some(data) = ready!(stream.poll_data(cx)) {
            return Poll::Ready(Some(data.map(|data| {
                // Fails only once the stream is gone, when it no longer matters.
                let _ = stream.flow_control().release_capacity(data.len());
                Frame::data(data)
            })));
        }
        Poll::Ready(match ready!(stream.poll_trailers(cx)) {
            Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}
