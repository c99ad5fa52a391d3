-- The change-log events each recorded SCIM request produced (docs/portal.md),
-- in the wire contract's text form (roster_proto::contract::events): runs
-- of one kind at consecutive revisions, e.g. `user.created:1042`,
-- `member.added:1043-1044`. NULL when the request produced none.
ALTER TABLE activity ADD COLUMN events text;
