//! Is the database file still the one we opened? A deleted, replaced or truncated database
//! file goes unnoticed by SQLite (it keeps writing into the unlinked inode), so the daemon
//! compares the file's device and inode with what it saw at open, and its length with what
//! it saw last. A file may shrink legitimately (retention's incremental vacuum, here or in a
//! `check` run beside the daemon, reaches the file at a checkpoint), so a shrunk file is
//! truncated only when it is shorter than SQLite's own count of its pages (the caller asks).
//! And a marker beside the database remembers that a baseline existed, so a start that finds
//! no database can tell "first start" from "the database was lost".
//!
//! Only `stat`: this process must never open and close the database file itself, since
//! closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
//! included (another process would then take the WAL for unused and delete it).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::StoreError;

/// What identifies the database file, and its length when last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
}

impl FileId {
    /// The file at `path` now (`None` if it cannot be read).
    pub(super) fn of(path: &Path) -> Option<FileId> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
        })
    }

    /// Is the file at `path` still `self`? `Ok(Some(len))` when it shrank to `len` (the
    /// caller compares that with the pages SQLite counts, then calls [`FileId::accept`]).
    pub(super) fn verify(&mut self, path: &Path) -> Result<Option<u64>, StoreError> {
        let m = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(lost(path, "was removed".to_string()))
            }
            Err(e) => return Err(lost(path, format!("cannot be checked ({e})"))),
        };
        if (m.dev(), m.ino()) != (self.dev, self.ino) {
            return Err(lost(path, "was replaced by another file".to_string()));
        }
        if m.len() < self.len {
            return Ok(Some(m.len()));
        }
        self.len = m.len();
        Ok(None)
    }

    /// The file shrank to `len` legitimately.
    pub(super) fn accept(&mut self, len: u64) {
        self.len = len;
    }
}

/// The database file is gone or not whole.
pub(super) fn lost(path: &Path, what: String) -> StoreError {
    StoreError::Lost {
        path: path.to_path_buf(),
        what,
    }
}

/// The marker beside the database: `<database>.baseline` (see [`mark_baseline`]).
pub fn marker_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".baseline");
    db.with_file_name(name)
}

/// Remember that a baseline exists in `db` (written once; an error is only logged: the marker
/// serves a later diagnosis and must not stop the daemon).
pub fn mark_baseline(db: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let marker = marker_path(db);
    if marker.exists() {
        return;
    }
    let text = "fimd built a baseline in the database beside this file; if the database is \
                missing while this file exists, the database was lost and the next baseline \
                is recorded as recreated\n";
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&marker)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(marker = %marker.display(), error = %e, "cannot write the baseline marker");
    }
}

/// A baseline existed in `db` before (its marker is there).
pub fn had_baseline(db: &Path) -> bool {
    marker_path(db).exists()
}
