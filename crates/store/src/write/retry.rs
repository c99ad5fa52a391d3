//! When a write transaction is replayed. PostgreSQL aborts a transaction
//! that lost a deadlock or a serialization check (SQLSTATE 40P01/40001);
//! replaying it, callbacks included, is indistinguishable from the request
//! arriving a moment later. SQLite's single writer never produces such a
//! failure, so there the policy never fires.

use std::time::Duration;

use crate::error::StoreError;

/// How often a transaction that hit a serialization failure or deadlock is
/// run in all before the caller sees [`StoreError::Unavailable`]. A
/// deletion that raced an add needs one replay per racing add.
const ATTEMPTS: u32 = 6;

/// Backoff before the first replay; doubled before each further one, with
/// jitter so that the transactions that collided do not collide again.
const FIRST_BACKOFF: Duration = Duration::from_millis(2);

/// Message of the [`StoreError::Unavailable`] that a replay may cure;
/// [`is_retryable`] looks for it.
const RETRYABLE: &str = "concurrent update conflict, retry";

/// The error of a transaction the database aborted for a conflict with a
/// concurrent one (deadlock, serialization failure).
pub(crate) fn conflict() -> StoreError {
    StoreError::Unavailable(RETRYABLE.into())
}

/// The error that replays a transaction (rolled back when the error drops
/// it) although the database reported nothing: a deletion found a
/// membership in a group it had not locked.
pub(crate) fn replay() -> StoreError {
    conflict()
}

/// Whether replaying the whole transaction may succeed.
pub(crate) fn is_retryable(error: &StoreError) -> bool {
    matches!(error, StoreError::Unavailable(m) if m == RETRYABLE)
}

/// Runs `op`, replaying it after a jittered exponential backoff while it
/// fails with a retryable error, at most [`ATTEMPTS`] times in all.
pub(crate) async fn retrying<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if is_retryable(&e) && attempt < ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A random wait in `[b/2, b]`, `b` = [`FIRST_BACKOFF`] doubled per earlier replay.
fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_BACKOFF * 2u32.pow(attempt.saturating_sub(1).min(8));
    ceiling.mul_f64(rand::random_range(0.5..=1.0))
}
