//! Gateway configuration.

use std::time::Duration;

/// Settings of one gateway process.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Externally visible base URL (scheme, host, optional prefix, no
    /// trailing slash), used in `meta.location`, `$ref` and discovery.
    pub public_url: String,
    /// gRPC endpoint of the directory service, e.g. `http://127.0.0.1:50051`.
    pub directory_endpoint: String,
    /// How often the host of `directory_endpoint` is resolved again; calls
    /// are spread over every address it resolves to.
    pub directory_refresh: Duration,
    /// When set, the gateway reaches the directory service over mutual TLS
    /// (`directory_endpoint` must be `https://`): it presents this
    /// certificate and accepts only a server certificate signed by this CA,
    /// issued for the endpoint's host. The files are re-read when they change.
    pub directory_tls: Option<roster_tls::TlsFiles>,
    /// Shared secret sent to the directory service on every call, when the
    /// directory service requires one.
    pub internal_secret: Option<String>,
    /// Largest accepted request body, except for `/Bulk`.
    pub max_body_bytes: usize,
    /// Largest page a list or search returns (`filter.maxResults`).
    pub max_results: i64,
    /// Page size when the client sends no `count`.
    pub default_page_size: i64,
    /// Most operations accepted in one bulk request (`bulk.maxOperations`).
    pub bulk_max_operations: usize,
    /// Largest accepted bulk request body (`bulk.maxPayloadSize`).
    pub bulk_max_payload_bytes: usize,
    /// Time allowed for one request, gRPC calls included.
    pub request_timeout: Duration,
    /// Time an HTTP/1 connection may take to send a whole request head,
    /// counted from when the gateway starts waiting for one: ends
    /// connections idle for that long and clients that send a head slowly.
    pub idle_timeout: Duration,
    /// Sustained requests per second allowed per directory; 0 disables
    /// rate limiting.
    pub rate_limit_per_directory: u32,
    /// Requests a directory may send at once after an idle period; 0 means
    /// the same as `rate_limit_per_directory`.
    pub rate_limit_burst: u32,
    /// How long a token check result is reused before asking again.
    pub auth_cache_ttl: Duration,
    /// Tokens the auth cache holds, for valid and for rejected tokens each
    /// (least recently used first out).
    pub token_cache_capacity: usize,
    /// Failed authentications per second a client address may sustain
    /// before its requests with unknown tokens get 429; 0 disables the limit.
    /// Requests with a token known to be valid are never limited by it.
    pub auth_failures_per_address: u32,
    /// Failed authentications a client address may make at once; 0 means
    /// the same as `auth_failures_per_address`.
    pub auth_failure_burst: u32,
    /// Token checks per second, across all clients, for tokens the cache
    /// does not know (each one costs a database query); twice as many may
    /// come at once. 0 disables the limit.
    pub token_lookups_per_second: u32,
    /// A header set by a trusted reverse proxy with the client's address
    /// (e.g. `x-forwarded-for`, right-most entry); unset: the TCP peer.
    pub client_address_header: Option<String>,
    /// Optional documentation link advertised in ServiceProviderConfig.
    pub documentation_uri: Option<String>,
    /// Records every SCIM request in the audit trail (docs/portal.md).
    pub activity_log: bool,
    /// Serves the admin portal under `/portal` (docs/portal.md).
    pub portal: bool,
    /// The portal has a listener of its own ([`crate::serve_portal`]), so
    /// the SCIM listener does not serve it.
    pub portal_own_listener: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".to_owned(),
            directory_endpoint: "http://127.0.0.1:50051".to_owned(),
            directory_refresh: Duration::from_secs(5),
            directory_tls: None,
            internal_secret: None,
            max_body_bytes: 1024 * 1024,
            max_results: 1000,
            default_page_size: 100,
            bulk_max_operations: 1000,
            bulk_max_payload_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            rate_limit_per_directory: 0,
            rate_limit_burst: 0,
            auth_cache_ttl: Duration::from_secs(5),
            token_cache_capacity: 10_000,
            auth_failures_per_address: 10,
            auth_failure_burst: 100,
            token_lookups_per_second: 500,
            client_address_header: None,
            documentation_uri: None,
            activity_log: true,
            portal: true,
            portal_own_listener: false,
        }
    }
}

impl GatewayConfig {
    /// `public_url` without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }

    /// Base URL of one directory's SCIM 2.0 endpoints.
    pub fn scim_base(&self, directory_id: &str) -> String {
        self.scim_base_in(crate::dialect::Dialect::V2, directory_id)
    }

    /// Base URL of one directory's endpoints in `dialect`.
    pub fn scim_base_in(&self, dialect: crate::dialect::Dialect, directory_id: &str) -> String {
        format!(
            "{}/scim/{}/{directory_id}",
            self.base_url(),
            dialect.segment()
        )
    }
}
