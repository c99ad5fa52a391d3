//! Who may call the directory service's gRPC API, and what.
//!
//! With an internal secret configured, every `roster.*` RPC must carry
//! `authorization: Bearer <secret>`, where the secret is either the bootstrap
//! internal secret (every RPC) or a service credential (`rsc_…`, created
//! through `AdminService`) limited to a [`CredentialScope`]: a consumer that
//! only watches gets a credential that cannot create tokens or delete
//! directories. Health checks and reflection need no credential. Without an
//! internal secret every caller that reaches the port is admitted (the
//! embedded `roster serve` default, bound to loopback).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use roster_store::{CredentialScope, Store};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::codegen::http;

/// Prefix of every service credential secret (recognisable by secret scanners
/// and told apart from IdP tokens, `rst_`).
pub const CREDENTIAL_PREFIX: &str = "rsc_";

/// How long a credential check is reused: a revoked credential stops working
/// within this time.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// Cached checks kept at most; past it the cache starts over (a flood of
/// random credentials then costs lookups, not memory).
const CACHE_CAPACITY: usize = 4096;

/// What the caller must present, said in every rejection.
const EXPECTED: &str = "expected metadata `authorization: Bearer <secret>` with the internal secret \
     (ROSTER_INTERNAL_SECRET) or a service credential (rsc_…, `roster admin create-credential`)";

/// The scope an RPC needs; `None` for services outside Roster's API (health,
/// reflection), which need no credential.
pub fn required_scope(path: &str) -> Option<CredentialScope> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    match service {
        "roster.directory.v1.DirectoryService" => Some(directory_scope(method)),
        "roster.admin.v1.AdminService" if GATEWAY_ADMIN_RPCS.contains(&method) => {
            Some(CredentialScope::Gateway)
        }
        s if s.starts_with("roster.") => Some(CredentialScope::Admin),
        _ => None,
    }
}

/// The AdminService RPCs a gateway makes on its own: checking an IdP's
/// token, recording the audit trail, and opening and checking portal
/// sessions. Managing tokens for a portal session needs the admin scope
/// (docs/portal.md).
const GATEWAY_ADMIN_RPCS: [&str; 5] = [
    "AuthenticateToken",
    "RecordActivity",
    "OpenPortalLink",
    "AuthenticatePortalSession",
    "EndPortalSession",
];

fn directory_scope(method: &str) -> CredentialScope {
    let reads = ["Get", "List", "Read", "Watch", "BatchList"];
    if reads.iter().any(|r| method.starts_with(r)) {
        CredentialScope::Read
    } else {
        CredentialScope::Gateway
    }
}

/// Checks the credential of each call (see the module docs).
pub struct InternalAuth {
    bootstrap: Option<[u8; 32]>,
    store: Arc<dyn Store>,
    cache: Mutex<ScopeCache>,
}

/// Each checked secret digest: its scope (`None`: not a live credential) and
/// when it was looked up.
type ScopeCache = HashMap<[u8; 32], (Option<CredentialScope>, Instant)>;

impl InternalAuth {
    /// A check against `secret` (none or empty: every caller is admitted)
    /// and the service credentials in `store`.
    pub fn new(secret: Option<&str>, store: Arc<dyn Store>) -> Self {
        Self {
            bootstrap: secret.filter(|s| !s.is_empty()).map(digest),
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a call to `path` presenting `authorization`, or says why not.
    pub async fn admit(
        &self,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<(), tonic::Status> {
        let Some(required) = required_scope(path) else {
            return Ok(());
        };
        let Some(bootstrap) = &self.bootstrap else {
            return Ok(());
        };
        let Some(presented) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(roster_proto::internal_auth::rejected(format!(
                "no internal credential: {EXPECTED}"
            )));
        };
        let presented_digest = digest(presented);
        let scope = if bool::from(presented_digest.ct_eq(bootstrap)) {
            Some(CredentialScope::Admin)
        } else if presented.starts_with(CREDENTIAL_PREFIX) {
            self.credential_scope(presented_digest).await?
        } else {
            None
        };
        match scope {
            None => Err(roster_proto::internal_auth::rejected(format!(
                "wrong or revoked internal credential: {EXPECTED}"
            ))),
            Some(scope) if scope < required => Err(tonic::Status::permission_denied(format!(
                "a `{}` credential may not call {path}: it needs a `{}` one",
                scope.as_str(),
                required.as_str()
            ))),
            Some(_) => Ok(()),
        }
    }

    /// The scope of the live credential with this digest, cached briefly.
    async fn credential_scope(
        &self,
        digest: [u8; 32],
    ) -> Result<Option<CredentialScope>, tonic::Status> {
        if let Some(scope) = self.cached(&digest) {
            return Ok(scope);
        }
        let found =
            self.store.find_credential(digest).await.map_err(|e| {
                tonic::Status::unavailable(format!("cannot check the credential: {e}"))
            })?;
        // The store looked the hash up by equality; comparing again in
        // constant time keeps the check independent of how it indexes.
        let scope = found
            .filter(|(_, stored)| bool::from(digest.ct_eq(stored)))
            .map(|(credential, _)| credential.scope);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(digest, (scope, Instant::now()));
        Ok(scope)
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Option<CredentialScope>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(digest)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(scope, _)| *scope)
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Tower layer running [`InternalAuth`] before every call.
#[derive(Clone)]
pub struct InternalAuthLayer(pub Arc<InternalAuth>);

impl<S> tower::Layer<S> for InternalAuthLayer {
    type Service = InternalAuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InternalAuthService {
            auth: Arc::clone(&self.0),
            inner,
        }
    }
}

/// See [`InternalAuthLayer`].
#[derive(Clone)]
pub struct InternalAuthService<S> {
    auth: Arc<InternalAuth>,
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for InternalAuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = Arc::clone(&self.auth);
        Box::pin(async move {
            let authorization = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            match auth.admit(request.uri().path(), authorization).await {
                Ok(()) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rpc_needs_the_least_scope_that_covers_it() {
        let dir = |m: &str| required_scope(&format!("/roster.directory.v1.DirectoryService/{m}"));
        let admin = |m: &str| required_scope(&format!("/roster.admin.v1.AdminService/{m}"));
        assert_eq!(dir("WatchChanges"), Some(CredentialScope::Read));
        assert_eq!(dir("ListUsers"), Some(CredentialScope::Read));
        assert_eq!(dir("BatchListUsers"), Some(CredentialScope::Read));
        assert_eq!(dir("GetGroup"), Some(CredentialScope::Read));
        assert_eq!(dir("ReadGroup"), Some(CredentialScope::Read));
        assert_eq!(dir("CreateUser"), Some(CredentialScope::Gateway));
        assert_eq!(dir("PatchGroup"), Some(CredentialScope::Gateway));
        assert_eq!(admin("AuthenticateToken"), Some(CredentialScope::Gateway));
        assert_eq!(admin("CreateToken"), Some(CredentialScope::Admin));
        assert_eq!(admin("DeleteDirectory"), Some(CredentialScope::Admin));
        assert_eq!(
            admin("CreateServiceCredential"),
            Some(CredentialScope::Admin)
        );
        assert_eq!(required_scope("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            required_scope("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            None
        );
    }

    #[test]
    fn scopes_are_ordered() {
        assert!(CredentialScope::Read < CredentialScope::Gateway);
        assert!(CredentialScope::Gateway < CredentialScope::Admin);
    }
}
