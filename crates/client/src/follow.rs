//! The follow loop: connect, watch, hand each message to the consumer,
//! persist its cursor, and start again wherever the stream broke.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_proto::directory::watch_changes_request::Start as WireStart;
use roster_proto::directory::watch_changes_response::Payload;
use roster_proto::directory::{Change, ChangeKind, WatchChangesRequest, WatchChangesResponse};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::backoff::Backoff;
use crate::cursor::CursorStore;
use crate::list::{self, ListFailed};

/// Errors of consumers and cursor stores, whatever their type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a follower without a saved cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The whole directory as synthetic events, then live changes.
    InitialState,
    /// Only changes committed from now on.
    FromNow,
    /// Changes after a change-log revision (0 = all retained).
    AfterRevision(i64),
    /// Like `InitialState`, but the snapshot is read through the list RPCs
    /// page by page (no long-held snapshot transaction on the server, no
    /// snapshot cap), then watched from the first page's cursor. Needs a
    /// directory id.
    ListThenWatch,
}

/// Why the consumer is about to receive a full snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotReason {
    /// First start: no cursor was saved.
    NoCursor,
    /// The saved cursor is out of range (expired, from a restored log, or
    /// ahead of the log): changes after it can no longer be replayed.
    CursorOutOfRange,
    /// The previous snapshot broke before its `SYNCED` marker.
    Interrupted,
}

/// What a follower watches and how it reconnects.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// Directory-service replicas, tried in turn after each disconnect.
    pub endpoints: Vec<Endpoint>,
    /// The directory to follow (empty: every directory).
    pub directory_id: String,
    /// Only these kinds (empty: every kind).
    pub kinds: Vec<ChangeKind>,
    /// Where to start when no cursor is saved.
    pub start: Start,
    /// The internal secret, sent as a bearer token, if the service wants one.
    pub secret: Option<String>,
    pub backoff: Backoff,
}

impl FollowConfig {
    pub fn new(endpoints: Vec<Endpoint>, directory_id: impl Into<String>) -> Self {
        Self {
            endpoints,
            directory_id: directory_id.into(),
            kinds: Vec::new(),
            start: Start::InitialState,
            secret: None,
            backoff: Backoff::default(),
        }
    }
}

/// Where a message leaves the consumer: pass `cursor` back to resume right
/// after it; `revision` is the change-log revision it brings you to.
#[derive(Debug, Clone, Copy)]
pub struct Position<'a> {
    pub cursor: &'a str,
    pub revision: i64,
}

/// The application's side: applies what the follower receives.
///
/// Every method returns only once its effect is durable; the follower
/// saves the message's cursor afterwards. An error stops the follower
/// (without saving), so the message is delivered again on the next run.
#[async_trait]
pub trait Consumer: Send {
    /// A full snapshot follows as synthetic `*.created` / `member.added`
    /// events, then [`Consumer::synced`]: whatever the consumer holds that
    /// the snapshot does not mention no longer exists.
    async fn snapshot_begins(&mut self, reason: SnapshotReason) -> Result<(), BoxError>;
    /// One change. The cursor is empty for synthetic (snapshot) events,
    /// which cannot be resumed from.
    async fn apply(&mut self, change: &Change, at: Position<'_>) -> Result<(), BoxError>;
    /// The snapshot is complete; live changes follow.
    async fn synced(&mut self, _at: Position<'_>) -> Result<(), BoxError> {
        Ok(())
    }
    /// Nothing to apply, but the position moved (filters, idle streams).
    async fn progress(&mut self, _at: Position<'_>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Hooks for metrics and logs; every method defaults to nothing.
pub trait Observer: Send + Sync {
    /// A stream is open; `resumed_after` is the cursor it continues from.
    fn connected(&self, _endpoint: &str, _resumed_after: Option<&str>) {}
    /// A stream ended or could not be opened; the next try is in `retry_in`.
    fn disconnected(&self, _endpoint: &str, _status: &Status, _retry_in: Duration) {}
    fn applied(&self, _change: &Change) {}
    fn snapshot(&self, _reason: SnapshotReason) {}
}

/// An observer that observes nothing.
#[derive(Debug, Default)]
pub struct NoObserver;
impl Observer for NoObserver {}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("no directory-service endpoint configured")]
    NoEndpoint,
    #[error("the directory service refused the watch ({code:?}): {message}", code = .0.code(), message = .0.message())]
    Refused(Status),
    #[error("the consumer failed: {0}")]
    Consumer(BoxError),
    #[error("the cursor store failed: {0}")]
    Cursor(BoxError),
}

/// How one stream ended.
enum Ended {
    /// Shutdown was requested.
    Stopped,
    /// Reconnect after a pause (the status says why; `Duration` is the
    /// server's pushback).
    Retry(Status, Duration),
    /// The cursor cannot be resumed from: take a new snapshot.
    OutOfRange(Status),
}

/// Follows one directory's changes until told to stop.
pub struct Follower<O: Observer = NoObserver> {
    config: FollowConfig,
    observer: O,
    /// Rotates over `config.endpoints`.
    next_endpoint: usize,
    /// A snapshot has begun and its `SYNCED` has not arrived yet.
    in_snapshot: bool,
    /// The next stream must start with a snapshot, for this reason.
    snapshot_due: Option<SnapshotReason>,
}

impl Follower<NoObserver> {
    pub fn new(config: FollowConfig) -> Self {
        Self::with_observer(config, NoObserver)
    }
}

impl<O: Observer> Follower<O> {
    pub fn with_observer(config: FollowConfig, observer: O) -> Self {
        Self {
            config,
            observer,
            next_endpoint: 0,
            in_snapshot: false,
            snapshot_due: None,
        }
    }

    /// Follows until `shutdown` completes or an error that retrying cannot
    /// fix (a refused watch, a failing consumer or cursor store).
    pub async fn run(
        &mut self,
        consumer: &mut dyn Consumer,
        cursors: &mut dyn CursorStore,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), FollowError> {
        if self.config.endpoints.is_empty() {
            return Err(FollowError::NoEndpoint);
        }
        tokio::pin!(shutdown);
        let mut backoff = self.config.backoff.clone();
        loop {
            let cursor = cursors.load().await.map_err(FollowError::Cursor)?;
            let endpoint = self.rotate_endpoint();
            let mut delivered = false;
            let ended = self
                .follow_once(
                    &endpoint,
                    cursor,
                    consumer,
                    cursors,
                    &mut delivered,
                    &mut shutdown,
                )
                .await?;
            if delivered {
                backoff.reset();
            }
            let name = endpoint.uri().to_string();
            match ended {
                Ended::Stopped => return Ok(()),
                Ended::OutOfRange(status) => {
                    tracing::warn!(endpoint = %name, reason = %status.message(), "cursor out of range; taking a new snapshot");
                    cursors.clear().await.map_err(FollowError::Cursor)?;
                    self.snapshot_due = Some(SnapshotReason::CursorOutOfRange);
                }
                Ended::Retry(status, pushback) => {
                    let pause = backoff.next_delay(pushback);
                    self.observer.disconnected(&name, &status, pause);
                    tracing::info!(endpoint = %name, code = ?status.code(), reason = %status.message(), retry_in_ms = pause.as_millis() as u64, "watch interrupted; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = &mut shutdown => return Ok(()),
                    }
                }
            }
        }
    }

    fn rotate_endpoint(&mut self) -> Endpoint {
        let endpoints = &self.config.endpoints;
        let endpoint = endpoints[self.next_endpoint % endpoints.len()].clone();
        self.next_endpoint = self.next_endpoint.wrapping_add(1);
        endpoint
    }

    async fn begin_snapshot(
        &mut self,
        consumer: &mut dyn Consumer,
        reason: SnapshotReason,
    ) -> Result<(), FollowError> {
        self.observer.snapshot(reason);
        consumer
            .snapshot_begins(reason)
            .await
            .map_err(FollowError::Consumer)?;
        self.in_snapshot = true;
        Ok(())
    }

    /// Opens one stream and drains it into the consumer.
    async fn follow_once(
        &mut self,
        endpoint: &Endpoint,
        cursor: Option<String>,
        consumer: &mut dyn Consumer,
        cursors: &mut dyn CursorStore,
        delivered: &mut bool,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<Ended, FollowError> {
        let (mut start, snapshot) = match &cursor {
            Some(c) => (WireStart::AfterCursor(c.clone()), None),
            None => self.start_without_cursor(),
        };
        let name = endpoint.uri().to_string();
        let connected = tokio::select! {
            connected = connect(endpoint) => connected,
            _ = &mut *shutdown => return Ok(Ended::Stopped),
        };
        let mut client = match connected {
            Ok(channel) => DirectoryServiceClient::new(channel),
            Err(status) => return self.classify(status),
        };
        if let (Some(reason), Start::ListThenWatch) = (snapshot, self.config.start) {
            self.snapshot_due = None;
            self.begin_snapshot(consumer, reason).await?;
            let listed = tokio::select! {
                listed = self.list(&mut client, consumer) => listed,
                _ = &mut *shutdown => return Ok(Ended::Stopped),
            };
            let (cursor, revision) = match listed {
                Ok(at) => at,
                Err(ListFailed::Status(status)) => return self.classify(status),
                Err(ListFailed::Consumer(e)) => return Err(FollowError::Consumer(e)),
            };
            let at = Position {
                cursor: &cursor,
                revision,
            };
            consumer.synced(at).await.map_err(FollowError::Consumer)?;
            cursors.save(&cursor).await.map_err(FollowError::Cursor)?;
            self.in_snapshot = false;
            *delivered = true;
            start = WireStart::AfterCursor(cursor);
        }
        let opened = tokio::select! {
            opened = self.watch(&mut client, start) => opened,
            _ = &mut *shutdown => return Ok(Ended::Stopped),
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(status) => return self.classify(status),
        };
        self.observer.connected(&name, cursor.as_deref());
        if let (Some(reason), false) = (snapshot, self.config.start == Start::ListThenWatch) {
            self.snapshot_due = None;
            self.begin_snapshot(consumer, reason).await?;
        }
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                _ = &mut *shutdown => return Ok(Ended::Stopped),
            };
            match message {
                Ok(Some(message)) => {
                    self.handle(message, consumer, cursors).await?;
                    *delivered = true;
                }
                Ok(None) => {
                    return Ok(Ended::Retry(
                        Status::unavailable("stream ended"),
                        Duration::ZERO,
                    ));
                }
                Err(status) => return self.classify(status),
            }
        }
    }

    /// Without a cursor: the configured start, or a snapshot when one is
    /// due (also again, if the last one broke before `SYNCED`).
    fn start_without_cursor(&self) -> (WireStart, Option<SnapshotReason>) {
        let due = self
            .snapshot_due
            .or(self.in_snapshot.then_some(SnapshotReason::Interrupted));
        match (due, self.config.start) {
            (Some(reason), _) => (WireStart::InitialState(()), Some(reason)),
            (None, Start::InitialState | Start::ListThenWatch) => {
                (WireStart::InitialState(()), Some(SnapshotReason::NoCursor))
            }
            (None, Start::FromNow) => (WireStart::FromNow(()), None),
            (None, Start::AfterRevision(r)) => (WireStart::AfterRevision(r), None),
        }
    }

    async fn watch(
        &self,
        client: &mut DirectoryServiceClient<Channel>,
        start: WireStart,
    ) -> Result<tonic::Streaming<WatchChangesResponse>, Status> {
        let mut request = tonic::Request::new(WatchChangesRequest {
            directory_id: self.config.directory_id.clone(),
            kinds: self.config.kinds.iter().map(|k| *k as i32).collect(),
            start: Some(start),
        });
        self.authorize(request.metadata_mut())?;
        Ok(client.watch_changes(request).await?.into_inner())
    }

    async fn list(
        &self,
        client: &mut DirectoryServiceClient<Channel>,
        consumer: &mut dyn Consumer,
    ) -> Result<(String, i64), ListFailed> {
        if self.config.directory_id.is_empty() {
            let refused = Status::invalid_argument("list-then-watch needs a directory id");
            return Err(ListFailed::Status(refused));
        }
        let kinds = &self.config.kinds;
        let wants = |kind: ChangeKind| kinds.is_empty() || kinds.contains(&kind);
        let authorize = |metadata: &mut tonic::metadata::MetadataMap| self.authorize(metadata);
        list::snapshot(
            client,
            &authorize,
            &self.config.directory_id,
            &wants,
            consumer,
        )
        .await
    }

    /// Adds the internal secret, when configured.
    fn authorize(&self, metadata: &mut tonic::metadata::MetadataMap) -> Result<(), Status> {
        if let Some(secret) = &self.config.secret {
            let value = format!("Bearer {secret}").parse().map_err(|_| {
                Status::invalid_argument("the internal secret is not a valid header value")
            })?;
            metadata.insert("authorization", value);
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        message: WatchChangesResponse,
        consumer: &mut dyn Consumer,
        cursors: &mut dyn CursorStore,
    ) -> Result<(), FollowError> {
        let cursor = message.cursor.as_str();
        let at = Position {
            cursor,
            revision: message.revision,
        };
        match &message.payload {
            Some(Payload::Change(change)) => {
                consumer
                    .apply(change, at)
                    .await
                    .map_err(FollowError::Consumer)?;
                self.observer.applied(change);
            }
            Some(Payload::Synced(_)) => {
                consumer.synced(at).await.map_err(FollowError::Consumer)?;
                self.in_snapshot = false;
            }
            Some(Payload::Progress(_)) => {
                consumer.progress(at).await.map_err(FollowError::Consumer)?;
            }
            None => {}
        }
        // Synthetic events carry no cursor: a snapshot resumes only whole.
        if !cursor.is_empty() {
            cursors.save(cursor).await.map_err(FollowError::Cursor)?;
        }
        Ok(())
    }

    /// Which statuses a retry can fix.
    fn classify(&self, status: Status) -> Result<Ended, FollowError> {
        match status.code() {
            Code::OutOfRange => Ok(Ended::OutOfRange(status)),
            Code::InvalidArgument
            | Code::NotFound
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::Unimplemented => Err(FollowError::Refused(status)),
            _ => {
                let pushback = pushback(&status);
                Ok(Ended::Retry(status, pushback))
            }
        }
    }
}

async fn connect(endpoint: &Endpoint) -> Result<Channel, Status> {
    endpoint
        .connect()
        .await
        .map_err(|e| Status::unavailable(format!("cannot connect: {e}")))
}

/// The pause the server asked for (`grpc-retry-pushback-ms`, else
/// `retry-after` in seconds), if any.
fn pushback(status: &Status) -> Duration {
    let read = |key: &str| {
        status
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    read("grpc-retry-pushback-ms")
        .map(Duration::from_millis)
        .or_else(|| read("retry-after").map(Duration::from_secs))
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushback_prefers_grpc_milliseconds_then_retry_after() {
        let mut status = Status::resource_exhausted("busy");
        assert_eq!(pushback(&status), Duration::ZERO);
        status
            .metadata_mut()
            .insert("retry-after", "2".parse().unwrap());
        assert_eq!(pushback(&status), Duration::from_secs(2));
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", "750".parse().unwrap());
        assert_eq!(pushback(&status), Duration::from_millis(750));
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;
    use crate::cursor::MemoryCursor;

    struct Nothing;

    #[async_trait]
    impl Consumer for Nothing {
        async fn snapshot_begins(&mut self, _: SnapshotReason) -> Result<(), BoxError> {
            Ok(())
        }
        async fn apply(&mut self, _: &Change, _: Position<'_>) -> Result<(), BoxError> {
            Ok(())
        }
    }

    fn assert_send<T: Send>(_: &T) {}

    /// A follower must be spawnable on a multi-threaded runtime.
    #[test]
    fn the_follow_future_is_send() {
        let mut follower = Follower::new(FollowConfig::new(Vec::new(), "d"));
        let (mut consumer, mut cursors) = (Nothing, MemoryCursor::default());
        let run = follower.run(&mut consumer, &mut cursors, std::future::pending());
        assert_send(&run);
    }

    #[tokio::test]
    async fn a_follower_without_endpoints_refuses_to_start() {
        let mut follower = Follower::new(FollowConfig::new(Vec::new(), "d"));
        let (mut consumer, mut cursors) = (Nothing, MemoryCursor::default());
        let ended = follower
            .run(&mut consumer, &mut cursors, std::future::pending())
            .await;
        assert!(matches!(ended, Err(FollowError::NoEndpoint)));
    }
}
