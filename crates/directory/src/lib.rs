//! gRPC directory service.
