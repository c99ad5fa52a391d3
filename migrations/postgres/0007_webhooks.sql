-- Webhook endpoints (docs/webhooks.md): each has its own position in the
-- change log (`cursor`), its retry state, and a lease so that exactly one
-- replica delivers for it at a time. Secrets are stored sealed
-- (ChaCha20-Poly1305 under the server's ROSTER_SECRET_KEY), never in clear.
-- No foreign key to directories: an endpoint must still deliver the
-- `directory.deleted` of its directory.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id                     uuid PRIMARY KEY,
    directory_id           uuid,
    url                    text NOT NULL,
    kinds                  text NOT NULL DEFAULT '',
    description            text NOT NULL DEFAULT '',
    enabled                boolean NOT NULL DEFAULT true,
    disabled_reason        text,
    status                 text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dead_letter')),
    secret                 bytea NOT NULL,
    previous_secret        bytea,
    previous_secret_until  timestamptz,
    cursor                 bigint NOT NULL,
    attempts               integer NOT NULL DEFAULT 0,
    failing_since          timestamptz,
    next_attempt_at        timestamptz,
    generation             bigint NOT NULL DEFAULT 1,
    lease_owner            text,
    lease_until            timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_directory ON webhook_endpoints (directory_id);

-- The recent delivery attempts of each endpoint (the newest 100 are kept).
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id            bigserial PRIMARY KEY,
    endpoint_id   uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    revision      bigint NOT NULL,
    event_id      text NOT NULL,
    status_code   integer,
    latency_ms    bigint NOT NULL,
    detail        text NOT NULL,
    succeeded     boolean NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
