//! Keeping a package index in step with its database on disk, without a watch: before each
//! batch is explained, a few `stat` calls tell whether the database files changed (dpkg
//! renames its `info/` files into place, so the directory's mtime moves too), and only the
//! files that changed are handed to [`PackageDb::refresh`]. Works the same for `check`, the
//! daemon and rescans.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::packages::PackageDb;

/// What identifies one version of a file: (inode, size, mtime in ns, ctime in ns).
type Sig = (u64, u64, i64, i64);

fn sig(path: &Path) -> Option<Sig> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((
        m.ino(),
        m.size(),
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec(),
    ))
}

/// The database files of one index and their last seen signatures.
#[derive(Debug, Default)]
pub struct Freshness {
    /// Files whose change is handed to `refresh` (dpkg `status`, the rpmdb).
    files: Vec<(PathBuf, Option<Sig>)>,
    /// Directories whose entries are compared one by one when the directory changed (dpkg
    /// `info/`): the directory's own signature, then each entry's.
    dirs: Vec<(PathBuf, Option<Sig>, HashMap<PathBuf, Sig>)>,
}

impl Freshness {
    /// Track these files and directories from their state now.
    pub fn new(files: &[PathBuf], dirs: &[PathBuf]) -> Freshness {
        Freshness {
            files: files.iter().map(|f| (f.clone(), sig(f))).collect(),
            dirs: dirs.iter().map(|d| (d.clone(), sig(d), list(d))).collect(),
        }
    }

    /// Hand every file that changed since the last call to `db.refresh_all`, in one call.
    /// Returns how many files that reload covered (0 when nothing was reloaded). A failed
    /// refresh keeps the old index and is retried at the next call (no signature advances).
    pub fn update(&mut self, db: &mut dyn PackageDb) -> usize {
        let mut changed = Vec::new();
        let mut files_now = Vec::with_capacity(self.files.len());
        for (path, last) in &self.files {
            let now = sig(path);
            if now != *last {
                changed.push(path.clone());
            }
            files_now.push(now);
        }
        let mut dirs_now = Vec::new();
        for (i, (dir, last, entries)) in self.dirs.iter().enumerate() {
            let now = sig(dir);
            if now == *last {
                continue;
            }
            let listed = list(dir);
            changed.extend(
                listed
                    .iter()
                    .filter(|(path, s)| entries.get(*path) != Some(s))
                    .map(|(path, _)| path.clone()),
            );
            changed.extend(entries.keys().filter(|p| !listed.contains_key(*p)).cloned());
            dirs_now.push((i, now, listed));
        }
        if changed.is_empty() && dirs_now.is_empty() {
            return 0;
        }
        let reloaded = match db.refresh_all(&changed) {
            Ok(reloaded) => reloaded,
            Err(e) => {
                // The error names the file that could not be read.
                tracing::warn!(changed_files = changed.len(), error = %e, "cannot reload the package database; keeping the previous index");
                return 0;
            }
        };
        for ((_, last), now) in self.files.iter_mut().zip(files_now) {
            *last = now;
        }
        for (i, now, listed) in dirs_now {
            if let Some((_, last, entries)) = self.dirs.get_mut(i) {
                *last = now;
                *entries = listed;
            }
        }
        if reloaded {
            changed.len()
        } else {
            0
        }
    }
}

/// Every entry of `dir` with its signature (an unreadable directory lists nothing).
fn list(dir: &Path) -> HashMap<PathBuf, Sig> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            sig(&p).map(|s| (p, s))
        })
        .collect()
}
