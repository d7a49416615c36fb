//! `[notify.postgres]` (DESIGN.md "Fleet"): every event as one row of `<prefix>event` in the
//! team's PostgreSQL, through the outbox, idempotent on `(host, instance, seq)`.
//!
//! One multi-row `INSERT ... ON CONFLICT DO NOTHING` per batch (up to 500 events, one
//! transaction): a batch sent again after a lost answer, a killed fimd or a restart adds no
//! row. `ON CONFLICT` names no columns, so the host's role needs INSERT only (naming them
//! would need SELECT). One connection per host, opened on first use and kept.
//!
//! Outcomes: no connection / I/O / pool timeout / server shutting down → retry with backoff;
//! a permission, authentication, missing-table or bad-data answer → the rows are parked with
//! the server's message (fix the grants or the schema, then they can be requeued).

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use reqwest::{Client, RequestBuilder};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Postgres as Pg, QueryBuilder};
use std::sync::OnceLock;

use super::sink::{Batch, Direct, Limits, Outcome, Sink};
use super::AlertError;
use crate::config::notify::PostgresConfig;
use crate::config::Secret;
use crate::event::Event;
use crate::fleet::Heartbeat;

const NAME: &str = "postgres";
/// Events per INSERT: 12 parameters each, far under PostgreSQL's 65 535.
const MAX_ROWS: usize = 500;

/// A configured PostgreSQL fleet sink.
pub struct Postgres {
    options: PgConnectOptions,
    pool: OnceLock<PgPool>,
    prefix: String,
    target: String,
    secrets: Vec<String>,
}

fn config_error(message: impl Into<String>) -> AlertError {
    AlertError::Config {
        sink: NAME,
        message: message.into(),
    }
}

/// A secret's value: a reference (`${env:..}`, `${file:..}`, `${credential:..}`) resolved.
pub(crate) fn resolve(sink: &'static str, key: &str, s: &Secret) -> Result<Secret, AlertError> {
    crate::secrets::resolve(s).map_err(|e| AlertError::Config {
        sink,
        message: format!("{key}: {e}"),
    })
}

/// What to redact of a libpq URL: its password (as written and percent-decoded) and any
/// password in its query; not the whole URL, whose host and database belong in errors (a
/// whole URL would redact its path, the database name, too). An unparsable URL is redacted
/// whole.
fn url_secrets(url: &str) -> Vec<String> {
    let Ok(u) = reqwest::Url::parse(url) else {
        return vec![url.to_string()];
    };
    let mut out = Vec::new();
    if let Some(p) = u.password() {
        out.push(p.to_string());
        out.push(percent_decode(p));
    }
    for (k, v) in u.query_pairs() {
        if k.contains("password") {
            out.push(v.into_owned());
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Postgres {
    pub fn new(cfg: &PostgresConfig, _host: &str) -> Result<Postgres, AlertError> {
        let url = resolve(NAME, "url", &cfg.url)?;
        if url.is_empty() {
            return Err(config_error("url is empty"));
        }
        let mut secrets = url_secrets(url.expose());
        // Never echo the URL: it may hold the password.
        let mut options = PgConnectOptions::from_str(url.expose())
            .map_err(|_| config_error("url is not a PostgreSQL URL (postgres://user@host/db)"))?;
        if let Some(p) = &cfg.password {
            let p = resolve(NAME, "password", p)?;
            options = options.password(p.expose());
            secrets.push(p.expose().to_string());
        }
        if let Some(mode) = &cfg.ssl_mode {
            let mode = PgSslMode::from_str(mode).map_err(|_| {
                config_error(format!(
                    "ssl_mode {mode:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
                ))
            })?;
            options = options.ssl_mode(mode);
        }
        if let Some(p) = &cfg.ssl_root_cert {
            options = options.ssl_root_cert(p);
        }
        match (&cfg.ssl_client_cert, &cfg.ssl_client_key) {
            (Some(c), Some(k)) => options = options.ssl_client_cert(c).ssl_client_key(k),
            (None, None) => {}
            _ => {
                return Err(config_error(
                    "ssl_client_cert and ssl_client_key go together",
                ))
            }
        }
        let prefix = cfg.table_prefix.clone().unwrap_or_else(|| "fim_".into());
        if !crate::fleet::schema::valid_prefix(&prefix) {
            return Err(config_error(format!(
                "table_prefix {prefix:?}: lowercase letters, digits and _ only, not starting with a digit"
            )));
        }
        options = options
            .application_name(concat!("fimd/", env!("CARGO_PKG_VERSION")))
            .statement_cache_capacity(8);
        let target = format!(
            "postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        Ok(Postgres {
            options,
            pool: OnceLock::new(),
            prefix,
            target,
            secrets,
        })
    }

    /// The one connection, opened lazily (a server down at start is a retry, not an error).
    fn pool(&self) -> &PgPool {
        self.pool.get_or_init(|| {
            PgPoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(15))
                .idle_timeout(Some(Duration::from_secs(600)))
                .connect_lazy_with(self.options.clone())
        })
    }

    async fn insert(&self, batch: &Batch) -> Result<u64, sqlx::Error> {
        let p = &self.prefix;
        let mut qb: QueryBuilder<Pg> = QueryBuilder::new(format!(
            "INSERT INTO {p}event (host, instance, seq, uid, time, event, path, from_path, \
             severity, sha256, old_sha256, body) "
        ));
        let rows: Vec<(&Event, &str, i64, &str, String)> = batch
            .events
            .iter()
            .filter_map(|e| {
                let uid = e.uid.as_deref()?;
                let (instance, seq) = crate::fleet::split_uid(uid)?;
                let body = serde_json::to_string(e).ok()?;
                Some((e, instance, seq, uid, body))
            })
            .collect();
        if rows.is_empty() {
            return Ok(0);
        }
        qb.push_values(rows, |mut b, (e, instance, seq, uid, body)| {
            b.push_bind(batch.host.clone())
                .push_bind(instance.to_string())
                .push_bind(seq)
                .push_bind(uid.to_string())
                .push_bind(e.time.clone())
                .push_unseparated("::timestamptz")
                .push_bind(e.event.as_str())
                .push_bind(e.path.clone())
                .push_bind(e.from.clone())
                .push_bind(e.severity.as_str())
                .push_bind(e.new.as_ref().and_then(|s| s.sha256.clone()))
                .push_bind(e.old.as_ref().and_then(|s| s.sha256.clone()))
                .push_bind(body)
                .push_unseparated("::jsonb");
        });
        qb.push(" ON CONFLICT DO NOTHING");
        let done = qb.build().execute(self.pool()).await?;
        Ok(done.rows_affected())
    }

    async fn insert_heartbeat(&self, hb: &Heartbeat) -> Result<u64, sqlx::Error> {
        let p = &self.prefix;
        let sql = format!(
            "INSERT INTO {p}heartbeat (host, instance, time, version, last_event_id, \
             last_full_scan, baseline_size, outbox_backlog, chain_head_uid, chain_head_mac) \
             VALUES ($1, $2, $3::timestamptz, $4, $5, $6::timestamptz, $7, $8, $9, $10) \
             ON CONFLICT DO NOTHING"
        );
        // The prefix passed `valid_prefix` (identifier characters only).
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&hb.host)
            .bind(&hb.instance)
            .bind(&hb.time)
            .bind(&hb.version)
            .bind(hb.last_event_id)
            .bind(&hb.last_full_scan)
            .bind(hb.baseline_size)
            .bind(hb.outbox_backlog)
            .bind(&hb.chain_head_uid)
            .bind(&hb.chain_head_mac)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    fn failed(&self, e: sqlx::Error) -> (Outcome, String) {
        let detail = format!("{}: {}", self.target, pg_error_text(&e));
        (classify(&e), detail)
    }
}

/// Retry what time can fix (no server, network, overload); park what needs an admin.
pub(crate) fn classify(e: &sqlx::Error) -> Outcome {
    let park = |why: &'static str| Outcome::Park {
        reason: Cow::Borrowed(why),
    };
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.get(..2).unwrap_or("") {
                // insufficient_privilege (also a row-level security refusal), undefined table.
                "42" => park("PostgreSQL refused the insert (grants, row-level security or schema: see `fimd fleet schema`)"),
                "28" => park("PostgreSQL refused the login"),
                "22" | "23" => park("PostgreSQL rejected the data"),
                _ => Outcome::Retry {
                    after: None,
                    reason: Cow::Owned(format!("PostgreSQL error {code}")),
                },
            }
        }
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => {
            park("cannot use the PostgreSQL connection settings")
        }
        e if is_tls_failure(e) => {
            park("TLS with PostgreSQL failed (ssl_root_cert, ssl_client_cert, ssl_client_key)")
        }
        _ => Outcome::Retry {
            after: None,
            reason: Cow::Borrowed("PostgreSQL unreachable"),
        },
    }
}

/// A PostgreSQL error on one line: the server's message and SQLSTATE (without the "at line N"
/// of the server's own source file that sqlx's text carries), or the client-side failure with
/// its causes.
pub(crate) fn pg_error_text(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("the server said: {} (SQLSTATE {code})", db.message()),
            None => format!("the server said: {}", db.message()),
        },
        sqlx::Error::PoolTimedOut => {
            "no connection within the time allowed (server unreachable or overloaded)".to_string()
        }
        other => error_text(other),
    }
    .replace(['\r', '\n'], " ")
}

/// Whether a TLS handshake failed on certificates or TLS settings (the server's certificate
/// did not verify, the server wanted a client certificate, a bad key): an admin must fix the
/// settings, waiting will not help. Both clients report a failed handshake as an I/O error
/// wrapping the rustls error (and `io::Error::source()` skips what it wraps, hence
/// `get_ref`); a cut connection carries no rustls error.
pub(crate) fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::rustls::Error as TlsError;
    let is_tls = |s: &(dyn std::error::Error + 'static)| {
        s.downcast_ref::<TlsError>().is_some()
            || s.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.downcast_ref::<TlsError>().is_some())
    };
    let mut next = Some(e);
    while let Some(s) = next {
        if is_tls(s) {
            return true;
        }
        next = s.source();
    }
    false
}

/// An error and its sources on one line.
pub(crate) fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

impl Sink for Postgres {
    fn name(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> Limits {
        Limits {
            max_rows: MAX_ROWS,
            shown: MAX_ROWS,
            diff_chars: 0,
        }
    }

    fn request(&self, _http: &Client, _batch: &Batch) -> Result<RequestBuilder, AlertError> {
        Err(AlertError::Build {
            sink: NAME,
            message: "not an HTTP sink".to_string(),
        })
    }

    fn deliver<'a>(&'a self, batch: &'a Batch) -> Option<Direct<'a>> {
        Some(Box::pin(async move {
            if batch.test {
                // notify-test: prove the connection and the grant without writing an event.
                return match sqlx::query("SELECT 1").execute(self.pool()).await {
                    Ok(_) => (Outcome::Delivered { remote_id: None }, String::new()),
                    Err(e) => self.failed(e),
                };
            }
            match self.insert(batch).await {
                Ok(added) => {
                    let repeated = batch.events.len() as u64 - added.min(batch.events.len() as u64);
                    if repeated > 0 {
                        tracing::info!(
                            sink = NAME,
                            added,
                            already_stored = repeated,
                            "events already in PostgreSQL were not stored twice"
                        );
                    }
                    (Outcome::Delivered { remote_id: None }, String::new())
                }
                Err(e) => self.failed(e),
            }
        }))
    }

    fn heartbeat<'a>(&'a self, hb: &'a Heartbeat) -> Option<Direct<'a>> {
        Some(Box::pin(async move {
            match self.insert_heartbeat(hb).await {
                Ok(_) => (Outcome::Delivered { remote_id: None }, String::new()),
                Err(e) => self.failed(e),
            }
        }))
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_urls_passwords_are_secret() {
        assert_eq!(
            url_secrets("postgres://web-1:p%40ss@db:5432/fleet?sslmode=verify-full&password=q"),
            ["p%40ss", "p@ss", "q"]
        );
        assert!(url_secrets("postgres://web-1@db/fleet").is_empty());
        assert_eq!(url_secrets("not a url"), ["not a url"]);
    }
}
