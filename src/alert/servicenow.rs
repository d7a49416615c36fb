//! ServiceNow Table API (notifications.md §1a): `POST {base}/api/now/table/{table}` with Basic
//! `user:password`; `instance = "NAME"` means `https://NAME.service-now.com`, `url` overrides
//! it (on-prem, proxy, test server). One record per batch; success is 201 with
//! `result.number`, stored as the outbox `remote_id`.
//!
//! `short_description` ≤ 160 chars, `description` ≤ 4,000. Never shows the password.
//!
//! Search before create: when a batch's rows were sent before, the worker first looks for an
//! active record with the batch's `correlation_id` (`GET {table}?sysparm_query=...`) and, if
//! one exists, adds the batch as a work note (`PATCH {table}/{sys_id}`) instead of creating a
//! duplicate.

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde_json::{json, Value};

use super::content::{self, cut};
use super::sink::{check_url, http_outcome, json_body, origin, Batch, Limits, Outcome, Sink};
use super::AlertError;
use crate::config::notify::ServiceNowConfig;
use crate::config::Secret;

/// Asked of every create and update: the record's sys_id and number, no reference links.
const ANSWER_FIELDS: &[(&str, &str)] = &[
    ("sysparm_fields", "sys_id,number"),
    ("sysparm_exclude_reference_link", "true"),
];

/// A configured ServiceNow table.
pub struct ServiceNow {
    /// `{base}/api/now/table/{table}`: created records are POSTed here, found ones PATCHed
    /// below it.
    table: Url,
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
        let table = format!(
            "{}/api/now/table/{table}",
            base.as_str().trim_end_matches('/')
        );
        Ok(ServiceNow {
            table: check_url("servicenow", "url", &table)?,
            user: cfg.user.clone(),
            password: cfg.password.clone(),
        })
    }
}

impl ServiceNow {
    fn authed(&self, req: RequestBuilder) -> RequestBuilder {
        req.header(ACCEPT, "application/json")
            .basic_auth(&self.user, Some(self.password.expose()))
    }

    /// A create or update: JSON body, the record's number and sys_id in the answer.
    fn call(&self, req: RequestBuilder, body: Vec<u8>) -> RequestBuilder {
        self.authed(req)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    }
}

/// `url` with these query parameters (encoded).
fn with_query(mut url: Url, pairs: &[(&str, &str)]) -> Url {
    url.query_pairs_mut().extend_pairs(pairs);
    url
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
        let body = json_body("servicenow", &render(batch))?;
        Ok(self.call(
            http.post(with_query(self.table.clone(), ANSWER_FIELDS)),
            body,
        ))
    }

    fn lookup(&self, http: &Client, batch: &Batch) -> Option<Result<RequestBuilder, AlertError>> {
        if batch.test {
            return None;
        }
        let query = format!("correlation_id={}^active=true", correlation_id(batch));
        let url = with_query(
            self.table.clone(),
            &[
                ("sysparm_query", query.as_str()),
                ("sysparm_fields", "sys_id,number"),
                ("sysparm_limit", "1"),
            ],
        );
        Some(Ok(self.authed(http.get(url))))
    }

    fn found(&self, body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let sys_id = v["result"][0]["sys_id"].as_str()?;
        // A sys_id is 32 hex digits; anything else is not put in a URL.
        (sys_id.len() == 32 && sys_id.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| sys_id.to_string())
    }

    fn update(
        &self,
        http: &Client,
        batch: &Batch,
        existing: &str,
    ) -> Result<RequestBuilder, AlertError> {
        let mut url = self.table.clone();
        url.path_segments_mut()
            .map_err(|()| AlertError::Build {
                sink: "servicenow",
                message: "the url cannot have a path".to_string(),
            })?
            .push(existing);
        let body = json_body(
            "servicenow",
            &json!({"work_notes": cut(&description(batch), 4_000, "\n… (truncated)")}),
        )?;
        Ok(self.call(http.patch(with_query(url, ANSWER_FIELDS)), body))
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
        origin(&self.table)
    }

    fn secrets(&self) -> Vec<String> {
        // The Basic header value too: its forms are the base64 pair a server may echo.
        vec![
            self.password.expose().to_string(),
            crate::secrets::forms::basic_header(&self.user, self.password.expose()),
        ]
    }
}

fn description(batch: &Batch) -> String {
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
    description
}

/// One path's changes share a key (an open record collects them); a digest is keyed by its
/// oldest event.
fn correlation_id(batch: &Batch) -> String {
    match (batch.total, batch.events.first()) {
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
    }
}

fn render(batch: &Batch) -> Value {
    let (urgency, impact) = if batch.high > 0 {
        ("1", "2")
    } else {
        ("3", "3")
    };
    json!({
        "short_description": cut(&content::title(batch), 160, "…"),
        "description": cut(&description(batch), 4_000, "\n… (truncated)"),
        "urgency": urgency, "impact": impact,
        "correlation_id": correlation_id(batch), "correlation_display": "fimd",
    })
}
