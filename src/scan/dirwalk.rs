//! A depth-first walk of one directory tree with no depth limit: each directory is read
//! through [`super::reach`], so trees nested beyond `PATH_MAX` are walked like any other
//! (walkdir opens directories by their full path and stops there with ENAMETOOLONG).
//!
//! Order: a directory, then its entries sorted by [`super::walk_key`] order (the name's
//! bytes, a directory's with `/` appended), each subdirectory's walk right after its own
//! entry. Symlinks are never followed. Only the current chain's entry lists are held, never
//! a descriptor, so the depth costs memory for names only.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::walk::Seen;
use super::{is_gone, reach};

/// One step of the walk: a path and what it is, or a directory that could not be read.
pub type Step = Result<(PathBuf, Seen), (PathBuf, io::Error)>;

/// The walk below (and including) one start path.
pub struct DirWalk<'a> {
    start: Option<PathBuf>,
    frames: Vec<Frame>,
    /// Whether a directory below the start is yielded and descended into.
    descend: Box<dyn Fn(&Path) -> bool + 'a>,
    /// Yield only directories (the watcher's walk).
    dirs_only: bool,
    /// A read error for the directory just yielded, returned next.
    pending: Option<(PathBuf, io::Error)>,
}

struct Frame {
    dir: PathBuf,
    children: std::vec::IntoIter<(OsString, Seen)>,
}

impl<'a> DirWalk<'a> {
    pub fn new(start: &Path, descend: impl Fn(&Path) -> bool + 'a) -> DirWalk<'a> {
        DirWalk {
            start: Some(start.to_path_buf()),
            frames: Vec::new(),
            descend: Box::new(descend),
            dirs_only: false,
            pending: None,
        }
    }

    /// Yield directories only (files are still listed by the kernel, never allocated).
    pub fn dirs_only(mut self) -> Self {
        self.dirs_only = true;
        self
    }

    /// Read `dir`'s entries; a failure is returned after `dir` itself.
    fn enter(&mut self, dir: &Path) {
        match read_sorted(dir, self.dirs_only) {
            Ok(children) => self.frames.push(Frame {
                dir: dir.to_path_buf(),
                children: children.into_iter(),
            }),
            Err(e) if is_gone(&e) => {}
            Err(e) => self.pending = Some((dir.to_path_buf(), e)),
        }
    }
}

impl Iterator for DirWalk<'_> {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        if let Some(err) = self.pending.take() {
            return Some(Err(err));
        }
        if let Some(start) = self.start.take() {
            let meta = match reach::symlink_metadata(&start) {
                Ok(m) => m,
                Err(e) if is_gone(&e) => return None,
                Err(e) => return Some(Err((start, e))),
            };
            let seen = seen_of(meta.file_type());
            if seen.is_dir() {
                self.enter(&start);
            }
            return Some(Ok((start, seen)));
        }
        loop {
            let frame = self.frames.last_mut()?;
            let Some((name, seen)) = frame.children.next() else {
                self.frames.pop();
                continue;
            };
            let path = frame.dir.join(name);
            if seen.is_dir() {
                if !(self.descend)(&path) {
                    continue;
                }
                self.enter(&path);
            }
            return Some(Ok((path, seen)));
        }
    }
}

fn seen_of(ft: std::fs::FileType) -> Seen {
    if ft.is_dir() {
        Seen::Dir
    } else if ft.is_file() {
        Seen::File
    } else {
        Seen::Other
    }
}

/// The entries of one directory in walk order.
fn read_sorted(dir: &Path, dirs_only: bool) -> io::Result<Vec<(OsString, Seen)>> {
    let reached = reach::reach(dir)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(reached.path())? {
        let entry = entry?;
        // From d_type, or an fstatat on the open directory (never a long path).
        let seen = match entry.file_type() {
            Ok(ft) => seen_of(ft),
            Err(e) if is_gone(&e) => continue,
            Err(_) => Seen::Other,
        };
        if dirs_only && !seen.is_dir() {
            continue;
        }
        out.push((entry.file_name(), seen));
    }
    out.sort_by(|(a, sa), (b, sb)| {
        let slash = |s: &Seen| -> &'static [u8] {
            if s.is_dir() {
                b"/"
            } else {
                b""
            }
        };
        let ak = a.as_bytes().iter().chain(slash(sa));
        ak.cmp(b.as_bytes().iter().chain(slash(sb)))
    });
    Ok(out)
}
