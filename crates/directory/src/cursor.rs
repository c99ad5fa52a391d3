//! Opaque watch cursors.
//!
//! A cursor is what a consumer persists to resume a stream. Its wire form is
//! deliberately opaque so the encoding can change: today it is
//! `r<revision>.<epoch>` for the common case (everything up to a revision
//! seen) and `c<base64url(JSON)>` when the position also lists a few
//! revisions above `after` that were already seen (a list or snapshot can
//! include changes that committed out of revision order). The epoch (16 hex
//! digits; a JSON number in the `c` form) names the history of the change
//! log the position belongs to. Cursors issued before epochs existed (`r<n>`,
//! `c` without one) are still read.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use roster_store::Cursor;

use crate::error::ServiceError;

/// Separates the revision from the epoch in the plain form.
const EPOCH_SEPARATOR: char = '.';

/// Encodes a cursor for the wire.
pub fn encode(cursor: &Cursor) -> String {
    if cursor.also_seen.is_empty() {
        return match cursor.epoch {
            Some(epoch) => format!("r{}{EPOCH_SEPARATOR}{}", cursor.after, epoch_text(epoch)),
            None => format!("r{}", cursor.after),
        };
    }
    // Serializing a struct of integers cannot fail.
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    format!("c{}", URL_SAFE_NO_PAD.encode(json))
}

/// Decodes a cursor received from a client.
pub fn decode(text: &str) -> Result<Cursor, ServiceError> {
    let invalid =
        || ServiceError::InvalidArgument(format!("malformed cursor {:?}", truncate(text)));
    let cursor = if let Some(plain) = text.strip_prefix('r') {
        let (rev, epoch) = match plain.split_once(EPOCH_SEPARATOR) {
            Some((rev, epoch)) => (rev, Some(parse_epoch(epoch).ok_or_else(invalid)?)),
            None => (plain, None),
        };
        Cursor {
            after: rev.parse().map_err(|_| invalid())?,
            also_seen: Vec::new(),
            epoch,
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

/// An epoch as cursors spell it: its bits as 16 hex digits.
pub fn epoch_text(epoch: i64) -> String {
    format!("{:016x}", epoch as u64)
}

/// Exactly 16 hex digits (what [`epoch_text`] writes), as the epoch's bits.
fn parse_epoch(hex: &str) -> Option<i64> {
    let well_formed = hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
        .map(|bits| bits as i64)
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
            epoch: Some(-2),
        };
        assert_eq!(encode(&c), "r42.fffffffffffffffe");
        assert_eq!(decode("r42.fffffffffffffffe").unwrap(), c);
    }

    #[test]
    fn cursors_with_also_seen_round_trip() {
        for epoch in [None, Some(7), Some(i64::MIN)] {
            let c = Cursor {
                after: 10,
                also_seen: vec![12, 15],
                epoch,
            };
            let text = encode(&c);
            assert!(text.starts_with('c'));
            assert_eq!(decode(&text).unwrap(), c);
        }
    }

    #[test]
    fn cursors_without_an_epoch_are_still_read() {
        let c = Cursor {
            after: 42,
            ..Default::default()
        };
        assert_eq!(decode("r42").unwrap(), c);
        assert_eq!(encode(&c), "r42");
        // A `c` cursor as issued before epochs existed.
        let old = format!(
            "c{}",
            URL_SAFE_NO_PAD.encode(r#"{"after":3,"also_seen":[5]}"#)
        );
        assert_eq!(decode(&old).unwrap().epoch, None);
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
            "r1.",
            "r1.abc",
            "r1.00000000000000000",
            "r1.000000000000000g",
            "r1.+00000000000000f",
            ".0000000000000001",
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
            epoch: Some(1),
        });
        assert_eq!(
            c,
            Cursor {
                after: 7,
                also_seen: vec![9],
                epoch: Some(1),
            }
        );
    }
}
