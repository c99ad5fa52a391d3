//! Request bodies: media type, size limit, and JSON parsing that never panics.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use futures::StreamExt;
use roster_scim::error::ScimError;
use serde_json::Value;

use crate::error::GatewayError;
use crate::state::AppState;

/// Deepest nesting of JSON objects and arrays accepted in a request.
pub const MAX_JSON_DEPTH: usize = 64;

/// A JSON request body of at most `max_body_bytes`.
#[derive(Debug)]
pub struct JsonBody(pub Value);

/// A bulk request body of at most `bulk_max_payload_bytes`.
#[derive(Debug)]
pub struct BulkBody(pub Value);

/// Each body is JSON read by [`read_json`] up to its own limit of the
/// gateway's configuration.
macro_rules! json_bodies {
    ($($body:ident => $limit:ident),*) => {
        $(
            impl FromRequest<AppState> for $body {
                type Rejection = GatewayError;

                async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
                    read_json(req, state.config().$limit).await.map(Self)
                }
            }
        )*
    };
}

json_bodies!(JsonBody => max_body_bytes, BulkBody => bulk_max_payload_bytes);

async fn read_json(req: Request, limit: usize) -> Result<Value, GatewayError> {
    check_content_type(req.headers())?;
    check_content_encoding(req.headers())?;
    if declared_length(req.headers()).is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit).into());
    }
    let bytes = read_limited(req.into_body(), limit).await?;
    Ok(parse_json(&bytes)?)
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large(limit: usize) -> ScimError {
    ScimError::payload_too_large(format!("request body exceeds the limit of {limit} bytes"))
}

/// Accepts `application/scim+json`, `application/json`, any `+json` type,
/// and a missing `Content-Type` (some IdPs omit it); rejects the rest with 415.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ScimError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ScimError {
            status: 415,
            scim_type: None,
            detail: "Content-Type must be application/scim+json or application/json".to_owned(),
        })
    }
}

/// Rejects a compressed body with 415 (RFC 9110 §8.4.1): read as JSON it
/// would only be "not valid JSON", which hides the cause.
pub fn check_content_encoding(headers: &HeaderMap) -> Result<(), ScimError> {
    let codings = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
    match codings.map(str::to_owned).collect::<Vec<_>>().as_slice() {
        [] => Ok(()),
        coded => Err(ScimError {
            status: 415,
            scim_type: None,
            detail: format!(
                "Content-Encoding {} is not supported: send the body uncompressed",
                coded.join(", ")
            ),
        }),
    }
}

/// Reads a body, failing with 413 as soon as it grows past `limit`.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ScimError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ScimError::invalid_syntax(format!("could not read the request body: {e}"))
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Parses a JSON document, rejecting empty bodies, invalid UTF-8, syntax
/// errors, nesting deeper than [`MAX_JSON_DEPTH`] and an object naming one
/// attribute twice (in any case) as `invalidSyntax`.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ScimError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ScimError::invalid_syntax(
            "a JSON request body is required".to_owned(),
        ));
    }
    check_depth(bytes)?;
    roster_scim::from_slice_unique(bytes).map_err(|e| match e.is_data() {
        // Valid JSON that names one attribute twice.
        true => ScimError::invalid_syntax(format!("request body: {e}")),
        false => ScimError::invalid_syntax(format!("request body is not valid JSON: {e}")),
    })
}

/// Scans the raw bytes for nesting depth before serde_json recurses into
/// them, so hostile documents fail fast with a clear message.
fn check_depth(bytes: &[u8]) -> Result<(), ScimError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ScimError::invalid_syntax(format!(
                        "JSON nesting deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn parses_objects() {
        let v = parse_json(br#"{"userName":"a"}"#).unwrap();
        assert_eq!(v["userName"], "a");
    }

    #[test]
    fn rejects_bad_json_as_invalid_syntax() {
        for input in [
            &b""[..],
            b"  ",
            b"{",
            b"{\"a\":}",
            b"\xff\xfe",
            b"{\"a\":\"\xff\"}",
        ] {
            let err = parse_json(input).unwrap_err();
            assert_eq!(err.status, 400, "{input:?}");
            assert_eq!(err.to_json()["scimType"], "invalidSyntax", "{input:?}");
        }
    }

    #[test]
    fn rejects_deep_nesting_but_not_brackets_in_strings() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(
            parse_json(deep.as_bytes())
                .unwrap_err()
                .detail
                .contains("nesting")
        );
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse_json(ok.as_bytes()).is_ok());
        let in_string = format!("{{\"a\":\"{}\\\"\"}}", "[".repeat(200));
        assert!(parse_json(in_string.as_bytes()).is_ok());
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(check_content_type(&h).is_ok());
        for ok in [
            "application/scim+json",
            "application/json; charset=utf-8",
            "Application/SCIM+JSON",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(check_content_type(&h).is_ok(), "{ok}");
        }
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        assert_eq!(check_content_type(&h).unwrap_err().status, 415);
    }

    #[test]
    fn compressed_bodies_are_415_and_identity_is_fine() {
        let mut h = HeaderMap::new();
        assert!(check_content_encoding(&h).is_ok());
        h.insert(header::CONTENT_ENCODING, "identity".parse().unwrap());
        assert!(check_content_encoding(&h).is_ok());
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let err = check_content_encoding(&h).unwrap_err();
        assert_eq!(err.status, 415);
        assert!(err.detail.contains("gzip"), "{}", err.detail);
        h.insert(header::CONTENT_ENCODING, "identity, br".parse().unwrap());
        assert!(
            check_content_encoding(&h)
                .unwrap_err()
                .detail
                .contains("br")
        );
    }
}
