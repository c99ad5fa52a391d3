//! SCIM error bodies for the requests hyper refuses before Roster sees them.
//!
//! hyper answers a request it cannot parse itself — a URI longer than 64 KiB
//! (414), more header fields or bytes than it buffers (431), a malformed
//! request line or header (400) — with an empty body, then closes the
//! connection. SCIM clients are promised an Error message (RFC 7644 §3.12)
//! on every failure, so each connection's writer recognises those answers —
//! a 4xx or 5xx head with `content-length: 0`, `connection: close` and no
//! `content-type`, which no response of Roster's own has — and sends the same
//! status with a SCIM error body instead: a 1.1 body (`{"Errors": [...]}`)
//! when the last request line the connection read named a `/scim/v1/` path,
//! a 2.0 one otherwise.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::serve::Listener;
use roster_scim::error::ScimError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A listener whose connections get [`ErrorBodies`].
pub struct WithErrorBodies<L>(pub L);

impl<L: Listener> Listener for WithErrorBodies<L> {
    type Io = ErrorBodies<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (ErrorBodies::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose bodiless error answers from hyper get a SCIM body.
pub struct ErrorBodies<Io> {
    io: Io,
    /// Whether the last read that began with a request line named a SCIM
    /// 1.1 path (a request hyper refuses is the last one it reads).
    v1: bool,
    /// The answer being written in place of one of hyper's, and how many
    /// of hyper's bytes it stands for.
    replacing: Option<Replacement>,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

impl<Io> ErrorBodies<Io> {
    /// Wraps `io`.
    pub fn new(io: Io) -> Self {
        Self {
            io,
            v1: false,
            replacing: None,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &Io {
        &self.io
    }
}

impl<Io: AsyncWrite + Unpin> ErrorBodies<Io> {
    /// Writes the rest of the replacement; then hyper's write is done.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(r) = self.replacing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while r.written < r.bytes.len() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &r.bytes[r.written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => r.written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let done = r.stands_for;
        self.replacing = None;
        Poll::Ready(Ok(done))
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for ErrorBodies<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Some(v1) = names_v1_path(&buf.filled()[before..]) {
            self.v1 = v1;
        }
        read
    }
}

/// Whether `read` begins with a request line (`METHOD /path`), and if so
/// whether its path is a SCIM 1.1 one.
fn names_v1_path(read: &[u8]) -> Option<bool> {
    let method_end = read.iter().take(16).position(|&b| b == b' ')?;
    let method = &read[..method_end];
    if method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    let target = &read[method_end + 1..];
    target
        .first()
        .filter(|&&b| b == b'/')
        .map(|_| target.starts_with(b"/scim/v1/"))
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            match with_scim_body(buf, self.v1) {
                Some(bytes) => {
                    self.replacing = Some(Replacement {
                        bytes,
                        written: 0,
                        stands_for: buf.len(),
                    })
                }
                None => return Pin::new(&mut self.io).poll_write(cx, buf),
            }
        }
        // Until the replacement is out, every write (hyper retries the one
        // that was pending) only advances it.
        self.poll_replacement(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_some() {
            return self.poll_replacement(cx);
        }
        // hyper writes a head it answers with by itself as the only buffer.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && let Some(bytes) = with_scim_body(only, self.v1)
        {
            self.replacing = Some(Replacement {
                bytes,
                written: 0,
                stands_for: only.len(),
            });
            return self.poll_replacement(cx);
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// `written` with a SCIM error body when it is exactly one of hyper's own
/// error answers: a whole 4xx/5xx head, `content-length: 0`, `connection:
/// close`, no `content-type`. `v1`: in SCIM 1.1's form.
fn with_scim_body(written: &[u8], v1: bool) -> Option<Vec<u8>> {
    if !(written.starts_with(b"HTTP/1.1 4") || written.starts_with(b"HTTP/1.1 5")) {
        return None;
    }
    let head = std::str::from_utf8(written.strip_suffix(b"\r\n\r\n")?).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.get(9..12)?.parse().ok()?;
    let (mut empty, mut closes, mut kept) = (false, false, Vec::new());
    for line in lines {
        let lower = line.to_ascii_lowercase();
        match lower.as_str() {
            "content-length: 0" => empty = true,
            "connection: close" => {
                closes = true;
                kept.push(line);
            }
            l if l.starts_with("content-type:") || l.starts_with("transfer-encoding:") => {
                return None;
            }
            _ => kept.push(line),
        }
    }
    if !(empty && closes) {
        return None;
    }
    let error = ScimError {
        status,
        scim_type: None,
        detail: detail(status).to_owned(),
    };
    let (body, content_type) = match v1 {
        false => (error.to_json(), "application/scim+json; charset=utf-8"),
        true => (
            roster_scim::v1::message::error_body(&error),
            "application/json; charset=utf-8",
        ),
    };
    let body = body.to_string();
    let mut out = format!(
        "{status_line}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

fn detail(status: u16) -> &'static str {
    match status {
        414 => {
            "the request URI is longer than 64 KiB; send a long filter in the body of \
             POST .../Users/.search (RFC 7644 §3.4.3)"
        }
        431 => "the request has more header fields, or larger ones, than the server accepts",
        505 => "the HTTP version is not supported",
        _ => "the request is not valid HTTP/1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_scim::error::ERROR_SCHEMA;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HYPER_414: &[u8] = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 05:10:28 GMT\r\n\r\n";

    fn body_of(answer: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{text}");
        (head.to_owned(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn hypers_own_error_answers_get_a_scim_body() {
        for (status, line) in [
            (414, "HTTP/1.1 414 URI Too Long"),
            (431, "HTTP/1.1 431 Request Header Fields Too Large"),
            (400, "HTTP/1.1 400 Bad Request"),
        ] {
            let head = format!("{line}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
            let (new_head, body) = body_of(&with_scim_body(head.as_bytes(), false).unwrap());
            assert!(new_head.starts_with(line), "{new_head}");
            assert!(new_head.contains("connection: close"), "{new_head}");
            assert!(new_head.contains("content-type: application/scim+json"));
            assert_eq!(body["schemas"][0], ERROR_SCHEMA);
            assert_eq!(body["status"], status.to_string());
            assert!(body["detail"].as_str().unwrap().len() > 10);
        }
    }

    #[test]
    fn rosters_own_answers_pass_unchanged() {
        for written in [
            // A SCIM error of Roster's own: a content type and a body.
            &b"HTTP/1.1 404 Not Found\r\ncontent-type: application/scim+json\r\ncontent-length: 90\r\n\r\n"[..],
            // A bodiless answer that keeps the connection.
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            // A head with its body in the same write.
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\nx",
            b"{\"HTTP/1.1 400\"}",
        ] {
            assert_eq!(with_scim_body(written, false), None, "{written:?}");
        }
    }

    /// A wrapped end of a 16-byte pipe (writes take several polls) and
    /// everything the other end reads until it closes.
    fn wrapped_pipe() -> (
        ErrorBodies<tokio::io::DuplexStream>,
        tokio::task::JoinHandle<Vec<u8>>,
    ) {
        let (near, mut far) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        (ErrorBodies::new(near), reader)
    }

    #[tokio::test]
    async fn the_connection_carries_the_replacement_whole() {
        let (mut wrapped, reader) = wrapped_pipe();
        wrapped
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        wrapped.write_all(HYPER_414).await.unwrap();
        wrapped.shutdown().await.unwrap();
        drop(wrapped);
        let got = reader.await.unwrap();
        let first = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert!(got.starts_with(first));
        let (head, body) = body_of(&got[first.len()..]);
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long"), "{head}");
        assert_eq!(body["status"], "414");
    }

    #[tokio::test]
    async fn a_vectored_write_is_replaced_too() {
        let (mut wrapped, reader) = wrapped_pipe();
        let n = wrapped
            .write_vectored(&[io::IoSlice::new(&[]), io::IoSlice::new(HYPER_414)])
            .await
            .unwrap();
        assert_eq!(n, HYPER_414.len(), "hyper's bytes count as written");
        wrapped.shutdown().await.unwrap();
        drop(wrapped);
        let (head, body) = body_of(&reader.await.unwrap());
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long"), "{head}");
        assert_eq!(body["schemas"][0], ERROR_SCHEMA);
    }

    #[test]
    fn request_lines_say_which_dialect_the_connection_speaks() {
        let of = |read: &[u8]| names_v1_path(read);
        assert_eq!(of(b"GET /scim/v1/d/Users HTTP/1.1\r\n"), Some(true));
        assert_eq!(of(b"PATCH /scim/v1/d/Groups/1 HTTP/1.1"), Some(true));
        assert_eq!(of(b"GET /scim/v2/d/Users HTTP/1.1\r\n"), Some(false));
        assert_eq!(of(b"POST /healthz HTTP/1.1"), Some(false));
        // Not a request line: a body, a continuation, garbage.
        for other in [
            &b"{\"userName\":\"GET /scim/v1/\"}"[..],
            b"x-long: a b",
            b"",
            b"GET",
        ] {
            assert_eq!(of(other), None, "{other:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_scim_1_1_request_gets_a_1_1_error_body() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut wrapped = ErrorBodies::new(near);
        far.write_all(b"GET /scim/v1/d/Users?filter=")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = wrapped.read(&mut buf).await.unwrap();
        assert!(n > 0);
        wrapped.write_all(HYPER_414).await.unwrap();
        wrapped.shutdown().await.unwrap();
        drop(wrapped);
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        let (head, body) = body_of(&got);
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(body["Errors"][0]["code"], "414");
        assert!(
            body["Errors"][0]["description"]
                .as_str()
                .unwrap()
                .contains("64 KiB")
        );
    }
}
