//! Webhook signing as the Standard Webhooks specification defines it, and
//! the sealing of signing secrets at rest. Pure: no I/O, no clock (callers
//! pass the time), so the rules are tested against the specification's own
//! vector and used alike by the delivery worker and by test receivers.
//!
//! - A signing secret is 32 random bytes, written `whsec_` + base64.
//! - A request carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//!   `webhook-signature`: space-separated `v1,` + base64(HMAC-SHA256(secret,
//!   "{id}.{timestamp}.{body}")), one per secret that is valid at the time
//!   (two during a rotation).
//! - Secrets are stored sealed with ChaCha20-Poly1305 under a server key,
//!   with the endpoint's id as associated data, so a sealed secret copied to
//!   another row does not open. The server key is a ring: the current key
//!   seals, previous keys (a rotation in progress) still open, and a sealed
//!   value names the key that sealed it (docs/operations.md, "Rotating").

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{self, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::digest;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The prefix of a written signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Header names of the specification.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Bytes of a generated signing secret (the specification asks for 24 to 64).
const SECRET_LEN: usize = 32;
/// Bytes of a sealing key.
pub const SEALING_KEY_LEN: usize = 32;
/// First byte of a sealed value. Format 1 (before key rotation) is
/// `1 || nonce || ciphertext+tag`; format 2 adds the sealing key's id after
/// the version byte so a ring of keys opens it without trial.
const SEALED_V1: u8 = 1;
const SEALED_V2: u8 = 2;
/// Bytes of a key id in a format-2 sealed value.
const KEY_ID_LEN: usize = 4;

/// What can go wrong with secrets and signatures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("a signing secret is `whsec_` followed by base64 of 24 to 64 bytes")]
    MalformedSecret,
    #[error("the sealing key must be base64 of exactly 32 bytes")]
    MalformedSealingKey,
    #[error(
        "the sealed secret opens with no key of the ring (wrong ROSTER_SECRET_KEY, a previous key \
         missing from ROSTER_SECRET_KEY_PREVIOUS, or another row's value)"
    )]
    Unsealable,
    #[error("the system random generator failed")]
    Random,
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a Unix time in seconds")]
    MalformedTimestamp,
    #[error("webhook-timestamp is outside the tolerance")]
    StaleTimestamp,
    #[error("no signature matches")]
    NoMatchingSignature,
}

/// A signing secret shared with one receiver. Its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

impl SigningSecret {
    /// A new random secret.
    pub fn generate() -> Result<Self, WebhookError> {
        let mut bytes = vec![0u8; SECRET_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| WebhookError::Random)?;
        Ok(Self(bytes))
    }

    /// Reads `whsec_<base64>` (or the bare base64, as the reference
    /// libraries also accept).
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| WebhookError::MalformedSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(WebhookError::MalformedSecret);
        }
        Ok(Self(bytes))
    }

    /// The raw key bytes (what gets sealed).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, WebhookError> {
        if !(24..=64).contains(&bytes.len()) {
            return Err(WebhookError::MalformedSecret);
        }
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_` + base64: the form shown to the operator once.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,` + base64 of the HMAC-SHA256 of `{id}.{timestamp}.{body}`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = hmac::sign(&self.key(), &signed_content(msg_id, timestamp, body));
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }

    /// Whether `signature` (`v1,<base64>`) is this secret's over the content,
    /// compared in constant time.
    fn matches(&self, signature: &str, content: &[u8]) -> bool {
        let Some(b64) = signature.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = STANDARD.decode(b64) else {
            return false;
        };
        hmac::verify(&self.key(), content, &tag).is_ok()
    }
}

fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{msg_id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// The `webhook-signature` header value: one signature per secret, space
/// separated, so a receiver holding either the old or the new secret of a
/// rotation verifies.
pub fn signature_header(
    secrets: &[&SigningSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Verifies a request as a Standard Webhooks receiver does: the timestamp
/// within `tolerance_secs` of `now`, and at least one `v1` signature of the
/// header made with `secret`.
pub fn verify(
    secret: &SigningSecret,
    msg_id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), WebhookError> {
    let msg_id = msg_id.ok_or(WebhookError::MissingHeader(HEADER_ID))?;
    let timestamp = timestamp.ok_or(WebhookError::MissingHeader(HEADER_TIMESTAMP))?;
    let signatures = signatures.ok_or(WebhookError::MissingHeader(HEADER_SIGNATURE))?;
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| WebhookError::MalformedTimestamp)?;
    if (now - timestamp).abs() > tolerance_secs {
        return Err(WebhookError::StaleTimestamp);
    }
    let content = signed_content(msg_id, timestamp, body);
    if signatures
        .split(' ')
        .any(|signature| secret.matches(signature, &content))
    {
        Ok(())
    } else {
        Err(WebhookError::NoMatchingSignature)
    }
}

/// One key of the ring: its id is the first bytes of SHA-256 of the key,
/// enough to pick the key without trial and useless for guessing it.
struct RingKey {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
}

/// The server key ring secrets are sealed with at rest: the current key,
/// which seals, and previous keys (a rotation in progress), which only open.
pub struct SealingKey {
    /// `keys[0]` is the current key.
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealingKey(.., {} previous)", self.keys.len() - 1)
    }
}

impl SealingKey {
    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WebhookError> {
        if bytes.len() != SEALING_KEY_LEN {
            return Err(WebhookError::MalformedSealingKey);
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| WebhookError::MalformedSealingKey)?;
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest::digest(&digest::SHA256, bytes).as_ref()[..KEY_ID_LEN]);
        Ok(Self {
            keys: vec![RingKey {
                id,
                key: LessSafeKey::new(key),
            }],
        })
    }

    /// A key from base64 of its 32 bytes (the `ROSTER_SECRET_KEY` form).
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| WebhookError::MalformedSealingKey)?;
        Self::from_bytes(&bytes)
    }

    /// The ring of `current` (seals and opens) and `previous` keys (open
    /// only), all in the `ROSTER_SECRET_KEY` form.
    pub fn parse_ring<S: AsRef<str>>(current: &str, previous: &[S]) -> Result<Self, WebhookError> {
        let mut ring = Self::parse(current)?;
        // An empty entry (`ROSTER_SECRET_KEY_PREVIOUS=` left set, a
        // trailing comma) is no key rather than a malformed one.
        for text in previous.iter().filter(|t| !t.as_ref().trim().is_empty()) {
            ring = ring.with_previous(Self::parse(text.as_ref())?);
        }
        Ok(ring)
    }

    /// This ring, also opening what `previous` (all of its keys) sealed.
    pub fn with_previous(mut self, previous: SealingKey) -> Self {
        for key in previous.keys {
            if self.keys.iter().all(|k| k.id != key.id) {
                self.keys.push(key);
            }
        }
        self
    }

    /// A new random key, as base64 (for `roster serve`'s first start).
    pub fn generate_text() -> Result<String, WebhookError> {
        let mut bytes = [0u8; SEALING_KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| WebhookError::Random)?;
        Ok(STANDARD.encode(bytes))
    }

    /// Seals under the current key, bound to `context` (the endpoint id).
    pub fn seal(&self, secret: &SigningSecret, context: &[u8]) -> Result<Vec<u8>, WebhookError> {
        self.seal_bytes(&secret.0, context)
    }

    /// The secret sealed by [`SealingKey::seal`] with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<SigningSecret, WebhookError> {
        SigningSecret::from_bytes(self.open_bytes(sealed, context)?)
    }

    /// Seals any secret bytes (a directory source's bind password or
    /// service-account key) as `2 || key id || nonce || ciphertext+tag`
    /// under the current key, bound to `context`: a random nonce per
    /// sealing, so sealing the same secret twice gives different bytes.
    pub fn seal_bytes(&self, plain: &[u8], context: &[u8]) -> Result<Vec<u8>, WebhookError> {
        let current = &self.keys[0];
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| WebhookError::Random)?;
        let mut data = plain.to_vec();
        current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(context),
                &mut data,
            )
            .map_err(|_| WebhookError::Unsealable)?;
        let mut sealed = Vec::with_capacity(1 + KEY_ID_LEN + nonce.len() + data.len());
        sealed.push(SEALED_V2);
        sealed.extend_from_slice(&current.id);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&data);
        Ok(sealed)
    }

    /// The bytes sealed by [`SealingKey::seal_bytes`] with the same
    /// `context`, under any key of the ring.
    pub fn open_bytes(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, WebhookError> {
        self.open_sealed(sealed, context).map(|(plain, _)| plain)
    }

    /// `sealed` sealed again under the current key when a previous key of
    /// the ring sealed it, `None` when the current key did: what `roster
    /// admin reseal` writes back before a previous key is dropped.
    /// `Unsealable` when no key of the ring opens it.
    pub fn reseal(&self, sealed: &[u8], context: &[u8]) -> Result<Option<Vec<u8>>, WebhookError> {
        match self.open_sealed(sealed, context)? {
            (_, true) => Ok(None),
            (plain, false) => self.seal_bytes(&plain, context).map(Some),
        }
    }

    /// The plain bytes and whether the current key opened them. A value
    /// names its key (format 2); one sealed before keys were named (format
    /// 1) is tried with every key of the ring.
    fn open_sealed(&self, sealed: &[u8], context: &[u8]) -> Result<(Vec<u8>, bool), WebhookError> {
        let (candidates, body): (Vec<usize>, &[u8]) = match sealed.split_first() {
            Some((&SEALED_V1, rest)) => ((0..self.keys.len()).collect(), rest),
            Some((&SEALED_V2, rest)) if rest.len() >= KEY_ID_LEN => {
                let (id, body) = rest.split_at(KEY_ID_LEN);
                let named = (0..self.keys.len())
                    .filter(|&i| self.keys[i].id == id)
                    .collect();
                (named, body)
            }
            _ => return Err(WebhookError::Unsealable),
        };
        if body.len() < aead::NONCE_LEN {
            return Err(WebhookError::Unsealable);
        }
        let (nonce, ciphertext) = body.split_at(aead::NONCE_LEN);
        for i in candidates {
            let nonce =
                Nonce::try_assume_unique_for_key(nonce).map_err(|_| WebhookError::Unsealable)?;
            let mut data = ciphertext.to_vec();
            if let Ok(plain) =
                self.keys[i]
                    .key
                    .open_in_place(nonce, aead::Aad::from(context), &mut data)
            {
                return Ok((plain.to_vec(), i == 0));
            }
        }
        Err(WebhookError::Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vector of the Standard Webhooks reference Python library
    // (libraries/python/tests/test_webhooks.py, `test_sign_function`).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specification_vector() {
        let secret = SigningSecret::parse(SPEC_SECRET).expect("spec secret");
        assert_eq!(
            secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
        let bare = SigningSecret::parse(&SPEC_SECRET[SECRET_PREFIX.len()..]).expect("bare");
        assert_eq!(bare, secret);
    }

    #[test]
    fn verifies_the_vector_and_rejects_tampering() {
        let secret = SigningSecret::parse(SPEC_SECRET).expect("spec secret");
        let check = |body: &[u8], sigs: &str, now: i64| {
            verify(
                &secret,
                Some(SPEC_ID),
                Some(&SPEC_TIMESTAMP.to_string()),
                Some(sigs),
                body,
                now,
                300,
            )
        };
        assert_eq!(check(SPEC_BODY, SPEC_SIGNATURE, SPEC_TIMESTAMP), Ok(()));
        // The library's "invalid signature": the last base64 char changed.
        let wrong = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert_eq!(
            check(SPEC_BODY, wrong, SPEC_TIMESTAMP),
            Err(WebhookError::NoMatchingSignature)
        );
        assert_eq!(
            check(br#"{"test": 2432232315}"#, SPEC_SIGNATURE, SPEC_TIMESTAMP),
            Err(WebhookError::NoMatchingSignature)
        );
        assert_eq!(
            check(SPEC_BODY, SPEC_SIGNATURE, SPEC_TIMESTAMP + 301),
            Err(WebhookError::StaleTimestamp)
        );
        // Several signatures, one valid (the library's multi-signature case).
        let multi =
            format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,x {SPEC_SIGNATURE}");
        assert_eq!(check(SPEC_BODY, &multi, SPEC_TIMESTAMP), Ok(()));
    }

    #[test]
    fn a_rotation_header_verifies_with_either_secret() {
        let old = SigningSecret::generate().expect("old");
        let new = SigningSecret::generate().expect("new");
        let header = signature_header(&[&new, &old], "evt_1", 100, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        for secret in [&old, &new] {
            let ok = verify(
                secret,
                Some("evt_1"),
                Some("100"),
                Some(&header),
                b"{}",
                100,
                5,
            );
            assert_eq!(ok, Ok(()));
        }
        let other = SigningSecret::generate().expect("other");
        let no = verify(
            &other,
            Some("evt_1"),
            Some("100"),
            Some(&header),
            b"{}",
            100,
            5,
        );
        assert_eq!(no, Err(WebhookError::NoMatchingSignature));
    }

    #[test]
    fn secrets_round_trip_through_their_written_form() {
        let secret = SigningSecret::generate().expect("secret");
        let text = secret.expose();
        assert!(text.starts_with(SECRET_PREFIX));
        assert_eq!(SigningSecret::parse(&text), Ok(secret.clone()));
        assert!(!format!("{secret:?}").contains(&text[SECRET_PREFIX.len()..]));
        assert_eq!(
            SigningSecret::parse("whsec_c2hvcnQ="),
            Err(WebhookError::MalformedSecret)
        );
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let key = SealingKey::parse(&SealingKey::generate_text().expect("key")).expect("parse");
        let secret = SigningSecret::generate().expect("secret");
        let sealed = key.seal(&secret, b"endpoint-a").expect("seal");
        assert!(
            !sealed
                .windows(8)
                .any(|w| secret.as_bytes().windows(8).any(|s| s == w))
        );
        assert_eq!(key.open(&sealed, b"endpoint-a"), Ok(secret));
        assert_eq!(
            key.open(&sealed, b"endpoint-b"),
            Err(WebhookError::Unsealable)
        );
        let other = SealingKey::parse(&SealingKey::generate_text().expect("key")).expect("parse");
        assert_eq!(
            other.open(&sealed, b"endpoint-a"),
            Err(WebhookError::Unsealable)
        );
        assert_eq!(
            SealingKey::parse("c2hvcnQ=").map(|_| ()),
            Err(WebhookError::MalformedSealingKey)
        );
    }

    /// Who opens what in a rotation from key A to key B: values sealed
    /// under A in both formats (format 1, before keys were named, is tried
    /// with every key), under B, and the verdict of each key ring.
    #[test]
    fn a_ring_opens_with_previous_keys_and_seals_with_the_current_one() {
        let a = SealingKey::generate_text().expect("a");
        let b = SealingKey::generate_text().expect("b");
        let ring = |current: &str, previous: &[&str]| {
            SealingKey::parse_ring(current, previous).expect("ring")
        };
        let under_a = ring(&a, &[]).seal_bytes(b"pw", b"ctx").expect("seal");
        let mut under_a_v1 = vec![SEALED_V1];
        under_a_v1.extend_from_slice(&under_a[1 + KEY_ID_LEN..]);
        let under_b = ring(&b, &[&a]).seal_bytes(b"pw", b"ctx").expect("seal");
        // Empty previous entries (a variable left set but empty) are no keys.
        let (a_alone, b_and_a, b_alone) = (ring(&a, &[]), ring(&b, &[&a]), ring(&b, &["", " "]));
        // (ring, value, whether the ring re-seals it, or that it does not open)
        let cases: [(&SealingKey, &[u8], Result<bool, WebhookError>); 9] = [
            (&a_alone, &under_a, Ok(false)),
            (&a_alone, &under_a_v1, Ok(false)),
            (&a_alone, &under_b, Err(WebhookError::Unsealable)),
            (&b_and_a, &under_a, Ok(true)),
            (&b_and_a, &under_a_v1, Ok(true)),
            (&b_and_a, &under_b, Ok(false)),
            (&b_alone, &under_a, Err(WebhookError::Unsealable)),
            (&b_alone, &under_a_v1, Err(WebhookError::Unsealable)),
            (&b_alone, &under_b, Ok(false)),
        ];
        for (i, (key, sealed, stale)) in cases.into_iter().enumerate() {
            let resealed = key.reseal(sealed, b"ctx");
            assert_eq!(resealed.map(|r| r.is_some()), stale, "case {i}");
            let opened = key.open_bytes(sealed, b"ctx");
            assert_eq!(opened, stale.map(|_| b"pw".to_vec()), "case {i}");
            if let Ok(Some(fresh)) = key.reseal(sealed, b"ctx") {
                assert_eq!(b_alone.open_bytes(&fresh, b"ctx"), Ok(b"pw".to_vec()));
            }
            // No key opens a value bound to another context.
            assert_eq!(
                key.open_bytes(sealed, b"other"),
                Err(WebhookError::Unsealable),
                "case {i}"
            );
        }
    }
}
