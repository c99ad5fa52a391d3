//! In-process gRPC connections, for `roster serve`: when the gateway and the
//! directory service share a process, their HTTP/2 connection runs over an
//! in-memory pipe instead of loopback TCP. Everything above the socket is
//! unchanged — the same tonic server with its layers, interceptors and
//! graceful shutdown, the same client `Channel` — only the kernel's TCP
//! path is gone, which was the largest single cost of a call
//! (docs/performance.md, "The gRPC hop").

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint, Uri};

/// Bytes buffered in each direction of a pipe (a writer waits beyond it,
/// as on a socket with a full send buffer).
const PIPE_BUFFER: usize = 256 * 1024;

/// The server's end: pipes opened by [`local_channel`]'s clients, to be
/// served next to the TCP listener (see `Directory::serve_with_local`).
#[derive(Debug)]
pub struct LocalListener {
    pipes: mpsc::UnboundedReceiver<DuplexStream>,
}

/// A lazily connecting client channel and the listener that receives its
/// connections. When the listener is dropped (the server stopped), calls
/// fail with `UNAVAILABLE`, as on a refused TCP connection.
pub fn local_channel() -> (Channel, LocalListener) {
    let (tx, rx) = mpsc::unbounded_channel();
    let connect = tower::service_fn(move |_: Uri| {
        let tx = tx.clone();
        async move {
            let (client, server) = tokio::io::duplex(PIPE_BUFFER);
            tx.send(server).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "directory service stopped",
                )
            })?;
            Ok::<_, io::Error>(TokioIo::new(client))
        }
    });
    // The URI only names the authority of the HTTP/2 requests.
    let channel = Endpoint::from_static("http://roster.local").connect_with_connector_lazy(connect);
    (channel, LocalListener { pipes: rx })
}

/// A connection the server accepted: a TCP socket or an in-process pipe.
/// The directory service's TLS configuration, following its files.
pub(crate) type ServerTls = roster_tls::Reloading<roster_tls::ServerConfig>;

#[derive(Debug)]
pub(crate) enum Conn {
    Tcp(TcpStream),
    Tls(Box<roster_tls::ServerTlsStream<TcpStream>>),
    Local(DuplexStream),
}

impl Connected for Conn {
    type ConnectInfo = Option<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Conn::Tcp(tcp) => Some(tcp.connect_info()),
            Conn::Tls(tls) => Some(tls.get_ref().0.connect_info()),
            Conn::Local(_) => None,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Local(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Local(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Local(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Tcp(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
            Conn::Local(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
            Conn::Local(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Local(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// TCP connections (over TLS when configured) and local pipes as one
/// stream of accepted connections.
pub(crate) fn incoming(
    tcp: impl Stream<Item = io::Result<TcpStream>> + Send + 'static,
    tls: Option<Arc<ServerTls>>,
    local: Option<LocalListener>,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    use futures::StreamExt;
    let tcp = match tls {
        Some(tls) => roster_tls::incoming(tcp, tls)
            .map(|r| r.map(|s| Conn::Tls(Box::new(s))))
            .boxed(),
        None => tcp.map(|r| r.map(Conn::Tcp)).boxed(),
    };
    let local = match local {
        Some(l) => tokio_stream::wrappers::UnboundedReceiverStream::new(l.pipes)
            .map(|pipe| Ok(Conn::Local(pipe)))
            .boxed(),
        None => futures::stream::empty().boxed(),
    };
    futures::stream::select(tcp, local)
}

/// A gRPC service called in the process: HTTP requests with tonic bodies in,
/// responses out, no connection in between (the protobuf codecs still run
/// on both sides, so the contract is the wire's). Structurally the same type
/// as `roster_gateway::DirectService`.
pub type DirectService = tower::util::BoxCloneSyncService<
    tonic::codegen::http::Request<tonic::body::Body>,
    tonic::codegen::http::Response<tonic::body::Body>,
    tonic::codegen::StdError,
>;

/// `svc` (the layered routes) as a [`DirectService`], each call inside the
/// span `span_of` makes for it, as tonic's server does with `trace_fn`.
pub(crate) fn direct_service<S>(
    svc: S,
    span_of: fn(&tonic::codegen::http::Request<()>) -> tracing::Span,
) -> DirectService
where
    S: tower::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    use tower::ServiceExt as _;
    use tracing::Instrument as _;
    let call = move |request: tonic::codegen::http::Request<tonic::body::Body>| {
        let (parts, body) = request.into_parts();
        let head = tonic::codegen::http::Request::from_parts(parts, ());
        let span = span_of(&head);
        let (parts, ()) = head.into_parts();
        let request = tonic::codegen::http::Request::from_parts(parts, body);
        let svc = svc.clone();
        async move {
            match svc.oneshot(request).instrument(span).await {
                Ok(response) => Ok(response),
                Err(never) => match never {},
            }
        }
    };
    tower::util::BoxCloneSyncService::new(tower::service_fn(call))
}
