//! The pulled sources against real servers started by the tests (slapd, a
//! Samba AD domain controller, a range-truncating LDAP server, an HTTP
//! server speaking Google's Directory API), synced into real stores. One
//! test binary, so the shared setup in `support` is compiled once.

#[macro_use]
mod support;

mod active_directory;
mod ad_ranges;
mod google;
mod ldap;
