//! SCIM 2.0 protocol (RFC 7643 / RFC 7644) without I/O.

pub mod filter;
