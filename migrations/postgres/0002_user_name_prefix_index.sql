-- no-transaction
-- `userName sw "…"` as a btree range scan within the directory: the
-- trigram index can answer prefixes too, but its cost grows with the whole
-- table (docs/performance.md, "Lookup"). text_pattern_ops because LIKE can
-- use a btree only under the C collation or with the pattern operators.
-- CONCURRENTLY so that upgrading a live database does not block writes
-- (it cannot run inside a transaction, hence the directive above).
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_user_name_prefix
    ON users (directory_id, lower(user_name) text_pattern_ops);
