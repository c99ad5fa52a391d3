//! The audit trail: every SCIM request, as the gateway answered it, sent to
//! the directory service (`AdminService.RecordActivity`) in batches.
//!
//! What is recorded: time, method, path (no query string), status,
//! `scimType` and detail of an error (for a 401, the reason code, never the
//! credential), user agent, client address, the resource type and id, and
//! the duration, and the change-log events the request's writes committed
//! (which the directory service returns with each write's reply). Never a
//! body or a header value other than the user agent.
//!
//! The cost is bounded on both sides: a request only pushes its entry onto a
//! bounded queue (when the queue is full the entry is dropped and counted,
//! never waited for; `roster_gateway_activity_dropped_total` counts them), and one task sends what has queued up (at most 500
//! entries, gathered for at most 200 ms) as one batch, one insert, at a time. Entries still queued when the process
//! stops are lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use roster_proto::admin as pa;
use roster_proto::contract::{EVENTS_METADATA, Events};
use tokio::sync::mpsc;

use crate::auth::directory_in_path;
use crate::client::client_address;
use crate::observe::CallMeta;
use crate::state::AppState;

/// Entries waiting to be sent at most; past it new ones are dropped.
const QUEUE: usize = 10_000;
/// Entries sent in one `RecordActivity` call at most.
const BATCH: usize = 500;
/// How long a batch waits for more entries after its first one: under load
/// this turns hundreds of requests a second into a few inserts a second (each
/// insert is a commit, and commits are what a database pays for); the live
/// view of the portal sees a request this much later.
const LINGER: Duration = Duration::from_millis(200);
/// Longest user agent or path recorded.
const MAX_TEXT: usize = 512;

/// Entries dropped because the queue was full or a batch failed.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// What an error response said, attached to it by
/// [`crate::error::GatewayError`] so the audit trail can record it without
/// reading the body.
#[derive(Debug, Clone)]
pub struct ErrorNote {
    /// `scimType`, when the error has one.
    pub scim_type: Option<&'static str>,
    /// The SCIM detail; for a 401, the reason code (`unknown_or_revoked_token`).
    pub detail: String,
}

/// The change-log events a SCIM request's writes committed, gathered from
/// the replies of its calls (`EVENTS_METADATA`; a Bulk request makes many).
/// The middleware puts one in the request's extensions; the resource
/// operations note each write's reply into it.
#[derive(Debug, Clone, Default)]
pub struct RequestEvents(Arc<Mutex<Events>>);

impl RequestEvents {
    /// Adds the events a reply's metadata carries.
    pub fn note(&self, metadata: &tonic::metadata::MetadataMap) {
        let Some(events) = metadata
            .get(EVENTS_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(Events::decode)
        else {
            return;
        };
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(events);
    }

    fn take(&self) -> Events {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The sending side of the audit trail, held in the gateway's state.
#[derive(Debug, Clone)]
pub struct ActivityLog {
    queue: mpsc::Sender<pa::Activity>,
}

impl ActivityLog {
    /// A log whose entries a task (see [`run`]) sends; the receiver is for it.
    pub fn new() -> (Self, mpsc::Receiver<pa::Activity>) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        (Self { queue }, receiver)
    }

    fn push(&self, entry: pa::Activity) {
        if self.queue.try_send(entry).is_err() {
            dropped(1);
        }
    }
}

/// How many entries were dropped since the process started.
pub fn dropped_entries() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn dropped(n: u64) {
    roster_telemetry::metrics::metrics()
        .activity_dropped
        .inc_by(n);
    let before = DROPPED.fetch_add(n, Ordering::Relaxed);
    // Logged at powers of two, so a long outage does not flood the log.
    if (before + n).is_power_of_two() || before == 0 {
        tracing::warn!(
            dropped = before + n,
            "audit trail entries dropped (queue full or directory service unavailable)"
        );
    }
}

/// Sends queued entries in batches until the gateway's state is gone.
/// Holds the state weakly, so the state (which holds the queue's sender)
/// can be dropped, which ends this task.
pub(crate) async fn run(
    state: Weak<crate::state::Inner>,
    mut receiver: mpsc::Receiver<pa::Activity>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let open = gather(&mut receiver, &mut batch).await;
        let Some(inner) = state.upgrade() else { break };
        let state = AppState::from_inner(inner);
        let entries = std::mem::take(&mut batch);
        let count = entries.len() as u64;
        let request = state.grpc(pa::RecordActivityRequest { entries }, &CallMeta::generate());
        if let Err(status) = state.admin().record_activity(request).await {
            tracing::warn!(code = ?status.code(), error = %status.message(), count, "cannot record SCIM activity");
            dropped(count);
        }
        if !open {
            break;
        }
    }
}

/// Adds what arrives within [`LINGER`] to `batch`, up to [`BATCH`] entries.
/// Returns whether the queue is still open.
async fn gather(
    receiver: &mut mpsc::Receiver<pa::Activity>,
    batch: &mut Vec<pa::Activity>,
) -> bool {
    let deadline = tokio::time::Instant::now() + LINGER;
    while batch.len() < BATCH {
        let room = BATCH - batch.len();
        match tokio::time::timeout_at(deadline, receiver.recv_many(batch, room)).await {
            Ok(0) => return false,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    true
}

/// Middleware of the SCIM routes (outside the token check, so refused
/// requests are recorded too): records the request once it is answered.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(log) = state.activity_log().cloned() else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let mut entry = request_entry(&state, &request);
    let mut request = request;
    let events = RequestEvents::default();
    request.extensions_mut().insert(events.clone());
    let response = next.run(request).await;
    complete(&mut entry, &response, started);
    let events = events.take();
    entry.revision = events.newest();
    entry.events = events.runs;
    entry.events_omitted = events.omitted;
    log.push(entry);
    response
}

/// What is known of a request before it is answered.
fn request_entry(state: &AppState, request: &Request) -> pa::Activity {
    let path = request.uri().path();
    let (resource_type, resource_id) = resource_of(path);
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(clip)
            .unwrap_or_default()
    };
    let client = client_address(request, state.config().client_address_header.as_deref());
    pa::Activity {
        directory_id: directory_in_path(path).unwrap_or_default().to_owned(),
        time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        request_id: request
            .extensions()
            .get::<CallMeta>()
            .map(|c| c.request_id.clone())
            .unwrap_or_default(),
        method: request.method().as_str().to_owned(),
        path: clip(path),
        user_agent: header(header::USER_AGENT),
        client_address: client.to_string(),
        resource_type: resource_type.to_owned(),
        resource_id: resource_id.to_owned(),
        ..Default::default()
    }
}

/// Adds the answer: status, error, the id of a created resource, duration.
fn complete(entry: &mut pa::Activity, response: &Response, started: Instant) {
    entry.status = i32::from(response.status().as_u16());
    if let Some(note) = response.extensions().get::<ErrorNote>() {
        entry.scim_type = note.scim_type.unwrap_or_default().to_owned();
        entry.detail = clip(&note.detail);
    }
    if entry.resource_id.is_empty()
        && let Some(location) = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    {
        entry.resource_id = location.rsplit('/').next().unwrap_or_default().to_owned();
    }
    entry.duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
}

/// The resource type and id a SCIM path names (`/scim/v2/{dir}/Users/{id}`,
/// or the same under `/scim/v1/`).
pub fn resource_of(path: &str) -> (&'static str, &str) {
    let mut rest = path
        .strip_prefix("/scim/v2/")
        .or_else(|| path.strip_prefix("/scim/v1/"))
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(1);
    let kind = match rest.next() {
        Some("Users") => "User",
        Some("Groups") => "Group",
        Some("Bulk") => "Bulk",
        Some(".search") => "Search",
        Some("ServiceProviderConfig" | "ServiceProviderConfigs" | "Schemas" | "ResourceTypes") => {
            "Discovery"
        }
        Some("Me") => "Me",
        _ => "",
    };
    let id = match (kind, rest.next()) {
        ("User" | "Group", Some(id)) if id != ".search" => id,
        _ => "",
    };
    (kind, id)
}

/// At most [`MAX_TEXT`] bytes, cut at a character boundary.
fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_resource() {
        let d = "/scim/v2/6f1c";
        assert_eq!(resource_of(&format!("{d}/Users")), ("User", ""));
        assert_eq!(resource_of(&format!("{d}/Users/abc")), ("User", "abc"));
        assert_eq!(resource_of(&format!("{d}/Groups/g1")), ("Group", "g1"));
        assert_eq!(resource_of(&format!("{d}/Users/.search")), ("User", ""));
        assert_eq!(resource_of(&format!("{d}/Bulk")), ("Bulk", ""));
        assert_eq!(resource_of(&format!("{d}/Schemas/x")), ("Discovery", ""));
        assert_eq!(resource_of(d), ("", ""));
        assert_eq!(resource_of("/scim/v1/6f1c/Users/abc"), ("User", "abc"));
        assert_eq!(
            resource_of("/scim/v1/6f1c/ServiceProviderConfigs"),
            ("Discovery", "")
        );
    }

    #[test]
    fn long_values_are_clipped() {
        assert_eq!(clip(&"ü".repeat(600)).len(), MAX_TEXT);
        assert_eq!(clip("Okta SCIM Client 1.0.0"), "Okta SCIM Client 1.0.0");
    }
}
