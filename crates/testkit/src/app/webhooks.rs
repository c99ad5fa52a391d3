//! A real HTTP receiver for webhook tests (`crates/directory/tests/webhooks`,
//! `tests/faults`): a bare HTTP/1 server on a
//! loopback port that records every request and answers as its script says
//! (a status, no answer until the client gives up, or a dropped
//! connection), and an independent Standard Webhooks verifier.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// What the receiver does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Never answers (the client times out).
    Hang,
    /// Closes the connection without a response.
    Drop,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    pub json: Value,
    /// What the receiver answered.
    pub answer: Answer,
}

impl Received {
    pub fn revision(&self) -> i64 {
        self.json["data"]["revision"].as_i64().unwrap_or(-1)
    }
    pub fn accepted(&self) -> bool {
        matches!(self.answer, Answer::Status(s) if (200..300).contains(&s))
    }
    pub fn kind(&self) -> &str {
        self.json["type"].as_str().unwrap_or("")
    }
    /// The `user_name` of a user event's resource ("" for other events).
    pub fn user_name(&self) -> &str {
        self.json["data"]["resource"]["user_name"]
            .as_str()
            .unwrap_or("")
    }
}

/// Decides the answer to a request: gets the request and how many times
/// this `webhook-id` was received before.
pub type Script = Box<dyn FnMut(&Received, usize) -> Answer + Send>;

struct State {
    requests: Vec<Received>,
    seen: HashMap<String, usize>,
    script: Script,
}

/// The receiver; stops when dropped.
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start(script: Script) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the webhook receiver");
        let addr: SocketAddr = listener.local_addr().expect("receiver address");
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            seen: HashMap::new(),
            script,
        }));
        let task = tokio::spawn(accept(listener, Arc::clone(&state)));
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
            task,
        }
    }

    /// Always answers `status`.
    pub async fn answering(status: u16) -> Receiver {
        Self::start(Box::new(move |_, _| Answer::Status(status))).await
    }

    pub fn set_script(&self, script: Script) {
        self.state.lock().unwrap().script = script;
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many requests were answered 2xx (cheap: nothing is copied).
    pub fn accepted_count(&self) -> usize {
        let state = self.state.lock().unwrap();
        state.requests.iter().filter(|r| r.accepted()).count()
    }

    /// The requests answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(Received::accepted)
            .collect()
    }

    /// How many requests for the events of user `user_name` arrived,
    /// whatever the answer.
    pub fn requests_for(&self, user_name: &str) -> usize {
        let state = self.state.lock().unwrap();
        state
            .requests
            .iter()
            .filter(|r| r.user_name() == user_name)
            .count()
    }

    /// Waits until `n` requests were accepted (failing after `deadline`)
    /// and returns the accepted requests.
    pub async fn wait_accepted(&self, n: usize, deadline: Duration) -> Vec<Received> {
        let what = format!("{n} accepted deliveries");
        crate::eventually(&what, deadline, || async {
            (self.accepted_count() >= n).then_some(())
        })
        .await;
        self.accepted()
    }

    /// Waits until `n` requests for user `user_name`'s events arrived
    /// (failing after `deadline`): one is in flight, or was retried.
    pub async fn wait_requests_for(&self, user_name: &str, n: usize, deadline: Duration) {
        let what = format!("{n} requests for {user_name}");
        crate::eventually(&what, deadline, || async {
            (self.requests_for(user_name) >= n).then_some(())
        })
        .await;
    }
}

async fn accept(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, Arc::clone(&state)));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut received = Received {
        id,
        timestamp,
        signature,
        body,
        json,
        answer: Answer::Status(0),
    };
    let answer = {
        let mut state = state.lock().unwrap();
        let times = state.seen.get(&received.id).copied().unwrap_or(0);
        let answer = (state.script)(&received, times);
        *state.seen.entry(received.id.clone()).or_default() += 1;
        received.answer = answer;
        state.requests.push(received);
        answer
    };
    match answer {
        Answer::Status(status) => Ok(Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(b"receiver says hi")))
            .unwrap_or_default()),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Response::new(Full::new(Bytes::new())))
        }
        Answer::Drop => Err(Dropped),
    }
}

/// Verifies a request the way the Standard Webhooks specification says,
/// written here from the specification (not with Roster's own signer):
/// base64(HMAC-SHA256(base64-decoded secret after `whsec_`,
/// "{id}.{timestamp}.{body}")) must equal one of the space-separated `v1,`
/// signatures.
pub fn verify_spec(secret: &str, r: &Received) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut content = format!("{}.{}.", r.id, r.timestamp).into_bytes();
    content.extend_from_slice(&r.body);
    let expected = STANDARD.encode(ring::hmac::sign(&key, &content).as_ref());
    r.signature
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}

/// What [`serve_http1`] does after reading a request.
pub struct Reply {
    /// The whole response, status line to body.
    pub response: Vec<u8>,
    /// Close the connection after it (unasked, as an idle timeout does).
    pub close: bool,
}

/// A minimal HTTP/1.1 server on one accepted connection (plain or TLS),
/// for tests that need what a full server does not give: an exact response,
/// a close nobody asked for. Reads each request (head, then a
/// `Content-Length` body) and writes `reply()`'s answer, until the peer
/// closes or a reply says to.
pub async fn serve_http1<S>(stream: S, mut reply: impl FnMut() -> Reply)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut stream = BufReader::new(stream);
    loop {
        let (mut line, mut length) = (String::new(), 0);
        loop {
            line.clear();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let Reply { response, close } = reply();
        if stream.write_all(&response).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}
