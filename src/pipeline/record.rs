//! Turning scan outcomes into a [`Batch`]: compare each path with its baseline row, build the
//! event (diff only for non-sensitive text on both sides), the baseline upsert and the stored
//! text; then commit the batch and write one journal record per committed event.
//! In [`Mode::Baseline`] nothing here ever produces an event.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::renames::Renames;
use super::{Mode, Pipeline, ScanReport};
use crate::event::{display_path, path_for_json, Event, EventKind, Severity, Source, StateJson};
use crate::explain::{Change, Explainer, Verdict};
use crate::scan::{Outcome, Scanned};
use crate::state::{compare, FileKind, FileState, Recorded};
use crate::store::{Batch, StoreError};
use crate::timefmt::{now_ns, rfc3339_ns};

/// A commit running on its own task (see [`Pipeline::flush_overlapped`]).
pub(super) type InFlight = Option<tokio::task::JoinHandle<Result<Vec<Event>, StoreError>>>;

impl Pipeline {
    /// Commit (or, for a dry run, just collect) the pending batch, then log its events.
    pub(super) async fn flush(
        &self,
        pending: &mut Batch,
        mode: Mode,
        report: &mut ScanReport,
    ) -> Result<(), StoreError> {
        let batch = std::mem::take(pending);
        if mode == Mode::DryRun {
            // Compared only: no journal record either (`FIM_EVENT=` is the alert history).
            report.events.extend(batch.events);
            return Ok(());
        }
        let events = self.store.commit(batch, &self.sinks).await?;
        self.after_commit(events, report);
        Ok(())
    }

    /// Like [`Pipeline::flush`], but the commit runs on its own task while the scan goes on
    /// (the hashing threads and the SQLite writer then use both cores). At most one commit is
    /// in flight and commits stay in order: the previous one is settled first.
    pub(super) async fn flush_overlapped(
        &self,
        pending: &mut Batch,
        mode: Mode,
        report: &mut ScanReport,
        inflight: &mut InFlight,
    ) -> Result<(), StoreError> {
        self.settle(report, inflight).await?;
        if mode == Mode::DryRun || pending.is_empty() {
            return self.flush(pending, mode, report).await;
        }
        let batch = std::mem::take(pending);
        let (store, sinks) = (self.store.clone(), self.sinks.clone());
        *inflight = Some(tokio::spawn(
            async move { store.commit(batch, &sinks).await },
        ));
        Ok(())
    }

    /// Wait for the commit in flight, if any, then log its events.
    pub(super) async fn settle(
        &self,
        report: &mut ScanReport,
        inflight: &mut InFlight,
    ) -> Result<(), StoreError> {
        if let Some(task) = inflight.take() {
            let events = task.await.map_err(|e| self.task_failed("commit", e))??;
            self.after_commit(events, report);
        }
        Ok(())
    }

    /// Committed: wake the alert worker, one journal record per event, into the report.
    fn after_commit(&self, events: Vec<Event>, report: &mut ScanReport) {
        if let Some(wake) = self
            .wake
            .as_ref()
            .filter(|_| !events.is_empty() && !self.sinks.is_empty())
        {
            wake.notify_one();
        }
        for e in &events {
            crate::logging::record_event(e);
        }
        report.events.extend(events);
    }

    /// Turn scan outcomes (each with its baseline row, if any) into baseline writes and events.
    /// Paths the explain stage defers (a package transaction may still record their digest)
    /// are left untouched and listed in `deferred`.
    pub(super) async fn add_outcomes(
        &self,
        outcomes: Vec<(Outcome, Option<Recorded>)>,
        mode: Mode,
        source: Source,
        batch: &mut Batch,
        report: &mut ScanReport,
        renames: &mut Renames,
    ) -> Result<(), StoreError> {
        // Old texts for the diffs of modified text files, fetched in one query.
        let want_text: Vec<&Path> = outcomes
            .iter()
            .filter_map(|(o, old)| match o {
                Outcome::Entry(s) if s.text.is_some() => old
                    .as_ref()
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
        let mut drafts = Vec::new();
        for (o, old) in outcomes {
            match o {
                Outcome::Vanished(_) => {}
                Outcome::Pending { path, inode } => {
                    report.big_files.push(path);
                    report.big_inodes.insert(inode);
                }
                Outcome::Same(path) => {
                    // Sensitive by a new rule: forget its content now.
                    if let Some(old) = old
                        .as_ref()
                        .filter(|old| !old.sensitive && self.policy.is_sensitive_path(&path))
                    {
                        batch.upserts.push((
                            path.clone(),
                            Recorded {
                                sensitive: true,
                                tampered: false,
                                ..old.clone()
                            },
                        ));
                        batch.text_deletes.push(path);
                    }
                }
                Outcome::Entry(s) => {
                    drafts.extend(self.draft_entry(s, old.as_ref(), mode, source, &old_texts));
                }
            }
        }
        // Added files wait for this scan's removals (a pair is one `renamed`).
        let drafts = renames.hold(drafts);
        self.finish(drafts, batch, &mut report.deferred).await
    }

    /// Explain the drafts' events and stamp their baseline rows (on a blocking thread: the
    /// explain stage may read a file to check its package digest), then put them in `batch`.
    pub(super) async fn finish(
        &self,
        mut drafts: Vec<Draft>,
        batch: &mut Batch,
        deferred: &mut Vec<PathBuf>,
    ) -> Result<(), StoreError> {
        if drafts.is_empty() {
            return Ok(());
        }
        let (explainer, pool) = (self.explain.clone(), self.pool.clone());
        // On the hashing pool: its threads run at low priority when asked (re-reading a
        // package's file for its MD5 is hashing too), so a package upgrade keeps the CPU.
        drafts = tokio::task::spawn_blocking(move || {
            pool.install(|| {
                explainer.refresh();
                for d in &mut drafts {
                    d.explain(&explainer);
                }
            });
            drafts
        })
        .await
        .map_err(|e| self.task_failed("explain", e))?;
        let mut actors = self.actors.lock().unwrap_or_else(|p| p.into_inner());
        for d in drafts {
            if d.deferred {
                deferred.push(d.path);
                continue;
            }
            if let Some(mut e) = d.event {
                // Who-data: the last writer of this path (real-time events only).
                e.actor = actors.remove(&d.path);
                batch.events.push(e);
            }
            if d.delete {
                batch.deletes.push(d.path.clone());
            }
            if let Some(old) = d.also_delete {
                batch.deletes.push(old);
            }
            match d.text_put {
                Some(text) => {
                    batch.text_bytes += text.len();
                    batch.text_puts.push((d.path.clone(), text));
                }
                None if d.text_delete => batch.text_deletes.push(d.path.clone()),
                None => {}
            }
            if let Some(r) = d.upsert {
                batch.upserts.push((d.path, r));
            }
        }
        Ok(())
    }

    /// The draft for one scanned path, `None` when nothing is to be written.
    fn draft_entry(
        &self,
        mut s: Scanned,
        old: Option<&Recorded>,
        mode: Mode,
        source: Source,
        old_texts: &HashMap<PathBuf, Vec<u8>>,
    ) -> Option<Draft> {
        let hashed_at_ns = if s.hashed_at_ns != 0 {
            s.hashed_at_ns
        } else {
            old.map(|o| o.hashed_at_ns).unwrap_or(0)
        };
        let record = Recorded {
            state: s.state.clone(),
            sensitive: s.sensitive,
            hashed_at_ns,
            package: old.and_then(|o| o.package.clone()),
            tampered: false,
        };
        let is_dir = s.state.kind == FileKind::Dir;
        let mut event = None;
        match old {
            None => {
                if mode != Mode::Baseline && !is_dir {
                    event = Some(self.event(
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
                // A row altered outside fimd is always reported (and re-recorded from disk),
                // even when it was altered to match the file.
                let tampered = old.tampered && mode != Mode::Baseline;
                if (changed.is_empty() && !tampered) || mode == Mode::Baseline {
                    // Same content, or baselining silently: write the row only when a recorded
                    // attribute differs, the sensitivity changed, or a racy hash time must be
                    // settled (so the next check can take the fast path).
                    let settle =
                        s.hashed_at_ns != 0 && crate::scan::is_racy(&old.state, old.hashed_at_ns);
                    // Attributes recorded for the first time (a baseline from an earlier
                    // fimd) are written silently.
                    let first_attrs = old.state.attrs.is_none() && s.state.attrs.is_some();
                    if changed.is_empty() && old.sensitive == s.sensitive && !settle && !first_attrs
                    {
                        return None;
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
                    event = Some(self.event(
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
        let text_put = match s.text.take() {
            Some(text) if !s.sensitive => Some(text),
            _ => None,
        };
        Some(Draft {
            text_delete: text_put.is_none() && old.is_some() && !is_dir,
            text_put,
            old: event.as_ref().and_then(|_| old.cloned()),
            new: Some(s.state),
            event,
            upsert: Some(record),
            delete: false,
            also_delete: None,
            deferred: false,
            path: s.path,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn event(
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
            uid: None,
            time: rfc3339_ns(now_ns()),
            host: self.host.clone(),
            source,
            event: kind,
            path,
            path_hex,
            from: None,
            from_hex: None,
            severity: Severity::Medium,
            reason: String::new(),
            changed,
            old: old.map(StateJson::from),
            new: new.map(StateJson::from),
            sensitive,
            diff: if sensitive { None } else { diff },
            actor: None,
            package: None,
        }
    }
}

/// One path's pending writes, before the explain stage has rated its event.
#[derive(Debug)]
pub(super) struct Draft {
    pub path: PathBuf,
    /// The event to record (severity and reason filled in by [`Draft::explain`]).
    pub event: Option<Event>,
    /// The baseline row before (only kept when there is an event).
    pub old: Option<Recorded>,
    /// The state now (`None`: removed).
    pub new: Option<FileState>,
    /// The baseline row to write (its package stamp filled in by [`Draft::explain`]).
    pub upsert: Option<Recorded>,
    /// Delete the baseline row (and its contents).
    pub delete: bool,
    /// Also delete this other path's row (a rename's old name).
    pub also_delete: Option<PathBuf>,
    pub text_put: Option<Vec<u8>>,
    pub text_delete: bool,
    /// Set by the explain stage: write nothing now, scan again later.
    pub deferred: bool,
}

impl Draft {
    /// A baseline row gone from disk; `event` is its `removed` event, if it gets one.
    pub fn removed(path: PathBuf, old: Recorded, event: Option<Event>) -> Draft {
        Draft {
            path,
            old: event.as_ref().map(|_| old),
            event,
            new: None,
            upsert: None,
            delete: true,
            also_delete: None,
            text_put: None,
            text_delete: false,
            deferred: false,
        }
    }

    fn explain(&mut self, explainer: &Explainer) {
        if let Some(e) = self.event.as_mut() {
            let change = Change {
                kind: e.event,
                path: &self.path,
                old: self.old.as_ref(),
                new: self.new.as_ref(),
                changed: &e.changed,
                sensitive: e.sensitive,
            };
            match explainer.explain(&change) {
                Verdict::Defer => {
                    self.deferred = true;
                    return;
                }
                Verdict::Record(x) => {
                    e.severity = x.severity;
                    e.reason = x.reason;
                    e.package = x.package;
                }
            }
        }
        if let Some(r) = self.upsert.as_mut() {
            if r.state.kind != FileKind::Dir {
                r.package = explainer.stamp(&self.path);
            }
        }
    }
}
