-- Pulled directories (docs/connectors/): where a directory's users and
-- groups are read from when no IdP pushes them (Google Workspace, LDAP,
-- Active Directory). One row per pulled directory; a SCIM directory has none.
-- `credentials` is sealed (ChaCha20-Poly1305 under ROSTER_SECRET_KEY), never
-- in clear. `status` is the last run's report as JSON: it is read by admins
-- only and grows fields without a migration. The lease columns work as the
-- webhook endpoints' do: one replica syncs a directory at a time.
CREATE TABLE IF NOT EXISTS directory_sources (
    directory_id         uuid PRIMARY KEY REFERENCES directories (id) ON DELETE CASCADE,
    kind                 text NOT NULL CHECK (kind IN ('google', 'ldap', 'active_directory')),
    settings             text NOT NULL DEFAULT '{}',
    credentials          bytea,
    interval_secs        bigint NOT NULL,
    mass_delete_percent  integer NOT NULL,
    status               text NOT NULL DEFAULT '{}',
    confirmed            boolean NOT NULL DEFAULT false,
    next_run_at          timestamptz,
    lease_owner          text,
    lease_until          timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
