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

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
use axum::response::Response;
use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};

/// Whether a request's body was read to its end; part of the outermost
/// middleware (`observe`), so that it costs no layer of its own.
pub struct BodyWatch(Option<Arc<AtomicBool>>);

/// `request` with its body watched. Nothing is watched for HTTP/2 (whose
/// streams end on their own) or a request without a body.
pub fn watch_body(request: Request) -> (Request, BodyWatch) {
    let http1 = matches!(request.version(), Version::HTTP_10 | Version::HTTP_11);
    if !http1 || request.body().is_end_stream() {
        return (request, BodyWatch(None));
    }
    let read_to_end = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(Tracked {
            inner: body,
            read_to_end: read_to_end.clone(),
        })
    });
    (request, BodyWatch(Some(read_to_end)))
}

impl BodyWatch {
    /// Marks `response` `Connection: close` when the body was left unread.
    pub fn close_if_unread(&self, response: &mut Response) {
        if self
            .0
            .as_ref()
            .is_some_and(|read| !read.load(Ordering::Acquire))
        {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

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
        body.close_if_unread(&mut response);
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

    async fn connection_header(path: &str, body: &'static str) -> Option<String> {
        let request = Request::post(path)
            .version(Version::HTTP_11)
            .body(Body::from(body))
            .expect("request");
        let response = app().oneshot(request).await.expect("response");
        response
            .headers()
            .get(header::CONNECTION)
            .map(|v| v.to_str().expect("ascii").to_owned())
    }

    #[tokio::test]
    async fn an_unread_body_closes_the_connection() {
        assert_eq!(
            connection_header("/ignore", "{\"a\":1}").await.as_deref(),
            Some("close")
        );
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_keeps_the_connection() {
        assert_eq!(connection_header("/read", "{\"a\":1}").await, None);
    }

    #[tokio::test]
    async fn no_body_keeps_the_connection() {
        assert_eq!(connection_header("/ignore", "").await, None);
    }
}
