//! Parked rows (issue #16 item 4): a redirect names its target (secrets redacted), a new
//! worker (start, reload) requeues what was parked, and each parked alert goes out once.

use std::sync::Arc;
use std::time::Duration;

use fimd::alert::{self, Sinks};
use fimd::config::notify::WebhookConfig;
use fimd::config::{NotifyConfig, Secret};
use tokio_util::sync::CancellationToken;

use crate::common::*;
use crate::mock::{MockHttp, Reply};

fn hook_cfg(url: String) -> NotifyConfig {
    NotifyConfig {
        webhook: Some(WebhookConfig {
            url: Secret::new(url),
            ..Default::default()
        }),
        ..notify_cfg()
    }
}

#[tokio::test]
async fn a_redirect_names_its_target_with_secrets_redacted() {
    // The sink moved, and its answer repeats the credential in the new address.
    let moved = MockHttp::start(
        vec![],
        Reply::status(302).header(
            "Location",
            "https://hooks.example.net/new/QTOKEN12345?token=QTOKEN12345",
        ),
    )
    .await;
    let cfg = hook_cfg(moved.url("/hook?token=QTOKEN12345"));
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    insert_events(&pool, &[ev("/etc/a.conf")], &["webhook"], T0).await;
    let (logs, _guard) = capture_logs();
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, T0)
        .await
        .unwrap();
    assert_eq!(r.parked, 1);
    let error = rows(&pool, "webhook")
        .await
        .remove(0)
        .last_error
        .unwrap_or_default();
    assert_eq!(
        error,
        "sink answered 302 to https://hooks.example.net/new/**REDACTED**?**REDACTED**: fix the URL"
    );
    let tested = alert::notify_test(&sinks).await;
    let text = format!("{tested:?} {}", logs.text());
    assert!(
        text.contains("sink answered 302 to https://hooks.example.net/new/"),
        "{text}"
    );
    assert!(!text.contains("QTOKEN12345"), "{text}");
}

#[tokio::test]
async fn a_new_worker_requeues_parked_rows_and_delivers_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(dir.path()).await;
    let moved = MockHttp::start(vec![], Reply::status(301)).await;
    let cfg = hook_cfg(moved.url("/old"));
    let ids = insert_events(
        &pool,
        &[ev("/etc/a.conf"), ev("/etc/b.conf")],
        &["webhook"],
        fimd::timefmt::now_ns(),
    )
    .await;
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let r = alert::deliver_due_at(&pool, &sinks, &cfg, fimd::timefmt::now_ns())
        .await
        .unwrap();
    assert_eq!(r.parked, 2);
    let parked = alert::outbox::parked(&pool).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].sink.as_str(), parked[0].rows), ("webhook", 2));
    assert!(
        parked[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("sink answered 301 (a redirect without a Location)")),
        "{parked:?}"
    );

    // The fixed configuration: the worker that starts with it sends the parked rows.
    let fixed = MockHttp::start(vec![], Reply::body(200, "ok")).await;
    let cfg = hook_cfg(fixed.url("/new"));
    let sinks = Sinks::from_config(&cfg, "web1").unwrap();
    let token = CancellationToken::new();
    let task = tokio::spawn(alert::run_worker(
        pool.clone(),
        sinks,
        cfg.clone(),
        Arc::new(tokio::sync::Notify::new()),
        token.clone(),
    ));
    assert!(
        wait_until(Duration::from_secs(10), || async {
            count_state(&pool, "webhook", "delivered").await == 2
        })
        .await,
        "{:?}",
        rows(&pool, "webhook").await
    );
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("worker stops")
        .unwrap();
    let mut sent: Vec<i64> = fixed
        .requests()
        .iter()
        .flat_map(|r| {
            r.json()["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| e["id"].as_i64())
        })
        .collect();
    sent.sort_unstable();
    assert_eq!(sent, ids, "each parked alert exactly once");
    assert!(alert::outbox::parked(&pool).await.unwrap().is_empty());
}
