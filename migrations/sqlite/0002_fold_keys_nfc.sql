-- The uniqueness keys users.user_name_key and groups.display_name_key now
-- also fold Unicode normalization (NFC), so that the NFC and NFD spellings of
-- one name are one resource. The keys are computed in Rust
-- (roster_scim::text::fold): the store recomputes every existing key right
-- after this migration and then drops this marker (crates/store/src/sqlite/rekey.rs).
CREATE TABLE fold_keys_pending (id INTEGER PRIMARY KEY CHECK (id = 1));
INSERT INTO fold_keys_pending (id) VALUES (1);
