//! The requests this replica's endpoints have in flight, so that the group
//! commit of their progress can wait a moment for the answers still coming.
//!
//! Endpoints that keep up deliver the same events at nearly the same time:
//! their requests leave together and their answers come back within a
//! fraction of a millisecond of each other. Without waiting, the first
//! answer's progress is written alone and the rest queue behind it — two or
//! three statements per round of ten endpoints, each paying PostgreSQL's
//! per-statement cost. Waiting until no request is in flight (at most
//! `linger`) writes the whole round in one statement. Each endpoint still
//! sends its next event only once its own progress is committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

pub(crate) struct InFlight {
    requests: AtomicUsize,
    /// Woken whenever the count reaches zero.
    idle: Notify,
    /// The longest a batch waits for answers still in flight: bounds what
    /// a slow receiver costs the other endpoints' progress.
    linger: Duration,
}

impl InFlight {
    pub(crate) fn new(linger: Duration) -> Self {
        Self {
            requests: AtomicUsize::new(0),
            idle: Notify::new(),
            linger,
        }
    }

    /// Counts a request until the guard is dropped, which its endpoint does
    /// once the request's progress is queued.
    pub(crate) fn start(self: &Arc<Self>) -> Request {
        self.requests.fetch_add(1, Ordering::AcqRel);
        Request(Arc::clone(self))
    }

    /// Returns once no request is in flight, or after `linger`.
    pub(crate) async fn settled(&self) {
        if self.linger.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.linger;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            // Registered before the count is read: a wake-up between the
            // two is not missed.
            idle.as_mut().enable();
            if self.requests.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return;
            }
        }
    }
}

/// One request in flight (see [`InFlight::start`]).
pub(crate) struct Request(Arc<InFlight>);

impl Drop for Request {
    fn drop(&mut self) {
        if self.0.requests.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settles_when_the_last_request_is_done() {
        let in_flight = Arc::new(InFlight::new(Duration::from_secs(60)));
        // Nothing in flight: at once.
        in_flight.settled().await;
        let waiter = {
            let in_flight = Arc::clone(&in_flight);
            let (first, second) = (in_flight.start(), in_flight.start());
            let handle = tokio::spawn({
                let in_flight = Arc::clone(&in_flight);
                async move { in_flight.settled().await }
            });
            tokio::task::yield_now().await;
            drop(first);
            tokio::task::yield_now().await;
            assert!(!handle.is_finished(), "one request is still in flight");
            drop(second);
            handle
        };
        waiter.await.expect("settled once both are done");
    }

    #[tokio::test]
    async fn a_request_that_never_answers_does_not_hold_progress_back() {
        let in_flight = Arc::new(InFlight::new(Duration::from_millis(2)));
        let slow = in_flight.start();
        in_flight.settled().await;
        assert_eq!(in_flight.requests.load(Ordering::Acquire), 1);
        drop(slow);
        assert_eq!(in_flight.requests.load(Ordering::Acquire), 0);
    }
}
