//! `WatchChanges` readers: one that reads from the start until a condition
//! holds, one that resumes from its cursor across disconnects, one that
//! reads the whole log, and single-message helpers with a deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start;
use roster_proto::directory::watch_changes_response::Payload;
use roster_proto::directory::{
    Change, ChangeKind, ListOptions, ListUsersRequest, WatchChangesRequest, WatchChangesResponse,
    change,
};
use tonic::Streaming;
use tonic::transport::Channel;

use super::process::connect;
use super::scim::CONVERGE;

/// How long a test waits for something that should happen promptly.
pub const PROMPTLY: Duration = Duration::from_secs(10);
/// How long a test waits for the events it expects on `WatchChanges`.
const WATCH_DEADLINE: Duration = Duration::from_secs(30);

/// The dotted name of a change kind, as in docs/events.md.
pub fn kind_name(kind: i32) -> &'static str {
    match ChangeKind::try_from(kind).unwrap_or(ChangeKind::Unspecified) {
        ChangeKind::UserCreated => "user.created",
        ChangeKind::UserUpdated => "user.updated",
        ChangeKind::UserDeactivated => "user.deactivated",
        ChangeKind::UserReactivated => "user.reactivated",
        ChangeKind::UserDeleted => "user.deleted",
        ChangeKind::GroupCreated => "group.created",
        ChangeKind::GroupUpdated => "group.updated",
        ChangeKind::GroupDeleted => "group.deleted",
        ChangeKind::MemberAdded => "member.added",
        ChangeKind::MemberRemoved => "member.removed",
        ChangeKind::DirectoryCreated => "directory.created",
        ChangeKind::DirectoryUpdated => "directory.updated",
        ChangeKind::DirectoryDeleted => "directory.deleted",
        ChangeKind::Unspecified => "unspecified",
    }
}

/// What a sequence of events is about: a user or a group, with its
/// memberships (as member or as group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Of {
    User,
    Group,
}

impl Of {
    /// Whether `event` concerns the resource `id`: the resource itself or
    /// one of its memberships.
    pub fn concerns(self, event: &Change, id: &str) -> bool {
        match (&event.resource, self) {
            (Some(change::Resource::Membership(m)), Of::User) => m.member_id == id,
            (Some(change::Resource::Membership(m)), Of::Group) => m.group_id == id,
            _ => event.resource_id == id,
        }
    }
}

/// The kinds, in stream order, of the events that `keep` selects.
pub fn kinds_where(events: &[Change], keep: impl Fn(&Change) -> bool) -> Vec<&'static str> {
    events
        .iter()
        .filter(|e| keep(e))
        .map(|e| kind_name(e.kind))
        .collect()
}

/// The user carried by the last event of user `user_id` that has one.
pub fn last_user_payload(
    events: &[Change],
    user_id: &str,
) -> Option<roster_proto::directory::User> {
    events.iter().rev().find_map(|e| match &e.resource {
        Some(change::Resource::User(user)) if e.resource_id == user_id => Some(user.clone()),
        _ => None,
    })
}

/// Reads the directory's change stream from the beginning until `done` holds
/// for the events seen so far, or panics after a deadline with what it saw.
pub async fn watch_until(
    grpc: &str,
    directory_id: &str,
    done: impl Fn(&[Change]) -> bool,
) -> Vec<Change> {
    let mut events: Vec<Change> = Vec::new();
    let take = |events: &mut Vec<Change>, message: WatchChangesResponse| {
        events.extend(change_of(message));
    };
    if !read_log(
        grpc,
        directory_id,
        WATCH_DEADLINE,
        &mut events,
        |events: &Vec<Change>| done(events),
        take,
    )
    .await
    {
        let seen: Vec<String> = events
            .iter()
            .map(|e| format!("{} {}", kind_name(e.kind), e.resource_id))
            .collect();
        panic!(
            "WatchChanges: expected events did not arrive within {WATCH_DEADLINE:?}; saw {seen:#?}"
        );
    }
    events
}

/// Reads the log of `directory_id` on `grpc` from revision 0 in one
/// stream, handing every message to `take`, until `done` holds for `state`;
/// false when `deadline` passed first.
async fn read_log<S>(
    grpc: &str,
    directory_id: &str,
    deadline: Duration,
    state: &mut S,
    done: impl Fn(&S) -> bool,
    take: impl Fn(&mut S, WatchChangesResponse),
) -> bool {
    let mut stream = open_watch(grpc, directory_id, Start::AfterRevision(0))
        .await
        .expect("WatchChanges from revision 0");
    let read = async {
        while !done(state) {
            let message = stream
                .message()
                .await
                .expect("WatchChanges stream")
                .expect("WatchChanges stream ended early");
            take(state, message);
        }
    };
    tokio::time::timeout(deadline, read).await.is_ok()
}

fn change_of(message: WatchChangesResponse) -> Option<Change> {
    match message.payload {
        Some(Payload::Change(change)) => Some(change),
        _ => None,
    }
}

/// Every change of `directory_id` up to revision `head`, in stream order.
pub async fn changes_up_to(grpc: &str, directory_id: &str, head: i64) -> Vec<Change> {
    let mut state = (Vec::new(), 0);
    let take = |(changes, position): &mut (Vec<Change>, i64), message: WatchChangesResponse| {
        *position = message.revision;
        changes.extend(change_of(message));
    };
    let reached = read_log(
        grpc,
        directory_id,
        CONVERGE,
        &mut state,
        |(_, position)| *position >= head,
        take,
    )
    .await;
    assert!(reached, "the stream did not reach revision {head}");
    state.0
}

/// Waits until the stream holds, for every `(id, kinds)` pair, exactly the
/// kinds `kinds` among the events concerning resource `id` (a user or a
/// group, as `of` says) — then returns all events.
pub async fn watch_sequences(
    grpc: &str,
    directory_id: &str,
    of: Of,
    expected: &[(&str, &[&str])],
) -> Vec<Change> {
    let events = watch_until(grpc, directory_id, |events| {
        expected
            .iter()
            .all(|(id, kinds)| kinds_where(events, |e| of.concerns(e, id)).len() >= kinds.len())
    })
    .await;
    for (id, kinds) in expected {
        assert_eq!(
            &kinds_where(&events, |e| of.concerns(e, id)),
            kinds,
            "events of {id}"
        );
    }
    events
}

/// The identity of one delivered change, as compared between readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub revision: i64,
    pub event_id: String,
    pub kind: i32,
    pub resource_id: String,
    pub version: i64,
}

/// What a resuming watcher has seen so far.
#[derive(Debug, Default)]
pub struct WatchState {
    /// Every change, in delivery order.
    pub changes: Vec<Seen>,
    /// The cursor of the last message (change or progress).
    pub cursor: String,
    /// The revision of the last message.
    pub position: i64,
    /// How many times the stream was (re)established.
    pub connects: usize,
}

/// A `WatchChanges` consumer that persists its cursor after every message
/// and, whenever the stream breaks (or after `drop_every` messages, to
/// simulate a flaky consumer), reconnects with `after_cursor` — possibly to
/// a directory service that was just restarted.
pub struct ResumingWatcher {
    pub state: Arc<Mutex<WatchState>>,
    /// The directory service it reads from (`host:port`).
    pub grpc: String,
    pub directory_id: String,
    task: tokio::task::JoinHandle<()>,
}

impl ResumingWatcher {
    /// Starts watching `directory_id` on `grpc` from revision 0.
    pub fn start(grpc: &str, directory_id: &str, drop_every: Option<usize>) -> Self {
        let state = Arc::new(Mutex::new(WatchState::default()));
        let task = tokio::spawn(watch_forever(
            grpc.to_string(),
            directory_id.to_string(),
            drop_every,
            state.clone(),
        ));
        Self {
            state,
            grpc: grpc.to_string(),
            directory_id: directory_id.to_string(),
            task,
        }
    }

    /// The current head of the directory's change log and the whole log up
    /// to it, read in one uninterrupted stream: what this watcher must see.
    pub async fn reference_log(&self) -> (i64, Vec<Seen>) {
        let head = head_revision(&self.grpc, &self.directory_id).await;
        (head, full_log(&self.grpc, &self.directory_id, head).await)
    }

    /// Waits until the watcher's position reached `revision`.
    pub async fn wait_for(&self, revision: i64) {
        crate::eventually("the resuming watcher catches up", CONVERGE, || async {
            (self.state.lock().unwrap().position >= revision).then_some(())
        })
        .await;
    }

    /// The changes seen so far.
    pub fn changes(&self) -> Vec<Seen> {
        self.state.lock().unwrap().changes.clone()
    }

    /// How many times the stream was established.
    pub fn connects(&self) -> usize {
        self.state.lock().unwrap().connects
    }
}

impl Drop for ResumingWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_forever(
    grpc: String,
    directory_id: String,
    drop_every: Option<usize>,
    state: Arc<Mutex<WatchState>>,
) {
    loop {
        let cursor = state.lock().unwrap().cursor.clone();
        let start = if cursor.is_empty() {
            Start::AfterRevision(0)
        } else {
            Start::AfterCursor(cursor)
        };
        if let Ok(mut stream) = open_watch(&grpc, &directory_id, start).await {
            state.lock().unwrap().connects += 1;
            let mut received = 0usize;
            while let Ok(Some(message)) = stream.message().await {
                record(&mut state.lock().unwrap(), message);
                received += 1;
                if drop_every.is_some_and(|n| received >= n) {
                    break;
                }
            }
        }
        // Reconnect backoff, as a consumer would; not a synchronisation sleep.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record(state: &mut WatchState, message: WatchChangesResponse) {
    if let Some(Payload::Change(change)) = &message.payload {
        state.changes.push(Seen {
            revision: message.revision,
            event_id: change.event_id.clone(),
            kind: change.kind,
            resource_id: change.resource_id.clone(),
            version: change.version,
        });
    }
    if !message.cursor.is_empty() {
        state.cursor = message.cursor;
    }
    state.position = state.position.max(message.revision);
}

/// Opens a `WatchChanges` stream of `directory_id` on `grpc`.
pub async fn open_watch(
    grpc: &str,
    directory_id: &str,
    start: Start,
) -> Result<tonic::Streaming<roster_proto::directory::WatchChangesResponse>, String> {
    let channel = connect(grpc).await.map_err(|e| e.to_string())?;
    let request = WatchChangesRequest {
        directory_id: directory_id.to_string(),
        kinds: vec![],
        start: Some(start),
    };
    DirectoryServiceClient::new(channel)
        .watch_changes(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| s.to_string())
}

/// The change-log revision every change of `directory_id` committed so far
/// is at or below (from a `ListUsers` snapshot).
pub async fn head_revision(grpc: &str, directory_id: &str) -> i64 {
    let channel = connect(grpc).await.expect("gRPC connect");
    let request = ListUsersRequest {
        directory_id: directory_id.to_string(),
        options: Some(ListOptions {
            count: 1,
            ..Default::default()
        }),
    };
    DirectoryServiceClient::new(channel)
        .list_users(request)
        .await
        .expect("ListUsers")
        .into_inner()
        .revision
}

/// Reads the directory's change log from revision 0 up to `head` in one
/// uninterrupted stream: the reference the resuming watchers are compared with.
pub async fn full_log(grpc: &str, directory_id: &str, head: i64) -> Vec<Seen> {
    let mut state = WatchState::default();
    let reached = read_log(
        grpc,
        directory_id,
        CONVERGE,
        &mut state,
        |state| state.position >= head,
        record,
    )
    .await;
    assert!(reached, "the full log did not reach the head");
    state.changes
}

/// Asserts that `seen` is exactly `reference`: same events, same order, no
/// duplicate event id, strictly increasing revisions.
pub fn assert_exactly_once_in_order(seen: &[Seen], reference: &[Seen], what: &str) {
    let mut ids = std::collections::HashSet::new();
    for s in seen {
        assert!(ids.insert(&s.event_id), "{what}: duplicate event {s:?}");
    }
    for pair in seen.windows(2) {
        assert!(
            pair[0].revision < pair[1].revision,
            "{what}: revisions not increasing: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    let missing: Vec<&Seen> = reference
        .iter()
        .filter(|r| !ids.contains(&r.event_id))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} committed changes never delivered, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(
        seen.len(),
        reference.len(),
        "{what}: extra events delivered"
    );
    assert_eq!(seen, reference, "{what}: order differs from the log");
}

/// Opens a watch stream of `kinds` on `client`.
pub async fn watch(
    client: &mut DirectoryServiceClient<Channel>,
    directory_id: &str,
    kinds: &[ChangeKind],
    start: Start,
) -> Streaming<WatchChangesResponse> {
    let req = WatchChangesRequest {
        directory_id: directory_id.into(),
        kinds: kinds.iter().map(|k| *k as i32).collect(),
        start: Some(start),
    };
    client
        .watch_changes(req)
        .await
        .expect("WatchChanges")
        .into_inner()
}

/// The next message of a stream, within [`PROMPTLY`].
pub async fn next_message(stream: &mut Streaming<WatchChangesResponse>) -> WatchChangesResponse {
    tokio::time::timeout(PROMPTLY, stream.message())
        .await
        .expect("no watch message in time")
        .expect("watch stream failed")
        .expect("watch stream ended")
}

/// The next change (skipping progress markers) and its message, within [`PROMPTLY`].
pub async fn next_change(
    stream: &mut Streaming<WatchChangesResponse>,
) -> (WatchChangesResponse, Change) {
    tokio::time::timeout(PROMPTLY, async {
        loop {
            let msg = stream
                .message()
                .await
                .expect("watch stream failed")
                .expect("watch stream ended");
            if let Some(Payload::Change(c)) = msg.payload.clone() {
                return (msg, c);
            }
        }
    })
    .await
    .expect("no change in time")
}

/// The next `N` changes and their messages, each within [`PROMPTLY`].
pub async fn next_changes<const N: usize>(
    stream: &mut Streaming<WatchChangesResponse>,
) -> [(WatchChangesResponse, Change); N] {
    let mut changes = Vec::with_capacity(N);
    for _ in 0..N {
        changes.push(next_change(stream).await);
    }
    changes.try_into().expect("N changes")
}

/// Waits for the next change on `stream` and asserts it is one of
/// resource `id`.
pub async fn assert_next_change_of(stream: &mut Streaming<WatchChangesResponse>, id: &str) {
    let (_, change) = next_change(stream).await;
    assert_eq!(change.resource_id, id, "the next change's resource");
}

/// Collects every message that arrives within `window`; the stream must
/// stay open meanwhile.
pub async fn messages_during(
    stream: &mut Streaming<WatchChangesResponse>,
    window: Duration,
) -> Vec<WatchChangesResponse> {
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + window;
    while let Ok(msg) = tokio::time::timeout_at(until, stream.message()).await {
        out.push(
            msg.expect("watch stream failed")
                .expect("watch stream ended"),
        );
    }
    out
}

/// The change kind of a change.
pub fn kind(c: &Change) -> ChangeKind {
    ChangeKind::try_from(c.kind).unwrap()
}
