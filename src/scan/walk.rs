//! Walking the monitored trees: every root and single-file target (full scans), or one
//! directory below a root (the daemon's targeted scans of a new or recreated directory).
//! Never follows symlinks, never descends into a directory the policy does not walk, and
//! never aborts on one unreadable directory: it is reported so its baseline rows are kept.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::dirwalk::DirWalk;
use super::{is_gone, reach};
use crate::event::display_path;
use crate::policy::Policy;

/// Problems met while walking, for the caller to report; baseline entries under an
/// unreadable directory are kept, not reported as removed.
#[derive(Debug, Default)]
pub struct WalkReport {
    pub unreadable_dirs: Vec<PathBuf>,
    pub errors: usize,
}

/// Walk every root and every single-file target once, calling `visit` with each path to scan
/// (directories walked, and selected non-directories) and whether it is a directory. Each
/// directory is walked by exactly one root walk (a nested root is pruned from its parent's
/// walk and walked on its own); `visit` returning false stops the walk.
///
/// **Order**: paths come in the order of [`walk_key`] (the path's bytes, a directory's with
/// a `/` appended), merged across roots. So the non-directories come in plain byte order,
/// the order of the baseline's primary key, and a full scan can merge the walk with the
/// baseline streamed from SQLite instead of holding either in memory.
pub fn walk(policy: &Policy, mut visit: impl FnMut(PathBuf, Seen) -> bool) -> WalkReport {
    let mut report = WalkReport::default();
    let roots: Vec<PathBuf> = policy.dir_roots().iter().map(|w| w.root.clone()).collect();
    let root_set: HashSet<&Path> = roots.iter().map(PathBuf::as_path).collect();
    let mut singles: Vec<PathBuf> = policy
        .file_targets()
        .into_iter()
        .map(Path::to_path_buf)
        .collect();
    let mut streams: Vec<Stream> = Vec::new();
    for root in &roots {
        match reach::symlink_metadata(root) {
            Ok(m) if m.is_dir() => streams.push(Stream::tree(policy, root, &root_set)),
            Ok(_) => {
                // A root that is a file now: it is its own entry.
                if policy.selects(root) {
                    singles.push(root.clone());
                }
            }
            Err(e) if is_gone(&e) => {
                tracing::debug!(root = %display_path(root), "watch root does not exist (yet)");
            }
            Err(e) => {
                tracing::warn!(root = %display_path(root), error = %e, "cannot stat watch root");
                report.errors += 1;
                report.unreadable_dirs.push(root.clone());
            }
        }
    }
    singles.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    streams.push(Stream::list(singles));
    for s in &mut streams {
        s.advance(policy);
    }
    let mut last: Option<Vec<u8>> = None;
    // Repeatedly take the stream whose head sorts first (a handful of roots: a linear pick).
    while let Some(i) = (0..streams.len())
        .filter(|&i| streams[i].head.is_some())
        .min_by(|&a, &b| streams[a].head_key().cmp(streams[b].head_key()))
    {
        let Some((key, path, seen)) = streams[i].head.take() else {
            break;
        };
        streams[i].advance(policy);
        if last.as_deref() == Some(key.as_slice()) {
            continue; // the same path from two streams (a file target inside a walked tree)
        }
        last = Some(key);
        if !visit(path, seen) {
            break;
        }
    }
    for s in streams {
        report.errors += s.errors;
        report.unreadable_dirs.extend(s.unreadable);
    }
    report
}

/// What the walk saw of a path (from the directory entry's type, without a stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Dir,
    /// A regular file when the directory was read (it may have changed since).
    File,
    /// A symlink, FIFO, socket or device, or a single-file target not looked at yet.
    Other,
}

impl Seen {
    pub fn is_dir(self) -> bool {
        self == Seen::Dir
    }
}

/// The sort key of a walked path: its bytes, plus `/` for a directory (so a directory sorts
/// exactly where its children do in byte order).
pub fn walk_key(path: &Path, is_dir: bool) -> Vec<u8> {
    let mut k = path.as_os_str().as_bytes().to_vec();
    if is_dir {
        k.push(b'/');
    }
    k
}

/// One sorted source of paths: a root's walk, or a sorted list of single files.
struct Stream<'a> {
    tree: Option<DirWalk<'a>>,
    list: std::vec::IntoIter<PathBuf>,
    head: Option<(Vec<u8>, PathBuf, Seen)>,
    unreadable: Vec<PathBuf>,
    errors: usize,
}

impl<'a> Stream<'a> {
    fn tree(policy: &'a Policy, root: &Path, prune: &'a HashSet<&'a Path>) -> Stream<'a> {
        let it = DirWalk::new(root, move |p| !prune.contains(p) && policy.walks_dir(p));
        Stream {
            tree: Some(it),
            list: Vec::new().into_iter(),
            head: None,
            unreadable: Vec::new(),
            errors: 0,
        }
    }

    fn list(paths: Vec<PathBuf>) -> Stream<'a> {
        Stream {
            tree: None,
            list: paths.into_iter(),
            head: None,
            unreadable: Vec::new(),
            errors: 0,
        }
    }

    fn head_key(&self) -> &[u8] {
        self.head
            .as_ref()
            .map(|h| h.0.as_slice())
            .unwrap_or_default()
    }

    /// Move to the next path worth visiting, recording unreadable directories on the way.
    fn advance(&mut self, policy: &Policy) {
        let Some(tree) = self.tree.as_mut() else {
            self.head = self
                .list
                .next()
                .map(|p| (walk_key(&p, false), p, Seen::Other));
            return;
        };
        for step in tree.by_ref() {
            match step {
                Ok((path, seen)) => {
                    if seen.is_dir() || policy.selects(&path) {
                        self.head = Some((walk_key(&path, seen.is_dir()), path, seen));
                        return;
                    }
                }
                Err((path, e)) => {
                    tracing::warn!(path = %display_path(&path), error = %e, "cannot read directory; keeping its baseline entries");
                    self.errors += 1;
                    self.unreadable.push(path);
                }
            }
        }
        self.head = None;
    }
}

/// Walk one directory that the policy walks (a directory created or recreated below a root,
/// or a root itself), visiting it, the directories below it that the policy walks and the
/// selected non-directories. Nested roots are walked too (nobody else walks them here).
pub fn walk_subtree(
    policy: &Policy,
    dir: &Path,
    report: &mut WalkReport,
    visit: &mut dyn FnMut(PathBuf) -> bool,
) -> bool {
    walk_tree(policy, dir, &HashSet::new(), report, visit)
}

/// The walk below `start`: directories in `prune` (other roots) are skipped, excluded
/// directories are not descended into. Returns false when `visit` asked to stop.
fn walk_tree(
    policy: &Policy,
    start: &Path,
    prune: &HashSet<&Path>,
    report: &mut WalkReport,
    visit: &mut dyn FnMut(PathBuf) -> bool,
) -> bool {
    let walker = DirWalk::new(start, |p| !prune.contains(p) && policy.walks_dir(p));
    for step in walker {
        let (path, seen) = match step {
            Ok(s) => s,
            Err((path, e)) => {
                tracing::warn!(path = %display_path(&path), error = %e, "cannot read directory; keeping its baseline entries");
                report.errors += 1;
                report.unreadable_dirs.push(path);
                continue;
            }
        };
        let wanted = seen.is_dir() || policy.selects(&path);
        if wanted && !visit(path) {
            return false;
        }
    }
    true
}
