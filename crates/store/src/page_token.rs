//! The page token of a keyset-paginated SCIM list, for either backend: where
//! the next page starts, and for which sort order.
//!
//! Field names are PostgreSQL's (`s`, `k`, `q`), so tokens already handed out
//! by PostgreSQL pods keep working across a deploy; SQLite's former names
//! (`sort`, `key`, `seq`) are still read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};
use crate::filter_sql::SortType;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PageToken {
    /// [`crate::filter_sql::sort_fingerprint`] of the list that issued it:
    /// a token only continues a list in the same order.
    #[serde(rename = "s", alias = "sort", default)]
    pub(crate) sort: String,
    /// Sort key value of the last row (absent for creation order).
    #[serde(
        rename = "k",
        alias = "key",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) key: Option<serde_json::Value>,
    /// `created_seq` of the last row.
    #[serde(rename = "q", alias = "seq")]
    pub(crate) seq: i64,
}

impl PageToken {
    /// The encoded token continuing after a page's last row: its sequence
    /// and, when the list is sorted, the row's sort-key value as the backend
    /// reads it (`read_key` is only called for a sorted list).
    pub(crate) fn continuing(
        fingerprint: &str,
        seq: i64,
        sort: Option<SortType>,
        read_key: impl FnOnce(SortType) -> StoreResult<serde_json::Value>,
    ) -> StoreResult<String> {
        let key = sort.map(read_key).transpose()?;
        Ok(PageToken {
            sort: fingerprint.to_owned(),
            key,
            seq,
        }
        .encode())
    }

    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The token a client sent, if it continues a list sorted by
    /// `fingerprint`; otherwise [`StoreError::Invalid`].
    pub(crate) fn decode_for(token: &str, fingerprint: &str) -> StoreResult<Self> {
        let token: PageToken = URL_SAFE_NO_PAD
            .decode(token.trim())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(malformed)?;
        if token.sort != fingerprint {
            return Err(StoreError::Invalid(
                "page token belongs to another sort order".into(),
            ));
        }
        Ok(token)
    }
}

pub(crate) fn malformed() -> StoreError {
    StoreError::Invalid("malformed page token".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_only_continues_its_own_sort() {
        let token = PageToken {
            sort: "userName:asc".into(),
            key: Some("bjensen".into()),
            seq: 42,
        }
        .encode();
        let back = PageToken::decode_for(&token, "userName:asc").unwrap();
        assert_eq!((back.seq, back.key), (42, Some("bjensen".into())));
        assert!(PageToken::decode_for(&token, "").is_err());
        assert!(PageToken::decode_for("not base64!", "").is_err());
    }

    #[test]
    fn tokens_in_sqlites_former_field_names_are_still_read() {
        let old = URL_SAFE_NO_PAD.encode(br#"{"seq":7,"key":"x","sort":"f"}"#);
        let token = PageToken::decode_for(&old, "f").unwrap();
        assert_eq!((token.seq, token.key), (7, Some("x".into())));
    }
}
