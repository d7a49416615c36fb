//! `FileState`: the recorded facts of one path, and `compare`, which names what changed.
//! Pure code: no I/O here.

use std::fmt;

pub use crate::scan::attrs::SecAttrs;

/// What a path is. Directories are entries only for mode, uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Block,
    Char,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::Block => "block",
            FileKind::Char => "char",
        }
    }

    pub fn parse(s: &str) -> Option<FileKind> {
        Some(match s {
            "file" => FileKind::File,
            "dir" => FileKind::Dir,
            "symlink" => FileKind::Symlink,
            "fifo" => FileKind::Fifo,
            "socket" => FileKind::Socket,
            "block" => FileKind::Block,
            "char" => FileKind::Char,
            _ => return None,
        })
    }

    pub fn from_file_type(ft: std::fs::FileType) -> FileKind {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_socket() {
            FileKind::Socket
        } else if ft.is_block_device() {
            FileKind::Block
        } else if ft.is_char_device() {
            FileKind::Char
        } else {
            FileKind::File
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One path's recorded attributes (never its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub kind: FileKind,
    pub size: u64,
    /// Permission and special bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub nlink: u64,
    /// SHA-256 of a regular file; `None` for other kinds, or when the file could not be read
    /// (then the hash is unknown and is not compared).
    pub sha256: Option<[u8; 32]>,
    /// A symlink's target, raw bytes; never followed.
    pub link_target: Option<Vec<u8>>,
    /// Capabilities, ACLs, SELinux label, other xattrs, inode flags; `None` when not read
    /// (a baseline recorded before fimd read them): then they are not compared.
    pub attrs: Option<SecAttrs>,
}

/// The attributes `changed` can name, in DESIGN.md's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    Type,
    Size,
    Mode,
    Uid,
    Gid,
    Mtime,
    Ctime,
    Inode,
    Nlink,
    Sha256,
    LinkTarget,
    Caps,
    Acl,
    Selinux,
    Xattrs,
    Flags,
}

impl Attr {
    pub fn as_str(self) -> &'static str {
        match self {
            Attr::Type => "type",
            Attr::Size => "size",
            Attr::Mode => "mode",
            Attr::Uid => "uid",
            Attr::Gid => "gid",
            Attr::Mtime => "mtime",
            Attr::Ctime => "ctime",
            Attr::Inode => "inode",
            Attr::Nlink => "nlink",
            Attr::Sha256 => "sha256",
            Attr::LinkTarget => "link_target",
            Attr::Caps => "caps",
            Attr::Acl => "acl",
            Attr::Selinux => "selinux",
            Attr::Xattrs => "xattrs",
            Attr::Flags => "flags",
        }
    }
}

/// The attributes that differ between two versions of one path, empty when nothing changed.
/// A directory that stays a directory only counts mode, uid and gid.
pub fn compare(old: &FileState, new: &FileState) -> Vec<Attr> {
    let mut changed = Vec::new();
    let both_dirs = old.kind == FileKind::Dir && new.kind == FileKind::Dir;
    if old.kind != new.kind {
        changed.push(Attr::Type);
    }
    let mut check = |attr: Attr, differs: bool| {
        if differs {
            changed.push(attr);
        }
    };
    if both_dirs {
        check(Attr::Mode, old.mode != new.mode);
        check(Attr::Uid, old.uid != new.uid);
        check(Attr::Gid, old.gid != new.gid);
        compare_attrs(old, new, &mut changed);
        return changed;
    }
    check(Attr::Size, old.size != new.size);
    check(Attr::Mode, old.mode != new.mode);
    check(Attr::Uid, old.uid != new.uid);
    check(Attr::Gid, old.gid != new.gid);
    check(Attr::Mtime, old.mtime_ns != new.mtime_ns);
    check(Attr::Ctime, old.ctime_ns != new.ctime_ns);
    check(Attr::Inode, old.inode != new.inode);
    check(Attr::Nlink, old.nlink != new.nlink);
    // An unknown hash (unreadable file) on either side of a file->file comparison is not a change.
    let hash_unknown = old.kind == FileKind::File
        && new.kind == FileKind::File
        && (old.sha256.is_none() || new.sha256.is_none());
    check(Attr::Sha256, !hash_unknown && old.sha256 != new.sha256);
    check(Attr::LinkTarget, old.link_target != new.link_target);
    compare_attrs(old, new, &mut changed);
    changed
}

/// The security attributes that differ, when both versions have them recorded.
fn compare_attrs(old: &FileState, new: &FileState, changed: &mut Vec<Attr>) {
    let (Some(a), Some(b)) = (&old.attrs, &new.attrs) else {
        return;
    };
    for (attr, differs) in [
        (Attr::Caps, a.caps != b.caps),
        (Attr::Acl, a.acl != b.acl),
        (Attr::Selinux, a.selinux != b.selinux),
        (Attr::Xattrs, a.xattrs != b.xattrs),
        (Attr::Flags, a.flags != b.flags),
    ] {
        if differs {
            changed.push(attr);
        }
    }
}

/// True when only metadata changed (no content, type or link target): journal priority notice.
pub fn metadata_only(changed: &[Attr]) -> bool {
    !changed
        .iter()
        .any(|a| matches!(a, Attr::Sha256 | Attr::Type | Attr::LinkTarget | Attr::Size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> FileState {
        FileState {
            kind: FileKind::File,
            size: 10,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 1,
            ctime_ns: 2,
            inode: 3,
            nlink: 1,
            sha256: Some([1; 32]),
            link_target: None,
            attrs: None,
        }
    }

    fn names(v: Vec<Attr>) -> Vec<&'static str> {
        v.into_iter().map(Attr::as_str).collect()
    }

    #[test]
    fn table() {
        let base = file();
        type Mutate = Box<dyn Fn(&mut FileState)>;
        let cases: Vec<(&str, Mutate, Vec<&str>)> = vec![
            ("same", Box::new(|_| {}), vec![]),
            (
                "content",
                Box::new(|s| {
                    s.sha256 = Some([2; 32]);
                    s.size = 11;
                    s.mtime_ns = 5;
                    s.ctime_ns = 5;
                }),
                vec!["size", "mtime", "ctime", "sha256"],
            ),
            (
                "chmod",
                Box::new(|s| {
                    s.mode = 0o4755;
                    s.ctime_ns = 9;
                }),
                vec!["mode", "ctime"],
            ),
            (
                "ctime only (touch -d)",
                Box::new(|s| s.ctime_ns = 99),
                vec!["ctime"],
            ),
            (
                "owner",
                Box::new(|s| {
                    s.uid = 1000;
                    s.gid = 1000;
                }),
                vec!["uid", "gid"],
            ),
            ("hard link", Box::new(|s| s.nlink = 2), vec!["nlink"]),
            ("replaced", Box::new(|s| s.inode = 77), vec!["inode"]),
            ("unreadable now", Box::new(|s| s.sha256 = None), vec![]),
            (
                "to symlink",
                Box::new(|s| {
                    s.kind = FileKind::Symlink;
                    s.sha256 = None;
                    s.link_target = Some(b"/x".to_vec());
                }),
                vec!["type", "sha256", "link_target"],
            ),
        ];
        for (name, mutate, want) in cases {
            let mut new = base.clone();
            mutate(&mut new);
            assert_eq!(names(compare(&base, &new)), want, "case {name}");
        }
    }

    #[test]
    fn directories_only_count_owner_and_mode() {
        let mut d = file();
        d.kind = FileKind::Dir;
        d.sha256 = None;
        let mut n = d.clone();
        n.mtime_ns = 100;
        n.size = 4096;
        n.nlink = 5;
        assert!(compare(&d, &n).is_empty());
        n.mode = 0o700;
        assert_eq!(names(compare(&d, &n)), vec!["mode"]);
    }

    #[test]
    fn symlink_target_change() {
        let mut a = file();
        a.kind = FileKind::Symlink;
        a.sha256 = None;
        a.link_target = Some(b"/etc/a".to_vec());
        let mut b = a.clone();
        b.link_target = Some(b"/etc/b".to_vec());
        assert_eq!(names(compare(&a, &b)), vec!["link_target"]);
    }
}

/// A baseline row as the pipeline needs it: the recorded state plus bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub state: FileState,
    /// Sensitive when recorded (by name or by content).
    pub sensitive: bool,
    /// Wall clock when the content was read; a file changed within the same timestamp tick
    /// (mtime/ctime not clearly before this) must be re-hashed (git's "racy clean" problem).
    pub hashed_at_ns: i64,
    /// The package stamp when recorded (opaque to the store; see `explain::Stamp`): which
    /// package version this path came from, so a later change can name the old version.
    pub package: Option<String>,
    /// Read from a row whose tamper-evidence MAC does not match: altered outside fimd. Never
    /// written; the row is re-recorded from disk with a critical event.
    pub tampered: bool,
}
