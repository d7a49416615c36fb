//! Sink credentials from the original script's flags and environment variables and from
//! systemd credentials, merged into the `[notify]` config with the precedence
//! flag > environment > `$CREDENTIALS_DIRECTORY/<flag-name>` > config file.
//!
//! clap (in the cli) resolves flag > environment into [`SinkFlags`]; [`apply_overrides`] adds
//! the credential files and the config file. A source naming a sink that the config lacks
//! creates that sink. Never prints a value: errors name keys, sources and file paths only.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::notify::{
    JiraConfig, NotifyConfig, Rapid7Config, ServiceNowConfig, SlackConfig, TeamsConfig,
};
use crate::config::Secret;

/// The 11 legacy flags, each already resolved by clap as flag, else environment variable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SinkFlags {
    pub servicenow_instance: Option<String>,
    pub servicenow_user: Option<String>,
    pub servicenow_password: Option<String>,
    pub rapid7_api_key: Option<String>,
    pub rapid7_workflow_id: Option<String>,
    pub jira_url: Option<String>,
    pub jira_user: Option<String>,
    pub jira_api_token: Option<String>,
    pub jira_project_key: Option<String>,
    pub slack_webhook_url: Option<String>,
    pub teams_webhook_url: Option<String>,
}

impl fmt::Debug for SinkFlags {
    /// Shows which flags are set, never their values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: Vec<&str> = self
            .table()
            .into_iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.flag)
            .collect();
        f.debug_struct("SinkFlags").field("set", &set).finish()
    }
}

/// One legacy key: its flag name (= the credential file name) and environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub flag: &'static str,
    pub env: &'static str,
}

const fn key(flag: &'static str, env: &'static str) -> Key {
    Key { flag, env }
}

impl SinkFlags {
    fn table(&self) -> [(Key, &Option<String>); 11] {
        [
            (
                key("servicenow-instance", "SERVICENOW_INSTANCE"),
                &self.servicenow_instance,
            ),
            (
                key("servicenow-user", "SERVICENOW_USER"),
                &self.servicenow_user,
            ),
            (
                key("servicenow-password", "SERVICENOW_PASSWORD"),
                &self.servicenow_password,
            ),
            (
                key("rapid7-api-key", "RAPID7_API_KEY"),
                &self.rapid7_api_key,
            ),
            (
                key("rapid7-workflow-id", "RAPID7_WORKFLOW_ID"),
                &self.rapid7_workflow_id,
            ),
            (key("jira-url", "JIRA_URL"), &self.jira_url),
            (key("jira-user", "JIRA_USER"), &self.jira_user),
            (
                key("jira-api-token", "JIRA_API_TOKEN"),
                &self.jira_api_token,
            ),
            (
                key("jira-project-key", "JIRA_PROJECT_KEY"),
                &self.jira_project_key,
            ),
            (
                key("slack-webhook-url", "SLACK_WEBHOOK_URL"),
                &self.slack_webhook_url,
            ),
            (
                key("teams-webhook-url", "TEAMS_WEBHOOK_URL"),
                &self.teams_webhook_url,
            ),
        ]
    }
}

/// A credential that is missing or unreadable.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "notify.{sink}.{field} is not set: give --{flag}, the environment variable {env}, \
         the systemd credential {flag} ($CREDENTIALS_DIRECTORY/{flag}) or {field} in [notify.{sink}]"
    )]
    Missing {
        sink: &'static str,
        field: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    #[error("notify.{sink}.{field} is not set in [notify.{sink}]")]
    MissingInFile {
        sink: &'static str,
        field: &'static str,
    },
    #[error("cannot read credential {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Merge flags/environment and systemd credentials into `notify`, then check that every
/// configured sink has its required fields.
pub fn apply_overrides(
    notify: &mut NotifyConfig,
    flags: &SinkFlags,
    credentials_dir: Option<&Path>,
) -> Result<(), CredentialError> {
    let mut v = Vec::with_capacity(11);
    for (k, flag) in flags.table() {
        let value = match flag.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(s.to_string()),
            None => read_credential(credentials_dir, k.flag)?,
        };
        v.push(value);
    }
    let [sn_instance, sn_user, sn_password, r7_key, r7_workflow, jira_url, jira_user, jira_token, jira_project, slack, teams]: [Option<String>; 11] =
        v.try_into().unwrap_or_default();

    if let Some(url) = slack {
        notify
            .slack
            .get_or_insert_with(SlackConfig::default)
            .webhook_url = Secret::new(url);
    }
    if let Some(url) = teams {
        notify
            .teams
            .get_or_insert_with(TeamsConfig::default)
            .webhook_url = Secret::new(url);
    }
    if jira_url.is_some() || jira_user.is_some() || jira_token.is_some() || jira_project.is_some() {
        let j = notify.jira.get_or_insert_with(JiraConfig::default);
        set(&mut j.url, jira_url);
        set(&mut j.user, jira_user);
        set(&mut j.project_key, jira_project);
        if let Some(t) = jira_token {
            j.api_token = Secret::new(t);
        }
    }
    if sn_instance.is_some() || sn_user.is_some() || sn_password.is_some() {
        let s = notify
            .servicenow
            .get_or_insert_with(ServiceNowConfig::default);
        if let Some(i) = sn_instance {
            // A flag naming the instance wins over a `url` from the file.
            s.instance = i;
            s.url = String::new();
        }
        set(&mut s.user, sn_user);
        if let Some(p) = sn_password {
            s.password = Secret::new(p);
        }
    }
    if r7_key.is_some() || r7_workflow.is_some() {
        let r = notify.rapid7.get_or_insert_with(Rapid7Config::default);
        if let Some(k) = r7_key {
            r.api_key = Secret::new(k);
        }
        if let Some(w) = r7_workflow {
            r.workflow_id = Secret::new(w);
            r.url = Secret::default();
        }
    }
    check_required(notify)
}

fn set(field: &mut String, value: Option<String>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// `$CREDENTIALS_DIRECTORY/<name>` with trailing newlines removed; `None` when absent.
fn read_credential(dir: Option<&Path>, name: &str) -> Result<Option<String>, CredentialError> {
    let Some(dir) = dir else { return Ok(None) };
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            Ok((!value.is_empty()).then_some(value))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CredentialError::Read { path, source }),
    }
}

fn missing(
    sink: &'static str,
    field: &'static str,
    flag: &'static str,
    env: &'static str,
) -> CredentialError {
    CredentialError::Missing {
        sink,
        field,
        flag,
        env,
    }
}

fn check_required(n: &NotifyConfig) -> Result<(), CredentialError> {
    if n.slack.as_ref().is_some_and(|s| s.webhook_url.is_empty()) {
        return Err(missing(
            "slack",
            "webhook_url",
            "slack-webhook-url",
            "SLACK_WEBHOOK_URL",
        ));
    }
    if n.teams.as_ref().is_some_and(|s| s.webhook_url.is_empty()) {
        return Err(missing(
            "teams",
            "webhook_url",
            "teams-webhook-url",
            "TEAMS_WEBHOOK_URL",
        ));
    }
    if let Some(j) = &n.jira {
        if j.url.is_empty() {
            return Err(missing("jira", "url", "jira-url", "JIRA_URL"));
        }
        if j.api_token.is_empty() {
            return Err(missing(
                "jira",
                "api_token",
                "jira-api-token",
                "JIRA_API_TOKEN",
            ));
        }
        if j.project_key.is_empty() {
            return Err(missing(
                "jira",
                "project_key",
                "jira-project-key",
                "JIRA_PROJECT_KEY",
            ));
        }
    }
    if let Some(s) = &n.servicenow {
        if s.instance.is_empty() && s.url.is_empty() {
            return Err(missing(
                "servicenow",
                "instance",
                "servicenow-instance",
                "SERVICENOW_INSTANCE",
            ));
        }
        if s.user.is_empty() {
            return Err(missing(
                "servicenow",
                "user",
                "servicenow-user",
                "SERVICENOW_USER",
            ));
        }
        if s.password.is_empty() {
            return Err(missing(
                "servicenow",
                "password",
                "servicenow-password",
                "SERVICENOW_PASSWORD",
            ));
        }
    }
    if let Some(r) = &n.rapid7 {
        if r.api_key.is_empty() {
            return Err(missing(
                "rapid7",
                "api_key",
                "rapid7-api-key",
                "RAPID7_API_KEY",
            ));
        }
        if r.workflow_id.is_empty() && r.url.is_empty() {
            return Err(missing(
                "rapid7",
                "workflow_id",
                "rapid7-workflow-id",
                "RAPID7_WORKFLOW_ID",
            ));
        }
    }
    if n.webhook.as_ref().is_some_and(|w| w.url.is_empty()) {
        return Err(CredentialError::MissingInFile {
            sink: "webhook",
            field: "url",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_flag_over_credential_over_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("slack-webhook-url"),
            "https://cred.example/S\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("jira-api-token"), "CRED-TOKEN\n").unwrap();
        let mut n = NotifyConfig {
            slack: Some(SlackConfig {
                webhook_url: Secret::new("https://file.example/S"),
                ..Default::default()
            }),
            ..NotifyConfig::default()
        };
        let flags = SinkFlags {
            jira_url: Some("https://x.atlassian.net".into()),
            jira_project_key: Some("SEC".into()),
            ..SinkFlags::default()
        };
        apply_overrides(&mut n, &flags, Some(dir.path())).unwrap();
        assert_eq!(
            n.slack.as_ref().map(|s| s.webhook_url.expose()),
            Some("https://cred.example/S")
        );
        let j = n.jira.clone().unwrap();
        assert_eq!(j.api_token.expose(), "CRED-TOKEN");
        assert_eq!(j.issue_type, "Task");

        let flags = SinkFlags {
            slack_webhook_url: Some("https://flag.example/S".into()),
            ..flags
        };
        apply_overrides(&mut n, &flags, Some(dir.path())).unwrap();
        assert_eq!(
            n.slack
                .map(|s| s.webhook_url.expose().to_string())
                .as_deref(),
            Some("https://flag.example/S")
        );
    }

    #[test]
    fn missing_field_names_all_sources_and_debug_hides_values() {
        let mut n = NotifyConfig::default();
        let flags = SinkFlags {
            servicenow_instance: Some("acme".into()),
            servicenow_password: Some("PW-MARKER".into()),
            ..SinkFlags::default()
        };
        let e = apply_overrides(&mut n, &flags, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("notify.servicenow.user"), "{e}");
        assert!(
            e.contains("--servicenow-user") && e.contains("SERVICENOW_USER"),
            "{e}"
        );
        assert!(e.contains("$CREDENTIALS_DIRECTORY/servicenow-user"), "{e}");
        let d = format!("{flags:?} {n:?}");
        assert!(!d.contains("PW-MARKER"), "{d}");
        assert!(d.contains("servicenow-password"), "{d}");
    }
}
