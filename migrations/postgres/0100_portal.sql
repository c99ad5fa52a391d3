-- The admin portal (docs/portal.md): the audit trail of SCIM requests, and
-- the single-use links and sessions through which a customer's IT admin
-- reaches one directory. Secrets are kept only as SHA-256 hashes; request
-- bodies and credentials are never recorded.

CREATE TABLE activity (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    directory_id   uuid NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    at             timestamptz NOT NULL,
    request_id     text NOT NULL,
    method         text NOT NULL,
    path           text NOT NULL,
    status         integer NOT NULL,
    scim_type      text,
    detail         text,
    user_agent     text,
    client_address text,
    resource_type  text,
    resource_id    text,
    revision       bigint,
    duration_ms    bigint NOT NULL
);
-- Pages of one directory's activity, newest first.
CREATE INDEX activity_directory_id ON activity (directory_id, id DESC);
-- Retention: rows older than the period are deleted by time.
CREATE INDEX activity_at ON activity (at);

CREATE TABLE portal_links (
    id           uuid PRIMARY KEY,
    directory_id uuid NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    hash         bytea NOT NULL CONSTRAINT portal_links_hash_key UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX portal_links_directory_id ON portal_links (directory_id);

CREATE TABLE portal_sessions (
    id           uuid PRIMARY KEY,
    link_id      uuid NOT NULL REFERENCES portal_links (id) ON DELETE CASCADE,
    directory_id uuid NOT NULL REFERENCES directories (id) ON DELETE CASCADE,
    hash         bytea NOT NULL CONSTRAINT portal_sessions_hash_key UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX portal_sessions_link_id ON portal_sessions (link_id);
CREATE INDEX portal_sessions_directory_id ON portal_sessions (directory_id);
