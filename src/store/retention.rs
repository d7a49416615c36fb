//! History retention (`[store] keep_events`): deleting events older than the retention
//! period, their diffs (a column of the event row) and their delivered outbox rows.
//!
//! Guarantees: never deletes an event that still has an undelivered alert (an outbox row
//! `pending`, `parked` or `failed`), nor the newest event (new events chain from it); works in
//! short transactions so the daemon's writes never wait long; keeps the tamper-evidence chain
//! verifiable across the holes it leaves (see [`Anchor`] and migration 0007). Freed pages go
//! back to the file system when the database uses incremental auto-vacuum (databases created
//! by this version); older databases reuse them instead, so they stop growing.

use std::collections::HashMap;

use sqlx::{Sqlite, Transaction};

use super::mac::CHAIN_START;
use super::{Store, StoreError};

/// Events deleted per transaction: short enough that the pipeline's commit never waits long.
const BATCH: i64 = 2_000;

/// What one [`Store::prune_events`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Events deleted.
    pub events: u64,
    /// Their (delivered) outbox rows deleted.
    pub outbox_rows: u64,
    /// Events older than the cutoff kept for their undelivered alerts.
    pub kept_undelivered: u64,
    /// Bytes given back to the file system (incremental vacuum).
    pub freed_bytes: u64,
}

/// The chain across a hole: the kept event it is stored for follows the kept event
/// `after_id` (0: none), and its MAC continues from `prev_mac` (the MAC of the last pruned
/// event before it; `None` when tamper evidence was off). `mac` signs the anchor.
#[derive(Debug, Clone)]
pub(super) struct Anchor {
    pub after_id: i64,
    pub prev_mac: Option<Vec<u8>>,
    pub mac: Option<Vec<u8>>,
}

impl Anchor {
    /// The MAC the anchored event's chain continues from.
    pub fn chain_from(&self) -> [u8; 32] {
        self.prev_mac
            .as_deref()
            .and_then(|m| <[u8; 32]>::try_from(m).ok())
            .unwrap_or(CHAIN_START)
    }
}

/// Every anchor, by the event it is stored for (one per hole: a small table).
pub(super) async fn load_anchors<'e, E>(executor: E) -> Result<HashMap<i64, Anchor>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows: Vec<AnchorRow> =
        sqlx::query_as("SELECT event_id, after_id, prev_mac, mac FROM event_chain_anchors")
            .fetch_all(executor)
            .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.event_id,
                Anchor {
                    after_id: r.after_id,
                    prev_mac: r.prev_mac,
                    mac: r.mac,
                },
            )
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct AnchorRow {
    event_id: i64,
    after_id: i64,
    prev_mac: Option<Vec<u8>>,
    mac: Option<Vec<u8>>,
}

/// Where a prune pass is, across its transactions.
struct Walk {
    /// The last event id looked at.
    from_id: i64,
    /// The last kept event looked at (0: none yet): what precedes the current hole.
    last_kept: i64,
    /// The MAC of the last event deleted in the open hole, `Some` while one is open.
    open_hole: Option<Option<Vec<u8>>>,
}

impl Store {
    /// Delete the events recorded before `cutoff_ns` (ns since the epoch), with their
    /// delivered outbox rows, keeping those with undelivered alerts and the newest event;
    /// then free the pages when the database allows it.
    pub async fn prune_events(&self, cutoff_ns: i64) -> Result<PruneReport, StoreError> {
        let bounds: (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT MAX(id) FROM events), (SELECT MAX(id) FROM events WHERE time_ns < ?)",
        )
        .bind(cutoff_ns)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.sql(e))?;
        let mut report = PruneReport::default();
        let (Some(newest), Some(old)) = bounds else {
            return Ok(report);
        };
        let upto = old.min(newest - 1);
        let mut walk = Walk {
            from_id: 0,
            last_kept: 0,
            open_hole: None,
        };
        while self
            .prune_batch(cutoff_ns, upto, &mut walk, &mut report)
            .await?
        {
            tokio::task::yield_now().await;
        }
        report.kept_undelivered = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM events WHERE id <= ? AND time_ns < ?",
        )
        .bind(upto)
        .bind(cutoff_ns)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.sql(e))? as u64;
        if report.events > 0 {
            report.freed_bytes = self.vacuum_free_pages().await?;
        }
        Ok(report)
    }

    /// One transaction of a prune pass. False when the pass is done.
    async fn prune_batch(
        &self,
        cutoff_ns: i64,
        upto: i64,
        walk: &mut Walk,
        report: &mut PruneReport,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.sql(e))?;
        let rows: Vec<(i64, Option<Vec<u8>>, bool)> = sqlx::query_as(
            "SELECT e.id, e.mac, e.time_ns < ? AND NOT EXISTS \
             (SELECT 1 FROM outbox o WHERE o.event_id = e.id AND o.state != 'delivered') \
             FROM events e WHERE e.id > ? AND e.id <= ? ORDER BY e.id LIMIT ?",
        )
        .bind(cutoff_ns)
        .bind(walk.from_id)
        .bind(upto)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.sql(e))?;
        let more = rows.len() as i64 == BATCH;
        let anchors = load_anchors(&mut *tx).await.map_err(|e| self.sql(e))?;
        let mut deleted = Vec::new();
        for (id, mac, prunable) in rows {
            walk.from_id = id;
            if prunable {
                deleted.push(id);
                walk.open_hole = Some(mac);
            } else {
                if let Some(prev) = walk.open_hole.take() {
                    self.put_anchor(&mut tx, &anchors, id, walk.last_kept, prev)
                        .await?;
                }
                walk.last_kept = id;
            }
        }
        if let Some(prev) = &walk.open_hole {
            // The hole may go on in the next transaction; anchor the event after it now so
            // that the chain verifies between the two (re-anchored if that event goes too).
            let next: Option<i64> =
                sqlx::query_scalar("SELECT id FROM events WHERE id > ? ORDER BY id LIMIT 1")
                    .bind(walk.from_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.sql(e))?;
            if let Some(next) = next {
                self.put_anchor(&mut tx, &anchors, next, walk.last_kept, prev.clone())
                    .await?;
            }
        }
        for chunk in deleted.chunks(10_000) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            for (table, column, counted) in [
                ("outbox", "event_id", true),
                ("event_chain_anchors", "event_id", false),
                ("events", "id", false),
            ] {
                // The ids are integers from the database: nothing to quote.
                let sql = format!("DELETE FROM {table} WHERE {column} IN ({list})");
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .persistent(false)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.sql(e))?;
                if counted {
                    report.outbox_rows += done.rows_affected();
                }
            }
        }
        report.events += deleted.len() as u64;
        tx.commit().await.map_err(|e| self.sql(e))?;
        Ok(more)
    }

    /// Record that `event_id` follows the kept event `after_id` across a hole, its chain
    /// continuing from `last_pruned_mac`, unless an older anchor of this event already says
    /// where its chain continues from (the event just before it went in an earlier pass).
    async fn put_anchor(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        anchors: &HashMap<i64, Anchor>,
        event_id: i64,
        after_id: i64,
        last_pruned_mac: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let prev_mac = match anchors.get(&event_id) {
            Some(a) => a.prev_mac.clone(),
            None => last_pruned_mac,
        };
        let anchor = Anchor {
            after_id,
            prev_mac,
            mac: None,
        };
        let mac = self
            .mac_key()
            .map(|k| k.anchor(event_id, after_id, &anchor.chain_from()).to_vec());
        sqlx::query(
            "INSERT OR REPLACE INTO event_chain_anchors (event_id, after_id, prev_mac, mac) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(event_id)
        .bind(after_id)
        .bind(anchor.prev_mac)
        .bind(mac)
        .execute(&mut **tx)
        .await
        .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Give free pages back to the file system (auto_vacuum = incremental only). Returns the
    /// bytes freed.
    async fn vacuum_free_pages(&self) -> Result<u64, StoreError> {
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.sql(e))?;
        if mode != 2 {
            return Ok(0);
        }
        let (free, page): (i64, i64) =
            sqlx::query_as("SELECT * FROM pragma_freelist_count, pragma_page_size")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.sql(e))?;
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&self.pool)
            .await
            .map_err(|e| self.sql(e))?;
        Ok((free * page) as u64)
    }

    /// Prune the events older than `keep` (zero: keep everything), logging what went.
    pub async fn apply_retention(
        &self,
        keep: std::time::Duration,
    ) -> Result<PruneReport, StoreError> {
        if keep.is_zero() {
            return Ok(PruneReport::default());
        }
        let keep_ns = i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX);
        let report = self
            .prune_events(crate::timefmt::now_ns().saturating_sub(keep_ns))
            .await?;
        if report.events > 0 || report.kept_undelivered > 0 {
            tracing::info!(
                events = report.events,
                outbox_rows = report.outbox_rows,
                kept_undelivered = report.kept_undelivered,
                freed = %crate::timefmt::human_bytes(report.freed_bytes),
                keep = %humantime::format_duration(keep),
                "old history pruned (events with undelivered alerts are kept)"
            );
        }
        Ok(report)
    }

    /// The oldest event kept: its id and time (`status`).
    pub async fn oldest_event(&self) -> Result<Option<(i64, String)>, StoreError> {
        sqlx::query_as("SELECT id, time FROM events ORDER BY id LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.sql(e))
    }
}
