-- Webhook endpoints (docs/webhooks.md); the same columns as PostgreSQL's
-- 0007_webhooks.sql. Secrets are stored sealed, never in clear.
CREATE TABLE webhook_endpoints (
    created_seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id                     TEXT NOT NULL UNIQUE,
    directory_id           TEXT,
    url                    TEXT NOT NULL,
    kinds                  TEXT NOT NULL DEFAULT '',
    description            TEXT NOT NULL DEFAULT '',
    enabled                INTEGER NOT NULL DEFAULT 1,
    disabled_reason        TEXT,
    status                 TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dead_letter')),
    secret                 BLOB NOT NULL,
    previous_secret        BLOB,
    previous_secret_until  TEXT,
    cursor                 INTEGER NOT NULL,
    attempts               INTEGER NOT NULL DEFAULT 0,
    failing_since          TEXT,
    next_attempt_at        TEXT,
    generation             INTEGER NOT NULL DEFAULT 1,
    lease_owner            TEXT,
    lease_until            TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);
CREATE INDEX webhook_endpoints_directory ON webhook_endpoints (directory_id);

CREATE TABLE webhook_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id   TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    revision      INTEGER NOT NULL,
    event_id      TEXT NOT NULL,
    status_code   INTEGER,
    latency_ms    INTEGER NOT NULL,
    detail        TEXT NOT NULL,
    succeeded     INTEGER NOT NULL,
    attempted_at  TEXT NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
