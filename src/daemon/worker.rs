//! The pipeline task: the daemon's only writer of baseline rows and events. It builds the
//! first baseline (or runs the startup rescan), then takes [`Work`] from a bounded channel:
//! debounced paths (source `inotify`), full rescans (source `rescan`) and config reloads.
//!
//! Guarantees: work is never cancelled mid-transaction (the pipeline stops between committed
//! batches when the token is cancelled); `WATCHDOG=1` is sent from this task only: on idle
//! ticks, and during a unit of work only while it makes progress (entries scanned or bytes
//! hashed, see [`watched`]), so a long hash keeps the daemon alive while a stuck pipeline
//! stops the pings and systemd restarts us; big files are hashed on their own lane
//! ([`super::lane`]) so they never hold back other paths' events; a failed unit of work is
//! retried as a full rescan with backoff, and five failures in a row end the daemon with an
//! error (systemd's `Restart=on-failure` takes over). A full disk is never fatal: the same
//! changes are retried until there is room ([`super::retry`]). A database file removed,
//! replaced or truncated under us ends the daemon at once.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::lane::Lane;
use super::retry::{disk_full_backoff, Redo};
use super::{reload, sdnotify};
use crate::event::{Actor, Source};
use crate::pipeline::{Mode, Pipeline, ScanReport};
use crate::policy::Policy;
use crate::store::StoreError;
use crate::timefmt::{now_ns, rfc3339_ns};

/// One unit of work for the pipeline task.
pub enum Work {
    /// Debounced paths from the real-time watcher, with who changed them (who-data).
    Paths {
        paths: Vec<PathBuf>,
        actors: HashMap<PathBuf, Actor>,
    },
    /// A full rescan, and why.
    FullRescan(Reason),
    /// A new config: its pipeline, and the policy it replaces (to find newly monitored files).
    Reload {
        pipeline: Box<Pipeline>,
        old_policy: Arc<Policy>,
    },
    /// Look again at the changes the explain stage deferred (made by the worker itself).
    Deferred,
    /// The lane has hashed this big file: scan it again (made by the worker itself).
    Hashed(PathBuf),
}

/// Sleep until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Why a full rescan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Startup,
    Periodic,
    KernelOverflow,
    QueueFull,
    AfterError,
    /// A watch root's symlink leads elsewhere (after a reload or a periodic check).
    RootMoved,
}

/// Counters the main loop updates and this task publishes in meta.
#[derive(Debug, Default)]
pub struct Shared {
    /// Paths waiting in the debouncer or for the pipeline (set by the main loop).
    pub queue_depth: AtomicUsize,
}

/// Sends `WATCHDOG=1` (and, while the first baseline is built, `EXTEND_TIMEOUT_USEC`) at most
/// once per interval, from whatever part of this task is making progress.
struct Heartbeat {
    watchdog: Option<Duration>,
    last: Mutex<Instant>,
    /// Progress calls so far (see [`Heartbeat::progress`]).
    beats: AtomicU64,
    /// Bytes hashed by the pipeline's scans (shared with its scan settings).
    hashed: Arc<AtomicU64>,
}

impl Heartbeat {
    /// Grows while the pipeline makes progress: entries scanned, bytes hashed.
    fn progress(&self) -> u64 {
        self.beats.load(Ordering::Relaxed) + self.hashed.load(Ordering::Relaxed)
    }

    fn beat(&self, starting: Option<u64>) {
        self.beats.fetch_add(1, Ordering::Relaxed);
        let every = self.watchdog.unwrap_or(Duration::from_secs(5));
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.elapsed() < every.min(Duration::from_secs(5)) {
            return;
        }
        *last = Instant::now();
        if self.watchdog.is_some() {
            sdnotify::watchdog();
        }
        if let Some(n) = starting {
            sdnotify::extend_timeout(
                Duration::from_secs(30),
                &format!("building the first baseline: {n} entries"),
            );
        }
    }
}

pub struct Worker {
    pipeline: Pipeline,
    rx: mpsc::Receiver<Work>,
    token: CancellationToken,
    shared: Arc<Shared>,
    heartbeat: Arc<Heartbeat>,
    /// Hashes big files off the pipeline (see `scan::bigfile`).
    lane: Lane,
    /// The source of each path waiting for the lane, and removals held back with them
    /// ([`ScanReport::held_for_big`]).
    for_lane: BTreeMap<PathBuf, Source>,
    held_for_big: BTreeMap<PathBuf, Source>,
    /// Real-time paths scanned since memory was last given back (see [`Worker::idle_tick`]).
    paths_since_trim: usize,
    published_depth: usize,
    published_watches: Option<usize>,
    watches_counted: Option<Instant>,
    failures: u32,
    /// Changes the explain stage deferred (a package transaction runs), by source: scanned
    /// again at `retry_at`.
    deferred: BTreeMap<PathBuf, Source>,
    /// The actors of real-time changes not recorded yet (deferred, or waiting for the lane).
    deferred_actors: HashMap<PathBuf, Actor>,
    retry_at: Option<tokio::time::Instant>,
    /// Real-time changes gathered while a package transaction runs, recorded together.
    held: Option<Held>,
    /// When the database file's identity was last checked.
    file_checked: Option<Instant>,
}

/// How often the database file's identity is checked (at least once a minute; a stat is cheap).
const FILE_CHECK_EVERY: Duration = Duration::from_secs(10);

/// How often deferred changes are looked at again while a package transaction runs.
const DEFERRED_RETRY: Duration = Duration::from_secs(1);
/// While a package transaction runs, real-time changes are gathered until it ends, for this
/// long at most, and recorded as one unit: dpkg replaces thousands of files and records their
/// digests after them, so changes recorded at once would mostly be deferred and scanned again.
/// One unit after the transaction verifies them in one pass, with one commit, and takes
/// nothing from the upgrade meanwhile. The bound keeps a lock held for long (or on purpose)
/// from delaying other changes more than this.
const TRANSACTION_HOLD_MAX: Duration = Duration::from_secs(10);
/// How often a held unit looks whether the transaction has ended.
const TRANSACTION_PROBE: Duration = Duration::from_millis(250);

/// Real-time changes waiting for a package transaction to end.
struct Held {
    paths: Vec<PathBuf>,
    actors: HashMap<PathBuf, Actor>,
    /// Recorded at the latest then, whether or not the transaction ended.
    until: tokio::time::Instant,
    /// When to look at the package locks again.
    probe_at: tokio::time::Instant,
}
/// Real-time paths scanned since the last trim that make a burst worth giving back.
const TRIM_AFTER_PATHS: usize = 1000;

/// Run one unit of work, feeding the watchdog at each interval in which the pipeline made
/// progress (a 5 GiB file hashed at a low `hash_rate` takes minutes, all inside one file: its
/// bytes are the progress). No progress in an interval, no ping: a pipeline stuck on a lock or
/// a hung read is still restarted by systemd.
async fn watched<T>(heartbeat: &Heartbeat, work: impl Future<Output = T>) -> T {
    let Some(every) = heartbeat.watchdog else {
        return work.await;
    };
    tokio::pin!(work);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = heartbeat.progress();
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = ticker.tick() => {
                let now = heartbeat.progress();
                if now != seen {
                    seen = now;
                    sdnotify::watchdog();
                }
            }
        }
    }
}

impl Worker {
    pub fn new(
        pipeline: Pipeline,
        rx: mpsc::Receiver<Work>,
        token: CancellationToken,
        shared: Arc<Shared>,
        lane: Lane,
    ) -> Worker {
        Worker {
            heartbeat: Arc::new(Heartbeat {
                watchdog: sdnotify::watchdog_interval(),
                last: Mutex::new(Instant::now()),
                beats: AtomicU64::new(0),
                hashed: pipeline.settings.progress.clone(),
            }),
            pipeline,
            rx,
            token,
            shared,
            lane,
            for_lane: BTreeMap::new(),
            held_for_big: BTreeMap::new(),
            paths_since_trim: 0,
            published_depth: 0,
            published_watches: None,
            watches_counted: None,
            failures: 0,
            deferred: BTreeMap::new(),
            deferred_actors: HashMap::new(),
            retry_at: None,
            held: None,
            file_checked: None,
        }
    }

    /// Run until cancelled or the work channel closes. An error ends the daemon.
    pub async fn run(self) -> Result<(), StoreError> {
        let result = self.work().await;
        if let Err(e) = &result {
            if e.is_lost() {
                // A journal record at error priority (the exit message goes to stderr).
                tracing::error!("{e}");
            }
        }
        result
    }

    async fn work(mut self) -> Result<(), StoreError> {
        let hb = self.heartbeat.clone();
        if !watched(&hb, self.startup()).await? {
            return Ok(());
        }
        let tick = self.heartbeat.watchdog.unwrap_or(Duration::from_secs(2));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let work = tokio::select! {
                biased;
                _ = self.token.cancelled() => return Ok(()),
                w = self.rx.recv() => match w {
                    Some(w) => w,
                    None => return Ok(()),
                },
                _ = ticker.tick() => {
                    self.idle_tick().await;
                    self.check_file_when_due().await?;
                    continue;
                }
                _ = sleep_until(self.retry_at) => {
                    self.retry_at = None;
                    Work::Deferred
                }
                _ = sleep_until(self.held.as_ref().map(|h| h.probe_at.min(h.until))) => {
                    match self.release_held() {
                        Some(work) => work,
                        None => continue,
                    }
                }
                Some(path) = self.lane.done.recv() => Work::Hashed(path),
            };
            let work = match self.hold(work) {
                Some(work) => work,
                None => continue,
            };
            let redo = Redo::of(&work);
            let result = watched(&hb, self.handle(work)).await;
            if !self.recover(redo, result).await? {
                return Ok(());
            }
            self.failures = 0;
            self.heartbeat.beat(None);
            self.check_file_when_due().await?;
        }
    }

    /// Retry a failed unit of work until it succeeds: a full disk keeps its changes and waits
    /// (1 s doubling to 1 min, never fatal); other errors retry as a full rescan, five in a row
    /// are fatal; a lost database file is fatal at once. False when cancelled meanwhile.
    async fn recover(
        &mut self,
        mut redo: Redo,
        mut result: Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let mut full_disk = 0u32;
        while let Err(e) = result {
            // A lost database file is never retried: writing on would write into nothing.
            self.pipeline.store.check_file().await?;
            if e.is_lost() {
                return Err(e);
            }
            let wait = if e.is_disk_full() {
                full_disk += 1;
                let wait = disk_full_backoff(full_disk);
                tracing::error!(
                    "cannot record changes: {e}; retrying {} in {}",
                    redo.describe(),
                    crate::timefmt::human_secs(wait)
                );
                wait
            } else {
                self.failures += 1;
                if self.failures >= 5 {
                    return Err(e);
                }
                redo = Redo::Full;
                let wait = Duration::from_secs(2u64 << self.failures);
                tracing::error!(error = %e, retry_in_s = wait.as_secs(), "processing changes failed; a full rescan will follow");
                wait
            };
            if !self.pause(wait).await {
                return Ok(false);
            }
            let hb = self.heartbeat.clone();
            result = match redo.work() {
                Some(work) => watched(&hb, self.handle(work)).await,
                None => watched(&hb, self.full(Reason::AfterError)).await,
            };
        }
        if full_disk > 0 {
            tracing::info!("changes recorded again: the database's file system has room");
        }
        Ok(true)
    }

    /// Wait before a retry, feeding the watchdog (waiting on purpose is not being stuck; a
    /// restart would not make room on the disk). False when cancelled.
    async fn pause(&self, wait: Duration) -> bool {
        let until = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < until {
            tokio::select! {
                _ = self.token.cancelled() => return false,
                _ = tokio::time::sleep_until(until.min(tokio::time::Instant::now() + Duration::from_secs(1))) => {}
            }
            self.heartbeat.beat(None);
        }
        true
    }

    /// Real-time changes that come while a package transaction runs (or while earlier ones
    /// are held) join the held unit (`None`); anything else goes ahead.
    fn hold(&mut self, work: Work) -> Option<Work> {
        let Work::Paths { paths, actors } = work else {
            return Some(work);
        };
        if self.held.is_none() && !self.pipeline.explain.transaction_running() {
            return Some(Work::Paths { paths, actors });
        }
        let now = tokio::time::Instant::now();
        let held = self.held.get_or_insert_with(|| Held {
            paths: Vec::new(),
            actors: HashMap::new(),
            until: now + TRANSACTION_HOLD_MAX,
            probe_at: now + TRANSACTION_PROBE,
        });
        held.paths.extend(paths);
        // The last writer of a path wins, as in the debouncer.
        held.actors.extend(actors);
        None
    }

    /// Scan paths that waited (deferred, or behind a big file) with the actors kept for them;
    /// actors not used this time wait on with their paths.
    async fn scan_waiting(
        &mut self,
        paths: Vec<PathBuf>,
        source: Source,
        what: &str,
    ) -> Result<(), StoreError> {
        let actors = paths
            .iter()
            .filter_map(|p| self.deferred_actors.remove(p).map(|a| (p.clone(), a)))
            .collect();
        self.pipeline.set_actors(actors);
        let hb = &self.heartbeat;
        let report = self
            .pipeline
            .scan_paths(Mode::Record, paths, source, &|_| hb.beat(None))
            .await;
        for (p, a) in self.pipeline.take_actors() {
            self.deferred_actors.insert(p, a);
        }
        let report = report?;
        log_report(what, &report);
        self.later(report, source);
        Ok(())
    }

    /// The held changes as one unit once the transaction ended or the hold is over; else
    /// `None` and the next look is scheduled.
    fn release_held(&mut self) -> Option<Work> {
        let now = tokio::time::Instant::now();
        let held = self.held.as_mut()?;
        if now < held.until && self.pipeline.explain.transaction_running() {
            held.probe_at = now + TRANSACTION_PROBE;
            return None;
        }
        let Held {
            mut paths, actors, ..
        } = self.held.take()?;
        // A path changed in several debounce windows is scanned once.
        paths.sort();
        paths.dedup();
        Some(Work::Paths { paths, actors })
    }

    /// At least once a minute (between units of work): is the database file still ours?
    async fn check_file_when_due(&mut self) -> Result<(), StoreError> {
        if self
            .file_checked
            .is_some_and(|t| t.elapsed() < FILE_CHECK_EVERY)
        {
            return Ok(());
        }
        self.file_checked = Some(Instant::now());
        self.pipeline.store.check_file().await
    }

    /// Build the first baseline (no events) or run the startup rescan; `READY=1` in between.
    /// False when cancelled before the baseline was complete.
    async fn startup(&mut self) -> Result<bool, StoreError> {
        let store = self.pipeline.store.clone();
        tracing::info!(
            packages = %self.pipeline.explain.describe(),
            "package databases used to explain changes"
        );
        store
            .set_meta("daemon.packages", &self.pipeline.explain.describe())
            .await?;
        let rated = crate::explain::rate_unrated(&store, &self.pipeline.explain).await?;
        if rated > 0 {
            tracing::info!(events = rated, "older events rated by severity");
        }
        if store.has_baseline().await? {
            // Databases made before the marker existed get it now.
            crate::store::mark_baseline(store.path());
            sdnotify::ready("baseline loaded; startup rescan");
            let result = self.full(Reason::Startup).await;
            return Ok(self.recover(Redo::Full, result).await? && !self.token.is_cancelled());
        }
        store.clear_baseline().await?;
        // No baseline, but one existed: the database was deleted, truncated or replaced.
        let recreated = crate::store::had_baseline(store.path());
        if recreated {
            tracing::error!(
                marker = %crate::store::marker_path(store.path()).display(),
                "database {} is missing its baseline but one existed before (the database was removed or truncated): building a new one; changes made while it was missing are not reported",
                store.path().display()
            );
        } else {
            tracing::info!("no baseline yet: building it (no events for what exists now)");
        }
        sdnotify::extend_timeout(Duration::from_secs(30), "building the first baseline");
        let started = Instant::now();
        let hb = &self.heartbeat;
        let report = self
            .pipeline
            .full_scan(Mode::Baseline, Source::Rescan, &|n| hb.beat(Some(n)))
            .await?;
        if report.interrupted {
            return Ok(false);
        }
        tracing::info!(
            entries = report.entries,
            hashed = report.hashed,
            took = %crate::timefmt::human_secs(started.elapsed()),
            "baseline built"
        );
        if recreated {
            self.pipeline
                .record_notice(
                    store.path(),
                    crate::event::Severity::Critical,
                    "baseline was recreated (previous database missing)",
                )
                .await?;
        }
        crate::store::mark_baseline(store.path());
        store
            .set_meta("daemon.last_rescan", &rfc3339_ns(now_ns()))
            .await?;
        sdnotify::ready(&format!("watching; baseline of {} entries", report.entries));
        Ok(true)
    }

    async fn handle(&mut self, work: Work) -> Result<(), StoreError> {
        match work {
            Work::Paths { paths, actors } => {
                // A whole tree moved in is one unit of work: keep the watchdog fed meanwhile.
                let hb = &self.heartbeat;
                self.pipeline.set_actors(actors);
                let report = self
                    .pipeline
                    .scan_paths(Mode::Record, paths, Source::Inotify, &|_| hb.beat(None))
                    .await;
                // Actors not used (deferred paths) wait with their paths; none may leak into
                // a rescan's events.
                let mut left = self.pipeline.take_actors();
                let report = report?;
                log_report("inotify", &report);
                let waiting = report
                    .deferred
                    .iter()
                    .chain(&report.big_files)
                    .chain(&report.held_for_big);
                for p in waiting {
                    if let Some(a) = left.remove(p) {
                        self.deferred_actors.insert(p.clone(), a);
                    }
                }
                self.paths_since_trim += report.entries as usize;
                self.later(report, Source::Inotify);
                Ok(())
            }
            Work::Hashed(path) => {
                let source = self.for_lane.remove(&path).unwrap_or(Source::Inotify);
                let mut paths = vec![path];
                paths.extend(std::mem::take(&mut self.held_for_big).into_keys());
                self.scan_waiting(paths, source, "big file").await
            }
            Work::Deferred => {
                let mut by_source: BTreeMap<&'static str, (Source, Vec<PathBuf>)> = BTreeMap::new();
                for (path, source) in std::mem::take(&mut self.deferred) {
                    by_source
                        .entry(source.as_str())
                        .or_insert_with(|| (source, Vec::new()))
                        .1
                        .push(path);
                }
                for (_, (source, paths)) in by_source {
                    self.scan_waiting(paths, source, "deferred").await?;
                }
                Ok(())
            }
            Work::FullRescan(reason) => self.full(reason).await,
            Work::Reload {
                pipeline,
                old_policy,
            } => {
                self.pipeline = *pipeline;
                // A root whose symlink now leads elsewhere is not a config change: its old
                // files are reported removed and its new ones added (by the full scan below),
                // never dropped or baselined silently.
                let moved = self.pipeline.root_changes().await?;
                let retired: Vec<PathBuf> = moved.iter().map(|r| r.old.clone()).collect();
                let fresh: Vec<PathBuf> = moved.iter().filter_map(|r| r.new.clone()).collect();
                let dropped = self.pipeline.prune_unmonitored(&retired).await?;
                let policy = self.pipeline.policy.clone();
                let mut newly = tokio::task::spawn_blocking(move || {
                    reload::newly_monitored(&old_policy, &policy)
                })
                .await
                .unwrap_or_default();
                newly.retain(|p| !fresh.iter().any(|f| p.starts_with(f)));
                let n = newly.len();
                let hb = &self.heartbeat;
                let report = self
                    .pipeline
                    .scan_paths(Mode::Baseline, newly, Source::Rescan, &|_| hb.beat(None))
                    .await?;
                tracing::info!(
                    dropped_entries = dropped,
                    new_paths = n,
                    baselined_entries = report.entries,
                    "configuration reloaded; newly monitored files baselined silently"
                );
                if !moved.is_empty() {
                    self.full(Reason::RootMoved).await?;
                }
                sdnotify::ready("configuration reloaded");
                Ok(())
            }
        }
    }

    /// A full rescan (source `rescan`).
    async fn full(&mut self, reason: Reason) -> Result<(), StoreError> {
        sdnotify::status(&format!("full rescan ({reason:?})"));
        let started = Instant::now();
        let hb = &self.heartbeat;
        let mut report = self
            .pipeline
            .full_scan(Mode::Record, Source::Rescan, &|_| hb.beat(None))
            .await?;
        let (entries, hashed, changes) = (report.entries, report.hashed, report.events.len());
        let interrupted = report.interrupted;
        self.later(std::mem::take(&mut report), Source::Rescan);
        if interrupted {
            return Ok(());
        }
        let now = rfc3339_ns(now_ns());
        self.pipeline
            .store
            .set_meta("daemon.last_rescan", &now)
            .await?;
        tracing::info!(
            reason = ?reason,
            entries,
            hashed,
            changes,
            took = %crate::timefmt::human_secs(started.elapsed()),
            "full rescan done"
        );
        // Retention runs after a full rescan: at start and every rescan_interval. A failure
        // (a long lock held elsewhere) costs nothing but disk: the next rescan tries again.
        if let Err(e) = self
            .pipeline
            .store
            .apply_retention(self.pipeline.keep_events)
            .await
        {
            tracing::warn!(error = %e, "cannot prune old history now; the next full rescan tries again");
        }
        sdnotify::status(&format!("watching; last full rescan {now}"));
        Ok(())
    }

    /// What a scan left for later: deferred changes, and big files for the lane (with the
    /// removals held back for them).
    fn later(&mut self, report: ScanReport, source: Source) {
        self.defer(report.deferred, source);
        for p in report.held_for_big {
            self.held_for_big.entry(p).or_insert(source);
        }
        for p in report.big_files {
            let sensitive = self.pipeline.policy.is_sensitive_path(&p);
            self.lane
                .submit(p.clone(), &self.pipeline.settings, sensitive);
            self.for_lane.entry(p).or_insert(source);
        }
    }

    /// Keep deferred changes to look at again shortly (the explain stage bounds how long).
    fn defer(&mut self, paths: Vec<PathBuf>, source: Source) {
        if paths.is_empty() {
            return;
        }
        tracing::debug!(
            changes = paths.len(),
            "waiting for a package transaction to record its digests"
        );
        for p in paths {
            self.deferred.entry(p).or_insert(source);
        }
        if self.retry_at.is_none() {
            self.retry_at = Some(tokio::time::Instant::now() + DEFERRED_RETRY);
        }
    }

    /// Idle: ping the watchdog, give a burst's memory back, publish the queue depth when it
    /// changed.
    async fn idle_tick(&mut self) {
        if self.heartbeat.watchdog.is_some() {
            sdnotify::watchdog();
        }
        // A burst of events (200k paths: 13 MB idle -> 185 MB) leaves its peak in glibc's
        // arenas; a full scan gives its own back, and so does the first idle tick after one.
        if self.paths_since_trim >= TRIM_AFTER_PATHS {
            self.paths_since_trim = 0;
            crate::memory::release_free_memory();
        }
        // Counting reads /proc/self/fdinfo (one line per watch): once a minute is plenty.
        let due = self
            .watches_counted
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        let watches = match due {
            true => {
                self.watches_counted = Some(Instant::now());
                super::watcher::kernel_watch_count()
            }
            false => None,
        };
        if watches.is_some() && watches != self.published_watches {
            let value = watches.unwrap_or(0).to_string();
            match self.pipeline.store.set_meta("daemon.watches", &value).await {
                Ok(()) => self.published_watches = watches,
                Err(e) => tracing::warn!(error = %e, "cannot publish daemon status"),
            }
        }
        let depth = self.shared.queue_depth.load(Ordering::Relaxed);
        if depth != self.published_depth {
            match self
                .pipeline
                .store
                .set_meta("daemon.queue_depth", &depth.to_string())
                .await
            {
                Ok(()) => self.published_depth = depth,
                Err(e) => tracing::warn!(error = %e, "cannot publish daemon status"),
            }
        }
    }
}

fn log_report(source: &str, report: &ScanReport) {
    if report.entries > 0 {
        tracing::debug!(
            source,
            entries = report.entries,
            changes = report.events.len(),
            "paths scanned"
        );
    }
}
