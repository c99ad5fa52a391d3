//! Keyed user lookups to a directory service in another process, gathered
//! into `BatchListUsers` calls.
//!
//! An IdP searches `userName eq "…"` (or `externalId eq "…"`) before nearly
//! every write, many at once. Alone, each is a gRPC call whose cost on both
//! sides is mostly the hop — HTTP/2 frames, a stream task, system calls and
//! wake-ups (docs/performance.md, "The gRPC hop of split processes") — not
//! the index probe behind it. Here lookups queue, and a few *lanes* — tasks
//! each with one call in flight — drain the queue: a lone lookup goes out
//! as the plain `ListUsers` it was, at once; lookups that arrive while every
//! lane is busy share the next call, which the directory service answers
//! call by call (each its own span, deadline and status) and whose keyed
//! searches its store runs as one statement. Nothing is cached or delayed
//! beyond the call in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use roster_proto::batch;
use roster_proto::directory as pd;
use roster_proto::directory::directory_service_client::DirectoryServiceClient;
use roster_scim::filter::{self, CompareOp, Filter};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::upstream::Upstream;

/// Calls in flight before lookups start to share one.
const LANES: usize = 2;

/// After a directory service answers `BatchListUsers` with UNIMPLEMENTED
/// (an older version, during a rolling upgrade), lookups go alone for this
/// long before a batch is tried again.
const UNSUPPORTED_FOR: Duration = Duration::from_secs(30);

/// The largest `BatchListUsers` answer taken (tonic's default is 4 MiB, as
/// for each lookup alone). A batch whose answer is larger still — many
/// users sharing an `externalId`, large resources — is sent again call by
/// call, so a lookup never fails for the company it kept.
const BATCH_ANSWER_LIMIT: usize = 16 * 1024 * 1024;

type Reply = Result<Response<pd::ListUsersResponse>, Status>;

/// One waiting lookup.
struct Pending {
    request: Request<pd::ListUsersRequest>,
    reply: oneshot::Sender<Reply>,
}

/// See the module docs.
pub(crate) struct Lookups {
    client: DirectoryServiceClient<Upstream>,
    /// `client` taking answers up to [`BATCH_ANSWER_LIMIT`].
    batch_client: DirectoryServiceClient<Upstream>,
    state: Mutex<State>,
    /// Milliseconds since `epoch` until which batches are not tried.
    unsupported_until: AtomicU64,
    epoch: Instant,
    /// `BatchListUsers` calls sent, and the lookups they carried.
    batches: AtomicU64,
    batched: AtomicU64,
}

/// What a [`crate::remote::RemoteDirectory`] did with its keyed lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupCounts {
    /// `BatchListUsers` calls sent.
    pub batches: u64,
    /// Lookups those calls carried.
    pub batched: u64,
}

#[derive(Default)]
struct State {
    queue: Vec<Pending>,
    lanes: usize,
}

impl Lookups {
    pub(crate) fn new(client: DirectoryServiceClient<Upstream>) -> Arc<Self> {
        Arc::new(Self {
            batch_client: client.clone().max_decoding_message_size(BATCH_ANSWER_LIMIT),
            client,
            state: Mutex::default(),
            unsupported_until: AtomicU64::new(0),
            epoch: Instant::now(),
            batches: AtomicU64::new(0),
            batched: AtomicU64::new(0),
        })
    }

    pub(crate) fn counts(&self) -> LookupCounts {
        LookupCounts {
            batches: self.batches.load(Ordering::Relaxed),
            batched: self.batched.load(Ordering::Relaxed),
        }
    }

    /// Answers `request`, alone or in a batch. Lanes are tasks of their own,
    /// so a caller that goes away never strands the others of its batch.
    pub(crate) async fn list_users(
        self: &Arc<Self>,
        request: Request<pd::ListUsersRequest>,
    ) -> Reply {
        let (reply, answer) = oneshot::channel();
        let start_lane = {
            let mut state = self.lock();
            state.queue.push(Pending { request, reply });
            let start = state.lanes < LANES;
            state.lanes += usize::from(start);
            start
        };
        if start_lane {
            tokio::spawn(Arc::clone(self).lane());
        }
        answer
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("the lookup was abandoned")))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends calls until the queue is empty. The lane ends in the same
    /// critical section that finds the queue empty, so a lookup queued after
    /// that starts a lane of its own: none is left waiting.
    async fn lane(self: Arc<Self>) {
        loop {
            let batch = {
                let mut state = self.lock();
                if state.queue.is_empty() {
                    state.lanes -= 1;
                    return;
                }
                let n = state.queue.len().min(batch::MAX_CALLS);
                state.queue.drain(..n).collect::<Vec<_>>()
            };
            self.send(batch).await;
        }
    }

    async fn send(&self, batch: Vec<Pending>) {
        if batch.len() == 1 || !self.batches_supported() {
            return self.each_alone(batch).await;
        }
        let head = batch[0].request.metadata().clone();
        let calls = batch
            .iter()
            .map(|p| pd::BatchedListUsers {
                metadata: batch::to_map(p.request.metadata(), &["authorization"]),
                request: Some(p.request.get_ref().clone()),
            })
            .collect();
        let request = Request::from_parts(
            head,
            tonic::Extensions::default(),
            pd::BatchListUsersRequest { calls },
        );
        let metrics = roster_telemetry::metrics::metrics();
        metrics.directory_lookup_batches.inc();
        metrics.directory_batched_lookups.inc_by(batch.len() as u64);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        match self.batch_client.clone().batch_list_users(request).await {
            Ok(response) => answer(batch, response.into_inner().results),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                self.unsupported();
                tracing::info!("the directory service has no BatchListUsers; lookups go alone");
                self.each_alone(batch).await;
            }
            // tonic's "decoded message length too large" (either side).
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
                ) =>
            {
                tracing::debug!(%status, "a batch's answer was too large; its lookups go alone");
                self.each_alone(batch).await;
            }
            Err(status) => {
                for p in batch {
                    let _ = p.reply.send(Err(status.clone()));
                }
            }
        }
    }

    /// Sends each lookup of `batch` as its own `ListUsers`, all at once.
    async fn each_alone(&self, batch: Vec<Pending>) {
        futures::future::join_all(batch.into_iter().map(|p| self.alone(p))).await;
    }

    async fn alone(&self, pending: Pending) {
        let reply = self.client.clone().list_users(pending.request).await;
        let _ = pending.reply.send(reply);
    }

    fn batches_supported(&self) -> bool {
        self.millis_now() >= self.unsupported_until.load(Ordering::Relaxed)
    }

    fn unsupported(&self) {
        let until = self.millis_now() + UNSUPPORTED_FOR.as_millis() as u64;
        self.unsupported_until.store(until, Ordering::Relaxed);
    }

    fn millis_now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Gives each lookup its result (a missing one is an internal error).
fn answer(batch: Vec<Pending>, results: Vec<pd::BatchedListUsersResult>) {
    use pd::batched_list_users_result::Result as Outcome;
    let mut results = results.into_iter();
    for p in batch {
        let reply = match results.next().and_then(|r| r.result) {
            Some(Outcome::Response(response)) => Ok(Response::new(response)),
            Some(Outcome::Status(status)) => Err(batch::status_from_wire(status)),
            None => Err(Status::internal(
                "the batch's answer has no result for this call",
            )),
        };
        let _ = p.reply.send(reply);
    }
}

/// Whether `request` is a keyed lookup worth gathering: the first page of
/// one `eq` on a key an IdP looks users up by, nothing else asked of it.
/// Anything else (a page of a collection, a `co` search) goes alone, so
/// that a slow call never holds up lookups batched with it.
pub(crate) fn is_keyed_lookup(request: &pd::ListUsersRequest) -> bool {
    let Some(options) = &request.options else {
        return false;
    };
    let plain = options.omit_cursor
        && options.page_token.is_empty()
        && options.sort_by.is_empty()
        && options.start_index <= 1
        && options.count <= 100;
    plain
        && matches!(
            filter::parse(&options.filter),
            Ok(Filter::Compare { path, op: CompareOp::Eq, .. })
                if path.sub_attr.is_none()
                    && ["userName", "externalId", "id"]
                        .iter()
                        .any(|key| path.name.eq_ignore_ascii_case(key))
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(filter: &str, edit: impl FnOnce(&mut pd::ListOptions)) -> pd::ListUsersRequest {
        let mut options = pd::ListOptions {
            filter: filter.into(),
            count: 1,
            omit_cursor: true,
            ..Default::default()
        };
        edit(&mut options);
        pd::ListUsersRequest {
            directory_id: "d".into(),
            options: Some(options),
        }
    }

    #[test]
    fn only_a_first_page_of_one_eq_on_a_key_is_gathered() {
        for keyed in [
            r#"userName eq "bjensen""#,
            r#"USERNAME Eq "bjensen""#,
            r#"externalId eq "00u1""#,
            r#"id eq "2819c223""#,
        ] {
            assert!(is_keyed_lookup(&request(keyed, |_| {})), "{keyed}");
        }
        for other in [
            "",
            r#"userName co "jen""#,
            r#"displayName eq "Babs""#,
            r#"name.givenName eq "Barbara""#,
            r#"userName eq "a" or userName eq "b""#,
            "userName eq",
        ] {
            assert!(!is_keyed_lookup(&request(other, |_| {})), "{other}");
        }
        let key = r#"userName eq "bjensen""#;
        assert!(!is_keyed_lookup(&request(key, |o| o.omit_cursor = false)));
        assert!(!is_keyed_lookup(
            &request(key, |o| o.page_token = "t".into())
        ));
        assert!(!is_keyed_lookup(
            &request(key, |o| o.sort_by = "userName".into())
        ));
        assert!(!is_keyed_lookup(&request(key, |o| o.start_index = 2)));
        assert!(!is_keyed_lookup(&request(key, |o| o.count = 1000)));
        let no_options = pd::ListUsersRequest::default();
        assert!(!is_keyed_lookup(&no_options));
    }
}
