//! `fimd fleet events|hosts|prevalence|gaps`: the reader side, over the schema of
//! [`super::schema`], with a read-only role (`fim_reader`). Every query is one statement
//! (`hosts` adds the chain check of [`super::chain`]).

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};

use crate::event::Severity;

/// A reader connection and the table prefix.
pub struct Reader {
    pub(super) pool: PgPool,
    pub(super) prefix: String,
}

/// One stored event (the columns `fleet events` shows; `body` is the whole event).
#[derive(Debug, Clone, Serialize)]
pub struct FleetEvent {
    pub host: String,
    pub uid: String,
    pub time: String,
    pub event: String,
    pub path: String,
    pub from: Option<String>,
    pub severity: String,
    pub sha256: Option<String>,
    pub body: serde_json::Value,
}

/// One host's newest heartbeat and what it says.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host: String,
    pub instance: String,
    pub last_seen: String,
    pub version: String,
    pub last_event_id: i64,
    /// The highest seq stored for this host's instance (0 when none).
    pub stored_event_id: i64,
    pub last_full_scan: Option<String>,
    pub baseline_size: i64,
    pub outbox_backlog: i64,
    pub chain_head_uid: Option<String>,
    pub chain_head_mac: Option<String>,
    /// `silent`, `stale-scan`, `backlog`, `behind` (events reported but not stored), and
    /// `chain-rewritten`, `chain-rewound`, `chain-unsigned`, `chain-restarted` when its
    /// heartbeats ever showed that break ([`super::chain`]; details in `fleet gaps`).
    pub problems: Vec<String>,
}

/// How many hosts hold one sha256 of a path now.
#[derive(Debug, Clone, Serialize)]
pub struct Prevalence {
    pub sha256: Option<String>,
    pub hosts: i64,
    pub host_names: Vec<String>,
}

/// A run of event ids missing from one host's instance.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    pub host: String,
    pub instance: String,
    pub first_missing: i64,
    pub last_missing: i64,
    pub missing: i64,
    /// `hole` (ids on both sides are stored) or `tail` (after the last stored id, by the
    /// latest heartbeat, with an empty outbox).
    pub kind: String,
}

/// What `fleet events` selects.
#[derive(Debug, Default, Clone)]
pub struct EventQuery {
    /// RFC 3339.
    pub since: Option<String>,
    pub path_glob: Option<String>,
    pub min_severity: Option<Severity>,
    pub host: Option<String>,
    pub limit: Option<i64>,
}

const TS: &str = r#"YYYY-MM-DD"T"HH24:MI:SS.US"Z""#;

pub(super) fn ts(col: &str) -> String {
    format!("to_char({col} AT TIME ZONE 'UTC', '{TS}')")
}

/// A shell glob as an anchored POSIX regular expression: `*` stays within a directory, `**`
/// crosses, `?` is one character, `[...]` a class; everything else literal.
pub fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                out.push_str(".*");
                i += 1;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => match chars[i..].iter().position(|&x| x == ']') {
                Some(end) if end > 1 => {
                    let class: String = chars[i + 1..i + end].iter().collect();
                    let class = class.replace('\\', "\\\\");
                    match class.strip_prefix('!') {
                        Some(rest) => out.push_str(&format!("[^{rest}]")),
                        None => out.push_str(&format!("[{class}]")),
                    }
                    i += end;
                }
                _ => out.push_str("\\["),
            },
            c if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
        i += 1;
    }
    out.push('$');
    out
}

impl Reader {
    /// Connect with `url` (a libpq URL; the password may be in it). Errors never show it.
    pub async fn connect(url: &str, prefix: &str) -> Result<Reader, String> {
        if !super::schema::valid_prefix(prefix) {
            return Err(format!("table prefix {prefix:?} is not a plain identifier"));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| {
                "the fleet URL is not a PostgreSQL URL (postgres://user@host/db)".to_string()
            })?
            .application_name("fimd fleet");
        let target = format!("{}:{}", options.get_host(), options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(|e| {
                let text = crate::alert::postgres::pg_error_text(&e);
                crate::alert::sink::redact(
                    &format!("cannot connect to PostgreSQL at {target}: {text}"),
                    &[url.to_string()],
                )
            })?;
        Ok(Reader {
            pool,
            prefix: prefix.to_string(),
        })
    }

    pub(super) fn failed(&self, what: &str, e: sqlx::Error) -> String {
        format!(
            "fleet {what}: {}",
            crate::alert::postgres::pg_error_text(&e)
        )
    }

    pub async fn events(&self, q: &EventQuery) -> Result<Vec<FleetEvent>, String> {
        let p = &self.prefix;
        let severities: Option<Vec<String>> = q.min_severity.map(|min| {
            [
                Severity::Info,
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ]
            .into_iter()
            .filter(|s| *s >= min)
            .map(|s| s.as_str().to_string())
            .collect()
        });
        // Newest `limit` events, shown oldest first.
        let sql = format!(
            "SELECT * FROM (SELECT host, uid, {t} AS t, time, seq, event, path, from_path, severity, sha256, body::text AS body \
             FROM {p}event \
             WHERE ($1::text IS NULL OR time >= $1::timestamptz) \
               AND ($2::text IS NULL OR path ~ $2 OR from_path ~ $2) \
               AND ($3::text[] IS NULL OR severity = ANY($3)) \
               AND ($4::text IS NULL OR host = $4) \
             ORDER BY time DESC, host DESC, seq DESC LIMIT $5) newest \
             ORDER BY time, host, seq",
            t = ts("time")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&q.since)
            .bind(q.path_glob.as_deref().map(glob_regex))
            .bind(&severities)
            .bind(&q.host)
            .bind(q.limit.unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.failed("events", e))?;
        rows.iter()
            .map(|r| -> Result<FleetEvent, sqlx::Error> {
                let body: String = r.try_get("body")?;
                Ok(FleetEvent {
                    host: r.try_get("host")?,
                    uid: r.try_get("uid")?,
                    time: r.try_get("t")?,
                    event: r.try_get("event")?,
                    path: r.try_get("path")?,
                    from: r.try_get("from_path")?,
                    severity: r.try_get("severity")?,
                    sha256: r.try_get("sha256")?,
                    body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| self.failed("events", e))
    }

    /// Every host's newest heartbeat; `silent` when older than `silent`, `stale-scan` when the
    /// last full scan is older than `stale_scan`.
    pub async fn hosts(
        &self,
        silent: Duration,
        stale_scan: Duration,
    ) -> Result<Vec<HostRow>, String> {
        let p = &self.prefix;
        let sql = format!(
            "SELECT h.host, h.instance, {seen} AS seen, h.version, h.last_event_id, \
                    COALESCE((SELECT max(seq) FROM {p}event e WHERE e.host = h.host AND e.instance = h.instance), 0) AS stored, \
                    {scan} AS scan, h.baseline_size, h.outbox_backlog, h.chain_head_uid, h.chain_head_mac, \
                    h.time < now() - make_interval(secs => $1) AS silent, \
                    (h.last_full_scan IS NULL OR h.last_full_scan < now() - make_interval(secs => $2)) AS stale \
             FROM {p}host_latest h ORDER BY h.host",
            seen = ts("h.time"),
            scan = ts("h.last_full_scan"),
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(silent.as_secs_f64())
            .bind(stale_scan.as_secs_f64())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.failed("hosts", e))?;
        let breaks = self.chain_breaks().await?;
        rows.iter()
            .map(|r| -> Result<HostRow, sqlx::Error> {
                let mut problems = Vec::new();
                let last_event_id: i64 = r.try_get("last_event_id")?;
                let stored: i64 = r.try_get("stored")?;
                let backlog: i64 = r.try_get("outbox_backlog")?;
                if r.try_get::<bool, _>("silent")? {
                    problems.push("silent".to_string());
                }
                if r.try_get::<bool, _>("stale")? {
                    problems.push("stale-scan".to_string());
                }
                if backlog > 0 {
                    problems.push("backlog".to_string());
                }
                if last_event_id > stored {
                    problems.push("behind".to_string());
                }
                let host: String = r.try_get("host")?;
                for b in breaks.iter().filter(|b| b.host == host) {
                    let problem = format!("chain-{}", b.kind);
                    if !problems.contains(&problem) {
                        problems.push(problem);
                    }
                }
                Ok(HostRow {
                    host,
                    instance: r.try_get("instance")?,
                    last_seen: r.try_get("seen")?,
                    version: r.try_get("version")?,
                    last_event_id,
                    stored_event_id: stored,
                    last_full_scan: r.try_get("scan")?,
                    baseline_size: r.try_get("baseline_size")?,
                    outbox_backlog: backlog,
                    chain_head_uid: r.try_get("chain_head_uid")?,
                    chain_head_mac: r.try_get("chain_head_mac")?,
                    problems,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| self.failed("hosts", e))
    }

    /// For each host that recorded an event for `path`: its newest state of that path (the
    /// new sha256, or gone after a removal or a rename away), grouped by sha256.
    pub async fn prevalence(&self, path: &str) -> Result<Vec<Prevalence>, String> {
        let p = &self.prefix;
        let sql = format!(
            "SELECT sha256, count(*) AS hosts, array_agg(host ORDER BY host) AS names FROM ( \
                SELECT DISTINCT ON (host) host, \
                       CASE WHEN path = $1 AND event <> 'removed' THEN sha256 END AS sha256, \
                       (path = $1 AND event <> 'removed') AS present \
                FROM {p}event WHERE path = $1 OR from_path = $1 \
                ORDER BY host, time DESC, seq DESC) latest \
             WHERE present GROUP BY sha256 ORDER BY hosts DESC, sha256"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(path)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.failed("prevalence", e))?;
        rows.iter()
            .map(|r| -> Result<Prevalence, sqlx::Error> {
                Ok(Prevalence {
                    sha256: r.try_get("sha256")?,
                    hosts: r.try_get("hosts")?,
                    host_names: r.try_get("names")?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| self.failed("prevalence", e))
    }

    /// Holes in each host's stored event ids, and tails the latest heartbeat reports but no
    /// row holds although the host's outbox is empty.
    pub async fn gaps(&self) -> Result<Vec<Gap>, String> {
        let p = &self.prefix;
        let sql = format!(
            "SELECT host, instance, first_missing, last_missing, kind FROM ( \
                SELECT host, instance, prev + 1 AS first_missing, seq - 1 AS last_missing, 'hole' AS kind \
                FROM (SELECT host, instance, seq, lag(seq) OVER (PARTITION BY host, instance ORDER BY seq) AS prev \
                      FROM {p}event) s \
                WHERE prev IS NOT NULL AND seq > prev + 1 \
              UNION ALL \
                SELECT h.host, h.instance, m.stored + 1, h.last_event_id, 'tail' \
                FROM {p}host_latest h \
                JOIN (SELECT host, instance, max(seq) AS stored FROM {p}event GROUP BY host, instance) m \
                  ON m.host = h.host AND m.instance = h.instance \
                WHERE h.outbox_backlog = 0 AND h.last_event_id > m.stored \
             ) g ORDER BY host, instance, first_missing"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.failed("gaps", e))?;
        rows.iter()
            .map(|r| -> Result<Gap, sqlx::Error> {
                let first: i64 = r.try_get("first_missing")?;
                let last: i64 = r.try_get("last_missing")?;
                Ok(Gap {
                    host: r.try_get("host")?,
                    instance: r.try_get("instance")?,
                    first_missing: first,
                    last_missing: last,
                    missing: last - first + 1,
                    kind: r.try_get("kind")?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| self.failed("gaps", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_regexes() {
        assert_eq!(glob_regex("/etc/sudoers*"), "^/etc/sudoers[^/]*$");
        assert_eq!(glob_regex("/etc/**"), "^/etc/.*$");
        assert_eq!(glob_regex("/a.b?"), "^/a\\.b[^/]$");
        assert_eq!(glob_regex("/x/[!a]"), "^/x/[^a]$");
    }
}
