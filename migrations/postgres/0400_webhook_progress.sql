-- Webhook delivery state apart from the endpoint's configuration
-- (docs/webhooks.md, docs/performance.md "sixth session"). Every delivery
-- writes an endpoint's cursor; with those columns in `webhook_endpoints`,
-- the table's readers (the endpoint lists of the change-log range reads,
-- the replica's scan, the attempts' foreign-key checks) shared the pages
-- of those updates, which could then not be pruned in place: ten rows grew
-- to megabytes. Here the per-delivery columns live in a narrow table keyed
-- by endpoint, written by its primary key only.
--
-- `generation` is the endpoint's (webhook_endpoints.generation), copied
-- by every admin change in the same transaction: progress is guarded by
-- it and by the lease on this one row, so neither an admin's change nor a
-- new lease holder can be overwritten by a stale replica.
CREATE TABLE IF NOT EXISTS webhook_progress (
    endpoint_id      uuid PRIMARY KEY REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    generation       bigint NOT NULL,
    lease_owner      text,
    lease_until      timestamptz,
    cursor           bigint NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    failing_since    timestamptz,
    next_attempt_at  timestamptz,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dead_letter')),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

INSERT INTO webhook_progress (endpoint_id, generation, lease_owner, lease_until, cursor,
                              attempts, failing_since, next_attempt_at, status, updated_at)
SELECT id, generation, lease_owner, lease_until, cursor, attempts, failing_since,
       next_attempt_at, status, updated_at
FROM webhook_endpoints
ON CONFLICT (endpoint_id) DO NOTHING;

-- Webhooks have not been released yet (v0.1.0 has none), so no pod of the
-- previous release reads these columns: they go now.
ALTER TABLE webhook_endpoints
    DROP COLUMN IF EXISTS status,
    DROP COLUMN IF EXISTS cursor,
    DROP COLUMN IF EXISTS attempts,
    DROP COLUMN IF EXISTS failing_since,
    DROP COLUMN IF EXISTS next_attempt_at,
    DROP COLUMN IF EXISTS lease_owner,
    DROP COLUMN IF EXISTS lease_until;

-- Each attempt's INSERT checked this foreign key, which locks the
-- endpoint's row (FOR KEY SHARE) on every delivery. Deleting an endpoint
-- deletes its attempts itself instead (after its progress row, whose lock
-- waits for a progress write in flight: crates/store/src/webhooks.rs).
ALTER TABLE webhook_attempts DROP CONSTRAINT IF EXISTS webhook_attempts_endpoint_id_fkey;
