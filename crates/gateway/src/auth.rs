//! Bearer-token authentication through `AdminService.AuthenticateToken`,
//! with a short cache keyed by the token's SHA-256 (never the token itself).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use roster_proto::admin::{AuthenticateTokenRequest, DeprovisionPolicy};
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::error::GatewayError;
use crate::observe::CallMeta;
use crate::ratelimit::retry_after_secs;
use crate::state::AppState;

/// Cache entries kept before expired ones are swept.
const SWEEP_THRESHOLD: usize = 10_000;

/// The directory a request's token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedDirectory {
    /// Directory id.
    pub directory_id: String,
    /// What DELETE of a user does in this directory.
    pub deprovision_policy: DeprovisionPolicy,
}

type TokenDigest = [u8; 32];

#[derive(Debug, Clone)]
struct CacheEntry {
    expires_at: Instant,
    /// `None` caches a rejection, so floods of bad tokens stay cheap.
    directory: Option<Arc<AuthedDirectory>>,
}

/// Recent token checks, valid for a TTL so that revocation takes effect
/// within seconds.
#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<TokenDigest, CacheEntry>>,
}

impl TokenCache {
    /// An empty cache whose entries live for `ttl` (zero disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lookup(&self, key: &TokenDigest, now: Instant) -> Option<Option<Arc<AuthedDirectory>>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|e| e.expires_at > now)
            .map(|e| e.directory.clone())
    }

    fn store(&self, key: TokenDigest, directory: Option<Arc<AuthedDirectory>>, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= SWEEP_THRESHOLD {
            entries.retain(|_, e| e.expires_at > now);
        }
        entries.insert(
            key,
            CacheEntry {
                expires_at: now + self.ttl,
                directory,
            },
        );
    }
}

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization: Bearer <token>` header, if well formed.
/// Several `Authorization` headers are ambiguous (a proxy may check one and
/// the gateway use another), so they authenticate nothing.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    let well_formed = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_graphic());
    well_formed.then_some(token)
}

/// Resolves a token to its directory, from the cache or the directory service.
pub async fn authenticate(
    state: &AppState,
    token: &str,
    call: &CallMeta,
) -> Result<Arc<AuthedDirectory>, GatewayError> {
    let key = digest(token);
    if let Some(cached) = state.tokens().lookup(&key, Instant::now()) {
        return cached.ok_or(GatewayError::Unauthorized);
    }
    let request = state.grpc(
        AuthenticateTokenRequest {
            secret: token.to_owned(),
        },
        call,
    );
    let outcome = match state.admin().authenticate_token(request).await {
        Ok(response) => {
            let response = response.into_inner();
            let policy = response
                .directory
                .map_or(DeprovisionPolicy::Unspecified, |d| d.deprovision_policy());
            Some(Arc::new(AuthedDirectory {
                directory_id: response.directory_id,
                deprovision_policy: policy,
            }))
        }
        Err(status) if is_rejection(status.code()) => None,
        Err(status) => return Err(status.into()),
    };
    state.tokens().store(key, outcome.clone(), Instant::now());
    outcome.ok_or(GatewayError::Unauthorized)
}

/// Codes that mean "this token is not valid", as opposed to "cannot tell".
fn is_rejection(code: Code) -> bool {
    matches!(
        code,
        Code::Unauthenticated | Code::NotFound | Code::PermissionDenied | Code::InvalidArgument
    )
}

/// The directory id of a `/scim/v2/{directory_id}/...` path.
pub fn directory_in_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/scim/v2/")?;
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
    let token = bearer_token(request.headers()).map(str::to_owned);
    let path_directory = directory_in_path(request.uri().path()).map(str::to_owned);
    let call = request
        .extensions()
        .get::<CallMeta>()
        .cloned()
        .unwrap_or_else(CallMeta::generate);
    match admit(&state, token, path_directory, &call).await {
        Ok(directory) => {
            request.extensions_mut().insert(directory);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

async fn admit(
    state: &AppState,
    token: Option<String>,
    path_directory: Option<String>,
    call: &CallMeta,
) -> Result<Arc<AuthedDirectory>, GatewayError> {
    let token = token.ok_or(GatewayError::Unauthorized)?;
    let directory = authenticate(state, &token, call).await?;
    if path_directory.as_deref() != Some(directory.directory_id.as_str()) {
        return Err(GatewayError::Unauthorized);
    }
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
    fn parses_bearer_tokens() {
        assert_eq!(bearer_token(&headers("Bearer abc.def")), Some("abc.def"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearer")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Bearer a b")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
        let mut twice = headers("Bearer abc");
        twice.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer def"),
        );
        assert_eq!(bearer_token(&twice), None);
    }

    #[test]
    fn finds_directory_in_path() {
        assert_eq!(directory_in_path("/scim/v2/d1/Users"), Some("d1"));
        assert_eq!(directory_in_path("/scim/v2/d1"), Some("d1"));
        assert_eq!(directory_in_path("/scim/v2//Users"), None);
        assert_eq!(directory_in_path("/healthz"), None);
    }

    #[test]
    fn cache_expires_and_keys_by_digest() {
        let cache = TokenCache::new(Duration::from_secs(5));
        let now = Instant::now();
        let dir = Arc::new(AuthedDirectory {
            directory_id: "d".into(),
            deprovision_policy: DeprovisionPolicy::Delete,
        });
        let key = digest("secret-token");
        assert_ne!(&key[..], b"secret-token");
        cache.store(key, Some(dir.clone()), now);
        cache.store(digest("bad"), None, now);
        assert_eq!(cache.lookup(&key, now), Some(Some(dir)));
        assert_eq!(cache.lookup(&digest("bad"), now), Some(None));
        assert_eq!(cache.lookup(&key, now + Duration::from_secs(5)), None);
        assert_eq!(cache.lookup(&digest("other"), now), None);
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let cache = TokenCache::new(Duration::ZERO);
        let now = Instant::now();
        cache.store(digest("t"), None, now);
        assert_eq!(cache.lookup(&digest("t"), now), None);
    }
}
