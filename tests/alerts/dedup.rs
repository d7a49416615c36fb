//! Search before create (notifications.md §0): a create whose answer was lost (here a 504
//! after the vendor made the ticket) must not make a second ticket on retry. ServiceNow and
//! Jira search for the earlier one first and add to it; when the search fails, nothing is
//! created.

use std::collections::HashMap;

use fimd::alert::{self, Sinks};
use fimd::config::notify::{JiraConfig, ServiceNowConfig};
use fimd::config::{NotifyConfig, Secret};
use sqlx::SqlitePool;

use crate::common::*;
use crate::mock::{Captured, MockHttp, Reply};

const SYS_ID: &str = "0123456789abcdef0123456789abcdef";

fn jira_cfg(mock: &MockHttp) -> NotifyConfig {
    NotifyConfig {
        jira: Some(JiraConfig {
            url: mock.url("/"),
            user: "bot@example.com".into(),
            api_token: Secret::new("JIRATOKEN"),
            project_key: "SEC".into(),
            ..JiraConfig::default()
        }),
        ..notify_cfg()
    }
}

fn servicenow_cfg(mock: &MockHttp) -> NotifyConfig {
    NotifyConfig {
        servicenow: Some(ServiceNowConfig {
            url: mock.url(""),
            user: "svc_fimd".into(),
            password: Secret::new("SNPASS"),
            ..ServiceNowConfig::default()
        }),
        ..notify_cfg()
    }
}

/// One event for `sink`; the first pass fails (the script's first reply), the second pass runs
/// when the retry is due. Returns the pool (for the outbox row) and every request made.
async fn fail_then_retry(
    cfg: &NotifyConfig,
    sink: &str,
    mock: &MockHttp,
) -> (tempfile::TempDir, SqlitePool, Vec<Captured>) {
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    insert_events(&pool, &[ev("/etc/sudoers")], &[sink], T0).await;
    let sinks = Sinks::from_config(cfg, "web1").unwrap();
    let r = alert::deliver_due_at(&pool, &sinks, cfg, T0).await.unwrap();
    assert_eq!((r.requests, r.retried), (1, 1), "the first create fails");
    let row = rows(&pool, sink).await.remove(0);
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 1));
    alert::deliver_due_at(&pool, &sinks, cfg, row.next_attempt_ns)
        .await
        .unwrap();
    (dir, pool, mock.requests())
}

fn jira_label(create: &Captured) -> String {
    let labels = create.json()["fields"]["labels"].clone();
    let label = labels
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .find(|l| {
            l.len() == 17 && l.starts_with("fimd-") && l[5..].chars().all(|c| c.is_ascii_hexdigit())
        })
        .unwrap_or_else(|| panic!("no fimd-<key> label in {labels}"))
        .to_string();
    label
}

#[tokio::test]
async fn jira_retry_finds_the_issue_the_lost_create_made_and_comments_on_it() {
    let mock = MockHttp::start(
        vec![
            Reply::status(504),
            Reply::body(
                200,
                r#"{"issues":[{"id":"10007","key":"SEC-7"}],"isLast":true}"#,
            ),
            Reply::body(201, r#"{"id":"20001"}"#),
        ],
        Reply::status(500),
    )
    .await;
    let cfg = jira_cfg(&mock);
    let (_d, pool, reqs) = fail_then_retry(&cfg, "jira", &mock).await;
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    let auth = basic("bot@example.com", "JIRATOKEN");
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("POST", "/rest/api/3/issue"),
        "the first attempt creates without searching"
    );
    let label = jira_label(&reqs[0]);

    let search = &reqs[1];
    assert_eq!(
        (search.method.as_str(), search.path.as_str()),
        ("POST", "/rest/api/3/search/jql")
    );
    assert_eq!(search.header("authorization"), Some(auth.as_str()));
    let q = search.json();
    let jql = q["jql"].as_str().unwrap();
    assert!(jql.contains("project = \"SEC\""), "{jql}");
    assert!(jql.contains(&format!("labels = \"{label}\"")), "{jql}");
    assert!(jql.contains("statusCategory != Done"), "{jql}");
    assert_eq!(q["maxResults"], 1);

    let comment = &reqs[2];
    assert_eq!(
        (comment.method.as_str(), comment.path.as_str()),
        ("POST", "/rest/api/3/issue/SEC-7/comment")
    );
    assert_eq!(comment.header("authorization"), Some(auth.as_str()));
    let body = comment.json();
    assert_eq!(body["body"]["type"], "doc", "a comment in ADF: {body}");
    assert!(comment.text().contains("/etc/sudoers"));

    let row = rows(&pool, "jira").await.remove(0);
    assert_eq!(
        (row.state.as_str(), row.remote_id.as_deref()),
        ("delivered", Some("SEC-7"))
    );
}

#[tokio::test]
async fn jira_retry_creates_when_the_search_finds_nothing_and_ignores_odd_keys() {
    let mock = MockHttp::start(
        vec![
            Reply::status(504),
            // A key that is not an issue key never reaches a URL: treated as not found.
            Reply::body(200, r#"{"issues":[{"key":"../../admin"}]}"#),
            Reply::body(201, r#"{"id":"10008","key":"SEC-8"}"#),
        ],
        Reply::status(500),
    )
    .await;
    let cfg = jira_cfg(&mock);
    let (_d, pool, reqs) = fail_then_retry(&cfg, "jira", &mock).await;
    let calls: Vec<(&str, &str)> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("POST", "/rest/api/3/issue"),
            ("POST", "/rest/api/3/search/jql"),
            ("POST", "/rest/api/3/issue"),
        ]
    );
    assert_eq!(
        jira_label(&reqs[0]),
        jira_label(&reqs[2]),
        "the retry carries the same key, so a later search finds it"
    );
    let row = rows(&pool, "jira").await.remove(0);
    assert_eq!(
        (row.state.as_str(), row.remote_id.as_deref()),
        ("delivered", Some("SEC-8"))
    );
}

#[tokio::test]
async fn jira_data_center_searches_with_v2() {
    let mock = MockHttp::start(
        vec![
            Reply::status(504),
            Reply::body(200, r#"{"issues":[{"key":"OPS-3"}]}"#),
            Reply::body(201, r#"{"id":"1"}"#),
        ],
        Reply::status(500),
    )
    .await;
    let cfg = NotifyConfig {
        jira: Some(JiraConfig {
            url: mock.url("/jira"),
            user: String::new(),
            api_token: Secret::new("PATPAT"),
            project_key: "OPS".into(),
            issue_type: String::new(),
            ..Default::default()
        }),
        ..notify_cfg()
    };
    let (_d, _pool, reqs) = fail_then_retry(&cfg, "jira", &mock).await;
    assert_eq!(reqs[1].path, "/jira/rest/api/2/search");
    assert_eq!(reqs[2].path, "/jira/rest/api/2/issue/OPS-3/comment");
    assert_eq!(reqs[2].header("authorization"), Some("Bearer PATPAT"));
    assert!(reqs[2].json()["body"]
        .as_str()
        .unwrap()
        .contains("/etc/sudoers"));
}

#[tokio::test]
async fn servicenow_retry_finds_the_record_by_correlation_id_and_adds_a_work_note() {
    let mock = MockHttp::start(
        vec![
            Reply::status(504),
            Reply::body(
                200,
                &format!(r#"{{"result":[{{"sys_id":"{SYS_ID}","number":"INC0010009"}}]}}"#),
            ),
            Reply::body(
                200,
                &format!(r#"{{"result":{{"sys_id":"{SYS_ID}","number":"INC0010009"}}}}"#),
            ),
        ],
        Reply::status(500),
    )
    .await;
    let cfg = servicenow_cfg(&mock);
    let (_d, pool, reqs) = fail_then_retry(&cfg, "servicenow", &mock).await;
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    let auth = basic("svc_fimd", "SNPASS");
    let create = &reqs[0];
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", "/api/now/table/incident")
    );
    let correlation = create.json()["correlation_id"]
        .as_str()
        .unwrap()
        .to_string();

    let search = &reqs[1];
    assert_eq!(
        (search.method.as_str(), search.path.as_str()),
        ("GET", "/api/now/table/incident")
    );
    assert_eq!(search.header("authorization"), Some(auth.as_str()));
    let url = reqwest::Url::parse(&format!(
        "http://x/?{}",
        search.query.as_deref().unwrap_or("")
    ))
    .unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("sysparm_query").map(String::as_str),
        Some(format!("correlation_id={correlation}^active=true").as_str())
    );
    assert_eq!(q.get("sysparm_limit").map(String::as_str), Some("1"));

    let note = &reqs[2];
    assert_eq!(note.method, "PATCH");
    assert_eq!(note.path, format!("/api/now/table/incident/{SYS_ID}"));
    assert_eq!(note.header("authorization"), Some(auth.as_str()));
    let body = note.json();
    assert!(
        body["work_notes"]
            .as_str()
            .unwrap()
            .contains("/etc/sudoers"),
        "{body}"
    );
    assert!(
        body.get("short_description").is_none(),
        "an update, not a new record"
    );

    let row = rows(&pool, "servicenow").await.remove(0);
    assert_eq!(
        (row.state.as_str(), row.remote_id.as_deref()),
        ("delivered", Some("INC0010009"))
    );
}

#[tokio::test]
async fn a_failed_search_creates_nothing_and_retries() {
    let mock = MockHttp::start(
        vec![Reply::status(504), Reply::body(503, "maintenance")],
        Reply::status(500),
    )
    .await;
    let cfg = servicenow_cfg(&mock);
    let (_d, pool, reqs) = fail_then_retry(&cfg, "servicenow", &mock).await;
    let methods: Vec<&str> = reqs.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["POST", "GET"], "no second create");
    let row = rows(&pool, "servicenow").await.remove(0);
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 2));
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.starts_with("search for an earlier ticket: HTTP 503"),
        "{error}"
    );
}

#[tokio::test]
async fn a_rejected_search_never_shows_the_credential() {
    // The search's answer echoes the password and the token: neither may reach the outbox
    // row's error or a log line.
    let mock = MockHttp::start(
        vec![
            Reply::status(504),
            Reply::body(401, "denied for password SNPASS"),
        ],
        Reply::status(500),
    )
    .await;
    let cfg = servicenow_cfg(&mock);
    let (logs, _guard) = capture_logs();
    let (_d, pool, reqs) = fail_then_retry(&cfg, "servicenow", &mock).await;
    assert_eq!(reqs.len(), 2, "no create after a rejected search");
    let row = rows(&pool, "servicenow").await.remove(0);
    assert_eq!(row.state, "parked");
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.starts_with("search for an earlier ticket: HTTP 401"),
        "{error}"
    );
    assert!(!error.contains("SNPASS"), "{error}");
    let logged = logs.text();
    assert!(logged.contains("search for an earlier ticket"), "{logged}");
    assert!(!logged.contains("SNPASS"), "{logged}");
}
