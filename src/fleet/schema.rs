//! The PostgreSQL schema `fimd fleet schema` prints for an admin to apply (fimd creates
//! nothing at run time): the events table keyed by `(host, instance, seq)`, the heartbeat table,
//! a latest-heartbeat view, an INSERT-only agent role with row-level security
//! `host = current_user`, and a read-only reader role.

/// Whether `prefix` is safe to splice into SQL identifiers: `[a-z_][a-z0-9_]*`, at most 30.
pub fn valid_prefix(prefix: &str) -> bool {
    let mut chars = prefix.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && prefix.len() <= 30
}

/// The schema for `prefix` (default `fim_`). `prefix` must pass [`valid_prefix`].
pub fn sql(p: &str) -> String {
    format!(
        r#"-- fimd fleet schema (apply once as an admin: psql -v ON_ERROR_STOP=1 -f schema.sql)
BEGIN;

CREATE TABLE {p}event (
    host        text        NOT NULL,
    instance    text        NOT NULL,
    seq         bigint      NOT NULL,   -- the host's event id
    uid         text        NOT NULL,   -- "<instance>:<seq>"
    time        timestamptz NOT NULL,   -- when the host recorded the change
    received    timestamptz NOT NULL DEFAULT now(),
    event       text        NOT NULL,   -- added removed modified renamed
    path        text        NOT NULL,
    from_path   text,
    severity    text        NOT NULL,
    sha256      text,                   -- the new content's hash (null: removed, not a file)
    old_sha256  text,
    body        jsonb       NOT NULL,   -- the whole event as `fimd events --json` prints it
    PRIMARY KEY (host, instance, seq)
);
CREATE INDEX {p}event_path ON {p}event (path text_pattern_ops);
CREATE INDEX {p}event_time ON {p}event (time);
CREATE INDEX {p}event_sha256 ON {p}event (sha256);

CREATE TABLE {p}heartbeat (
    host            text        NOT NULL,
    instance        text        NOT NULL,
    time            timestamptz NOT NULL,
    received        timestamptz NOT NULL DEFAULT now(),
    version         text        NOT NULL,
    last_event_id   bigint      NOT NULL,
    last_full_scan  timestamptz,
    baseline_size   bigint      NOT NULL,
    outbox_backlog  bigint      NOT NULL,
    chain_head_uid  text,
    chain_head_mac  text,
    PRIMARY KEY (host, instance, time)
);
CREATE INDEX {p}heartbeat_latest ON {p}heartbeat (host, time DESC);

-- The newest heartbeat of each host.
CREATE VIEW {p}host_latest AS
    SELECT DISTINCT ON (host) * FROM {p}heartbeat ORDER BY host, time DESC;

-- Hosts: one login role per host, named exactly like its [daemon] host, member of {p}agent:
--   CREATE ROLE "web-1" LOGIN PASSWORD '...' IN ROLE {p}agent;
-- It may only INSERT rows that carry its own name: no SELECT, UPDATE, DELETE or TRUNCATE.
DO $$ BEGIN
    CREATE ROLE {p}agent NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
-- Readers (`fimd fleet`, dashboards): SELECT only.
--   CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE {p}reader;
DO $$ BEGIN
    CREATE ROLE {p}reader NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

REVOKE ALL ON {p}event, {p}heartbeat, {p}host_latest FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {p}agent, {p}reader;
GRANT INSERT ON {p}event, {p}heartbeat TO {p}agent;
GRANT SELECT ON {p}event, {p}heartbeat, {p}host_latest TO {p}reader;

ALTER TABLE {p}event ENABLE ROW LEVEL SECURITY;
ALTER TABLE {p}heartbeat ENABLE ROW LEVEL SECURITY;
CREATE POLICY {p}event_own ON {p}event FOR INSERT TO {p}agent
    WITH CHECK (host = current_user);
CREATE POLICY {p}heartbeat_own ON {p}heartbeat FOR INSERT TO {p}agent
    WITH CHECK (host = current_user);
CREATE POLICY {p}event_read ON {p}event FOR SELECT TO {p}reader USING (true);
CREATE POLICY {p}heartbeat_read ON {p}heartbeat FOR SELECT TO {p}reader USING (true);

COMMIT;
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_identifiers() {
        for ok in ["fim_", "a", "fleet2_"] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in ["", "Fim", "1x", "a;drop", "a-b", "a\"b"] {
            assert!(!valid_prefix(bad), "{bad}");
        }
        assert!(sql("fim_").contains("CREATE TABLE fim_event ("));
    }
}
