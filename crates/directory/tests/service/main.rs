//! The directory service over real gRPC on a loopback port, on PostgreSQL
//! and on SQLite, in one test binary; every test gets its own store and
//! server from the testkit harness (`Env`).

mod admin;
mod credentials;
mod keepalive;
mod portal;
mod resources;
mod snapshot_cap;
mod watch;
