//! Targeted scans: the daemon's debounced paths through the same compare/commit engine as a
//! full scan, touching only the baseline rows that can be affected.
//!
//! For each path (unmonitored paths are ignored):
//! - gone from disk: `removed` for it and, if it was a directory, for every row below it;
//! - a directory (new, moved in, deleted and recreated, or its own metadata changed): its
//!   subtree is walked and reconciled: selected files compared (new ones are `added`), rows
//!   below it that are no longer there are `removed`;
//! - anything else monitored: scanned and compared like in a full scan.
//!
//! Also [`Pipeline::prune_unmonitored`]: silently drop rows a new config no longer covers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Mode, Pipeline, Producer, ScanReport};
use crate::event::{display_path, Source};
use crate::policy::Policy;
use crate::scan::{self, is_gone, WalkReport};
use crate::state::FileKind;
use crate::store::{Batch, StoreError};

/// What a targeted scan looks at, decided from `lstat` and the baseline rows of the paths.
#[derive(Debug, Default)]
struct Plan {
    /// Scanned one by one.
    entries: Vec<PathBuf>,
    /// Directories walked and reconciled.
    walk: Vec<PathBuf>,
    /// Baseline rows of exactly these paths are in scope for removal.
    exact: HashSet<PathBuf>,
    /// Every baseline row below these directories is in scope for removal.
    prefixes: Vec<PathBuf>,
}

impl Pipeline {
    /// Scan these paths (and what they imply, see the module doc) and record the changes.
    /// `Mode::Baseline` records them silently (newly monitored files after a reload).
    pub async fn scan_paths(
        &self,
        mode: Mode,
        paths: Vec<PathBuf>,
        source: Source,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ScanReport, StoreError> {
        let policy = self.policy.clone();
        let mut list: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| policy.selects(p) || policy.walks_dir(p))
            .collect();
        list.sort();
        list.dedup();
        if list.is_empty() {
            return Ok(ScanReport::default());
        }
        let mut known = self.store.load_some(&list, &[]).await?;
        let known_dirs: HashSet<PathBuf> = known
            .iter()
            .filter(|(_, r)| r.state.kind == FileKind::Dir)
            .map(|(p, _)| p.clone())
            .collect();
        let plan = {
            let policy = policy.clone();
            tokio::task::spawn_blocking(move || plan(&policy, list, &known_dirs))
                .await
                .map_err(|e| StoreError::Corrupt {
                    path: self.store.path().to_path_buf(),
                    message: format!("scanner thread failed: {e}"),
                })?
        };
        if !plan.prefixes.is_empty() {
            known.extend(self.store.load_some(&[], &plan.prefixes).await?);
        }
        let Plan {
            entries,
            walk,
            exact,
            prefixes,
        } = plan;
        let prefixes: HashSet<PathBuf> = prefixes.into_iter().collect();
        let in_scope = move |p: &Path| {
            exact.contains(p) || p.ancestors().skip(1).any(|a| prefixes.contains(a))
        };
        let produce: Producer = Box::new(move |visit| {
            let mut report = WalkReport::default();
            let mut visited: HashSet<PathBuf> = HashSet::new();
            // A path reached twice (listed and inside a walked directory) is scanned once.
            let mut visit_once = |p: PathBuf| !visited.insert(p.clone()) || visit(p);
            for p in entries {
                if !visit_once(p) {
                    return report;
                }
            }
            for dir in walk {
                if !scan::walk_subtree(&policy, &dir, &mut report, &mut visit_once) {
                    break;
                }
            }
            report
        });
        self.run(
            mode,
            source,
            Arc::new(known),
            produce,
            &in_scope,
            progress,
            Vec::new(),
        )
        .await
    }

    /// Look again at `report`'s deferred changes until none is left (a package transaction
    /// ended or `[packages] settle` ran out: the explain stage bounds it), adding their events
    /// to the report. For one-shot scans (`check`); the daemon retries from its own loop.
    pub async fn settle_deferred(
        &self,
        report: &mut ScanReport,
        mode: Mode,
        source: Source,
    ) -> Result<(), StoreError> {
        if !report.deferred.is_empty() {
            tracing::info!(
                changes = report.deferred.len(),
                "a package transaction is running: waiting for it to record its digests"
            );
        }
        while !report.deferred.is_empty() && !self.cancel.is_cancelled() {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let paths = std::mem::take(&mut report.deferred);
            let again = self.scan_paths(mode, paths, source, &|_| {}).await?;
            report.events.extend(again.events);
            report.deferred = again.deferred;
        }
        Ok(())
    }

    /// Delete, without events, every baseline row the current policy no longer monitors
    /// (roots removed from the config, files no longer selected), except rows below `keep`
    /// (the old targets of retargeted roots: a full scan reports them removed). Returns how
    /// many.
    pub async fn prune_unmonitored(&self, keep: &[PathBuf]) -> Result<usize, StoreError> {
        // Streamed: only the rows to delete are held, never the whole baseline.
        let mut deletes: Vec<PathBuf> = Vec::new();
        for dirs in [false, true] {
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            let store = self.store.clone();
            let reader = tokio::spawn(async move { store.stream_rows(dirs, tx).await });
            while let Some(rows) = rx.recv().await {
                deletes.extend(rows.into_iter().filter_map(|(p, r)| {
                    let monitored = if r.state.kind == FileKind::Dir {
                        self.policy.walks_dir(&p)
                    } else {
                        self.policy.selects(&p)
                    };
                    (!monitored && !keep.iter().any(|k| p.starts_with(k))).then_some(p)
                }));
            }
            reader
                .await
                .map_err(|e| self.task_failed("baseline reader", e))??;
        }
        let n = deletes.len();
        if n > 0 {
            let batch = Batch {
                deletes,
                ..Batch::default()
            };
            self.store.commit(batch, &[]).await?;
        }
        Ok(n)
    }
}

/// Decide per path (see the module doc). `known_dirs`: paths recorded as directories.
fn plan(policy: &Policy, paths: Vec<PathBuf>, known_dirs: &HashSet<PathBuf>) -> Plan {
    let mut plan = Plan::default();
    for p in paths {
        // A path reached through a symlinked directory is not a monitored name (symlinks are
        // entries, never followed); its real path is reported on its own.
        let via_symlink = p
            .parent()
            .and_then(|d| crate::scan::reach::symlink_metadata(d).ok())
            .is_some_and(|m| m.file_type().is_symlink());
        if via_symlink {
            continue;
        }
        let was_dir = known_dirs.contains(&p);
        match crate::scan::reach::symlink_metadata(&p) {
            Err(e) if is_gone(&e) => {
                if was_dir {
                    plan.prefixes.push(p.clone());
                }
                plan.exact.insert(p);
            }
            Err(e) => {
                // Keep its baseline: the next full rescan looks again.
                tracing::warn!(path = %display_path(&p), error = %e, "cannot stat path; keeping its baseline");
            }
            Ok(m) if m.is_dir() => {
                if !policy.walks_dir(&p) {
                    continue;
                }
                // A directory's own path shows up only for structural events (created,
                // moved, recreated, chmod): reconcile its whole subtree. The inode alone
                // cannot tell a recreated directory (ext4 reuses freed inodes at once).
                plan.exact.insert(p.clone());
                plan.prefixes.push(p.clone());
                plan.walk.push(p);
            }
            Ok(_) => {
                if was_dir {
                    // A directory replaced by a file: what was below it is gone.
                    plan.prefixes.push(p.clone());
                    plan.exact.insert(p.clone());
                }
                if policy.selects(&p) {
                    plan.exact.insert(p.clone());
                    plan.entries.push(p);
                }
            }
        }
    }
    plan
}
