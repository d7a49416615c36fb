-- fimd schema v2: per-sink delivery gate for the outbox worker (src/alert/outbox.rs).
-- Never edit a released migration: add a new file.

-- One row per sink name that has ever been sent to. `not_before_ns` is the earliest wall-clock
-- time (ns since the epoch) of the next request to that sink: it carries the batch window
-- (one request per sink per window), a Retry-After pause (429/503) and the backoff after a
-- failure, so that all three survive a restart and bind every process using this database.
CREATE TABLE alert_sinks (
    sink            TEXT PRIMARY KEY NOT NULL,
    not_before_ns   INTEGER NOT NULL DEFAULT 0,
    last_request_ns INTEGER NOT NULL DEFAULT 0,
    pause_reason    TEXT                       -- why the sink is paused (redacted), NULL when not
) WITHOUT ROWID;

-- The expiry sweep (retry_for) looks at pending rows by age.
CREATE INDEX outbox_pending_age ON outbox (state, created_ns);
