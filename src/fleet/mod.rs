//! The fleet (DESIGN.md "Fleet"): every host's events in the team's PostgreSQL and/or NATS
//! JetStream. The writers are outbox sinks (`alert::postgres`, `alert::nats`); this module holds
//! what they share (the heartbeat, the dot-free host token, the SQL schema) and the reader side
//! behind `fimd fleet` ([`query`]).
//!
//! # Decisions (where DESIGN.md is silent)
//! - Fleet sinks receive every event: their `min_severity` defaults to `info`, not to
//!   `[notify] min_severity` (a filtered stream would show false gaps). Set it per sink to
//!   filter on purpose.
//! - The PostgreSQL row's `host` is `[daemon] host`, and the host's login role must have that
//!   exact name: row-level security checks `host = current_user`.
//! - Heartbeats are state, not history: one every minute from the daemon's alert worker (and
//!   one as it starts); a failed one is logged and not queued.
//! - The NATS host token is the host name with every character outside `[A-Za-z0-9_-]`
//!   replaced by `_` (`web-1.example.net` → `web-1_example_net`).

pub mod chain;
pub mod query;
pub mod schema;

use serde::Serialize;
use sqlx::SqlitePool;

/// The fleet sinks' names (outbox `sink` column).
pub const SINKS: [&str; 2] = ["postgres", "nats"];

/// True for `postgres` and `nats`.
pub fn is_fleet_sink(name: &str) -> bool {
    SINKS.contains(&name)
}

/// What a host reports every minute.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Heartbeat {
    pub host: String,
    pub instance: String,
    /// RFC 3339 UTC.
    pub time: String,
    pub version: String,
    /// The newest event id in the local database (0 when none): with the stored rows, the
    /// central side sees a host's missing tail.
    pub last_event_id: i64,
    /// RFC 3339, `None` before the first full scan.
    pub last_full_scan: Option<String>,
    pub baseline_size: i64,
    /// Outbox rows still pending (all sinks).
    pub outbox_backlog: i64,
    /// Tamper evidence: the newest event's uid and its chained MAC (hex); `None` when off.
    pub chain_head_uid: Option<String>,
    pub chain_head_mac: Option<String>,
}

impl Heartbeat {
    /// Read the heartbeat's facts from the local database.
    pub async fn collect(pool: &SqlitePool, host: &str) -> Result<Heartbeat, sqlx::Error> {
        let meta = |key: &'static str| async move {
            sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = ?")
                .bind(key)
                .fetch_optional(pool)
                .await
        };
        let count = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await
        };
        let head: Option<(Option<String>, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT uid, mac FROM events ORDER BY id DESC LIMIT 1")
                .fetch_optional(pool)
                .await?;
        let (chain_head_uid, chain_head_mac) = match head {
            Some((Some(uid), Some(mac))) => (Some(uid), Some(hex::encode(mac))),
            _ => (None, None),
        };
        Ok(Heartbeat {
            host: host.to_string(),
            instance: meta("instance").await?.unwrap_or_default(),
            time: crate::timefmt::rfc3339_ns(crate::timefmt::now_ns()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            last_event_id: count("SELECT COALESCE(MAX(id), 0) FROM events").await?,
            last_full_scan: meta("last_full_scan").await?,
            baseline_size: count("SELECT COUNT(*) FROM baseline").await?,
            outbox_backlog: count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").await?,
            chain_head_uid,
            chain_head_mac,
        })
    }
}

/// The host name as one NATS subject token: characters outside `[A-Za-z0-9_-]` become `_`.
pub fn host_token(host: &str) -> String {
    let t: String = host
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    match t.is_empty() {
        true => "_".to_string(),
        false => t,
    }
}

/// `(instance, seq)` from a uid `"<instance>:<id>"`.
pub fn split_uid(uid: &str) -> Option<(&str, i64)> {
    let (instance, id) = uid.rsplit_once(':')?;
    Some((instance, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tokens_have_no_dots_or_wildcards() {
        assert_eq!(host_token("web-1.example.net"), "web-1_example_net");
        assert_eq!(host_token("a b*>c"), "a_b__c");
        assert_eq!(host_token(""), "_");
        assert_eq!(split_uid("7f1c-aa:42"), Some(("7f1c-aa", 42)));
        assert_eq!(split_uid("nope"), None);
    }
}
