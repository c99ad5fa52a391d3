-- Scoped credentials for internal callers of the gRPC API (consumers that
-- only watch, gateways, operators). Only a SHA-256 hash of each secret.
CREATE TABLE IF NOT EXISTS service_credentials (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('read', 'gateway', 'admin')),
    prefix      text NOT NULL,
    hash        bytea NOT NULL CONSTRAINT service_credentials_hash_key UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
