//! Looking at the disk: walking the roots (never following symlinks), `lstat`, streaming
//! SHA-256 through a fixed buffer, reading text content for diffs, and recognising private
//! keys by content. Never opens FIFOs, sockets or devices; never aborts on one bad file.
//! Never logs or returns a sensitive file's bytes: its buffer is wiped before it is dropped.

use memchr::memmem;
use sha2::{Digest, Sha256};
use std::fs::Metadata;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::policy::Policy;

pub mod attrs;
pub mod bigfile;
mod dirwalk;
pub mod reach;
mod walk;
use crate::state::{FileKind, FileState, Recorded};
use crate::timefmt::now_ns;
pub mod governor;

pub use dirwalk::{DirWalk, Step};
pub use walk::{walk, walk_key, walk_subtree, Seen, WalkReport};

/// How much of a file's content the scanner keeps, and whether it looks for keys.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// Keep the content of text files up to this size (for diffs).
    pub max_bytes: u64,
    pub detect_private_keys: bool,
    /// Re-hash every file even when its metadata equals the baseline (`check --full`).
    pub full: bool,
    /// Bytes per second all hashing threads may read together (`daemon.hash_rate`).
    pub rate: Option<std::sync::Arc<governor::RateLimit>>,
    /// The daemon's big-file lane: big files whose content must be read are left to it
    /// (see [`bigfile`]); `None` hashes every file inline.
    pub lane: Option<std::sync::Arc<bigfile::BigFiles>>,
    /// Bytes read for hashing with these settings (all threads): the daemon feeds its
    /// watchdog while this advances, so a long hash is never mistaken for a hang.
    pub progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ScanSettings {
    /// Account for `n` bytes read for hashing: counted, then paced by the rate limit.
    fn account(&self, n: usize) {
        self.progress
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = &self.rate {
            r.consume(n);
        }
    }
}

/// One path as read now.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub path: PathBuf,
    pub state: FileState,
    /// By name/path or by content.
    pub sensitive: bool,
    /// UTF-8 text without NUL, at most `max_bytes`, never for a sensitive file.
    pub text: Option<Vec<u8>>,
    pub hashed_at_ns: i64,
}

/// What the scanner found for one path.
// Outcomes travel in chunks of 256 and most are `Entry`: boxing it would add an allocation
// per path for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outcome {
    /// Read now (hashed if a regular file).
    Entry(Scanned),
    /// Metadata equals the baseline and the baseline is not racy: not re-read.
    Same(PathBuf),
    /// Gone between listing and reading (or never there).
    Vanished(PathBuf),
    /// A big file to be hashed on the lane first ([`bigfile`]): nothing is written for it now.
    Pending { path: PathBuf, inode: u64 },
}

impl Outcome {
    pub fn path(&self) -> &Path {
        match self {
            Outcome::Entry(s) => &s.path,
            Outcome::Same(p) | Outcome::Vanished(p) | Outcome::Pending { path: p, .. } => p,
        }
    }
}

/// Files changed this close to their hashing time are re-hashed (timestamps come from a coarse
/// kernel clock, so a write right after our read can carry an mtime at or before it).
const RACY_NS: i64 = 1_000_000_000;

const READ_BUF: usize = 256 * 1024;

/// The metadata part of a state, from `lstat`/`fstat`.
pub fn state_from_meta(meta: &Metadata) -> FileState {
    FileState {
        kind: FileKind::from_file_type(meta.file_type()),
        size: meta.size(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        ctime_ns: meta
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.ctime_nsec()),
        inode: meta.ino(),
        nlink: meta.nlink(),
        sha256: None,
        link_target: None,
        attrs: None,
    }
}

/// Look at one path: `lstat`, then hash a regular file (unless the fast path applies), read a
/// symlink's target, record anything else without opening it.
pub fn scan_path(
    path: &Path,
    policy: &Policy,
    settings: &ScanSettings,
    known: Option<&Recorded>,
    seen: Seen,
) -> Outcome {
    // Every system call below goes through `at` (the same file, reachable however deep);
    // `path` is what is recorded and reported.
    let reached = match reach::reach(path) {
        Ok(r) => r,
        Err(e) if is_gone(&e) => return Outcome::Vanished(path.to_path_buf()),
        Err(e) => {
            tracing::warn!(path = %crate::event::display_path(path), error = %e, "cannot reach file; keeping its baseline");
            return match known {
                Some(_) => Outcome::Same(path.to_path_buf()),
                None => Outcome::Vanished(path.to_path_buf()),
            };
        }
    };
    let at = reached.path();
    if seen == Seen::File && known.is_none() && settings.lane.is_none() {
        // A new regular file (an init): open it straight away, one stat fewer. If it is no
        // longer a regular file (or is gone), the lstat path below looks again.
        let name_sensitive = policy.is_sensitive_path(path);
        let hashed_at_ns = now_ns();
        if let Ok(Some(read)) = hash_file(at, None, settings, name_sensitive) {
            let mut state = read.state;
            state.sha256 = Some(read.sha256);
            return Outcome::Entry(Scanned {
                path: path.to_path_buf(),
                state,
                sensitive: name_sensitive || read.holds_private_key,
                text: read.text,
                hashed_at_ns,
            });
        }
    }
    let meta = match std::fs::symlink_metadata(at) {
        Ok(m) => m,
        Err(e) if is_gone(&e) => return Outcome::Vanished(path.to_path_buf()),
        Err(e) => {
            tracing::warn!(path = %crate::event::display_path(path), error = %e, "cannot stat file; keeping its baseline");
            return match known {
                Some(_) => Outcome::Same(path.to_path_buf()),
                None => Outcome::Vanished(path.to_path_buf()),
            };
        }
    };
    let mut state = state_from_meta(&meta);
    let name_sensitive = policy.is_sensitive_path(path);
    let mut scanned = Scanned {
        path: path.to_path_buf(),
        state: state.clone(),
        sensitive: name_sensitive,
        text: None,
        hashed_at_ns: 0,
    };
    match state.kind {
        FileKind::Symlink => {
            scanned.state.link_target = std::fs::read_link(at)
                .ok()
                .map(|t| t.as_os_str().as_bytes().to_vec());
            scanned.state.attrs = Some(attrs_unless_unchanged(at, &state, known, false));
        }
        FileKind::File => {
            // A tampered row is never trusted for the fast path: the file is read again.
            if let Some(k) = known.filter(|k| {
                !settings.full
                    && !k.tampered
                    && unchanged_and_settled(&k.state, &state, k.hashed_at_ns)
            }) {
                if k.state.attrs.is_some() {
                    return Outcome::Same(path.to_path_buf());
                }
                // Recorded before fimd read security attributes: read them now (silently
                // recorded, see `compare`), without hashing again.
                scanned.state = FileState {
                    attrs: Some(attrs::read(at, true, None)),
                    ..k.state.clone()
                };
                return Outcome::Entry(scanned);
            }
            if let Some(lane) = settings
                .lane
                .as_ref()
                .filter(|l| state.size >= l.threshold())
            {
                let Some(done) = lane.matching(path, &state) else {
                    return Outcome::Pending {
                        path: path.to_path_buf(),
                        inode: state.inode,
                    };
                };
                scanned.state = done.state;
                scanned.sensitive = name_sensitive || done.holds_private_key;
                scanned.hashed_at_ns = done.hashed_at_ns;
                return Outcome::Entry(scanned);
            }
            scanned.hashed_at_ns = now_ns();
            match hash_file(at, Some(&meta), settings, name_sensitive) {
                Ok(Some(read)) => {
                    state = read.state;
                    state.sha256 = Some(read.sha256);
                    scanned.state = state;
                    scanned.sensitive = name_sensitive || read.holds_private_key;
                    scanned.text = read.text;
                }
                Ok(None) => return Outcome::Vanished(path.to_path_buf()),
                Err(e) => {
                    tracing::warn!(path = %crate::event::display_path(path), error = %e, "cannot read file; its hash is unknown this time");
                }
            }
        }
        FileKind::Dir => {
            scanned.state.attrs = Some(attrs_unless_unchanged(at, &state, known, true));
        }
        _ => {
            scanned.state.attrs = Some(attrs_unless_unchanged(at, &state, known, false));
        }
    }
    Outcome::Entry(scanned)
}

/// The recorded attributes when the inode and its ctime are unchanged (every attribute
/// change moves ctime), else read them now.
fn attrs_unless_unchanged(
    path: &Path,
    now: &FileState,
    known: Option<&Recorded>,
    is_dir: bool,
) -> attrs::SecAttrs {
    match known.and_then(|k| {
        (!k.tampered && k.state.inode == now.inode && k.state.ctime_ns == now.ctime_ns)
            .then_some(k.state.attrs.as_ref())
            .flatten()
    }) {
        Some(a) => a.clone(),
        None => attrs::read(path, is_dir, None),
    }
}

/// The fast path: every stat field equals the baseline and the baseline hash was taken well
/// after the last change, so the content cannot have changed unseen.
fn unchanged_and_settled(old: &FileState, now: &FileState, hashed_at_ns: i64) -> bool {
    old.kind == FileKind::File
        && old.sha256.is_some()
        && old.size == now.size
        && old.mtime_ns == now.mtime_ns
        && old.ctime_ns == now.ctime_ns
        && old.inode == now.inode
        && old.mode == now.mode
        && old.uid == now.uid
        && old.gid == now.gid
        && old.nlink == now.nlink
        && !is_racy(old, hashed_at_ns)
}

/// The recorded hash was taken so soon after the file's last change that a later write in the
/// same timestamp tick could carry the same mtime/ctime.
pub fn is_racy(recorded: &FileState, hashed_at_ns: i64) -> bool {
    recorded.mtime_ns.max(recorded.ctime_ns) >= hashed_at_ns.saturating_sub(RACY_NS)
}

pub(crate) fn is_gone(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
        || e.raw_os_error() == Some(40)
}

struct FileRead {
    /// Its stat and security attributes (read on the open descriptor).
    state: FileState,
    sha256: [u8; 32],
    text: Option<Vec<u8>>,
    holds_private_key: bool,
}

/// Stream a regular file through SHA-256. `Ok(None)`: it vanished or stopped being a regular
/// file (swapped for a FIFO or symlink) between `lstat` and `open`.
fn hash_file(
    path: &Path,
    lstat: Option<&Metadata>,
    settings: &ScanSettings,
    name_sensitive: bool,
) -> std::io::Result<Option<FileRead>> {
    // O_NOFOLLOW: a symlink swapped in is not followed. O_NONBLOCK: a FIFO swapped in does not
    // block the open; fstat below then refuses it.
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || lstat.is_some_and(|l| meta.ino() != l.ino()) {
        return Ok(None);
    }
    let keep_limit = if name_sensitive {
        0
    } else {
        settings.max_bytes
    };
    let mut hasher = Sha256::new();
    let mut key_scan = KeyScanner::new(settings.detect_private_keys && !name_sensitive);
    let mut keep: Option<Vec<u8>> = None;
    if meta.size() <= keep_limit && meta.size() < READ_BUF as u64 * 64 {
        // Small enough to keep: read it straight into its own buffer (one copy), then hash.
        // Exactly the size fstat gave (no extra read for EOF): a write after our fstat moves
        // mtime/ctime, so the next scan looks again.
        let mut data = Vec::with_capacity(meta.size() as usize);
        let n = (&mut file).take(meta.size()).read_to_end(&mut data)?;
        settings.account(n);
        hasher.update(&data);
        key_scan.feed(&data);
        if data.len() as u64 > keep_limit {
            wipe(Some(data)); // it grew while we read: too big to keep now
        } else {
            keep = Some(data);
        }
    }
    // The rest (or all of a big or sensitive file), streamed through a per-thread buffer.
    READ_BUFFER.with(|cell| -> std::io::Result<()> {
        let mut buf = cell.borrow_mut();
        let result = stream_rest(
            &mut file,
            &mut buf,
            &mut hasher,
            &mut key_scan,
            &mut keep,
            keep_limit,
            settings,
        );
        if name_sensitive || key_scan.found {
            buf.fill(0);
        }
        result
    })?;
    let holds_private_key = key_scan.found;
    let text = if holds_private_key {
        wipe(keep);
        None
    } else {
        keep.filter(|k| is_text(k))
    };
    let mut state = state_from_meta(&meta);
    state.attrs = Some(attrs::read(path, true, Some(&file)));
    Ok(Some(FileRead {
        state,
        sha256: hasher.finalize().into(),
        text,
        holds_private_key,
    }))
}

thread_local! {
    /// One read buffer per hashing thread, reused for every file (no per-file allocation).
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_BUF]);
}

/// Read `file` to its end through `buf`, hashing, scanning for keys and (while under
/// `keep_limit`) appending to `keep`.
fn stream_rest(
    file: &mut std::fs::File,
    buf: &mut [u8],
    hasher: &mut Sha256,
    key_scan: &mut KeyScanner,
    keep: &mut Option<Vec<u8>>,
    keep_limit: u64,
    settings: &ScanSettings,
) -> std::io::Result<()> {
    loop {
        let n = match file.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        settings.account(n);
        let chunk = &buf[..n];
        hasher.update(chunk);
        key_scan.feed(chunk);
        if let Some(k) = keep.as_mut() {
            if (k.len() + n) as u64 > keep_limit {
                wipe(keep.take());
            } else {
                k.extend_from_slice(chunk);
            }
        }
    }
}

/// Overwrite a buffer that may hold a secret before freeing it.
fn wipe(buf: Option<Vec<u8>>) {
    if let Some(mut b) = buf {
        b.fill(0);
    }
}

/// Text = valid UTF-8 without NUL bytes.
fn is_text(bytes: &[u8]) -> bool {
    memchr::memchr(0, bytes).is_none() && std::str::from_utf8(bytes).is_ok()
}

/// Finds private-key markers across chunk boundaries: PEM (`-----BEGIN ... PRIVATE KEY-----`,
/// including OpenSSH's), PGP private key blocks and PuTTY key files.
/// The marker searchers, built once.
fn key_finders() -> &'static [memmem::Finder<'static>; 3] {
    static FINDERS: std::sync::OnceLock<[memmem::Finder<'static>; 3]> = std::sync::OnceLock::new();
    FINDERS.get_or_init(|| KEY_MARKERS.map(memmem::Finder::new))
}

struct KeyScanner {
    enabled: bool,
    found: bool,
    tail: Vec<u8>,
}

const KEY_MARKERS: [&[u8]; 3] = [
    b"PRIVATE KEY-----",
    b"PRIVATE KEY BLOCK-----",
    b"PuTTY-User-Key-File-",
];

impl KeyScanner {
    fn new(enabled: bool) -> KeyScanner {
        KeyScanner {
            enabled,
            found: false,
            tail: Vec::new(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if !self.enabled || self.found {
            return;
        }
        let overlap = 32;
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(&chunk[..chunk.len().min(overlap)]);
        let finders = key_finders();
        self.found = finders
            .iter()
            .any(|f| f.find(&window).is_some() || f.find(chunk).is_some());
        let start = chunk.len().saturating_sub(overlap);
        self.tail = chunk[start..].to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_markers_found_across_chunk_boundaries() {
        let text = b"junk -----BEGIN OPENSSH PRIVATE KEY-----\nabc";
        for split in 0..text.len() {
            let mut k = KeyScanner::new(true);
            k.feed(&text[..split]);
            k.feed(&text[split..]);
            assert!(k.found, "split at {split}");
        }
        let mut k = KeyScanner::new(true);
        k.feed(b"-----BEGIN CERTIFICATE-----\n");
        assert!(!k.found);
        let mut k = KeyScanner::new(true);
        k.feed(b"PuTTY-User-Key-File-3: ssh-ed25519\n");
        assert!(k.found);
    }

    #[test]
    fn text_detection() {
        assert!(is_text(b"a = 1\n"));
        assert!(!is_text(b"a\0b"));
        assert!(!is_text(b"\xff\xfe"));
    }

    #[test]
    fn racy_files_are_rehashed() {
        let s = FileState {
            kind: FileKind::File,
            size: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 10_000_000_000,
            ctime_ns: 10_000_000_000,
            inode: 1,
            nlink: 1,
            sha256: Some([0; 32]),
            link_target: None,
            attrs: None,
        };
        assert!(unchanged_and_settled(&s, &s, 20_000_000_000));
        assert!(
            !unchanged_and_settled(&s, &s, 10_500_000_000),
            "changed in the same tick as hashed"
        );
        let mut t = s.clone();
        t.ctime_ns += 1;
        assert!(!unchanged_and_settled(&s, &t, 20_000_000_000));
    }
}
