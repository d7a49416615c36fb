-- fimd schema v1. Never edit a released migration: add a new file.

-- Key/value facts about this database: host, baseline_at, last_full_scan, daemon status.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- One row per monitored path (directories too, for mode/uid/gid). Paths are raw bytes so that
-- names that are not UTF-8 round-trip. Never holds file content (see `contents`).
CREATE TABLE baseline (
    path        BLOB PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,              -- file dir symlink fifo socket block char
    size        INTEGER NOT NULL,
    mode        INTEGER NOT NULL,           -- permission + special bits (st_mode & 07777)
    uid         INTEGER NOT NULL,
    gid         INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    ctime_ns    INTEGER NOT NULL,
    inode       INTEGER NOT NULL,
    nlink       INTEGER NOT NULL,
    sha256      BLOB,                       -- 32 bytes for regular files, NULL otherwise or when unreadable
    link_target BLOB,                       -- symlinks only
    sensitive   INTEGER NOT NULL DEFAULT 0,
    hashed_at_ns INTEGER NOT NULL DEFAULT 0 -- wall clock when the content was read (racy-clean check)
) WITHOUT ROWID;

-- Text content of non-sensitive text files up to content.max_bytes, kept to diff the next version.
-- A rowid table: WITHOUT ROWID tables store large rows poorly (SQLite docs).
CREATE TABLE contents (
    path BLOB PRIMARY KEY NOT NULL,
    data BLOB NOT NULL
);

-- The alert history: one row per change. old/new hold the event JSON's state objects.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    time      TEXT NOT NULL,                -- RFC 3339 UTC, nanoseconds
    time_ns   INTEGER NOT NULL,
    host      TEXT NOT NULL,
    source    TEXT NOT NULL,                -- inotify rescan check
    event     TEXT NOT NULL,                -- added removed modified
    path      BLOB NOT NULL,
    changed   TEXT NOT NULL,                -- JSON array of attribute names
    old       TEXT,                         -- JSON object or NULL
    new       TEXT,                         -- JSON object or NULL
    sensitive INTEGER NOT NULL,
    diff      TEXT
);
CREATE INDEX events_time ON events (time_ns);

-- One row per (event, sink) still to deliver or delivered; never deleted.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    event_id        INTEGER NOT NULL REFERENCES events (id),
    sink            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',   -- pending delivered parked failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns INTEGER NOT NULL DEFAULT 0,
    created_ns      INTEGER NOT NULL,
    delivered_ns    INTEGER,
    last_error      TEXT,
    remote_id       TEXT,
    UNIQUE (event_id, sink)
);
CREATE INDEX outbox_due ON outbox (state, sink, next_attempt_ns);
