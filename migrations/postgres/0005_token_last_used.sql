-- When an IdP last authenticated with each token (to within a minute), so an
-- operator can see that the IdP switched to a new token before revoking the
-- old one.
ALTER TABLE tokens ADD COLUMN IF NOT EXISTS last_used_at timestamptz;
