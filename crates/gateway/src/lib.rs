//! SCIM REST gateway.
