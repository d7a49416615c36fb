//! The big-file lane's thread (see `scan::bigfile`): hashes the big files that scans left to
//! it, one at a time, keeps each result for the next scan of its path and tells the worker
//! which path to scan again. A path asked for while it is queued is queued once.
//!
//! Its reads are paced by the same `hash_rate` as the scans' (the limit is the host's), but
//! they are not the pipeline's progress: they never feed the watchdog.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::mpsc;

use crate::event::display_path;
use crate::scan::bigfile::{prehash, Prehashed};
use crate::scan::{self, ScanSettings};

/// One big file to hash, with the settings of the scan that met it.
struct Job {
    path: PathBuf,
    settings: ScanSettings,
    name_sensitive: bool,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    queued: HashSet<PathBuf>,
    stop: bool,
}

type Shared = Arc<(Mutex<Queue>, Condvar)>;

/// The lane: submit paths; hashed paths come out of [`Lane::done`].
pub struct Lane {
    queue: Shared,
    /// Paths hashed (or found gone or unreadable): scan them again.
    pub done: mpsc::UnboundedReceiver<PathBuf>,
}

impl Lane {
    /// Start the lane's thread (at low CPU and I/O priority when asked).
    pub fn start(low_priority: bool) -> std::io::Result<Lane> {
        let queue: Shared = Arc::default();
        let (tx, done) = mpsc::unbounded_channel();
        let q = queue.clone();
        std::thread::Builder::new()
            .name("fimd-bigfile".into())
            .spawn(move || {
                if low_priority {
                    scan::governor::lower_thread_priority();
                }
                run(&q, &tx);
            })?;
        Ok(Lane { queue, done })
    }

    /// Hash `path` on the lane (unless it is already queued). `settings` must carry the
    /// big-file store its result goes to.
    pub fn submit(&self, path: PathBuf, settings: &ScanSettings, name_sensitive: bool) {
        let (lock, wake) = &*self.queue;
        let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
        if !q.queued.insert(path.clone()) {
            return;
        }
        let mut settings = settings.clone();
        // Not the pipeline's progress (see the module doc).
        settings.progress = Arc::default();
        q.jobs.push_back(Job {
            path,
            settings,
            name_sensitive,
        });
        wake.notify_one();
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        let (lock, wake) = &*self.queue;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        wake.notify_one();
    }
}

fn run(queue: &Shared, done: &mpsc::UnboundedSender<PathBuf>) {
    let (lock, wake) = &**queue;
    loop {
        let job = {
            let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if q.stop {
                    return;
                }
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                q = wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let hashed = match prehash(&job.path, &job.settings, job.name_sensitive) {
            Ok(h) => h,
            // As for a file hashed inline: recorded without a hash this time, and warned
            // about (never retried in a loop).
            Err(e) => {
                tracing::warn!(path = %display_path(&job.path), error = %e, "cannot read file; its hash is unknown this time");
                std::fs::symlink_metadata(&job.path)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| Prehashed {
                        state: scan::state_from_meta(&m),
                        holds_private_key: false,
                        hashed_at_ns: crate::timefmt::now_ns(),
                    })
            }
        };
        if let (Some(h), Some(store)) = (hashed, job.settings.lane.as_ref()) {
            store.put(job.path.clone(), h);
        }
        lock.lock()
            .unwrap_or_else(|p| p.into_inner())
            .queued
            .remove(&job.path);
        if done.send(job.path).is_err() {
            return; // the worker is gone
        }
    }
}
