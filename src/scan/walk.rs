//! Walking the monitored trees: every root and single-file target (full scans), or one
//! directory below a root (the daemon's targeted scans of a new or recreated directory).
//! Never follows symlinks, never descends into a directory the policy does not walk, and
//! never aborts on one unreadable directory: it is reported so its baseline rows are kept.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::is_gone;
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
/// (directories walked, and selected non-directories). Each directory is walked by exactly one
/// root walk (a nested root is pruned from its parent's walk and walked on its own).
/// `visit` returning false stops the walk.
pub fn walk(policy: &Policy, mut visit: impl FnMut(PathBuf) -> bool) -> WalkReport {
    let mut report = WalkReport::default();
    let roots: Vec<PathBuf> = policy.dir_roots().iter().map(|w| w.root.clone()).collect();
    let root_set: HashSet<&Path> = roots.iter().map(PathBuf::as_path).collect();
    let mut targets: HashMap<&Path, bool> = policy
        .file_targets()
        .into_iter()
        .map(|p| (p, false))
        .collect();
    for root in &roots {
        match std::fs::symlink_metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                // A root that is a file now: it is its own entry.
                if policy.selects(root) && !visit(root.clone()) {
                    return report;
                }
                continue;
            }
            Err(e) if is_gone(&e) => {
                tracing::debug!(root = %display_path(root), "watch root does not exist (yet)");
                continue;
            }
            Err(e) => {
                tracing::warn!(root = %display_path(root), error = %e, "cannot stat watch root");
                report.errors += 1;
                report.unreadable_dirs.push(root.clone());
                continue;
            }
        }
        let mut visit_and_mark = |path: PathBuf| {
            if let Some(seen) = targets.get_mut(path.as_path()) {
                *seen = true;
            }
            visit(path)
        };
        if !walk_tree(policy, root, &root_set, &mut report, &mut visit_and_mark) {
            return report;
        }
    }
    for (target, seen) in targets {
        if !seen && !visit(target.to_path_buf()) {
            break;
        }
    }
    report
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
    let walker = walkdir::WalkDir::new(start)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            !e.file_type().is_dir()
                || e.depth() == 0
                || (!prune.contains(e.path()) && policy.walks_dir(e.path()))
        });
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| start.to_path_buf());
                if e.io_error().is_some_and(is_gone) {
                    continue;
                }
                tracing::warn!(path = %display_path(&path), error = %e, "cannot read directory; keeping its baseline entries");
                report.errors += 1;
                report.unreadable_dirs.push(path);
                continue;
            }
        };
        let wanted = entry.file_type().is_dir() || policy.selects(entry.path());
        if wanted && !visit(entry.into_path()) {
            return false;
        }
    }
    true
}
