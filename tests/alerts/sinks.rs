//! Each sink's exact request: method, path, auth header, body shape; plus the vendor answers
//! that carry a remote id.

use std::collections::BTreeMap;

use fimd::alert::{self, Sinks};
use fimd::config::notify::{
    JiraConfig, Rapid7Config, ServiceNowConfig, SlackConfig, TeamsConfig, WebhookConfig,
};
use fimd::config::{NotifyConfig, Secret};
use serde_json::Value;

use crate::common::*;
use crate::mock::{MockHttp, Reply};

async fn one_event(
    cfg: &NotifyConfig,
    sink: &str,
    path: &str,
) -> (tempfile::TempDir, sqlx::SqlitePool, Sinks) {
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    insert_events(&pool, &[ev(path)], &[sink], T0).await;
    let sinks = Sinks::from_config(cfg, "web1").unwrap();
    (dir, pool, sinks)
}

#[tokio::test]
async fn slack_posts_to_the_webhook_url_with_text_and_blocks() {
    let mock = MockHttp::start(vec![], Reply::body(200, "ok")).await;
    let cfg = NotifyConfig {
        slack: Some(SlackConfig {
            webhook_url: Secret::new(mock.url("/services/T000/B000/XXXX")),
            ..Default::default()
        }),
        ..notify_cfg()
    };
    let (_d, pool, sinks) = one_event(&cfg, "slack", "/etc/ssh/sshd_config").await;
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    assert_eq!((r.requests, r.delivered), (1, 1));
    let req = &mock.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/services/T000/B000/XXXX");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("user-agent"),
        Some(concat!("fimd/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(req.header("authorization"), None);
    let v = req.json();
    assert_eq!(v["text"], "[fimd] web1: /etc/ssh/sshd_config modified");
    assert_eq!(v["blocks"][0]["type"], "header");
    let section = v["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(
        section.contains("*Path:* `/etc/ssh/sshd_config`"),
        "{section}"
    );
    assert!(section.contains("*Severity:* high"), "{section}");
    assert!(
        section.contains(&format!("*Old sha256:* `{}`", "ab".repeat(32))),
        "{section}"
    );
    assert_eq!(rows(&pool, "slack").await[0].state, "delivered");
}

#[tokio::test]
async fn teams_sends_an_adaptive_card_and_202_is_success() {
    let mock = MockHttp::start(vec![], Reply::status(202)).await;
    let url = mock.url("/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=SIGSIG");
    let cfg = NotifyConfig {
        teams: Some(TeamsConfig {
            webhook_url: Secret::new(url),
            ..Default::default()
        }),
        ..notify_cfg()
    };
    let (_d, pool, sinks) = one_event(&cfg, "teams", "/etc/nginx/[x](y).conf").await;
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    assert_eq!(r.delivered, 1);
    let req = &mock.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/workflows/abc/triggers/manual/paths/invoke")
    );
    assert_eq!(req.query.as_deref(), Some("api-version=1&sig=SIGSIG"));
    let v = req.json();
    assert_eq!(v["type"], "message");
    let att = &v["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert_eq!(att["content"]["version"], "1.4");
    let facts = &att["content"]["body"][1]["facts"];
    assert_eq!(facts[0]["title"], "Path");
    assert_eq!(facts[0]["value"], "/etc/nginx/\\[x\\]\\(y\\).conf");
}

#[tokio::test]
async fn jira_cloud_uses_v3_adf_and_basic_auth() {
    let mock = MockHttp::start(
        vec![],
        Reply::body(201, r#"{"id":"10000","key":"SEC-24","self":"x"}"#),
    )
    .await;
    let cfg = NotifyConfig {
        jira: Some(JiraConfig {
            url: mock.url("/"),
            user: "bot@example.com".into(),
            api_token: Secret::new("JIRATOKEN"),
            project_key: "SEC".into(),
            ..JiraConfig::default()
        }),
        ..notify_cfg()
    };
    let long = format!("/etc/{}", "x".repeat(400));
    let (_d, pool, sinks) = one_event(&cfg, "jira", &long).await;
    alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    let req = &mock.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/rest/api/3/issue")
    );
    assert_eq!(
        req.header("authorization"),
        Some(basic("bot@example.com", "JIRATOKEN").as_str())
    );
    assert_eq!(req.header("accept"), Some("application/json"));
    let f = &req.json()["fields"];
    assert_eq!(f["project"]["key"], "SEC");
    assert_eq!(f["issuetype"]["name"], "Task");
    assert_eq!(f["labels"][0], "fimd");
    assert!(f["summary"].as_str().unwrap().chars().count() <= 255);
    assert_eq!(f["description"]["type"], "doc");
    assert_eq!(f["description"]["version"], 1);
    assert_eq!(f["description"]["content"][1]["type"], "codeBlock");
    assert_eq!(
        rows(&pool, "jira").await[0].remote_id.as_deref(),
        Some("SEC-24")
    );
}

#[tokio::test]
async fn jira_data_center_uses_v2_plain_text_and_bearer() {
    let mock = MockHttp::start(vec![], Reply::body(201, r#"{"key":"OPS-1"}"#)).await;
    let cfg = NotifyConfig {
        jira: Some(JiraConfig {
            url: mock.url("/jira"),
            user: String::new(),
            api_token: Secret::new("PATPAT"),
            project_key: "OPS".into(),
            issue_type: "Bug".into(),
            ..Default::default()
        }),
        ..notify_cfg()
    };
    let (_d, pool, sinks) = one_event(&cfg, "jira", "/etc/hosts").await;
    alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    let req = &mock.requests()[0];
    assert_eq!(req.path, "/jira/rest/api/2/issue");
    assert_eq!(req.header("authorization"), Some("Bearer PATPAT"));
    let f = &req.json()["fields"];
    assert_eq!(f["issuetype"]["name"], "Bug");
    assert!(f["description"]
        .as_str()
        .unwrap()
        .contains("{noformat}\n[MEDIUM] modified /etc/hosts"));
    assert_eq!(
        rows(&pool, "jira").await[0].remote_id.as_deref(),
        Some("OPS-1")
    );
}

#[tokio::test]
async fn servicenow_table_api_with_basic_auth_and_correlation_id() {
    let answer = r#"{"result":{"sys_id":"abc","number":"INC0010001"}}"#;
    let mock = MockHttp::start(vec![], Reply::body(201, answer)).await;
    let cfg = NotifyConfig {
        servicenow: Some(ServiceNowConfig {
            url: mock.url(""),
            user: "svc_fimd".into(),
            password: Secret::new("SNPASS"),
            ..ServiceNowConfig::default()
        }),
        ..notify_cfg()
    };
    let (_d, pool, sinks) = one_event(&cfg, "servicenow", "/etc/sudoers").await;
    alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    let req = &mock.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/api/now/table/incident")
    );
    let url = reqwest::Url::parse(&format!("http://x/?{}", req.query.as_deref().unwrap())).unwrap();
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["sysparm_fields"], "sys_id,number");
    assert_eq!(query["sysparm_exclude_reference_link"], "true");
    assert_eq!(
        req.header("authorization"),
        Some(basic("svc_fimd", "SNPASS").as_str())
    );
    let v = req.json();
    assert_eq!(v["short_description"], "[fimd] web1: /etc/sudoers modified");
    assert!(v["description"].as_str().unwrap().contains("Host: web1"));
    assert!(v["correlation_id"]
        .as_str()
        .unwrap()
        .starts_with("fimd:web1:"));
    assert_eq!(v["urgency"], "1");
    assert_eq!(
        rows(&pool, "servicenow").await[0].remote_id.as_deref(),
        Some("INC0010001")
    );
}

#[tokio::test]
async fn rapid7_posts_to_the_trigger_with_the_api_key() {
    let mock = MockHttp::start(vec![], Reply::status(200)).await;
    let cfg = NotifyConfig {
        rapid7: Some(Rapid7Config {
            api_key: Secret::new("R7KEY"),
            url: Secret::new(mock.url("/connect/v1/workflows/1111-2222/events/execute")),
            ..Rapid7Config::default()
        }),
        ..notify_cfg()
    };
    let (_d, pool, sinks) = one_event(&cfg, "rapid7", "/etc/pam.d/sshd").await;
    alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    let req = &mock.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/connect/v1/workflows/1111-2222/events/execute")
    );
    assert_eq!(req.header("x-api-key"), Some("R7KEY"));
    let v = req.json();
    assert_eq!(
        (
            v["source"].as_str(),
            v["host"].as_str(),
            v["severity"].as_str()
        ),
        (Some("fimd"), Some("web1"), Some("high"))
    );
    assert_eq!(v["events"][0]["path"], "/etc/pam.d/sshd");
    assert_eq!(v["events"][0]["new_sha256"], "cd".repeat(32));
}

#[tokio::test]
async fn webhook_body_is_exactly_host_and_events_and_is_signed() {
    let mock = MockHttp::start(vec![], Reply::status(204)).await;
    let mut headers = BTreeMap::new();
    headers.insert("Authorization".to_string(), Secret::new("Bearer HDRTOKEN"));
    let cfg = NotifyConfig {
        include_diff: true,
        webhook: Some(WebhookConfig {
            url: Secret::new(mock.url("/fimd")),
            headers,
            secret: Some(Secret::new("WHSECRET")),
            ..Default::default()
        }),
        ..notify_cfg()
    };
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    let events = [
        NewEvent {
            path: b"/etc/app.conf".to_vec(),
            sensitive: false,
            diff: Some("-a\n+b".into()),
        },
        NewEvent {
            path: b"/etc/app.key".to_vec(),
            sensitive: true,
            diff: Some("PRIVATE-CONTENT".into()),
        },
        NewEvent {
            path: b"/etc/caf\xe9".to_vec(),
            sensitive: false,
            diff: None,
        },
    ];
    let ids = insert_events(&pool, &events, &["webhook"], T0).await;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    let req = &mock.requests()[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/fimd"));
    assert_eq!(req.header("authorization"), Some("Bearer HDRTOKEN"));
    let sig = hex::encode(alert::webhook::hmac_sha256(b"WHSECRET", &req.body));
    assert_eq!(
        req.header("x-fimd-signature"),
        Some(format!("sha256={sig}").as_str())
    );
    let v = req.json();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["events", "host"]);
    assert_eq!(v["host"], "web1");
    let expected = alert::load_events(&pool, &ids, Some(16_384)).await.unwrap();
    let mut expected = serde_json::to_value(&expected).unwrap();
    expected[1]["diff"] = Value::Null; // sensitive: never sent
    assert_eq!(v["events"], expected);
    let first = v["events"][0].as_object().unwrap();
    for k in [
        "id",
        "time",
        "host",
        "source",
        "event",
        "path",
        "changed",
        "old",
        "new",
        "sensitive",
        "diff",
    ] {
        assert!(first.contains_key(k), "{k}");
    }
    assert_eq!(v["events"][0]["diff"], "-a\n+b");
    assert_eq!(v["events"][2]["path_hex"], "2f6574632f636166e9");
    assert!(!req.text().contains("PRIVATE-CONTENT"));
}

#[tokio::test]
async fn diffs_stay_out_unless_include_diff() {
    let mock = MockHttp::start(vec![], Reply::body(200, "ok")).await;
    let cfg = NotifyConfig {
        slack: Some(SlackConfig {
            webhook_url: Secret::new(mock.url("/s")),
            ..Default::default()
        }),
        ..notify_cfg()
    };
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    let e = NewEvent {
        path: b"/etc/app.conf".to_vec(),
        sensitive: false,
        diff: Some("+password=DIFFMARK".into()),
    };
    insert_events(&pool, &[e], &["slack"], T0).await;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    assert!(!mock.requests()[0].text().contains("DIFFMARK"));
}

#[test]
fn plain_http_only_for_loopback_and_describe_hides_secrets() {
    let cfg = NotifyConfig {
        slack: Some(SlackConfig {
            webhook_url: Secret::new("http://hooks.example.com/services/SECRETPATH"),
            ..Default::default()
        }),
        ..NotifyConfig::default()
    };
    let e = Sinks::from_config(&cfg, "h")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("notify.slack") && e.contains("https"), "{e}");
    assert!(!e.contains("SECRETPATH"), "{e}");

    let cfg = NotifyConfig {
        slack: Some(SlackConfig {
            webhook_url: Secret::new("https://hooks.slack.com/services/SECRETPATH"),
            ..Default::default()
        }),
        rapid7: Some(Rapid7Config {
            api_key: Secret::new("K"),
            workflow_id: Secret::new("0000-WORKFLOW"),
            ..Rapid7Config::default()
        }),
        servicenow: Some(ServiceNowConfig {
            instance: "acme".into(),
            user: "u".into(),
            password: Secret::new("p"),
            ..ServiceNowConfig::default()
        }),
        ..NotifyConfig::default()
    };
    let sinks = Sinks::from_config(&cfg, "h").unwrap();
    let lines = sinks.describe();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0].starts_with("slack: https://hooks.slack.com (fingerprint "),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("servicenow: https://acme.service-now.com (fingerprint "),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("rapid7: https://us.api.insight.rapid7.com (fingerprint "),
        "{lines:?}"
    );
    let all = format!("{lines:?} {sinks:?}");
    assert!(
        !all.contains("SECRETPATH") && !all.contains("WORKFLOW"),
        "{all}"
    );
    assert_eq!(sinks.names(), ["slack", "servicenow", "rapid7"]);
    assert!(Sinks::from_config(&NotifyConfig::default(), "h")
        .unwrap()
        .is_empty());
}
