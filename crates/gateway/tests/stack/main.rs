//! The gateway over real HTTP, in one test binary: with the directory
//! service on PostgreSQL behind it (the testkit harness's `Stack`), with
//! mutual TLS between them, and with no directory service at all.
//!
//! The flood test runs in its own binary (`tests/flood.rs`): it reads the
//! process-wide gRPC metrics, which no other test may move meanwhile.

mod activity;
mod data_rules;
mod large_groups;
mod lookups;
mod mtls;
mod offline;
mod pool;
mod portal;
mod scim_api;
mod scim_v1;
