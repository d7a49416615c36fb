//! Shared helpers: a real SQLite file with the real migrations, event + outbox inserts the way
//! the pipeline does them, config builders, a tracing capture, Basic-auth encoding.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fimd::config::NotifyConfig;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

pub const T0: i64 = 1_800_000_000_000_000_000;
pub const SEC: i64 = 1_000_000_000;

pub async fn open_db(dir: &Path) -> SqlitePool {
    let opts = SqliteConnectOptions::new()
        .filename(dir.join("fimd.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePool::connect_with(opts).await.expect("open db");
    sqlx::migrate!("src/store/migrations")
        .run(&pool)
        .await
        .expect("migrate");
    pool
}

/// One event to insert.
pub struct NewEvent {
    pub path: Vec<u8>,
    pub sensitive: bool,
    pub diff: Option<String>,
}

pub fn ev(path: &str) -> NewEvent {
    NewEvent {
        path: path.as_bytes().to_vec(),
        sensitive: false,
        diff: None,
    }
}

fn state_json(sha: &str) -> String {
    serde_json::json!({"type": "file", "size": 3214, "mode": "0644", "uid": 0, "gid": 0,
        "mtime": "2026-11-29T10:00:00.000000000Z", "ctime": "2026-11-29T10:00:00.000000000Z",
        "inode": 42, "nlink": 1, "sha256": sha})
    .to_string()
}

/// Insert `modified` events and their outbox rows in one transaction, as the pipeline does.
pub async fn insert_events(
    pool: &SqlitePool,
    events: &[NewEvent],
    sinks: &[&str],
    now_ns: i64,
) -> Vec<i64> {
    let mut tx = pool.begin().await.expect("begin");
    let mut ids = Vec::new();
    for chunk in events.chunks(1000) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO events (uid, time, time_ns, host, source, event, path, changed, old, new, sensitive, diff, severity, reason) ",
        );
        q.push_values(chunk, |mut b, e| {
            b.push_bind(format!("test-instance:{}", e.path.len()))
                .push_bind("2026-11-30T08:00:00.000000000Z")
                .push_bind(now_ns)
                .push_bind("web1")
                .push_bind("inotify")
                .push_bind("modified")
                .push_bind(e.path.clone())
                .push_bind(r#"["sha256","size","mtime"]"#)
                .push_bind(state_json(&"ab".repeat(32)))
                .push_bind(state_json(&"cd".repeat(32)))
                .push_bind(e.sensitive)
                .push_bind(e.diff.clone())
                // Rated as the explain stage rates an unexplained change.
                .push_bind(rated(e).as_str())
                .push_bind("changed outside any package transaction");
        });
        q.push(" RETURNING id");
        let rows: Vec<(i64,)> = q
            .build_query_as()
            .fetch_all(&mut *tx)
            .await
            .expect("insert events");
        ids.extend(rows.into_iter().map(|r| r.0));
    }
    ids.sort_unstable();
    let rated: Vec<(i64, fimd::event::Severity)> = ids
        .iter()
        .zip(events)
        .map(|(&id, e)| (id, rated(e)))
        .collect();
    let routes: Vec<fimd::config::SinkRoute> = sinks
        .iter()
        .map(|name| fimd::config::SinkRoute {
            name: leak(name),
            min: fimd::event::Severity::Low,
        })
        .collect();
    fimd::alert::enqueue(&mut tx, &rated, &routes, now_ns)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    ids
}

/// The severity the explain stage gives an unexplained change of this event.
fn rated(e: &NewEvent) -> fimd::event::Severity {
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&e.path));
    if e.sensitive || fimd::explain::rules::is_high_path(path) {
        fimd::event::Severity::High
    } else {
        fimd::event::Severity::Medium
    }
}

/// Sink names live as long as the test (SinkRoute names are `&'static str`).
fn leak(name: &str) -> &'static str {
    Box::leak(name.to_string().into_boxed_str())
}

/// Fast, deterministic settings: no batch window unless a test sets one.
pub fn notify_cfg() -> NotifyConfig {
    NotifyConfig {
        batch_window: Duration::ZERO,
        include_diff: false,
        retry_for: Duration::from_secs(24 * 3600),
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(300),
        ..NotifyConfig::default()
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Row {
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ns: i64,
    pub last_error: Option<String>,
    pub remote_id: Option<String>,
}

pub async fn rows(pool: &SqlitePool, sink: &str) -> Vec<Row> {
    sqlx::query_as("SELECT state, attempts, next_attempt_ns, last_error, remote_id FROM outbox WHERE sink = ? ORDER BY id")
        .bind(sink)
        .fetch_all(pool)
        .await
        .expect("rows")
}

pub async fn count_state(pool: &SqlitePool, sink: &str, state: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sink = ? AND state = ?")
        .bind(sink)
        .bind(state)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Collects everything `tracing` emits on this thread (TRACE and up) as text.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Install a thread-local subscriber; keep the guard alive for the test.
pub fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let sink = Captured::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (sink, tracing::subscriber::set_default(subscriber))
}

pub fn basic(user: &str, password: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// Poll `cond` until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond().await
}
