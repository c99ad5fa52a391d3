-- The admin portal (docs/portal.md): the audit trail of SCIM requests, and
-- the single-use links and sessions through which a customer's IT admin
-- reaches one directory. Secrets are kept only as SHA-256 hashes; request
-- bodies and credentials are never recorded. Mirrors migrations/postgres.

CREATE TABLE activity (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    directory_id   TEXT NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    at             TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    method         TEXT NOT NULL,
    path           TEXT NOT NULL,
    status         INTEGER NOT NULL,
    scim_type      TEXT,
    detail         TEXT,
    user_agent     TEXT,
    client_address TEXT,
    resource_type  TEXT,
    resource_id    TEXT,
    revision       INTEGER,
    duration_ms    INTEGER NOT NULL
);
CREATE INDEX activity_directory_id ON activity (directory_id, id DESC);
CREATE INDEX activity_at ON activity (at);

CREATE TABLE portal_links (
    id           TEXT PRIMARY KEY,
    directory_id TEXT NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    hash         BLOB NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT,
    revoked_at   TEXT
);
CREATE INDEX portal_links_directory_id ON portal_links (directory_id);

CREATE TABLE portal_sessions (
    id           TEXT PRIMARY KEY,
    link_id      TEXT NOT NULL REFERENCES portal_links (id) ON DELETE CASCADE,
    directory_id TEXT NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    hash         BLOB NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX portal_sessions_link_id ON portal_sessions (link_id);
CREATE INDEX portal_sessions_directory_id ON portal_sessions (directory_id);
