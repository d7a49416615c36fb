-- fimd schema v4 (Part 2): explained events. Never edit a released migration: add a new file.
--
-- * `events` becomes AUTOINCREMENT, so an event id is never reused (not even after the newest
--   rows are deleted), keeping every existing id. SQLite cannot alter a key, so the table is
--   rebuilt; `outbox` references it and is rebuilt with it (renaming a referenced table would
--   leave outbox pointing at the old name).
-- * Each event gains `uid` ("<instance>:<id>", its identity everywhere), `severity`, `reason`,
--   `from_path` (renames), `actor` and `package` (JSON objects or NULL).
-- * `meta.instance`: a random UUID (version 4) made when the database is created.
-- * `baseline.package`: the package stamp of a row when it was recorded (JSON: manager, name,
--   arch, version), so a later change knows the version it came from (upgrade/downgrade).
-- Existing events get their severity from fimd's rules at the next start (NULL until then).

INSERT OR IGNORE INTO meta (key, value)
SELECT 'instance',
       substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-'
       || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(h, 18, 3) || '-' || substr(h, 21, 12)
FROM (SELECT lower(hex(randomblob(16))) AS h);

CREATE TABLE events_v4 (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    uid       TEXT NOT NULL,
    time      TEXT NOT NULL,
    time_ns   INTEGER NOT NULL,
    host      TEXT NOT NULL,
    source    TEXT NOT NULL,                -- inotify rescan check (fanotify later)
    event     TEXT NOT NULL,                -- added removed modified renamed
    path      BLOB NOT NULL,
    from_path BLOB,                         -- renamed: the old name
    changed   TEXT NOT NULL,
    old       TEXT,
    new       TEXT,
    sensitive INTEGER NOT NULL,
    diff      TEXT,
    severity  TEXT,                         -- critical high medium low info (NULL: not yet rated)
    reason    TEXT,
    actor     TEXT,                         -- JSON object or NULL
    package   TEXT                          -- JSON object or NULL
);
INSERT INTO events_v4 (id, uid, time, time_ns, host, source, event, path, changed, old, new, sensitive, diff)
SELECT id, (SELECT value FROM meta WHERE key = 'instance') || ':' || id,
       time, time_ns, host, source, event, path, changed, old, new, sensitive, diff
FROM events ORDER BY id;

CREATE TABLE outbox_v4 (
    id              INTEGER PRIMARY KEY,
    event_id        INTEGER NOT NULL REFERENCES events_v4 (id),
    sink            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns INTEGER NOT NULL DEFAULT 0,
    created_ns      INTEGER NOT NULL,
    delivered_ns    INTEGER,
    last_error      TEXT,
    remote_id       TEXT,
    UNIQUE (event_id, sink)
);
INSERT INTO outbox_v4 SELECT * FROM outbox;

DROP TABLE outbox;
DROP TABLE events;
-- Renaming updates outbox_v4's reference to the new name.
ALTER TABLE events_v4 RENAME TO events;
ALTER TABLE outbox_v4 RENAME TO outbox;

CREATE INDEX events_time ON events (time_ns);
CREATE INDEX events_severity ON events (severity) WHERE severity IS NULL;
CREATE INDEX outbox_due ON outbox (state, sink, next_attempt_ns);
CREATE INDEX outbox_pending_age ON outbox (state, created_ns);

ALTER TABLE baseline ADD COLUMN package TEXT;
