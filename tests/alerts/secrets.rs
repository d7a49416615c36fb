//! Marker strings planted in every secret (tokens, passwords, webhook URL paths and queries)
//! must never reach a request body, `last_error`, a tracing line, a Debug string or a
//! notify-test result, even when the remote answer echoes them back.

use std::collections::BTreeMap;

use fimd::alert::{self, SinkFlags, Sinks};
use fimd::config::notify::{
    JiraConfig, Rapid7Config, ServiceNowConfig, SlackConfig, TeamsConfig, WebhookConfig,
};
use fimd::config::{NotifyConfig, Secret};

use crate::common::*;
use crate::mock::{MockHttp, Reply};

const MARKERS: &[&str] = &[
    "SLACKMARK",
    "TEAMSMARK",
    "JIRAMARK",
    "SNMARK",
    "R7KEYMARK",
    "R7WFMARK",
    "HOOKURLMARK",
    "HDRMARK",
    "HMACMARK",
    "NETMARK",
];

fn assert_clean(what: &str, text: &str) {
    for m in MARKERS {
        assert!(!text.contains(m), "{what} leaks {m}: {text}");
    }
}

/// A server that rejects with 401 and echoes what it was sent (path, query, auth headers).
async fn echo(echoed: &str) -> MockHttp {
    MockHttp::start(vec![], Reply::body(401, &format!("denied for {echoed}"))).await
}

#[tokio::test]
async fn secrets_never_leak() {
    let slack = echo("/services/T0/B0/SLACKMARK").await;
    let teams = echo("https://x/wf?sig=TEAMSMARK").await;
    let jira = echo("token JIRAMARK").await;
    let sn = echo("password SNMARK").await;
    let r7 = echo("key R7KEYMARK workflow R7WFMARK").await;
    let hook = echo("token=HOOKURLMARK header HDRMARK").await;
    let mut headers = BTreeMap::new();
    headers.insert("X-Auth".to_string(), Secret::new("HDRMARK"));
    let cfg = NotifyConfig {
        slack: Some(SlackConfig {
            webhook_url: Secret::new(slack.url("/services/T0/B0/SLACKMARK")),
            ..Default::default()
        }),
        teams: Some(TeamsConfig {
            webhook_url: Secret::new(teams.url("/wf?sig=TEAMSMARK")),
            ..Default::default()
        }),
        jira: Some(JiraConfig {
            url: jira.url(""),
            user: "u".into(),
            api_token: Secret::new("JIRAMARK"),
            project_key: "SEC".into(),
            ..JiraConfig::default()
        }),
        servicenow: Some(ServiceNowConfig {
            url: sn.url(""),
            user: "u".into(),
            password: Secret::new("SNMARK"),
            ..ServiceNowConfig::default()
        }),
        rapid7: Some(Rapid7Config {
            api_key: Secret::new("R7KEYMARK"),
            url: Secret::new(r7.url("/connect/v1/workflows/R7WFMARK/events/execute")),
            ..Rapid7Config::default()
        }),
        webhook: Some(WebhookConfig {
            url: Secret::new(hook.url("/hook?token=HOOKURLMARK")),
            headers,
            secret: Some(Secret::new("HMACMARK")),
            ..Default::default()
        }),
        ..notify_cfg()
    };
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    let (logs, _guard) = capture_logs();
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    insert_events(&pool, &[ev("/etc/ssh/sshd_config")], &sinks.names(), T0).await;
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    assert_eq!((r.requests, r.parked), (6, 6));
    let tests = alert::notify_test(&sinks).await;
    assert!(
        tests.iter().all(|(_, r)| r
            .as_ref()
            .is_err_and(|e| e.starts_with("HTTP 401: denied for"))),
        "{tests:?}"
    );

    // A transport error: the URL (with its credential path) must not appear.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = NotifyConfig {
        slack: Some(SlackConfig {
            webhook_url: Secret::new(format!("http://127.0.0.1:{port}/services/NETMARK")),
            ..Default::default()
        }),
        ..notify_cfg()
    };
    let down_sinks = Sinks::from_config(&down, "web1").unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let pool2 = open_db(dir2.path()).await;
    insert_events(&pool2, &[ev("/etc/x")], &["slack"], T0).await;
    assert_eq!(
        alert::deliver_due_at(&pool2, &down_sinks, &down, T0)
            .await
            .unwrap()
            .retried,
        1
    );
    let net_err = rows(&pool2, "slack")
        .await
        .remove(0)
        .last_error
        .unwrap_or_default();
    assert!(net_err.starts_with("request failed: "), "{net_err}");
    let net_test = alert::notify_test(&down_sinks).await;

    for m in [&slack, &teams, &jira, &sn, &r7, &hook] {
        for req in m.requests() {
            assert_clean("request body", &req.text());
        }
    }
    let errors: Vec<Option<String>> = sqlx::query_scalar("SELECT last_error FROM outbox")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(errors.len(), 6);
    assert!(
        errors
            .iter()
            .all(|e| e.as_deref().is_some_and(|e| e.contains("HTTP 401"))),
        "{errors:?}"
    );
    assert_clean("last_error", &format!("{errors:?} {net_err}"));
    let log_text = logs.text();
    assert!(
        log_text.contains("ERROR"),
        "the parks were logged: {log_text}"
    );
    assert_clean("tracing output", &log_text);
    assert_clean("notify-test", &format!("{tests:?} {net_test:?}"));
    let flags = SinkFlags {
        jira_api_token: Some("JIRAMARK".into()),
        slack_webhook_url: Some("https://h/SLACKMARK".into()),
        ..SinkFlags::default()
    };
    assert_clean(
        "Debug output",
        &format!(
            "{cfg:?} {sinks:?} {flags:?} {:?} {down_sinks:?}",
            sinks.describe()
        ),
    );
}
