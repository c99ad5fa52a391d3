//! The one place where PostgreSQL failures become [`StoreError`]s. Messages
//! never carry SQL or server detail: that is logged, not returned.

use crate::error::{StoreError, client_error};
use crate::write::conflict;

/// Maps a sqlx error from the PostgreSQL backend:
/// * 23505 unique_violation → [`StoreError::Conflict`] naming the attribute;
/// * 40001 serialization_failure, 40P01 deadlock → [`StoreError::Unavailable`]
///   (retried internally where the operation can be replayed);
/// * class 08 (connection), 53 (resources), 57 (operator intervention),
///   pool timeouts and I/O errors → [`StoreError::Unavailable`];
/// * class 22 (bad data, e.g. a malformed value) → [`StoreError::Invalid`];
/// * anything else → [`StoreError::Internal`] (detail logged only).
pub(crate) fn map_db(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                "23505" => StoreError::Conflict(conflict_message(db.constraint())),
                "23503" => StoreError::NotFound(missing_parent(db.constraint())),
                "40001" | "40P01" => conflict(),
                c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => {
                    tracing::warn!(code = c, error = %db.message(), "database unavailable");
                    StoreError::Unavailable(format!("database unavailable (SQLSTATE {c})"))
                }
                c if c.starts_with("22") => {
                    tracing::debug!(code = c, error = %db.message(), "invalid value rejected by the database");
                    // Input is validated before it reaches SQL; what is left
                    // (a number out of range, ...) is described without
                    // the database's vocabulary.
                    StoreError::Invalid("a value is out of range or not valid text".into())
                }
                c => {
                    tracing::error!(code = c, error = %db.message(), "database error");
                    StoreError::Internal(format!("database error (SQLSTATE {c})"))
                }
            }
        }
        other => client_error(other),
    }
}

/// Names the SCIM attribute behind a unique constraint of the schema.
fn conflict_message(constraint: Option<&str>) -> String {
    match constraint {
        Some("users_user_name_key") => "userName is already taken in this directory".into(),
        Some("groups_display_name_key") => "displayName is already taken in this directory".into(),
        Some("tokens_hash_key") => "token already exists".into(),
        _ => "id is already taken".into(),
    }
}

/// The resource a foreign-key violation found missing (deleted concurrently).
fn missing_parent(constraint: Option<&str>) -> &'static str {
    match constraint {
        Some("memberships_group_id_fkey") => "group",
        _ => "directory",
    }
}

/// A JSON (de)serialization failure of a stored document.
pub(crate) fn json_error(error: serde_json::Error) -> StoreError {
    tracing::error!(error = %error, "stored JSON does not decode");
    StoreError::Internal("stored JSON does not decode".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_the_attribute() {
        assert!(conflict_message(Some("users_user_name_key")).starts_with("userName"));
        assert!(conflict_message(Some("groups_display_name_key")).starts_with("displayName"));
    }

    #[test]
    fn a_garbled_connection_start_is_unavailable() {
        let e = map_db(sqlx::Error::Protocol(
            "unexpected response from SSLRequest: 0x00".into(),
        ));
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }

    #[test]
    fn pool_timeouts_are_unavailable_but_not_replayed() {
        let e = map_db(sqlx::Error::PoolTimedOut);
        assert!(matches!(e, StoreError::Unavailable(_)));
        assert!(!crate::write::retry::is_retryable(&e));
    }
}
