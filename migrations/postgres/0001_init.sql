-- Roster schema for PostgreSQL (13+: uses pg_current_snapshot and xid8).
-- All timestamps are timestamptz; every resource row carries a `version`
-- (optimistic concurrency) and a `created_seq` (stable creation order for
-- pagination while rows are inserted).

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE directories (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL,
    organization       text NOT NULL,
    provider           text NOT NULL,
    deprovision_policy text NOT NULL,
    attribute_mappings jsonb NOT NULL DEFAULT '[]'::jsonb,
    version            bigint NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX directories_organization ON directories (organization);

CREATE TABLE tokens (
    id           uuid PRIMARY KEY,
    directory_id uuid NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL,
    -- SHA-256 of the secret; the secret itself is never stored.
    hash         bytea NOT NULL CONSTRAINT tokens_hash_key UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX tokens_live_per_directory ON tokens (directory_id) WHERE revoked_at IS NULL;

CREATE TABLE users (
    id                uuid PRIMARY KEY,
    directory_id      uuid NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    user_name         text NOT NULL,
    external_id       text,
    active            boolean NOT NULL,
    display_name      text,
    given_name        text,
    family_name       text,
    emails            jsonb NOT NULL DEFAULT '[]'::jsonb,
    title             text,
    department        text,
    manager_id        text,
    employee_number   text,
    custom_attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
    raw               jsonb NOT NULL,
    version           bigint NOT NULL DEFAULT 1,
    created_seq       bigserial NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- userName is case-insensitive (RFC 7643 §4.1.1): uniqueness ignores case.
CREATE UNIQUE INDEX users_user_name_key ON users (directory_id, lower(user_name));
CREATE INDEX users_external_id ON users (directory_id, external_id);
CREATE UNIQUE INDEX users_created_seq ON users (directory_id, created_seq);
CREATE INDEX users_user_name_trgm ON users USING gin (lower(user_name) gin_trgm_ops);

CREATE TABLE groups (
    id           uuid PRIMARY KEY,
    directory_id uuid NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    display_name text NOT NULL,
    external_id  text,
    raw          jsonb NOT NULL,
    -- Maintained incrementally by the statements that add/remove members.
    member_count bigint NOT NULL DEFAULT 0,
    version      bigint NOT NULL DEFAULT 1,
    created_seq  bigserial NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- IdPs rely on 409 for a duplicate group displayName.
CREATE UNIQUE INDEX groups_display_name_key ON groups (directory_id, lower(display_name));
CREATE INDEX groups_external_id ON groups (directory_id, external_id);
CREATE UNIQUE INDEX groups_created_seq ON groups (directory_id, created_seq);

CREATE TABLE memberships (
    directory_id uuid NOT NULL,
    group_id     uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    -- A user or a group of the same directory (no FK: two possible tables;
    -- the store checks and locks the member row when adding).
    member_id    uuid NOT NULL,
    member_kind  text NOT NULL CHECK (member_kind IN ('user', 'group')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, member_id)
);
-- "Groups of a user" and removal of a deleted user from its groups.
CREATE INDEX memberships_member ON memberships (member_id);

-- The change log. `revision` comes from `change_revision`, taken as the last
-- statement of each writing transaction; see crates/store/src/postgres.rs for
-- why readers stop at the "stable head". No FK to directories: events
-- outlive the directory they describe.
--
-- The sequence must keep CACHE 1 (the default): per-session caches would hand
-- out revisions out of the order in which transactions take them.
CREATE SEQUENCE change_revision AS bigint CACHE 1;

CREATE TABLE changes (
    revision       bigint PRIMARY KEY,
    event_id       uuid NOT NULL,
    directory_id   uuid NOT NULL,
    kind           text NOT NULL,
    resource_id    uuid NOT NULL,
    version        bigint NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    payload        jsonb NOT NULL,
    changed_fields jsonb NOT NULL DEFAULT '[]'::jsonb
);
CREATE INDEX changes_directory_revision ON changes (directory_id, revision);
CREATE INDEX changes_occurred_at ON changes (occurred_at);

CREATE TABLE change_log_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- Revisions <= this have been pruned; older cursors are out of range.
    pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO change_log_state (singleton, pruned_through) VALUES (true, 0);
