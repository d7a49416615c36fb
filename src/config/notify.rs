//! `[notify]` and `[notify.<sink>]`: alert delivery settings and sink credentials.
//! Secrets are held in [`Secret`], whose Debug/Display never show the value.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A credential: its value never appears in Debug, Display, logs or errors.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for building a request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// First 8 hex digits of the value's SHA-256: enough to tell two secrets apart, nothing more.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..4])
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// At most one request per sink per window; a burst becomes one digest.
    #[serde(with = "humantime_serde")]
    pub batch_window: Duration,
    /// Send diffs of non-sensitive files in alerts (configs hold passwords: opt-in).
    pub include_diff: bool,
    /// Keep retrying an undelivered alert this long, then mark it failed.
    #[serde(with = "humantime_serde")]
    pub retry_for: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    pub slack: Option<SlackConfig>,
    pub teams: Option<TeamsConfig>,
    pub jira: Option<JiraConfig>,
    pub servicenow: Option<ServiceNowConfig>,
    pub rapid7: Option<Rapid7Config>,
    pub webhook: Option<WebhookConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            batch_window: Duration::from_secs(10),
            include_diff: false,
            retry_for: Duration::from_secs(24 * 3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            slack: None,
            teams: None,
            jira: None,
            servicenow: None,
            rapid7: None,
            webhook: None,
        }
    }
}

impl NotifyConfig {
    /// Names of the sinks that are configured, in a fixed order.
    pub fn sink_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.slack.is_some() {
            v.push("slack");
        }
        if self.teams.is_some() {
            v.push("teams");
        }
        if self.jira.is_some() {
            v.push("jira");
        }
        if self.servicenow.is_some() {
            v.push("servicenow");
        }
        if self.rapid7.is_some() {
            v.push("rapid7");
        }
        if self.webhook.is_some() {
            v.push("webhook");
        }
        v
    }
}

/// `[notify.slack]`: an incoming webhook; the URL is the credential.
///
/// Every credential field may be left out of the file and supplied by a flag, an environment
/// variable or a systemd credential (`alert::credentials::apply_overrides`), which reports a
/// field still missing after that, naming all its sources.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    #[serde(default)]
    pub webhook_url: Secret,
}

/// `[notify.teams]`: a Workflows webhook (Adaptive Card payload); the URL is the credential.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    #[serde(default)]
    pub webhook_url: Secret,
}

/// `[notify.jira]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JiraConfig {
    /// Base URL: `https://SITE.atlassian.net` (Cloud) or the Data Center root.
    #[serde(default)]
    pub url: String,
    /// Cloud account e-mail (Basic auth, REST v3). Empty: Data Center, Bearer PAT, REST v2.
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub api_token: Secret,
    #[serde(default)]
    pub project_key: String,
    #[serde(default = "default_issue_type")]
    pub issue_type: String,
}

impl Default for JiraConfig {
    fn default() -> Self {
        JiraConfig {
            url: String::new(),
            user: String::new(),
            api_token: Secret::default(),
            project_key: String::new(),
            issue_type: default_issue_type(),
        }
    }
}

fn default_issue_type() -> String {
    "Task".to_string()
}

/// `[notify.servicenow]`: `instance` maps to `https://NAME.service-now.com`; `url` overrides it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNowConfig {
    #[serde(default)]
    pub instance: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub password: Secret,
    #[serde(default = "default_table")]
    pub table: String,
}

impl Default for ServiceNowConfig {
    fn default() -> Self {
        ServiceNowConfig {
            instance: String::new(),
            url: String::new(),
            user: String::new(),
            password: Secret::default(),
            table: default_table(),
        }
    }
}

fn default_table() -> String {
    "incident".to_string()
}

/// `[notify.rapid7]`: InsightConnect API trigger (`url` overrides `region` + `workflow_id`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rapid7Config {
    #[serde(default)]
    pub api_key: Secret,
    /// The workflow UUID: the trigger URL is a credential, so this is one too.
    #[serde(default)]
    pub workflow_id: Secret,
    #[serde(default = "default_region")]
    pub region: String,
    /// The full trigger URL (overrides region + workflow_id); a credential.
    #[serde(default)]
    pub url: Secret,
}

impl Default for Rapid7Config {
    fn default() -> Self {
        Rapid7Config {
            api_key: Secret::default(),
            workflow_id: Secret::default(),
            region: default_region(),
            url: Secret::default(),
        }
    }
}

fn default_region() -> String {
    "us".to_string()
}

/// `[notify.webhook]`: generic JSON webhook, optional HMAC-SHA256 signature.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Receiver URL; held as a secret because receivers often put a token in it.
    #[serde(default)]
    pub url: Secret,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default)]
    pub secret: Option<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-MARKER");
        assert_eq!(format!("{s:?} {s}"), "**REDACTED** **REDACTED**");
        assert_eq!(s.fingerprint().len(), 8);
        let cfg = SlackConfig { webhook_url: s };
        assert!(!format!("{cfg:?}").contains("MARKER"));
    }
}
