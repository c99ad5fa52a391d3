//! Opaque watch cursors.
//!
//! A cursor is what a consumer persists to resume a stream. Its wire form is
//! deliberately opaque so the encoding can change: today it is `r<revision>`
//! for the common case (everything up to a revision seen) and
//! `c<base64url(JSON)>` when the position also lists a few revisions above
//! `after` that were already seen (a list or snapshot can include changes
//! that committed out of revision order).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use roster_store::Cursor;

use crate::error::ServiceError;

/// Encodes a cursor for the wire.
pub fn encode(cursor: &Cursor) -> String {
    if cursor.also_seen.is_empty() {
        return format!("r{}", cursor.after);
    }
    // Serializing a struct of integers cannot fail.
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    format!("c{}", URL_SAFE_NO_PAD.encode(json))
}

/// Decodes a cursor received from a client.
pub fn decode(text: &str) -> Result<Cursor, ServiceError> {
    let invalid =
        || ServiceError::InvalidArgument(format!("malformed cursor {:?}", truncate(text)));
    let cursor = if let Some(rev) = text.strip_prefix('r') {
        Cursor {
            after: rev.parse().map_err(|_| invalid())?,
            also_seen: Vec::new(),
        }
    } else if let Some(body) = text.strip_prefix('c') {
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?;
        serde_json::from_slice::<Cursor>(&json).map_err(|_| invalid())?
    } else {
        return Err(invalid());
    };
    if cursor.after < 0 || cursor.also_seen.iter().any(|r| *r <= cursor.after) {
        return Err(invalid());
    }
    Ok(normalize(cursor))
}

/// Sorts and dedups `also_seen`, and folds revisions that directly follow
/// `after` into it, so equal positions encode equally.
pub fn normalize(mut cursor: Cursor) -> Cursor {
    cursor.also_seen.sort_unstable();
    cursor.also_seen.dedup();
    cursor.also_seen.retain(|r| *r > cursor.after);
    let mut consumed = 0;
    for r in &cursor.also_seen {
        if *r == cursor.after + 1 {
            cursor.after = *r;
            consumed += 1;
        } else {
            break;
        }
    }
    cursor.also_seen.drain(..consumed);
    cursor
}

/// Cursors come from clients: keep error messages short.
fn truncate(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_revisions_round_trip() {
        let c = Cursor {
            after: 42,
            also_seen: vec![],
        };
        assert_eq!(encode(&c), "r42");
        assert_eq!(decode("r42").unwrap(), c);
    }

    #[test]
    fn cursors_with_also_seen_round_trip() {
        let c = Cursor {
            after: 10,
            also_seen: vec![12, 15],
        };
        let text = encode(&c);
        assert!(text.starts_with('c'));
        assert_eq!(decode(&text).unwrap(), c);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for text in [
            "",
            "x1",
            "r",
            "r-1",
            "rabc",
            "c!!",
            "cAAAA",
            &"r9".repeat(100),
        ] {
            assert!(
                matches!(decode(text), Err(ServiceError::InvalidArgument(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn normalize_folds_contiguous_revisions() {
        let c = normalize(Cursor {
            after: 5,
            also_seen: vec![7, 6, 6, 9, 3],
        });
        assert_eq!(
            c,
            Cursor {
                after: 7,
                also_seen: vec![9]
            }
        );
    }
}
