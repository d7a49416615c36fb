//! Tamper evidence over the whole database: turning the key on (signing every row once),
//! refusing a missing or different key, `fimd verify`, and the chain head the fleet
//! heartbeat carries. The per-row MACs themselves are in `mac`.

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::{Row, Sqlite, Transaction};
use std::sync::Arc;

use super::mac::{EventColumns, MacKey, CHAIN_START};
use super::{Store, StoreError};

/// What [`Store::use_key`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// No key configured and none used before.
    Off,
    /// The database is signed with this key (its id).
    On(String),
    /// The key was turned on now: every row was signed.
    Signed {
        id: String,
        baseline_rows: u64,
        events: u64,
    },
}

/// The result of `fimd verify`.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub baseline_rows: u64,
    pub events: u64,
    /// One line per altered, deleted or reordered row.
    pub problems: Vec<String>,
}

const EVENT_SELECT: &str = "SELECT id, uid, time, time_ns, host, source, event, path, from_path, \
     changed, old, new, sensitive, diff, severity, reason, actor, package, mac FROM events";

fn event_columns(
    row: &sqlx::sqlite::SqliteRow,
) -> Result<(EventColumns, Option<Vec<u8>>), sqlx::Error> {
    Ok((
        EventColumns {
            id: row.try_get("id")?,
            uid: row.try_get("uid")?,
            time: row.try_get("time")?,
            time_ns: row.try_get("time_ns")?,
            host: row.try_get("host")?,
            source: row.try_get("source")?,
            event: row.try_get("event")?,
            path: row.try_get("path")?,
            from_path: row.try_get("from_path")?,
            changed: row.try_get("changed")?,
            old: row.try_get("old")?,
            new: row.try_get("new")?,
            sensitive: row.try_get("sensitive")?,
            diff: row.try_get("diff")?,
            severity: row.try_get("severity")?,
            reason: row.try_get("reason")?,
            actor: row.try_get("actor")?,
            package: row.try_get("package")?,
        },
        row.try_get("mac")?,
    ))
}

/// The MAC of the newest event (the chain continues from it), or the chain's start.
pub(super) async fn last_event_mac(
    tx: &mut Transaction<'_, Sqlite>,
) -> Result<[u8; 32], sqlx::Error> {
    let mac: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT mac FROM events ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    Ok(mac
        .flatten()
        .and_then(|m| <[u8; 32]>::try_from(m.as_slice()).ok())
        .unwrap_or(CHAIN_START))
}

impl Store {
    /// Apply `[store] hmac_key`: with a key and an unsigned database, sign every row now;
    /// with the key the database was signed with, carry on; a different key, or none for a
    /// signed database, is an error naming the way out.
    pub async fn use_key(&self, key: Option<MacKey>) -> Result<KeyState, StoreError> {
        let signed_with = self.meta("mac_key_id").await?;
        let state = match (key, signed_with) {
            (None, None) => KeyState::Off,
            (None, Some(_)) => {
                return Err(self.key_error(
                    "this database is signed for tamper evidence but [store] hmac_key is not set: \
                     set the key again, or rebuild with `fimd init --force`"
                        .to_string(),
                ))
            }
            (Some(key), Some(id)) if key.id() == id => {
                self.set_key(Some(key));
                KeyState::On(id)
            }
            (Some(key), Some(id)) => {
                return Err(self.key_error(format!(
                    "this database is signed with another tamper-evidence key ({id}; this one is {}): \
                     use `fimd verify --rekey --old-hmac-key REF`, or rebuild with `fimd init --force`",
                    key.id()
                )))
            }
            (Some(key), None) => {
                let key = Arc::new(key);
                let (baseline_rows, events) = self.sign_all(&key).await?;
                let id = key.id();
                self.set_key_arc(Some(key));
                KeyState::Signed {
                    id,
                    baseline_rows,
                    events,
                }
            }
        };
        Ok(state)
    }

    /// [`Store::use_key`], logging when the database is signed for the first time.
    pub async fn apply_key(&self, key: Option<MacKey>) -> Result<KeyState, StoreError> {
        let state = self.use_key(key).await?;
        if let KeyState::Signed {
            id,
            baseline_rows,
            events,
        } = &state
        {
            tracing::info!(
                key = %id,
                baseline_rows,
                events,
                "tamper evidence turned on: every baseline row and event is now signed"
            );
        }
        Ok(state)
    }

    fn key_error(&self, message: String) -> StoreError {
        StoreError::TamperKey {
            path: self.path.clone(),
            message,
        }
    }

    /// Use `key` to check rows as they are read, without signing anything (`check
    /// --dry-run`): only when the database is signed with it.
    pub async fn use_key_read_only(&self, key: Option<MacKey>) -> Result<(), StoreError> {
        if let (Some(key), Some(id)) = (key, self.meta("mac_key_id").await?) {
            if key.id() == id {
                self.set_key(Some(key));
            }
        }
        Ok(())
    }

    fn set_key(&self, key: Option<MacKey>) {
        self.set_key_arc(key.map(Arc::new));
    }

    fn set_key_arc(&self, key: Option<Arc<MacKey>>) {
        match self.mac.write() {
            Ok(mut g) => *g = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }

    /// Sign every baseline row and chain every event under `key`, and record its id: one
    /// transaction (a failure leaves the database as it was).
    async fn sign_all(&self, key: &MacKey) -> Result<(u64, u64), StoreError> {
        // Rows are read without verification (no key is in use yet).
        self.set_key_arc(None);
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.sql(e))?;
        let mut signed = 0u64;
        let rows: Vec<sqlx::sqlite::SqliteRow> = sqlx::query(super::read::BASELINE_SELECT)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.sql(e))?;
        for row in &rows {
            let (path, r) = self.recorded_from_row(row)?;
            use std::os::unix::ffi::OsStrExt;
            sqlx::query("UPDATE baseline SET mac = ? WHERE path = ?")
                .bind(key.baseline(&path, &r).to_vec())
                .bind(path.as_os_str().as_bytes())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.sql(e))?;
            signed += 1;
        }
        drop(rows);
        let events = rechain(&mut tx, key, 0).await.map_err(|e| self.sql(e))?;
        sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES ('mac_key_id', ?)")
            .bind(key.id())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.sql(e))?;
        tx.commit().await.map_err(|e| self.sql(e))?;
        Ok((signed, events))
    }

    /// Forget the key the database was signed with (`init --force` re-signs it).
    pub async fn forget_key(&self) -> Result<(), StoreError> {
        self.set_key_arc(None);
        self.delete_meta("mac_key_id").await
    }

    /// Verify every baseline row and the event chain under `key`.
    pub async fn verify(&self, key: &MacKey) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        if let Some(id) = self.meta("mac_key_id").await? {
            if id != key.id() {
                report.problems.push(format!(
                    "the database is signed with key {id}, not with this key ({})",
                    key.id()
                ));
                return Ok(report);
            }
        } else {
            report
                .problems
                .push("the database was never signed (tamper evidence was off)".to_string());
            return Ok(report);
        }
        {
            let mut rows = sqlx::query(super::read::BASELINE_SELECT).fetch(&self.pool);
            while let Some(row) = rows.try_next().await.map_err(|e| self.sql(e))? {
                let mac: Option<Vec<u8>> = row.try_get(16).map_err(|e| self.sql(e))?;
                let (path, r) = self.recorded_from_row(&row)?;
                report.baseline_rows += 1;
                if mac.as_deref() != Some(key.baseline(&path, &r).as_slice()) {
                    report.problems.push(format!(
                        "baseline {}: altered outside fimd",
                        crate::event::display_path(&path)
                    ));
                }
            }
        }
        let anchors = super::retention::load_anchors(&self.pool)
            .await
            .map_err(|e| self.sql(e))?;
        let mut prev = CHAIN_START;
        let mut last_id = 0;
        let sql = format!("{EVENT_SELECT} ORDER BY id");
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(|e| self.sql(e))? {
            let (cols, mac) = event_columns(&row).map_err(|e| self.sql(e))?;
            report.events += 1;
            if cols.id != last_id + 1 {
                // A hole: pruned by retention (a signed anchor says so) or deleted.
                match anchors.get(&cols.id) {
                    Some(a) if a.after_id == last_id => {
                        if a.mac.as_deref()
                            != Some(key.anchor(cols.id, a.after_id, &a.chain_from()).as_slice())
                        {
                            report.problems.push(format!(
                                "event {}: the record of the events pruned before it was altered",
                                cols.id
                            ));
                        }
                        prev = a.chain_from();
                    }
                    _ => report.problems.push(match cols.id - last_id {
                        2 => format!("event {}: deleted", last_id + 1),
                        _ => format!("events {} to {}: deleted", last_id + 1, cols.id - 1),
                    }),
                }
            }
            let expected = key.event(&prev, &cols);
            if mac.as_deref() != Some(expected.as_slice()) {
                report.problems.push(format!(
                    "event {}: altered, or moved (its MAC does not follow from the event before it)",
                    cols.id
                ));
            }
            // Go on from the stored MAC, so one bad row is named once.
            prev = mac
                .as_deref()
                .and_then(|m| <[u8; 32]>::try_from(m).ok())
                .unwrap_or(expected);
            last_id = cols.id;
        }
        Ok(report)
    }

    /// Re-sign everything under `new` after verifying it under `old` (`verify --rekey`).
    pub async fn rekey(&self, old: &MacKey, new: MacKey) -> Result<VerifyReport, StoreError> {
        let report = self.verify(old).await?;
        if report.problems.is_empty() {
            self.delete_meta("mac_key_id").await?;
            self.sign_all(&new).await?;
            self.set_key(Some(new));
        }
        Ok(report)
    }

    /// The newest event's uid and MAC (hex): what the fleet heartbeat carries, so the
    /// central store can tell a rewritten history. `None` without a key or events.
    pub async fn chain_head(&self) -> Result<Option<(String, String)>, StoreError> {
        let row: Option<(Option<String>, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT uid, mac FROM events ORDER BY id DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.sql(e))?;
        Ok(match row {
            Some((Some(uid), Some(mac))) => Some((uid, hex::encode(mac))),
            _ => None,
        })
    }

    /// The key id tamper evidence uses, `None` when it is off.
    pub async fn tamper_key_id(&self) -> Result<Option<String>, StoreError> {
        self.meta("mac_key_id").await
    }

    /// After events were updated in place (severities of old events): chain them again
    /// from `from_id` under the key in use, in the same transaction.
    pub(super) async fn rechain_in(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        from_id: i64,
    ) -> Result<(), sqlx::Error> {
        if let Some(key) = self.mac_key() {
            rechain(tx, &key, from_id).await?;
        }
        Ok(())
    }
}

/// Recompute the chain of every event with id >= `from_id`. Returns how many were signed.
async fn rechain(
    tx: &mut Transaction<'_, Sqlite>,
    key: &MacKey,
    from_id: i64,
) -> Result<u64, sqlx::Error> {
    let prev: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT mac FROM events WHERE id < ? ORDER BY id DESC LIMIT 1")
            .bind(from_id)
            .fetch_optional(&mut **tx)
            .await?;
    let mut prev = prev
        .flatten()
        .and_then(|m| <[u8; 32]>::try_from(m.as_slice()).ok())
        .unwrap_or(CHAIN_START);
    // Across a pruned hole the chain continues from the anchor's MAC; anchors are signed
    // again under this key (their `prev_mac` is kept: it is the MAC the pruned event had).
    let anchors = super::retention::load_anchors(&mut **tx).await?;
    for (id, a) in &anchors {
        let from = a.chain_from();
        sqlx::query("UPDATE event_chain_anchors SET prev_mac = ?, mac = ? WHERE event_id = ?")
            .bind(from.to_vec())
            .bind(key.anchor(*id, a.after_id, &from).to_vec())
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    let sql = format!("{EVENT_SELECT} WHERE id >= ? ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from_id)
        .fetch_all(&mut **tx)
        .await?;
    let mut n = 0;
    for row in &rows {
        let (cols, _) = event_columns(row)?;
        if let Some(a) = anchors.get(&cols.id) {
            prev = a.chain_from();
        }
        prev = key.event(&prev, &cols);
        sqlx::query("UPDATE events SET mac = ? WHERE id = ?")
            .bind(prev.to_vec())
            .bind(cols.id)
            .execute(&mut **tx)
            .await?;
        n += 1;
    }
    Ok(n)
}
