-- fimd schema v7: history retention (`[store] keep_events`). Never edit a released migration:
-- add a new file.
--
-- Pruning deletes old events (and their delivered outbox rows), but never an event with an
-- undelivered alert, so the kept history can have holes. The tamper-evidence chain (each
-- event's MAC covers the previous event's) must still verify across them: each kept event
-- right after a pruned run gets an anchor saying which kept event precedes the hole
-- (`after_id`, 0 for none) and the MAC of the event the chain continues from (`prev_mac`,
-- the last pruned one; NULL without tamper evidence). `mac` signs the anchor itself under
-- the key, so a forged anchor cannot hide a deleted event.
CREATE TABLE event_chain_anchors (
    event_id INTEGER PRIMARY KEY NOT NULL,
    after_id INTEGER NOT NULL,
    prev_mac BLOB,
    mac      BLOB
);
