//! What the package managers know about files: the dpkg and rpm indexes (one file each) and
//! their transaction-lock probes. No knowledge of events: `explain` asks, this answers.
//!
//! Every path here is a real path on this machine: a package's `/usr/bin/x` is
//! `<root>/usr/bin/x` (dpkg `--root` / rpm `--root` semantics), with merged-/usr aliases
//! canonicalised (`<root>/bin/rm` is looked up as `<root>/usr/bin/rm` when `<root>/bin` is a
//! symlink to `usr/bin`).

pub mod dpkg;
mod lock;
pub mod rpm;

use std::cmp::Ordering;
use std::path::Path;

/// Which package manager owns a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Manager {
    Dpkg,
    Rpm,
}

impl Manager {
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Dpkg => "dpkg",
            Manager::Rpm => "rpm",
        }
    }
}

/// A digest algorithm a package database records per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgo {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgo {
    /// The name shown in events (`package.digest`).
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgo::Md5 => "md5",
            DigestAlgo::Sha1 => "sha1",
            DigestAlgo::Sha256 => "sha256",
            DigestAlgo::Sha384 => "sha384",
            DigestAlgo::Sha512 => "sha512",
        }
    }
}

/// One recorded file digest (raw bytes, not hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileDigest {
    pub algo: DigestAlgo,
    pub bytes: Vec<u8>,
}

/// The package that owns one path, as its database records it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub manager: Manager,
    /// Package name (`openssh-server`).
    pub package: String,
    /// `amd64`, `all`, `x86_64`, `noarch`; empty when the database records none.
    pub arch: String,
    /// The installed version as the manager prints it: dpkg `[epoch:]upstream[-revision]`,
    /// rpm `[epoch:]version-release`.
    pub version: String,
    /// The recorded digest of the file's content; `None` when the database records none for
    /// this path (directories, symlinks, rpm `%ghost`, a conffile not yet configured).
    pub digest: Option<FileDigest>,
    /// A configuration file (dpkg `Conffiles:`, rpm `%config`): an admin may edit it.
    pub conffile: bool,
}

/// One package database (dpkg or rpm), loaded into memory.
pub trait PackageDb: Send + Sync {
    fn manager(&self) -> Manager;

    /// The package owning this real path, if any. A diverted path resolves to the package
    /// whose file is really there (dpkg diversions).
    fn owner(&self, path: &Path) -> Option<Owner>;

    /// True while a package transaction runs (the manager's lock is held by another process,
    /// tested with `F_GETLK`, never taken).
    fn transaction_running(&self) -> bool;

    /// The manager's own version ordering (dpkg's or rpm's `rpmvercmp`, epochs included).
    fn compare_versions(&self, a: &str, b: &str) -> Ordering;

    /// `path` (a real path) is part of this database's own files (dpkg: anything under the
    /// admin dir; rpm: the rpmdb directory).
    fn is_database_file(&self, path: &Path) -> bool;

    /// The database file `path` holds recorded file digests (dpkg `info/*.md5sums`, the rpmdb).
    fn is_digest_file(&self, path: &Path) -> bool;

    /// A stamp of the database state a database file describes, to tell a package update
    /// from a hand edit of that file: dpkg `info/<pkg>.*` -> that package's installed version;
    /// rpm's rpmdb -> a fingerprint of the installed (name, epoch, version, release, arch) set.
    /// `None` when `path` is not a database file or its package is not installed.
    fn database_stamp(&self, path: &Path) -> Option<String>;

    /// A name the manager uses for a moment while it unpacks (dpkg `.dpkg-new`, `.dpkg-tmp`,
    /// `.dpkg-dist`, `.dpkg-old`; rpm `<path>;<8 hex>`).
    fn is_temporary(&self, path: &Path) -> bool;

    /// Is `version` of `package` offered by a configured repository? `None` when unknown
    /// (no repository index: dpkg without `<root>/var/lib/apt/lists/*_Packages`; rpm always).
    fn in_repository(&self, package: &str, arch: &str, version: &str) -> Option<bool>;

    /// A file of this database changed on disk (`path` real): reload what it affects (one
    /// package for its `info/` files, everything for `status` or the rpmdb). Returns true
    /// when something was reloaded. An error leaves the previous index in force.
    fn refresh(&mut self, changed: &Path) -> std::io::Result<bool> {
        self.refresh_all(&[changed.to_path_buf()])
    }

    /// [`refresh`](PackageDb::refresh) for every file that changed since the last call at
    /// once: the database is read once for all of them (dpkg rewrites `status` and many
    /// `info/` files in one run). An error leaves the previous index in force.
    fn refresh_all(&mut self, changed: &[std::path::PathBuf]) -> std::io::Result<bool>;

    /// Number of paths indexed (for the startup log and benchmarks).
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
