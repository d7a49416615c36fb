//! The full scan as a sorted merge: the walk yields paths in byte order (see `scan::walk`),
//! the baseline's non-directory rows are streamed from SQLite in the same order, and the two
//! are merged on the blocking walker thread. Neither the tree nor the baseline is ever held in
//! memory: what is held is one chunk in flight and the rows found gone (proportional to the
//! changes, which are recorded anyway). Directories come from a second stream ordered the
//! way the walk visits them (path + `/`).

use std::collections::VecDeque;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rayon::prelude::*;
use tokio::sync::mpsc;

use super::record::InFlight;
use super::renames::Renames;
use super::{batch_full, Mode, Pipeline, Retarget, ScanReport, CHUNK, COMMIT_ROWS};
use crate::event::Source;
use crate::scan::{self, Outcome, Seen, WalkReport};
use crate::state::Recorded;
use crate::store::{Batch, StoreError};

/// What the walker thread hands to the recorder.
enum Item {
    /// Scanned paths, each with its baseline row (if any).
    Scanned(Vec<(Outcome, Option<Recorded>)>),
    /// Baseline rows not found on disk (outside unreadable directories), at the end.
    Gone(Vec<(PathBuf, Recorded)>),
}

/// The baseline rows, in walk order, read from a channel on the walker thread.
#[derive(Default)]
struct Cursor {
    rx: Option<mpsc::Receiver<Vec<(PathBuf, Recorded)>>>,
    buf: VecDeque<(PathBuf, Recorded)>,
}

impl Cursor {
    fn peek(&mut self) -> Option<&(PathBuf, Recorded)> {
        while self.buf.is_empty() {
            let chunk = self.rx.as_mut()?.blocking_recv();
            match chunk {
                Some(rows) => self.buf.extend(rows),
                None => {
                    self.rx = None;
                    return None;
                }
            }
        }
        self.buf.front()
    }

    fn pop(&mut self) -> Option<(PathBuf, Recorded)> {
        self.peek()?;
        self.buf.pop_front()
    }

    /// The row for `path` (walk key order), moving the rows before it to `gone`.
    fn take_match(
        &mut self,
        path: &std::path::Path,
        is_dir: bool,
        gone: &mut Vec<(PathBuf, Recorded)>,
    ) -> Option<Recorded> {
        let key = scan::walk_key(path, is_dir);
        while let Some((p, _)) = self.peek() {
            match scan::walk_key(p, is_dir).cmp(&key) {
                std::cmp::Ordering::Less => gone.extend(self.pop()),
                std::cmp::Ordering::Equal => return self.pop().map(|(_, r)| r),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

impl Pipeline {
    /// A full scan by sorted merge (memory independent of the number of files).
    pub(super) async fn merge_scan(
        &self,
        mode: Mode,
        source: Source,
        progress: &(dyn Fn(u64) + Sync),
        meta: Vec<(&'static str, String)>,
        retargets: &[Retarget],
    ) -> Result<ScanReport, StoreError> {
        // Two baseline streams (files, directories), or none when building a new baseline.
        let mut readers = Vec::new();
        let mut cursors = [Cursor::default(), Cursor::default()];
        if mode != Mode::Baseline {
            for (dirs, cursor) in [false, true].into_iter().zip(cursors.iter_mut()) {
                let (tx, rx) = mpsc::channel(4);
                let store = self.store.clone();
                readers.push(tokio::spawn(
                    async move { store.stream_rows(dirs, tx).await },
                ));
                cursor.rx = Some(rx);
            }
        }
        let (tx, mut rx) = mpsc::channel::<Item>(4);
        let walker = {
            let (policy, settings, pool) = (
                self.policy.clone(),
                self.settings_for(mode),
                self.pool.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let [mut files, mut dirs] = cursors;
                let mut gone: Vec<(PathBuf, Recorded)> = Vec::new();
                let mut chunk: Vec<(PathBuf, Seen, Option<Recorded>)> = Vec::with_capacity(CHUNK);
                let flush = |chunk: &mut Vec<(PathBuf, Seen, Option<Recorded>)>| {
                    let items = std::mem::take(chunk);
                    let scanned: Vec<(Outcome, Option<Recorded>)> = pool.install(|| {
                        items
                            .into_par_iter()
                            .map(|(p, seen, old)| {
                                (
                                    scan::scan_path(&p, &policy, &settings, old.as_ref(), seen),
                                    old,
                                )
                            })
                            .collect()
                    });
                    tx.blocking_send(Item::Scanned(scanned)).is_ok()
                };
                let report: WalkReport = scan::walk(&policy, |path, seen| {
                    let cursor = if seen.is_dir() { &mut dirs } else { &mut files };
                    let old = cursor.take_match(&path, seen.is_dir(), &mut gone);
                    chunk.push((path, seen, old));
                    chunk.len() < CHUNK || flush(&mut chunk)
                });
                if !chunk.is_empty() && !flush(&mut chunk) {
                    return report;
                }
                for cursor in [&mut files, &mut dirs] {
                    while let Some(row) = cursor.pop() {
                        gone.push(row);
                    }
                }
                gone.retain(|(p, _)| !report.unreadable_dirs.iter().any(|d| p.starts_with(d)));
                gone.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
                let _ = tx.blocking_send(Item::Gone(gone));
                report
            })
        };
        let mut report = ScanReport::default();
        let mut pending = Batch::default();
        let mut renames = Renames::default();
        let mut inflight: InFlight = None;
        let mut completed = false;
        while let Some(item) = rx.recv().await {
            match item {
                Item::Scanned(pairs) => {
                    // Candidates that are not there are not entries (as in `status`).
                    report.entries += pairs
                        .iter()
                        .filter(|(o, _)| !matches!(o, Outcome::Vanished(_)))
                        .count() as u64;
                    progress(report.entries);
                    report.hashed += pairs
                        .iter()
                        .filter(|(o, _)| matches!(o, Outcome::Entry(s) if s.hashed_at_ns != 0))
                        .count() as u64;
                    self.add_outcomes(pairs, mode, source, &mut pending, &mut report, &mut renames)
                        .await?;
                }
                Item::Gone(rows) => {
                    let mut rows = rows.into_iter().peekable();
                    while rows.peek().is_some() {
                        let drafts = rows
                            .by_ref()
                            .take(COMMIT_ROWS)
                            .map(|(path, old)| self.removed(path, old, mode, source, retargets))
                            .collect();
                        let drafts = renames.pair(self, drafts);
                        self.finish(drafts, &mut pending, &mut report.deferred)
                            .await?;
                        if pending.deletes.len() >= COMMIT_ROWS {
                            self.flush_overlapped(&mut pending, mode, &mut report, &mut inflight)
                                .await?;
                        }
                    }
                    completed = true;
                }
            }
            if batch_full(&pending) {
                self.flush_overlapped(&mut pending, mode, &mut report, &mut inflight)
                    .await?;
            }
            if self.cancel.is_cancelled() {
                // Safe point: commit what was compared, stop the walker (its send fails).
                report.interrupted = true;
                drop(rx);
                break;
            }
        }
        let walk = walker.await.map_err(|e| self.task_failed("scanner", e))?;
        for reader in readers {
            reader.abort(); // only a read: stopping it mid-stream is harmless
            if let Ok(Err(e)) = reader.await {
                return Err(e);
            }
        }
        report.errors = walk.errors;
        if completed && !report.interrupted {
            // A retargeted root is reported with the record of its new target, in the last
            // transaction: exactly once, and only once its old files were compared.
            for r in retargets {
                pending.events.push(self.retarget_event(r, source));
            }
            pending.meta.extend(meta);
        }
        // Added files no removal matched.
        let held = renames.release();
        self.finish(held, &mut pending, &mut report.deferred)
            .await?;
        // The last batch (with the scan's meta) commits after every other one, before we return.
        self.settle(&mut report, &mut inflight).await?;
        self.flush(&mut pending, mode, &mut report).await?;
        // An idle daemon does not keep the peak of its last scan.
        crate::memory::release_free_memory();
        Ok(report)
    }
}
