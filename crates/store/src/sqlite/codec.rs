//! Encoding of Roster values in SQLite columns and back.
//!
//! Ids are stored as lowercase hyphenated UUID text (text order = UUID byte
//! order), timestamps as fixed-width RFC 3339 UTC text with microseconds (text
//! order = time order, and the precision PostgreSQL keeps), JSON as text.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};

/// The current time at the precision the store keeps (microseconds), so a
/// value returned by a write equals the value read back later.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Fixed-width text form of a timestamp: `2024-01-02T03:04:05.000006Z`.
pub(crate) fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a timestamp written by [`time_text`].
pub(crate) fn parse_time(text: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Internal(format!("bad stored timestamp {text:?}: {e}")))
}

/// Text form of an id column.
pub(crate) fn id_text(id: Uuid) -> String {
    id.as_hyphenated().to_string()
}

/// Parses an id column.
pub(crate) fn parse_id(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|e| StoreError::Internal(format!("bad stored id {text:?}: {e}")))
}

/// Serializes a value into a JSON text column.
pub(crate) fn json_text<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Internal(format!("cannot encode JSON: {e}")))
}

/// Deserializes a JSON text column.
pub(crate) fn parse_json<T: DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Internal(format!("bad stored JSON: {e}")))
}

/// Serializes a value into a JSON value (event payloads).
pub(crate) fn to_json<T: Serialize>(value: &T) -> StoreResult<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|e| StoreError::Internal(format!("cannot encode JSON: {e}")))
}

/// Typed column access that maps decoding failures to [`StoreError::Internal`].
pub(crate) trait Col {
    fn text(&self, name: &str) -> StoreResult<String>;
    fn opt_text(&self, name: &str) -> StoreResult<Option<String>>;
    fn int(&self, name: &str) -> StoreResult<i64>;
    fn id(&self, name: &str) -> StoreResult<Uuid> {
        parse_id(&self.text(name)?)
    }
    fn time(&self, name: &str) -> StoreResult<DateTime<Utc>> {
        parse_time(&self.text(name)?)
    }
    fn opt_time(&self, name: &str) -> StoreResult<Option<DateTime<Utc>>> {
        self.opt_text(name)?.map(|t| parse_time(&t)).transpose()
    }
    fn json<T: DeserializeOwned>(&self, name: &str) -> StoreResult<T> {
        parse_json(&self.text(name)?)
    }
    fn parsed<T: std::str::FromStr<Err = String>>(&self, name: &str) -> StoreResult<T> {
        self.text(name)?.parse().map_err(StoreError::Internal)
    }
}

impl Col for SqliteRow {
    fn text(&self, name: &str) -> StoreResult<String> {
        self.try_get(name).map_err(decode_error(name))
    }
    fn opt_text(&self, name: &str) -> StoreResult<Option<String>> {
        self.try_get(name).map_err(decode_error(name))
    }
    fn int(&self, name: &str) -> StoreResult<i64> {
        self.try_get(name).map_err(decode_error(name))
    }
}

fn decode_error(column: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError::Internal(format!("cannot decode column {column}: {e}"))
}

/// Rejects text containing NUL characters, anywhere in `value` (strings and
/// object keys). SQLite would store them, but PostgreSQL refuses them in
/// `text` and `jsonb`; both backends must accept the same data.
pub(crate) fn reject_nul<T: Serialize>(value: &T) -> StoreResult<()> {
    if roster_scim::text::contains_nul(&to_json(value)?) {
        return Err(StoreError::Invalid(
            "text must not contain NUL characters".into(),
        ));
    }
    Ok(())
}

/// The key of case-insensitive uniqueness (userName, group displayName):
/// [`roster_scim::text::fold`] (NFC and lower case), computed in Rust rather
/// than with SQLite's `lower()`, which folds ASCII only.
pub(crate) fn fold_key(value: &str) -> String {
    roster_scim::text::fold(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_text_round_trips_and_sorts_like_time() {
        let early = parse_time("2024-01-02T03:04:05Z").unwrap();
        let late = early + chrono::Duration::microseconds(1);
        assert_eq!(parse_time(&time_text(late)).unwrap(), late);
        assert!(time_text(early) < time_text(late));
        assert_eq!(time_text(early).len(), time_text(late).len());
    }

    #[test]
    fn nul_is_rejected_anywhere() {
        assert!(reject_nul(&serde_json::json!({"a": ["ok", "b\0"]})).is_err());
        assert!(reject_nul(&serde_json::json!({"k\0": 1})).is_err());
        assert!(reject_nul(&serde_json::json!({"a": ["ok", 1, null]})).is_ok());
    }

    #[test]
    fn fold_key_folds_beyond_ascii() {
        assert_eq!(fold_key("ÉVA@Example.COM"), fold_key("éva@example.com"));
    }
}
