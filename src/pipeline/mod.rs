//! The one pipeline every entry point uses:
//! paths -> scan -> compare with the baseline -> one SQLite transaction per batch (baseline
//! rows + events + outbox rows) -> journal record. `init` records the baseline silently;
//! `check` and the daemon's rescans record events; `--dry-run` compares only; the daemon's
//! inotify events go through [`Pipeline::scan_paths`] (same compare and commit code).
//! An event exists nowhere (log, stdout, alert) before its transaction has committed.
//! Hashing runs on blocking threads (a rayon pool), never on the async runtime threads.
//! Cancellation (the daemon's SIGTERM) is honoured only between committed batches.

mod record;
mod renames;
mod retarget;
mod sorted;
mod targeted;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SinkRoute};
use crate::event::{Event, EventKind, Source};
use crate::explain::Explainer;
use crate::policy::Policy;
use crate::scan::{self, Outcome, ScanSettings, WalkReport};
use crate::state::{FileKind, Recorded};
use crate::store::{Batch, Store, StoreError};
use crate::timefmt::{now_ns, rfc3339_ns};
use record::Draft;
use renames::Renames;
pub use retarget::Retarget;

/// What a scan does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fill the baseline without events (`init`, newly monitored files after a reload).
    Baseline,
    /// Record events and advance the baseline.
    Record,
    /// Compare only; write nothing.
    DryRun,
}

/// The result of one scan.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Committed events (ids set), or for a dry run the events that would be recorded.
    pub events: Vec<Event>,
    /// Paths looked at (files and directories).
    pub entries: u64,
    /// Regular files read and hashed (the rest took the unchanged-metadata fast path).
    pub hashed: u64,
    pub errors: usize,
    /// Stopped early by cancellation: what was committed stands, removals were not looked
    /// for and `last_full_scan` was not advanced.
    pub interrupted: bool,
    /// Changes the explain stage deferred (a package transaction may still record their
    /// digests): nothing was written for them; scan them again shortly.
    pub deferred: Vec<PathBuf>,
    /// Big files left to the daemon's big-file lane (see `scan::bigfile`): nothing was
    /// written for them; scan them again once the lane has hashed them.
    pub big_files: Vec<PathBuf>,
    /// Paths gone from disk with the inode of one of `big_files` (maybe renamed to it):
    /// nothing was written for them either; scan them again with the big file, so a rename
    /// stays one `renamed` event.
    pub held_for_big: Vec<PathBuf>,
    /// The inodes of `big_files` (to find `held_for_big`).
    big_inodes: HashSet<u64>,
}

impl ScanReport {
    /// AIDE-compatible exit bits: 1 added, 2 removed, 4 changed.
    pub fn exit_bits(&self) -> u8 {
        self.events
            .iter()
            .fold(0, |acc, e| acc | e.event.exit_bit())
    }
}

/// Scanning paths per chunk keeps memory bounded (contents are kept only up to max_bytes).
const CHUNK: usize = 256;
/// Commit when a pending batch holds this many rows.
const COMMIT_ROWS: usize = 4096;
/// ... or this many bytes of text content (keeps memory flat when files are large).
const COMMIT_TEXT_BYTES: usize = 8 << 20;

/// The pending batch is big enough to commit.
fn batch_full(b: &Batch) -> bool {
    b.upserts.len() + b.events.len() >= COMMIT_ROWS || b.text_bytes >= COMMIT_TEXT_BYTES
}

/// The pipeline's fixed parts.
pub struct Pipeline {
    pub store: Store,
    pub policy: Arc<Policy>,
    pub settings: ScanSettings,
    pub host: String,
    /// Sinks that get one outbox row per event at or above their `min_severity`.
    pub sinks: Vec<SinkRoute>,
    /// The explain stage (package verdicts, severity).
    pub explain: Arc<Explainer>,
    /// `[store] keep_events`: how long history is kept (zero: forever).
    pub keep_events: std::time::Duration,
    pool: Arc<rayon::ThreadPool>,
    /// Checked between committed batches; a cancelled scan stops at the next batch boundary.
    cancel: CancellationToken,
    /// Woken after a commit that queued alerts (the daemon's outbox worker).
    wake: Option<Arc<tokio::sync::Notify>>,
    /// Who changed the paths of the next targeted scan (who-data), taken as their events
    /// are built ([`Pipeline::set_actors`]).
    actors: std::sync::Mutex<HashMap<PathBuf, crate::event::Actor>>,
}

/// Produces the paths of one scan on a blocking thread, calling `visit` for each (false: stop).
type Producer = Box<dyn FnOnce(&mut dyn FnMut(PathBuf) -> bool) -> WalkReport + Send>;

impl Pipeline {
    /// Fails only when the OS refuses to start the hashing threads.
    pub fn new(
        store: Store,
        policy: Arc<Policy>,
        settings: ScanSettings,
        host: String,
        sinks: Vec<SinkRoute>,
        workers: usize,
        low_priority: bool,
    ) -> std::io::Result<Pipeline> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .thread_name(|i| format!("fimd-hash-{i}"))
            .start_handler(move |_| {
                if low_priority {
                    scan::governor::lower_thread_priority();
                }
            })
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Pipeline {
            explain: Arc::new(Explainer::without_packages(policy.clone())),
            keep_events: std::time::Duration::ZERO,
            store,
            policy,
            settings,
            host,
            sinks,
            pool: Arc::new(pool),
            cancel: CancellationToken::new(),
            wake: None,
            actors: std::sync::Mutex::default(),
        })
    }

    /// The pipeline a config describes (scan settings, host, sinks, hashing threads).
    /// `full`: re-hash every file even when its metadata is unchanged (`check --full`).
    pub fn for_config(
        store: Store,
        cfg: &Config,
        policy: Arc<Policy>,
        sinks: Vec<SinkRoute>,
        full: bool,
    ) -> std::io::Result<Pipeline> {
        let settings = ScanSettings {
            max_bytes: cfg.content.max_bytes,
            detect_private_keys: cfg.sensitive.detect_private_keys,
            full,
            rate: scan::governor::RateLimit::new(cfg.daemon.hash_rate).map(Arc::new),
            lane: None,
            progress: Arc::default(),
        };
        let explain = Arc::new(Explainer::load(&cfg.packages, policy.clone()));
        let mut pipeline = Pipeline::new(
            store,
            policy,
            settings,
            cfg.host(),
            sinks,
            cfg.hash_workers(),
            cfg.daemon.low_priority,
        )?
        .with_explainer(explain);
        pipeline.keep_events = cfg.store.keep_events;
        Ok(pipeline)
    }

    /// Explain changes with this explain stage (package databases loaded).
    pub fn with_explainer(mut self, explain: Arc<Explainer>) -> Pipeline {
        self.explain = explain;
        self
    }

    /// A scan's helper task died (a panic): one clear error naming the database.
    pub(super) fn task_failed(&self, what: &str, e: tokio::task::JoinError) -> StoreError {
        StoreError::Corrupt {
            path: self.store.path().to_path_buf(),
            message: format!("{what} task failed: {e}"),
        }
    }

    /// The actors of the paths the next scan looks at (the daemon's real-time events).
    pub fn set_actors(&self, actors: HashMap<PathBuf, crate::event::Actor>) {
        match self.actors.lock() {
            Ok(mut a) => *a = actors,
            Err(poisoned) => *poisoned.into_inner() = actors,
        }
    }

    /// The actors [`Pipeline::set_actors`] gave that no event used.
    pub fn take_actors(&self) -> HashMap<PathBuf, crate::event::Actor> {
        match self.actors.lock() {
            Ok(mut a) => std::mem::take(&mut *a),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// The daemon's parts: leave big files to `lane` in recording scans (see
    /// `scan::bigfile`), and count the bytes hashed in `progress` (its watchdog).
    pub fn with_lane(
        mut self,
        lane: Arc<scan::bigfile::BigFiles>,
        progress: Arc<std::sync::atomic::AtomicU64>,
    ) -> Pipeline {
        self.settings.lane = Some(lane);
        self.settings.progress = progress;
        self
    }

    /// The scan settings for `mode`: only recording scans leave big files to the lane (a
    /// baseline built silently must hold every file it saw).
    fn settings_for(&self, mode: Mode) -> ScanSettings {
        let mut settings = self.settings.clone();
        if mode != Mode::Record {
            settings.lane = None;
        }
        settings
    }

    /// Wake `wake` after each commit that queued alerts.
    pub fn with_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Pipeline {
        self.wake = Some(wake);
        self
    }

    /// Stop scans at the next batch boundary once `token` is cancelled.
    pub fn with_cancel(mut self, token: CancellationToken) -> Pipeline {
        self.cancel = token;
        self
    }

    /// Record a notice about fimd itself (not a scanned file) at `path`: one `added` event
    /// with `severity` and `reason`, committed, logged and queued for the sinks like any other.
    pub async fn record_notice(
        &self,
        path: &Path,
        severity: crate::event::Severity,
        reason: &str,
    ) -> Result<Vec<Event>, StoreError> {
        let (text, hex) = crate::event::path_for_json(path);
        let mut e = Event::new(Source::Rescan, EventKind::Added, &text);
        e.path_hex = hex;
        e.time = rfc3339_ns(now_ns());
        e.host = self.host.clone();
        e.severity = severity;
        e.reason = reason.to_string();
        let mut batch = Batch {
            events: vec![e],
            ..Batch::default()
        };
        let mut report = ScanReport::default();
        self.flush(&mut batch, Mode::Record, &mut report).await?;
        Ok(report.events)
    }

    /// One full scan of every root. `progress` is called with the number of entries seen.
    pub async fn full_scan(
        &self,
        mode: Mode,
        source: Source,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ScanReport, StoreError> {
        let now = rfc3339_ns(now_ns());
        let mut meta = Vec::new();
        if mode != Mode::DryRun {
            meta.push(("last_full_scan", now.clone()));
            meta.push(("host", self.host.clone()));
            meta.push(self.targets_meta());
            if mode == Mode::Baseline {
                meta.push(("baseline_at", now));
            }
        }
        let retargets = match mode {
            Mode::Baseline => Vec::new(),
            Mode::Record | Mode::DryRun => self.root_changes().await?,
        };
        self.merge_scan(mode, source, progress, meta, &retargets)
            .await
    }

    /// The engine shared by full and targeted scans: `produce` lists paths on a blocking
    /// thread, chunks are scanned on the hash pool, outcomes are compared with `baseline` and
    /// committed in batches. Then every baseline row `in_scope` that was not seen on disk is
    /// removed (an event when still selected), except below a directory that could not be
    /// read. `meta` is committed with the last batch.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        mode: Mode,
        source: Source,
        baseline: Arc<HashMap<PathBuf, Recorded>>,
        produce: Producer,
        in_scope: &(dyn Fn(&Path) -> bool + Sync),
        progress: &(dyn Fn(u64) + Sync),
        meta: Vec<(&'static str, String)>,
    ) -> Result<ScanReport, StoreError> {
        let (tx, mut rx) = mpsc::channel::<Vec<Outcome>>(4);
        let walker = {
            let (policy, settings, baseline, pool) = (
                self.policy.clone(),
                self.settings_for(mode),
                baseline.clone(),
                self.pool.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let mut chunk = Vec::with_capacity(CHUNK);
                let flush = |chunk: &mut Vec<PathBuf>| {
                    let paths = std::mem::take(chunk);
                    let outcomes: Vec<Outcome> = pool.install(|| {
                        paths
                            .par_iter()
                            .map(|p| {
                                scan::scan_path(
                                    p,
                                    &policy,
                                    &settings,
                                    baseline.get(p),
                                    scan::Seen::Other,
                                )
                            })
                            .collect()
                    });
                    tx.blocking_send(outcomes).is_ok()
                };
                let report = produce(&mut |path| {
                    chunk.push(path);
                    chunk.len() < CHUNK || flush(&mut chunk)
                });
                if !chunk.is_empty() {
                    flush(&mut chunk);
                }
                report
            })
        };
        let mut report = ScanReport::default();
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let mut pending = Batch::default();
        let mut renames = Renames::default();
        while let Some(outcomes) = rx.recv().await {
            // Candidates that are not there (a user without authorized_keys) are not entries.
            report.entries += outcomes
                .iter()
                .filter(|o| !matches!(o, Outcome::Vanished(_)))
                .count() as u64;
            progress(report.entries);
            for o in &outcomes {
                if !matches!(o, Outcome::Vanished(_)) {
                    seen.insert(o.path().to_path_buf());
                }
                if let Outcome::Entry(s) = o {
                    report.hashed += u64::from(s.hashed_at_ns != 0);
                }
            }
            let pairs = outcomes
                .into_iter()
                .map(|o| {
                    let old = baseline.get(o.path()).cloned();
                    (o, old)
                })
                .collect();
            self.add_outcomes(pairs, mode, source, &mut pending, &mut report, &mut renames)
                .await?;
            if batch_full(&pending) {
                self.flush(&mut pending, mode, &mut report).await?;
            }
            if self.cancel.is_cancelled() {
                // Safe point: commit what was compared, stop the walker (its send fails).
                report.interrupted = true;
                drop(rx);
                break;
            }
        }
        let walk = walker.await.map_err(|e| self.task_failed("scanner", e))?;
        report.errors = walk.errors;
        if report.interrupted {
            let held = renames.release();
            self.finish(held, &mut pending, &mut report.deferred)
                .await?;
            self.flush(&mut pending, mode, &mut report).await?;
            return Ok(report);
        }
        let mut gone = self.add_gone(&baseline, &seen, &walk, in_scope, mode, source);
        hold_for_big(&mut gone, &baseline, &mut report);
        let mut drafts = renames.pair(self, gone);
        drafts.extend(renames.release());
        self.finish(drafts, &mut pending, &mut report.deferred)
            .await?;
        pending.meta.extend(meta);
        self.flush(&mut pending, mode, &mut report).await?;
        Ok(report)
    }

    /// Baseline entries in scope not seen on disk: removed (or silently forgotten when no
    /// longer monitored). Entries under a directory we could not read are kept.
    #[allow(clippy::too_many_arguments)]
    fn add_gone(
        &self,
        baseline: &HashMap<PathBuf, Recorded>,
        seen: &HashSet<PathBuf>,
        walk: &WalkReport,
        in_scope: &(dyn Fn(&Path) -> bool + Sync),
        mode: Mode,
        source: Source,
    ) -> Vec<Draft> {
        let mut gone: Vec<(&PathBuf, &Recorded)> = baseline
            .iter()
            .filter(|(p, _)| {
                !seen.contains(*p)
                    && in_scope(p)
                    && !walk.unreadable_dirs.iter().any(|d| p.starts_with(d))
            })
            .collect();
        gone.sort_by(|a, b| a.0.cmp(b.0));
        gone.into_iter()
            .map(|(path, old)| self.removed(path.clone(), old.clone(), mode, source, &[]))
            .collect()
    }

    /// A baseline row whose path is gone from disk: `removed` when it is still monitored or
    /// lies below `retired` (the old target of a retargeted root), and is not a directory;
    /// silently forgotten otherwise.
    fn removed(
        &self,
        path: PathBuf,
        old: Recorded,
        mode: Mode,
        source: Source,
        retired: &[Retarget],
    ) -> Draft {
        let event = (mode != Mode::Baseline
            && old.state.kind != FileKind::Dir
            && (self.policy.selects(&path) || retired.iter().any(|r| path.starts_with(&r.old))))
        .then(|| {
            self.event(
                EventKind::Removed,
                &path,
                Some(&old.state),
                None,
                Vec::new(),
                old.sensitive,
                None,
                source,
            )
        });
        Draft::removed(path, old, event)
    }
}

/// Keep back the removals that may be the old name of a big file left to the lane (same
/// inode): they are scanned again with it (see [`ScanReport::held_for_big`]).
fn hold_for_big(
    gone: &mut Vec<Draft>,
    baseline: &HashMap<PathBuf, Recorded>,
    report: &mut ScanReport,
) {
    if report.big_inodes.is_empty() {
        return;
    }
    let inodes = std::mem::take(&mut report.big_inodes);
    gone.retain(|d| {
        let same = baseline
            .get(&d.path)
            .is_some_and(|r| r.state.kind == FileKind::File && inodes.contains(&r.state.inode));
        if same {
            report.held_for_big.push(d.path.clone());
        }
        !same
    });
}
