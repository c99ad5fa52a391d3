//! End-to-end tests of the `roster` binary, in one test binary (one link
//! instead of one per file). Every test starts its own system through the
//! spawn-app harness (`roster_testkit::app`): its own database, port 0
//! everywhere, the real binary or the real services.
//!
//! The fault tests that kill processes and restart them on a fixed port run
//! in their own binary (`tests/faults`), where no neighbour can take that
//! port meanwhile.

mod audit_trail;
mod bad_config;
mod balancing;
mod client;
mod concurrency;
mod docs_commands;
mod hostile_fuzz;
mod hostile_input;
mod idp_entra;
mod idp_generic;
mod idp_google;
mod idp_jumpcloud;
mod idp_okta;
mod idp_okta_v1;
mod idp_onelogin;
mod idp_pingone;
mod idp_rippling;
mod isolation;
mod log_epoch;
mod metrics;
mod mtls_cli;
mod portal_browser;
mod pulled;
mod readiness;
mod reliability_tokens;
mod shutdown;
mod traces;
mod walkthrough;
mod webdriver;
mod webhook_ca;
