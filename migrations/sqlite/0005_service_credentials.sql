-- Scoped credentials for internal callers of the gRPC API. Only a SHA-256
-- hash of each secret.
CREATE TABLE service_credentials (
    created_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    scope       TEXT NOT NULL CHECK (scope IN ('read', 'gateway', 'admin')),
    prefix      TEXT NOT NULL,
    hash        BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
