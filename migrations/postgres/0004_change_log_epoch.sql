-- The change log's epoch: a random id naming this history of the log. Cursors
-- carry it, and a cursor of another epoch is refused: after a restore from
-- backup the log reuses revisions that consumers may already have seen from
-- the lost history, so the operator renews it (`roster admin new-epoch`).
-- Cursors issued before this migration have no epoch and stay valid.
ALTER TABLE change_log_state ADD COLUMN epoch bigint;
UPDATE change_log_state SET epoch = ('x' || left(md5(gen_random_uuid()::text), 16))::bit(64)::bigint;
ALTER TABLE change_log_state ALTER COLUMN epoch SET NOT NULL;
