//! `fimd run`: the long-running service. This file owns the main loop; one job per file:
//! `watcher` (inotify), `debounce` (pure per-path state), `worker` (the pipeline task,
//! sole writer of baseline and events), `reload` (SIGHUP), `sdnotify` (systemd protocol).
//!
//! ```text
//! inotify thread -try_send-> [bounded WatchMsg] -> main loop: debounce, rescan timer, SIGHUP
//!      (Full -> overflow flag -> full rescan)          | reserve/send
//!                                                     v
//!                                  [bounded Work (1)] -> worker: Pipeline -> SQLite -> journal
//! ```
//!
//! Guarantees: watches are installed before the startup scan; every channel and queue is
//! bounded (a storm beyond the bounds becomes one full rescan, never a silent loss); shutdown
//! (the injected future: SIGTERM/SIGINT in the binary) sends `STOPPING=1`, drops the watcher,
//! lets the worker finish its open transaction and returns within about 5 s.

pub mod actor;
mod debounce;
pub mod fanotify;
mod lane;
mod reload;
mod retry;
mod sdnotify;
mod watcher;
pub mod whodata;
mod worker;

pub use debounce::Debouncer;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep_until, Instant, Interval};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::{SinkFlags, Sinks};
use crate::config::Config;
use crate::event::{display_path, Actor};
use crate::pipeline::Pipeline;
use crate::policy::Policy;
use crate::store::{Store, StoreError};
use crate::timefmt::{now_ns, rfc3339_ns};
use watcher::{SharedWatches, WatchMsg, Watches};
use worker::{Reason, Shared, Work, Worker};

/// What the daemon starts from: the loaded config and where it came from (for SIGHUP).
pub struct DaemonContext {
    pub cfg: Config,
    pub config_path: PathBuf,
    /// The user named the config file (then a missing file on reload is an error).
    pub config_explicit: bool,
    pub policy: Arc<Policy>,
    /// The alert sinks, and the notifier flags to merge again on reload.
    pub sinks: Sinks,
    pub flags: SinkFlags,
    /// The tamper-evidence key (resolved at start; a new key needs a restart).
    pub mac_key: Option<crate::store::MacKey>,
    /// Ownership and permission checks apply to the config on reload (see [`crate::perms`]).
    pub strict: bool,
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the inotify watcher: {0}")]
    Watch(#[from] std::io::Error),
    #[error("{0}")]
    Io(String),
}

/// Messages taken from the inotify thread's channel (16 Ki messages).
const RAW_CAPACITY: usize = 16_384;
/// Paths held by the debouncer, and paths waiting for the worker (each bound).
const MAX_PENDING: usize = 65_536;
/// Paths handed to the worker in one unit of work.
const BATCH_PATHS: usize = 8_192;
/// The least time between two full rescans owed to kernel queue overflows: a storm of real
/// changes that keeps overflowing the queue costs one rescan per 10 s, not a rescan loop.
const OVERFLOW_COOLDOWN: Duration = Duration::from_secs(10);
/// Total time allowed for a clean stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_millis(4_500);

/// The real-time backend `[daemon] whodata` asks for: the fanotify group made at start
/// (who-data), or inotify and why (`auto` falls back; `require` refuses to start).
fn choose_backend(whodata: &str) -> Result<(Option<fanotify::Fanotify>, String), DaemonError> {
    match whodata::Mode::parse(whodata).unwrap_or(whodata::Mode::Auto) {
        whodata::Mode::Off => {
            drop(whodata::take());
            Ok((None, "inotify (who-data off in the config)".to_string()))
        }
        mode => match whodata::take() {
            Ok(fan) => Ok((Some(fan), "fanotify (who-data)".to_string())),
            Err(why) if mode == whodata::Mode::Require => Err(DaemonError::Io(format!(
                "who-data is required ([daemon] whodata = \"require\") but unavailable: {why}"
            ))),
            Err(why) => {
                tracing::info!(reason = %why, "who-data unavailable: changes are reported without who made them");
                Ok((None, format!("inotify (who-data unavailable: {why})")))
            }
        },
    }
}

/// Work decided by the main loop, waiting for the worker (which takes one unit at a time).
#[derive(Default)]
struct Ready {
    reload: Option<Work>,
    full: Option<Reason>,
    paths: BTreeSet<PathBuf>,
    /// Who last changed each pending path (who-data): the last writer wins.
    actors: HashMap<PathBuf, Actor>,
}

impl Ready {
    fn is_empty(&self) -> bool {
        self.reload.is_none() && self.full.is_none() && self.paths.is_empty()
    }

    /// The next unit: a reload first, then a full rescan (which covers every waiting path),
    /// then paths.
    fn take(&mut self) -> Option<Work> {
        if let Some(r) = self.reload.take() {
            return Some(r);
        }
        if let Some(reason) = self.full.take() {
            self.paths.clear();
            self.actors.clear();
            return Some(Work::FullRescan(reason));
        }
        if self.paths.is_empty() {
            return None;
        }
        let rest = match self.paths.iter().nth(BATCH_PATHS) {
            Some(split) => {
                let split = split.clone();
                self.paths.split_off(&split)
            }
            None => BTreeSet::new(),
        };
        let batch = std::mem::replace(&mut self.paths, rest);
        let actors = batch
            .iter()
            .filter_map(|p| self.actors.remove(p).map(|a| (p.clone(), a)))
            .collect();
        if self.actors.is_empty() {
            self.actors.shrink_to_fit(); // a burst's table is not kept
        }
        Some(Work::Paths {
            paths: batch.into_iter().collect(),
            actors,
        })
    }
}

/// The main loop's state.
struct Daemon {
    cfg: Config,
    config_path: PathBuf,
    config_explicit: bool,
    /// See [`DaemonContext::strict`].
    strict: bool,
    policy: Arc<Policy>,
    store: Store,
    token: CancellationToken,
    watches: SharedWatches,
    debouncer: Debouncer,
    ready: Ready,
    rescan: Interval,
    shared: Arc<Shared>,
    flags: SinkFlags,
    /// Sink names the pipeline queues outbox rows for.
    sink_names: Vec<&'static str>,
    /// Woken by the pipeline after it queued alerts.
    wake: Arc<tokio::sync::Notify>,
    tracker: TaskTracker,
    /// Cancels the current outbox worker (a reload starts a new one with the new sinks).
    alert_token: CancellationToken,
    /// A full rescan owed to a kernel queue overflow, and when it may start.
    overflow_due: Option<Instant>,
    /// When the last rescan owed to an overflow was queued (see [`OVERFLOW_COOLDOWN`]).
    last_overflow_rescan: Option<Instant>,
    /// Real-time events come from fanotify (who-data), not inotify.
    fanotify: bool,
    /// Bytes hashed by the pipeline (every pipeline a reload makes counts here): the worker
    /// feeds the watchdog while it grows.
    hashed: Arc<AtomicU64>,
}

/// Run the daemon until `shutdown` completes (or the worker fails).
pub async fn run(
    ctx: DaemonContext,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    // First of all: a SIGHUP's default action ends the process, and one can come at any time
    // (startup on a big tree takes a while). Until the loop runs it waits here.
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| DaemonError::Io(format!("cannot install the SIGHUP handler: {e}")))?;
    let store = Store::open(&ctx.cfg.daemon.database).await?;
    store.ensure_no_daemon().await?;
    store.apply_key(ctx.mac_key).await?;
    store
        .set_meta("daemon.pid", &std::process::id().to_string())
        .await?;
    store
        .set_meta("daemon.started_at", &rfc3339_ns(now_ns()))
        .await?;
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (raw_tx, mut raw_rx) = mpsc::channel::<WatchMsg>(RAW_CAPACITY);
    let overflow = Arc::new(AtomicBool::new(false));
    let (fan, backend) = choose_backend(&ctx.cfg.daemon.whodata)?;
    let fanotify = fan.is_some();
    tracing::info!(backend = %backend, "real-time change source");
    store.set_meta("daemon.backend", &backend).await?;
    let watches = Watches::new(
        ctx.policy.clone(),
        ctx.cfg.daemon.database.clone(),
        raw_tx,
        overflow.clone(),
        fan,
    )?;
    let interval = ctx.cfg.daemon.rescan_interval;
    let mut d = Daemon {
        rescan: interval_at(Instant::now() + interval, interval),
        debouncer: Debouncer::new(ctx.cfg.daemon.debounce, MAX_PENDING),
        cfg: ctx.cfg,
        config_path: ctx.config_path,
        config_explicit: ctx.config_explicit,
        strict: ctx.strict,
        policy: ctx.policy,
        store: store.clone(),
        token: token.clone(),
        watches: Arc::new(Mutex::new(watches)),
        ready: Ready::default(),
        shared: Arc::new(Shared::default()),
        flags: ctx.flags,
        sink_names: ctx.sinks.names(),
        wake: Arc::new(tokio::sync::Notify::new()),
        tracker: tracker.clone(),
        alert_token: token.child_token(),
        overflow_due: None,
        fanotify,
        last_overflow_rescan: None,
        hashed: Arc::default(),
    };
    // Watches first: a change during the startup scan is then never missed.
    d.configure_watches().await;
    let pipeline = d.pipeline(&d.cfg, &d.policy, ctx.sinks.names())?;
    let lane = lane::Lane::start(d.cfg.daemon.low_priority)
        .map_err(|e| DaemonError::Io(format!("cannot start the big-file hashing thread: {e}")))?;
    let (work_tx, work_rx) = mpsc::channel::<Work>(1);
    let mut worker =
        tracker.spawn(Worker::new(pipeline, work_rx, token.clone(), d.shared.clone(), lane).run());
    // The outbox worker: delivers what earlier runs left and what the pipeline queues. It
    // stops only between deliveries; undelivered rows stay for the next start.
    d.start_alert_worker(ctx.sinks);
    tokio::pin!(shutdown);
    let mut buf = Vec::with_capacity(256);
    let outcome = loop {
        let deadline = d.debouncer.next_deadline();
        let has_work = !d.ready.is_empty();
        tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            res = &mut worker => break match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(DaemonError::Store(e)),
                Err(e) => Err(DaemonError::Io(format!("the pipeline task failed: {e}"))),
            },
            _ = hup.recv() => d.reload_config().await,
            n = raw_rx.recv_many(&mut buf, 256) => {
                if n == 0 {
                    break Err(DaemonError::Io("the inotify watcher stopped".into()));
                }
                for msg in buf.drain(..) {
                    d.on_watch_msg(msg).await;
                }
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                let due = d.debouncer.take_due(Instant::now(), MAX_PENDING);
                d.ready.paths.extend(due);
                if d.ready.paths.len() > MAX_PENDING {
                    d.full_rescan(Reason::QueueFull);
                }
            }
            _ = sleep_until(d.overflow_due.unwrap_or_else(Instant::now)), if d.overflow_due.is_some() => {
                d.overflow_due = None;
                d.last_overflow_rescan = Some(Instant::now());
                d.full_rescan(Reason::KernelOverflow);
            }
            _ = d.rescan.tick() => d.periodic_rescan().await,
            permit = work_tx.reserve(), if has_work => {
                if let (Ok(permit), Some(work)) = (permit, d.ready.take()) {
                    permit.send(work);
                }
            }
        }
        if overflow.swap(false, Ordering::SeqCst) {
            tracing::warn!(
                "event queue full: events were dropped; running a full rescan to close the gap"
            );
            d.full_rescan(Reason::QueueFull);
        }
        d.shared
            .queue_depth
            .store(d.debouncer.len() + d.ready.paths.len(), Ordering::Relaxed);
    };
    sdnotify::stopping();
    tracing::info!("stopping: finishing the open transaction");
    // Stop the producer first, then the tasks (they stop only between transactions).
    drop(d.watches);
    token.cancel();
    drop(work_tx);
    tracker.close();
    if tokio::time::timeout(STOP_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("tasks did not stop in time; exiting anyway (the next start rescans)");
    }
    // Facts about the running daemon go with it (`status` would show them as current).
    for key in [
        "daemon.pid",
        "daemon.queue_depth",
        "daemon.watches",
        "daemon.fallback",
    ] {
        let _ = store.delete_meta(key).await;
    }
    let _ = store
        .set_meta("daemon.stopped_at", &rfc3339_ns(now_ns()))
        .await;
    store.close().await;
    outcome
}

impl Daemon {
    fn start_alert_worker(&mut self, sinks: Sinks) {
        self.alert_token.cancel();
        self.alert_token = self.token.child_token();
        self.sink_names = sinks.names();
        if sinks.is_empty() {
            return;
        }
        let pool = self.store.pool().clone();
        let (notify, wake, token) = (
            self.cfg.notify.clone(),
            self.wake.clone(),
            self.alert_token.clone(),
        );
        self.tracker
            .spawn(crate::alert::run_worker(pool, sinks, notify, wake, token));
    }

    fn pipeline(
        &self,
        cfg: &Config,
        policy: &Arc<Policy>,
        sinks: Vec<&'static str>,
    ) -> Result<Pipeline, DaemonError> {
        let routes = cfg.notify.routes_for(&sinks);
        Pipeline::for_config(self.store.clone(), cfg, policy.clone(), routes, false)
            .map(|p| {
                let big = crate::scan::bigfile::BigFiles::new(
                    cfg.daemon.hash_rate,
                    cfg.content.max_bytes,
                );
                p.with_cancel(self.token.clone())
                    .with_wake(self.wake.clone())
                    .with_lane(Arc::new(big), self.hashed.clone())
            })
            .map_err(|e| DaemonError::Io(format!("cannot start hashing threads: {e}")))
    }

    /// The kernel dropped events: owe one full rescan, at once or at the end of the cooldown
    /// after the previous one; one warning per owed rescan, however many overflows it covers.
    fn note_overflow(&mut self) {
        if self.overflow_due.is_some() {
            return;
        }
        let now = Instant::now();
        let at = self
            .last_overflow_rescan
            .map_or(now, |t| (t + OVERFLOW_COOLDOWN).max(now));
        tracing::warn!(
            rescan_in = %crate::timefmt::human_secs(at - now),
            "{} queue overflowed ({}): changes since the last event may be unrecorded; a full rescan will close the gap",
            if self.fanotify { "fanotify" } else { "inotify" },
            if self.fanotify { "FAN_Q_OVERFLOW" } else { "IN_Q_OVERFLOW" },
        );
        self.overflow_due = Some(at);
    }

    /// Forget pending paths and queue one full rescan (it covers them).
    fn full_rescan(&mut self, reason: Reason) {
        self.debouncer.clear();
        self.ready.paths.clear();
        self.ready.actors.clear();
        self.ready.full = Some(reason);
    }

    async fn on_watch_msg(&mut self, msg: WatchMsg) {
        match msg {
            WatchMsg::Paths {
                paths,
                anchors,
                actors,
            } => {
                let now = Instant::now();
                // Bounded like the debouncer: at most one actor per pending path.
                if self.ready.actors.len() < MAX_PENDING {
                    self.ready.actors.extend(actors);
                }
                for p in paths {
                    if !self.debouncer.add(p, now) {
                        tracing::warn!(
                            limit = MAX_PENDING,
                            "too many paths changing at once; running a full rescan instead"
                        );
                        self.full_rescan(Reason::QueueFull);
                        break;
                    }
                }
                for a in anchors {
                    let w = self.watches.clone();
                    let (rescan, fell_back) = tokio::task::spawn_blocking(move || match w.lock() {
                        Ok(mut w) => w.refresh(&a),
                        Err(_) => (Vec::new(), Vec::new()),
                    })
                    .await
                    .unwrap_or_default();
                    for p in rescan {
                        let _ = self.debouncer.add(p, now);
                    }
                    self.publish_fallback(fell_back).await;
                }
            }
            WatchMsg::Overflow => self.note_overflow(),
            WatchMsg::MaxWatches(dirs) => {
                let new = match self.watches.lock() {
                    Ok(mut w) => w.note_max_watches(&dirs),
                    Err(_) => Vec::new(),
                };
                self.publish_fallback(new).await;
            }
            WatchMsg::Error(e) => tracing::warn!(error = %e, "inotify watcher error"),
        }
    }

    /// Install (or adjust) the watches for the current policy.
    async fn configure_watches(&mut self) {
        let (w, policy) = (self.watches.clone(), self.policy.clone());
        let fell_back = tokio::task::spawn_blocking(move || match w.lock() {
            Ok(mut w) => w.configure(&policy),
            Err(_) => Vec::new(),
        })
        .await
        .unwrap_or_default();
        self.publish_fallback(fell_back).await;
    }

    /// One warning for trees newly out of inotify watches; `daemon.fallback` for `status`.
    async fn publish_fallback(&self, new: Vec<PathBuf>) {
        if !new.is_empty() {
            let trees: Vec<String> = new.iter().map(|p| display_path(p)).collect();
            tracing::warn!(
                trees = %trees.join(", "),
                "out of inotify watches (fs.inotify.max_user_watches): these trees are covered only by the periodic rescan every {}; raise the limit (sysctl fs.inotify.max_user_watches=1048576), then reload fimd (systemctl reload fimd) to watch them again",
                humantime::format_duration(self.cfg.daemon.rescan_interval)
            );
        }
        let all: Vec<String> = match self.watches.lock() {
            Ok(w) => w.fallback.iter().map(|p| display_path(p)).collect(),
            Err(_) => Vec::new(),
        };
        let value = if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        };
        if let Err(e) = self.store.set_meta("daemon.fallback", &value).await {
            tracing::warn!(error = %e, "cannot publish daemon status");
        }
    }

    /// The periodic rescan. When a watch root's symlink leads elsewhere now, the policy is
    /// built again from the running config first (the same config, roots resolved anew), and
    /// the worker's reload step reports the retarget with a full rescan; otherwise a plain
    /// full rescan.
    async fn periodic_rescan(&mut self) {
        let policy = self.policy.clone();
        let moved = tokio::task::spawn_blocking(move || policy.roots_moved())
            .await
            .unwrap_or(false);
        if !(moved && self.follow_moved_roots().await) {
            self.ready.full.get_or_insert(Reason::Periodic);
        }
    }

    /// Resolve the roots again (see [`Daemon::periodic_rescan`]); false when that failed
    /// (logged), so a plain rescan runs instead.
    async fn follow_moved_roots(&mut self) -> bool {
        let (cfg, path) = (self.cfg.clone(), self.config_path.clone());
        let built = tokio::task::spawn_blocking(move || Policy::from_config(&cfg, &path))
            .await
            .map_err(|e| format!("the policy task failed: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map(Arc::new)
            .and_then(|policy| {
                let pipeline = self
                    .pipeline(&self.cfg, &policy, self.sink_names.clone())
                    .map_err(|e| e.to_string())?;
                Ok((policy, pipeline))
            });
        let (policy, pipeline) = match built {
            Ok(built) => built,
            Err(e) => {
                tracing::error!(
                    "a watch root's symlink changed, but the roots cannot be resolved again: {e}"
                );
                return false;
            }
        };
        tracing::info!("a watch root's symlink leads elsewhere now; following it");
        let old_policy = match self.ready.reload.take() {
            Some(Work::Reload { old_policy, .. }) => old_policy,
            _ => self.policy.clone(),
        };
        self.policy = policy;
        self.configure_watches().await;
        self.ready.reload = Some(Work::Reload {
            pipeline: Box::new(pipeline),
            old_policy,
        });
        true
    }

    /// SIGHUP: reload the config; on error keep the running one (one error line).
    async fn reload_config(&mut self) {
        sdnotify::reloading();
        // Off the main loop: the secret stores may take a while to answer.
        let (path, explicit, flags, strict) = (
            self.config_path.clone(),
            self.config_explicit,
            self.flags.clone(),
            self.strict,
        );
        let loaded =
            tokio::task::spawn_blocking(move || reload::load(&path, explicit, &flags, strict))
                .await
                .map_err(|e| format!("the reload task failed: {e}"))
                .and_then(|r| r)
                .and_then(|(cfg, policy, sinks)| {
                    let pipeline = self
                        .pipeline(&cfg, &policy, sinks.names())
                        .map_err(|e| e.to_string())?;
                    Ok((cfg, policy, sinks, pipeline))
                });
        let (cfg, policy, sinks, pipeline) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(
                    "configuration reload failed, keeping the running configuration: {e}"
                );
                sdnotify::ready("reload failed; running configuration kept");
                return;
            }
        };
        if cfg.daemon.database != self.cfg.daemon.database {
            tracing::warn!("daemon.database changed: it takes effect at the next restart");
        }
        if cfg.daemon.log_level != self.cfg.daemon.log_level {
            tracing::warn!("daemon.log_level changed: it takes effect at the next restart");
        }
        let old_policy = match self.ready.reload.take() {
            // Two reloads before the worker took the first: it still runs the oldest policy.
            Some(Work::Reload { old_policy, .. }) => old_policy,
            _ => self.policy.clone(),
        };
        self.policy = policy.clone();
        self.configure_watches().await;
        self.debouncer.set_window(cfg.daemon.debounce);
        if cfg.daemon.rescan_interval != self.cfg.daemon.rescan_interval {
            let i = cfg.daemon.rescan_interval;
            self.rescan = interval_at(Instant::now() + i, i);
        }
        self.cfg = cfg;
        self.start_alert_worker(sinks);
        self.ready.reload = Some(Work::Reload {
            pipeline: Box::new(pipeline),
            old_policy,
        });
        tracing::info!(config = %display_path(&self.config_path), "configuration loaded; applying it");
    }
}
