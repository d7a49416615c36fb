//! Read-only commands over the database: `events`, `diff`, `status`. They work while the
//! daemon runs (WAL readers).

use super::setup::{print_stdout, Context};
use super::{CmdError, Exit};
use crate::event::display_path;
use crate::policy::Patterns;
use crate::store::{EventFilter, EventsError};
use std::io::Write;

pub async fn events(
    ctx: &Context,
    json: bool,
    since: Option<String>,
    path: Option<String>,
    limit: Option<usize>,
    severity: Option<String>,
    format: Option<String>,
) -> Result<Exit, CmdError> {
    let format = match format.as_deref() {
        Some(f) => Some(crate::format::Format::parse(f).ok_or_else(|| {
            CmdError::Usage(format!("--format {f:?}: expected json, ocsf, ecs or cef"))
        })?),
        None => json.then_some(crate::format::Format::Json),
    };
    let min_severity = match severity {
        Some(s) => Some(crate::event::Severity::parse(&s).ok_or_else(|| {
            CmdError::Usage(format!(
                "--severity {s:?}: expected one of critical, high, medium, low, info"
            ))
        })?),
        None => None,
    };
    let since_ns = match since {
        Some(s) => Some(crate::timefmt::parse_since(&s).ok_or_else(|| {
            CmdError::Usage(format!("--since {s:?}: expected an RFC 3339 time (2026-11-30T08:00:00Z) or a duration (1h)"))
        })?),
        None => None,
    };
    let path = match path {
        Some(g) => Some(Patterns::new(&[g], "--path").map_err(CmdError::Usage)?),
        None => None,
    };
    let store = ctx.open_existing_store().await?;
    let filter = EventFilter {
        since_ns,
        path,
        limit,
        min_severity,
    };
    // One event at a time, straight to stdout: memory stays flat however long the history.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = store
        .for_each_event(&filter, |e| {
            let line = match format {
                Some(format) => crate::format::line(&e, format)
                    .map_err(|e| Stop::Failed(CmdError::Io(format!("cannot encode event: {e}"))))?,
                None => {
                    let id = e.id.unwrap_or(0);
                    let diff = if e.diff.is_some() { "  [diff]" } else { "" };
                    let line = super::scan::human_line(&e);
                    format!(
                        "{id:>6}  {}  {:<7} {}{diff}",
                        e.time,
                        e.source.as_str(),
                        line.trim_end()
                    )
                }
            };
            writeln!(out, "{line}").map_err(Stop::from)
        })
        .await;
    let flushed = match written {
        Ok(()) => out.flush().map_err(Stop::from),
        Err(EventsError::Store(e)) => return Err(e.into()),
        Err(EventsError::Each(stop)) => Err(stop),
    };
    match flushed {
        Ok(()) | Err(Stop::Closed) => Ok(Exit::Clean),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// Why printing the history stopped early.
enum Stop {
    /// The reader went away (`fimd events | head`): not an error.
    Closed,
    Failed(CmdError),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Stop {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Stop::Closed
        } else {
            Stop::Failed(CmdError::Io(format!("cannot write to stdout: {e}")))
        }
    }
}

/// `[store] keep_events` for people: "400 days" (humantime would say "1year 1month 4days
/// 7h 26m 24s"), or "forever".
fn keep_events_text(ctx: &Context) -> String {
    match ctx.cfg.store.keep_events {
        d if d.is_zero() => "forever".to_string(),
        d if d.as_secs() % 86_400 == 0 && d.subsec_nanos() == 0 => {
            crate::timefmt::plural((d.as_secs() / 86_400) as usize, "day", "days")
        }
        d => humantime::format_duration(d).to_string(),
    }
}

/// `diff [--raw] <EVENT-ID>`: the stored diff. A diff holds whatever a file's writer put in
/// it: shown on a terminal, its control and bidi characters are escaped (so no title change,
/// screen clear or reordered text); `--raw` prints the stored bytes as they are.
pub async fn diff(ctx: &Context, id: i64, raw: bool) -> Result<Exit, CmdError> {
    let store = ctx.open_existing_store().await?;
    let event = store
        .events_by_ids(&[id])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| CmdError::Usage(format!("no event {id}")))?;
    match &event.diff {
        Some(d) if raw => print_stdout(d)?,
        Some(d) => print_stdout(&crate::event::escape_text(d))?,
        None => {
            let why = if event.sensitive {
                "the file is sensitive: its content is never stored"
            } else if event.event != crate::event::EventKind::Modified {
                "added and removed events have no diff"
            } else {
                "only metadata changed, or the file is binary or larger than content.max_bytes"
            };
            eprintln!(
                "fimd: event {id} ({}) has no diff: {why}",
                display_path(&event.path_buf())
            );
        }
    }
    Ok(Exit::Clean)
}

pub async fn status(ctx: &Context, json: bool) -> Result<Exit, CmdError> {
    let store = ctx.open_existing_store().await?;
    let s = store.status().await?;
    let parked = crate::alert::outbox::parked(store.pool())
        .await
        .map_err(|e| CmdError::Io(format!("outbox database: {e}")))?;
    let missing: Vec<(String, bool)> = ctx
        .policy
        .missing()
        .iter()
        .map(|w| (display_path(&w.configured), w.optional))
        .collect();
    let out = if json {
        let mut v = serde_json::to_value(&s)
            .map_err(|e| CmdError::Io(format!("cannot encode status: {e}")))?;
        // The daemon's facts are stored as text: numbers go out as numbers.
        if let Some(daemon) = v.get_mut("daemon").and_then(|d| d.as_object_mut()) {
            for value in daemon.values_mut() {
                if let Some(n) = value.as_str().and_then(|t| t.parse::<i64>().ok()) {
                    *value = serde_json::Value::from(n);
                }
            }
        }
        let paths: Vec<&str> = missing.iter().map(|(p, _)| p.as_str()).collect();
        v["missing_watches"] = serde_json::Value::from(paths);
        v["parked"] = serde_json::to_value(&parked)
            .map_err(|e| CmdError::Io(format!("cannot encode status: {e}")))?;
        v["keep_events"] = serde_json::Value::from(keep_events_text(ctx));
        serde_json::to_string_pretty(&v)
            .map_err(|e| CmdError::Io(format!("cannot encode status: {e}")))?
            + "\n"
    } else {
        let mut o = format!(
            "database: {} ({})\n",
            s.database,
            crate::timefmt::human_bytes(s.database_bytes)
        );
        o += &format!(
            "baseline: {} ({} files, the rest directories)\n",
            crate::timefmt::plural(s.baseline_entries as usize, "entry", "entries"),
            s.baseline_files
        );
        o += &format!(
            "baseline built: {}\n",
            s.baseline_at.as_deref().unwrap_or("never (run fimd init)")
        );
        o += &format!(
            "last full scan: {}\n",
            s.last_full_scan.as_deref().unwrap_or("never")
        );
        o += &format!("events: {}\n", s.events);
        o += &format!(
            "oldest event: {}\n",
            match &s.oldest_event {
                Some(e) => format!("{} ({})", e.id, e.time),
                None => "none".to_string(),
            }
        );
        o += &format!("history kept: {}\n", keep_events_text(ctx));
        o += &format!(
            "outbox: {} pending, {} parked, {} failed\n",
            s.outbox_pending, s.outbox_parked, s.outbox_failed
        );
        for p in &parked {
            o += &format!(
                "parked for {}: {} ({}); sent again after a reload, a restart or a successful notify-test\n",
                p.sink,
                p.rows,
                p.last_error.as_deref().unwrap_or("no error recorded")
            );
        }
        o += &format!("tamper evidence: {}\n", s.tamper_evidence);
        if let Some(h) = &s.chain_head {
            o += &format!("chain head: {} {}\n", h.uid, h.mac);
        }
        for (k, v) in &s.daemon {
            o += &format!("daemon {k}: {v}\n");
        }
        for (m, optional) in &missing {
            let note = if *optional { ", optional" } else { "" };
            o += &format!("missing watch path: {m} (nothing is monitored there{note})\n");
        }
        o
    };
    print_stdout(&out)?;
    Ok(Exit::Clean)
}

/// `verify [--json] [--rekey --old-hmac-key REF]`: every baseline row's MAC and the event
/// chain. Exit 0 intact, 4 tampered (each problem on its own line).
pub async fn verify(
    ctx: &Context,
    json: bool,
    rekey: bool,
    old_hmac_key: Option<String>,
) -> Result<Exit, CmdError> {
    let key = ctx.mac_key()?.ok_or_else(|| {
        CmdError::Config(crate::config::ConfigError::Invalid {
            path: ctx.config_path.clone(),
            message: "tamper evidence is off: set [store] hmac_key (a secret reference) first"
                .to_string(),
        })
    })?;
    let store = ctx.open_existing_store().await?;
    let report = match (rekey, old_hmac_key) {
        (true, Some(old)) => {
            let old = crate::secrets::resolve(&crate::config::Secret::new(old))
                .map_err(|e| CmdError::Usage(format!("--old-hmac-key: {e}")))?;
            store
                .rekey(&crate::store::MacKey::new(old.expose()), key)
                .await?
        }
        _ => store.verify(&key).await?,
    };
    store.close().await;
    let intact = report.problems.is_empty();
    if json {
        let v = serde_json::json!({
            "intact": intact,
            "baseline_rows": report.baseline_rows,
            "events": report.events,
            "problems": report.problems,
        });
        print_stdout(&format!("{v}\n"))?;
    } else {
        let mut out = String::new();
        for p in &report.problems {
            out += &crate::event::escape_bytes(p.as_bytes());
            out.push('\n');
        }
        print_stdout(&out)?;
        eprintln!(
            "fimd: verify: {} baseline rows, {} events: {}{}",
            report.baseline_rows,
            report.events,
            if intact {
                "intact".to_string()
            } else {
                format!("{} problems", report.problems.len())
            },
            if rekey && intact {
                "; re-signed with the new key"
            } else {
                ""
            }
        );
    }
    Ok(if intact {
        Exit::Clean
    } else {
        Exit::Changes(4)
    })
}
