//! The gateway's accept loop: axum's `serve` without its blind spot.
//!
//! `axum::serve` builds hyper's connections without a timer, and hyper
//! applies none of its connection timeouts without one: a client that sends
//! half a request head, or opens a connection and sends nothing, held its
//! connection (and a file descriptor) for ever. Here each HTTP/1 connection
//! must deliver a whole request head within `idle_timeout` of starting to
//! wait for one, which also ends keep-alive connections idle for that long;
//! HTTP/2 connections are pinged so that a vanished peer is noticed. The rest
//! is what `axum::serve` does: the peer address for `ConnectInfo`, and on
//! shutdown no new connections while the open ones finish their requests.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tower::ServiceExt;

/// How often an HTTP/2 connection without traffic is pinged.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Serves `app` on the connections of `listener` until `shutdown`
/// completes, then waits for the open connections to finish.
pub async fn serve<L, S>(
    mut listener: L,
    app: S,
    idle_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener<Addr = SocketAddr>,
    S: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let builder = connection_builder(idle_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn connection_builder(idle_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_PING_INTERVAL);
    builder
}
