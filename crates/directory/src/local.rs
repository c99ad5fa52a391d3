//! The two ways in to the directory service's routes besides tonic's own
//! accept loop: the connections its listener accepts ([`Conn`], writes
//! gathered until h2 flushes), and the routes called in the process as one
//! tower service ([`DirectService`], `roster serve`'s admin and health
//! calls).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The directory service's TLS configuration, following its files.
pub(crate) type ServerTls = roster_tls::Reloading<roster_tls::ServerConfig>;

/// Bytes of one connection's writes gathered before they reach the socket.
/// h2 holds a frame of up to 16 KiB in its own buffer; one more such frame
/// fits here, so a typical reply (headers, message, trailers) is one write.
const WRITE_BUFFER: usize = 16 * 1024;

/// A connection the server accepted (a TCP socket, with or without TLS),
/// its writes gathered until h2 flushes them.
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
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self.0.get_ref() {
            Io::Tcp(tcp) => tcp.connect_info(),
            Io::Tls(tls) => tls.get_ref().0.connect_info(),
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
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// TCP connections (over TLS when configured) as a stream of accepted
/// connections.
pub(crate) fn incoming(
    tcp: impl Stream<Item = io::Result<TcpStream>> + Send + 'static,
    tls: Option<Arc<ServerTls>>,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    use futures::StreamExt;
    match tls {
        Some(tls) => roster_tls::incoming(tcp, tls)
            .map(|r| r.map(|s| Conn::new(Io::Tls(Box::new(s)))))
            .boxed(),
        None => tcp.map(|r| r.map(|s| Conn::new(Io::Tcp(s)))).boxed(),
    }
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut far = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (near, _) = listener.accept().await.unwrap();
        let mut conn = Conn::new(Io::Tcp(near));
        assert!(!conn.is_write_vectored());
        conn.write_all(b"headers+message").await.unwrap();
        conn.write_all(b"|trailers").await.unwrap();
        let mut buf = [0u8; 64];
        // The socket holds only what was really written: nothing yet.
        let early = futures::FutureExt::now_or_never(far.read(&mut buf));
        assert!(early.is_none(), "nothing is sent before the flush");
        conn.flush().await.unwrap();
        let mut got = Vec::new();
        while got.len() < b"headers+message|trailers".len() {
            let n = far.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"headers+message|trailers");

        far.write_all(b"request").await.unwrap();
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"request", "reads pass through");
    }
}
