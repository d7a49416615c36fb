//! Jira issue creation (notifications.md §3). With a `user`: Jira Cloud, REST v3
//! `POST {url}/rest/api/3/issue`, Basic `user:api_token`, ADF description. With an empty
//! `user`: Data Center, REST v2 `POST {url}/rest/api/2/issue`, `Authorization: Bearer <PAT>`,
//! plain-text description. One issue per batch (a digest); success is 201 with the issue key,
//! stored as the outbox `remote_id`.
//!
//! Summary ≤ 255 chars, description ≤ 30 KB. Never shows the token.
//!
//! Search before create: each issue carries the label `fimd-<batch key>`; when its rows were
//! sent before, the worker first searches for an open issue with that label
//! (`POST /rest/api/3/search/jql`, Data Center `/rest/api/2/search`) and, if one exists,
//! comments on it (`POST .../issue/{key}/comment`) instead of creating a duplicate.

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde_json::{json, Value};

use super::content::{self, cut};
use super::sink::{check_url, http_outcome, json_body, origin, Batch, Limits, Outcome, Sink};
use super::AlertError;
use crate::config::notify::JiraConfig;
use crate::config::Secret;

const MAX_BODY: usize = 30_000;

/// A configured Jira project.
pub struct Jira {
    endpoint: Url,
    /// `{url}/rest/api/{2|3}`, for the search and comments.
    api: String,
    user: String,
    token: Secret,
    project: String,
    issue_type: String,
}

impl Jira {
    pub fn new(cfg: &JiraConfig) -> Result<Jira, AlertError> {
        let bad = |message: &str| AlertError::Config {
            sink: "jira",
            message: message.to_string(),
        };
        let base = check_url("jira", "url", &cfg.url)?;
        if cfg.api_token.is_empty() {
            return Err(bad("api_token is empty"));
        }
        if cfg.project_key.trim().is_empty() {
            return Err(bad("project_key is empty"));
        }
        let version = if cfg.user.is_empty() { 2 } else { 3 };
        let api = format!("{}/rest/api/{version}", base.as_str().trim_end_matches('/'));
        let endpoint = check_url("jira", "url", &format!("{api}/issue"))?;
        let issue_type = match cfg.issue_type.trim() {
            "" => "Task".to_string(),
            t => t.to_string(),
        };
        Ok(Jira {
            endpoint,
            api,
            user: cfg.user.clone(),
            token: cfg.api_token.clone(),
            project: cfg.project_key.trim().to_string(),
            issue_type,
        })
    }

    fn cloud(&self) -> bool {
        !self.user.is_empty()
    }

    /// The description or comment body: ADF (Cloud) or plain text (Data Center).
    fn text(&self, batch: &Batch) -> Value {
        if self.cloud() {
            adf(batch)
        } else {
            Value::String(plain(batch))
        }
    }

    fn render(&self, batch: &Batch) -> Result<Vec<u8>, AlertError> {
        let description = self.text(batch);
        let mut labels = vec!["fimd".to_string()];
        labels.push(
            if batch.high > 0 {
                "fimd-high"
            } else {
                "fimd-medium"
            }
            .to_string(),
        );
        if batch.test {
            labels.push("fimd-test".to_string());
        }
        labels.extend(content::batch_key(batch).map(|k| format!("fimd-{k}")));
        let body = json!({"fields": {
            "project": {"key": self.project},
            "issuetype": {"name": self.issue_type},
            "summary": cut(&content::title(batch), 255, "…"),
            "labels": labels,
            "description": description,
        }});
        json_body("jira", &body)
    }

    fn post(&self, http: &Client, url: String, body: Vec<u8>) -> RequestBuilder {
        let req = http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body);
        if self.cloud() {
            req.basic_auth(&self.user, Some(self.token.expose()))
        } else {
            req.bearer_auth(self.token.expose())
        }
    }
}

/// A JQL string literal.
fn jql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An issue key as Jira makes them (`SEC-24`): safe to put in a URL path.
fn is_issue_key(key: &str) -> bool {
    let Some((project, number)) = key.rsplit_once('-') else {
        return false;
    };
    project.starts_with(|c: char| c.is_ascii_alphabetic())
        && project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
}

impl Sink for Jira {
    fn name(&self) -> &'static str {
        "jira"
    }

    fn limits(&self) -> Limits {
        Limits {
            max_rows: 10_000,
            shown: 20,
            diff_chars: 1_000,
        }
    }

    fn request(&self, http: &Client, batch: &Batch) -> Result<RequestBuilder, AlertError> {
        let body = content::fit(batch, MAX_BODY, |b| self.render(b))?;
        Ok(self.post(http, self.endpoint.to_string(), body))
    }

    fn lookup(&self, http: &Client, batch: &Batch) -> Option<Result<RequestBuilder, AlertError>> {
        let key = content::batch_key(batch)?;
        let jql = format!(
            "project = {} AND labels = {} AND statusCategory != Done ORDER BY created DESC",
            jql_string(&self.project),
            jql_string(&format!("fimd-{key}"))
        );
        let path = if self.cloud() { "search/jql" } else { "search" };
        let body = json!({"jql": jql, "fields": ["key"], "maxResults": 1});
        Some(json_body("jira", &body).map(|b| self.post(http, format!("{}/{path}", self.api), b)))
    }

    fn found(&self, body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let key = v["issues"][0]["key"].as_str()?;
        is_issue_key(key).then(|| key.to_string())
    }

    fn update(
        &self,
        http: &Client,
        batch: &Batch,
        existing: &str,
    ) -> Result<RequestBuilder, AlertError> {
        let body = content::fit(batch, MAX_BODY, |b| {
            json_body("jira", &json!({"body": self.text(b)}))
        })?;
        let url = format!("{}/issue/{existing}/comment", self.api);
        Ok(self.post(http, url, body))
    }

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Outcome {
        match http_outcome(status, headers) {
            Outcome::Delivered { .. } => Outcome::Delivered {
                remote_id: serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v["key"].as_str().map(str::to_string)),
            },
            other => other,
        }
    }

    fn target(&self) -> String {
        origin(&self.endpoint)
    }

    fn secrets(&self) -> Vec<String> {
        // The Basic header value too: its forms are the base64 pair a server may echo.
        vec![
            self.token.expose().to_string(),
            crate::secrets::forms::basic_header(&self.user, self.token.expose()),
        ]
    }
}

/// Atlassian Document Format: a heading paragraph, then per event a code block of its facts
/// (and its diff), then the "more changes" line.
fn adf(batch: &Batch) -> Value {
    let text = |t: String| json!({"type": "text", "text": t});
    let code = |t: String, lang: &str| json!({"type": "codeBlock", "attrs": {"language": lang}, "content": [{"type": "text", "text": t}]});
    let mut content = vec![json!({"type": "paragraph", "content": [
        text(format!("{} detected by fimd on ", if batch.test { "Test alert" } else { "File changes" })),
        {"type": "text", "text": batch.host, "marks": [{"type": "strong"}]}]})];
    for ev in &batch.events {
        content.push(code(content::plain_text(ev), "text"));
        if let Some(diff) = &ev.diff {
            content.push(code(diff.clone(), "diff"));
        }
    }
    if let Some(more) = content::omitted_line(batch) {
        content.push(json!({"type": "paragraph", "content": [text(more)]}));
    }
    json!({"type": "doc", "version": 1, "content": content})
}

/// Data Center description: plain text in `{noformat}` blocks (no wiki markup from paths).
fn plain(batch: &Batch) -> String {
    let guard = |s: &str| s.replace("{noformat", "{ noformat");
    let mut out = format!("File changes detected by fimd on {}\n", batch.host);
    for ev in &batch.events {
        out.push_str(&format!(
            "{{noformat}}\n{}\n{{noformat}}\n",
            guard(&content::plain_text(ev))
        ));
        if let Some(diff) = &ev.diff {
            out.push_str(&format!("{{noformat}}\n{}\n{{noformat}}\n", guard(diff)));
        }
    }
    if let Some(more) = content::omitted_line(batch) {
        out.push_str(&more);
        out.push('\n');
    }
    out
}
