//! Rapid7 InsightConnect API trigger (notifications.md §2):
//! `POST https://{region}.api.insight.rapid7.com/connect/v1/workflows/{id}/events/execute`
//! (or the configured `url`) with `X-Api-Key`. The body is a flat JSON object whose keys a
//! workflow's trigger input can name, plus an `events` array (at most 20 shown, no diffs:
//! Rapid7 documents no size limit, so bodies stay a few KB).
//!
//! The URL's workflow UUID and the API key are both credentials: neither is ever shown.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, RequestBuilder, Url};
use serde_json::{json, Value};

use super::content::{self, severity};
use super::sink::{check_url, json_body, origin, Batch, Limits, Sink};
use super::AlertError;
use crate::config::notify::Rapid7Config;
use crate::config::Secret;

const MAX_BODY: usize = 16_000;
const REGIONS: &[&str] = &["us", "us2", "us3", "eu", "ca", "ap", "au"];

/// A configured InsightConnect workflow trigger.
pub struct Rapid7 {
    url: Url,
    api_key: Secret,
}

impl Rapid7 {
    pub fn new(cfg: &Rapid7Config) -> Result<Rapid7, AlertError> {
        let bad = |message: &str| AlertError::Config {
            sink: "rapid7",
            message: message.to_string(),
        };
        if cfg.api_key.is_empty() {
            return Err(bad("api_key is empty"));
        }
        let url = if !cfg.url.expose().trim().is_empty() {
            check_url("rapid7", "url", cfg.url.expose())?
        } else {
            let region = if cfg.region.is_empty() {
                "us"
            } else {
                cfg.region.as_str()
            };
            if !REGIONS.contains(&region) {
                return Err(bad("region must be one of us, us2, us3, eu, ca, ap, au"));
            }
            let id = cfg.workflow_id.expose().trim();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(bad("workflow_id must be the workflow's UUID (or set url)"));
            }
            check_url(
                "rapid7",
                "url",
                &format!("https://{region}.api.insight.rapid7.com/connect/v1/workflows/{id}/events/execute"),
            )?
        };
        Ok(Rapid7 {
            url,
            api_key: cfg.api_key.clone(),
        })
    }
}

impl Sink for Rapid7 {
    fn name(&self) -> &'static str {
        "rapid7"
    }

    fn limits(&self) -> Limits {
        Limits {
            max_rows: 10_000,
            shown: 20,
            diff_chars: 0,
        }
    }

    fn request(&self, http: &Client, batch: &Batch) -> Result<RequestBuilder, AlertError> {
        let body = content::fit(batch, MAX_BODY, render)?;
        let mut key =
            reqwest::header::HeaderValue::from_str(self.api_key.expose()).map_err(|_| {
                AlertError::Config {
                    sink: "rapid7",
                    message: "api_key contains characters not allowed in an HTTP header".into(),
                }
            })?;
        key.set_sensitive(true);
        Ok(http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("X-Api-Key", key)
            .body(body))
    }

    fn target(&self) -> String {
        origin(&self.url)
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.url.to_string(), self.api_key.expose().to_string()]
    }
}

fn render(batch: &Batch) -> Result<Vec<u8>, AlertError> {
    let events: Vec<Value> = batch
        .events
        .iter()
        .map(|e| {
            let sha =
                |s: &Option<crate::event::StateJson>| s.as_ref().and_then(|s| s.sha256.clone());
            json!({"id": e.id, "path": content::shown_path(e), "kind": e.event.as_str(),
                "severity": severity(e).as_str(), "changed": e.changed,
                "old_sha256": sha(&e.old), "new_sha256": sha(&e.new),
                "detected_at": e.time, "source": e.source.as_str(), "sensitive": e.sensitive})
        })
        .collect();
    let top = batch
        .events
        .iter()
        .map(severity)
        .max()
        .unwrap_or(crate::event::Severity::Medium);
    let first = batch.events.first();
    let body = json!({
        "source": "fimd", "fimd_version": env!("CARGO_PKG_VERSION"), "test": batch.test,
        "host": batch.host, "summary": content::title(batch), "severity": top.as_str(),
        "total": batch.total, "high": batch.high, "omitted": batch.omitted(),
        "path": first.map(content::shown_path), "kind": first.map(|e| e.event.as_str()),
        "events": events,
    });
    json_body("rapid7", &body)
}
