//! Shared state: configuration, gRPC clients, caches.

use std::sync::Arc;

use roster_proto::admin::admin_service_client::AdminServiceClient;
use roster_proto::directory::DynDirectoryService;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic_health::pb::health_client::HealthClient;

use crate::activity::ActivityLog;
use crate::config::GatewayConfig;
use crate::observe::CallMeta;
use crate::ratelimit::{AuthLimits, RateLimiter};
use crate::remote::RemoteDirectory;
use crate::token_cache::TokenCache;
use crate::upstream::{self, DirectService, Dns, Resolve, Upstream};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `directory_endpoint` is not a usable URI.
    #[error("invalid directory endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The configured endpoint.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS certificates for the directory service could not be loaded.
    #[error("cannot load the TLS certificates for the directory service: {0}")]
    Tls(#[from] roster_tls::TlsError),
    /// The internal secret cannot travel in a gRPC header.
    #[error("the internal secret contains characters not allowed in a header")]
    InvalidSecret,
}

/// State shared by every request; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    config: GatewayConfig,
    directory: Arc<DynDirectoryService>,
    admin: AdminServiceClient<Upstream>,
    health: HealthClient<Upstream>,
    internal_auth: Option<AsciiMetadataValue>,
    tokens: TokenCache,
    auth_limits: AuthLimits,
    limiter: Option<RateLimiter>,
    activity: Option<ActivityLog>,
}

impl AppState {
    /// Builds the state. The gRPC channel connects lazily, so the gateway
    /// starts (and answers 503) while the directory service is down; it
    /// spreads calls over every address the endpoint's host resolves to.
    pub fn new(config: GatewayConfig) -> Result<Self, StartError> {
        Self::with_resolver(config, Arc::new(Dns))
    }

    /// [`AppState::new`] resolving the endpoint's host with `resolver`.
    pub fn with_resolver(
        config: GatewayConfig,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, StartError> {
        let upstream = Upstream::Pool(upstream::balanced_pool(&config, resolver)?);
        let directory = Arc::new(RemoteDirectory::new(upstream.clone()));
        Self::with_upstream(config, upstream, directory)
    }

    /// Builds the state over the directory service itself, in this process
    /// (`roster serve`): `directory` is `DirectoryService` called through its
    /// trait (no encoding at all); the admin and health calls go straight to
    /// `service`, through the directory service's credential check, without
    /// HTTP/2.
    pub fn with_direct(
        config: GatewayConfig,
        service: DirectService,
        directory: Arc<DynDirectoryService>,
    ) -> Result<Self, StartError> {
        let timeout = config.request_timeout;
        Self::with_upstream(config, Upstream::Direct { service, timeout }, directory)
    }

    fn with_upstream(
        config: GatewayConfig,
        channel: Upstream,
        directory: Arc<DynDirectoryService>,
    ) -> Result<Self, StartError> {
        let internal_auth = config
            .internal_secret
            .as_ref()
            .map(|s| MetadataValue::try_from(format!("Bearer {s}")))
            .transpose()
            .map_err(|_| StartError::InvalidSecret)?;
        // The audit trail needs a task to send it; without a runtime (a
        // state built outside one) there is none, and nothing is recorded.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let (activity, receiver) = match (&runtime, config.activity_log) {
            (Some(_), true) => {
                let (log, receiver) = ActivityLog::new();
                (Some(log), Some(receiver))
            }
            _ => (None, None),
        };
        let state = Self(Arc::new(Inner {
            directory,
            admin: AdminServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            internal_auth,
            tokens: TokenCache::new(config.auth_cache_ttl, config.token_cache_capacity),
            auth_limits: AuthLimits::new(&config),
            limiter: RateLimiter::new(config.rate_limit_per_directory, config.rate_limit_burst),
            activity,
            config,
        }));
        if let (Some(runtime), Some(receiver)) = (runtime, receiver) {
            runtime.spawn(crate::activity::run(Arc::downgrade(&state.0), receiver));
        }
        Ok(state)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self(inner)
    }

    /// The audit trail's queue, when recording is on.
    pub fn activity_log(&self) -> Option<&ActivityLog> {
        self.0.activity.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.0.config
    }

    /// The directory service: in this process or a client of the shared
    /// channel.
    pub fn directory(&self) -> &DynDirectoryService {
        &*self.0.directory
    }

    /// An AdminService client on the shared channel.
    pub fn admin(&self) -> AdminServiceClient<Upstream> {
        self.0.admin.clone()
    }

    /// A gRPC health client on the shared channel.
    pub fn health(&self) -> HealthClient<Upstream> {
        self.0.health.clone()
    }

    /// The token cache.
    pub fn tokens(&self) -> &TokenCache {
        &self.0.tokens
    }

    /// The limits applied before authentication.
    pub fn auth_limits(&self) -> &AuthLimits {
        &self.0.auth_limits
    }

    /// The rate limiter, when limiting is on.
    pub fn limiter(&self) -> Option<&RateLimiter> {
        self.0.limiter.as_ref()
    }

    /// A gRPC request carrying the deadline, the request id, the trace
    /// context and the internal secret.
    pub fn grpc<T>(&self, message: T, call: &CallMeta) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.0.config.request_timeout);
        let metadata = request.metadata_mut();
        if let Ok(v) = MetadataValue::try_from(call.request_id.as_str()) {
            metadata.insert(roster_proto::contract::REQUEST_ID_METADATA, v);
        }
        roster_telemetry::propagation::inject_current(metadata);
        if !metadata.contains_key("traceparent")
            && let Ok(v) = MetadataValue::try_from(call.traceparent.as_str())
        {
            metadata.insert("traceparent", v);
        }
        if let Some(secret) = &self.0.internal_auth {
            metadata.insert("authorization", secret.clone());
        }
        request
    }
}
