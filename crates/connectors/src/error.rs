//! Errors of a sync, mapped once: to a run's `last_error` by the runner, to
//! a gRPC status by the admin service.

use std::time::Duration;

use roster_store::StoreError;

/// What can go wrong reading a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The settings cannot work (bad URL, missing base DN): retrying will
    /// not help until an admin changes them.
    #[error("invalid source settings: {0}")]
    Settings(String),
    /// The server refused the credentials.
    #[error("the source refused the credentials: {0}")]
    Unauthorized(String),
    /// Connection, protocol or server error; retried with backoff.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// The source asked us to slow down (Google's 403 rate-limit reasons,
    /// 429); `retry_after` when it said for how long.
    #[error("the source is rate limiting: {reason}")]
    RateLimited {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// What can stop a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The mass-deletion safeguard stopped the sync before it wrote.
    #[error("{0}")]
    NeedsConfirmation(String),
    /// The sealed credentials do not open (another key, or corrupted).
    #[error(
        "the source credentials open with no key of ROSTER_SECRET_KEY / \
         ROSTER_SECRET_KEY_PREVIOUS (a previous key dropped before `roster admin reseal`?)"
    )]
    Credentials,
}

impl SyncError {
    /// The outcome label of a failed run in the sync metrics.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Source(SourceError::Settings(_)) => "source_settings",
            Self::Source(SourceError::Unauthorized(_)) => "source_unauthorized",
            Self::Source(SourceError::Unavailable(_)) => "source_unavailable",
            Self::Source(SourceError::RateLimited { .. }) => "source_rate_limited",
            Self::Store(_) => "store",
            Self::NeedsConfirmation(_) => "needs_confirmation",
            Self::Credentials => "credentials",
        }
    }
}
