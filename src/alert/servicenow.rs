//! ServiceNow Table API (notifications.md §1a): `POST {base}/api/now/table/{table}` with Basic
//! `user:password`; `instance = "NAME"` means `https://NAME.service-now.com`, `url` overrides
//! it (on-prem, proxy, test server). One record per batch; success is 201 with
//! `result.number`, stored as the outbox `remote_id`.
//!
//! `short_description` ≤ 160 chars, `description` ≤ 4,000. Never shows the password. Does not
//! yet search by `correlation_id` before create (a timed-out POST may duplicate a record).

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde_json::{json, Value};

use super::content::{self, cut};
use super::sink::{check_url, http_outcome, origin, Batch, Limits, Outcome, Sink};
use super::AlertError;
use crate::config::notify::ServiceNowConfig;
use crate::config::Secret;

/// A configured ServiceNow table.
pub struct ServiceNow {
    endpoint: Url,
    user: String,
    password: Secret,
}

impl ServiceNow {
    pub fn new(cfg: &ServiceNowConfig) -> Result<ServiceNow, AlertError> {
        let bad = |message: &str| AlertError::Config {
            sink: "servicenow",
            message: message.to_string(),
        };
        let base = if !cfg.url.trim().is_empty() {
            check_url("servicenow", "url", &cfg.url)?
        } else {
            let name = cfg.instance.trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(bad(
                    "instance must be the instance name (NAME of NAME.service-now.com), or set url",
                ));
            }
            check_url(
                "servicenow",
                "instance",
                &format!("https://{name}.service-now.com"),
            )?
        };
        let table = match cfg.table.trim() {
            "" => "incident",
            t => t,
        };
        if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("table must be a table name such as incident"));
        }
        if cfg.user.is_empty() || cfg.password.is_empty() {
            return Err(bad("user and password must both be set"));
        }
        let endpoint = format!(
            "{}/api/now/table/{table}?sysparm_fields=sys_id,number&sysparm_exclude_reference_link=true",
            base.as_str().trim_end_matches('/')
        );
        Ok(ServiceNow {
            endpoint: check_url("servicenow", "url", &endpoint)?,
            user: cfg.user.clone(),
            password: cfg.password.clone(),
        })
    }
}

impl Sink for ServiceNow {
    fn name(&self) -> &'static str {
        "servicenow"
    }

    fn limits(&self) -> Limits {
        Limits {
            max_rows: 10_000,
            shown: 10,
            diff_chars: 300,
        }
    }

    fn request(&self, http: &Client, batch: &Batch) -> Result<RequestBuilder, AlertError> {
        let body = serde_json::to_vec(&render(batch)).map_err(|e| AlertError::Build {
            sink: "servicenow",
            message: e.to_string(),
        })?;
        Ok(http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .basic_auth(&self.user, Some(self.password.expose()))
            .body(body))
    }

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Outcome {
        match http_outcome(status, headers) {
            Outcome::Delivered { .. } => Outcome::Delivered {
                remote_id: serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v["result"]["number"].as_str().map(str::to_string)),
            },
            other => other,
        }
    }

    fn target(&self) -> String {
        origin(&self.endpoint)
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.password.expose().to_string()]
    }
}

fn render(batch: &Batch) -> Value {
    let mut description = format!("Host: {}\n", batch.host);
    for ev in &batch.events {
        description.push('\n');
        description.push_str(&content::plain_text(ev));
        if let Some(diff) = &ev.diff {
            description.push_str(&format!("\nDiff:\n{diff}"));
        }
        description.push('\n');
    }
    if let Some(more) = content::omitted_line(batch) {
        description.push_str(&format!("\n{more}\n"));
    }
    let (urgency, impact) = if batch.high > 0 {
        ("1", "2")
    } else {
        ("3", "3")
    };
    let key = match (batch.total, batch.events.first()) {
        (1, Some(ev)) => {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(content::shown_path(ev).as_bytes());
            format!("fimd:{}:{}", batch.host, &hex::encode(digest)[..16])
        }
        (_, first) => format!(
            "fimd:{}:digest:{}",
            batch.host,
            first.and_then(|e| e.id).unwrap_or_default()
        ),
    };
    json!({
        "short_description": cut(&content::title(batch), 160, "…"),
        "description": cut(&description, 4_000, "\n… (truncated)"),
        "urgency": urgency, "impact": impact,
        "correlation_id": key, "correlation_display": "fimd",
    })
}
