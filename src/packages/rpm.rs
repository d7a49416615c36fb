//! The rpm index: every file the sqlite rpmdb records, with its package, version, digest and
//! `%config` flag, loaded into memory from the headers in `rpmdb.sqlite`.
//!
//! The rpmdb (rpm's `lib/backend/sqlite.cc`) is one table `Packages(hnum INTEGER PRIMARY KEY
//! AUTOINCREMENT, blob BLOB NOT NULL)` holding each installed package's header, plus index
//! tables rpm rebuilds from the headers (not read here). rpm keeps it in WAL mode with a
//! persistent `-wal` and `-shm` (`SQLITE_FCNTL_PERSIST_WAL`, so unprivileged readers work) and
//! truncates the WAL with a checkpoint when it closes the database.
//!
//! The header blob is parsed here ([`header`]): rpm exposes no parser for database blobs
//! (the `rpm` crate reads `.rpm` files only), and the few tags needed take ~200 lines.
//!
//! What rpm does during an upgrade (strace of rpm 4.18, `rpm -U`): it takes the transaction
//! lock (`<dbpath>/.rpm.lock`, an fcntl write lock on the whole file), writes each new file to
//! `<path>;<8 hex of the transaction id>` and renames it over `<path>`, and only then adds
//! the new header through the WAL (`rpmdbAdd`, one committed sqlite savepoint), then erases
//! the old header (`rpmdbRemove`, another); the checkpoint into `rpmdb.sqlite` comes when
//! rpm closes the database, then the lock is released. So a changed file is in place before
//! its digest is recorded, as with dpkg, and for a moment both headers are installed: a path
//! owned twice goes to the later-installed header (the new one).

use super::{DigestAlgo, FileDigest, Manager, Owner, PackageDb};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The database file inside the rpmdb directory.
const DB_FILE: &str = "rpmdb.sqlite";
/// rpm's transaction lock inside the rpmdb directory (`%_rpmlock_path  %{_dbpath}/.rpm.lock`
/// in rpm's `macros.in`, 4.14 to today; `lib/rpmts.cc` falls back to
/// `/var/lib/rpm/.rpm.lock` when the macro is unset).
const LOCK_FILE: &str = ".rpm.lock";
/// Files of the rpmdb directory whose change says nothing about the installed set: the
/// sqlite shared-memory index (every reader, this index included, writes it) and the locks.
const NOT_CONTENT: &[&str] = &["rpmdb.sqlite-shm", ".rpm.lock", ".keyring.lock"];
/// Length of the database stamp (hex characters of a sha256).
const STAMP_LEN: usize = 16;

/// Everything the rpmdb records about installed files.
#[derive(Debug)]
pub struct RpmIndex {
    /// The rpmdb directory (holding `rpmdb.sqlite`), canonical when it could be resolved.
    db_dir: PathBuf,
    /// The file system the rpmdb describes (canonical when it could be resolved).
    root: PathBuf,
    /// Top-level merged-/usr aliases: `<root>/bin` -> `<root>/usr/bin`.
    aliases: Vec<(PathBuf, PathBuf)>,
    /// Transaction locks to probe (the rpmdb's own, and rpm's compiled-in fallback).
    locks: Vec<PathBuf>,
    packages: Vec<Package>,
    files: FileTable,
    /// Fingerprint of the installed set (see [`RpmIndex::stamp`]).
    stamp: String,
}

/// One installed package (one header).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    name: String,
    arch: String,
    /// `[epoch:]version-release`.
    version: String,
    /// `name-epoch:version-release.arch` (epoch 0 when the header has none), for the stamp.
    nevra: String,
    /// The algorithm of this package's file digests; `None` when rpm's number is unknown
    /// (then no file of it has a digest here).
    algo: Option<DigestAlgo>,
}

/// Every path of every package, compact: the paths (as the package names them, `/usr/bin/x`,
/// merged-/usr aliases resolved) in one byte arena, the raw digests in another, and small
/// fixed-size entries sorted by path for a binary search. About 100 bytes a path where a
/// `HashMap<PathBuf, _>` took 230 (300k paths: see benches/README.md, "rpm index").
#[derive(Debug, Default)]
struct FileTable {
    names: Vec<u8>,
    digests: Vec<u8>,
    /// Sorted by name, one per name once [`FileTable::finish`] ran.
    entries: Vec<FileEntry>,
}

/// One path of one package.
#[derive(Debug, Clone, Copy)]
struct FileEntry {
    name_start: u32,
    name_len: u32,
    digest_start: u32,
    /// Index into `packages`.
    package: u32,
    /// 0: no digest recorded.
    digest_len: u8,
    conffile: bool,
}

/// The index would not fit its 32-bit offsets (over 4 GiB of paths or digests).
#[derive(Debug)]
struct TooLarge;

impl FileTable {
    fn name_of<'n>(names: &'n [u8], e: &FileEntry) -> &'n [u8] {
        let start = e.name_start as usize;
        names
            .get(start..start + e.name_len as usize)
            .unwrap_or_default()
    }

    fn digest(&self, e: &FileEntry) -> Option<&[u8]> {
        if e.digest_len == 0 {
            return None;
        }
        let start = e.digest_start as usize;
        self.digests.get(start..start + usize::from(e.digest_len))
    }

    fn push(
        &mut self,
        name: &[u8],
        digest: Option<&[u8]>,
        package: u32,
        conffile: bool,
    ) -> Result<(), TooLarge> {
        let name_start = u32::try_from(self.names.len()).map_err(|_| TooLarge)?;
        let name_len = u32::try_from(name.len()).map_err(|_| TooLarge)?;
        let digest_start = u32::try_from(self.digests.len()).map_err(|_| TooLarge)?;
        let digest = digest.unwrap_or_default();
        let digest_len = u8::try_from(digest.len()).map_err(|_| TooLarge)?;
        name_start.checked_add(name_len).ok_or(TooLarge)?;
        digest_start
            .checked_add(u32::from(digest_len))
            .ok_or(TooLarge)?;
        self.names.extend_from_slice(name);
        self.digests.extend_from_slice(digest);
        self.entries.push(FileEntry {
            name_start,
            name_len,
            digest_start,
            package,
            digest_len,
            conffile,
        });
        Ok(())
    }

    /// Sort, and keep one entry per path. Several packages can own a path (directories,
    /// multilib): one with a digest wins over one without (a `%ghost`, a directory);
    /// otherwise the package installed last (the new one in the middle of an upgrade).
    fn finish(&mut self) {
        let names = &self.names;
        // Packages are numbered in installation order: a stable order within one path.
        self.entries.sort_unstable_by(|a, b| {
            Self::name_of(names, a)
                .cmp(Self::name_of(names, b))
                .then(a.package.cmp(&b.package))
        });
        self.entries.dedup_by(|later, kept| {
            if Self::name_of(names, later) != Self::name_of(names, kept) {
                return false;
            }
            if !(kept.digest_len > 0 && later.digest_len == 0) {
                *kept = *later;
            }
            true
        });
        self.entries.shrink_to_fit();
        self.names.shrink_to_fit();
        self.digests.shrink_to_fit();
    }

    /// Reserve room for about as much as `other` holds.
    fn reserve_like(&mut self, other: &FileTable) {
        let more = |n: usize| n + n / 8;
        self.names.reserve(more(other.names.len()));
        self.digests.reserve(more(other.digests.len()));
        self.entries.reserve(more(other.entries.len()));
    }

    fn find(&self, name: &[u8]) -> Option<&FileEntry> {
        let i = self
            .entries
            .binary_search_by(|e| Self::name_of(&self.names, e).cmp(name))
            .ok()?;
        self.entries.get(i)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

impl RpmIndex {
    /// Load from the rpmdb directory `db_dir` (holding `rpmdb.sqlite`) for the file system at `root`.
    ///
    /// Opens the database read-only (never creating it) and reads every header; a header that
    /// cannot be parsed is skipped with a warning, never fatal. Blocking: call it from a
    /// blocking thread, never from inside an async task (it runs its own small runtime).
    pub fn load(db_dir: &Path, root: &Path) -> std::io::Result<RpmIndex> {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let db_dir = std::fs::canonicalize(db_dir).unwrap_or_else(|_| db_dir.to_path_buf());
        let aliases = usr_aliases(&root);
        let mut locks = vec![db_dir.join(LOCK_FILE)];
        let fallback = root.join("var/lib/rpm").join(LOCK_FILE);
        if !locks.contains(&fallback) {
            locks.push(fallback);
        }
        let mut index = RpmIndex {
            db_dir,
            root,
            aliases,
            locks,
            packages: Vec::new(),
            files: FileTable::default(),
            stamp: String::new(),
        };
        index.reload()?;
        Ok(index)
    }

    /// Number of installed packages (headers loaded).
    pub fn package_count(&self) -> usize {
        self.packages.len()
    }

    /// The rpmdb directory this index reads.
    pub fn db_dir(&self) -> &Path {
        &self.db_dir
    }

    /// The fingerprint of the installed set: the first 16 hex characters of the sha256 of the
    /// sorted `name-epoch:version-release.arch` lines (epoch 0 when a package has none).
    /// Changes whenever a package is installed, upgraded, downgraded or erased.
    pub fn stamp(&self) -> &str {
        &self.stamp
    }

    /// Read the database again and replace the whole index; on error nothing changes.
    fn reload(&mut self) -> std::io::Result<()> {
        let db_file = self.db_dir.join(DB_FILE);
        let mut builder = Builder::new(&self.root, &self.aliases);
        // Sized like the index it replaces (plus an eighth): no doubling reallocations of
        // arenas of several MB, which left glibc's heap fragmented refresh after refresh.
        builder.files.reserve_like(&self.files);
        read_headers(&db_file, |hnum, blob| builder.add(hnum, blob))?;
        if builder.too_large {
            return Err(std::io::Error::other(format!(
                "rpmdb {}: more than 4 GiB of paths or digests; not indexed",
                db_file.display()
            )));
        }
        if builder.skipped > 0 {
            tracing::warn!(
                db = %db_file.display(),
                skipped = builder.skipped,
                "rpmdb: some package headers could not be read; their files are not attributed"
            );
        }
        let (packages, files) = builder.finish();
        self.stamp = stamp_of(&packages);
        self.packages = packages;
        self.files = files;
        // The old index and the blobs read (on sqlx's worker thread, so in another glibc
        // arena) are freed now; without giving them back, a daemon refreshing on each rpm
        // transaction crept up (100k paths, 20 refreshes: RSS 23 MiB instead of 17-19).
        crate::memory::release_free_memory();
        Ok(())
    }

    /// `path` with a top-level merged-/usr alias replaced (`<root>/bin/x` -> `<root>/usr/bin/x`).
    fn canonical(&self, path: &Path) -> Option<PathBuf> {
        canonical_alias(&self.aliases, path)
    }
}

impl PackageDb for RpmIndex {
    fn manager(&self) -> Manager {
        Manager::Rpm
    }

    fn owner(&self, path: &Path) -> Option<Owner> {
        let real = self.canonical(path);
        let rel = real
            .as_deref()
            .unwrap_or(path)
            .strip_prefix(&self.root)
            .ok()?;
        let mut key = Vec::with_capacity(rel.as_os_str().len() + 1);
        key.push(b'/');
        key.extend_from_slice(rel.as_os_str().as_bytes());
        let entry = self.files.find(&key)?;
        let package = self.packages.get(entry.package as usize)?;
        let digest = match (package.algo, self.files.digest(entry)) {
            (Some(algo), Some(bytes)) => Some(FileDigest {
                algo,
                bytes: bytes.to_vec(),
            }),
            _ => None,
        };
        Some(Owner {
            manager: Manager::Rpm,
            package: package.name.clone(),
            arch: package.arch.clone(),
            version: package.version.clone(),
            digest,
            conffile: entry.conffile,
        })
    }

    /// rpm's transaction lock is an fcntl write lock on the whole of `<dbpath>/.rpm.lock`
    /// (`lib/rpmlock.cc`), taken for installs, upgrades, erasures and `--rebuilddb`
    /// (`rpm --verifydb` takes a read lock, which is not a transaction). Probed with
    /// [`super::lock::write_lock_held`], never taken. Tests hold the lock from another
    /// process (with plain `F_GETLK` a process never sees its own record locks).
    fn transaction_running(&self) -> bool {
        self.locks
            .iter()
            .any(|lock| super::lock::write_lock_held(lock))
    }

    fn compare_versions(&self, a: &str, b: &str) -> Ordering {
        compare_evr(a, b)
    }

    fn is_database_file(&self, path: &Path) -> bool {
        path.starts_with(&self.db_dir)
    }

    /// `rpmdb.sqlite` and its `-wal` (the headers, with the file digests, live in both).
    fn is_digest_file(&self, path: &Path) -> bool {
        path.parent() == Some(self.db_dir.as_path())
            && path
                .file_name()
                .is_some_and(|n| n == DB_FILE || n == "rpmdb.sqlite-wal")
    }

    fn database_stamp(&self, path: &Path) -> Option<String> {
        self.is_database_file(path).then(|| self.stamp.clone())
    }

    /// `<name>;<8 lowercase hex>` (rpm's `lib/fsm.cc`: `";%08x"` of the transaction id).
    /// `.rpmnew` / `.rpmsave` / `.rpmorig` are real files an admin must see: not temporary.
    fn is_temporary(&self, path: &Path) -> bool {
        path.file_name().is_some_and(is_rpm_temp_name)
    }

    fn in_repository(&self, _package: &str, _arch: &str, _version: &str) -> Option<bool> {
        None
    }

    /// Any change of the rpmdb directory's content reloads everything (a header is one row;
    /// which one changed cannot be told from the file). The `-shm` file and the lock files
    /// are left out: sqlite readers (this index too) write the `-shm`, and reloading on it
    /// would feed itself.
    fn refresh_all(&mut self, changed: &[PathBuf]) -> std::io::Result<bool> {
        let content = |c: &PathBuf| {
            self.is_database_file(c)
                && !(c.parent() == Some(self.db_dir.as_path())
                    && c.file_name()
                        .is_some_and(|n| NOT_CONTENT.iter().any(|x| n == OsStr::new(x))))
        };
        if !changed.iter().any(content) {
            return Ok(false);
        }
        self.reload()?;
        Ok(true)
    }

    fn len(&self) -> usize {
        self.files.len()
    }
}

/// `rpm_db = "auto"`: the sqlite rpmdb under `<root>/usr/lib/sysimage/rpm` or `<root>/var/lib/rpm`.
pub fn find_db(root: &Path) -> Option<PathBuf> {
    ["usr/lib/sysimage/rpm", "var/lib/rpm"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.join("rpmdb.sqlite").is_file())
}

/// Is `name` rpm's temporary name for a file being unpacked (`<name>;<8 lowercase hex>`)?
fn is_rpm_temp_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.len() > 9
        && b[b.len() - 9] == b';'
        && b[b.len() - 8..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// The top-level symlinks of `root` that point into `usr` (merged /usr: `bin -> usr/bin`),
/// as (`<root>/bin`, `<root>/usr/bin`).
fn usr_aliases(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut aliases = Vec::new();
    let Ok(dir) = std::fs::read_dir(root) else {
        return aliases;
    };
    for entry in dir.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_symlink() {
            continue;
        }
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        // `usr/bin`, `/usr/bin`, `./usr/bin`; nothing with `..` (it could leave the root).
        let rel: PathBuf = target
            .components()
            .filter(|c| {
                !matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::CurDir
                )
            })
            .collect();
        let mut parts = rel.components();
        let first_is_usr =
            matches!(parts.next(), Some(std::path::Component::Normal(n)) if n == "usr");
        let rest_ok = parts.clone().count() > 0
            && parts.all(|c| matches!(c, std::path::Component::Normal(_)));
        if first_is_usr && rest_ok {
            aliases.push((entry.path(), root.join(rel)));
        }
    }
    aliases.sort();
    aliases
}

/// `path` with its alias prefix replaced, or `None` when it is under no alias.
fn canonical_alias(aliases: &[(PathBuf, PathBuf)], path: &Path) -> Option<PathBuf> {
    aliases.iter().find_map(|(alias, real)| {
        path.strip_prefix(alias).ok().map(|rest| {
            if rest.as_os_str().is_empty() {
                real.clone()
            } else {
                real.join(rest)
            }
        })
    })
}

/// Read every `(hnum, blob)` of `Packages`, in `hnum` order, read-only. The read runs on a
/// thread of its own with its own small runtime, so this works from any thread: a plain one,
/// a runtime's blocking pool, or an async task (where starting a runtime would panic).
fn read_headers(db_file: &Path, each: impl FnMut(i64, &[u8]) + Send) -> std::io::Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| read_headers_here(db_file, each))
            .join()
            .unwrap_or_else(|_| {
                Err(std::io::Error::other(format!(
                    "rpmdb {}: the reader thread failed",
                    db_file.display()
                )))
            })
    })
}

fn read_headers_here(db_file: &Path, mut each: impl FnMut(i64, &[u8])) -> std::io::Result<()> {
    use futures_util::TryStreamExt;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection, Row};

    let context = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("rpmdb {}: {what}: {e}", db_file.display()))
    };
    if !db_file.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("rpmdb {}: no such database file", db_file.display()),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| context("cannot start a runtime to read it", &e))?;
    runtime.block_on(async {
        // Read-only, never created, never written. rpm keeps the database in WAL mode and
        // leaves the `-wal` and `-shm` in place; a reader sees the last committed transaction
        // while rpm writes (sqlite recreates an absent `-wal`/`-shm`, empty, even for a
        // read-only connection when the directory is writable). rpm can hold a write
        // transaction for a while: wait as long as rpm itself does (10 s).
        let options = SqliteConnectOptions::new()
            .filename(db_file)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(10))
            .disable_statement_logging();
        let mut conn = options
            .connect()
            .await
            .map_err(|e| context("cannot open it read-only", &e))?;
        {
            let mut rows = sqlx::query("SELECT hnum, blob FROM Packages ORDER BY hnum")
                .persistent(false)
                .fetch(&mut conn);
            while let Some(row) = rows
                .try_next()
                .await
                .map_err(|e| context("cannot read Packages", &e))?
            {
                let hnum: i64 = row
                    .try_get(0)
                    .map_err(|e| context("bad hnum in Packages", &e))?;
                let blob: &[u8] = row
                    .try_get(1)
                    .map_err(|e| context("bad blob in Packages", &e))?;
                each(hnum, blob);
            }
        }
        // Closing cleanly matters less than the result: the connection is read-only.
        let _ = conn.close().await;
        Ok(())
    })
}

/// Collects headers into the index.
struct Builder {
    /// Merged-/usr aliases as package paths: (`/bin`, `/usr/bin`).
    aliases: Vec<(Vec<u8>, Vec<u8>)>,
    packages: Vec<Package>,
    files: FileTable,
    skipped: usize,
    too_large: bool,
}

impl Builder {
    fn new(root: &Path, aliases: &[(PathBuf, PathBuf)]) -> Builder {
        let as_package_path = |p: &Path| {
            p.strip_prefix(root).ok().map(|rel| {
                let mut v = vec![b'/'];
                v.extend_from_slice(rel.as_os_str().as_bytes());
                v
            })
        };
        Builder {
            aliases: aliases
                .iter()
                .filter_map(|(from, to)| Some((as_package_path(from)?, as_package_path(to)?)))
                .collect(),
            packages: Vec::new(),
            files: FileTable::default(),
            skipped: 0,
            too_large: false,
        }
    }

    /// Add one header. Headers come in `hnum` order, i.e. the order rpm installed them.
    fn add(&mut self, hnum: i64, blob: &[u8]) {
        if self.too_large {
            return;
        }
        let header = match header::PackageHeader::parse(blob) {
            Ok(h) => h,
            Err(e) => {
                self.skipped += 1;
                tracing::warn!(hnum, error = %e, "rpmdb: skipping a package header that cannot be parsed");
                return;
            }
        };
        let Ok(package_id) = u32::try_from(self.packages.len()) else {
            self.too_large = true;
            return;
        };
        let algo = match header.digest_algo {
            None | Some(1) => Some(DigestAlgo::Md5),
            Some(2) => Some(DigestAlgo::Sha1),
            Some(8) => Some(DigestAlgo::Sha256),
            Some(9) => Some(DigestAlgo::Sha384),
            Some(10) => Some(DigestAlgo::Sha512),
            Some(other) => {
                tracing::warn!(
                    package = %String::from_utf8_lossy(header.name),
                    algo = other,
                    "rpmdb: unknown file digest algorithm; this package's files are not verifiable"
                );
                None
            }
        };
        let name = String::from_utf8_lossy(header.name).into_owned();
        let arch = String::from_utf8_lossy(header.arch).into_owned();
        let version = String::from_utf8_lossy(header.version);
        let release = String::from_utf8_lossy(header.release);
        let evr = match header.epoch {
            Some(e) => format!("{e}:{version}-{release}"),
            None => format!("{version}-{release}"),
        };
        let nevra = format!(
            "{name}-{}:{version}-{release}.{arch}",
            header.epoch.unwrap_or(0)
        );
        self.packages.push(Package {
            name,
            arch,
            version: evr,
            nevra,
            algo,
        });

        let mut bad_digests = 0usize;
        let mut path = Vec::with_capacity(128);
        let mut digest = [0u8; 64];
        for file in header.files() {
            if !package_path(file.dir, file.base, &mut path) {
                continue;
            }
            let path = resolve_alias(&self.aliases, &path);
            let raw = match (algo, file.digest_hex) {
                (Some(algo), Some(hex_digest)) if !hex_digest.is_empty() => {
                    match decode_digest(algo, hex_digest, &mut digest) {
                        Some(raw) => Some(raw),
                        None => {
                            bad_digests += 1;
                            None
                        }
                    }
                }
                _ => None,
            };
            let conffile = file.flags & header::RPMFILE_CONFIG != 0;
            if self.files.push(&path, raw, package_id, conffile).is_err() {
                self.too_large = true;
                return;
            }
        }
        if bad_digests > 0 {
            tracing::warn!(
                package = %String::from_utf8_lossy(header.name),
                files = bad_digests,
                "rpmdb: malformed file digests; those files are not verifiable"
            );
        }
    }

    fn finish(mut self) -> (Vec<Package>, FileTable) {
        self.files.finish();
        (self.packages, self.files)
    }
}

/// `dir` + `base` as an absolute package path without a trailing `/` (`/` itself stays) into
/// `out`; false when both are empty.
fn package_path(dir: &[u8], base: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let absolute = dir.starts_with(b"/") || (dir.is_empty() && base.starts_with(b"/"));
    if !absolute {
        out.push(b'/');
    }
    out.extend_from_slice(dir);
    if !dir.is_empty() && !dir.ends_with(b"/") && !base.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(base);
    while out.len() > 1 && out.ends_with(b"/") {
        out.pop();
    }
    !(dir.is_empty() && base.is_empty())
}

/// `path` (a package path) with its merged-/usr alias prefix replaced.
fn resolve_alias<'p>(aliases: &[(Vec<u8>, Vec<u8>)], path: &'p [u8]) -> std::borrow::Cow<'p, [u8]> {
    for (from, to) in aliases {
        if let Some(rest) = path.strip_prefix(from.as_slice()) {
            if rest.is_empty() || rest.starts_with(b"/") {
                let mut out = Vec::with_capacity(to.len() + rest.len());
                out.extend_from_slice(to);
                out.extend_from_slice(rest);
                return std::borrow::Cow::Owned(out);
            }
        }
    }
    std::borrow::Cow::Borrowed(path)
}

/// A hex digest of the right length for `algo`, decoded into `buf`.
fn decode_digest<'b>(
    algo: DigestAlgo,
    hex_digest: &[u8],
    buf: &'b mut [u8; 64],
) -> Option<&'b [u8]> {
    let want = match algo {
        DigestAlgo::Md5 => 16,
        DigestAlgo::Sha1 => 20,
        DigestAlgo::Sha256 => 32,
        DigestAlgo::Sha384 => 48,
        DigestAlgo::Sha512 => 64,
    };
    let out = buf.get_mut(..want)?;
    hex::decode_to_slice(hex_digest, out).ok()?;
    Some(out)
}

/// The stamp of an installed set (see [`RpmIndex::stamp`]).
fn stamp_of(packages: &[Package]) -> String {
    let mut lines: Vec<&str> = packages.iter().map(|p| p.nevra.as_str()).collect();
    lines.sort_unstable();
    let mut hasher = Sha256::new();
    for line in lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    let mut stamp = hex::encode(hasher.finalize());
    stamp.truncate(STAMP_LEN);
    stamp
}

/// rpm's ordering of `[epoch:]version[-release]` strings (`rpmverCmp`): the epochs (absent =
/// 0), then the versions with [`rpmvercmp`], then the releases (one beats none).
pub fn compare_evr(a: &str, b: &str) -> Ordering {
    let (ea, va, ra) = split_evr(a);
    let (eb, vb, rb) = split_evr(b);
    rpmvercmp(ea.unwrap_or("0"), eb.unwrap_or("0"))
        .then_with(|| rpmvercmp(va, vb))
        .then_with(|| match (ra, rb) {
            (Some(ra), Some(rb)) => rpmvercmp(ra, rb),
            // rpm's `rpmverCmp` (rpmio/rpmver.cc): a release beats none.
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => Ordering::Equal,
        })
}

/// `[epoch:]version[-release]` -> (epoch, version, release), as rpm's `rpmverParse` splits it:
/// the epoch is a run of digits before the first `:`, the release follows the last `-`.
fn split_evr(evr: &str) -> (Option<&str>, &str, Option<&str>) {
    let digits = evr.bytes().take_while(u8::is_ascii_digit).count();
    let (epoch, rest) = if evr.as_bytes().get(digits) == Some(&b':') {
        (Some(&evr[..digits]), &evr[digits + 1..])
    } else {
        (None, evr)
    };
    let epoch = epoch.map(|e| if e.is_empty() { "0" } else { e });
    match rest.rfind('-') {
        Some(dash) => (epoch, &rest[..dash], Some(&rest[dash + 1..])),
        None => (epoch, rest, None),
    }
}

/// rpm's `rpmvercmp` (`rpmio/rpmvercmp.cc`): compares alternating numeric and alphabetic
/// segments; separators other than `~` and `^` only split segments; a numeric segment is
/// newer than an alphabetic one; `~` sorts before anything (even the end: `1.0~rc1` <
/// `1.0`); `^` sorts after the end but before anything else (`1.0` < `1.0^git1` < `1.0.1`).
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca.is_none() && cb.is_none() {
            // Same segments; only separators differed.
            return Ordering::Equal;
        }
        // `~` sorts before everything, the end of the string included.
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // `^` sorts after the end of the string but before anything else.
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(first), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = first.is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let end_a = i + a[i..].iter().take_while(|c| class(c)).count();
        let end_b = j + b[j..].iter().take_while(|c| class(c)).count();
        let (mut seg_a, mut seg_b) = (&a[i..end_a], &b[j..end_b]);
        if seg_b.is_empty() {
            // Different kinds: a numeric segment is newer than an alphabetic one.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        if numeric {
            while let [b'0', rest @ ..] = seg_a {
                seg_a = rest;
            }
            while let [b'0', rest @ ..] = seg_b {
                seg_b = rest;
            }
            match seg_a.len().cmp(&seg_b.len()) {
                Ordering::Equal => {}
                longer => return longer,
            }
        }
        match seg_a.cmp(seg_b) {
            Ordering::Equal => {}
            other => return other,
        }
        i = end_a;
        j = end_b;
    }
    // One string ran out: whichever has characters left wins.
    if i >= a.len() {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

/// The rpm header blob as the rpmdb stores it (rpm `lib/header.cc`), reduced to the tags the
/// index needs. Every count and offset is checked against the blob: hostile input gives an
/// error, never a panic or a huge allocation.
///
/// Layout (big-endian): `il` (u32, number of index entries), `dl` (u32, bytes of data), `il`
/// entries of 16 bytes (`tag`, `type`, `offset` into the data, `count`), then `dl` bytes of
/// data. The db blob has no magic. The first entry is usually the immutable region
/// (tag 63); entries after the region ("dribbles") replace region entries with the same tag,
/// so the last entry of a tag wins.
pub mod header {
    use std::fmt;

    pub const TAG_NAME: u32 = 1000;
    pub const TAG_VERSION: u32 = 1001;
    pub const TAG_RELEASE: u32 = 1002;
    pub const TAG_EPOCH: u32 = 1003;
    pub const TAG_OLDFILENAMES: u32 = 1027;
    pub const TAG_FILEDIGESTS: u32 = 1035;
    pub const TAG_FILEFLAGS: u32 = 1037;
    pub const TAG_ARCH: u32 = 1022;
    pub const TAG_DIRINDEXES: u32 = 1116;
    pub const TAG_BASENAMES: u32 = 1117;
    pub const TAG_DIRNAMES: u32 = 1118;
    pub const TAG_FILEDIGESTALGO: u32 = 5011;

    pub const TYPE_INT32: u32 = 4;
    pub const TYPE_STRING: u32 = 6;
    pub const TYPE_BIN: u32 = 7;
    pub const TYPE_STRING_ARRAY: u32 = 8;
    pub const TYPE_I18NSTRING: u32 = 9;

    /// `%config` (rpmfileAttrs `RPMFILE_CONFIG`).
    pub const RPMFILE_CONFIG: u32 = 1 << 0;

    /// rpm's own limits (`HEADER_TAGS_MAX`, `HEADER_DATA_MAX`).
    const MAX_ENTRIES: u32 = 0x0000_ffff;
    const MAX_DATA: u32 = 0x0fff_ffff;
    const ENTRY_SIZE: usize = 16;

    /// Why a header blob was rejected.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum HeaderError {
        /// Shorter than its own counts say.
        Truncated { need: usize, have: usize },
        /// `il` or `dl` beyond rpm's limits, or `il` zero.
        BadCounts { il: u32, dl: u32 },
        /// An entry points outside the data, or its type is not what the tag needs.
        BadEntry { tag: u32, why: &'static str },
        /// The file lists disagree (lengths, directory indexes).
        BadFileList(&'static str),
        /// No `NAME`.
        NoName,
    }

    impl fmt::Display for HeaderError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                HeaderError::Truncated { need, have } => {
                    write!(f, "header truncated: needs {need} bytes, has {have}")
                }
                HeaderError::BadCounts { il, dl } => {
                    write!(
                        f,
                        "header counts out of range: {il} entries, {dl} data bytes"
                    )
                }
                HeaderError::BadEntry { tag, why } => write!(f, "header tag {tag}: {why}"),
                HeaderError::BadFileList(why) => write!(f, "header file list: {why}"),
                HeaderError::NoName => write!(f, "header has no package name"),
            }
        }
    }

    impl std::error::Error for HeaderError {}

    #[derive(Debug, Clone, Copy)]
    struct Entry {
        tag: u32,
        kind: u32,
        offset: u32,
        count: u32,
    }

    /// A parsed header: the index entries and the data they point into.
    #[derive(Debug)]
    pub struct Header<'a> {
        entries: Vec<Entry>,
        data: &'a [u8],
    }

    fn be32(b: &[u8], at: usize) -> Option<u32> {
        let bytes = b.get(at..at.checked_add(4)?)?;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    impl<'a> Header<'a> {
        /// Check the counts and the index; the data is checked when a tag is read.
        pub fn parse(blob: &'a [u8]) -> Result<Header<'a>, HeaderError> {
            let (Some(il), Some(dl)) = (be32(blob, 0), be32(blob, 4)) else {
                return Err(HeaderError::Truncated {
                    need: 8,
                    have: blob.len(),
                });
            };
            if il == 0 || il > MAX_ENTRIES || dl > MAX_DATA {
                return Err(HeaderError::BadCounts { il, dl });
            }
            // Both fit in usize easily: il <= 0xffff, dl <= 0x0fffffff.
            let index_end = 8 + il as usize * ENTRY_SIZE;
            let data_end = index_end + dl as usize;
            if blob.len() < data_end {
                return Err(HeaderError::Truncated {
                    need: data_end,
                    have: blob.len(),
                });
            }
            let mut entries = Vec::with_capacity(il as usize);
            for n in 0..il as usize {
                let at = 8 + n * ENTRY_SIZE;
                let field = |k: usize| {
                    be32(blob, at + 4 * k).ok_or(HeaderError::Truncated {
                        need: at + ENTRY_SIZE,
                        have: blob.len(),
                    })
                };
                entries.push(Entry {
                    tag: field(0)?,
                    kind: field(1)?,
                    offset: field(2)?,
                    count: field(3)?,
                });
            }
            Ok(Header {
                entries,
                data: &blob[index_end..data_end],
            })
        }

        /// The last entry with `tag` (dribbles replace region entries).
        fn entry(&self, tag: u32) -> Option<Entry> {
            self.entries.iter().rev().find(|e| e.tag == tag).copied()
        }

        /// Data from the entry's offset to the end of the data store.
        fn tail(&self, e: &Entry) -> Result<&'a [u8], HeaderError> {
            self.data
                .get(e.offset as usize..)
                .ok_or(HeaderError::BadEntry {
                    tag: e.tag,
                    why: "offset beyond the data",
                })
        }

        /// `count` NUL-terminated strings starting at the entry's offset.
        fn strings(&self, e: &Entry) -> Result<Vec<&'a [u8]>, HeaderError> {
            let mut rest = self.tail(e)?;
            // Every string takes at least one byte: a count beyond the data is a lie, and
            // must not size an allocation.
            if e.count as usize > rest.len() {
                return Err(HeaderError::BadEntry {
                    tag: e.tag,
                    why: "more strings than data",
                });
            }
            let mut out = Vec::with_capacity(e.count as usize);
            for _ in 0..e.count {
                let Some(nul) = memchr::memchr(0, rest) else {
                    return Err(HeaderError::BadEntry {
                        tag: e.tag,
                        why: "string not terminated within the data",
                    });
                };
                out.push(&rest[..nul]);
                rest = &rest[nul + 1..];
            }
            Ok(out)
        }

        /// A single string (`STRING`, or the first of an `I18NSTRING` / `STRING_ARRAY`).
        pub fn string(&self, tag: u32) -> Result<Option<&'a [u8]>, HeaderError> {
            let Some(e) = self.entry(tag) else {
                return Ok(None);
            };
            if !matches!(e.kind, TYPE_STRING | TYPE_I18NSTRING | TYPE_STRING_ARRAY) {
                return Err(HeaderError::BadEntry {
                    tag,
                    why: "not a string",
                });
            }
            if e.count == 0 {
                return Err(HeaderError::BadEntry {
                    tag,
                    why: "empty string entry",
                });
            }
            let one = Entry { count: 1, ..e };
            Ok(self.strings(&one)?.into_iter().next())
        }

        /// A `STRING_ARRAY`.
        pub fn string_array(&self, tag: u32) -> Result<Option<Vec<&'a [u8]>>, HeaderError> {
            let Some(e) = self.entry(tag) else {
                return Ok(None);
            };
            if e.kind != TYPE_STRING_ARRAY {
                return Err(HeaderError::BadEntry {
                    tag,
                    why: "not a string array",
                });
            }
            self.strings(&e).map(Some)
        }

        /// An `INT32` array.
        pub fn int32_array(&self, tag: u32) -> Result<Option<Vec<u32>>, HeaderError> {
            let Some(e) = self.entry(tag) else {
                return Ok(None);
            };
            if e.kind != TYPE_INT32 {
                return Err(HeaderError::BadEntry {
                    tag,
                    why: "not an int32 array",
                });
            }
            if !e.offset.is_multiple_of(4) {
                return Err(HeaderError::BadEntry {
                    tag,
                    why: "misaligned int32 data",
                });
            }
            let bytes = (e.count as usize)
                .checked_mul(4)
                .and_then(|n| self.tail(&e).ok()?.get(..n))
                .ok_or(HeaderError::BadEntry {
                    tag,
                    why: "int32 array beyond the data",
                })?;
            Ok(Some(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ))
        }

        /// The first value of an `INT32` entry.
        pub fn int32(&self, tag: u32) -> Result<Option<u32>, HeaderError> {
            Ok(self.int32_array(tag)?.and_then(|v| v.first().copied()))
        }
    }

    /// One file of a package: directory (with its trailing `/`), base name, digest in hex
    /// (`None` when the header records no digests, `Some("")` for a file without one), flags.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct FileRecord<'a> {
        pub dir: &'a [u8],
        pub base: &'a [u8],
        pub digest_hex: Option<&'a [u8]>,
        pub flags: u32,
    }

    /// What the index needs from one package header, checked for consistency.
    #[derive(Debug)]
    pub struct PackageHeader<'a> {
        pub name: &'a [u8],
        pub epoch: Option<u32>,
        pub version: &'a [u8],
        pub release: &'a [u8],
        pub arch: &'a [u8],
        /// `FILEDIGESTALGO` (`None`: absent, which means MD5).
        pub digest_algo: Option<u32>,
        dirnames: Vec<&'a [u8]>,
        /// Per file: (directory index, base name); or whole paths (`OLDFILENAMES`).
        names: FileNames<'a>,
        digests: Option<Vec<&'a [u8]>>,
        flags: Option<Vec<u32>>,
    }

    #[derive(Debug)]
    enum FileNames<'a> {
        Compressed {
            dirindexes: Vec<u32>,
            basenames: Vec<&'a [u8]>,
        },
        Old(Vec<&'a [u8]>),
    }

    impl<'a> PackageHeader<'a> {
        pub fn parse(blob: &'a [u8]) -> Result<PackageHeader<'a>, HeaderError> {
            let h = Header::parse(blob)?;
            let name = h.string(TAG_NAME)?.ok_or(HeaderError::NoName)?;
            let version = h.string(TAG_VERSION)?.unwrap_or_default();
            let release = h.string(TAG_RELEASE)?.unwrap_or_default();
            let arch = h.string(TAG_ARCH)?.unwrap_or_default();
            let epoch = h.int32(TAG_EPOCH)?;
            let digest_algo = h.int32(TAG_FILEDIGESTALGO)?;
            let dirnames = h.string_array(TAG_DIRNAMES)?.unwrap_or_default();
            let names = match h.string_array(TAG_BASENAMES)? {
                Some(basenames) => {
                    let dirindexes = h
                        .int32_array(TAG_DIRINDEXES)?
                        .ok_or(HeaderError::BadFileList("BASENAMES without DIRINDEXES"))?;
                    if dirindexes.len() != basenames.len() {
                        return Err(HeaderError::BadFileList(
                            "DIRINDEXES and BASENAMES differ in length",
                        ));
                    }
                    if dirindexes.iter().any(|&d| d as usize >= dirnames.len()) {
                        return Err(HeaderError::BadFileList("directory index out of range"));
                    }
                    FileNames::Compressed {
                        dirindexes,
                        basenames,
                    }
                }
                None => FileNames::Old(h.string_array(TAG_OLDFILENAMES)?.unwrap_or_default()),
            };
            let files = match &names {
                FileNames::Compressed { basenames, .. } => basenames.len(),
                FileNames::Old(paths) => paths.len(),
            };
            let digests = h.string_array(TAG_FILEDIGESTS)?;
            if digests.as_ref().is_some_and(|d| d.len() != files) {
                return Err(HeaderError::BadFileList("FILEDIGESTS has the wrong length"));
            }
            let flags = h.int32_array(TAG_FILEFLAGS)?;
            if flags.as_ref().is_some_and(|f| f.len() != files) {
                return Err(HeaderError::BadFileList("FILEFLAGS has the wrong length"));
            }
            Ok(PackageHeader {
                name,
                epoch,
                version,
                release,
                arch,
                digest_algo,
                dirnames,
                names,
                digests,
                flags,
            })
        }

        /// Number of files.
        pub fn file_count(&self) -> usize {
            match &self.names {
                FileNames::Compressed { basenames, .. } => basenames.len(),
                FileNames::Old(paths) => paths.len(),
            }
        }

        /// Every file, in header order.
        pub fn files(&self) -> impl Iterator<Item = FileRecord<'a>> + '_ {
            (0..self.file_count()).filter_map(move |i| {
                let (dir, base) = match &self.names {
                    FileNames::Compressed {
                        dirindexes,
                        basenames,
                    } => (
                        *self.dirnames.get(*dirindexes.get(i)? as usize)?,
                        *basenames.get(i)?,
                    ),
                    FileNames::Old(paths) => (&b""[..], *paths.get(i)?),
                };
                Some(FileRecord {
                    dir,
                    base,
                    digest_hex: self.digests.as_ref().and_then(|d| d.get(i).copied()),
                    flags: self
                        .flags
                        .as_ref()
                        .and_then(|f| f.get(i).copied())
                        .unwrap_or(0),
                })
            })
        }
    }

    /// Builds header blobs (tests and benchmarks): entries are laid out as rpm does (strings
    /// unaligned, int32 aligned to 4), without a region entry, which readers do not need.
    #[derive(Debug, Default)]
    pub struct Encoder {
        entries: Vec<(u32, u32, u32, u32)>,
        data: Vec<u8>,
    }

    impl Encoder {
        pub fn new() -> Encoder {
            Encoder::default()
        }

        pub fn string(&mut self, tag: u32, value: &[u8]) -> &mut Encoder {
            self.strings_typed(tag, TYPE_STRING, &[value])
        }

        pub fn string_array(&mut self, tag: u32, values: &[&[u8]]) -> &mut Encoder {
            self.strings_typed(tag, TYPE_STRING_ARRAY, values)
        }

        fn strings_typed(&mut self, tag: u32, kind: u32, values: &[&[u8]]) -> &mut Encoder {
            let offset = self.data.len() as u32;
            for v in values {
                self.data.extend_from_slice(v);
                self.data.push(0);
            }
            self.entries.push((tag, kind, offset, values.len() as u32));
            self
        }

        pub fn int32(&mut self, tag: u32, values: &[u32]) -> &mut Encoder {
            while !self.data.len().is_multiple_of(4) {
                self.data.push(0);
            }
            let offset = self.data.len() as u32;
            for v in values {
                self.data.extend_from_slice(&v.to_be_bytes());
            }
            self.entries
                .push((tag, TYPE_INT32, offset, values.len() as u32));
            self
        }

        /// A raw entry (hostile-input tests).
        pub fn raw_entry(&mut self, tag: u32, kind: u32, offset: u32, count: u32) -> &mut Encoder {
            self.entries.push((tag, kind, offset, count));
            self
        }

        /// Raw bytes appended to the data store.
        pub fn raw_data(&mut self, bytes: &[u8]) -> &mut Encoder {
            self.data.extend_from_slice(bytes);
            self
        }

        pub fn finish(&self) -> Vec<u8> {
            let mut out = Vec::with_capacity(8 + self.entries.len() * ENTRY_SIZE + self.data.len());
            out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
            out.extend_from_slice(&(self.data.len() as u32).to_be_bytes());
            for (tag, kind, offset, count) in &self.entries {
                for v in [tag, kind, offset, count] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            out.extend_from_slice(&self.data);
            out
        }
    }

    /// A whole package header as rpm installs it (tests and benchmarks): `files` are
    /// (absolute path, hex digest, flags); the digest algorithm is SHA-256 unless `algo`.
    pub fn encode_package(
        name: &str,
        epoch: Option<u32>,
        version: &str,
        release: &str,
        arch: &str,
        algo: Option<u32>,
        files: &[(&str, &str, u32)],
    ) -> Vec<u8> {
        let mut dirnames: Vec<&[u8]> = Vec::new();
        let mut dirindexes = Vec::new();
        let mut basenames: Vec<&[u8]> = Vec::new();
        for (path, _, _) in files {
            let slash = path.rfind('/').map_or(0, |i| i + 1);
            let (dir, base) = path.as_bytes().split_at(slash);
            let idx = match dirnames.iter().position(|d| *d == dir) {
                Some(i) => i,
                None => {
                    dirnames.push(dir);
                    dirnames.len() - 1
                }
            };
            dirindexes.push(idx as u32);
            basenames.push(base);
        }
        let digests: Vec<&[u8]> = files.iter().map(|(_, d, _)| d.as_bytes()).collect();
        let flags: Vec<u32> = files.iter().map(|(_, _, f)| *f).collect();
        let mut enc = Encoder::new();
        enc.string(TAG_NAME, name.as_bytes())
            .string(TAG_VERSION, version.as_bytes())
            .string(TAG_RELEASE, release.as_bytes());
        if let Some(e) = epoch {
            enc.int32(TAG_EPOCH, &[e]);
        }
        enc.string(TAG_ARCH, arch.as_bytes());
        if !files.is_empty() {
            enc.string_array(TAG_FILEDIGESTS, &digests)
                .int32(TAG_FILEFLAGS, &flags)
                .int32(TAG_DIRINDEXES, &dirindexes)
                .string_array(TAG_BASENAMES, &basenames)
                .string_array(TAG_DIRNAMES, &dirnames);
        }
        if let Some(a) = algo {
            enc.int32(TAG_FILEDIGESTALGO, &[a]);
        }
        enc.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::header::*;
    use super::*;

    const SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_a_package_header() {
        let blob = encode_package(
            "hello",
            Some(2),
            "1.0",
            "3.fc40",
            "x86_64",
            Some(8),
            &[
                ("/usr/bin/hello", SHA, 0),
                ("/etc/hello.conf", SHA, RPMFILE_CONFIG | (1 << 4)),
                ("/usr/share/hello", "", 0),
            ],
        );
        let h = PackageHeader::parse(&blob).expect("parses");
        assert_eq!(h.name, b"hello");
        assert_eq!(h.epoch, Some(2));
        assert_eq!(h.version, b"1.0");
        assert_eq!(h.release, b"3.fc40");
        assert_eq!(h.arch, b"x86_64");
        assert_eq!(h.digest_algo, Some(8));
        let files: Vec<_> = h.files().collect();
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].dir, b"/usr/bin/");
        assert_eq!(files[0].base, b"hello");
        assert_eq!(files[0].digest_hex, Some(SHA.as_bytes()));
        assert_eq!(files[1].flags & RPMFILE_CONFIG, RPMFILE_CONFIG);
        assert_eq!(files[2].digest_hex, Some(&b""[..]));
    }

    #[test]
    fn last_entry_of_a_tag_wins() {
        let mut enc = Encoder::new();
        enc.string(TAG_NAME, b"old").string(TAG_NAME, b"new");
        let blob = enc.finish();
        let h = Header::parse(&blob).expect("parses");
        assert_eq!(h.string(TAG_NAME).expect("ok"), Some(&b"new"[..]));
    }

    #[test]
    fn package_without_files_and_without_optional_tags() {
        let blob = encode_package("gpg-pubkey", None, "abc", "def", "", None, &[]);
        let h = PackageHeader::parse(&blob).expect("parses");
        assert_eq!(h.file_count(), 0);
        assert_eq!(h.epoch, None);
        assert_eq!(h.digest_algo, None);
    }

    #[test]
    fn truncated_blobs_are_errors_not_panics() {
        let blob = encode_package(
            "hello",
            None,
            "1",
            "1",
            "noarch",
            Some(8),
            &[("/usr/bin/hello", SHA, 0), ("/etc/x", SHA, 1)],
        );
        for len in 0..blob.len() {
            assert!(
                PackageHeader::parse(&blob[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
        assert!(PackageHeader::parse(&blob).is_ok());
    }

    #[test]
    fn every_corrupted_byte_is_handled() {
        let blob = encode_package(
            "hello",
            Some(1),
            "1",
            "1",
            "noarch",
            Some(8),
            &[("/usr/bin/hello", SHA, 0), ("/etc/x", "", 1)],
        );
        for i in 0..blob.len() {
            for v in [0u8, 0x7f, 0xff, 1] {
                let mut bad = blob.clone();
                bad[i] = v;
                // Must not panic; any result is fine.
                if let Ok(h) = PackageHeader::parse(&bad) {
                    let _ = h.files().count();
                }
            }
        }
    }

    #[test]
    fn hostile_counts_and_offsets() {
        // Huge counts.
        let mut blob = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Header::parse(&blob),
            Err(HeaderError::BadCounts { .. })
        ));
        blob = vec![0, 0, 0, 0, 0, 0, 0, 0];
        assert!(Header::parse(&blob).is_err(), "zero entries");
        // A string count far beyond the data.
        let mut enc = Encoder::new();
        enc.string(TAG_NAME, b"x")
            .raw_entry(TAG_BASENAMES, TYPE_STRING_ARRAY, 0, u32::MAX)
            .raw_entry(TAG_DIRINDEXES, TYPE_INT32, 0, u32::MAX)
            .raw_entry(TAG_DIRNAMES, TYPE_STRING_ARRAY, 0, 1);
        assert!(PackageHeader::parse(&enc.finish()).is_err());
        // An offset beyond the data.
        let mut enc = Encoder::new();
        enc.raw_entry(TAG_NAME, TYPE_STRING, 1 << 27, 1)
            .raw_data(b"abc\0");
        assert!(PackageHeader::parse(&enc.finish()).is_err());
        // An unterminated string.
        let mut enc = Encoder::new();
        enc.raw_entry(TAG_NAME, TYPE_STRING, 0, 1).raw_data(b"abc");
        assert!(PackageHeader::parse(&enc.finish()).is_err());
        // A name of the wrong type.
        let mut enc = Encoder::new();
        enc.int32(TAG_NAME, &[1]);
        assert!(PackageHeader::parse(&enc.finish()).is_err());
        // No name at all.
        let mut enc = Encoder::new();
        enc.string(TAG_VERSION, b"1");
        assert_eq!(
            PackageHeader::parse(&enc.finish()).err(),
            Some(HeaderError::NoName)
        );
        // A directory index out of range.
        let mut enc = Encoder::new();
        enc.string(TAG_NAME, b"x")
            .string_array(TAG_BASENAMES, &[b"a"])
            .int32(TAG_DIRINDEXES, &[7])
            .string_array(TAG_DIRNAMES, &[b"/"]);
        assert!(PackageHeader::parse(&enc.finish()).is_err());
        // Digests not matching the file count.
        let mut enc = Encoder::new();
        enc.string(TAG_NAME, b"x")
            .string_array(TAG_BASENAMES, &[b"a", b"b"])
            .int32(TAG_DIRINDEXES, &[0, 0])
            .string_array(TAG_DIRNAMES, &[b"/"])
            .string_array(TAG_FILEDIGESTS, &[b""]);
        assert!(PackageHeader::parse(&enc.finish()).is_err());
        // A misaligned int32.
        let mut enc = Encoder::new();
        enc.string(TAG_NAME, b"x")
            .raw_entry(TAG_EPOCH, TYPE_INT32, 1, 1)
            .raw_data(&[0; 8]);
        assert!(PackageHeader::parse(&enc.finish()).is_err());
    }

    #[test]
    fn old_filenames_are_read() {
        let mut enc = Encoder::new();
        enc.string(TAG_NAME, b"legacy")
            .string_array(TAG_OLDFILENAMES, &[b"/bin/sh"]);
        let blob = enc.finish();
        let h = PackageHeader::parse(&blob).expect("parses");
        let files: Vec<_> = h.files().collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].base, b"/bin/sh");
        assert_eq!(files[0].digest_hex, None);
    }

    #[test]
    fn rpmvercmp_table() {
        use Ordering::*;
        // From rpm's tests/rpmvercmp.at, and the epoch/release rules of rpmverCmp.
        let table: &[(&str, &str, Ordering)] = &[
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0", "1.0", Greater),
            ("2.0.1", "2.0.1", Equal),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("xyz.4", "2", Less),
            ("5.5p2", "5.6p1", Less),
            ("5.6p1", "6.5p1", Less),
            ("6.0.rc1", "6.0", Greater),
            ("10b2", "10a1", Greater),
            ("1.0aa", "1.0a", Greater),
            ("10.0001", "10.1", Equal),
            ("10.0001", "10.0039", Less),
            ("4.999.9", "5.0", Less),
            ("20101121", "20101122", Less),
            ("2_0", "2_0", Equal),
            ("2.0", "2_0", Equal),
            ("a", "a", Equal),
            ("a+", "a_", Equal),
            ("+", "_", Equal),
            ("1.0~rc1", "1.0~rc1", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0~rc1", Greater),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0^", Equal),
            ("1.0^", "1.0", Greater),
            ("1.0", "1.0^", Less),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1~pre", "1.0^git1", Less),
            ("1.01", "1.1", Equal),
            ("1a", "1.a", Equal),
        ];
        for (a, b, want) in table {
            assert_eq!(rpmvercmp(a, b), *want, "rpmvercmp({a:?}, {b:?})");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "rpmvercmp({b:?}, {a:?})");
        }
    }

    #[test]
    fn evr_ordering() {
        use Ordering::*;
        let table: &[(&str, &str, Ordering)] = &[
            ("1.0-1", "1.0-2", Less),
            ("1:1.0-1", "2.0-1", Greater),
            ("0:1.0-1", "1.0-1", Equal),
            ("1.0-1", "1.0", Greater),
            ("1.0", "1.0", Equal),
            ("2.0-1.fc40", "2.0-1.fc39", Greater),
            ("1.0-1~beta", "1.0-1", Less),
            ("3:1-1", "2:9-9", Greater),
            ("1.0-1.el9_2", "1.0-1.el9", Greater),
            ("1.2.3-4", "1.2.3-4", Equal),
        ];
        for (a, b, want) in table {
            assert_eq!(compare_evr(a, b), *want, "compare_evr({a:?}, {b:?})");
            assert_eq!(
                compare_evr(b, a),
                want.reverse(),
                "compare_evr({b:?}, {a:?})"
            );
        }
    }

    #[test]
    fn temporary_names() {
        for (name, want) in [
            ("hello;6b12b1d2", true),
            ("a;00000000", true),
            (";6b12b1d2", false),
            ("hello;6B12B1D2", false),
            ("hello;6b12b1d", false),
            ("hello;6b12b1d2x", false),
            ("hello.rpmnew", false),
            ("hello.rpmsave", false),
            ("hello", false),
        ] {
            assert_eq!(is_rpm_temp_name(OsStr::new(name)), want, "{name}");
        }
    }

    #[test]
    fn digests_decode_by_algorithm() {
        let mut buf = [0u8; 64];
        let d = decode_digest(DigestAlgo::Sha256, SHA.as_bytes(), &mut buf).expect("sha256");
        assert_eq!(d.len(), 32);
        assert!(decode_digest(DigestAlgo::Md5, SHA.as_bytes(), &mut buf).is_none());
        assert!(decode_digest(DigestAlgo::Sha256, b"zz", &mut buf).is_none());
        assert!(decode_digest(DigestAlgo::Sha512, SHA.as_bytes(), &mut buf).is_none());
    }

    #[test]
    fn aliases_map_the_top_level_only() {
        let aliases = vec![(PathBuf::from("/r/bin"), PathBuf::from("/r/usr/bin"))];
        assert_eq!(
            canonical_alias(&aliases, Path::new("/r/bin/sh")),
            Some(PathBuf::from("/r/usr/bin/sh"))
        );
        assert_eq!(canonical_alias(&aliases, Path::new("/r/binx/sh")), None);
        assert_eq!(canonical_alias(&aliases, Path::new("/r/usr/bin/sh")), None);
    }

    #[test]
    fn builder_prefers_digests_and_later_packages() {
        let root = Path::new("/r");
        let aliases = vec![(PathBuf::from("/r/bin"), PathBuf::from("/r/usr/bin"))];
        let pkg = |name: &str, files: &[(&str, &str, u32)]| {
            encode_package(name, None, "1", "1", "noarch", Some(8), files)
        };
        let mut b = Builder::new(root, &aliases);
        b.add(1, &pkg("a", &[("/bin/sh", SHA, 0), ("/etc/x", SHA, 0)]));
        b.add(2, &pkg("b", &[("/usr/bin/sh", "", 0), ("/etc/x", SHA, 1)]));
        b.add(3, b"garbage");
        b.add(4, &pkg("c", &[("/", "", 0), ("/usr/share/doc/", "", 0)]));
        assert_eq!(b.skipped, 1);
        let (packages, files) = b.finish();
        assert_eq!(files.len(), 4);
        let owner = |path: &[u8]| {
            let e = files.find(path).expect("indexed");
            (
                packages[e.package as usize].name.as_str(),
                files.digest(e).is_some(),
                e.conffile,
            )
        };
        // A digest beats none, whatever the order; else the later package wins.
        assert_eq!(owner(b"/usr/bin/sh"), ("a", true, false));
        assert_eq!(owner(b"/etc/x"), ("b", true, true));
        assert_eq!(owner(b"/"), ("c", false, false));
        assert_eq!(owner(b"/usr/share/doc"), ("c", false, false));
        assert!(
            files.find(b"/bin/sh").is_none(),
            "stored under the real path"
        );
    }

    #[test]
    fn owner_with_the_real_root() {
        let root = PathBuf::from("/");
        let aliases = vec![(PathBuf::from("/bin"), PathBuf::from("/usr/bin"))];
        let mut b = Builder::new(&root, &aliases);
        b.add(
            1,
            &encode_package(
                "coreutils",
                Some(1),
                "9.1",
                "2",
                "x86_64",
                None,
                &[("/bin/rm", "0123456789abcdef0123456789abcdef", 0)],
            ),
        );
        let (packages, files) = b.finish();
        let index = RpmIndex {
            db_dir: PathBuf::from("/var/lib/rpm"),
            root,
            aliases,
            locks: Vec::new(),
            stamp: stamp_of(&packages),
            packages,
            files,
        };
        for path in ["/bin/rm", "/usr/bin/rm"] {
            let owner = index.owner(Path::new(path)).expect("owned");
            assert_eq!(owner.package, "coreutils");
            assert_eq!(owner.version, "1:9.1-2");
            let digest = owner.digest.expect("digest");
            assert_eq!(digest.algo, DigestAlgo::Md5, "no FILEDIGESTALGO = md5");
            assert_eq!(
                hex::encode(digest.bytes),
                "0123456789abcdef0123456789abcdef"
            );
        }
        assert!(index.owner(Path::new("/usr/bin/rmdir")).is_none());
        assert!(index.owner(Path::new("relative/bin/rm")).is_none());
        assert!(index.is_database_file(Path::new("/var/lib/rpm/rpmdb.sqlite")));
        assert!(!index.is_database_file(Path::new("/var/lib/rpmx")));
    }

    #[test]
    fn package_paths_are_normalised() {
        let mut out = Vec::new();
        for (dir, base, want) in [
            (&b"/usr/bin/"[..], &b"x"[..], Some(&b"/usr/bin/x"[..])),
            (b"/usr/bin", b"x", Some(b"/usr/bin/x")),
            (b"", b"/bin/sh", Some(b"/bin/sh")),
            (b"", b"/", Some(b"/")),
            (b"/", b"", Some(b"/")),
            (b"/usr/share/doc/", b"", Some(b"/usr/share/doc")),
            (b"", b"", None),
        ] {
            let ok = package_path(dir, base, &mut out);
            assert_eq!(ok.then_some(out.as_slice()), want, "{dir:?} {base:?}");
        }
        let aliases = vec![(b"/bin".to_vec(), b"/usr/bin".to_vec())];
        assert_eq!(&*resolve_alias(&aliases, b"/bin/sh"), b"/usr/bin/sh");
        assert_eq!(&*resolve_alias(&aliases, b"/bin"), b"/usr/bin");
        assert_eq!(&*resolve_alias(&aliases, b"/binx/sh"), b"/binx/sh");
    }
}
