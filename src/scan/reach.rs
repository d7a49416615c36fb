//! Reaching paths longer than `PATH_MAX`: the kernel refuses any path of 4096 bytes or more
//! (ENAMETOOLONG), but a tree can be nested deeper than that (`mkdirat` has no limit), and an
//! attacker who hides a file there must not hide it from fimd.
//!
//! [`reach`] gives a path the kernel accepts for the same file: the path itself when it is
//! short (no system call, no allocation), else `/proc/self/fd/<N>/<rest>`, where `N` is a
//! directory descriptor opened `openat` by `openat` along the path in chunks below the
//! limit. Every path-taking call (lstat, open, readlink, xattrs, inotify, fanotify) goes
//! through it; events and the database keep the full path. The descriptor lives as long as
//! the returned value. The last component is never the `/proc` magic link itself, so
//! `O_NOFOLLOW`/`IN_DONT_FOLLOW` keep their meaning on the final name.

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{openat, Mode, OFlags, CWD};

/// Paths at least this long go through a directory descriptor. Below `PATH_MAX` (4096, NUL
/// included) with room for `/proc/self/fd/<N>/` and a joined name (NAME_MAX 255).
const DIRECT_MAX: usize = 3800;

/// A path the kernel accepts for the file named by a (possibly longer) path.
#[derive(Debug)]
pub struct Reached<'a> {
    path: Cow<'a, Path>,
    /// The directory the `/proc/self/fd` path goes through (kept open while in use).
    _dir: Option<OwnedFd>,
}

impl Reached<'_> {
    /// The path to hand to the kernel.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A kernel-acceptable path for `path` (see the module doc). Fails when a directory on the
/// way cannot be opened (gone, not a directory, no permission): the same errors a direct
/// call would give.
pub fn reach(path: &Path) -> io::Result<Reached<'_>> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() < DIRECT_MAX {
        return Ok(Reached {
            path: Cow::Borrowed(path),
            _dir: None,
        });
    }
    if !proc_fd_available() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidFilename,
            "path longer than PATH_MAX and /proc is not mounted to reach it",
        ));
    }
    let mut dir: Option<OwnedFd> = None;
    let mut pos = 0;
    if bytes.first() == Some(&b'/') {
        dir = Some(open_dir(None, Path::new("/"))?);
        pos = 1;
    }
    // Open chunks of whole components until what is left is short enough.
    while bytes.len() - pos >= DIRECT_MAX {
        let window = &bytes[pos..pos + DIRECT_MAX];
        let cut = window
            .iter()
            .rposition(|b| *b == b'/')
            .filter(|&i| i > 0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENAMETOOLONG))?;
        let chunk = Path::new(std::ffi::OsStr::from_bytes(&window[..cut]));
        dir = Some(open_dir(dir.as_ref(), chunk)?);
        pos += cut + 1;
    }
    let rest = &bytes[pos..];
    let rest = if rest.is_empty() { &b"."[..] } else { rest };
    let Some(dir) = dir else {
        // A relative path that long: nothing opened (cannot happen with pos at 0 and the
        // loop above always opening), kept for totality.
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    };
    let mut short = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    short.extend_from_slice(rest);
    Ok(Reached {
        path: Cow::Owned(PathBuf::from(std::ffi::OsString::from_vec(short))),
        _dir: Some(dir),
    })
}

/// `lstat` of a path of any length.
pub fn symlink_metadata(path: &Path) -> io::Result<std::fs::Metadata> {
    std::fs::symlink_metadata(reach(path)?.path())
}

/// Open a directory (following symlinks, as a path walk would) for use as a base only.
fn open_dir(base: Option<&OwnedFd>, rel: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = match base {
        Some(b) => openat(b.as_fd(), rel, flags, Mode::empty()),
        None => openat(CWD, rel, flags, Mode::empty()),
    };
    fd.map_err(io::Error::from)
}

fn proc_fd_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths_are_used_as_they_are() {
        let r = reach(Path::new("/etc/hosts")).expect("reach");
        assert_eq!(r.path(), Path::new("/etc/hosts"));
    }

    /// A file 30 levels of 200-byte names deep (about 6 KB of path) is stat'ed and read.
    #[test]
    fn paths_beyond_path_max_are_reached() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let name = "d".repeat(200);
        let mut dir = rustix::fs::open(tmp.path(), OFlags::DIRECTORY, Mode::empty()).expect("open");
        let mut full = tmp.path().to_path_buf();
        for _ in 0..30 {
            rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).expect("mkdirat");
            dir = openat(&dir, name.as_str(), OFlags::DIRECTORY, Mode::empty()).expect("openat");
            full.push(&name);
        }
        let file = openat(
            &dir,
            "deep.conf",
            OFlags::CREATE | OFlags::WRONLY,
            Mode::from_raw_mode(0o644),
        )
        .expect("create");
        rustix::io::write(&file, b"hidden = 1\n").expect("write");
        full.push("deep.conf");
        assert!(full.as_os_str().len() > 4096);
        assert!(
            std::fs::symlink_metadata(&full).is_err(),
            "the direct call fails"
        );
        let meta = symlink_metadata(&full).expect("lstat through a descriptor");
        assert_eq!(meta.len(), 11);
        let r = reach(&full).expect("reach");
        assert_eq!(std::fs::read(r.path()).expect("read"), b"hidden = 1\n");
        let gone = full.with_file_name("missing");
        assert_eq!(
            symlink_metadata(&gone).expect_err("gone").kind(),
            io::ErrorKind::NotFound
        );
    }
}
