//! The HTTP side of a delivery: which URLs may be called, and one signed
//! POST with timeouts, no redirects and no private addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use roster_webhook::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

use super::WebhookConfig;

/// Why a URL is refused as a webhook endpoint.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("not a URL: {0}")]
    Malformed(String),
    #[error("only https:// endpoints are allowed (http:// needs --webhook-allow-http)")]
    Scheme,
    #[error(
        "{0} is a private, loopback or link-local address (allow with --webhook-allow-private)"
    )]
    PrivateAddress(IpAddr),
    #[error("a webhook URL must not carry credentials")]
    Credentials,
}

/// Checks a URL before it is stored and before each request: the scheme,
/// and an address written in it. Names are checked when they resolve.
pub fn check_url(url: &str, config: &WebhookConfig) -> Result<reqwest::Url, UrlError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| UrlError::Malformed(e.to_string()))?;
    match parsed.scheme() {
        "https" => {}
        "http" if config.allow_http => {}
        _ => return Err(UrlError::Scheme),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let literal = match parsed.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(UrlError::Malformed("no host".into())),
    };
    if let Some(ip) = literal
        && !config.allow_private
        && is_private(ip)
    {
        return Err(UrlError::PrivateAddress(ip));
    }
    Ok(parsed)
}

/// Addresses a receiver on the public internet never has: private,
/// loopback, link-local (cloud metadata services), shared, unspecified,
/// multicast and broadcast ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves names with the system resolver and drops every private
/// address (unless allowed), so a public name pointing inside the network
/// is refused when it is called, not only when it is configured.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_private(a.ip()))
                .collect();
            if found.is_empty() {
                let refused = format!("{host} resolves to no allowed (public) address");
                return Err(refused.into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// The outcome of one request.
#[derive(Debug)]
pub struct Response {
    /// `None` when no response arrived.
    pub status: Option<u16>,
    pub latency: Duration,
    /// The body's first bytes, or the transport error.
    pub detail: String,
}

impl Response {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// One signed request, ready to send.
pub struct Signed<'a> {
    pub url: &'a str,
    pub msg_id: &'a str,
    pub timestamp: i64,
    pub signature: String,
    pub body: prost::bytes::Bytes,
}

/// Sends webhook requests.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    config: Arc<WebhookConfig>,
}

impl Sender {
    pub fn new(config: Arc<WebhookConfig>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would connect to addresses the
            // resolver below refuses.
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: config.allow_private,
            }))
            .user_agent(concat!("Roster-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, config })
    }

    /// POSTs the request. Every failure is an outcome (no status), never an
    /// error: the delivery loop decides what it means.
    pub async fn send(&self, req: Signed<'_>) -> Response {
        let started = Instant::now();
        let url = match check_url(req.url, &self.config) {
            Ok(url) => url,
            Err(e) => return failed(started, e.to_string()),
        };
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_ID, req.msg_id)
            .header(HEADER_TIMESTAMP, req.timestamp.to_string())
            .header(HEADER_SIGNATURE, req.signature)
            .body(req.body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return failed(started, transport_error(&e)),
        };
        let status = response.status().as_u16();
        let detail = self.prefix(response).await;
        Response {
            status: Some(status),
            latency: started.elapsed(),
            detail,
        }
    }

    /// The body's first bytes: read only that far, so a receiver that
    /// streams a huge answer costs nothing.
    async fn prefix(&self, mut response: reqwest::Response) -> String {
        let limit = self.config.response_prefix_bytes;
        let mut kept = Vec::new();
        while kept.len() < limit {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        kept.truncate(limit);
        String::from_utf8_lossy(&kept).into_owned()
    }
}

fn failed(started: Instant, detail: String) -> Response {
    Response {
        status: None,
        latency: started.elapsed(),
        detail,
    }
}

/// A transport error with its cause chain (reqwest's own message alone
/// says only "error sending request").
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(allow_http: bool, allow_private: bool) -> WebhookConfig {
        WebhookConfig {
            allow_http,
            allow_private,
            ..WebhookConfig::default()
        }
    }

    #[test]
    fn only_https_unless_allowed() {
        let strict = config(false, false);
        assert!(check_url("https://hooks.example.com/x", &strict).is_ok());
        assert_eq!(
            check_url("http://hooks.example.com/x", &strict),
            Err(UrlError::Scheme)
        );
        assert_eq!(
            check_url("ftp://h/x", &config(true, false)),
            Err(UrlError::Scheme)
        );
        assert!(check_url("http://hooks.example.com/x", &config(true, false)).is_ok());
        assert_eq!(
            check_url("https://u:p@hooks.example.com/", &strict),
            Err(UrlError::Credentials)
        );
    }

    #[test]
    fn private_literals_are_refused_unless_allowed() {
        let strict = config(false, false);
        for url in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:192.168.1.1]/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
        ] {
            assert!(
                matches!(check_url(url, &strict), Err(UrlError::PrivateAddress(_))),
                "{url}"
            );
        }
        assert!(check_url("https://8.8.8.8/", &strict).is_ok());
        assert!(check_url("https://127.0.0.1/", &config(false, true)).is_ok());
    }
}
