//! The inotify side: which directories are watched, and the thread that turns kernel events
//! into [`WatchMsg`]s. The daemon sees only this narrow interface (paths in through
//! [`Watches::configure`] and [`Watches::refresh`], [`WatchMsg`]s out), so another backend
//! (fanotify) can sit behind it.
//!
//! Watched: every recursive directory root and, below it, every directory (new ones are
//! added as they appear), every non-recursive root, and the parent directory of every root
//! and single-file target (authorized_keys, file roots), so a root deleted and recreated, or
//! a target file created, is seen at once. A parent that does not exist yet is replaced by its
//! nearest existing ancestor until it appears. Directories already inside a recursive root
//! get no extra watch.
//!
//! Only changes are subscribed ([`MASK`]): no IN_OPEN, IN_ACCESS or IN_CLOSE_NOWRITE, so
//! fimd's own reads (a rescan opens every directory) put nothing in the kernel queue. With
//! notify 8, which always subscribes IN_OPEN, a scan of 11.8k directories queued 23.6k events
//! and overflowed the default 16,384-event queue at startup.
//!
//! Guarantees: the thread never blocks on the daemon (it `try_send`s into a bounded channel;
//! when the channel is full it sets the shared overflow flag, which the daemon turns into a
//! full rescan); the database files are filtered out, and so is any path the policy does not
//! monitor; IN_Q_OVERFLOW is reported. Running out of inotify watches is reported, and the
//! affected trees are listed for `fimd status`. Symlinks are never followed.

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches as KernelWatches};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;

use super::fanotify::{FanEvent, Fanotify};
use crate::event::{display_path, Actor};
use crate::policy::Policy;
use crate::scan::reach::reach;
use crate::scan::DirWalk;

/// What a watched directory subscribes: changes only, never reads.
const MASK: WatchMask = WatchMask::MODIFY
    .union(WatchMask::ATTRIB)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DONT_FOLLOW)
    .union(WatchMask::ONLYDIR);

/// What the watcher thread tells the daemon.
#[derive(Debug)]
pub enum WatchMsg {
    /// These monitored paths changed. `anchors`: those among them created, removed or
    /// renamed that are a watched root or parent or one of their ancestors: the daemon calls
    /// [`Watches::refresh`] for them.
    Paths {
        paths: Vec<PathBuf>,
        anchors: Vec<PathBuf>,
        /// Who changed them (fanotify only): the last writer of each path in this read.
        actors: Vec<(PathBuf, Actor)>,
    },
    /// The kernel queue overflowed (IN_Q_OVERFLOW): events were lost.
    Overflow,
    /// Out of inotify watches while adding watches for these directories.
    MaxWatches(Vec<PathBuf>),
    /// Any other watcher error, for the log.
    Error(String),
}

/// One directory the policy needs watched.
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

/// A directory with a kernel watch.
#[derive(Debug, Clone)]
struct Watched {
    path: PathBuf,
    /// Inside a recursive root: new subdirectories get watches too.
    recursive: bool,
}

/// The kernel side: inotify watch descriptors, or fanotify inode marks (who-data).
enum Kernel {
    Inotify(KernelWatches),
    Fanotify(Arc<Mutex<Fanotify>>),
}

/// The kernel's watches and the directories they stand for, shared by the daemon's side
/// (installing) and the reader thread (new subdirectories, IN_IGNORED).
struct Registry {
    kernel: Kernel,
    by_wd: HashMap<WatchDescriptor, Watched>,
    /// fanotify: each marked directory and whether it is inside a recursive root.
    marked: HashMap<PathBuf, bool>,
}

impl Registry {
    /// Watch one directory (no walk). A directory watched twice keeps one descriptor.
    fn add_one(&mut self, dir: &Path, recursive: bool) -> io::Result<()> {
        match &mut self.kernel {
            Kernel::Inotify(k) => {
                // The watch table keeps the real path; the kernel gets one it accepts.
                let at = reach(dir)?;
                let wd = k.add(at.path(), MASK)?;
                let entry = self.by_wd.entry(wd).or_insert_with(|| Watched {
                    path: dir.to_path_buf(),
                    recursive,
                });
                entry.path = dir.to_path_buf();
                entry.recursive |= recursive;
            }
            Kernel::Fanotify(f) => {
                f.lock()
                    .map_err(|_| io::Error::other("fanotify group poisoned"))?
                    .mark(dir)?;
                *self.marked.entry(dir.to_path_buf()).or_insert(recursive) |= recursive;
            }
        }
        Ok(())
    }

    /// Remove the watches of `dir` (and, when `recursive`, of everything below it).
    fn remove(&mut self, dir: &Path, recursive: bool) {
        match &mut self.kernel {
            Kernel::Inotify(k) => {
                let gone: Vec<WatchDescriptor> = self
                    .by_wd
                    .iter()
                    .filter(|(_, w)| w.path == dir || (recursive && w.path.starts_with(dir)))
                    .map(|(wd, _)| wd.clone())
                    .collect();
                for wd in gone {
                    self.by_wd.remove(&wd);
                    let _ = k.remove(wd);
                }
            }
            Kernel::Fanotify(f) => {
                let gone: Vec<PathBuf> = self
                    .marked
                    .keys()
                    .filter(|p| p.as_path() == dir || (recursive && p.starts_with(dir)))
                    .cloned()
                    .collect();
                if let Ok(mut f) = f.lock() {
                    for p in &gone {
                        f.unmark(p);
                    }
                }
                for p in gone {
                    self.marked.remove(&p);
                }
            }
        }
    }

    /// Is `dir` a marked directory inside a recursive root (fanotify)?
    fn marked_recursive(&self, dir: &Path) -> bool {
        self.marked.get(dir).copied().unwrap_or(false)
    }
}

/// Watch `dir` and, when `recursive`, every directory below it that the policy walks
/// (`walks`: excluded trees such as `node_modules` cost no watches; symlinks are not followed).
/// Directories that vanish or cannot be read during the walk are skipped; running out of
/// watches (ENOSPC) or failing on `dir` itself is an error.
fn add_tree(
    registry: &Mutex<Registry>,
    dir: &Path,
    recursive: bool,
    walks: &dyn Fn(&Path) -> bool,
) -> io::Result<()> {
    let add = |p: &Path| -> io::Result<()> {
        let mut r = registry
            .lock()
            .map_err(|_| io::Error::other("watch registry poisoned"))?;
        r.add_one(p, recursive)
    };
    add(dir)?;
    if !recursive {
        return Ok(());
    }
    // No depth limit: directories nested beyond PATH_MAX are watched too.
    let walk = DirWalk::new(dir, walks).dirs_only().skip(1);
    for (path, _) in walk.flatten() {
        match add(&path) {
            Ok(()) => {}
            Err(e) if is_out_of_watches(&e) => return Err(e),
            // Gone, replaced by a file, or unreadable since the walk saw it.
            Err(_) => {}
        }
    }
    Ok(())
}

fn is_out_of_watches(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

/// The inotify watcher and what it watches. Methods block (they walk trees to add recursive
/// watches): call them from `spawn_blocking`.
pub struct Watches {
    registry: Arc<Mutex<Registry>>,
    filter: Arc<RwLock<Arc<Filter>>>,
    specs: BTreeSet<Spec>,
    /// Roots whose watches are incomplete (out of inotify watches): periodic rescan only.
    pub fallback: BTreeSet<PathBuf>,
    /// Written to stop the reader thread (on drop).
    stop: OwnedFd,
}

/// A [`Watches`] shared between the main loop and blocking tasks.
pub type SharedWatches = Arc<Mutex<Watches>>;

impl Drop for Watches {
    fn drop(&mut self) {
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
    }
}

impl Watches {
    /// Start the inotify reader thread (no watches yet). Messages go to `tx`; when it is
    /// full, `overflow` is set instead.
    /// With `fan` (a fanotify group made at start), events carry who made them (who-data);
    /// without, inotify.
    pub fn new(
        policy: Arc<Policy>,
        database: PathBuf,
        tx: mpsc::Sender<WatchMsg>,
        overflow: Arc<AtomicBool>,
        fan: Option<Fanotify>,
    ) -> io::Result<Watches> {
        let filter = Arc::new(RwLock::new(Arc::new(Filter {
            policy,
            anchors: HashSet::new(),
            database,
        })));
        let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let stop_reader = stop.try_clone()?;
        let new_registry = |kernel| {
            Arc::new(Mutex::new(Registry {
                kernel,
                by_wd: HashMap::new(),
                marked: HashMap::new(),
            }))
        };
        // One reader thread per backend; both feed `tx` and stop on `stop`.
        let (registry, name, run): (_, &str, Box<dyn FnOnce() + Send>) = match fan {
            None => {
                let inotify = Inotify::init()?;
                let registry = new_registry(Kernel::Inotify(inotify.watches()));
                let reader = Reader {
                    inotify,
                    registry: registry.clone(),
                    filter: filter.clone(),
                    tx,
                    overflow,
                };
                (
                    registry,
                    "fimd-inotify",
                    Box::new(move || reader.run(stop_reader)),
                )
            }
            Some(fan) => {
                let fan = Arc::new(Mutex::new(fan));
                let registry = new_registry(Kernel::Fanotify(fan.clone()));
                let reader = FanReader {
                    fan,
                    registry: registry.clone(),
                    filter: filter.clone(),
                    tx,
                    overflow,
                };
                (
                    registry,
                    "fimd-fanotify",
                    Box::new(move || reader.run(stop_reader)),
                )
            }
        };
        std::thread::Builder::new().name(name.into()).spawn(run)?;
        Ok(Watches {
            registry,
            filter,
            specs: BTreeSet::new(),
            fallback: BTreeSet::new(),
            stop,
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
            self.unwatch(&s.path, s.recursive);
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
                self.unwatch(&s.path, s.recursive);
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
                self.unwatch(&s.path, s.recursive);
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

    /// Map directories that could not be watched to their roots; returns the roots new in
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

    fn unwatch(&self, dir: &Path, recursive: bool) {
        if let Ok(mut r) = self.registry.lock() {
            r.remove(dir, recursive);
        }
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
        let recursive = s.recursive && target == s.path;
        let policy = current(&self.filter).policy.clone();
        match add_tree(&self.registry, &target, recursive, &|p| policy.walks_dir(p)) {
            Ok(()) => None,
            Err(e) if is_out_of_watches(&e) => {
                // Give back the watches this tree took before the limit: they cannot make it
                // real time, and another tree may fit in them.
                self.unwatch(&target, recursive);
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

/// The reader thread: kernel events in, [`WatchMsg`]s out.
struct Reader {
    inotify: Inotify,
    registry: Arc<Mutex<Registry>>,
    filter: Arc<RwLock<Arc<Filter>>>,
    tx: mpsc::Sender<WatchMsg>,
    overflow: Arc<AtomicBool>,
}

impl Reader {
    fn send(&self, msg: WatchMsg) {
        send(&self.tx, &self.overflow, msg);
    }

    fn run(mut self, stop: OwnedFd) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match wait_readable(self.inotify.as_fd(), &stop) {
                Ok(true) if !self.tx.is_closed() => {}
                Ok(_) => return,
                Err(e) => {
                    self.send(WatchMsg::Error(format!("inotify poll failed: {e}")));
                    return;
                }
            }
            let raw: Vec<(WatchDescriptor, EventMask, Option<PathBuf>)> =
                match self.inotify.read_events(&mut buf) {
                    Ok(events) => events
                        .map(|e| {
                            let name = e.name.map(|n| PathBuf::from(n.to_os_string()));
                            (e.wd, e.mask, name)
                        })
                        .collect(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.send(WatchMsg::Error(format!("inotify read failed: {e}")));
                        return;
                    }
                };
            self.handle(raw);
        }
    }

    /// One read's worth of kernel events: at most one `Paths` message.
    fn handle(&self, raw: Vec<(WatchDescriptor, EventMask, Option<PathBuf>)>) {
        let filter = current(&self.filter);
        let mut paths = Vec::new();
        let mut anchors = Vec::new();
        let mut out_of_watches = Vec::new();
        for (wd, mask, name) in raw {
            if mask.contains(EventMask::Q_OVERFLOW) {
                self.send(WatchMsg::Overflow);
                continue;
            }
            let Ok(mut registry) = self.registry.lock() else {
                return;
            };
            if mask.contains(EventMask::IGNORED) {
                registry.by_wd.remove(&wd);
                continue;
            }
            let Some(dir) = registry.by_wd.get(&wd).cloned() else {
                continue;
            };
            let path = match &name {
                Some(n) => dir.path.join(n),
                None => dir.path.clone(),
            };
            let is_dir = mask.contains(EventMask::ISDIR) && name.is_some();
            // Keep the recursive watches in step with the tree: a directory created or moved
            // in gets watches (it may already hold subdirectories), one moved out loses them.
            if dir.recursive && is_dir {
                if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                    drop(registry);
                    let walks = |p: &Path| filter.policy.walks_dir(p);
                    let result = match walks(&path) {
                        true => add_tree(&self.registry, &path, true, &walks),
                        false => Ok(()),
                    };
                    if let Err(e) = result {
                        if is_out_of_watches(&e) {
                            out_of_watches.push(path.clone());
                        }
                    }
                } else if mask.contains(EventMask::MOVED_FROM) {
                    registry.remove(&path, true);
                }
            }
            if !filter.relevant(&path) {
                continue;
            }
            let structural = mask.intersects(
                EventMask::CREATE
                    | EventMask::DELETE
                    | EventMask::MOVED_FROM
                    | EventMask::MOVED_TO
                    | EventMask::DELETE_SELF
                    | EventMask::MOVE_SELF,
            );
            if structural && filter.anchors.contains(&path) {
                anchors.push(path.clone());
            }
            paths.push(path);
        }
        send_batch(
            &self.tx,
            &self.overflow,
            out_of_watches,
            paths,
            anchors,
            Vec::new(),
        );
    }
}

/// The fanotify reader thread: kernel events with their writers in, [`WatchMsg`]s out. The
/// same rules as [`Reader`]; each path also carries its actor (read at once from /proc:
/// many writers are short-lived).
struct FanReader {
    fan: Arc<Mutex<Fanotify>>,
    registry: Arc<Mutex<Registry>>,
    filter: Arc<RwLock<Arc<Filter>>>,
    tx: mpsc::Sender<WatchMsg>,
    overflow: Arc<AtomicBool>,
}

impl FanReader {
    fn send(&self, msg: WatchMsg) {
        send(&self.tx, &self.overflow, msg);
    }

    fn run(self, stop: OwnedFd) {
        let raw = match self.fan.lock() {
            Ok(f) => f.raw_fd(),
            Err(_) => return,
        };
        // SAFETY: the group's descriptor stays open while `self.fan` (held here) lives.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match wait_readable(fd, &stop) {
                Ok(true) if !self.tx.is_closed() => {}
                Ok(_) => return,
                Err(e) => {
                    self.send(WatchMsg::Error(format!("fanotify poll failed: {e}")));
                    return;
                }
            }
            let events = match self.fan.lock() {
                Ok(mut f) => f.read(&mut buf),
                Err(_) => return,
            };
            match events {
                Ok(events) => self.handle(events),
                Err(e) => {
                    self.send(WatchMsg::Error(format!("fanotify read failed: {e}")));
                    return;
                }
            }
        }
    }

    fn handle(&self, events: Vec<FanEvent>) {
        let filter = current(&self.filter);
        let me = std::process::id() as i32;
        let mut paths = Vec::new();
        let mut anchors = Vec::new();
        let mut actors: Vec<(PathBuf, Actor)> = Vec::new();
        let mut out_of_watches = Vec::new();
        let mut by_pid: HashMap<i32, Actor> = HashMap::new();
        for ev in events {
            if ev.is_overflow() {
                self.send(WatchMsg::Overflow);
                continue;
            }
            // A rename is one event naming both ends; a move out names only the old one.
            let gone_kind = libc::FAN_MOVED_FROM
                | libc::FAN_DELETE
                | libc::FAN_DELETE_SELF
                | libc::FAN_MOVE_SELF;
            let mut ends: Vec<(PathBuf, bool)> = Vec::new();
            if let Some(from) = ev.from.clone() {
                ends.push((from, true));
            }
            if let Some(p) = ev.path.clone() {
                let gone = ev.from.is_none() && ev.mask & gone_kind != 0;
                ends.push((p, gone));
            }
            for (path, gone) in ends {
                let parent_recursive = path.parent().is_some_and(|d| {
                    self.registry
                        .lock()
                        .map(|r| r.marked_recursive(d))
                        .unwrap_or(false)
                });
                if ev.is_dir() && parent_recursive {
                    if gone {
                        if let Ok(mut r) = self.registry.lock() {
                            r.remove(&path, true);
                        }
                    } else if ev.mask & (libc::FAN_CREATE | libc::FAN_MOVED_TO | libc::FAN_RENAME)
                        != 0
                    {
                        let walks = |p: &Path| filter.policy.walks_dir(p);
                        if walks(&path) {
                            if let Err(e) = add_tree(&self.registry, &path, true, &walks) {
                                if is_out_of_watches(&e) {
                                    out_of_watches.push(path.clone());
                                }
                            }
                        }
                    }
                }
                if !filter.relevant(&path) {
                    continue;
                }
                let structural = ev.mask
                    & (libc::FAN_CREATE
                        | libc::FAN_DELETE
                        | libc::FAN_MOVED_FROM
                        | libc::FAN_MOVED_TO
                        | libc::FAN_DELETE_SELF
                        | libc::FAN_MOVE_SELF
                        | libc::FAN_RENAME)
                    != 0;
                if structural && filter.anchors.contains(&path) {
                    anchors.push(path.clone());
                }
                // fimd's own pid is never an actor.
                if ev.pid > 0 && ev.pid != me {
                    let actor = by_pid
                        .entry(ev.pid)
                        .or_insert_with(|| super::actor::read(ev.pid, ev.pidfd.as_ref()))
                        .clone();
                    actors.push((path.clone(), actor));
                }
                paths.push(path);
            }
        }
        send_batch(
            &self.tx,
            &self.overflow,
            out_of_watches,
            paths,
            anchors,
            actors,
        );
    }
}

/// Hand a message to the daemon without ever blocking: when its channel is full, set the
/// overflow flag instead (the daemon turns it into a full rescan).
/// What one read of the kernel's queue found, for either backend: the directories that could
/// not be watched, then the changed paths (one message each, when there are any).
fn send_batch(
    tx: &mpsc::Sender<WatchMsg>,
    overflow: &AtomicBool,
    out_of_watches: Vec<PathBuf>,
    mut paths: Vec<PathBuf>,
    mut anchors: Vec<PathBuf>,
    actors: Vec<(PathBuf, Actor)>,
) {
    if !out_of_watches.is_empty() {
        send(tx, overflow, WatchMsg::MaxWatches(out_of_watches));
    }
    if !paths.is_empty() {
        paths.dedup();
        anchors.dedup();
        send(
            tx,
            overflow,
            WatchMsg::Paths {
                paths,
                anchors,
                actors,
            },
        );
    }
}

fn send(tx: &mpsc::Sender<WatchMsg>, overflow: &AtomicBool, msg: WatchMsg) {
    match tx.try_send(msg) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => overflow.store(true, Ordering::SeqCst),
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// Wait until `fd` has events (true) or `stop` was written (false).
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, stop: &OwnedFd) -> rustix::io::Result<bool> {
    loop {
        let mut fds = [
            PollFd::new(&fd, PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) if !fds[1].revents().is_empty() => return Ok(false),
            Ok(_) if !fds[0].revents().is_empty() => return Ok(true),
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
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

/// inotify watches (or fanotify inode marks) this process holds, from `/proc/self/fdinfo`
/// (what the kernel counts against `fs.inotify.max_user_watches` / fanotify's mark limit).
pub fn kernel_watch_count() -> Option<usize> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let kind = std::fs::read_link(entry.path()).ok();
        let kind = kind.as_ref().map(|t| t.as_os_str().as_bytes());
        let prefix: &str = match kind {
            Some(k) if k.ends_with(b"inotify") => "inotify wd:",
            Some(k) if k.ends_with(b"[fanotify]") => "fanotify ino:",
            _ => continue,
        };
        let info = Path::new("/proc/self/fdinfo").join(entry.file_name());
        if let Ok(text) = std::fs::read_to_string(info) {
            total += text.lines().filter(|l| l.starts_with(prefix)).count();
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_subscribed() {
        assert!(!MASK.intersects(WatchMask::OPEN | WatchMask::ACCESS | WatchMask::CLOSE_NOWRITE));
        assert!(
            MASK.contains(WatchMask::DONT_FOLLOW | WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO)
        );
    }
}
