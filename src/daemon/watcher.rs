//! The inotify side (notify 8): which directories are watched, and the callback that turns
//! notify events into [`WatchMsg`]s.
//!
//! Watched: every recursive directory root (notify adds new subdirectories itself), every
//! non-recursive root, and the parent directory of every root and single-file target
//! (authorized_keys, file roots), so a root deleted and recreated, or a target file created,
//! is seen at once. A parent that does not exist yet is replaced by its nearest existing
//! ancestor until it appears. Directories already inside a recursive root get no extra watch.
//!
//! Guarantees: the callback never blocks (it `try_send`s into a bounded channel; when the
//! channel is full it sets the shared overflow flag, which the daemon turns into a full
//! rescan); our own reads (IN_OPEN, IN_CLOSE_NOWRITE) and the database files are filtered
//! out, and so is any path the policy does not monitor. Running out of inotify watches is
//! reported, and the affected trees are listed for `fimd status`.

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::{BTreeSet, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;

use crate::event::display_path;
use crate::policy::Policy;

/// What the notify thread tells the daemon.
#[derive(Debug)]
pub enum WatchMsg {
    /// These monitored paths changed. `anchors`: those among them created, removed or
    /// renamed that are a watched root or parent or one of their ancestors: the daemon calls
    /// [`Watches::refresh`] for them.
    Paths {
        paths: Vec<PathBuf>,
        anchors: Vec<PathBuf>,
    },
    /// The kernel queue overflowed (IN_Q_OVERFLOW): events were lost.
    Overflow,
    /// Out of inotify watches while adding watches for these directories.
    MaxWatches(Vec<PathBuf>),
    /// Any other watcher error, for the log.
    Error(String),
}

/// One directory we ask notify to watch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Spec {
    path: PathBuf,
    recursive: bool,
    /// The parent of a root or target (watched only for its direct entries).
    parent: bool,
}

/// What the callback needs to decide relevance; replaced on reload.
struct Filter {
    policy: Arc<Policy>,
    /// Spec paths and all their ancestors: creations there may need new watches.
    anchors: HashSet<PathBuf>,
    /// The database file (and -wal, -shm, -journal): never an event, or we would loop.
    database: PathBuf,
}

impl Filter {
    fn relevant(&self, p: &Path) -> bool {
        if p.as_os_str()
            .as_bytes()
            .starts_with(self.database.as_os_str().as_bytes())
        {
            return false;
        }
        self.policy.selects(p) || self.policy.walks_dir(p) || self.anchors.contains(p)
    }
}

/// The notify watcher and what it watches. Methods block (notify walks trees to add
/// recursive watches): call them from `spawn_blocking`.
pub struct Watches {
    watcher: RecommendedWatcher,
    filter: Arc<RwLock<Arc<Filter>>>,
    specs: BTreeSet<Spec>,
    /// Roots whose watches are incomplete (out of inotify watches): periodic rescan only.
    pub fallback: BTreeSet<PathBuf>,
}

/// A [`Watches`] shared between the main loop and blocking tasks.
pub type SharedWatches = Arc<Mutex<Watches>>;

impl Watches {
    /// Start the notify watcher (no watches yet). Messages go to `tx`; when it is full,
    /// `overflow` is set instead.
    pub fn new(
        policy: Arc<Policy>,
        database: PathBuf,
        tx: mpsc::Sender<WatchMsg>,
        overflow: Arc<AtomicBool>,
    ) -> notify::Result<Watches> {
        let filter = Arc::new(RwLock::new(Arc::new(Filter {
            policy,
            anchors: HashSet::new(),
            database,
        })));
        let cb_filter = filter.clone();
        let send = move |msg: WatchMsg| match tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => overflow.store(true, Ordering::SeqCst),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        };
        // Never follow symlinks: notify's default would register a symlinked directory's
        // inode under the symlink's path, and report changes in the real directory there.
        let config = notify::Config::default().with_follow_symlinks(false);
        let handler = move |res: notify::Result<notify::Event>| {
            let event = match res {
                Ok(event) => event,
                Err(e) => {
                    return match e.kind {
                        notify::ErrorKind::MaxFilesWatch => send(WatchMsg::MaxWatches(e.paths)),
                        _ => send(WatchMsg::Error(e.to_string())),
                    }
                }
            };
            if event.need_rescan() {
                return send(WatchMsg::Overflow);
            }
            let Some(structural) = classify(&event.kind) else {
                return;
            };
            let filter = current(&cb_filter);
            let paths: Vec<PathBuf> = event
                .paths
                .into_iter()
                .filter(|p| filter.relevant(p))
                .collect();
            if !paths.is_empty() {
                let anchors = match structural {
                    true => paths
                        .iter()
                        .filter(|p| filter.anchors.contains(*p))
                        .cloned()
                        .collect(),
                    false => Vec::new(),
                };
                send(WatchMsg::Paths { paths, anchors });
            }
        };
        let watcher = RecommendedWatcher::new(handler, config)?;
        Ok(Watches {
            watcher,
            filter,
            specs: BTreeSet::new(),
            fallback: BTreeSet::new(),
        })
    }

    /// Watch what `policy` needs, and stop watching what it no longer needs. Returns the
    /// roots newly put in fallback (out of watches), for one warning.
    pub fn configure(&mut self, policy: &Arc<Policy>) -> Vec<PathBuf> {
        let specs = specs_for(policy);
        let database = current(&self.filter).database.clone();
        let anchors = specs
            .iter()
            .flat_map(|s| s.path.ancestors().map(Path::to_path_buf))
            .collect();
        if let Ok(mut f) = self.filter.write() {
            *f = Arc::new(Filter {
                policy: policy.clone(),
                anchors,
                database,
            });
        }
        let old: Vec<Spec> = self.specs.difference(&specs).cloned().collect();
        for s in old {
            let _ = self.watcher.unwatch(&s.path);
            self.fallback.remove(&s.path);
        }
        let new: Vec<Spec> = specs.difference(&self.specs).cloned().collect();
        self.specs = specs;
        let mut fell_back = Vec::new();
        // Trees that ran out of watches get another try (a reload after raising the limit);
        // all of them when inotify did not say which tree it was.
        let unknown = self.fallback.remove(Path::new(UNKNOWN_TREE));
        let retry: Vec<Spec> = self
            .specs
            .iter()
            .filter(|s| self.fallback.remove(&s.path) || unknown)
            .cloned()
            .collect();
        for s in retry {
            if !s.parent {
                let _ = self.watcher.unwatch(&s.path);
            }
            fell_back.extend(self.install(&s));
        }
        for s in new {
            fell_back.extend(self.install(&s));
        }
        fell_back
    }

    /// After a create/remove/rename of `changed`: re-install the watches at or below it
    /// (a root recreated, a target's parent created). Returns the roots and targets below
    /// `changed`, which the caller scans (files may have appeared before the watch did), and
    /// roots newly in fallback.
    pub fn refresh(&mut self, changed: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let hit: Vec<Spec> = self
            .specs
            .iter()
            .filter(|s| s.path.starts_with(changed))
            .cloned()
            .collect();
        if hit.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let mut fell_back = Vec::new();
        for s in &hit {
            if !s.parent {
                let _ = self.watcher.unwatch(&s.path);
            }
            fell_back.extend(self.install(s));
        }
        let policy = current(&self.filter).policy.clone();
        let mut rescan: Vec<PathBuf> = policy
            .dir_roots()
            .iter()
            .map(|w| w.root.clone())
            .chain(policy.file_targets().into_iter().map(Path::to_path_buf))
            .filter(|p| p.starts_with(changed))
            .collect();
        rescan.sort();
        rescan.dedup();
        (rescan, fell_back)
    }

    /// Map directories notify could not watch to their roots; returns the roots new in
    /// fallback.
    pub fn note_max_watches(&mut self, dirs: &[PathBuf]) -> Vec<PathBuf> {
        let policy = current(&self.filter).policy.clone();
        let mut new = Vec::new();
        for d in dirs {
            for w in policy.dir_roots() {
                if d.starts_with(&w.root) && self.fallback.insert(w.root.clone()) {
                    new.push(w.root.clone());
                }
            }
        }
        if dirs.is_empty() && self.fallback.insert(PathBuf::from(UNKNOWN_TREE)) {
            new.push(PathBuf::from(UNKNOWN_TREE));
        }
        new
    }

    /// Install one spec. A missing parent is replaced by its nearest existing ancestor; a
    /// missing root needs nothing (its parent's watch reports its creation).
    fn install(&mut self, s: &Spec) -> Option<PathBuf> {
        let target = if s.path.is_dir() {
            s.path.clone()
        } else if s.parent {
            match s.path.ancestors().skip(1).find(|a| a.is_dir()) {
                Some(a) if !self.covered(a) => a.to_path_buf(),
                _ => return None,
            }
        } else {
            return None;
        };
        let mode = if s.recursive && target == s.path {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        let mut result = self.watcher.watch(&target, mode);
        if matches!(&result, Err(e) if !matches!(e.kind, notify::ErrorKind::MaxFilesWatch)) {
            // A directory vanished while notify walked the tree: once more.
            result = self.watcher.watch(&target, mode);
        }
        match result {
            Ok(()) => None,
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                // Give back the watches this tree took before the limit: they cannot make it
                // real time, and another tree may fit in them.
                let _ = self.watcher.unwatch(&target);
                let root = s.path.clone();
                self.fallback.insert(root.clone()).then_some(root)
            }
            Err(e) => {
                tracing::warn!(path = %display_path(&target), error = %e, "cannot watch directory; it is covered by the periodic rescan only");
                None
            }
        }
    }

    /// Is `dir` inside (or equal to) a recursively watched root?
    fn covered(&self, dir: &Path) -> bool {
        self.specs
            .iter()
            .any(|s| s.recursive && dir.starts_with(&s.path))
    }
}

/// The fallback entry when inotify could not say which directory it failed to watch.
const UNKNOWN_TREE: &str = "(unknown tree)";

fn current(filter: &RwLock<Arc<Filter>>) -> Arc<Filter> {
    match filter.read() {
        Ok(f) => f.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Which notify events matter, and whether they are structural. `None`: ignore (our own
/// reads: IN_OPEN and IN_CLOSE_NOWRITE).
fn classify(kind: &EventKind) -> Option<bool> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(false),
        EventKind::Access(_) => None,
        EventKind::Create(CreateKind::Folder | CreateKind::Any | CreateKind::Other) => Some(true),
        EventKind::Create(CreateKind::File) => Some(true),
        EventKind::Modify(ModifyKind::Name(_)) => Some(true),
        EventKind::Modify(_) => Some(false),
        EventKind::Remove(_) => Some(true),
        EventKind::Any | EventKind::Other => Some(true),
    }
}

/// The directories `policy` needs watched (see the module doc).
fn specs_for(policy: &Policy) -> BTreeSet<Spec> {
    let recursive: Vec<&Path> = policy
        .dir_roots()
        .iter()
        .filter(|w| w.recursive)
        .map(|w| w.root.as_path())
        .collect();
    let inside = |p: &Path| recursive.iter().any(|r| p.starts_with(r) && p != *r);
    let covered = |p: &Path| recursive.iter().any(|r| p.starts_with(r));
    let mut specs = BTreeSet::new();
    for w in policy.dir_roots() {
        if (w.recursive && !inside(&w.root)) || (!w.recursive && !covered(&w.root)) {
            specs.insert(Spec {
                path: w.root.clone(),
                recursive: w.recursive,
                parent: false,
            });
        }
    }
    let tops = policy
        .dir_roots()
        .into_iter()
        .map(|w| w.root.as_path())
        .chain(policy.file_targets());
    for p in tops {
        if let Some(parent) = p.parent().filter(|d| !covered(d)) {
            if !specs.iter().any(|s| s.path == parent) {
                specs.insert(Spec {
                    path: parent.to_path_buf(),
                    recursive: false,
                    parent: true,
                });
            }
        }
    }
    specs
}

/// inotify watches this process holds, from `/proc/self/fdinfo` (what the kernel counts
/// against `fs.inotify.max_user_watches`).
pub fn kernel_watch_count() -> Option<usize> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let is_inotify = std::fs::read_link(entry.path())
            .map(|t| t.as_os_str().as_bytes().ends_with(b"inotify"))
            .unwrap_or(false);
        if !is_inotify {
            continue;
        }
        let info = Path::new("/proc/self/fdinfo").join(entry.file_name());
        if let Ok(text) = std::fs::read_to_string(info) {
            total += text
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count();
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{MetadataKind, RemoveKind, RenameMode};

    #[test]
    fn our_own_reads_are_ignored() {
        assert_eq!(
            classify(&EventKind::Access(AccessKind::Open(AccessMode::Any))),
            None
        );
        assert_eq!(
            classify(&EventKind::Access(AccessKind::Close(AccessMode::Read))),
            None
        );
        assert_eq!(
            classify(&EventKind::Access(AccessKind::Close(AccessMode::Write))),
            Some(false)
        );
        assert_eq!(
            classify(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))),
            Some(false)
        );
        assert_eq!(
            classify(&EventKind::Modify(ModifyKind::Name(RenameMode::To))),
            Some(true)
        );
        assert_eq!(classify(&EventKind::Remove(RemoveKind::Folder)), Some(true));
    }
}
