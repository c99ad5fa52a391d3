-- Pulled directories (docs/connectors/); the same columns as PostgreSQL's
-- 0200_directory_sources.sql. Credentials are stored sealed, never in clear.
CREATE TABLE directory_sources (
    directory_id         TEXT PRIMARY KEY REFERENCES directories (id) ON DELETE CASCADE,
    kind                 TEXT NOT NULL CHECK (kind IN ('google', 'ldap', 'active_directory')),
    settings             TEXT NOT NULL DEFAULT '{}',
    credentials          BLOB,
    interval_secs        INTEGER NOT NULL,
    mass_delete_percent  INTEGER NOT NULL,
    status               TEXT NOT NULL DEFAULT '{}',
    confirmed            INTEGER NOT NULL DEFAULT 0,
    next_run_at          TEXT,
    lease_owner          TEXT,
    lease_until          TEXT,
    updated_at           TEXT NOT NULL
);
