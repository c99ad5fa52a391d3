//! The HTTP side of a delivery: which URLs may be called, and one signed
//! POST with timeouts, no redirects and no private addresses.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::header;
use prost::bytes::Bytes;
use roster_webhook::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

use super::WebhookConfig;
use super::connection::{Connection, Connector, Target};

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

/// Checks a URL before it is stored and whenever an endpoint's delivery
/// takes it up ([`Target::parse`]): the scheme, and an address written in
/// it. Names are checked when a connection resolves them.
pub fn check_url(url: &str, config: &WebhookConfig) -> Result<url::Url, UrlError> {
    let parsed = url::Url::parse(url).map_err(|e| UrlError::Malformed(e.to_string()))?;
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
/// multicast, broadcast and reserved ranges, and IPv6 addresses that embed
/// an IPv4 address (mapped, compatible, NAT64, 6to4) judged by that address,
/// since a NAT64 or 6to4 gateway would carry the request to it.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001)
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])
        }
    }
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated), NAT64's
/// well-known prefix (`64:ff9b::a.b.c.d`, RFC 6052) and 6to4
/// (`2002:aabb:ccdd::`, RFC 3056).
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let from = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        std::net::Ipv4Addr::new(a, b, c, d)
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    match s {
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(from(hi, lo)),
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(from(hi, lo)),
        [0x2002, hi, lo, ..] => Some(from(hi, lo)),
        _ => None,
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
    pub msg_id: &'a str,
    pub timestamp: i64,
    pub signature: String,
    pub body: Bytes,
}

/// Sends webhook requests: HTTP/1.1, no redirects followed, no proxy, no
/// private addresses (unless allowed), timeouts on connecting and on the
/// whole request.
pub struct Sender {
    connector: Connector,
    config: Arc<WebhookConfig>,
}

impl Sender {
    /// Trusts the public web PKI (Mozilla's roots), as browsers do, and the
    /// configured extra roots.
    pub fn new(config: Arc<WebhookConfig>) -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let (added, ignored) = roots.add_parsable_certificates(config.extra_roots.iter().cloned());
        if ignored > 0 {
            return Err(rustls::Error::General(format!(
                "{ignored} of {} extra webhook CA certificates cannot be used as roots",
                added + ignored
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            connector: Connector::new(&config, Arc::new(tls)),
            config,
        })
    }

    /// POSTs the request on `connection` (opening one if needed). Every
    /// failure is an outcome (no status), never an error: the delivery loop
    /// decides what it means.
    pub async fn send(
        &self,
        connection: &mut Connection,
        target: &Result<Target, UrlError>,
        req: Signed<'_>,
    ) -> Response {
        let started = Instant::now();
        let target = match target {
            Ok(target) => target,
            Err(e) => return failed(started, e.to_string()),
        };
        let request = match request(target, req) {
            Ok(request) => request,
            Err(e) => return failed(started, format!("request: {e}")),
        };
        let limit = self.config.response_prefix_bytes;
        let sent = connection.send(&self.connector, target, request, limit);
        let timeout = self.config.request_timeout;
        match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(answer)) => Response {
                status: Some(answer.status),
                latency: started.elapsed(),
                detail: String::from_utf8_lossy(&answer.prefix).into_owned(),
            },
            Ok(Err(e)) => failed(started, e.to_string()),
            Err(_) => failed(started, format!("timeout: no answer within {timeout:?}")),
        }
    }
}

/// The request `req` makes to `target`.
fn request(
    target: &Target,
    req: Signed<'_>,
) -> Result<hyper::Request<Full<Bytes>>, hyper::http::Error> {
    hyper::Request::post(target.path().clone())
        .header(header::HOST, target.authority().clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, USER_AGENT)
        .header(HEADER_ID, req.msg_id)
        .header(HEADER_TIMESTAMP, req.timestamp)
        .header(HEADER_SIGNATURE, req.signature)
        .body(Full::new(req.body))
}

const USER_AGENT: &str = concat!("Roster-Webhooks/", env!("CARGO_PKG_VERSION"));

fn failed(started: Instant, detail: String) -> Response {
    Response {
        status: None,
        latency: started.elapsed(),
        detail,
    }
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
            "https://[::127.0.0.1]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[64:ff9b:1::1]/",
            "https://[2002:0a00:0001::1]/",
            "https://[fec0::1]/",
            "https://[2001:db8::1]/",
            "https://192.0.0.8/",
            "https://198.18.0.1/",
            "https://240.0.0.1/",
            "https://0177.0.0.1/",
            "https://0x7f000001/",
            "https://2130706433/",
        ] {
            assert!(
                matches!(check_url(url, &strict), Err(UrlError::PrivateAddress(_))),
                "{url}"
            );
        }
        assert!(check_url("https://8.8.8.8/", &strict).is_ok());
        // Public addresses behind the embedding prefixes stay reachable.
        assert!(check_url("https://[64:ff9b::808:808]/", &strict).is_ok());
        assert!(check_url("https://[2002:0808:0808::1]/", &strict).is_ok());
        assert!(check_url("https://[2606:4700::1111]/", &strict).is_ok());
        assert!(check_url("https://127.0.0.1/", &config(false, true)).is_ok());
    }
}
