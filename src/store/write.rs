//! Writes: one transaction per [`Batch`]; multi-row statements (SQLite allows 32 766 bound
//! variables per statement, and per-statement round trips dominate through sqlx).

use sqlx::{Connection, QueryBuilder, Sqlite, Transaction};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::mac::EventColumns;
use super::{Store, StoreError};
use crate::config::SinkRoute;
use crate::event::{Event, Severity};
use crate::state::Recorded;
use crate::timefmt::now_ns;

/// Everything one step of the pipeline changes, committed atomically.
#[derive(Debug, Default)]
pub struct Batch {
    /// Baseline rows to insert or replace.
    pub upserts: Vec<(PathBuf, Recorded)>,
    /// Baseline rows to delete (and their contents).
    pub deletes: Vec<PathBuf>,
    /// Text content to keep for the next diff.
    pub text_puts: Vec<(PathBuf, Vec<u8>)>,
    /// Bytes in `text_puts` (a batch is committed early when it holds many).
    pub text_bytes: usize,
    /// Content to forget (became sensitive, binary or too large).
    pub text_deletes: Vec<PathBuf>,
    /// Events to record; ids are assigned by [`Store::commit`].
    pub events: Vec<Event>,
    /// Meta facts to set in the same transaction.
    pub meta: Vec<(&'static str, String)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty()
            && self.deletes.is_empty()
            && self.text_puts.is_empty()
            && self.text_deletes.is_empty()
            && self.events.is_empty()
            && self.meta.is_empty()
    }
}

const BASELINE_COLS: usize = 17;
const EVENT_COLS: usize = 19;
const MAX_VARS: usize = 32_000;

fn bytes(p: &std::path::Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

impl Store {
    /// Commit a batch in one `BEGIN IMMEDIATE` transaction: baseline rows, contents, events
    /// (ids assigned here, returned in order) and one outbox row per event and sink. During a
    /// bulk load the batch is written into the bulk transaction instead.
    pub async fn commit(
        &self,
        mut batch: Batch,
        sinks: &[SinkRoute],
    ) -> Result<Vec<Event>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bulk) = self.bulk.lock().await.as_mut() {
            self.write_batch(&mut bulk.tx, &mut batch, sinks)
                .await
                .map_err(|e| self.sql(e))?;
            if let Some(file) = &bulk.file {
                super::start_writeback(file);
            }
            return Ok(batch.events);
        }
        let mut conn = self.pool.acquire().await.map_err(|e| self.sql(e))?;
        let result = async {
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            match self.write_batch(&mut tx, &mut batch, sinks).await {
                Ok(()) => tx.commit().await,
                Err(e) => {
                    // Rolled back here rather than on drop, so the error is the write's.
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        }
        .await;
        if let Err(e) = result {
            // A failed COMMIT (a full disk) may leave SQLite and sqlx disagreeing about the
            // open transaction ("non-zero transaction depth" on every later BEGIN): this
            // connection is never reused. SQLite rolls back what the file holds at next use.
            conn.close_on_drop();
            return Err(self.sql(e));
        }
        Ok(batch.events)
    }

    async fn write_batch(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        batch: &mut Batch,
        sinks: &[SinkRoute],
    ) -> Result<(), sqlx::Error> {
        for chunk in batch.deletes.chunks(MAX_VARS / 2) {
            for table in ["baseline", "contents"] {
                let mut q = QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE "));
                super::push_path_list(&mut q, chunk);
                q.build().persistent(false).execute(&mut **tx).await?;
            }
        }
        for chunk in batch.text_deletes.chunks(MAX_VARS) {
            let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM contents WHERE ");
            super::push_path_list(&mut q, chunk);
            q.build().persistent(false).execute(&mut **tx).await?;
        }
        for chunk in batch.upserts.chunks(MAX_VARS / BASELINE_COLS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT OR REPLACE INTO baseline (path, kind, size, mode, uid, gid, mtime_ns, ctime_ns, \
                 inode, nlink, sha256, link_target, sensitive, hashed_at_ns, package, attrs, mac) ",
            );
            let key = self.mac_key();
            q.push_values(chunk, |mut b, (path, r)| {
                let s = &r.state;
                let mac = key.as_ref().map(|k| k.baseline(path, r).to_vec());
                b.push_bind(bytes(path))
                    .push_bind(s.kind.as_str())
                    .push_bind(s.size as i64)
                    .push_bind(s.mode as i64)
                    .push_bind(s.uid as i64)
                    .push_bind(s.gid as i64)
                    .push_bind(s.mtime_ns)
                    .push_bind(s.ctime_ns)
                    .push_bind(s.inode as i64)
                    .push_bind(s.nlink as i64)
                    .push_bind(s.sha256.map(|h| h.to_vec()))
                    .push_bind(s.link_target.clone())
                    .push_bind(r.sensitive)
                    .push_bind(r.hashed_at_ns)
                    .push_bind(r.package.as_deref())
                    .push_bind(crate::state::SecAttrs::to_column(s.attrs.as_ref()))
                    .push_bind(mac);
            });
            q.build().persistent(false).execute(&mut **tx).await?;
        }
        // Contents: bounded by bytes as well as rows, so a statement stays small. The buffers
        // are moved into the statement: binding a slice would copy each one first (sqlx).
        let mut puts = std::mem::take(&mut batch.text_puts).into_iter().peekable();
        while puts.peek().is_some() {
            let (mut rows, mut size) = (Vec::new(), 0usize);
            while let Some(row) =
                puts.next_if(|_| rows.is_empty() || (size < 16 << 20 && rows.len() < MAX_VARS / 2))
            {
                size += row.1.len();
                rows.push(row);
            }
            let mut q =
                QueryBuilder::<Sqlite>::new("INSERT OR REPLACE INTO contents (path, data) ");
            q.push_values(rows, |mut b, (p, data)| {
                b.push_bind(p.into_os_string().into_vec()).push_bind(data);
            });
            q.build().persistent(false).execute(&mut **tx).await?;
        }
        if !batch.events.is_empty() {
            self.insert_events(tx, &mut batch.events, sinks).await?;
        }
        for (key, value) in &batch.meta {
            sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)")
                .bind(key)
                .bind(value)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn insert_events(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        events: &mut [Event],
        sinks: &[SinkRoute],
    ) -> Result<(), sqlx::Error> {
        // Ids are assigned here, inside the write transaction (no other writer): past both the
        // largest id and AUTOINCREMENT's high-water mark, so an id is never given twice even
        // when the newest rows were deleted.
        let next: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM events), 0), \
             COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)) + 1",
        )
        .fetch_one(&mut **tx)
        .await?;
        let instance = self.instance();
        for (i, e) in events.iter_mut().enumerate() {
            let id = next + i as i64;
            e.id = Some(id);
            e.uid = Some(format!("{instance}:{id}"));
        }
        // The rows exactly as stored, and (with a key) each one's MAC chained to the last.
        let rows: Vec<EventColumns> = events.iter().map(columns).collect();
        let macs: Vec<Option<Vec<u8>>> = match self.mac_key() {
            Some(key) => {
                let mut prev = super::tamper::last_event_mac(tx).await?;
                rows.iter()
                    .map(|r| {
                        prev = key.event(&prev, r);
                        Some(prev.to_vec())
                    })
                    .collect()
            }
            None => vec![None; rows.len()],
        };
        let pairs: Vec<(EventColumns, Option<Vec<u8>>)> = rows.into_iter().zip(macs).collect();
        for chunk in pairs.chunks(MAX_VARS / EVENT_COLS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (id, uid, time, time_ns, host, source, event, path, from_path, \
                 changed, old, new, sensitive, diff, severity, reason, actor, package, mac) ",
            );
            q.push_values(chunk, |mut b, (r, mac)| {
                b.push_bind(r.id)
                    .push_bind(r.uid.clone())
                    .push_bind(r.time.clone())
                    .push_bind(r.time_ns)
                    .push_bind(r.host.clone())
                    .push_bind(r.source.clone())
                    .push_bind(r.event.clone())
                    .push_bind(r.path.clone())
                    .push_bind(r.from_path.clone())
                    .push_bind(r.changed.clone())
                    .push_bind(r.old.clone())
                    .push_bind(r.new.clone())
                    .push_bind(r.sensitive)
                    .push_bind(r.diff.clone())
                    .push_bind(r.severity.clone())
                    .push_bind(r.reason.clone())
                    .push_bind(r.actor.clone())
                    .push_bind(r.package.clone())
                    .push_bind(mac.clone());
            });
            q.build().persistent(false).execute(&mut **tx).await?;
        }
        let rated: Vec<(i64, Severity)> = events
            .iter()
            .filter_map(|e| Some((e.id?, e.severity)))
            .collect();
        crate::alert::outbox::enqueue(tx, &rated, sinks, now_ns()).await?;
        Ok(())
    }

    /// Forget the baseline (and its contents) before `init --force`; events are kept. The
    /// database gets a new instance id: new events are a new history (`uid`s never repeat).
    pub async fn clear_baseline(&self) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.sql(e))?;
        for stmt in [
            "DELETE FROM meta WHERE key = 'baseline_at'",
            "DELETE FROM baseline",
            "DELETE FROM contents",
            "INSERT OR REPLACE INTO meta (key, value) SELECT 'instance', \
             substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-' \
             || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(h, 18, 3) || '-' || substr(h, 21, 12) \
             FROM (SELECT lower(hex(randomblob(16))) AS h)",
        ] {
            sqlx::query(stmt)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.sql(e))?;
        }
        let instance: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'instance'")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.sql(e))?;
        tx.commit().await.map_err(|e| self.sql(e))?;
        match self.instance.write() {
            Ok(mut g) => *g = instance,
            Err(poisoned) => *poisoned.into_inner() = instance,
        }
        Ok(())
    }

    /// Give events their severity and reason (events recorded before severities existed).
    pub async fn rate_events(&self, rated: &[(i64, Severity, String)]) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.sql(e))?;
        for (id, severity, reason) in rated {
            sqlx::query("UPDATE events SET severity = ?, reason = ? WHERE id = ?")
                .bind(severity.as_str())
                .bind(reason)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.sql(e))?;
        }
        // Updated in place: their MACs (and every later one's) follow the new content.
        if let Some(first) = rated.iter().map(|r| r.0).min() {
            self.rechain_in(&mut tx, first)
                .await
                .map_err(|e| self.sql(e))?;
        }
        tx.commit().await.map_err(|e| self.sql(e))
    }

    /// Set one meta fact on its own (daemon status, for example).
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Forget one meta fact (the daemon's pid when it stops).
    pub async fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM meta WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(|e| self.sql(e))?;
        Ok(())
    }
}

/// An event's row, column by column, as it is stored (and MAC'd).
fn columns(e: &Event) -> EventColumns {
    EventColumns {
        id: e.id.unwrap_or(0),
        uid: e.uid.clone(),
        time: e.time.clone(),
        time_ns: crate::timefmt::parse_since(&e.time).unwrap_or_else(now_ns),
        host: e.host.clone(),
        source: e.source.as_str().to_string(),
        event: e.event.as_str().to_string(),
        path: bytes(&e.path_buf()).to_vec(),
        from_path: e.from_buf().map(|p| bytes(&p).to_vec()),
        changed: serde_json::to_string(&e.changed).unwrap_or_else(|_| "[]".into()),
        old: json(&e.old),
        new: json(&e.new),
        sensitive: e.sensitive,
        diff: e.diff.clone(),
        severity: Some(e.severity.as_str().to_string()),
        reason: Some(e.reason.clone()),
        actor: json(&e.actor),
        package: json(&e.package),
    }
}

/// An optional object as JSON text (NULL when absent).
fn json<T: serde::Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().and_then(|v| serde_json::to_string(v).ok())
}
