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
//!   another row does not open.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{self, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
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
/// First byte of a sealed value: lets a later format (another algorithm,
/// key rotation) be told apart from this one.
const SEALED_V1: u8 = 1;

/// What can go wrong with secrets and signatures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("a signing secret is `whsec_` followed by base64 of 24 to 64 bytes")]
    MalformedSecret,
    #[error("the sealing key must be base64 of exactly 32 bytes")]
    MalformedSealingKey,
    #[error("the sealed secret does not open with this key (wrong key, or another endpoint's)")]
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

/// The server key signing secrets are sealed with at rest.
pub struct SealingKey(LessSafeKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
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
        Ok(Self(LessSafeKey::new(key)))
    }

    /// A key from base64 of its 32 bytes (the `ROSTER_SECRET_KEY` form).
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| WebhookError::MalformedSealingKey)?;
        Self::from_bytes(&bytes)
    }

    /// A new random key, as base64 (for `roster serve`'s first start).
    pub fn generate_text() -> Result<String, WebhookError> {
        let mut bytes = [0u8; SEALING_KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| WebhookError::Random)?;
        Ok(STANDARD.encode(bytes))
    }

    /// `version || nonce || ciphertext+tag`, bound to `context` (the
    /// endpoint id): a random nonce per sealing, so sealing the same secret
    /// twice gives different bytes.
    pub fn seal(&self, secret: &SigningSecret, context: &[u8]) -> Result<Vec<u8>, WebhookError> {
        self.seal_bytes(&secret.0, context)
    }

    /// The secret sealed by [`SealingKey::seal`] with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<SigningSecret, WebhookError> {
        SigningSecret::from_bytes(self.open_bytes(sealed, context)?)
    }

    /// Seals any secret bytes (a directory source's bind password or
    /// service-account key) in the same format, bound to `context`.
    pub fn seal_bytes(&self, plain: &[u8], context: &[u8]) -> Result<Vec<u8>, WebhookError> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| WebhookError::Random)?;
        let mut data = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(context),
                &mut data,
            )
            .map_err(|_| WebhookError::Unsealable)?;
        let mut sealed = Vec::with_capacity(1 + nonce.len() + data.len());
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&data);
        Ok(sealed)
    }

    /// The bytes sealed by [`SealingKey::seal_bytes`] with the same `context`.
    pub fn open_bytes(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, WebhookError> {
        let Some((&SEALED_V1, rest)) = sealed.split_first() else {
            return Err(WebhookError::Unsealable);
        };
        if rest.len() < aead::NONCE_LEN {
            return Err(WebhookError::Unsealable);
        }
        let (nonce, ciphertext) = rest.split_at(aead::NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| WebhookError::Unsealable)?;
        let mut data = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, aead::Aad::from(context), &mut data)
            .map_err(|_| WebhookError::Unsealable)?;
        Ok(plain.to_vec())
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
}
