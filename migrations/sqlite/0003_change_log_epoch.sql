-- The change log's epoch: a random id naming this history of the log (see
-- migrations/postgres/0004_change_log_epoch.sql). random() is 64 bits.
ALTER TABLE log_state ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
UPDATE log_state SET epoch = random() WHERE id = 1;
