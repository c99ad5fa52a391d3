//! The one place where SQLite failures become [`StoreError`]s.

use crate::error::StoreError;

/// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_PROTOCOL: i64 = 15;

/// Maps a sqlx error from the SQLite backend:
/// unique violations become [`StoreError::Conflict`] naming the attribute,
/// lock contention and pool exhaustion become [`StoreError::Unavailable`]
/// (the caller may retry), everything else is [`StoreError::Internal`].
pub(crate) fn map_sqlx(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(conflict_message(db.message()));
            }
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            match primary {
                Some(
                    SQLITE_BUSY | SQLITE_LOCKED | SQLITE_PROTOCOL | SQLITE_FULL | SQLITE_CANTOPEN,
                ) => StoreError::Unavailable(db.message().to_owned()),
                _ => StoreError::Internal(error.to_string()),
            }
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Internal(error.to_string()),
    }
}

/// Names the SCIM attribute behind a unique constraint. SQLite reports
/// `UNIQUE constraint failed: users.directory_id, users.user_name_key`.
fn conflict_message(message: &str) -> String {
    let attribute = if message.contains("users.user_name_key") {
        "userName"
    } else if message.contains("groups.display_name_key") {
        "displayName"
    } else if message.contains("tokens.hash") {
        "token"
    } else {
        "id"
    };
    format!("{attribute} is already taken in this directory")
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
            map_sqlx(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
    }
}
