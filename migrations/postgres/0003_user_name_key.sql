-- userName uniqueness by a key computed in Rust (roster_scim::text::fold:
-- Unicode NFC + lower case) instead of lower(user_name), whose result
-- depends on the server's locale (under LC_CTYPE=C it folds ASCII only) and
-- which ignores normalization (NFC and NFD spellings of one name differ).
-- COLLATE "C": the key is compared bytewise, whatever the database's
-- collation, and its btree index serves `sw` (LIKE 'x%') directly.
--
-- Existing rows are keyed by the store right after the migrations run
-- (crates/store/src/postgres/rekey.rs): it fills the column, then makes it
-- NOT NULL and moves the unique index and the trigram index onto it.
ALTER TABLE users ADD COLUMN IF NOT EXISTS user_name_key text COLLATE "C";

-- During a rolling upgrade, pods of the previous release still insert users
-- without the key. Give those rows an approximation (the same fold done by
-- the database, where its locale allows) so that they are unique and
-- findable; rows written by this release always carry the key computed in
-- Rust, and the WHEN clause skips the function for them. To be dropped one
-- release later (docs/operations.md, "Upgrading").
CREATE OR REPLACE FUNCTION users_user_name_key_from_previous_release() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('server_encoding') = 'UTF8' THEN
        NEW.user_name_key := lower(normalize(NEW.user_name, NFC));
    ELSE
        NEW.user_name_key := lower(NEW.user_name);
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS users_user_name_key_default ON users;
CREATE TRIGGER users_user_name_key_default BEFORE INSERT ON users
    FOR EACH ROW WHEN (NEW.user_name_key IS NULL)
    EXECUTE FUNCTION users_user_name_key_from_previous_release();
