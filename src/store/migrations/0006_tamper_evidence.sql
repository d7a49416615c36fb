-- fimd schema v6: tamper evidence. With `[store] hmac_key` set, every baseline row carries an
-- HMAC-SHA256 of its canonical content, and every event an HMAC chained to the previous
-- event's (a deleted, edited or reordered event breaks the chain). NULL without a key.
-- `meta.mac_key_id` names the key the database is signed with (a fingerprint, never the key).
-- Never edit a released migration: add a new file.
ALTER TABLE baseline ADD COLUMN mac BLOB;
ALTER TABLE events ADD COLUMN mac BLOB;
