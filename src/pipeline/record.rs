//! Turning scan outcomes into a [`Batch`]: compare each path with its baseline row, build the
//! event (diff only for non-sensitive text on both sides), the baseline upsert and the stored
//! text; then commit the batch and write one journal record per committed event.
//! In [`Mode::Baseline`] nothing here ever produces an event.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Mode, Pipeline, ScanReport};
use crate::event::{display_path, path_for_json, Event, EventKind, Source, StateJson};
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
    pub(super) async fn add_outcomes(
        &self,
        outcomes: Vec<(Outcome, Option<Recorded>)>,
        mode: Mode,
        source: Source,
        batch: &mut Batch,
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
        for (o, old) in outcomes {
            match o {
                Outcome::Vanished(_) => {}
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
                                ..old.clone()
                            },
                        ));
                        batch.text_deletes.push(path);
                    }
                }
                Outcome::Entry(s) => {
                    self.add_entry(s, old.as_ref(), mode, source, &old_texts, batch);
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn add_entry(
        &self,
        mut s: Scanned,
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
                if changed.is_empty() || mode == Mode::Baseline {
                    // Same content, or baselining silently: write the row only when a recorded
                    // attribute differs, the sensitivity changed, or a racy hash time must be
                    // settled (so the next check can take the fast path).
                    let settle =
                        s.hashed_at_ns != 0 && crate::scan::is_racy(&old.state, old.hashed_at_ns);
                    if changed.is_empty() && old.sensitive == s.sensitive && !settle {
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
        match s.text.take() {
            Some(text) if !s.sensitive => {
                batch.text_bytes += text.len();
                batch.text_puts.push((s.path.clone(), text));
            }
            _ => {
                if old.is_some() && !is_dir {
                    batch.text_deletes.push(s.path.clone());
                }
            }
        }
        batch.upserts.push((s.path, record));
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
