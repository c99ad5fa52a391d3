-- Webhook delivery state apart from the endpoint's configuration: the same
-- table as PostgreSQL's 0400_webhook_progress.sql (which says why).
-- SQLite keeps the attempts' foreign key: its single writer takes no row
-- locks, and its check is one index lookup.
CREATE TABLE webhook_progress (
    endpoint_id      TEXT PRIMARY KEY REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    generation       INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      TEXT,
    cursor           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    failing_since    TEXT,
    next_attempt_at  TEXT,
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dead_letter')),
    updated_at       TEXT NOT NULL
);

INSERT INTO webhook_progress (endpoint_id, generation, lease_owner, lease_until, cursor,
                              attempts, failing_since, next_attempt_at, status, updated_at)
SELECT id, generation, lease_owner, lease_until, cursor, attempts, failing_since,
       next_attempt_at, status, updated_at
FROM webhook_endpoints;

-- Not released yet (v0.1.0 has no webhooks): the moved columns go now.
ALTER TABLE webhook_endpoints DROP COLUMN status;
ALTER TABLE webhook_endpoints DROP COLUMN cursor;
ALTER TABLE webhook_endpoints DROP COLUMN attempts;
ALTER TABLE webhook_endpoints DROP COLUMN failing_since;
ALTER TABLE webhook_endpoints DROP COLUMN next_attempt_at;
ALTER TABLE webhook_endpoints DROP COLUMN lease_owner;
ALTER TABLE webhook_endpoints DROP COLUMN lease_until;
