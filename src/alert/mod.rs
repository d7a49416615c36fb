//! Alert delivery: the outbox worker, retry/backoff, batching, and one module per sink behind
//! the [`Sink`] trait.
//!
//! # What the rest of fimd calls
//!
//! ```text
//! // startup / reload (after credentials::apply_overrides on the NotifyConfig):
//! let sinks = alert::Sinks::from_config(&cfg.notify, &cfg.host())?;     // AlertError::Config → exit 17
//! sinks.names();       // ["slack", "webhook"]: the sink names to enqueue for
//! sinks.describe();    // config-check lines: "slack: https://hooks.slack.com (fingerprint 1a2b3c4d)"
//!
//! // in the pipeline's transaction, after inserting the events:
//! alert::enqueue(&mut tx, &event_ids, &sinks.names(), now_ns).await?;
//! // after commit:
//! wake.notify_one();
//!
//! // daemon: tracker.spawn(alert::run_worker(pool, sinks, cfg.notify.clone(), wake, token));
//! // fimd check, before exit: alert::flush(&pool, &sinks, &cfg.notify, Duration::from_secs(20)).await?
//! // fimd notify-test:        alert::notify_test(&sinks).await
//! // fimd status:             alert::outbox::backlog(&pool).await?
//! ```
//!
//! # Delivery model
//! One outbox row per (event, sink), inserted with the event. A pass claims up to
//! `Limits::max_rows` due rows of a sink and sends ONE request for them: a digest for chat and
//! ticket sinks (the first few events in full, the rest counted), every event for the generic
//! webhook (500 per request). At most one request per sink per `batch_window`: the first
//! change goes out at once, a burst after it becomes the next window's digest. Failures back
//! off exponentially with full jitter; 429 (and 503 with `Retry-After`) pause the whole sink;
//! 3xx/4xx other than 408/429 park the rows with one error log line; rows older than
//! `retry_for` become `failed` with a warning. Rows are never deleted. All of this state is
//! in the database (`outbox`, `alert_sinks`), so a restart resumes it.
//!
//! # Decisions (where DESIGN.md / notifications.md leave room or differ)
//! - Batch window is leading-edge: a sink idle for a window gets the first change at once;
//!   the window then gates the next request. The gate lives in `alert_sinks` (migration
//!   0002), so it binds `fimd check` and the daemon alike and survives restarts.
//! - A failed request also gates its sink until the retry is due, so rows queued during an
//!   outage do not add requests; the backoff exponent is the highest `attempts` in the batch.
//! - Webhook signature: `X-Fimd-Signature: sha256=<hex HMAC-SHA256(secret, body)>` over the
//!   exact body bytes, no timestamp (notifications.md §6 suggested `v1=` with a timestamp).
//!   A `notify-test` request carries `X-Fimd-Test: true`; its body has the normal shape.
//! - The generic webhook sends DESIGN's event objects, not notifications.md §0's
//!   `fimd.event/v1`; 500 events per request, diffs (when allowed) cut to 16 KiB each.
//! - 400/413/422 park the rows (no "shrink once and retry"); every body is already fitted
//!   under the vendor's documented size. 3xx parks too (redirects are never followed).
//! - 429 without `Retry-After` pauses the sink 60 s; `Retry-After` is capped at 15 min.
//! - Jira and ServiceNow search before create, but only on a retry (rows with `attempts > 0`):
//!   a first delivery costs one request. Jira issues carry the label `fimd-<12 hex>` (the
//!   host and the batch's oldest event id, stable across retries); ServiceNow searches its
//!   `correlation_id` among active records. Found: a comment / work note on it; the search
//!   failing: the rows are retried, nothing is created. A retry whose batch grew from one
//!   event to several uses ServiceNow's digest key and can still create a second record;
//!   search results lag (Jira's are eventually consistent), so at-least-once remains.
//! - Severity is `high` or `medium` only ([`content::severity`]).
//!
//! Never logs, stores or returns a secret: sinks hold them in [`Secret`]s, transport errors go
//! through `without_url()`, and every answer and error text is redacted against the sink's
//! secrets before it is logged or written to `last_error`.

pub mod content;
pub mod credentials;
pub mod jira;
pub mod nats;
pub mod outbox;
pub mod postgres;
pub mod rapid7;
pub mod servicenow;
pub mod sink;
pub mod slack;
pub mod teams;
pub mod webhook;
pub mod worker;

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::Client;

pub use crate::store::load_events;
pub use credentials::{apply_overrides, SinkFlags};
pub use outbox::enqueue;
pub use sink::{Batch, Limits, Outcome, Sink};
pub use worker::{
    deliver_due_at, flush, notify_test, requeue_parked, run_worker, send_heartbeats, FlushReport,
    PassReport,
};

use crate::config::{NotifyConfig, Secret};

/// Everything that can go wrong in the alert layer. Messages name the sink and never hold a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A sink's configuration is unusable (exit code 17).
    #[error("notify.{sink}: {message}")]
    Config { sink: &'static str, message: String },
    /// A request could not be built from a batch.
    #[error("{sink}: cannot build the request: {message}")]
    Build { sink: &'static str, message: String },
    /// The HTTP client could not be created (TLS setup, proxy settings).
    #[error("cannot create the HTTP client: {0}")]
    Client(String),
    /// The outbox database failed.
    #[error("outbox database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The configured sinks, the host name they report and the one shared HTTP client.
///
/// A sink is replaced in place when its secret references are resolved again after it
/// answered 401/403 ([`Sinks::rotate`]); the list is behind a lock held only to copy it.
pub struct Sinks {
    host: String,
    list: RwLock<Vec<Arc<dyn Sink>>>,
    http: Client,
    /// The `[notify]` config as written (references, not values), for rotation.
    raw: Option<NotifyConfig>,
    /// Every secret reference of the sinks and how it resolved (`config-check`).
    references: Vec<crate::secrets::Resolved>,
}

impl fmt::Debug for Sinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sinks")
            .field("host", &self.host)
            .field("sinks", &self.names())
            .finish()
    }
}

impl Sinks {
    /// Build every configured sink (empty when none is). Fails on the first unusable sink
    /// config: bad URL, plain http to a non-loopback host, missing credential.
    pub fn from_config(cfg: &NotifyConfig, host: &str) -> Result<Sinks, AlertError> {
        let mut list: Vec<Arc<dyn Sink>> = Vec::new();
        for name in cfg.sink_names() {
            if let Some(sink) = build_sink(cfg, name)? {
                list.push(sink);
            }
        }
        if let Some(c) = &cfg.postgres {
            list.push(Arc::new(postgres::Postgres::new(c, host)?));
        }
        if let Some(c) = &cfg.nats {
            list.push(Arc::new(nats::Nats::new(c, host)?));
        }
        for sink in &list {
            register_secrets(sink.as_ref());
        }
        Ok(Sinks {
            host: host.to_string(),
            list: RwLock::new(list),
            http: http_client()?,
            raw: None,
            references: Vec::new(),
        })
    }

    /// Remember the config as written (`raw`, with its secret references) and how each
    /// reference resolved, so a sink answering 401/403 can be rebuilt with values fetched
    /// again ([`Sinks::rotate`]) and `config-check` can list them.
    pub fn with_references(
        mut self,
        raw: NotifyConfig,
        references: Vec<crate::secrets::Resolved>,
    ) -> Sinks {
        self.raw = Some(raw);
        self.references = references;
        self
    }

    /// The secret references of the sinks and how each resolved (never a value).
    pub fn references(&self) -> &[crate::secrets::Resolved] {
        &self.references
    }

    /// After `name` answered 401/403: fetch its referenced secrets again and, when they
    /// changed, rebuild the sink with them (it replaces the old one for later passes too).
    /// `None` when the sink has no reference, when a reference cannot be fetched (the old
    /// value is kept, one warning names the reference) or when nothing changed.
    pub async fn rotate(&self, name: &str) -> Option<Arc<dyn Sink>> {
        if !self.references.iter().any(|r| r.sink == Some(name)) {
            return None;
        }
        let mut cfg = self.raw.clone()?;
        if let Err(e) = crate::secrets::resolve_notify_async(&mut cfg, Some(name)).await {
            tracing::warn!(sink = name, error = %e,
                "the sink refused its credentials and they cannot be fetched again; keeping the current ones");
            return None;
        }
        let old = self.iter().into_iter().find(|s| s.name() == name)?;
        let new = match build_sink(&cfg, name) {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(sink = name, error = %e,
                    "the secrets fetched again make an unusable sink; keeping the current ones");
                return None;
            }
        };
        register_secrets(new.as_ref());
        if new.secrets() == old.secrets() {
            tracing::info!(
                sink = name,
                "the sink refused its credentials; the store holds the same ones"
            );
            return None;
        }
        if let Ok(mut list) = self.list.write() {
            for slot in list.iter_mut().filter(|s| s.name() == name) {
                *slot = new.clone();
            }
        }
        tracing::info!(
            sink = name,
            "the sink refused its credentials; fetched new ones from the store"
        );
        Some(new)
    }

    /// Sink names in a fixed order: the values of the outbox `sink` column.
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().iter().map(|s| s.name()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().is_empty()
    }

    /// One line per sink for `config-check`: name, `scheme://host[:port]` and an 8-hex
    /// fingerprint of its credentials (to tell two configurations apart). Never the secret.
    pub fn describe(&self) -> Vec<String> {
        self.iter()
            .iter()
            .map(|s| {
                let fp = Secret::new(s.secrets().join("\n")).fingerprint();
                format!("{}: {} (fingerprint {fp})", s.name(), s.target())
            })
            .collect()
    }

    /// The host name alerts report.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The sinks now (a copy: a rotation may replace one while a pass uses the old one).
    pub(crate) fn iter(&self) -> Vec<Arc<dyn Sink>> {
        self.list.read().map(|l| l.clone()).unwrap_or_default()
    }

    pub(crate) fn http(&self) -> &Client {
        &self.http
    }
}

/// Register every form of every secret `sink` holds for redaction before it sends anything, so
/// no text from anywhere in the process (a log line, an error, a stored `last_error`) can
/// carry one, whatever form a server echoes it in.
fn register_secrets(sink: &dyn Sink) {
    for secret in sink.secrets() {
        crate::secrets::register(&secret);
    }
}

/// The sink `name` of `cfg` (`None` when that sink is not configured).
fn build_sink(cfg: &NotifyConfig, name: &str) -> Result<Option<Arc<dyn Sink>>, AlertError> {
    Ok(Some(match name {
        "slack" => match &cfg.slack {
            Some(c) => Arc::new(slack::Slack::new(c)?),
            None => return Ok(None),
        },
        "teams" => match &cfg.teams {
            Some(c) => Arc::new(teams::Teams::new(c)?),
            None => return Ok(None),
        },
        "jira" => match &cfg.jira {
            Some(c) => Arc::new(jira::Jira::new(c)?),
            None => return Ok(None),
        },
        "servicenow" => match &cfg.servicenow {
            Some(c) => Arc::new(servicenow::ServiceNow::new(c)?),
            None => return Ok(None),
        },
        "rapid7" => match &cfg.rapid7 {
            Some(c) => Arc::new(rapid7::Rapid7::new(c)?),
            None => return Ok(None),
        },
        "webhook" => match &cfg.webhook {
            Some(c) => Arc::new(webhook::Webhook::new(c)?),
            None => return Ok(None),
        },
        _ => return Ok(None),
    }))
}

/// The one HTTP client: rustls, connect timeout 10 s, total 30 s, no redirects (credentials
/// and bodies never follow one), `User-Agent: fimd/<version>`. `HTTPS_PROXY` is honoured, but
/// never for loopback or the cloud metadata address.
pub fn http_client() -> Result<Client, AlertError> {
    let mut builder = Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fimd/", env!("CARGO_PKG_VERSION")))
        .no_proxy();
    let proxy = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    if let Some(proxy) = proxy {
        let mut bypass = "localhost,127.0.0.1,::1,169.254.169.254".to_string();
        if let Some(extra) = ["NO_PROXY", "no_proxy"]
            .iter()
            .find_map(|k| std::env::var(k).ok())
        {
            bypass.push(',');
            bypass.push_str(&extra);
        }
        let p = reqwest::Proxy::https(proxy.as_str())
            .map_err(|e| AlertError::Client(format!("HTTPS_PROXY: {}", e.without_url())))?
            .no_proxy(reqwest::NoProxy::from_string(&bypass));
        builder = builder.proxy(p);
    }
    builder
        .build()
        .map_err(|e| AlertError::Client(e.without_url().to_string()))
}
