//! The one mapping of every failure of this service onto a gRPC status.
//!
//! Handlers return [`ServiceError`]; [`From<ServiceError> for Status`] is
//! the only place that picks codes, messages and metadata. Besides the code,
//! each status carries metadata the SCIM gateway uses to render the exact
//! SCIM error:
//! - `roster-scim-status`: the HTTP status of the equivalent SCIM error;
//! - `roster-scim-type`: the RFC 7644 `scimType`, when there is one;
//! - `roster-oldest-cursor`: on `OUT_OF_RANGE`, the oldest cursor a watch
//!   can still resume from;
//! - `retry-after` (whole seconds) and `grpc-retry-pushback-ms` (gRPC's own
//!   retry pushback): on `RESOURCE_EXHAUSTED` for a capacity that frees up
//!   by itself (every initial-state snapshot slot in use), when to retry.

use roster_scim::error::{ScimError, ScimType};
use roster_store::{Cursor, StoreError};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::cursor;

pub use roster_proto::contract::{
    OLDEST_CURSOR_METADATA as OLDEST_CURSOR_KEY, RETRY_AFTER_METADATA as RETRY_AFTER_KEY,
    RETRY_PUSHBACK_METADATA as RETRY_PUSHBACK_KEY, SCIM_STATUS_METADATA as SCIM_STATUS_KEY,
    SCIM_TYPE_METADATA as SCIM_TYPE_KEY,
};

/// Everything that can fail in a directory-service call.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A store call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The SCIM engine rejected the request (bad JSON, bad PATCH, bad filter).
    #[error(transparent)]
    Scim(#[from] ScimError),
    /// A request field is malformed (an id that is not a UUID, a bad cursor).
    #[error("{0}")]
    InvalidArgument(String),
    /// A resource id that cannot exist (not a UUID), reported like any
    /// unknown id so clients see the same 404 either way.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A resume position beyond the newest revision the change log has
    /// handed out: from a lost history (a restore) or made up.
    #[error(
        "cursor at revision {requested} is ahead of the change log (newest revision {newest}); \
         was the database restored? Start again with initial_state or a list"
    )]
    CursorAhead { requested: i64, newest: i64 },
    /// A cursor of another history of the change log (its epoch differs).
    #[error(
        "cursor belongs to another history of the change log (the database was restored \
         or its epoch renewed); start again with initial_state or a list"
    )]
    CursorOfAnotherHistory,
    /// A watcher did not read its stream for too long.
    #[error("consumer too slow; resume from your last cursor")]
    SlowConsumer,
    /// The server is stopping; watchers should reconnect elsewhere.
    #[error("server shutting down; resume from your last cursor")]
    ShuttingDown,
    /// The request needs something the server is not configured for (a
    /// webhook call without a sealing key).
    #[error("{0}")]
    FailedPrecondition(String),
}

/// Result of handler logic.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// Parses the id of a `what`. An id that does not parse cannot name
/// anything, so it is reported like an unknown one: clients see the same
/// 404 either way.
pub(crate) fn parse_id<T: std::str::FromStr>(id: &str, what: &'static str) -> ServiceResult<T> {
    id.parse().map_err(|_| ServiceError::NotFound(what))
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        match err {
            ServiceError::Store(e) => store_status(e),
            ServiceError::Scim(e) => scim_status(&e),
            ServiceError::InvalidArgument(m) => with_scim(
                Status::invalid_argument(m),
                400,
                Some(ScimType::InvalidValue),
            ),
            ServiceError::NotFound(what) => {
                with_scim(Status::not_found(format!("{what} not found")), 404, None)
            }
            ServiceError::Unauthenticated(m) => with_scim(Status::unauthenticated(m), 401, None),
            e @ (ServiceError::CursorAhead { .. } | ServiceError::CursorOfAnotherHistory) => {
                Status::out_of_range(e.to_string())
            }
            e @ ServiceError::SlowConsumer => Status::resource_exhausted(e.to_string()),
            e @ ServiceError::ShuttingDown => Status::unavailable(e.to_string()),
            ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
        }
    }
}

fn store_status(err: StoreError) -> Status {
    match err {
        StoreError::NotFound(what) => {
            with_scim(Status::not_found(format!("{what} not found")), 404, None)
        }
        StoreError::Conflict(m) => {
            with_scim(Status::already_exists(m), 409, Some(ScimType::Uniqueness))
        }
        e @ StoreError::VersionMismatch { .. } => {
            with_scim(Status::failed_precondition(e.to_string()), 412, None)
        }
        StoreError::Invalid(m) => with_scim(
            Status::invalid_argument(m),
            400,
            Some(ScimType::InvalidValue),
        ),
        StoreError::InvalidFilter(m) => with_scim(
            Status::invalid_argument(m),
            400,
            Some(ScimType::InvalidFilter),
        ),
        // A quota (e.g. two live tokens): retrying will not help until
        // something is removed, and no SCIM resource call hits it.
        StoreError::Limit(m) => with_scim(Status::resource_exhausted(m), 409, None),
        StoreError::CursorExpired { requested, oldest } => cursor_expired(requested, oldest),
        e @ StoreError::Busy { retry_after, .. } => busy(e.to_string(), retry_after),
        StoreError::Unavailable(detail) => {
            tracing::warn!(%detail, "transient store failure");
            with_scim(
                Status::unavailable("database temporarily unavailable; retry"),
                503,
                None,
            )
        }
        StoreError::Internal(detail) => {
            tracing::error!(%detail, "internal store error");
            internal()
        }
        StoreError::Rejected(inner) => match inner.downcast::<ScimError>() {
            Ok(scim) => scim_status(&scim),
            Err(other) => match other.downcast::<ServiceError>() {
                Ok(service) => Status::from(*service),
                Err(other) => {
                    tracing::error!(detail = %other, "update callback failed");
                    internal()
                }
            },
        },
    }
}

/// `OUT_OF_RANGE` for a cursor older than the retained change log.
pub fn cursor_expired(requested: i64, oldest: i64) -> Status {
    // Without an epoch (the store error has none): still accepted, like any
    // cursor issued before epochs existed.
    let oldest_cursor = cursor::encode(&Cursor {
        after: oldest,
        ..Cursor::default()
    });
    let mut status = Status::out_of_range(format!(
        "cursor at revision {requested} is older than the retained change log; \
         re-list and resume from the list's cursor (oldest valid cursor: {oldest_cursor})"
    ));
    insert(&mut status, OLDEST_CURSOR_KEY, &oldest_cursor);
    status
}

/// `RESOURCE_EXHAUSTED` with a retry hint, for a capacity that frees up by
/// itself (SCIM equivalent: 503, as the gateway renders it).
fn busy(message: String, retry_after: std::time::Duration) -> Status {
    let mut status = with_scim(Status::resource_exhausted(message), 503, None);
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    insert(&mut status, RETRY_AFTER_KEY, &secs.to_string());
    insert(
        &mut status,
        RETRY_PUSHBACK_KEY,
        &retry_after.as_millis().to_string(),
    );
    status
}

fn scim_status(err: &ScimError) -> Status {
    let code = match err.status {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        412 => Code::FailedPrecondition,
        413 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        s if s >= 500 => Code::Internal,
        _ => Code::InvalidArgument,
    };
    with_scim(
        Status::new(code, err.detail.clone()),
        err.status,
        err.scim_type,
    )
}

fn internal() -> Status {
    with_scim(Status::internal("internal error"), 500, None)
}

fn with_scim(mut status: Status, http_status: u16, scim_type: Option<ScimType>) -> Status {
    insert(&mut status, SCIM_STATUS_KEY, &http_status.to_string());
    if let Some(t) = scim_type {
        insert(&mut status, SCIM_TYPE_KEY, t.as_str());
    }
    status
}

fn insert(status: &mut Status, key: &'static str, value: &str) {
    // Values here are ASCII we produced ourselves; a failure would only drop
    // the hint, never the error.
    if let Ok(v) = MetadataValue::try_from(value) {
        status.metadata_mut().insert(key, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(status: &Status, key: &str) -> Option<String> {
        status
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn status(error: StoreError) -> Status {
        Status::from(ServiceError::Store(error))
    }

    /// The gRPC code of each store error, and the SCIM status (and scimType,
    /// where it has one) that the gateway answers with.
    #[test]
    fn store_errors_carry_their_code_and_scim_metadata() {
        let cases = [
            (
                StoreError::Conflict("userName taken".into()),
                Code::AlreadyExists,
                Some("uniqueness"),
                "409",
            ),
            (
                StoreError::Rejected(Box::new(ScimError::no_target("no such path"))),
                Code::InvalidArgument,
                Some("noTarget"),
                "400",
            ),
            (
                StoreError::VersionMismatch {
                    expected: 1,
                    actual: 2,
                },
                Code::FailedPrecondition,
                None,
                "412",
            ),
        ];
        for (error, code, scim_type, scim_status) in cases {
            let what = error.to_string();
            let s = status(error);
            let scim = (meta(&s, SCIM_TYPE_KEY), meta(&s, SCIM_STATUS_KEY));
            assert_eq!(s.code(), code, "{what}");
            assert_eq!(
                (scim.0.as_deref(), scim.1.as_deref()),
                (scim_type, Some(scim_status)),
                "{what}"
            );
        }
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let s = status(StoreError::Internal("password=hunter2".into()));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("hunter2"));
    }

    #[test]
    fn expired_cursors_carry_the_oldest_valid_cursor() {
        let s = status(StoreError::CursorExpired {
            requested: 3,
            oldest: 10,
        });
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(meta(&s, OLDEST_CURSOR_KEY).as_deref(), Some("r10"));
        assert!(s.message().contains("r10"));
    }
}
