//! Big files are hashed on their own lane, so one huge file never holds back the events of
//! small ones (a 5 GiB file at `hash_rate = 50 MB/s` takes almost two minutes).
//!
//! A scan that meets a regular file of at least [`BigFiles::threshold`] bytes whose content
//! must be read does not read it: it reports [`super::Outcome::Pending`] and writes nothing
//! for it. The daemon hands the path to its lane thread, which hashes it ([`prehash`]) and
//! keeps the result here, keyed by path and by the file's identity (inode, size, mtime,
//! ctime, read with `fstat` before the first byte). The path is then scanned again like any
//! other; the scan uses the kept hash only when `lstat` shows the same identity, so a file
//! written meanwhile is hashed again. The pipeline stays the only writer of baseline and
//! events, and a path's changes stay in order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{hash_file, ScanSettings};
use crate::state::{FileKind, FileState};
use crate::timefmt::now_ns;

/// Files below this are always hashed inline.
const MAX_THRESHOLD: u64 = 64 << 20;
/// Hashes kept at most (a rescan of a tree full of big files must not grow memory forever).
const MAX_KEPT: usize = 4096;

/// One big file, hashed ahead by the lane.
#[derive(Debug, Clone)]
pub struct Prehashed {
    /// Its state when the read began (`sha256` and security attributes filled in).
    pub state: FileState,
    pub holds_private_key: bool,
    /// When the read began (the racy-timestamp rule of the baseline uses it).
    pub hashed_at_ns: i64,
}

/// The lane's results, shared by the lane thread and the scans.
#[derive(Debug)]
pub struct BigFiles {
    threshold: u64,
    done: Mutex<HashMap<PathBuf, Prehashed>>,
}

impl BigFiles {
    /// Files of at least about half a second of hashing at `hash_rate` (at most 64 MiB; all
    /// of them when unlimited) go to the lane, and never one whose text is kept for diffs
    /// (the lane keeps no content).
    pub fn new(hash_rate: u64, max_bytes: u64) -> BigFiles {
        let by_rate = match hash_rate {
            0 => MAX_THRESHOLD,
            rate => (rate / 2).min(MAX_THRESHOLD),
        };
        BigFiles {
            threshold: by_rate.max(max_bytes.saturating_add(1)).max(1 << 20),
            done: Mutex::default(),
        }
    }

    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// Keep the lane's result for `path`.
    pub fn put(&self, path: PathBuf, hashed: Prehashed) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if done.len() >= MAX_KEPT && !done.contains_key(&path) {
            done.clear(); // those paths are hashed again if ever scanned: only time is lost
        }
        done.insert(path, hashed);
    }

    /// The kept hash of `path` if the file still has the identity it had when it was read
    /// (a stale one is dropped).
    pub fn matching(&self, path: &Path, now: &FileState) -> Option<Prehashed> {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let hit = done.get(path)?;
        let same = hit.state.kind == FileKind::File
            && hit.state.inode == now.inode
            && hit.state.size == now.size
            && hit.state.mtime_ns == now.mtime_ns
            && hit.state.ctime_ns == now.ctime_ns;
        if same {
            return Some(hit.clone());
        }
        done.remove(path);
        None
    }
}

/// Hash one big file for the lane (streamed, paced by `settings.rate`).
/// `None` when it vanished or is no longer a regular file; an unreadable file is an error.
pub fn prehash(
    path: &Path,
    settings: &ScanSettings,
    name_sensitive: bool,
) -> std::io::Result<Option<Prehashed>> {
    let hashed_at_ns = now_ns();
    Ok(
        hash_file(path, None, settings, name_sensitive)?.map(|read| {
            let mut state = read.state;
            state.sha256 = Some(read.sha256);
            Prehashed {
                state,
                holds_private_key: read.holds_private_key,
                hashed_at_ns,
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_follows_the_rate_and_keeps_text_files_inline() {
        assert_eq!(BigFiles::new(0, 1 << 20).threshold(), 64 << 20);
        assert_eq!(BigFiles::new(50_000_000, 1 << 20).threshold(), 25_000_000);
        assert_eq!(BigFiles::new(1_000, 1 << 20).threshold(), (1 << 20) + 1);
        assert_eq!(BigFiles::new(0, 100 << 20).threshold(), (100 << 20) + 1);
    }

    #[test]
    fn a_kept_hash_is_used_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        std::fs::write(&path, vec![7u8; 4096]).expect("write");
        let settings = ScanSettings {
            max_bytes: 0,
            detect_private_keys: true,
            full: false,
            rate: None,
            lane: None,
            progress: Default::default(),
        };
        let hashed = prehash(&path, &settings, false)
            .expect("read")
            .expect("a file");
        assert!(hashed.state.sha256.is_some());
        let lane = BigFiles::new(0, 0);
        lane.put(path.clone(), hashed.clone());
        let now =
            |p: &Path| super::super::state_from_meta(&std::fs::symlink_metadata(p).expect("lstat"));
        assert!(lane.matching(&path, &now(&path)).is_some());
        std::fs::write(&path, vec![8u8; 4097]).expect("rewrite");
        assert!(lane.matching(&path, &now(&path)).is_none());
        // Dropped: even the old identity no longer matches.
        assert!(lane.matching(&path, &hashed.state).is_none());
    }
}
