//! The one place where SQLite failures become [`StoreError`]s. Messages never
//! carry SQL or database detail: that is logged, not returned.

use crate::error::{StoreError, client_error};

/// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_PROTOCOL: i64 = 15;
const SQLITE_TOOBIG: i64 = 18;
const SQLITE_MISMATCH: i64 = 20;

/// Maps a sqlx error from the SQLite backend:
/// * unique violation → [`StoreError::Conflict`] naming the attribute;
/// * foreign-key violation → [`StoreError::NotFound`] of the parent;
/// * SQLITE_BUSY / LOCKED (another process holds the file), I/O errors, a
///   full disk, pool timeouts → [`StoreError::Unavailable`] (retryable);
/// * a value SQLite cannot store (too big, type mismatch) → [`StoreError::Invalid`];
/// * anything else → [`StoreError::Internal`].
pub(crate) fn map_db(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(conflict_message(db.message()));
            }
            if db.is_foreign_key_violation() {
                return StoreError::NotFound("directory");
            }
            let code = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .unwrap_or_default();
            match code & 0xff {
                SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN
                | SQLITE_PROTOCOL => {
                    tracing::warn!(code, error = %db.message(), "SQLite database unavailable");
                    StoreError::Unavailable(format!("database unavailable (SQLite code {code})"))
                }
                SQLITE_TOOBIG | SQLITE_MISMATCH => {
                    tracing::debug!(code, error = %db.message(), "value rejected by SQLite");
                    StoreError::Invalid(format!("invalid value (SQLite code {code})"))
                }
                _ => {
                    tracing::error!(code, error = %db.message(), "SQLite error");
                    StoreError::Internal(format!("database error (SQLite code {code})"))
                }
            }
        }
        other => client_error(other),
    }
}

/// Limits SQLite enforces on one statement (its messages). A list query's
/// SQL grows with the client's filter, so hitting one is the filter's fault.
const STATEMENT_LIMITS: [&str; 7] = [
    "LIKE or GLOB pattern too complex",
    "too many SQL variables",
    "variable number must be between",
    "Expression tree is too large",
    "parser stack overflow",
    "string or blob too big",
    "too many terms",
];

/// Maps a failure of a list query: a statement limit hit by the filter is
/// [`StoreError::InvalidFilter`], anything else goes through [`map_db`].
pub(crate) fn map_list_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && STATEMENT_LIMITS
            .iter()
            .any(|limit| db.message().contains(limit))
    {
        tracing::debug!(error = %db.message(), "filter exceeds a SQLite statement limit");
        return StoreError::InvalidFilter("the filter is too large or too complex".into());
    }
    map_db(error)
}

/// Names the SCIM attribute behind a unique constraint. SQLite reports the
/// columns: `UNIQUE constraint failed: users.directory_id, users.user_name_key`.
fn conflict_message(message: &str) -> String {
    if message.contains("users.user_name_key") {
        "userName is already taken in this directory".into()
    } else if message.contains("groups.display_name_key") {
        "displayName is already taken in this directory".into()
    } else if message.contains("tokens.hash") {
        "token already exists".into()
    } else {
        "id is already taken".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_the_attribute() {
        assert!(
            conflict_message("UNIQUE constraint failed: users.directory_id, users.user_name_key")
                .starts_with("userName")
        );
        assert!(
            conflict_message(
                "UNIQUE constraint failed: groups.directory_id, groups.display_name_key"
            )
            .starts_with("displayName")
        );
    }

    #[test]
    fn pool_timeout_is_retryable() {
        assert!(matches!(
            map_db(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
    }
}
