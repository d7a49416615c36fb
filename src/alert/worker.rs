//! Delivery: one pass over the due outbox rows of every sink ([`deliver_due_at`]), the daemon
//! task that repeats it ([`run_worker`]), the bounded flush for `fimd check` ([`flush`]) and
//! `notify-test` ([`notify_test`]). Owns sending, the backoff decision and what gets logged.
//!
//! Guarantees: one request per sink per pass (and per `batch_window`, via the gate in
//! `outbox.rs`); every log line and `last_error` is redacted against the sink's secrets and
//! built from `reqwest::Error::without_url()`; shutdown cancels only the sleep between passes,
//! never a send or a transaction. A sink answering 401/403 whose secrets are store references
//! gets them fetched again once and, when they changed, the same batch is sent again at once
//! ([`Sinks::rotate`]).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, StatusCode};
use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::content;
use super::outbox::{self, DueRow, Resolution};
use super::sink::{excerpt, http_outcome, redact, Batch, Outcome, Sink};
use super::{AlertError, Sinks};
use crate::config::NotifyConfig;
use crate::event::{Event, EventKind, Source};
use crate::timefmt::{now_ns, rfc3339_ns};

/// How long the worker sleeps when nothing is queued (a wake-up ends it sooner).
const IDLE: Duration = Duration::from_secs(3600);
/// The pause after a pass failed on the database.
const DB_RETRY: Duration = Duration::from_secs(5);
/// The shortest sleep between passes.
const MIN_SLEEP: Duration = Duration::from_millis(10);
/// The most of a remote answer kept for a log line or `last_error`.
const ANSWER_CHARS: usize = 300;
/// How often the daemon's worker sends a heartbeat to the fleet sinks (DESIGN.md: every minute).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);

/// What one or more passes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// HTTP requests sent.
    pub requests: usize,
    /// Outbox rows marked delivered / scheduled for retry / parked / failed (retry_for).
    pub delivered: usize,
    pub retried: usize,
    pub parked: usize,
    pub failed: usize,
}

impl PassReport {
    fn add(&mut self, o: &PassReport) {
        self.requests += o.requests;
        self.delivered += o.delivered;
        self.retried += o.retried;
        self.parked += o.parked;
        self.failed += o.failed;
    }
}

/// The result of [`flush`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub done: PassReport,
    /// Rows of the configured sinks still pending when the flush returned.
    pub still_pending: i64,
}

/// The result of one send, before it is written back.
struct Attempt {
    outcome: Outcome,
    status: Option<u16>,
    /// Redacted, truncated answer body or transport error.
    detail: String,
}

/// One pass as if the wall clock read `now_ns`: expire old rows, then for each sink claim its
/// due rows, send one request and record the result. Tests drive time through `now_ns`.
pub async fn deliver_due_at(
    pool: &SqlitePool,
    sinks: &Sinks,
    cfg: &NotifyConfig,
    now_ns: i64,
) -> Result<PassReport, AlertError> {
    deliver(pool, sinks, cfg, now_ns, None).await
}

async fn deliver(
    pool: &SqlitePool,
    sinks: &Sinks,
    cfg: &NotifyConfig,
    now: i64,
    stop: Option<&CancellationToken>,
) -> Result<PassReport, AlertError> {
    let mut report = PassReport::default();
    for (sink, count, last_error) in outbox::expire(pool, now, cfg.retry_for).await? {
        tracing::warn!(sink = %sink, rows = count, last_error = last_error.as_deref().unwrap_or("-"),
            retry_for = %humantime::format_duration(cfg.retry_for),
            "alerts not delivered within retry_for; marked failed");
        report.failed += usize::try_from(count).unwrap_or(0);
    }
    for sink in sinks.iter() {
        if stop.is_some_and(|s| s.is_cancelled()) {
            break;
        }
        let limits = sink.limits();
        let Some(rows) =
            outbox::claim(pool, sink.name(), now, cfg.batch_window, limits.max_rows).await?
        else {
            continue;
        };
        let batch = build_batch(pool, sinks.host(), &rows, sink.as_ref(), cfg.include_diff).await?;
        let sent_before = rows.iter().any(|r| r.attempts > 0);
        let (attempt, sink) = send_rotating(sinks, sink, &batch, sent_before).await;
        report.requests += 1;
        let resolution = resolve(sink.as_ref(), &attempt, &rows, cfg);
        match &resolution {
            Resolution::Delivered { .. } => report.delivered += rows.len(),
            Resolution::Retry { .. } | Resolution::Pause { .. } => report.retried += rows.len(),
            Resolution::Park { .. } => report.parked += rows.len(),
        }
        outbox::record(pool, sink.name(), &rows, &resolution, now).await?;
    }
    Ok(report)
}

/// The batch for claimed rows: the first `shown` events in full (diffs per the rules), the
/// rest loaded without diffs only to count them and their severity.
async fn build_batch(
    pool: &SqlitePool,
    host: &str,
    rows: &[DueRow],
    sink: &dyn Sink,
    include_diff: bool,
) -> Result<Batch, AlertError> {
    let limits = sink.limits();
    let mut ids: Vec<i64> = rows.iter().map(|r| r.event_id).collect();
    ids.sort_unstable();
    let split = limits.shown.min(ids.len());
    let diff = (include_diff && limits.diff_chars > 0).then_some(limits.diff_chars);
    let shown = crate::store::load_events(pool, &ids[..split], diff).await?;
    let rest = crate::store::load_events(pool, &ids[split..], None).await?;
    let events: Vec<Event> = shown
        .into_iter()
        .map(|e| content::prepare(e, include_diff, limits.diff_chars))
        .collect();
    let high = events
        .iter()
        .chain(rest.iter())
        .filter(|e| content::is_high(e))
        .count();
    Ok(Batch {
        host: host.to_string(),
        events,
        total: rows.len(),
        high,
        test: false,
    })
}

/// Build, send and classify one request. Never returns a secret in `detail`.
///
/// For rows sent before (`sent_before`), a sink with a search first looks for the ticket the
/// earlier request may have created (it can time out after the vendor created it) and adds
/// the batch to that ticket instead of creating a duplicate. When the search itself fails,
/// nothing is created: the rows are retried (or parked) like any failed request.
async fn send(http: &Client, sink: &dyn Sink, batch: &Batch, sent_before: bool) -> Attempt {
    if let Some(direct) = sink.deliver(batch) {
        let (outcome, detail) = direct.await;
        let secrets = sink.secrets();
        return Attempt {
            outcome: redact_outcome(outcome, &secrets),
            status: None,
            detail: redact(&detail, &secrets),
        };
    }
    if let Some(lookup) = sent_before.then(|| sink.lookup(http, batch)).flatten() {
        match search(sink, lookup).await {
            Ok(Some(existing)) => {
                tracing::info!(sink = sink.name(), ticket = %existing,
                    "found the ticket an earlier attempt created; adding to it");
                let mut attempt = request(sink, sink.update(http, batch, &existing)).await;
                if let Outcome::Delivered { remote_id } = &mut attempt.outcome {
                    remote_id.get_or_insert(existing);
                }
                return attempt;
            }
            Ok(None) => {}
            Err(failed) => return failed,
        }
    }
    request(sink, sink.request(http, batch)).await
}

/// [`send`]; when the sink refuses its credentials (401/403) and they come from a secret
/// store, fetch them again once and, if they changed (a rotated secret), send again with them.
/// Returns the sink used last (the rebuilt one after a rotation).
async fn send_rotating(
    sinks: &Sinks,
    sink: Arc<dyn Sink>,
    batch: &Batch,
    sent_before: bool,
) -> (Attempt, Arc<dyn Sink>) {
    let attempt = send(sinks.http(), sink.as_ref(), batch, sent_before).await;
    if matches!(attempt.status, Some(401 | 403)) {
        if let Some(new) = sinks.rotate(sink.name()).await {
            let again = send(sinks.http(), new.as_ref(), batch, sent_before).await;
            return (again, new);
        }
    }
    (attempt, sink)
}

/// Send one request and classify its answer with the sink's rules.
async fn request(sink: &dyn Sink, request: Result<RequestBuilder, AlertError>) -> Attempt {
    match exchange(sink, request).await {
        Ok(answer) => {
            let outcome = sink.classify(answer.status, &answer.headers, &answer.body);
            answer.attempt(sink, outcome)
        }
        Err(failed) => failed,
    }
}

/// Run a sink's search: the ticket it names, or `None`; a failed search is a failed attempt
/// (its reason says it was the search).
async fn search(
    sink: &dyn Sink,
    lookup: Result<RequestBuilder, AlertError>,
) -> Result<Option<String>, Attempt> {
    match exchange(sink, lookup).await {
        Ok(answer) => match http_outcome(answer.status, &answer.headers) {
            Outcome::Delivered { .. } => Ok(sink.found(&answer.body)),
            outcome => Err(answer.attempt(sink, during_search(outcome))),
        },
        Err(failed) => Err(Attempt {
            outcome: during_search(failed.outcome),
            ..failed
        }),
    }
}

/// A response: status, headers and the body (capped).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    /// The attempt this answer makes, with `outcome`; the body excerpt redacted.
    fn attempt(&self, sink: &dyn Sink, outcome: Outcome) -> Attempt {
        let secrets = sink.secrets();
        Attempt {
            outcome: redact_outcome(outcome, &secrets),
            status: Some(self.status.as_u16()),
            detail: redact(&excerpt(&self.body, ANSWER_CHARS), &secrets),
        }
    }
}

/// `outcome` with its reason redacted: a reason can quote the answer (a redirect's Location).
fn redact_outcome(outcome: Outcome, secrets: &[String]) -> Outcome {
    match outcome {
        Outcome::Retry { after, reason } => Outcome::Retry {
            after,
            reason: Cow::Owned(redact(&reason, secrets)),
        },
        Outcome::Park { reason } => Outcome::Park {
            reason: Cow::Owned(redact(&reason, secrets)),
        },
        other => other,
    }
}

/// Send one request: its answer, or the failed attempt (not built, or no answer).
async fn exchange(
    sink: &dyn Sink,
    request: Result<RequestBuilder, AlertError>,
) -> Result<Answer, Attempt> {
    let secrets = sink.secrets();
    let request = request.map_err(|e| Attempt {
        outcome: Outcome::Park {
            reason: "request could not be built".into(),
        },
        status: None,
        detail: redact(&e.to_string(), &secrets),
    })?;
    let response = request.send().await.map_err(|e| Attempt {
        outcome: Outcome::Retry {
            after: None,
            reason: "request failed".into(),
        },
        status: None,
        detail: redact(&error_chain(e.without_url()), &secrets),
    })?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_capped(response, 64 * 1024).await;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A failed search's outcome, its reason saying so.
fn during_search(outcome: Outcome) -> Outcome {
    let prefix = |r: Cow<'static, str>| Cow::Owned(format!("search for an earlier ticket: {r}"));
    match outcome {
        Outcome::Retry { after, reason } => Outcome::Retry {
            after,
            reason: prefix(reason),
        },
        Outcome::Park { reason } => Outcome::Park {
            reason: prefix(reason),
        },
        other => other,
    }
}

/// The response body, at most `cap` bytes (a hostile or broken server cannot exhaust memory).
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(cap - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// `reqwest::Error` and its sources on one line (the URL already removed by the caller).
fn error_chain(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Turn an attempt into what the outbox records, logging once per request.
fn resolve(sink: &dyn Sink, a: &Attempt, rows: &[DueRow], cfg: &NotifyConfig) -> Resolution {
    let name = sink.name();
    let status = a.status.map_or_else(|| "-".to_string(), |s| s.to_string());
    let with_detail = |head: String| match a.detail.is_empty() {
        true => head,
        false => format!("{head}: {}", a.detail),
    };
    match &a.outcome {
        Outcome::Delivered { remote_id } => {
            tracing::info!(sink = name, status = %status, rows = rows.len(),
                remote_id = remote_id.as_deref().unwrap_or("-"), "alert delivered");
            Resolution::Delivered {
                remote_id: remote_id.clone(),
            }
        }
        Outcome::Retry { after, reason } => {
            let attempt = rows
                .iter()
                .map(|r| r.attempts)
                .max()
                .unwrap_or(0)
                .saturating_add(1);
            let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
            let delay = after.unwrap_or_else(|| {
                outbox::next_delay(
                    attempt,
                    cfg.backoff_initial,
                    cfg.backoff_max,
                    outbox::random_fraction(),
                )
            });
            let error = with_detail(reason.to_string());
            tracing::warn!(sink = name, status = %status, error = %error, attempt,
                retry_in = %crate::timefmt::human_secs(delay), "alert delivery failed; will retry");
            Resolution::Retry { delay, error }
        }
        Outcome::PauseSink { for_ } => {
            tracing::warn!(sink = name, status = %status, pause = %crate::timefmt::human_secs(*for_),
                "sink throttled us; pausing it");
            Resolution::Pause {
                for_: *for_,
                error: with_detail(format!("HTTP {status} (throttled)")),
            }
        }
        Outcome::Park { reason } => {
            tracing::error!(sink = name, status = %status, reason = %reason, answer = %a.detail,
                rows = rows.len(),
                "alert rejected by the sink; rows parked and not retried (fix the sink's configuration)");
            Resolution::Park {
                error: with_detail(reason.to_string()),
            }
        }
    }
}

/// Send one heartbeat (host, instance, version, last event id, last full scan, baseline size,
/// outbox backlog, chain head) to every fleet sink; returns how many accepted it. A sink that
/// fails is logged (redacted) and tried again at the next heartbeat: heartbeats are state,
/// not history, so they are not queued.
pub async fn send_heartbeats(pool: &SqlitePool, sinks: &Sinks) -> Result<usize, AlertError> {
    let hb = crate::fleet::Heartbeat::collect(pool, sinks.host()).await?;
    let mut sent = 0;
    for sink in sinks.iter() {
        let Some(direct) = sink.heartbeat(&hb) else {
            continue;
        };
        match direct.await {
            (Outcome::Delivered { .. }, _) => sent += 1,
            (_, detail) => {
                tracing::warn!(sink = sink.name(), error = %redact(&detail, &sink.secrets()),
                    "fleet heartbeat not delivered; next one in a minute")
            }
        }
    }
    Ok(sent)
}

/// Deliver what is due now and what falls due within `max_wait` (retries), then return;
/// anything left stays queued for the daemon or the next run. No batch window: a one-shot
/// `check` is one batch, sent at once (a pause a sink asked for is still honoured).
pub async fn flush(
    pool: &SqlitePool,
    sinks: &Sinks,
    cfg: &NotifyConfig,
    max_wait: Duration,
) -> Result<FlushReport, AlertError> {
    let deadline = tokio::time::Instant::now() + max_wait;
    // A one-shot flush is one batch: no batch window (the daemon keeps its own).
    let cfg = &NotifyConfig {
        batch_window: Duration::ZERO,
        ..cfg.clone()
    };
    let names = sinks.names();
    let mut done = PassReport::default();
    loop {
        let pass = deliver(pool, sinks, cfg, now_ns(), None).await?;
        done.add(&pass);
        let Some(next) = outbox::next_due(pool, &names, cfg.retry_for).await? else {
            break;
        };
        let wait = Duration::from_nanos(u64::try_from(next.saturating_sub(now_ns())).unwrap_or(0));
        let idle = pass == PassReport::default() && wait.is_zero();
        if idle
            || outbox::pending(pool, &names).await? == 0
            || tokio::time::Instant::now() + wait > deadline
        {
            break;
        }
        tokio::time::sleep(wait).await;
    }
    let still_pending = outbox::pending(pool, &names).await?;
    // Hosts that run `fimd check` from a timer (no daemon) report a heartbeat too, or the
    // fleet would list them as silent.
    if sinks
        .iter()
        .iter()
        .any(|s| crate::fleet::is_fleet_sink(s.name()))
    {
        if let Err(e) = send_heartbeats(pool, sinks).await {
            tracing::warn!(error = %e, "cannot collect the fleet heartbeat");
        }
    }
    Ok(FlushReport {
        done,
        still_pending,
    })
}

/// The daemon's delivery task. Runs a pass, then sleeps until the next row is due, `wake` is
/// notified (the pipeline committed new rows) or `shutdown` is cancelled. Shutdown interrupts
/// only that sleep (and stops between sinks): a request or transaction in progress completes.
pub async fn run_worker(
    pool: SqlitePool,
    sinks: Sinks,
    cfg: NotifyConfig,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let names = sinks.names();
    tracing::info!(sinks = ?names, "alert worker started");
    // This worker runs the configuration just loaded (a start or a reload): what was parked
    // for a bad URL or credential gets another chance with it.
    if let Err(e) = requeue_parked(&pool, &names).await {
        tracing::error!(error = %e, "cannot requeue parked alerts");
    }
    let fleet = sinks
        .iter()
        .iter()
        .any(|s| crate::fleet::is_fleet_sink(s.name()));
    let mut next_heartbeat = tokio::time::Instant::now();
    while !shutdown.is_cancelled() {
        if fleet && tokio::time::Instant::now() >= next_heartbeat {
            if let Err(e) = send_heartbeats(&pool, &sinks).await {
                tracing::warn!(error = %e, "cannot collect the fleet heartbeat");
            }
            next_heartbeat = tokio::time::Instant::now() + HEARTBEAT_EVERY;
        }
        let wait = match deliver(&pool, &sinks, &cfg, now_ns(), Some(&shutdown)).await {
            Ok(_) => match outbox::next_due(&pool, &names, cfg.retry_for).await {
                Ok(Some(at)) => {
                    Duration::from_nanos(u64::try_from(at.saturating_sub(now_ns())).unwrap_or(0))
                        .min(IDLE)
                }
                Ok(None) => IDLE,
                Err(e) => {
                    tracing::error!(error = %e, "outbox query failed; retrying shortly");
                    DB_RETRY
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "alert delivery pass failed; retrying shortly");
                DB_RETRY
            }
        };
        let wait = match fleet {
            true => wait.min(next_heartbeat.saturating_duration_since(tokio::time::Instant::now())),
            false => wait,
        };
        // Never spin: even "due now" waits a moment (a wake-up still ends it at once).
        let wait = wait.max(MIN_SLEEP);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("alert worker stopped");
}

/// Put the parked rows of `names` back in the queue, due now, one log line per sink saying how
/// many and why they were parked. Returns what was parked (and is now pending) per sink.
pub async fn requeue_parked(
    pool: &SqlitePool,
    names: &[&str],
) -> Result<Vec<outbox::Parked>, AlertError> {
    let mut requeued = Vec::new();
    for parked in outbox::parked(pool).await? {
        if !names.contains(&parked.sink.as_str()) {
            continue;
        }
        let rows = outbox::requeue_parked(pool, &parked.sink, now_ns()).await?;
        if rows == 0 {
            continue;
        }
        tracing::info!(sink = %parked.sink, rows,
            parked_because = parked.last_error.as_deref().unwrap_or("-"),
            "parked alerts requeued; sending them again with the current configuration");
        requeued.push(outbox::Parked {
            rows: i64::try_from(rows).unwrap_or(i64::MAX),
            ..parked
        });
    }
    Ok(requeued)
}

/// Send one test alert to every sink through the same request code; never touches the outbox.
/// Returns, per sink, `Ok(summary)` or `Err(status and the sink's answer)`, redacted.
pub async fn notify_test(sinks: &Sinks) -> Vec<(String, Result<String, String>)> {
    let now = now_ns();
    let event = Event {
        time: rfc3339_ns(now),
        host: sinks.host().to_string(),
        changed: vec!["sha256".to_string()],
        reason: "a test alert sent by fimd notify-test".to_string(),
        ..Event::new(Source::Check, EventKind::Modified, "/etc/fimd/notify-test")
    };
    let batch = Batch {
        host: sinks.host().to_string(),
        events: vec![event],
        total: 1,
        high: 0,
        test: true,
    };
    let mut out = Vec::new();
    for sink in sinks.iter() {
        let (a, sink) = send_rotating(sinks, sink, &batch, false).await;
        let status = a.status.map(|s| format!("HTTP {s}"));
        let result = match &a.outcome {
            Outcome::Delivered { remote_id } => Ok(match remote_id {
                Some(id) => format!("{} (created {id})", status.unwrap_or_default()),
                None => status.unwrap_or_default(),
            }),
            Outcome::Retry { reason, .. } | Outcome::Park { reason } => {
                Err(failure_text(a.status, reason, &a.detail))
            }
            Outcome::PauseSink { .. } => Err(failure_text(a.status, "throttled", &a.detail)),
        };
        out.push((sink.name().to_string(), result));
    }
    out
}

/// One line for a failed test alert: the status, the reason when it says more than the status
/// ("sink answered 302 to https://…: fix the URL"), and the sink's (redacted) answer.
fn failure_text(status: Option<u16>, reason: &str, detail: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(s) = status {
        parts.push(format!("HTTP {s}"));
    }
    if status.is_none_or(|s| reason != format!("HTTP {s}")) {
        parts.push(reason.to_string());
    }
    if !detail.is_empty() {
        parts.push(detail.to_string());
    }
    parts.join(": ")
}
