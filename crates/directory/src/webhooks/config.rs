//! Settings of webhook delivery.

use std::sync::Arc;
use std::time::Duration;

use roster_webhook::SealingKey;

/// How webhooks are delivered. `sealing_key: None` turns the feature off:
/// endpoints cannot be created and no worker runs (a secret must never be
/// stored in clear).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Seals signing secrets at rest (`ROSTER_SECRET_KEY`).
    pub sealing_key: Option<Arc<SealingKey>>,
    /// How long the next event of an endpoint is retried before the
    /// endpoint goes to the dead-letter state.
    pub retry_horizon: Duration,
    /// The first retry delay; each further one doubles, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
    /// The whole request, connection included.
    pub request_timeout: Duration,
    /// `http://` URLs (development only).
    pub allow_http: bool,
    /// Receivers at private, loopback and link-local addresses (in-cluster
    /// receivers; off by default against SSRF).
    pub allow_private: bool,
    /// CA certificates trusted for `https://` receivers besides Mozilla's
    /// roots (in-cluster receivers with certificates of a private CA).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// A replica that stops renewing its lease loses the endpoint after this.
    pub lease_ttl: Duration,
    /// How often a replica looks for endpoints nobody delivers for.
    pub scan_interval: Duration,
    /// How long the previous secret still signs after a rotation.
    pub rotation_overlap: Duration,
    /// Bodies above this carry the change without its resource and changed
    /// fields (consumers fetch them).
    pub max_body_bytes: usize,
    /// Bytes of a response body kept with an attempt.
    pub response_prefix_bytes: usize,
    /// How long a progress write may wait for the answers of the other
    /// endpoints' requests in flight, so that they are committed in one
    /// statement (`in_flight.rs`). Zero: never waits.
    pub progress_linger: Duration,
    /// Names this replica's leases.
    pub replica: String,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            sealing_key: None,
            retry_horizon: Duration::from_secs(3 * 24 * 3600),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            allow_http: false,
            allow_private: false,
            extra_roots: Vec::new(),
            lease_ttl: Duration::from_secs(60),
            scan_interval: Duration::from_secs(2),
            rotation_overlap: Duration::from_secs(24 * 3600),
            max_body_bytes: 256 * 1024,
            response_prefix_bytes: 256,
            progress_linger: Duration::from_millis(1),
            replica: format!("replica-{}", uuid::Uuid::new_v4()),
        }
    }
}
