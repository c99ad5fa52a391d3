//! Store errors. Database-specific failures (unique violations, serialization
//! failures, lost connections) are mapped to these variants in one place per
//! backend, so callers never see a raw SQL error.

/// What went wrong in a store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource does not exist (in this directory).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique attribute is already taken (userName, group displayName, ...).
    #[error("{0}")]
    Conflict(String),
    /// `if_version` did not match the stored version.
    #[error("version mismatch: expected {expected}, found {actual}")]
    VersionMismatch { expected: i64, actual: i64 },
    /// The request is not valid for the stored state (e.g. unknown member id).
    #[error("{0}")]
    Invalid(String),
    /// The filter or sort cannot be evaluated (unknown attribute, bad type).
    #[error("{0}")]
    InvalidFilter(String),
    /// A limit was hit (e.g. more than two live tokens).
    #[error("{0}")]
    Limit(String),
    /// The cursor points before the retained change log.
    #[error("cursor {requested} is older than the retained change log (oldest valid: {oldest})")]
    CursorExpired { requested: i64, oldest: i64 },
    /// A transient failure the caller may retry (serialization failure,
    /// deadlock, lost connection, database unavailable).
    #[error("transient database failure: {0}")]
    Unavailable(String),
    /// A capped resource is fully in use (every initial-state snapshot
    /// connection); the same call may succeed after `retry_after`.
    #[error("{what}; retry in {} s", retry_after.as_secs())]
    Busy {
        what: String,
        retry_after: std::time::Duration,
    },
    /// Anything else; logged, never shown to clients in detail.
    #[error("internal store error: {0}")]
    Internal(String),
    /// A callback (e.g. the PATCH engine) rejected the change.
    #[error("rejected: {0}")]
    Rejected(Box<dyn std::error::Error + Send + Sync>),
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A stored SHA-256 secret hash (tokens, service credentials) as read back.
pub(crate) fn stored_hash(bytes: Vec<u8>) -> StoreResult<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Internal("stored secret hash is not 32 bytes".into()))
}

/// Maps a sqlx failure that is not the database's verdict on a statement
/// (pool, connection, driver): both backends treat these alike.
pub(crate) fn client_error(error: &sqlx::Error) -> StoreError {
    match error {
        // `Protocol`: a server that is starting or stopping can answer a new
        // connection with bytes the protocol does not allow (seen during a
        // PostgreSQL restart: "unexpected response from SSLRequest: 0x00").
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => {
            tracing::warn!(error = %error, "database unavailable");
            StoreError::Unavailable("database unavailable".into())
        }
        sqlx::Error::RowNotFound => StoreError::NotFound("resource"),
        _ => {
            tracing::error!(error = %error, "database client error");
            StoreError::Internal("database client error".into())
        }
    }
}
