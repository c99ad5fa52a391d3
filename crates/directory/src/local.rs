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
use tokio::io::{AsyncRead, AsyncWrite, BufWriter, DuplexStream, ReadBuf};
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

/// The directory service's TLS configuration, following its files.
pub(crate) type ServerTls = roster_tls::Reloading<roster_tls::ServerConfig>;

/// Bytes of one connection's writes gathered before they reach the socket.
/// h2 holds a frame of up to 16 KiB in its own buffer; one more such frame
/// fits here, so a typical reply (headers, message, trailers) is one write.
const WRITE_BUFFER: usize = 16 * 1024;

/// A connection the server accepted (a TCP socket, with or without TLS, or
/// an in-process pipe), its writes gathered until h2 flushes them.
///
/// Why: h2 copies a DATA frame into its write buffer only below a threshold
/// — 256 bytes when the transport says it supports vectored writes, 1 KiB
/// when it does not — and sends a larger payload by reference, flushing
/// before it can take the next frame. A unary reply's message is usually
/// above 256 bytes, so its trailers left in a second `writev`: two syscalls
/// on this side and often a second wake-up and read on the caller's
/// (docs/performance.md, "The gRPC hop of split processes"). Reporting no
/// vectored writes raises the threshold to 1 KiB, and the buffer gathers
/// what h2 writes between two flushes into one write. h2 flushes after every
/// batch of frames, so nothing waits here beyond that.
#[derive(Debug)]
pub(crate) struct Conn(BufWriter<Io>);

impl Conn {
    fn new(io: Io) -> Self {
        Self(BufWriter::with_capacity(WRITE_BUFFER, io))
    }
}

#[derive(Debug)]
enum Io {
    Tcp(TcpStream),
    Tls(Box<roster_tls::ServerTlsStream<TcpStream>>),
    Local(DuplexStream),
}

impl Connected for Conn {
    type ConnectInfo = Option<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self.0.get_ref() {
            Io::Tcp(tcp) => Some(tcp.connect_info()),
            Io::Tls(tls) => Some(tls.get_ref().0.connect_info()),
            Io::Local(_) => None,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    /// `false` on purpose, whatever the socket supports: see [`Conn`].
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Io::Local(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Io::Local(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
            Io::Local(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Io::Local(s) => Pin::new(s).poll_shutdown(cx),
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
            .map(|r| r.map(|s| Conn::new(Io::Tls(Box::new(s)))))
            .boxed(),
        None => tcp.map(|r| r.map(|s| Conn::new(Io::Tcp(s)))).boxed(),
    };
    let local = match local {
        Some(l) => tokio_stream::wrappers::UnboundedReceiverStream::new(l.pipes)
            .map(|pipe| Ok(Conn::new(Io::Local(pipe))))
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// What h2 writes between two flushes reaches the peer as one piece, and
    /// all of it by the flush; h2 is told to copy small frames (see [`Conn`]).
    #[tokio::test]
    async fn writes_are_gathered_until_the_flush() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut conn = Conn::new(Io::Local(near));
        assert!(!conn.is_write_vectored());
        conn.write_all(b"headers+message").await.unwrap();
        conn.write_all(b"|trailers").await.unwrap();
        let mut buf = [0u8; 64];
        // The pipe holds only what was really written: nothing yet.
        let early = futures::FutureExt::now_or_never(far.read(&mut buf));
        assert!(early.is_none(), "nothing is sent before the flush");
        conn.flush().await.unwrap();
        let n = far.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"headers+message|trailers");

        far.write_all(b"request").await.unwrap();
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"request", "reads pass through");
    }
}
