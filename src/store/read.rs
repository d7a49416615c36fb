//! Reads: the baseline (whole, or for a set of paths), stored text contents, the event history,
//! meta facts and status counts. Safe while the daemon writes (WAL readers never block).

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Store, StoreError};
use crate::event::Event;
use crate::policy::Patterns;
use crate::state::{FileKind, FileState, Recorded};

pub(super) const BASELINE_SELECT: &str =
    "SELECT path, kind, size, mode, uid, gid, mtime_ns, ctime_ns, inode, nlink, \
     sha256, link_target, sensitive, hashed_at_ns, package, attrs, mac FROM baseline";

/// Which events `fimd events` prints.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub since_ns: Option<i64>,
    pub path: Option<Patterns>,
    /// Only the last N.
    pub limit: Option<usize>,
    /// Only events of this severity and above.
    pub min_severity: Option<crate::event::Severity>,
}

/// What `fimd status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    pub database: String,
    pub database_bytes: u64,
    pub baseline_entries: i64,
    pub baseline_files: i64,
    pub baseline_at: Option<String>,
    pub last_full_scan: Option<String>,
    pub events: i64,
    /// The oldest event kept (retention prunes older ones).
    pub oldest_event: Option<OldestEvent>,
    pub outbox_pending: i64,
    pub outbox_parked: i64,
    pub outbox_failed: i64,
    pub host: Option<String>,
    /// Facts the daemon publishes (`daemon.*` meta keys): pid, watches, fallbacks, queue depth.
    pub daemon: std::collections::BTreeMap<String, String>,
    /// `off`, or `on (key <id>)`.
    pub tamper_evidence: String,
    /// The newest event's uid and chained MAC (hex), when tamper evidence is on.
    pub chain_head: Option<ChainHead>,
}

/// The oldest event in the history.
#[derive(Debug, Serialize)]
pub struct OldestEvent {
    pub id: i64,
    pub time: String,
}

/// The head of the event chain (what the fleet heartbeat carries).
#[derive(Debug, Serialize)]
pub struct ChainHead {
    pub uid: String,
    pub mac: String,
}

/// A failure of [`Store::for_each_event`]: reading, or the caller's own.
#[derive(Debug)]
pub enum EventsError<E> {
    Store(StoreError),
    Each(E),
}

impl<E> From<StoreError> for EventsError<E> {
    fn from(e: StoreError) -> Self {
        EventsError::Store(e)
    }
}

/// The query of [`Store::for_each_event`] (binds: `since_ns` twice when set). Only the
/// primary key orders it, never a sort (which would hold every row): `--since` becomes an id
/// range (the first event at or after it, found through `events_time`), and the unary `+`
/// keeps SQLite from ordering by another index. Severity is filtered here; an event not yet
/// rated counts as medium, as it shows.
fn events_sql(filter: &EventFilter, newest_first: bool) -> String {
    let mut sql = String::from("SELECT * FROM events WHERE 1");
    if filter.since_ns.is_some() {
        sql += " AND id >= (SELECT MIN(id) FROM events WHERE time_ns >= ?) AND +time_ns >= ?";
    }
    if let Some(min) = filter.min_severity {
        let names: Vec<String> = crate::event::Severity::ALL
            .into_iter()
            .filter(|s| *s >= min)
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        sql += &format!(" AND (+severity IN ({})", names.join(", "));
        if crate::event::Severity::Medium >= min {
            sql += " OR +severity IS NULL";
        }
        sql += ")";
    }
    sql += if newest_first {
        " ORDER BY id DESC"
    } else {
        " ORDER BY id"
    };
    sql
}

/// The query of [`Store::stream_rows`]. Both orders come from an index, never a sort (a sort
/// holds every row in memory): the primary key, and for directories the index
/// `baseline_dirs_walk_order` (migration 0003).
fn stream_sql(dirs: bool) -> String {
    if dirs {
        format!("{BASELINE_SELECT} WHERE kind = 'dir' ORDER BY path || X'2F'")
    } else {
        format!("{BASELINE_SELECT} WHERE kind != 'dir' ORDER BY path")
    }
}

impl Store {
    pub(super) fn recorded_from_row(
        &self,
        row: &SqliteRow,
    ) -> Result<(PathBuf, Recorded), StoreError> {
        let get = |e: sqlx::Error| self.corrupt(e.to_string());
        let path: Vec<u8> = row.try_get(0).map_err(get)?;
        let kind: String = row.try_get(1).map_err(get)?;
        let kind = FileKind::parse(&kind)
            .ok_or_else(|| self.corrupt(format!("unknown file kind {kind:?}")))?;
        let sha: Option<Vec<u8>> = row.try_get(10).map_err(get)?;
        let sha256 = match sha {
            Some(v) => Some(
                <[u8; 32]>::try_from(v.as_slice())
                    .map_err(|_| self.corrupt("sha256 is not 32 bytes"))?,
            ),
            None => None,
        };
        let state = FileState {
            kind,
            size: row.try_get::<i64, _>(2).map_err(get)? as u64,
            mode: row.try_get::<i64, _>(3).map_err(get)? as u32,
            uid: row.try_get::<i64, _>(4).map_err(get)? as u32,
            gid: row.try_get::<i64, _>(5).map_err(get)? as u32,
            mtime_ns: row.try_get(6).map_err(get)?,
            ctime_ns: row.try_get(7).map_err(get)?,
            inode: row.try_get::<i64, _>(8).map_err(get)? as u64,
            nlink: row.try_get::<i64, _>(9).map_err(get)? as u64,
            sha256,
            link_target: row.try_get(11).map_err(get)?,
            attrs: crate::state::SecAttrs::from_column(
                row.try_get::<Option<String>, _>(15)
                    .map_err(get)?
                    .as_deref(),
            ),
        };
        let mut recorded = Recorded {
            state,
            sensitive: row.try_get(12).map_err(get)?,
            hashed_at_ns: row.try_get(13).map_err(get)?,
            package: row.try_get(14).map_err(get)?,
            tampered: false,
        };
        let path = PathBuf::from(OsStr::from_bytes(&path));
        // Tamper evidence: a row whose MAC does not match was written outside fimd.
        if let Some(key) = self.mac_key() {
            let mac: Option<Vec<u8>> = row.try_get(16).map_err(get)?;
            recorded.tampered = mac.as_deref() != Some(key.baseline(&path, &recorded).as_slice());
        }
        Ok((path, recorded))
    }

    /// Stream baseline rows to `tx` in chunks, without holding the baseline in memory: the
    /// non-directories in path byte order (the primary key's order), or (`dirs`) the
    /// directories in the order of their path with a `/` appended, which is the order the
    /// walk visits them in. Stops early when `tx` is closed.
    pub async fn stream_rows(
        &self,
        dirs: bool,
        tx: tokio::sync::mpsc::Sender<Vec<(PathBuf, Recorded)>>,
    ) -> Result<(), StoreError> {
        const ROWS: usize = 1024;
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(stream_sql(dirs))).fetch(&self.pool);
        let mut chunk = Vec::with_capacity(ROWS);
        while let Some(row) = rows.try_next().await.map_err(|e| self.sql(e))? {
            chunk.push(self.recorded_from_row(&row)?);
            if chunk.len() == ROWS
                && tx
                    .send(std::mem::replace(&mut chunk, Vec::with_capacity(ROWS)))
                    .await
                    .is_err()
            {
                return Ok(());
            }
        }
        if !chunk.is_empty() {
            let _ = tx.send(chunk).await;
        }
        Ok(())
    }

    /// Baseline rows for these paths and, for each `prefix`, every row below it.
    pub async fn load_some(
        &self,
        paths: &[PathBuf],
        prefixes: &[PathBuf],
    ) -> Result<HashMap<PathBuf, Recorded>, StoreError> {
        let mut map = HashMap::new();
        for chunk in paths.chunks(30_000) {
            let mut q = QueryBuilder::<Sqlite>::new(BASELINE_SELECT);
            q.push(" WHERE ");
            super::push_path_list(&mut q, chunk);
            for row in q
                .build()
                .persistent(false)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.sql(e))?
            {
                let (p, r) = self.recorded_from_row(&row)?;
                map.insert(p, r);
            }
        }
        for prefix in prefixes {
            // Rows strictly below `prefix/`: the byte range ["prefix/", "prefix0") ('0' follows '/').
            let mut lo = prefix.as_os_str().as_bytes().to_vec();
            lo.push(b'/');
            let mut hi = prefix.as_os_str().as_bytes().to_vec();
            hi.push(b'0');
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{BASELINE_SELECT} WHERE path >= ? AND path < ?"
            )))
            .bind(lo)
            .bind(hi)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.sql(e))?;
            for row in &rows {
                let (p, r) = self.recorded_from_row(row)?;
                map.insert(p, r);
            }
        }
        Ok(map)
    }

    /// Stored text contents of these paths.
    pub async fn load_texts(
        &self,
        paths: &[&Path],
    ) -> Result<HashMap<PathBuf, Vec<u8>>, StoreError> {
        let mut map = HashMap::new();
        for chunk in paths.chunks(30_000) {
            let mut q = QueryBuilder::<Sqlite>::new("SELECT path, data FROM contents WHERE ");
            super::push_path_list(&mut q, chunk);
            for row in q
                .build()
                .persistent(false)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.sql(e))?
            {
                let p: Vec<u8> = row.try_get(0).map_err(|e| self.sql(e))?;
                let d: Vec<u8> = row.try_get(1).map_err(|e| self.sql(e))?;
                map.insert(PathBuf::from(OsStr::from_bytes(&p)), d);
            }
        }
        Ok(map)
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.sql(e))
    }

    /// Refuse when another `fimd run` works on this database: its published pid is alive and
    /// still a fimd process (a pid left by a crash, or reused since, does not count). `init`
    /// would hold the database for its whole load and pull the baseline from under the
    /// daemon; a second daemon would record every change twice.
    pub async fn ensure_no_daemon(&self) -> Result<(), StoreError> {
        let pid = self
            .meta("daemon.pid")
            .await?
            .and_then(|p| p.parse::<u32>().ok());
        match pid {
            Some(pid) if pid != std::process::id() => {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "fimd" {
                    return Err(StoreError::DaemonRunning {
                        path: self.path.clone(),
                        pid,
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Up to `limit` events not yet rated (recorded before severities existed), oldest first.
    pub async fn unrated_events(&self, limit: i64) -> Result<Vec<Event>, StoreError> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM events WHERE severity IS NULL ORDER BY id LIMIT ?")
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.sql(e))?;
        super::events::load_events(&self.pool, &ids, None)
            .await
            .map_err(|e| self.sql(e))
    }

    /// A complete baseline exists (an interrupted `init` leaves none).
    pub async fn has_baseline(&self) -> Result<bool, StoreError> {
        Ok(self.meta("baseline_at").await?.is_some())
    }

    /// The history, oldest first, filtered, handed to `each` one event at a time: memory
    /// stays flat whatever the history's size. Time and severity are filtered in SQL; the
    /// `--path` glob (globset semantics, which SQL's GLOB does not share) as rows stream by.
    /// With a limit the rows are read newest first and reading stops at the N-th match.
    pub async fn for_each_event<E>(
        &self,
        filter: &EventFilter,
        mut each: impl FnMut(Event) -> Result<(), E>,
    ) -> Result<(), EventsError<E>> {
        let Some(limit) = filter.limit else {
            return self
                .stream_events(filter, false, |e| {
                    each(e).map_err(EventsError::Each)?;
                    Ok(true)
                })
                .await;
        };
        let mut last = std::collections::VecDeque::with_capacity(limit.min(4096));
        if limit > 0 {
            self.stream_events(filter, true, |e| {
                last.push_front(e);
                Ok(last.len() < limit)
            })
            .await?;
        }
        for e in last {
            each(e).map_err(EventsError::Each)?;
        }
        Ok(())
    }

    /// The events `filter` selects (its `--path` glob applied as rows stream by), oldest or
    /// newest first, handed to `take` until it returns false.
    async fn stream_events<E>(
        &self,
        filter: &EventFilter,
        newest_first: bool,
        mut take: impl FnMut(Event) -> Result<bool, EventsError<E>>,
    ) -> Result<(), EventsError<E>> {
        let sql = events_sql(filter, newest_first);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(since) = filter.since_ns {
            q = q.bind(since).bind(since);
        }
        let mut rows = q.fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(|e| self.sql(e))? {
            let e = super::events::event_from_row(&row).map_err(|e| self.sql(e))?;
            let selected = filter
                .path
                .as_ref()
                .is_none_or(|p| p.matches(&e.path_buf()));
            if selected && !take(e)? {
                break;
            }
        }
        Ok(())
    }

    /// The history, oldest first, filtered, collected (see [`Store::for_each_event`]).
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        self.for_each_event(filter, |e| {
            out.push(e);
            Ok::<(), std::convert::Infallible>(())
        })
        .await
        .map_err(|e| match e {
            EventsError::Store(e) => e,
            EventsError::Each(never) => match never {},
        })?;
        Ok(out)
    }

    /// Events by id, in id order, with their whole diffs.
    pub async fn events_by_ids(&self, ids: &[i64]) -> Result<Vec<Event>, StoreError> {
        super::events::load_events(&self.pool, ids, Some(usize::MAX))
            .await
            .map_err(|e| self.sql(e))
    }

    pub async fn status(&self) -> Result<Status, StoreError> {
        let count = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.sql(e))
        };
        let mut database_bytes = 0;
        for suffix in ["", "-wal"] {
            let mut p = self.path.as_os_str().to_owned();
            p.push(suffix);
            database_bytes += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        }
        let daemon_rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM meta WHERE key LIKE 'daemon.%'")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.sql(e))?;
        Ok(Status {
            database: self.path.display().to_string(),
            database_bytes,
            baseline_entries: count("SELECT COUNT(*) FROM baseline").await?,
            baseline_files: count("SELECT COUNT(*) FROM baseline WHERE kind != 'dir'").await?,
            baseline_at: self.meta("baseline_at").await?,
            last_full_scan: self.meta("last_full_scan").await?,
            events: count("SELECT COUNT(*) FROM events").await?,
            oldest_event: self
                .oldest_event()
                .await?
                .map(|(id, time)| OldestEvent { id, time }),
            outbox_pending: count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").await?,
            outbox_parked: count("SELECT COUNT(*) FROM outbox WHERE state = 'parked'").await?,
            outbox_failed: count("SELECT COUNT(*) FROM outbox WHERE state = 'failed'").await?,
            host: self.meta("host").await?,
            daemon: daemon_rows
                .into_iter()
                .map(|(k, v)| (k.trim_start_matches("daemon.").to_string(), v))
                .collect(),
            tamper_evidence: match self.tamper_key_id().await? {
                Some(id) => format!("on (key {id})"),
                None => "off".to_string(),
            },
            chain_head: self
                .chain_head()
                .await?
                .map(|(uid, mac)| ChainHead { uid, mac }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full scans must stream the baseline: no query plan step may sort it.
    #[tokio::test]
    async fn streams_are_served_by_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("fimd.db"))
            .await
            .expect("open");
        for dirs in [false, true] {
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {}",
                stream_sql(dirs)
            )))
            .fetch_all(store.pool())
            .await
            .unwrap_or_else(|e| panic!("plan: {e}"))
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
            assert!(!plan.is_empty());
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE")),
                "dirs={dirs}: {plan:?}"
            );
        }
    }

    /// `fimd events` must stream in primary-key order whatever the filters: a sort (TEMP
    /// B-TREE) would hold the whole history in memory (#16 item 7: 3.4 GB at 1.2M events).
    #[tokio::test]
    async fn event_queries_stream_in_id_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("fimd.db"))
            .await
            .expect("open");
        let severities = [None, Some(crate::event::Severity::High)];
        for since in [None, Some(0)] {
            for min_severity in severities {
                for newest_first in [false, true] {
                    let filter = EventFilter {
                        since_ns: since,
                        min_severity,
                        ..EventFilter::default()
                    };
                    let sql = events_sql(&filter, newest_first);
                    let mut q =
                        sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
                    if let Some(s) = since {
                        q = q.bind(s).bind(s);
                    }
                    let plan: Vec<String> = q
                        .fetch_all(store.pool())
                        .await
                        .unwrap_or_else(|e| panic!("plan of {sql}: {e}"))
                        .iter()
                        .map(|row| row.get::<String, _>("detail"))
                        .collect();
                    assert!(
                        plan.iter().all(|step| !step.contains("TEMP B-TREE")),
                        "{sql}: {plan:?}"
                    );
                }
            }
        }
    }
}
