//! Delivery passes with injected time: retry with backoff, Retry-After pauses, parking,
//! retry_for expiry, batching of a 10,000-change burst.

use std::time::Duration;

use fimd::alert::{self, Sinks};
use fimd::config::notify::{
    JiraConfig, Rapid7Config, ServiceNowConfig, SlackConfig, TeamsConfig, WebhookConfig,
};
use fimd::config::{NotifyConfig, Secret};

use crate::common::*;
use crate::mock::{MockHttp, Reply};

fn slack_cfg(url: String) -> NotifyConfig {
    NotifyConfig {
        slack: Some(SlackConfig {
            webhook_url: Secret::new(url),
            ..Default::default()
        }),
        ..notify_cfg()
    }
}

#[tokio::test]
async fn error_500_then_200_is_delivered_on_attempt_two() {
    let mock = MockHttp::start(
        vec![Reply::body(500, "rollup_error")],
        Reply::body(200, "ok"),
    )
    .await;
    let cfg = slack_cfg(mock.url("/s"));
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    insert_events(&pool, &[ev("/etc/a.conf")], &["slack"], T0).await;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();

    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    assert_eq!((r.requests, r.retried), (1, 1));
    let row = rows(&pool, "slack").await.remove(0);
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 1));
    assert!(
        row.next_attempt_ns >= T0 + SEC,
        "first backoff is at least backoff_initial"
    );
    assert_eq!(row.last_error.as_deref(), Some("HTTP 500: rollup_error"));

    // Not due yet: no request.
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0 + SEC / 2)
        .await
        .unwrap();
    assert_eq!(r.requests, 0);
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, row.next_attempt_ns)
        .await
        .unwrap();
    assert_eq!((r.requests, r.delivered), (1, 1));
    let row = rows(&pool, "slack").await.remove(0);
    assert_eq!(
        (row.state.as_str(), row.attempts, row.last_error),
        ("delivered", 2, None)
    );
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn throttle_429_retry_after_pauses_the_whole_sink_then_succeeds() {
    let mock = MockHttp::start(
        vec![Reply::status(429).header("Retry-After", "120")],
        Reply::body(200, "ok"),
    )
    .await;
    let cfg = slack_cfg(mock.url("/s"));
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    insert_events(&pool, &[ev("/etc/a.conf")], &["slack"], T0).await;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    assert_eq!((r.requests, r.retried), (1, 1));

    // A new change arrives during the pause: it waits too (the sink is paused, not the row).
    insert_events(&pool, &[ev("/etc/b.conf")], &["slack"], T0 + 10 * SEC).await;
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0 + 119 * SEC)
        .await
        .unwrap();
    assert_eq!(r.requests, 0);
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0 + 120 * SEC)
        .await
        .unwrap();
    assert_eq!((r.requests, r.delivered), (1, 2));
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].json()["text"], "[fimd] web1: 2 file changes");
}

#[tokio::test]
async fn unauthorized_401_parks_logs_once_and_is_never_retried() {
    let mock = MockHttp::start(vec![], Reply::body(401, "invalid_token")).await;
    let cfg = slack_cfg(mock.url("/s"));
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    insert_events(
        &pool,
        &[ev("/etc/a.conf"), ev("/etc/b.conf")],
        &["slack"],
        T0,
    )
    .await;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let (logs, _guard) = capture_logs();
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    assert_eq!((r.requests, r.parked), (1, 2));
    for t in [T0 + 3600 * SEC, T0 + 7200 * SEC] {
        assert_eq!(
            alert::deliver_due_at(&pool, &sinks, &cfg, t)
                .await
                .unwrap()
                .requests,
            0
        );
    }
    assert_eq!(mock.requests().len(), 1);
    let rs = rows(&pool, "slack").await;
    assert!(rs.iter().all(|r| r.state == "parked" && r.attempts == 1));
    assert_eq!(rs[0].last_error.as_deref(), Some("HTTP 401: invalid_token"));
    let text = logs.text();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0].contains("sink=\"slack\"") && errors[0].contains("status=401"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("invalid_token"), "{}", errors[0]);

    // After fixing the config, parked rows can be requeued.
    assert_eq!(
        alert::outbox::requeue_parked(&pool, "slack", T0)
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn rows_older_than_retry_for_fail_with_a_warning() {
    let mock = MockHttp::start(vec![], Reply::status(503)).await;
    let cfg = NotifyConfig {
        retry_for: Duration::from_secs(3600),
        ..slack_cfg(mock.url("/s"))
    };
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    insert_events(&pool, &[ev("/etc/a.conf")], &["slack"], T0).await;
    // A row for a sink that is no longer configured expires as well.
    insert_events(&pool, &[ev("/etc/b.conf")], &["teams"], T0).await;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let (logs, _guard) = capture_logs();
    assert_eq!(
        alert::deliver_due_at(&pool, &sinks, &cfg, T0)
            .await
            .unwrap()
            .retried,
        1
    );
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0 + 3601 * SEC)
        .await
        .unwrap();
    assert_eq!((r.failed, r.requests), (2, 0));
    let row = rows(&pool, "slack").await.remove(0);
    assert_eq!(row.state, "failed");
    assert!(row.last_error.unwrap_or_default().contains("HTTP 503"));
    assert_eq!(count_state(&pool, "teams", "failed").await, 1);
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("marked failed") && text.contains("sink=slack"),
        "{text}"
    );
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(total, 2, "rows are never deleted");
}

/// The burst: 10,000 changes committed at once, six sinks, `batch_window = 10s`, time driven
/// window by window. Request counts are printed for the record.
#[tokio::test]
async fn a_burst_of_10000_changes_gives_a_bounded_number_of_requests() {
    let mock = MockHttp::start(vec![], Reply::status(200)).await;
    let cfg = NotifyConfig {
        batch_window: Duration::from_secs(10),
        slack: Some(SlackConfig {
            webhook_url: Secret::new(mock.url("/slack")),
            ..Default::default()
        }),
        teams: Some(TeamsConfig {
            webhook_url: Secret::new(mock.url("/teams")),
            ..Default::default()
        }),
        jira: Some(JiraConfig {
            url: mock.url("/jira"),
            user: "u".into(),
            api_token: Secret::new("t"),
            project_key: "SEC".into(),
            ..JiraConfig::default()
        }),
        servicenow: Some(ServiceNowConfig {
            url: mock.url("/sn"),
            user: "u".into(),
            password: Secret::new("p"),
            ..ServiceNowConfig::default()
        }),
        rapid7: Some(Rapid7Config {
            api_key: Secret::new("k"),
            url: Secret::new(mock.url("/r7")),
            ..Rapid7Config::default()
        }),
        webhook: Some(WebhookConfig {
            url: Secret::new(mock.url("/hook")),
            ..WebhookConfig::default()
        }),
        ..notify_cfg()
    };
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let names = sinks.names();
    let events: Vec<NewEvent> = (0..10_000)
        .map(|i| ev(&format!("/etc/burst/file{i:05}.conf")))
        .collect();
    insert_events(&pool, &events, &names, T0).await;

    let mut t = T0;
    let mut windows = 0;
    while sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
        .fetch_one(&pool)
        .await
        .unwrap()
        > 0
    {
        alert::deliver_due_at(&pool, &sinks, &cfg, t).await.unwrap();
        t += 10 * SEC;
        windows += 1;
        assert!(windows <= 25, "too many windows");
    }
    let reqs = mock.requests();
    let count = |prefix: &str| reqs.iter().filter(|r| r.path.starts_with(prefix)).count();
    let counts: Vec<(&str, usize)> = ["/slack", "/teams", "/jira", "/sn", "/r7", "/hook"]
        .iter()
        .map(|p| (*p, count(p)))
        .collect();
    println!("burst of 10,000 changes: requests per sink {counts:?} over {windows} windows of 10s");
    assert_eq!(
        counts,
        [
            ("/slack", 1),
            ("/teams", 1),
            ("/jira", 1),
            ("/sn", 1),
            ("/r7", 1),
            ("/hook", 20)
        ]
    );
    for name in names {
        assert_eq!(
            count_state(&pool, name, "delivered").await,
            10_000,
            "{name}"
        );
    }
    let slack = reqs.iter().find(|r| r.path == "/slack").unwrap();
    assert!(
        slack.body.len() <= 12_000,
        "slack body {}",
        slack.body.len()
    );
    let v = slack.json();
    assert_eq!(v["text"], "[fimd] web1: 10,000 file changes");
    assert!(slack.text().contains("and 9,992 more changes"));
    let teams = reqs.iter().find(|r| r.path == "/teams").unwrap();
    assert!(teams.body.len() <= 27_000);
    assert!(teams.text().contains("and 9,990 more changes"));
    let hooks: Vec<_> = reqs.iter().filter(|r| r.path == "/hook").collect();
    assert!(hooks
        .iter()
        .all(|r| r.json()["events"].as_array().map(Vec::len) == Some(500)));
}
