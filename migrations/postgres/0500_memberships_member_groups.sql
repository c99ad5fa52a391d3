-- A user's groups in one index-only scan, already in `group_id` order
-- (docs/performance.md, "seventh session"). Every user read carries the
-- user's group ids (`ARRAY(SELECT m.group_id FROM memberships m WHERE
-- m.member_id = users.id AND m.member_kind = 'user' ORDER BY m.group_id)`);
-- with `memberships_member (member_id)` alone that was a bitmap heap scan
-- and a sort per user row. `member_kind` rides along so that its filter
-- needs no heap visit. The new index serves every lookup by `member_id`
-- the old one served, so the old one goes: one index less per membership
-- write.
--
-- Not CONCURRENTLY: that build waits for every older snapshot of the
-- database, and an initial-state snapshot of WatchChanges can stay open
-- for as long as its consumer reads, so a replica's start could wait for
-- minutes. A plain build holds off membership writes (not reads) for as
-- long as it runs: about half a second per million memberships on the team's 2-core machine.
CREATE INDEX IF NOT EXISTS memberships_member_groups
    ON memberships (member_id, group_id) INCLUDE (member_kind);
DROP INDEX IF EXISTS memberships_member;
