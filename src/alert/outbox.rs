//! The outbox in SQLite: enqueueing rows, claiming the due rows of one sink, recording the
//! result of a request, expiring rows older than `retry_for`, and the backoff schedule.
//!
//! Every read-then-write runs in a `BEGIN IMMEDIATE` transaction. All delivery state
//! (`attempts`, `next_attempt_ns`, `last_error`, and the per-sink gate in `alert_sinks`) lives
//! here, so a restart resumes where the last process stopped. Rows are never deleted, and
//! `last_error` only ever receives text that the caller has already redacted.

use std::time::Duration;

use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

/// One claimed outbox row.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct DueRow {
    pub id: i64,
    pub event_id: i64,
    pub attempts: i64,
    pub created_ns: i64,
}

/// What to write back for the rows of one request.
#[derive(Debug, Clone)]
pub enum Resolution {
    Delivered {
        remote_id: Option<String>,
    },
    /// Retry these rows at `now + delay`; the sink is gated until then too.
    Retry {
        delay: Duration,
        error: String,
    },
    /// Throttled: the sink is gated for `for_`, the rows wait as long.
    Pause {
        for_: Duration,
        error: String,
    },
    Park {
        error: String,
    },
}

/// Outbox rows per sink and state, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Backlog {
    pub sink: String,
    pub state: String,
    pub rows: i64,
}

/// Rows per statement: 3 bound values each, far below SQLite's 32,766 variables.
const INSERT_CHUNK: usize = 2_000;
/// Ids per `IN (...)` list.
pub(crate) const ID_CHUNK: usize = 500;

/// Queue `event_ids` × `sinks` as pending rows in the caller's transaction (the one that
/// inserted the events). Duplicates of an existing (event, sink) row are ignored.
pub async fn enqueue(
    tx: &mut Transaction<'_, Sqlite>,
    events: &[(i64, crate::event::Severity)],
    sinks: &[crate::config::SinkRoute],
    now_ns: i64,
) -> Result<(), sqlx::Error> {
    let pairs: Vec<(i64, &str)> = events
        .iter()
        .flat_map(|&(e, severity)| {
            sinks
                .iter()
                .filter(move |s| s.takes(severity))
                .map(move |s| (e, s.name))
        })
        .collect();
    for chunk in pairs.chunks(INSERT_CHUNK) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT OR IGNORE INTO outbox (event_id, sink, created_ns) ");
        q.push_values(chunk, |mut b, (event_id, sink)| {
            b.push_bind(*event_id).push_bind(*sink).push_bind(now_ns);
        });
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Claim up to `max_rows` due rows of `sink` for one request at `now_ns`: `None` when the sink
/// is gated (batch window, pause, backoff) or nothing is due. Claiming moves the sink's gate to
/// `now + window`, which is what makes "one request per sink per window" hold across tasks
/// and processes. A zero `window` is a one-shot sender (`fimd check`, one batch): it is not
/// held back by another sender's batch window, only by a pause the sink asked for.
pub async fn claim(
    pool: &SqlitePool,
    sink: &str,
    now_ns: i64,
    window: Duration,
    max_rows: usize,
) -> Result<Option<Vec<DueRow>>, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let gate: Option<(i64, bool)> = sqlx::query_as(
        "SELECT not_before_ns, pause_reason IS NOT NULL FROM alert_sinks WHERE sink = ?",
    )
    .bind(sink)
    .fetch_optional(&mut *tx)
    .await?;
    let one_shot = window.is_zero();
    if gate.is_some_and(|(g, paused)| g > now_ns && (paused || !one_shot)) {
        tx.commit().await?;
        return Ok(None);
    }
    let rows: Vec<DueRow> = sqlx::query_as(
        "SELECT id, event_id, attempts, created_ns FROM outbox \
         WHERE state = 'pending' AND sink = ? AND next_attempt_ns <= ? ORDER BY id LIMIT ?",
    )
    .bind(sink)
    .bind(now_ns)
    .bind(i64::try_from(max_rows).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO alert_sinks (sink, not_before_ns, last_request_ns, pause_reason) \
         VALUES (?1, ?2, ?3, NULL) ON CONFLICT (sink) DO UPDATE SET \
         not_before_ns = excluded.not_before_ns, last_request_ns = excluded.last_request_ns, \
         pause_reason = NULL",
    )
    .bind(sink)
    .bind(now_ns.saturating_add(nanos(window)))
    .bind(now_ns)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(rows))
}

/// Write the result of one request for its rows (and the sink's gate) at `now_ns`.
pub async fn record(
    pool: &SqlitePool,
    sink: &str,
    rows: &[DueRow],
    resolution: &Resolution,
    now_ns: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    for chunk in ids.chunks(ID_CHUNK) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("UPDATE outbox SET attempts = attempts + 1, ");
        match resolution {
            Resolution::Delivered { remote_id } => {
                q.push("state = 'delivered', last_error = NULL, delivered_ns = ")
                    .push_bind(now_ns)
                    .push(", remote_id = ")
                    .push_bind(remote_id.clone());
            }
            Resolution::Retry { delay: d, error } | Resolution::Pause { for_: d, error } => {
                q.push("next_attempt_ns = ")
                    .push_bind(now_ns.saturating_add(nanos(*d)))
                    .push(", last_error = ")
                    .push_bind(error.clone());
            }
            Resolution::Park { error } => {
                q.push("state = 'parked', last_error = ")
                    .push_bind(error.clone());
            }
        }
        q.push(" WHERE state = 'pending' AND id IN (");
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        q.push(")");
        q.build().persistent(false).execute(&mut *tx).await?;
    }
    if let Resolution::Retry { delay: d, error } | Resolution::Pause { for_: d, error } = resolution
    {
        sqlx::query(
            "UPDATE alert_sinks SET not_before_ns = MAX(not_before_ns, ?), pause_reason = ? \
             WHERE sink = ?",
        )
        .bind(now_ns.saturating_add(nanos(*d)))
        .bind(error)
        .bind(sink)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Mark pending rows created before `now - retry_for` as `failed`. Returns, per sink, how many
/// rows gave up and the last error seen, for one warning each.
pub async fn expire(
    pool: &SqlitePool,
    now_ns: i64,
    retry_for: Duration,
) -> Result<Vec<(String, i64, Option<String>)>, sqlx::Error> {
    let cutoff = now_ns.saturating_sub(nanos(retry_for));
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT sink, COUNT(*), MAX(last_error) FROM outbox \
         WHERE state = 'pending' AND created_ns <= ? GROUP BY sink ORDER BY sink",
    )
    .bind(cutoff)
    .fetch_all(&mut *tx)
    .await?;
    if !rows.is_empty() {
        sqlx::query(
            "UPDATE outbox SET state = 'failed', \
             last_error = COALESCE(last_error, 'never attempted') \
             WHERE state = 'pending' AND created_ns <= ?",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(rows)
}

/// When the next pass has something to do for `sinks` (ns since the epoch): the earliest due
/// row of each sink, not before its gate; and the oldest pending row's expiry.
pub async fn next_due(
    pool: &SqlitePool,
    sinks: &[&str],
    retry_for: Duration,
) -> Result<Option<i64>, sqlx::Error> {
    let mut best: Option<i64> = None;
    for sink in sinks {
        let row = sqlx::query(
            "SELECT MIN(o.next_attempt_ns) AS due, \
             (SELECT not_before_ns FROM alert_sinks WHERE sink = ?1) AS gate \
             FROM outbox o WHERE o.state = 'pending' AND o.sink = ?1",
        )
        .bind(*sink)
        .fetch_one(pool)
        .await?;
        let due: Option<i64> = row.try_get("due")?;
        let gate: Option<i64> = row.try_get("gate")?;
        if let Some(due) = due {
            let at = due.max(gate.unwrap_or(0));
            best = Some(best.map_or(at, |b| b.min(at)));
        }
    }
    let oldest: Option<i64> =
        sqlx::query_scalar("SELECT MIN(created_ns) FROM outbox WHERE state = 'pending'")
            .fetch_one(pool)
            .await?;
    if let Some(created) = oldest {
        let at = created.saturating_add(nanos(retry_for)).saturating_add(1);
        best = Some(best.map_or(at, |b| b.min(at)));
    }
    Ok(best)
}

/// Pending rows of the given sinks.
pub async fn pending(pool: &SqlitePool, sinks: &[&str]) -> Result<i64, sqlx::Error> {
    let mut total = 0;
    for sink in sinks {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND sink = ?")
                .bind(*sink)
                .fetch_one(pool)
                .await?;
        total += n;
    }
    Ok(total)
}

/// Rows per sink and state (`status`).
pub async fn backlog(pool: &SqlitePool) -> Result<Vec<Backlog>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sink, state, COUNT(*) AS rows FROM outbox GROUP BY sink, state ORDER BY sink, state",
    )
    .fetch_all(pool)
    .await
}

/// Parked rows of one sink, for `status` and `notify-test`: how many, and why (the error of
/// the most recently parked row).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Parked {
    pub sink: String,
    pub rows: i64,
    pub last_error: Option<String>,
}

/// Parked rows per sink (sinks without any are left out), by sink name.
pub async fn parked(pool: &SqlitePool) -> Result<Vec<Parked>, sqlx::Error> {
    let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT sink, COUNT(*), \
         (SELECT last_error FROM outbox l WHERE l.sink = o.sink AND l.state = 'parked' \
          ORDER BY l.id DESC LIMIT 1) \
         FROM outbox o WHERE state = 'parked' GROUP BY sink ORDER BY sink",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(sink, rows, last_error)| Parked {
            sink,
            rows,
            last_error,
        })
        .collect())
}

/// Put `parked` rows of `sink` back to `pending`, due now (its configuration may have been
/// fixed: the daemon calls this at start and on reload, `notify-test` after a successful test
/// alert). Their `retry_for` counts again from `now_ns`: an alert parked over a weekend is
/// not marked failed the moment the URL is fixed. Returns how many rows were requeued.
pub async fn requeue_parked(
    pool: &SqlitePool,
    sink: &str,
    now_ns: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE outbox SET state = 'pending', next_attempt_ns = 0, \
         created_ns = MAX(created_ns, ?) WHERE state = 'parked' AND sink = ?",
    )
    .bind(now_ns)
    .bind(sink)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Exponential backoff with full jitter: attempt 1 waits `initial`, each later attempt doubles
/// the ceiling up to `max`; `jitter` ∈ [0, 1] (a random fraction; 0 = no jitter) moves the wait
/// uniformly down towards `initial`. Never panics or overflows.
pub fn next_delay(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let max = max.max(initial);
    let shift = attempt.saturating_sub(1);
    let ceiling = if shift >= 32 {
        max
    } else {
        initial.checked_mul(1u32 << shift).unwrap_or(max).min(max)
    };
    let j = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    initial + (ceiling - initial).mul_f64(1.0 - j)
}

/// A random fraction in [0, 1) for [`next_delay`], from std's randomly keyed SipHash (no
/// extra dependency; jitter needs spread, not cryptographic quality).
pub fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(crate::timefmt::now_ns());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_table_without_jitter() {
        let s = Duration::from_secs;
        let table = [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 8),
            (8, 128),
            (9, 256),
            (10, 300),
            (64, 300),
            (u32::MAX, 300),
        ];
        for (attempt, want) in table {
            assert_eq!(
                next_delay(attempt, s(1), s(300), 0.0),
                s(want),
                "attempt {attempt}"
            );
        }
        // Full jitter stays within [initial, ceiling].
        assert_eq!(next_delay(5, s(1), s(300), 1.0), s(1));
        assert_eq!(
            next_delay(5, s(1), s(300), 0.5),
            Duration::from_millis(8_500)
        );
        assert_eq!(next_delay(5, s(1), s(300), f64::NAN), s(16));
        // max < initial never panics.
        assert_eq!(next_delay(3, s(10), s(1), 0.0), s(10));
        let r = random_fraction();
        assert!((0.0..1.0).contains(&r));
    }
}
