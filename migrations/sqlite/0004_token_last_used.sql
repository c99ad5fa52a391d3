-- When an IdP last authenticated with each token (to within a minute).
ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
