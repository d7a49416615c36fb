//! `init` and `check`: full scans through the pipeline.

use std::io::IsTerminal;
use std::time::Instant;

use super::setup::{print_stdout, Context};
use super::{CmdError, Exit};
use crate::config::ConfigError;
use crate::event::{display_path, Event, EventKind, Source};
use crate::pipeline::Mode;
use crate::store::StoreError;
use crate::timefmt::{human_bytes, human_secs, plural};

/// `init [--force]`: build the baseline. Refuses to replace a complete one without `--force`;
/// an interrupted init left no complete baseline, so a plain `init` recovers from it.
///
/// The new baseline is built in `<database>.new` (starting from the old file's history) and
/// renamed over the database only when complete: a killed `init --force` keeps the old one.
pub async fn init(ctx: &Context, force: bool) -> Result<Exit, CmdError> {
    ensure_coverage(ctx)?;
    let db = &ctx.cfg.daemon.database;
    let current = crate::store::Store::open(db).await?;
    current.ensure_no_daemon().await?;
    if current.has_baseline().await? && !force {
        return Err(StoreError::BaselineExists(current.path().to_path_buf()).into());
    }
    current.close().await;
    let building = crate::store::building_path(db);
    crate::store::remove_leftovers(&building)?;
    let store = crate::store::Store::open_bulk(&building).await?;
    store.copy_history_from(db).await?;
    store.clear_baseline().await?;
    // A new baseline: sign it (and the history) with the key configured now.
    store.forget_key().await?;
    store.apply_key(ctx.mac_key()?).await?;
    store.begin_bulk().await?;
    let started = Instant::now();
    let bar = progress_bar();
    let pipeline = ctx.pipeline(store.clone(), true)?;
    let report = pipeline
        .full_scan(Mode::Baseline, Source::Check, &|n| bar.set_position(n))
        .await;
    bar.finish_and_clear();
    let report = report?;
    store.end_bulk().await?;
    store.close().await;
    crate::store::install(&building, db)?;
    crate::store::mark_baseline(db);
    let took = started.elapsed();
    tracing::debug!(
        entries = report.entries,
        hashed = report.hashed,
        took = %human_secs(took),
        "baseline built"
    );
    // Always (also from cron or a script): what init did, on stderr.
    let size = std::fs::metadata(&ctx.cfg.daemon.database).map_or(0, |m| m.len());
    eprintln!(
        "fimd: baseline of {} ({} hashed) in {}; database {} ({})",
        plural(report.entries as usize, "entry", "entries"),
        plural(report.hashed as usize, "file", "files"),
        human_secs(took),
        display_path(&ctx.cfg.daemon.database),
        human_bytes(size)
    );
    Ok(Exit::Clean)
}

/// How long `check` waits for alert delivery before exiting.
const CHECK_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// `check [--json] [--dry-run] [--full]`: one full scan; exit code = OR of the change bits.
pub async fn check(ctx: &Context, json: bool, dry_run: bool, full: bool) -> Result<Exit, CmdError> {
    ensure_coverage(ctx)?;
    let store = if dry_run {
        let store = ctx.open_existing_store().await?;
        store.use_key_read_only(ctx.mac_key()?).await?;
        store
    } else {
        ctx.open_signed_store().await?
    };
    if !store.has_baseline().await? {
        return Err(StoreError::NoBaseline(store.path().to_path_buf()).into());
    }
    let started = Instant::now();
    let pipeline = ctx.pipeline(store.clone(), full)?;
    if !dry_run {
        crate::explain::rate_unrated(&store, &pipeline.explain).await?;
    }
    if !dry_run {
        // Before the scan, so this run's own events are never candidates. A failure (a lock
        // held elsewhere) must not cost the check: the next one tries again.
        if let Err(e) = store.apply_retention(pipeline.keep_events).await {
            tracing::warn!(error = %e, "cannot prune old history now; the next check tries again");
        }
    }
    let mode = if dry_run { Mode::DryRun } else { Mode::Record };
    let mut report = pipeline.full_scan(mode, Source::Check, &|_| {}).await?;
    pipeline
        .settle_deferred(&mut report, mode, Source::Check)
        .await?;
    if !dry_run && !ctx.sinks.is_empty() {
        // Deliver before exiting (bounded); what is left stays queued for the daemon.
        match crate::alert::flush(store.pool(), &ctx.sinks, &ctx.cfg.notify, CHECK_FLUSH_WAIT).await
        {
            Ok(r) if r.still_pending > 0 => {
                tracing::warn!(
                    pending = r.still_pending,
                    "alerts not delivered yet; they stay queued for `fimd run`"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "alert delivery failed; alerts stay queued"),
        }
    }
    store.close().await;
    let mut out = String::new();
    for e in &report.events {
        if json {
            out += &serde_json::to_string(e)
                .map_err(|e| CmdError::Io(format!("cannot encode event: {e}")))?;
            out.push('\n');
        } else {
            out += &human_line(e);
        }
    }
    print_stdout(&out)?;
    if !report.events.is_empty() || std::io::stderr().is_terminal() {
        eprintln!(
            "fimd: {} ({}, {} hashed, {}{})",
            summary(&report.events),
            plural(report.entries as usize, "entry", "entries"),
            report.hashed,
            human_secs(started.elapsed()),
            if dry_run {
                ", dry run: nothing recorded"
            } else {
                ""
            }
        );
    }
    Ok(match report.exit_bits() {
        0 => Exit::Clean,
        bits => Exit::Changes(bits),
    })
}

/// Warn about each missing watch path; fail (exit 17) when none exists at all, rather than
/// build or compare an empty baseline.
fn ensure_coverage(ctx: &Context) -> Result<(), CmdError> {
    ctx.policy.warn_missing();
    if ctx.policy.nothing_exists() {
        let paths: Vec<String> = ctx
            .policy
            .missing()
            .iter()
            .map(|w| display_path(&w.configured))
            .collect();
        return Err(CmdError::Config(ConfigError::Invalid {
            path: ctx.config_path.clone(),
            message: format!(
                "no watch path exists ({}): nothing would be monitored",
                paths.join(", ")
            ),
        }));
    }
    Ok(())
}

/// `medium   modified  /etc/ssh/sshd_config  (sha256 size mtime)  -- locally modified conffile
/// by vim[4711] uid=root (login alice)  pkg openssh-server 1:9.2p1-2 verified`.
pub fn human_line(e: &Event) -> String {
    let changed = if e.changed.is_empty() {
        String::new()
    } else {
        format!("  ({})", e.changed.join(" "))
    };
    let sensitive = if e.sensitive { "  [sensitive]" } else { "" };
    let from = e
        .from_buf()
        .map(|f| format!("  from {}", display_path(&f)))
        .unwrap_or_default();
    let mut line = format!(
        "{:<8} {:<9} {}{from}{changed}{sensitive}",
        e.severity.as_str(),
        e.event.as_str(),
        display_path(&e.path_buf())
    );
    if !e.reason.is_empty() {
        line += &format!("  -- {}", crate::event::escape_bytes(e.reason.as_bytes()));
    }
    if let Some(a) = &e.actor {
        line += &format!("  by {}", crate::alert::content::actor_line(a));
    }
    if let Some(p) = &e.package {
        let versions = match &p.old_version {
            Some(old) if *old != p.version => format!("{old} -> {}", p.version),
            _ => p.version.clone(),
        };
        let verified = if p.verified {
            "verified"
        } else {
            "NOT verified"
        };
        line += &crate::event::escape_bytes(
            format!("  pkg {} {versions} {verified}", p.name).as_bytes(),
        );
    }
    line.push('\n');
    line
}

fn summary(events: &[Event]) -> String {
    if events.is_empty() {
        return "no changes".to_string();
    }
    let n = |k: EventKind| events.iter().filter(|e| e.event == k).count();
    let renamed = match n(EventKind::Renamed) {
        0 => String::new(),
        r => format!(", {r} renamed"),
    };
    format!(
        "{}: {} added, {} removed, {} modified{renamed}",
        plural(events.len(), "change", "changes"),
        n(EventKind::Added),
        n(EventKind::Removed),
        n(EventKind::Modified)
    )
}

fn progress_bar() -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {pos} entries scanned ({per_sec}) {elapsed}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
