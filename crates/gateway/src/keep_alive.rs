//! Tells an HTTP/1.1 client when its connection will not be reused.
//!
//! A handler that answers before reading the request body (a 401 before the
//! token check reads anything, a 413 past the size limit, a 404, a 415)
//! leaves bytes on the connection that hyper does not wait for: unless they
//! already sit in its buffer, it closes the connection after the response.
//! Without `Connection: close` in that response the client keeps the
//! connection as idle and may send its next request on it just as it closes;
//! a POST lost that way cannot be retried by the client library and reaches
//! the IdP as a transport error. So every response to a request whose body
//! was not read to its end says `Connection: close` (RFC 9112 §9.6), and the
//! client opens a new connection for its next request.
//!
//! Every other HTTP/1.1 response says how long the connection may stay idle
//! (`Keep-Alive: timeout=N`, RFC 2068 §19.7.1, read by Apache HttpClient,
//! Node's undici, Python's urllib3 pools and others): a few seconds less than
//! the gateway's idle timeout, so that such a client retires the connection
//! before the gateway closes it, instead of racing the close with a request.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
use axum::response::Response;
use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};

/// Seconds announced below the idle timeout, for the client's clock starting
/// after the gateway's (it starts when the response was written).
const ANNOUNCED_MARGIN: Duration = Duration::from_secs(5);

/// Whether a request's body was read to its end; part of the outermost
/// middleware (`observe`), so that it costs no layer of its own.
pub struct BodyWatch {
    read_to_end: Option<Arc<AtomicBool>>,
    http11: bool,
}

/// `request` with its body watched. Nothing is watched for HTTP/2 (whose
/// streams end on their own) or a request without a body.
pub fn watch_body(request: Request) -> (Request, BodyWatch) {
    let http11 = request.version() == Version::HTTP_11;
    let http1 = http11 || request.version() == Version::HTTP_10;
    if !http1 || request.body().is_end_stream() {
        let watch = BodyWatch {
            read_to_end: None,
            http11,
        };
        return (request, watch);
    }
    let read_to_end = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(Tracked {
            inner: body,
            read_to_end: read_to_end.clone(),
        })
    });
    let watch = BodyWatch {
        read_to_end: Some(read_to_end),
        http11,
    };
    (request, watch)
}

impl BodyWatch {
    /// Marks `response` `Connection: close` when the body was left unread;
    /// otherwise, on HTTP/1.1, announces how long the connection may idle
    /// (the gateway closes it after `idle_timeout`).
    pub fn finish(&self, response: &mut Response, idle_timeout: Duration) {
        let unread = self
            .read_to_end
            .as_ref()
            .is_some_and(|read| !read.load(Ordering::Acquire));
        let headers = response.headers_mut();
        if unread {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        } else if self.http11 && !headers.contains_key(header::CONNECTION) {
            let secs = idle_timeout
                .saturating_sub(ANNOUNCED_MARGIN)
                .as_secs()
                .max(1);
            if let Ok(value) = HeaderValue::from_str(&format!("timeout={secs}")) {
                headers.insert(KEEP_ALIVE, value);
            }
        }
    }
}

/// The `Keep-Alive` response header.
const KEEP_ALIVE: header::HeaderName = header::HeaderName::from_static("keep-alive");

/// A request body that records whether it was read to its end.
struct Tracked {
    inner: Body,
    read_to_end: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            self.read_to_end.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::middleware::{Next, from_fn};
    use axum::routing::post;
    use tower::ServiceExt;

    /// What `observe` does with the watch.
    async fn watched(request: Request, next: Next) -> Response {
        let (request, body) = watch_body(request);
        let mut response = next.run(request).await;
        body.finish(&mut response, Duration::from_secs(75));
        response
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/read",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .route("/ignore", post(|| async { "not read" }))
            .layer(from_fn(watched))
    }

    /// The `Connection` and `Keep-Alive` headers of the answer.
    async fn connection_headers(
        version: Version,
        path: &str,
        body: &'static str,
    ) -> (Option<String>, Option<String>) {
        let request = Request::post(path)
            .version(version)
            .body(Body::from(body))
            .expect("request");
        let response = app().oneshot(request).await.expect("response");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        (header("connection"), header("keep-alive"))
    }

    const KEPT: (Option<String>, Option<String>) = (None, None);

    fn kept_for(secs: u64) -> (Option<String>, Option<String>) {
        (None, Some(format!("timeout={secs}")))
    }

    #[tokio::test]
    async fn an_unread_body_closes_the_connection() {
        assert_eq!(
            connection_headers(Version::HTTP_11, "/ignore", "{\"a\":1}").await,
            (Some("close".to_owned()), None)
        );
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_keeps_the_connection_and_says_for_how_long() {
        assert_eq!(
            connection_headers(Version::HTTP_11, "/read", "{\"a\":1}").await,
            kept_for(70)
        );
    }

    #[tokio::test]
    async fn no_body_keeps_the_connection() {
        assert_eq!(
            connection_headers(Version::HTTP_11, "/ignore", "").await,
            kept_for(70)
        );
    }

    #[tokio::test]
    async fn http2_and_http10_get_no_connection_headers() {
        // HTTP/2 forbids connection-specific fields; HTTP/1.0 keeps a
        // connection only when the client asked, which hyper answers itself.
        for version in [Version::HTTP_2, Version::HTTP_10] {
            assert_eq!(connection_headers(version, "/read", "{}").await, KEPT);
        }
    }
}
