//! The one pipeline every entry point uses:
//! paths -> scan -> compare with the baseline -> one SQLite transaction per batch (baseline
//! rows + events + outbox rows) -> journal record. `init` records the baseline silently;
//! `check` and the daemon's rescans record events; `--dry-run` compares only.
//! An event exists nowhere (log, stdout, alert) before its transaction has committed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use tokio::sync::mpsc;

use crate::event::{display_path, path_for_json, Event, EventKind, Source, StateJson};
use crate::policy::Policy;
use crate::scan::{self, Outcome, ScanSettings, Scanned};
use crate::state::{compare, FileKind, FileState, Recorded};
use crate::store::{Batch, Store, StoreError};
use crate::timefmt::{now_ns, rfc3339_ns};

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

/// The pipeline's fixed parts.
pub struct Pipeline {
    pub store: Store,
    pub policy: Arc<Policy>,
    pub settings: ScanSettings,
    pub host: String,
    /// Sinks that get one outbox row per event.
    pub sinks: Vec<&'static str>,
    pool: Arc<rayon::ThreadPool>,
}

impl Pipeline {
    /// Fails only when the OS refuses to start the hashing threads.
    pub fn new(
        store: Store,
        policy: Arc<Policy>,
        settings: ScanSettings,
        host: String,
        sinks: Vec<&'static str>,
        workers: usize,
    ) -> std::io::Result<Pipeline> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .thread_name(|i| format!("fimd-hash-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Pipeline {
            store,
            policy,
            settings,
            host,
            sinks,
            pool: Arc::new(pool),
        })
    }

    /// One full scan of every root. `progress` is called with the number of entries seen.
    pub async fn full_scan(
        &self,
        mode: Mode,
        source: Source,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ScanReport, StoreError> {
        let baseline = Arc::new(match mode {
            Mode::Baseline => HashMap::new(),
            _ => self.store.load_baseline().await?,
        });
        let (tx, mut rx) = mpsc::channel::<Vec<Outcome>>(4);
        let walker = {
            let (policy, settings, baseline, pool) = (
                self.policy.clone(),
                self.settings.clone(),
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
                            .map(|p| scan::scan_path(p, &policy, &settings, baseline.get(p)))
                            .collect()
                    });
                    tx.blocking_send(outcomes).is_ok()
                };
                let report = scan::walk(&policy, |path| {
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
        let mut seen: HashSet<PathBuf> = HashSet::with_capacity(baseline.len());
        let mut pending = Batch::default();
        while let Some(outcomes) = rx.recv().await {
            report.entries += outcomes.len() as u64;
            progress(report.entries);
            for o in &outcomes {
                if !matches!(o, Outcome::Vanished(_)) {
                    seen.insert(o.path().to_path_buf());
                }
                if let Outcome::Entry(s) = o {
                    report.hashed += u64::from(s.hashed_at_ns != 0);
                }
            }
            self.add_outcomes(outcomes, &baseline, mode, source, &mut pending)
                .await?;
            if pending.upserts.len() + pending.events.len() >= COMMIT_ROWS {
                self.flush(&mut pending, mode, &mut report).await?;
            }
        }
        let walk = walker.await.map_err(|e| StoreError::Corrupt {
            path: self.store.path().to_path_buf(),
            message: format!("scanner thread failed: {e}"),
        })?;
        report.errors = walk.errors;
        // Baseline entries not seen on disk: removed (or silently forgotten when no longer
        // monitored). Entries under a directory we could not read are kept.
        let mut gone: Vec<(&PathBuf, &Recorded)> = baseline
            .iter()
            .filter(|(p, _)| {
                !seen.contains(*p) && !walk.unreadable_dirs.iter().any(|d| p.starts_with(d))
            })
            .collect();
        gone.sort_by(|a, b| a.0.cmp(b.0));
        for (path, old) in gone {
            if mode != Mode::Baseline
                && old.state.kind != FileKind::Dir
                && self.policy.selects(path)
            {
                pending.events.push(self.event(
                    EventKind::Removed,
                    path,
                    Some(&old.state),
                    None,
                    Vec::new(),
                    old.sensitive,
                    None,
                    source,
                ));
            }
            pending.deletes.push(path.clone());
            if pending.deletes.len() >= COMMIT_ROWS {
                self.flush(&mut pending, mode, &mut report).await?;
            }
        }
        let now = rfc3339_ns(now_ns());
        if mode != Mode::DryRun {
            pending.meta.push(("last_full_scan", now.clone()));
            pending.meta.push(("host", self.host.clone()));
            if mode == Mode::Baseline {
                pending.meta.push(("baseline_at", now));
            }
        }
        self.flush(&mut pending, mode, &mut report).await?;
        Ok(report)
    }

    /// Commit (or, for a dry run, just collect) the pending batch, then log its events.
    async fn flush(
        &self,
        pending: &mut Batch,
        mode: Mode,
        report: &mut ScanReport,
    ) -> Result<(), StoreError> {
        let batch = std::mem::take(pending);
        let events = match mode {
            Mode::DryRun => batch.events,
            _ => self.store.commit(batch, &self.sinks).await?,
        };
        for e in &events {
            crate::logging::record_event(e);
        }
        report.events.extend(events);
        Ok(())
    }

    /// Turn scan outcomes into baseline writes and events.
    async fn add_outcomes(
        &self,
        outcomes: Vec<Outcome>,
        baseline: &HashMap<PathBuf, Recorded>,
        mode: Mode,
        source: Source,
        batch: &mut Batch,
    ) -> Result<(), StoreError> {
        // Old texts for the diffs of modified text files, fetched in one query.
        let want_text: Vec<&Path> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Entry(s) if s.text.is_some() => baseline
                    .get(&s.path)
                    .filter(|old| !old.sensitive && old.state.sha256 != s.state.sha256)
                    .map(|_| s.path.as_path()),
                _ => None,
            })
            .collect();
        let old_texts = if mode == Mode::Baseline || want_text.is_empty() {
            HashMap::new()
        } else {
            self.store.load_texts(&want_text).await?
        };
        for o in outcomes {
            match o {
                Outcome::Vanished(_) => {}
                Outcome::Same(path) => {
                    // Sensitive by a new rule: forget its content now.
                    if let Some(old) = baseline
                        .get(&path)
                        .filter(|old| !old.sensitive && self.policy.is_sensitive_path(&path))
                    {
                        batch.upserts.push((
                            path.clone(),
                            Recorded {
                                sensitive: true,
                                ..old.clone()
                            },
                        ));
                        batch.text_deletes.push(path);
                    }
                }
                Outcome::Entry(s) => {
                    let old = baseline.get(&s.path);
                    self.add_entry(s, old, mode, source, &old_texts, batch);
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn add_entry(
        &self,
        s: Scanned,
        old: Option<&Recorded>,
        mode: Mode,
        source: Source,
        old_texts: &HashMap<PathBuf, Vec<u8>>,
        batch: &mut Batch,
    ) {
        let hashed_at_ns = if s.hashed_at_ns != 0 {
            s.hashed_at_ns
        } else {
            old.map(|o| o.hashed_at_ns).unwrap_or(0)
        };
        let record = Recorded {
            state: s.state.clone(),
            sensitive: s.sensitive,
            hashed_at_ns,
        };
        let is_dir = s.state.kind == FileKind::Dir;
        match old {
            None => {
                if mode != Mode::Baseline && !is_dir {
                    batch.events.push(self.event(
                        EventKind::Added,
                        &s.path,
                        None,
                        Some(&s.state),
                        Vec::new(),
                        s.sensitive,
                        None,
                        source,
                    ));
                }
            }
            Some(old) => {
                let changed = compare(&old.state, &s.state);
                if changed.is_empty() {
                    // Nothing changed. Rewrite the row only to settle a racy hash time (so the
                    // next check can take the fast path) or to record a new sensitivity.
                    let settle = s.hashed_at_ns != 0 && scan::is_racy(&old.state, old.hashed_at_ns);
                    if old.sensitive == s.sensitive && !settle {
                        return;
                    }
                } else {
                    let sensitive = old.sensitive || s.sensitive;
                    let diff = match (&s.text, old_texts.get(&s.path)) {
                        (Some(new), Some(old_text)) if !sensitive => {
                            crate::diff::unified(&display_path(&s.path), old_text, new)
                        }
                        _ => None,
                    };
                    let names = changed.iter().map(|a| a.as_str().to_string()).collect();
                    batch.events.push(self.event(
                        EventKind::Modified,
                        &s.path,
                        Some(&old.state),
                        Some(&s.state),
                        names,
                        sensitive,
                        diff,
                        source,
                    ));
                }
            }
        }
        match &s.text {
            Some(text) if !s.sensitive => batch.text_puts.push((s.path.clone(), text.clone())),
            _ => {
                if old.is_some() && !is_dir {
                    batch.text_deletes.push(s.path.clone());
                }
            }
        }
        batch.upserts.push((s.path, record));
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        kind: EventKind,
        path: &Path,
        old: Option<&FileState>,
        new: Option<&FileState>,
        changed: Vec<String>,
        sensitive: bool,
        diff: Option<String>,
        source: Source,
    ) -> Event {
        let (path, path_hex) = path_for_json(path);
        Event {
            id: None,
            time: rfc3339_ns(now_ns()),
            host: self.host.clone(),
            source,
            event: kind,
            path,
            path_hex,
            changed,
            old: old.map(StateJson::from),
            new: new.map(StateJson::from),
            sensitive,
            diff: if sensitive { None } else { diff },
        }
    }
}
