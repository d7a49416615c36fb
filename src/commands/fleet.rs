//! `fimd fleet schema|events|hosts|prevalence|gaps`.

use std::time::Duration;

use super::setup::{print_stdout, Context};
use super::{CmdError, Exit};
use crate::cli::{FleetCommand, FleetConn};
use crate::config::Secret;
use crate::fleet::query::{EventQuery, Reader};

pub async fn run(ctx: &Context, command: FleetCommand) -> Result<Exit, CmdError> {
    let prefix = |flag: Option<String>| {
        let p = flag
            .or_else(|| ctx.cfg.fleet.table_prefix.clone())
            .unwrap_or_else(|| "fim_".to_string());
        match crate::fleet::schema::valid_prefix(&p) {
            true => Ok(p),
            false => Err(CmdError::Usage(format!(
                "table prefix {p:?}: lowercase letters, digits and _ only, not starting with a digit"
            ))),
        }
    };
    match command {
        FleetCommand::Schema { table_prefix } => {
            print_stdout(&crate::fleet::schema::sql(&prefix(table_prefix)?))?;
            Ok(Exit::Clean)
        }
        FleetCommand::Events {
            conn,
            since,
            path,
            severity,
            host,
            limit,
        } => {
            let min_severity = match severity {
                Some(s) => Some(crate::event::Severity::parse(&s).ok_or_else(|| {
                    CmdError::Usage(format!(
                        "--severity {s:?}: expected one of critical, high, medium, low, info"
                    ))
                })?),
                None => None,
            };
            let since = match since {
                Some(s) => Some(crate::timefmt::rfc3339_ns(
                    crate::timefmt::parse_since(&s).ok_or_else(|| {
                        CmdError::Usage(format!(
                            "--since {s:?}: expected an RFC 3339 time or a duration (1h)"
                        ))
                    })?,
                )),
                None => None,
            };
            let reader = connect(ctx, &conn, &prefix(None)?).await?;
            let rows = reader
                .events(&EventQuery {
                    since,
                    path_glob: path,
                    min_severity,
                    host,
                    limit,
                })
                .await
                .map_err(CmdError::Io)?;
            let mut out = String::new();
            for r in &rows {
                if conn.json {
                    out += &json(&r.body)?;
                } else {
                    let sha = r.sha256.as_deref().map_or("-", |s| &s[..s.len().min(12)]);
                    let from = r
                        .from
                        .as_deref()
                        .map(|f| format!(" (from {f})"))
                        .unwrap_or_default();
                    out += &format!(
                        "{}  {:<16} {:<8} {:<8} {}{from}  sha256:{sha}  {}\n",
                        r.time, r.host, r.severity, r.event, r.path, r.uid
                    );
                }
            }
            print_stdout(&out)?;
            Ok(Exit::Clean)
        }
        FleetCommand::Hosts {
            conn,
            silent,
            stale_scan,
        } => {
            let silent = duration("--silent", &silent)?;
            let stale = duration("--stale-scan", &stale_scan)?;
            let reader = connect(ctx, &conn, &prefix(None)?).await?;
            let rows = reader.hosts(silent, stale).await.map_err(CmdError::Io)?;
            let mut out = String::new();
            if conn.json {
                for r in &rows {
                    out += &json(r)?;
                }
            } else {
                out += &format!(
                    "{:<16} {:<27} {:<8} {:>9} {:>9} {:>8} {:>9}  {:<27} {}\n",
                    "HOST",
                    "LAST SEEN",
                    "VERSION",
                    "LAST ID",
                    "STORED",
                    "BACKLOG",
                    "BASELINE",
                    "LAST FULL SCAN",
                    "PROBLEMS"
                );
                for r in &rows {
                    out += &format!(
                        "{:<16} {:<27} {:<8} {:>9} {:>9} {:>8} {:>9}  {:<27} {}\n",
                        r.host,
                        r.last_seen,
                        r.version,
                        r.last_event_id,
                        r.stored_event_id,
                        r.outbox_backlog,
                        r.baseline_size,
                        r.last_full_scan.as_deref().unwrap_or("never"),
                        match r.problems.is_empty() {
                            true => "ok".to_string(),
                            false => r.problems.join(","),
                        }
                    );
                }
            }
            print_stdout(&out)?;
            Ok(Exit::Clean)
        }
        FleetCommand::Prevalence { conn, path } => {
            let reader = connect(ctx, &conn, &prefix(None)?).await?;
            let rows = reader.prevalence(&path).await.map_err(CmdError::Io)?;
            let mut out = String::new();
            for r in &rows {
                if conn.json {
                    out += &json(r)?;
                } else {
                    let mut names = r
                        .host_names
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ");
                    if r.host_names.len() > 5 {
                        names += &format!(" and {} more", r.host_names.len() - 5);
                    }
                    out += &format!(
                        "{:>6} host{} sha256:{}  {names}\n",
                        r.hosts,
                        if r.hosts == 1 { " " } else { "s" },
                        r.sha256.as_deref().unwrap_or("- (not a regular file)")
                    );
                }
            }
            print_stdout(&out)?;
            Ok(Exit::Clean)
        }
        FleetCommand::Gaps { conn } => {
            let reader = connect(ctx, &conn, &prefix(None)?).await?;
            let rows = reader.gaps().await.map_err(CmdError::Io)?;
            let breaks = reader.chain_breaks().await.map_err(CmdError::Io)?;
            let mut out = String::new();
            for r in &rows {
                if conn.json {
                    out += &json(r)?;
                } else {
                    out += &format!(
                        "{:<16} {}  ids {}..{} missing ({} event{}, {})\n",
                        r.host,
                        r.instance,
                        r.first_missing,
                        r.last_missing,
                        r.missing,
                        if r.missing == 1 { "" } else { "s" },
                        r.kind
                    );
                }
            }
            for b in &breaks {
                match conn.json {
                    true => out += &json(b)?,
                    false => out += &format!("{}\n", b.describe()),
                }
            }
            print_stdout(&out)?;
            Ok(Exit::Clean)
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, CmdError> {
    let mut s =
        serde_json::to_string(v).map_err(|e| CmdError::Io(format!("cannot encode JSON: {e}")))?;
    s.push('\n');
    Ok(s)
}

fn duration(flag: &str, text: &str) -> Result<Duration, CmdError> {
    humantime::parse_duration(text)
        .map_err(|_| CmdError::Usage(format!("{flag} {text:?}: expected a duration (15m, 2days)")))
}

/// The reader connection: `--url` / `FIMD_FLEET_URL`, else `[fleet] url`; both may be secret
/// references. A connection failure exits 18 with the server named, never the password.
async fn connect(ctx: &Context, conn: &FleetConn, prefix: &str) -> Result<Reader, CmdError> {
    let url = match (&conn.url, &ctx.cfg.fleet.url) {
        (Some(u), _) => Secret::new(u.clone()),
        (None, Some(u)) => u.clone(),
        (None, None) => {
            return Err(CmdError::Usage(
                "no fleet database: pass --url postgres://... or set [fleet] url".to_string(),
            ))
        }
    };
    let url =
        crate::secrets::resolve(&url).map_err(|e| CmdError::Usage(format!("fleet url: {e}")))?;
    Reader::connect(url.expose(), prefix)
        .await
        .map_err(CmdError::Io)
}
