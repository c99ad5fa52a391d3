-- Roster's embedded (single-process) schema. Mirrors migrations/postgres with
-- SQLite types:
--   * ids are lowercase hyphenated UUID text, so text order = UUID byte order
--     (member lists are keyset-paginated by member id, like on PostgreSQL);
--   * timestamps are fixed-width RFC 3339 UTC text with microseconds
--     ('2024-01-02T03:04:05.000006Z'), so text order = time order;
--   * JSON documents are text.

-- The change-log counters. A single row, updated inside every write
-- transaction: SQLite has one writer at a time, so revisions are dense and in
-- commit order, and the committed head is always the stable head.
CREATE TABLE log_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    -- Last revision handed out (= last committed revision outside a write).
    head           INTEGER NOT NULL,
    -- Revisions <= this have been pruned.
    pruned_through INTEGER NOT NULL
);
INSERT INTO log_state (id, head, pruned_through) VALUES (1, 0, 0);

CREATE TABLE directories (
    -- Creation order; AUTOINCREMENT never reuses a value, so keyset pages stay
    -- correct after deletes.
    created_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    organization       TEXT NOT NULL,
    provider           TEXT NOT NULL,
    deprovision_policy TEXT NOT NULL,
    attribute_mappings TEXT NOT NULL DEFAULT '[]',
    version            INTEGER NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE INDEX directories_organization ON directories (organization, created_seq);

CREATE TABLE tokens (
    created_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    directory_id TEXT NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    -- SHA-256 of the secret; the secret itself is never stored.
    hash         BLOB NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX tokens_directory ON tokens (directory_id, created_seq);

CREATE TABLE users (
    created_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    directory_id      TEXT NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    user_name         TEXT NOT NULL,
    -- Unicode-lowercased user_name, computed in Rust (SQLite's lower() only
    -- folds ASCII): the key of case-insensitive uniqueness (RFC 7643 §4.1.1).
    user_name_key     TEXT NOT NULL,
    external_id       TEXT,
    active            INTEGER NOT NULL,
    display_name      TEXT,
    given_name        TEXT,
    family_name       TEXT,
    emails            TEXT NOT NULL DEFAULT '[]',
    title             TEXT,
    department        TEXT,
    manager_id        TEXT,
    employee_number   TEXT,
    custom_attributes TEXT NOT NULL DEFAULT '{}',
    raw               TEXT NOT NULL,
    version           INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (directory_id, user_name_key)
);
CREATE INDEX users_directory_created_seq ON users (directory_id, created_seq);
CREATE INDEX users_directory_external_id ON users (directory_id, external_id);

CREATE TABLE groups (
    created_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    directory_id     TEXT NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    display_name     TEXT NOT NULL,
    -- Unicode-lowercased display_name (see users.user_name_key).
    display_name_key TEXT NOT NULL,
    external_id      TEXT,
    raw              TEXT NOT NULL,
    -- Maintained incrementally by every membership change.
    member_count     INTEGER NOT NULL DEFAULT 0,
    version          INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (directory_id, display_name_key)
);
CREATE INDEX groups_directory_created_seq ON groups (directory_id, created_seq);
CREATE INDEX groups_directory_external_id ON groups (directory_id, external_id);

-- One row per (group, member): a member change touches only its own row.
CREATE TABLE memberships (
    group_id     TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_id    TEXT NOT NULL,
    member_kind  TEXT NOT NULL CHECK (member_kind IN ('user', 'group')),
    directory_id TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
CREATE INDEX memberships_member ON memberships (member_id, group_id);
CREATE INDEX memberships_directory ON memberships (directory_id);

-- The transactional outbox: written in the same transaction as the state.
CREATE TABLE changes (
    revision       INTEGER PRIMARY KEY,
    event_id       TEXT NOT NULL,
    -- No foreign key: a directory's events outlive it (directory.deleted).
    directory_id   TEXT NOT NULL,
    kind           TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    version        INTEGER NOT NULL,
    occurred_at    TEXT NOT NULL,
    payload        TEXT NOT NULL,
    changed_fields TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX changes_directory_revision ON changes (directory_id, revision);
