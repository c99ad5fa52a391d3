//! Case- and normalization-insensitive text keys.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

/// The key under which two spellings of a case-insensitive string (RFC
/// 7643 `caseExact: false`, e.g. `userName`) are the same: Unicode NFC, then
/// lower case, then NFC again (lowercasing can produce a decomposed
/// sequence). `José` typed precomposed (NFC) or as `e` + U+0301 (NFD), in
/// any case, has one key.
///
/// Computed here, not by a database, so that the key does not depend on a
/// server's locale or collation; both store backends persist it.
///
/// ```
/// use roster_scim::text::fold;
/// assert_eq!(fold("JOS\u{0045}\u{0301}@Example.com"), fold("jos\u{e9}@example.COM"));
/// assert_ne!(fold("jose"), fold("josé"));
/// ```
pub fn fold(s: &str) -> String {
    // ASCII is its own NFC and lowercases to ASCII: almost every key an IdP
    // sends, and the normalizer's tables cost more than the lookup's index
    // probe (docs/performance.md, nineteenth session).
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let composed: String = s.nfc().collect();
    composed.to_lowercase().nfc().collect()
}

/// Whether a NUL character (U+0000) occurs in any string or object key of
/// `value`. PostgreSQL cannot store NUL in `text` or `jsonb`, so neither
/// backend accepts it.
pub fn contains_nul(value: &Value) -> bool {
    // Iterative: safe on any nesting depth.
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfc_nfd_and_case_fold_together() {
        let nfc = "Zo\u{eb}@example.com";
        let nfd = "ZOE\u{308}@EXAMPLE.COM";
        assert_eq!(fold(nfc), fold(nfd));
        assert_eq!(fold(nfc), "zo\u{eb}@example.com");
        assert_eq!(fold("ÉVA"), fold("éva"));
        // Compatibility forms stay distinct (NFKC would merge them).
        assert_ne!(fold("ﬁ"), fold("fi"));
    }

    /// The ASCII shortcut gives what the full path gives, character by
    /// character and in a mixed string that takes the full path.
    #[test]
    fn ascii_shortcut_agrees_with_the_normalizer() {
        let full = |s: &str| -> String {
            let composed: String = s.nfc().collect();
            composed.to_lowercase().nfc().collect()
        };
        for b in 0u8..=0x7f {
            let s = format!("A{}z", char::from(b));
            assert_eq!(fold(&s), full(&s), "byte {b:#x}");
        }
        assert_eq!(fold("Bob.SMITH@Example.COM"), "bob.smith@example.com");
        assert_eq!(fold("Bob.SMITH\u{c9}"), "bob.smith\u{e9}");
    }
}
