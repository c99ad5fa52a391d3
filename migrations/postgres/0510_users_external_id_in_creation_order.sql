-- A directory's users with one externalId, already in creation order
-- (docs/performance.md, "eighth session"). A search by `externalId eq`
-- returns its matches in `created_seq` order (externalId is not unique);
-- with `users_external_id (directory_id, external_id)` each search fetched
-- the matches and sorted them, a sort node set up per key even when one
-- row matched. The new index serves every lookup the old one served, so
-- the old one goes: one index less per user write.
--
-- Not CONCURRENTLY, for the reason 0500 gives (WatchChanges' long
-- snapshots): a plain build holds off user writes, not reads, for as long
-- as it runs.
CREATE INDEX IF NOT EXISTS users_external_id_created
    ON users (directory_id, external_id, created_seq);
DROP INDEX IF EXISTS users_external_id;
