//! The address a request comes from, for the limits applied before
//! authentication.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;

/// The client's address: the TCP peer, or, when `trusted_header` is set
/// (e.g. `x-forwarded-for` behind a load balancer), the right-most address
/// of that header, which is the one the trusted proxy saw. Entries further
/// left were written by the client and are ignored. Without either, all such
/// requests share the unspecified address.
pub fn client_address(request: &Request, trusted_header: Option<&str>) -> IpAddr {
    trusted_header
        .and_then(|name| forwarded_address(request.headers(), name))
        .or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip())
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The right-most address of the last `name` header, if it parses.
fn forwarded_address(headers: &HeaderMap, name: &str) -> Option<IpAddr> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(forwarded: &[&str], peer: Option<&str>) -> Request {
        let mut builder = Request::builder().uri("/scim/v2/d/Users");
        for value in forwarded {
            builder = builder.header("x-forwarded-for", *value);
        }
        let mut request = builder.body(Body::empty()).unwrap();
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        }
        request
    }

    #[test]
    fn peer_address_unless_a_trusted_header_says_better() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let r = request(&["203.0.113.9, 198.51.100.7"], Some("10.0.0.1:5555"));
        assert_eq!(client_address(&r, None), ip("10.0.0.1"));
        assert_eq!(
            client_address(&r, Some("x-forwarded-for")),
            ip("198.51.100.7")
        );
        let r = request(&["1.1.1.1", "[2001:db8::1]:443"], Some("10.0.0.1:5555"));
        assert_eq!(
            client_address(&r, Some("X-Forwarded-For")),
            ip("2001:db8::1")
        );
        let r = request(&["garbage"], Some("10.0.0.1:5555"));
        assert_eq!(client_address(&r, Some("x-forwarded-for")), ip("10.0.0.1"));
        assert_eq!(client_address(&request(&[], None), None), ip("0.0.0.0"));
    }
}
