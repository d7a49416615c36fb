//! Loading `events` rows back into the event JSON shape ([`Event`]) for `fimd events`,
//! `fimd diff` and the sinks: the path
//! BLOB through `event::path_for_json` (lossy text + `path_hex` when not UTF-8), the JSON text
//! columns parsed, and the diff cut in SQL so a huge diff is never read whole.
//!
//! Never reads the diff of a sensitive event, whatever the row holds.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::event::{path_for_json, Event, EventKind, Severity, Source};

/// Load events by id (ascending), with each diff cut to `diff_chars` characters (`None`: no
/// diffs at all). A sensitive event's diff is never read.
pub async fn load_events(
    pool: &SqlitePool,
    ids: &[i64],
    diff_chars: Option<usize>,
) -> Result<Vec<Event>, sqlx::Error> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(30_000) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, uid, time, host, source, event, path, from_path, changed, old, new, sensitive, \
             severity, reason, actor, package, ",
        );
        match diff_chars {
            // One character more than allowed, so a cut can be marked as such.
            Some(n) => {
                q.push("CASE WHEN sensitive = 0 THEN substr(diff, 1, ")
                    .push_bind(i64::try_from(n).unwrap_or(i64::MAX).saturating_add(1))
                    .push(") END AS diff");
            }
            None => {
                q.push("NULL AS diff");
            }
        }
        q.push(" FROM events WHERE id IN (");
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        q.push(") ORDER BY id");
        for row in q.build().persistent(false).fetch_all(pool).await? {
            out.push(event_from_row(&row)?);
        }
    }
    out.sort_by_key(|e| e.id);
    Ok(out)
}

/// One `events` row as the event JSON. Malformed JSON columns become empty values (logged),
/// so one bad row never blocks the alerts behind it.
pub(crate) fn event_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Event, sqlx::Error> {
    let id: i64 = row.try_get("id")?;
    let path: Vec<u8> = row.try_get("path")?;
    let (path, path_hex) = path_for_json(Path::new(OsStr::from_bytes(&path)));
    let source: String = row.try_get("source")?;
    let kind: String = row.try_get("event")?;
    let json_col = |name: &str| -> Result<Option<String>, sqlx::Error> { row.try_get(name) };
    let changed = json_col("changed")?
        .and_then(|t| parse_logged(id, "changed", &t))
        .unwrap_or_default();
    let old = json_col("old")?.and_then(|t| parse_logged(id, "old", &t));
    let new = json_col("new")?.and_then(|t| parse_logged(id, "new", &t));
    let sensitive: bool = row.try_get("sensitive")?;
    let diff: Option<String> = if sensitive {
        None
    } else {
        row.try_get("diff")?
    };
    let from: Option<Vec<u8>> = row.try_get("from_path")?;
    let (from, from_hex) = match from {
        Some(b) => {
            let (text, hex) = path_for_json(Path::new(OsStr::from_bytes(&b)));
            (Some(text), hex)
        }
        None => (None, None),
    };
    // Rated by the explain stage; an older row not yet rated shows as medium.
    let severity: Option<String> = row.try_get("severity")?;
    let severity = severity
        .as_deref()
        .and_then(Severity::parse)
        .unwrap_or(Severity::Medium);
    let reason: Option<String> = row.try_get("reason")?;
    Ok(Event {
        id: Some(id),
        uid: row.try_get("uid")?,
        time: row.try_get("time")?,
        host: row.try_get("host")?,
        source: Source::parse(&source).unwrap_or(Source::Check),
        event: EventKind::parse(&kind).unwrap_or(EventKind::Modified),
        path,
        path_hex,
        from,
        from_hex,
        severity,
        reason: reason.unwrap_or_default(),
        changed,
        old,
        new,
        sensitive,
        diff,
        actor: json_col("actor")?.and_then(|t| parse_logged(id, "actor", &t)),
        package: json_col("package")?.and_then(|t| parse_logged(id, "package", &t)),
    })
}

fn parse_logged<T: serde::de::DeserializeOwned>(id: i64, column: &str, text: &str) -> Option<T> {
    match serde_json::from_str(text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(event_id = id, column, error = %e, "malformed JSON column in events; shown empty");
            None
        }
    }
}
