//! Migration 4 on a database written by an earlier fimd: ids, rows and outbox references
//! survive, ids are never reused, and every event gets a `uid`.

use std::borrow::Cow;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::SqlitePool;

use super::Store;
use crate::store::EventFilter;

/// A database at schema 3 (before Part 2) with three events and their outbox rows.
async fn schema_3_database(path: &std::path::Path) {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.expect("connect");
    let mut migrator = sqlx::migrate!("src/store/migrations");
    migrator.migrations = Cow::Owned(
        migrator
            .migrations
            .iter()
            .filter(|m| m.version <= 3)
            .cloned()
            .collect(),
    );
    migrator.run(&pool).await.expect("schema 3");
    for (id, path, sensitive) in [
        (1, "/etc/a.conf", 0),
        (2, "/etc/sudoers", 0),
        (5, "/etc/k.key", 1),
    ] {
        sqlx::query(
            "INSERT INTO events (id, time, time_ns, host, source, event, path, changed, old, new, sensitive, diff) \
             VALUES (?, '2026-11-30T08:00:00Z', 1, 'web1', 'check', 'modified', ?, '[\"sha256\"]', NULL, NULL, ?, NULL)",
        )
        .bind(id)
        .bind(path.as_bytes())
        .bind(sensitive)
        .execute(&pool)
        .await
        .expect("event");
        sqlx::query("INSERT INTO outbox (event_id, sink, created_ns) VALUES (?, 'webhook', 1)")
            .bind(id)
            .execute(&pool)
            .await
            .expect("outbox");
    }
    pool.close().await;
}

#[tokio::test]
async fn upgrade_keeps_ids_outbox_and_never_reuses_an_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fimd.db");
    schema_3_database(&path).await;
    let store = Store::open(&path).await.expect("upgrade");
    let instance = store.instance();
    assert_eq!(instance.len(), 36, "{instance}");
    let events = store.events(&EventFilter::default()).await.expect("events");
    let ids: Vec<Option<i64>> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![Some(1), Some(2), Some(5)]);
    assert_eq!(events[2].uid, Some(format!("{instance}:5")));
    let outbox: Vec<(i64,)> = sqlx::query_as("SELECT event_id FROM outbox ORDER BY event_id")
        .fetch_all(store.pool())
        .await
        .expect("outbox");
    assert_eq!(outbox, vec![(1,), (2,), (5,)]);
    // The foreign key now names the rebuilt table.
    let fk: Vec<(String,)> =
        sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_list('outbox')")
            .fetch_all(store.pool())
            .await
            .expect("fk");
    assert_eq!(fk, vec![("events".to_string(),)]);
    // Delete the newest event: its id is still never given again.
    sqlx::query("DELETE FROM outbox WHERE event_id = 5")
        .execute(store.pool())
        .await
        .expect("delete outbox");
    sqlx::query("DELETE FROM events WHERE id = 5")
        .execute(store.pool())
        .await
        .expect("delete");
    let mut e = crate::event::Event::new(
        crate::event::Source::Check,
        crate::event::EventKind::Added,
        "/etc/new.conf",
    );
    e.time = "2026-12-01T00:00:00Z".into();
    let batch = super::Batch {
        events: vec![e],
        ..super::Batch::default()
    };
    let committed = store.commit(batch, &[]).await.expect("commit");
    assert_eq!(committed[0].id, Some(6));
    assert_eq!(committed[0].uid, Some(format!("{instance}:6")));
    // Old events are rated by the explain stage's rules at the next start.
    let policy = crate::policy::Policy::from_config(
        &crate::config::Config::default(),
        std::path::Path::new("t"),
    )
    .expect("policy");
    let explainer = crate::explain::Explainer::without_packages(std::sync::Arc::new(policy));
    let rated = crate::explain::rate_unrated(&store, &explainer)
        .await
        .expect("rate");
    assert_eq!(rated, 2);
    let events = store.events(&EventFilter::default()).await.expect("events");
    let sev: Vec<&str> = events.iter().map(|e| e.severity.as_str()).collect();
    assert_eq!(sev, vec!["medium", "high", "medium"]);
    store.close().await;
}
