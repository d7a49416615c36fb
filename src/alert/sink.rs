//! The [`Sink`] trait, the [`Batch`] a sink renders, the [`Outcome`] of one request, and the
//! shared pieces every sink uses: the default HTTP status classifier, `Retry-After` parsing,
//! base-URL validation (https, or http on loopback only) and secret redaction.
//!
//! Sinks are pure: they turn a batch into a request and a response into an outcome. They never
//! send, sleep, retry or touch the database (the worker and `outbox.rs` own that), and they
//! never put a secret in an error string or a `Debug` output.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, StatusCode, Url};

use super::AlertError;
use crate::event::Event;

/// The longest `Retry-After` fimd honours; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// The pause after a 429 that carries no usable `Retry-After`.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(60);

/// One request's worth of events for one sink.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The host name shown in the alert (`[daemon] host`).
    pub host: String,
    /// The events shown in full, oldest first. Diffs are already cut to the sink's limit and
    /// removed for sensitive events or when `include_diff` is off.
    pub events: Vec<Event>,
    /// How many events this request covers (`events.len()` plus the ones only counted).
    pub total: usize,
    /// How many of `total` are high severity.
    pub high: usize,
    /// A `notify-test` alert, not a real change.
    pub test: bool,
}

impl Batch {
    /// Events covered but not shown in full ("and 9,990 more changes").
    pub fn omitted(&self) -> usize {
        self.total.saturating_sub(self.events.len())
    }
}

/// How much of a batch one sink takes per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Outbox rows covered by one request (digest sinks count most of them).
    pub max_rows: usize,
    /// Events shown in full; the rest are counted.
    pub shown: usize,
    /// Diff characters per shown event (0: never send diffs).
    pub diff_chars: usize,
}

/// What one response means for the rows it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; `remote_id` is the ticket number or issue key when the vendor returns one.
    Delivered { remote_id: Option<String> },
    /// A transient failure: back off (or wait `after` when the server said so) and retry.
    Retry {
        after: Option<Duration>,
        reason: Cow<'static, str>,
    },
    /// Throttled: no request to this sink for `for_`, then retry the same rows.
    PauseSink { for_: Duration },
    /// Permanent (auth, missing target, rejected payload): park the rows, never retry blindly.
    Park { reason: Cow<'static, str> },
}

/// One alert destination. Adding a sink is one file implementing this plus one line in
/// `Sinks::from_config`.
pub trait Sink: Send + Sync {
    /// Short fixed name: the outbox `sink` column and the `sink` log field.
    fn name(&self) -> &'static str;

    /// How many rows one request covers and how they are shown.
    fn limits(&self) -> Limits;

    /// The request for `batch`. Must not send it.
    fn request(&self, http: &Client, batch: &Batch) -> Result<RequestBuilder, AlertError>;

    /// What the answer means. The default handles the shared status rules.
    fn classify(&self, status: StatusCode, headers: &HeaderMap, _body: &[u8]) -> Outcome {
        http_outcome(status, headers)
    }

    /// Search before create (ServiceNow, Jira; notifications.md §0): when the rows were sent
    /// before, that request may have created the ticket although no answer came back. This is
    /// the search for it; `None` (the default) when the sink has no such search.
    fn lookup(&self, _http: &Client, _batch: &Batch) -> Option<Result<RequestBuilder, AlertError>> {
        None
    }

    /// The ticket a successful [`Sink::lookup`] answer names (an id safe to put in a URL).
    fn found(&self, _body: &[u8]) -> Option<String> {
        None
    }

    /// The request adding `batch` to the `existing` ticket (a comment, a work note) instead of
    /// creating another one.
    fn update(
        &self,
        _http: &Client,
        _batch: &Batch,
        _existing: &str,
    ) -> Result<RequestBuilder, AlertError> {
        Err(AlertError::Build {
            sink: self.name(),
            message: "this sink cannot update an existing ticket".to_string(),
        })
    }

    /// `scheme://host[:port]` of the target: safe to print.
    fn target(&self) -> String;

    /// Every secret this sink holds (URLs with a credential path, tokens, passwords), so any
    /// text derived from a response or an error can be scrubbed before it is logged or stored.
    fn secrets(&self) -> Vec<String>;

    /// A sink that does not speak HTTP (PostgreSQL, NATS) delivers a batch itself: `Some`
    /// future resolving to the outcome and a detail line (redacted by the worker). HTTP
    /// sinks return `None` (the default) and the worker sends [`Sink::request`].
    fn deliver<'a>(&'a self, _batch: &'a Batch) -> Option<Direct<'a>> {
        None
    }

    /// Fleet sinks send the daemon's heartbeat; `None` (the default) for the others.
    fn heartbeat<'a>(&'a self, _hb: &'a crate::fleet::Heartbeat) -> Option<Direct<'a>> {
        None
    }
}

/// The result of a non-HTTP delivery: what it means for the rows, and a detail line.
pub type Direct<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = (Outcome, String)> + Send + 'a>>;

/// A request body as JSON bytes; a failure names the sink.
pub fn json_body<T: serde::Serialize + ?Sized>(
    sink: &'static str,
    body: &T,
) -> Result<Vec<u8>, AlertError> {
    serde_json::to_vec(body).map_err(|e| AlertError::Build {
        sink,
        message: e.to_string(),
    })
}

/// The status rules shared by every sink (notifications.md §0).
pub fn http_outcome(status: StatusCode, headers: &HeaderMap) -> Outcome {
    let code = status.as_u16();
    let retry_after = retry_after(headers, SystemTime::now());
    match code {
        200..=299 => Outcome::Delivered { remote_id: None },
        429 => Outcome::PauseSink {
            for_: retry_after.unwrap_or(DEFAULT_THROTTLE_PAUSE),
        },
        503 if retry_after.is_some() => Outcome::PauseSink {
            for_: retry_after.unwrap_or(DEFAULT_THROTTLE_PAUSE),
        },
        408 | 500 | 502..=504 | 505..=599 => Outcome::Retry {
            after: retry_after,
            reason: Cow::Owned(format!("HTTP {code}")),
        },
        // Redirects are never followed (credentials and bodies would follow them): say where
        // the sink points, so the operator can fix the URL. The worker redacts the reason.
        300..=399 => Outcome::Park {
            reason: Cow::Owned(match headers.get(LOCATION) {
                Some(to) => format!(
                    "sink answered {code} to {}: fix the URL",
                    excerpt(to.as_bytes(), 200)
                ),
                None => {
                    format!("sink answered {code} (a redirect without a Location): fix the URL")
                }
            }),
        },
        _ => Outcome::Park {
            reason: Cow::Owned(format!("HTTP {code}")),
        },
    }
}

/// `Retry-After` as seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = parse_http_date(value)?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires senders to use.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut parts = s.split_whitespace();
    let _weekday = parts.next()?;
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant), the inverse of timefmt's conversion.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Parse and check a sink's base URL: `https`, or `http` only for a loopback host.
/// The error names the sink and the key but never echoes the URL (it may be the credential).
pub fn check_url(sink: &'static str, key: &str, text: &str) -> Result<Url, AlertError> {
    let bad = |message: String| AlertError::Config { sink, message };
    if text.trim().is_empty() {
        return Err(bad(format!("{key} is empty")));
    }
    let url = Url::parse(text.trim()).map_err(|e| bad(format!("{key} is not a URL ({e})")))?;
    if url.host().is_none() {
        return Err(bad(format!("{key} has no host")));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(bad(format!(
            "{key} must use https (plain http is accepted only for 127.0.0.0/8, ::1 and localhost; got {})",
            origin(&url)
        ))),
        other => Err(bad(format!("{key} has unsupported scheme {other:?}"))),
    }
}

/// True for 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// `scheme://host[:port]`: the only part of a URL fimd ever prints.
/// A webhook whose URL is the credential (Slack, Teams): the URL, kept secret, and one JSON
/// POST to it. Only its scheme and host are ever shown.
pub struct SecretHook {
    url: Url,
    secret: crate::config::Secret,
}

impl SecretHook {
    pub fn new(
        sink: &'static str,
        key: &str,
        url: &crate::config::Secret,
    ) -> Result<SecretHook, AlertError> {
        Ok(SecretHook {
            url: check_url(sink, key, url.expose())?,
            secret: url.clone(),
        })
    }

    /// `POST` of a JSON body.
    pub fn post_json(&self, http: &Client, body: Vec<u8>) -> RequestBuilder {
        http.post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// For [`Sink::target`].
    pub fn target(&self) -> String {
        origin(&self.url)
    }

    /// For [`Sink::secrets`].
    pub fn secrets(&self) -> Vec<String> {
        vec![self.secret.expose().to_string()]
    }
}

pub fn origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Replace every secret in `text`, in each form a server could echo it
/// ([`crate::secrets::forms::forms`]: the bare token of a header value, a Basic pair and its
/// base64, a URL's userinfo, path, query and token-like parts), and every value registered
/// with [`crate::secrets::register`] (values and tokens fetched from stores, sink secrets).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut needles: Vec<String> = secrets
        .iter()
        .flat_map(|s| crate::secrets::forms::forms(s))
        .chain(crate::secrets::registered())
        .filter(|n| n.len() >= crate::secrets::forms::MIN_FORM)
        .collect();
    // Longest first, so a URL is replaced whole before its path.
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    needles.dedup();
    let mut out = text.to_string();
    for n in &needles {
        out = out.replace(n.as_str(), "**REDACTED**");
    }
    out
}

/// At most `max` characters of a remote answer, on one line, for a log line or `last_error`.
pub fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    match trimmed.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None => trimmed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(r) = retry {
            h.insert(RETRY_AFTER, HeaderValue::from_str(r).unwrap());
        }
        h
    }

    #[test]
    fn classify_table() {
        let s = |c: u16| StatusCode::from_u16(c).unwrap();
        let none = headers(None);
        assert!(matches!(
            http_outcome(s(200), &none),
            Outcome::Delivered { .. }
        ));
        assert!(matches!(
            http_outcome(s(202), &none),
            Outcome::Delivered { .. }
        ));
        assert_eq!(
            http_outcome(s(429), &headers(Some("7"))),
            Outcome::PauseSink {
                for_: Duration::from_secs(7)
            }
        );
        assert_eq!(
            http_outcome(s(429), &none),
            Outcome::PauseSink {
                for_: DEFAULT_THROTTLE_PAUSE
            }
        );
        assert_eq!(
            http_outcome(s(503), &headers(Some("99999"))),
            Outcome::PauseSink {
                for_: MAX_RETRY_AFTER
            }
        );
        for c in [408, 500, 502, 503, 504] {
            assert!(
                matches!(http_outcome(s(c), &none), Outcome::Retry { .. }),
                "{c}"
            );
        }
        for c in [301, 400, 401, 403, 404, 410, 413, 422] {
            assert!(
                matches!(http_outcome(s(c), &none), Outcome::Park { .. }),
                "{c}"
            );
        }
    }

    #[test]
    fn retry_after_http_date() {
        let now = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            784_111_777
        );
        let h = headers(Some("Sun, 06 Nov 1994 08:50:07 GMT"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        let past = headers(Some("Sun, 06 Nov 1994 08:00:00 GMT"));
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(Some("soon")), now), None);
    }

    #[test]
    fn urls_need_https_except_loopback() {
        for ok in [
            "https://hooks.slack.com/services/x",
            "http://127.0.0.1:8080/x",
            "http://127.9.9.9/x",
            "http://[::1]:9/x",
            "http://localhost/x",
        ] {
            assert!(check_url("slack", "webhook_url", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/x",
            "http://example.com/x",
            "ftp://x/",
            "nope",
            "",
        ] {
            assert!(check_url("slack", "webhook_url", bad).is_err(), "{bad}");
        }
        let e = check_url("slack", "webhook_url", "http://example.com/SECRET-PATH")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("slack") && e.contains("http://example.com"),
            "{e}"
        );
        assert!(!e.contains("SECRET-PATH"), "{e}");
    }

    #[test]
    fn redact_removes_url_parts() {
        let secrets = vec!["https://h.example/services/T1/B2/SEKRET?sig=SIGVALUE".to_string()];
        let out = redact("bad path /services/T1/B2/SEKRET and sig=SIGVALUE", &secrets);
        assert!(
            !out.contains("SEKRET") && !out.contains("SIGVALUE"),
            "{out}"
        );
        assert_eq!(excerpt(b"a\nb", 10), "a b");
        assert_eq!(excerpt("ééé".as_bytes(), 2), "éé…");
    }
}
