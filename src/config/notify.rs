//! `[notify]` and `[notify.<sink>]`: alert delivery settings and sink credentials.
//! Secrets are held in [`Secret`], whose Debug/Display never show the value.

use serde::{Deserialize, Serialize};

use crate::event::Severity;
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
    /// The default `min_severity` of every sink: `low` sends verified package changes too;
    /// `medium` keeps sinks quiet during `apt upgrade` and loud for a replaced binary.
    pub min_severity: Severity,
    pub slack: Option<SlackConfig>,
    pub teams: Option<TeamsConfig>,
    pub jira: Option<JiraConfig>,
    pub servicenow: Option<ServiceNowConfig>,
    pub rapid7: Option<Rapid7Config>,
    pub webhook: Option<WebhookConfig>,
    pub postgres: Option<PostgresConfig>,
    pub nats: Option<NatsConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            batch_window: Duration::from_secs(10),
            include_diff: false,
            retry_for: Duration::from_secs(24 * 3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            min_severity: Severity::Low,
            slack: None,
            teams: None,
            jira: None,
            servicenow: None,
            rapid7: None,
            webhook: None,
            postgres: None,
            nats: None,
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
        if self.postgres.is_some() {
            v.push("postgres");
        }
        if self.nats.is_some() {
            v.push("nats");
        }
        v
    }

    /// Each configured sink with the lowest severity it receives.
    pub fn routes(&self) -> Vec<SinkRoute> {
        self.routes_for(&self.sink_names())
    }

    /// These sinks (configured here or by flags) with the lowest severity each receives.
    pub fn routes_for(&self, names: &[&'static str]) -> Vec<SinkRoute> {
        let own = |name: &'static str| -> Option<Option<Severity>> {
            Some(match name {
                "slack" => self.slack.as_ref()?.min_severity,
                "teams" => self.teams.as_ref()?.min_severity,
                "jira" => self.jira.as_ref()?.min_severity,
                "servicenow" => self.servicenow.as_ref()?.min_severity,
                "rapid7" => self.rapid7.as_ref()?.min_severity,
                "webhook" => self.webhook.as_ref()?.min_severity,
                "postgres" => self.postgres.as_ref()?.min_severity,
                "nats" => self.nats.as_ref()?.min_severity,
                _ => None,
            })
        };
        // Fleet sinks get every event unless told otherwise (a filtered stream shows gaps).
        let default = |name: &str| match crate::fleet::is_fleet_sink(name) {
            true => Severity::Info,
            false => self.min_severity,
        };
        names
            .iter()
            .map(|&name| SinkRoute {
                name,
                min: own(name).flatten().unwrap_or_else(|| default(name)),
            })
            .collect()
    }
}

/// A sink and the lowest severity it receives: the outbox gets a row for an event only when
/// the event is at least that severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkRoute {
    pub name: &'static str,
    pub min: Severity,
}

impl SinkRoute {
    pub fn takes(&self, severity: Severity) -> bool {
        severity >= self.min
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
    /// Only events of this severity and above reach this sink (default: `[notify] min_severity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

/// `[notify.teams]`: a Workflows webhook (Adaptive Card payload); the URL is the credential.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    #[serde(default)]
    pub webhook_url: Secret,
    /// Only events of this severity and above reach this sink (default: `[notify] min_severity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
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
    /// Only events of this severity and above reach this sink (default: `[notify] min_severity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

impl Default for JiraConfig {
    fn default() -> Self {
        JiraConfig {
            url: String::new(),
            user: String::new(),
            api_token: Secret::default(),
            project_key: String::new(),
            issue_type: default_issue_type(),
            min_severity: None,
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
    /// Only events of this severity and above reach this sink (default: `[notify] min_severity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

impl Default for ServiceNowConfig {
    fn default() -> Self {
        ServiceNowConfig {
            instance: String::new(),
            url: String::new(),
            user: String::new(),
            password: Secret::default(),
            table: default_table(),
            min_severity: None,
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
    /// Only events of this severity and above reach this sink (default: `[notify] min_severity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

impl Default for Rapid7Config {
    fn default() -> Self {
        Rapid7Config {
            api_key: Secret::default(),
            workflow_id: Secret::default(),
            region: default_region(),
            url: Secret::default(),
            min_severity: None,
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
    /// Each element of `events` as `json` (fimd's own), `ocsf` or `ecs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::format::Format>,
    /// Only events of this severity and above reach this sink (default: `[notify] min_severity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

/// `[notify.postgres]`: every event into the fleet's PostgreSQL (`fimd fleet schema`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq URL (`postgres://web-1@db.example.net/fleet?sslmode=verify-full`); may hold
    /// the password, so it is a secret.
    #[serde(default)]
    pub url: Secret,
    /// The password, when not in the URL (a secret reference).
    #[serde(default)]
    pub password: Option<Secret>,
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full` (overrides the URL's).
    #[serde(default)]
    pub ssl_mode: Option<String>,
    /// CA certificate file (PEM) for verify-ca / verify-full.
    #[serde(default)]
    pub ssl_root_cert: Option<std::path::PathBuf>,
    /// Client certificate and key files (PEM) for certificate authentication.
    #[serde(default)]
    pub ssl_client_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub ssl_client_key: Option<std::path::PathBuf>,
    /// Table and role name prefix (`fim_` → `fim_event`, `fim_heartbeat`).
    #[serde(default)]
    pub table_prefix: Option<String>,
    /// Only events of this severity and above (default: every event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

/// `[notify.nats]`: every event into NATS JetStream (`Nats-Msg-Id` = uid).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:4222` or `tls://host:4222` (comma-separated for a cluster).
    #[serde(default)]
    pub url: String,
    /// The content of a `.creds` file (JWT + nkey seed), usually `${file:/etc/fimd/web-1.creds}`.
    #[serde(default)]
    pub creds: Option<Secret>,
    /// An nkey seed (`SU...`).
    #[serde(default)]
    pub nkey: Option<Secret>,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// CA file (PEM) to verify the server; client certificate and key for mTLS.
    #[serde(default)]
    pub tls_ca: Option<std::path::PathBuf>,
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
    /// Subjects: `<prefix>.events.<host token>.<event>` and `<prefix>.hb.<host token>`.
    #[serde(default)]
    pub subject_prefix: Option<String>,
    /// Only events of this severity and above (default: every event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-MARKER");
        assert_eq!(format!("{s:?} {s}"), "**REDACTED** **REDACTED**");
        assert_eq!(s.fingerprint().len(), 8);
        let cfg = SlackConfig {
            webhook_url: s,
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("MARKER"));
    }
}
