//! Bearer-token authentication through `AdminService.AuthenticateToken`,
//! behind the limits that keep unauthenticated floods away from the
//! directory service: a known-valid token is answered from the cache; any
//! other request is refused while its client address has no
//! failed-authentication budget left (failures spend it), and a token the
//! cache does not know also needs the global token-lookup budget. Why a request failed is
//! logged (never the token) but not told to the client.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use roster_proto::admin::{AuthenticateTokenRequest, DeprovisionPolicy, GetDirectoryRequest};
use tonic::Code;

use crate::client::client_address;
use crate::error::GatewayError;
use crate::observe::CallMeta;
use crate::ratelimit::retry_after_secs;
use crate::state::AppState;
use crate::token_cache::{Cached, TokenDigest, digest};

/// The directory a request's token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedDirectory {
    /// Directory id.
    pub directory_id: String,
    /// What DELETE of a user does in this directory.
    pub deprovision_policy: DeprovisionPolicy,
}

/// Why a request was not authenticated. Every one answers the same 401; the
/// reason goes to the log so the operator can tell the IdP admin what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    MissingHeader,
    /// Not `Bearer <token>`, or several `Authorization` headers.
    MalformedHeader,
    /// `Bearer Bearer <token>`: the IdP adds the scheme to a value that
    /// already has it.
    DoubledBearer,
    /// The directory service does not know the token, or it was revoked.
    UnknownOrRevokedToken,
    /// A valid token of another directory than the one in the URL.
    OtherDirectory,
    /// The URL names no existing directory (e.g. a mistyped id).
    UnknownDirectory,
    /// A valid token of another directory; whether the URL's directory
    /// exists could not be checked.
    DirectoryMismatch,
}

impl AuthFailure {
    /// The `reason` field of the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::MalformedHeader => "malformed_header",
            Self::DoubledBearer => "doubled_bearer",
            Self::UnknownOrRevokedToken => "unknown_or_revoked_token",
            Self::OtherDirectory => "token_of_another_directory",
            Self::UnknownDirectory => "unknown_directory",
            Self::DirectoryMismatch => "token_not_for_this_directory",
        }
    }

    /// The same, in words for the operator.
    pub fn describe(self) -> &'static str {
        match self {
            Self::MissingHeader => "no Authorization header",
            Self::MalformedHeader => "the Authorization header is not one bearer credential",
            Self::DoubledBearer => {
                "the Authorization scheme is repeated: configure the IdP with the token alone"
            }
            Self::UnknownOrRevokedToken => "the token is unknown or revoked",
            Self::OtherDirectory => "the token belongs to another directory than the URL's",
            Self::UnknownDirectory => "the URL's directory id does not exist",
            Self::DirectoryMismatch => "the token is not valid for the URL's directory",
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, or why there is
/// none. Several `Authorization` headers are ambiguous (a proxy may check one
/// and the gateway use another), so they authenticate nothing.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthFailure::MissingHeader)?;
    if values.next().is_some() {
        return Err(AuthFailure::MalformedHeader);
    }
    let value = value.to_str().map_err(|_| AuthFailure::MalformedHeader)?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthFailure::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::MalformedHeader);
    }
    let token = token.trim();
    let again = token.split(' ').next().unwrap_or("");
    if again.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::DoubledBearer);
    }
    let well_formed = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic());
    well_formed
        .then_some(token)
        .ok_or(AuthFailure::MalformedHeader)
}

/// A presented token and what the cache knows about it.
struct Presented<'a> {
    token: &'a str,
    key: TokenDigest,
    cached: Cached,
}

impl<'a> Presented<'a> {
    fn of(state: &AppState, token: &'a str) -> Self {
        let key = digest(token);
        let cached = state.tokens().lookup(&key, Instant::now());
        Self { token, key, cached }
    }
}

/// Resolves a token to its directory, from the cache or the directory
/// service (a token the cache does not know needs the global lookup budget).
async fn authenticate(
    state: &AppState,
    presented: Presented<'_>,
    call: &CallMeta,
) -> Result<Arc<AuthedDirectory>, GatewayError> {
    match presented.cached {
        Cached::Fresh(directory) => return Ok(directory),
        Cached::Rejected => {
            return Err(GatewayError::Unauthorized(
                AuthFailure::UnknownOrRevokedToken,
            ));
        }
        Cached::Stale => state.auth_limits().count_lookup(),
        Cached::Unknown => state.auth_limits().acquire_lookup()?,
    }
    let request = state.grpc(
        AuthenticateTokenRequest {
            secret: presented.token.to_owned(),
        },
        call,
    );
    match state.admin().authenticate_token(request).await {
        Ok(response) => {
            let response = response.into_inner();
            let policy = response
                .directory
                .map_or(DeprovisionPolicy::Unspecified, |d| d.deprovision_policy());
            let directory = Arc::new(AuthedDirectory {
                directory_id: response.directory_id,
                deprovision_policy: policy,
            });
            state
                .tokens()
                .store_valid(presented.key, Arc::clone(&directory), Instant::now());
            Ok(directory)
        }
        Err(status) if is_rejection(&status) => {
            state.tokens().store_rejected(presented.key, Instant::now());
            Err(GatewayError::Unauthorized(
                AuthFailure::UnknownOrRevokedToken,
            ))
        }
        Err(status) => Err(status.into()),
    }
}

/// Answers that mean "this token is not valid", as opposed to "cannot tell"
/// or "this gateway's own credential is wrong" (which must not be cached as
/// the token's fault).
fn is_rejection(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unauthenticated | Code::NotFound | Code::PermissionDenied | Code::InvalidArgument
    ) && !roster_proto::internal_auth::is_rejection(status)
}

/// Why a valid token of one directory was presented for `path_directory`:
/// another existing directory, or one that does not exist.
async fn mismatch(state: &AppState, path_directory: Option<&str>, call: &CallMeta) -> AuthFailure {
    let Some(id) = path_directory else {
        return AuthFailure::UnknownDirectory;
    };
    let request = state.grpc(GetDirectoryRequest { id: id.to_owned() }, call);
    match state.admin().get_directory(request).await {
        Ok(_) => AuthFailure::OtherDirectory,
        Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => {
            AuthFailure::UnknownDirectory
        }
        Err(_) => AuthFailure::DirectoryMismatch,
    }
}

/// The directory id of a `/scim/v2/{directory_id}/...` or
/// `/scim/v1/{directory_id}/...` path.
pub fn directory_in_path(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/scim/v2/")
        .or_else(|| path.strip_prefix("/scim/v1/"))?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// Middleware of every SCIM route: the token must be live and belong to the
/// directory named in the URL; then the directory's rate limit applies.
/// Unknown directories answer 401 like foreign tokens, so that directory
/// ids cannot be probed.
pub async fn require_directory_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = client_address(&request, state.config().client_address_header.as_deref());
    let call = request
        .extensions()
        .get::<CallMeta>()
        .cloned()
        .unwrap_or_else(CallMeta::generate);
    let path_directory = directory_in_path(request.uri().path());
    match admit(&state, request.headers(), path_directory, client, &call).await {
        Ok(directory) => {
            request.extensions_mut().insert(directory);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// Authenticates a request within its client's failed-authentication
/// budget: an address that used it up is refused before its token is
/// checked, so a flood never reaches the directory service; only failures
/// spend it. A token known to be valid skips the check, so a good IdP is
/// never limited by bad requests from its own address.
async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    path_directory: Option<&str>,
    client: IpAddr,
    call: &CallMeta,
) -> Result<Arc<AuthedDirectory>, GatewayError> {
    let presented = bearer_token(headers).map(|token| Presented::of(state, token));
    let known = presented.as_ref().is_ok_and(|p| p.cached.was_valid());
    if !known {
        state.auth_limits().check_address(client)?;
    }
    let outcome = match presented {
        Ok(presented) => authenticate_for(state, presented, path_directory, client, call).await,
        Err(reason) => Err(GatewayError::Unauthorized(reason)),
    };
    if let Err(GatewayError::Unauthorized(_)) = &outcome {
        state.auth_limits().charge_address(client);
    }
    let directory = outcome?;
    if let Some(limiter) = state.limiter() {
        limiter.acquire(&directory.directory_id).map_err(|wait| {
            roster_telemetry::metrics::metrics().rate_limited.inc();
            GatewayError::RateLimited {
                retry_after_secs: retry_after_secs(wait),
            }
        })?;
    }
    Ok(directory)
}

/// The token's directory, when it is the one named in the URL.
async fn authenticate_for(
    state: &AppState,
    presented: Presented<'_>,
    path_directory: Option<&str>,
    client: IpAddr,
    call: &CallMeta,
) -> Result<Arc<AuthedDirectory>, GatewayError> {
    let directory = authenticate(state, presented, call).await?;
    if path_directory == Some(directory.directory_id.as_str()) {
        return Ok(directory);
    }
    // Telling a mistyped id from another directory costs a lookup, which
    // only a client with failed-authentication budget left gets.
    let reason = match state.auth_limits().check_address(client) {
        Ok(()) => mismatch(state, path_directory, call).await,
        Err(_) => AuthFailure::DirectoryMismatch,
    };
    Err(GatewayError::Unauthorized(reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn parses_bearer_tokens_and_names_each_mistake() {
        use AuthFailure::*;
        assert_eq!(bearer_token(&headers("Bearer abc.def")), Ok("abc.def"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), Err(MalformedHeader));
        assert_eq!(bearer_token(&headers("Bearer")), Err(MalformedHeader));
        assert_eq!(bearer_token(&headers("Bearer ")), Err(MalformedHeader));
        assert_eq!(bearer_token(&headers("Bearer a b")), Err(MalformedHeader));
        assert_eq!(bearer_token(&headers("abc")), Err(MalformedHeader));
        assert_eq!(
            bearer_token(&headers("Bearer Bearer abc")),
            Err(DoubledBearer)
        );
        assert_eq!(
            bearer_token(&headers("Bearer bearer  abc")),
            Err(DoubledBearer)
        );
        assert_eq!(bearer_token(&headers("Bearer Bearer")), Err(DoubledBearer));
        assert_eq!(bearer_token(&HeaderMap::new()), Err(MissingHeader));
        let mut twice = headers("Bearer abc");
        twice.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer def"),
        );
        assert_eq!(bearer_token(&twice), Err(MalformedHeader));
    }

    #[test]
    fn reasons_never_mention_the_scheme_word_the_logs_are_checked_for() {
        // tests/e2e/reliability_tokens.rs fails on any "Bearer " in the logs.
        for reason in [
            AuthFailure::MissingHeader,
            AuthFailure::MalformedHeader,
            AuthFailure::DoubledBearer,
            AuthFailure::UnknownOrRevokedToken,
            AuthFailure::OtherDirectory,
            AuthFailure::UnknownDirectory,
            AuthFailure::DirectoryMismatch,
        ] {
            assert!(!reason.describe().contains("Bearer "), "{reason:?}");
        }
    }

    #[test]
    fn finds_directory_in_path() {
        assert_eq!(directory_in_path("/scim/v2/d1/Users"), Some("d1"));
        assert_eq!(directory_in_path("/scim/v2/d1"), Some("d1"));
        assert_eq!(directory_in_path("/scim/v2//Users"), None);
        assert_eq!(directory_in_path("/healthz"), None);
    }
}
