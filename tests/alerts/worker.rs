//! The real-time entry points: the daemon worker (stop mid-outage, restart on the same
//! database file), the bounded flush of `fimd check`, and `notify-test`.

use std::sync::Arc;
use std::time::Duration;

use fimd::alert::{self, Sinks};
use fimd::config::notify::{JiraConfig, SlackConfig, WebhookConfig};
use fimd::config::{NotifyConfig, Secret};
use tokio_util::sync::CancellationToken;

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
async fn a_new_worker_resumes_after_a_restart_mid_outage() {
    let dir = tempfile::tempdir().unwrap();
    let down = MockHttp::start(vec![], Reply::status(503)).await;
    let cfg = NotifyConfig {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..slack_cfg(down.url("/s"))
    };
    {
        let pool = open_db(dir.path()).await;
        insert_events(
            &pool,
            &[ev("/etc/a.conf")],
            &["slack"],
            fimd::timefmt::now_ns(),
        )
        .await;
        let sinks = Sinks::from_config(&cfg, "web1").unwrap();
        let token = CancellationToken::new();
        let wake = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(alert::run_worker(
            pool.clone(),
            sinks,
            cfg.clone(),
            wake.clone(),
            token.clone(),
        ));
        wake.notify_one();
        down.wait_for(2, Duration::from_secs(10)).await;
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("worker stops")
            .unwrap();
        let row = rows(&pool, "slack").await.remove(0);
        assert_eq!(row.state, "pending");
        assert!(row.attempts >= 2);
        pool.close().await;
    }
    // "Restart": a new pool on the same file, a new worker, the sink back up.
    let up = MockHttp::start(vec![], Reply::body(200, "ok")).await;
    let cfg = NotifyConfig {
        slack: Some(SlackConfig {
            webhook_url: Secret::new(up.url("/s")),
            ..Default::default()
        }),
        ..cfg
    };
    let pool = open_db(dir.path()).await;
    let before = rows(&pool, "slack").await.remove(0).attempts;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let token = CancellationToken::new();
    let task = tokio::spawn(alert::run_worker(
        pool.clone(),
        sinks,
        cfg,
        Arc::new(tokio::sync::Notify::new()),
        token.clone(),
    ));
    let p = pool.clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let p = p.clone();
            async move { count_state(&p, "slack", "delivered").await == 1 }
        })
        .await
    );
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("worker stops")
        .unwrap();
    let row = rows(&pool, "slack").await.remove(0);
    assert_eq!(row.attempts, before + 1);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn flush_is_one_batch_without_the_batch_window() {
    // `fimd check` flushes: 600 alerts go out at once in as many requests as the sink's row
    // limit needs (500 + 100), not one per 10 s window.
    let mock = MockHttp::start(vec![], Reply::status(200)).await;
    let cfg = NotifyConfig {
        batch_window: Duration::from_secs(10),
        webhook: Some(WebhookConfig {
            url: Secret::new(mock.url("/hook")),
            ..WebhookConfig::default()
        }),
        ..notify_cfg()
    };
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    let events: Vec<NewEvent> = (0..600).map(|i| ev(&format!("/etc/f{i}"))).collect();
    insert_events(&pool, &events, &["webhook"], fimd::timefmt::now_ns()).await;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let started = std::time::Instant::now();
    let report = alert::flush(&pool, &sinks, &cfg, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        (
            report.done.requests,
            report.done.delivered,
            report.still_pending
        ),
        (2, 600, 0)
    );
}

#[tokio::test]
async fn flush_waits_a_bounded_time_and_leaves_the_rest_queued() {
    // A failing sink: the retries fall due after `max_wait`, so the flush returns and the
    // alerts stay queued.
    let mock = MockHttp::start(vec![], Reply::status(503)).await;
    let cfg = NotifyConfig {
        backoff_initial: Duration::from_secs(10),
        webhook: Some(WebhookConfig {
            url: Secret::new(mock.url("/hook")),
            ..WebhookConfig::default()
        }),
        ..notify_cfg()
    };
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    let events: Vec<NewEvent> = (0..600).map(|i| ev(&format!("/etc/f{i}"))).collect();
    insert_events(&pool, &events, &["webhook"], fimd::timefmt::now_ns()).await;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let started = std::time::Instant::now();
    let report = alert::flush(&pool, &sinks, &cfg, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        (
            report.done.requests,
            report.done.delivered,
            report.still_pending
        ),
        (1, 0, 600)
    );
}

#[tokio::test]
async fn notify_test_reports_each_sink() {
    let ok = MockHttp::start(vec![], Reply::body(200, "ok")).await;
    let bad = MockHttp::start(
        vec![],
        Reply::body(403, r#"{"errorMessages":["no permission"]}"#),
    )
    .await;
    let cfg = NotifyConfig {
        slack: Some(SlackConfig {
            webhook_url: Secret::new(ok.url("/s")),
            ..Default::default()
        }),
        jira: Some(JiraConfig {
            url: bad.url(""),
            user: "u".into(),
            api_token: Secret::new("t"),
            project_key: "SEC".into(),
            ..JiraConfig::default()
        }),
        ..notify_cfg()
    };
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let results = alert::notify_test(&sinks).await;
    assert_eq!(
        results[0],
        ("slack".to_string(), Ok("HTTP 200".to_string()))
    );
    assert_eq!(results[1].0, "jira");
    assert_eq!(
        results[1].1,
        Err(r#"HTTP 403: {"errorMessages":["no permission"]}"#.to_string())
    );
    assert_eq!(ok.requests()[0].json()["text"], "[fimd] web1: test alert");
    assert_eq!(bad.requests()[0].path, "/rest/api/3/issue");
}
