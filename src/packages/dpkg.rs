//! The dpkg index: path -> (package, arch, version, md5, conffile) from the admin dir's
//! `status` (plus its `updates/` journal), `info/<pkg>[:arch].list|md5sums` and `diversions`.
//!
//! Keys are the package's own paths (`/usr/bin/x`) after diversions and merged-/usr
//! canonicalisation; a real path is turned into a key by stripping `<root>` and rewriting the
//! top-level alias (`/bin` -> `/usr/bin` when `<root>/bin` is a symlink to `usr/bin`). Package
//! names live once in `pkgs`; each path entry holds a `u32` slot number.
//!
//! dpkg keeps the newest package states in `updates/NNNN` (one paragraph per change) and only
//! folds them into `status` at a checkpoint (the end of the run): during an upgrade the new
//! version and the new conffile digests are ONLY in the journal. Reading `status` alone would
//! give the old version next to the new md5sums.
//!
//! The transaction probe queries `lock-frontend` and `lock` with `F_OFD_GETLK` (`F_GETLK`
//! before Linux 3.15), never taking them. Unlike `F_GETLK`, an OFD query also reports a
//! classic lock held by this very process (`F_GETLK` only reports other processes' locks).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufRead, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::{DigestAlgo, FileDigest, Manager, Owner, PackageDb};

/// Top-level directories that merged-/usr turns into symlinks.
const MERGED_USR: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Names dpkg gives files for a moment while it unpacks or configures.
const TEMP_SUFFIXES: [&str; 4] = [".dpkg-new", ".dpkg-tmp", ".dpkg-dist", ".dpkg-old"];

/// Package states whose files are on disk (everything but `not-installed` and `config-files`).
const INSTALLED_STATES: [&str; 6] = [
    "installed",
    "unpacked",
    "half-configured",
    "half-installed",
    "triggers-awaited",
    "triggers-pending",
];

mod table;
use table::{Rec, Table};

const HAS_DIGEST: u8 = 1;
const CONFFILE: u8 = 2;

/// One file of a package, before it goes into the table.
#[derive(Debug, Clone, Copy)]
struct Entry {
    flags: u8,
    md5: [u8; 16],
}

/// One package's entries, keyed, before they go into the index.
type Entries = Vec<(Box<[u8]>, Entry)>;

/// A package re-read from disk: (info stem, its record if installed, its entries if listed).
type Reread = (String, Option<Package>, Option<Entries>);

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    name: String,
    arch: String,
    version: String,
    /// Its file names in `info/`: `name` or `name:arch` (Multi-Arch: same).
    stem: String,
    /// Package paths (as dpkg records them) with the md5 of the shipped version (`None` for
    /// `newconffile`: not configured yet).
    conffiles: Vec<(Vec<u8>, Option<[u8; 16]>)>,
    /// When it was last (re)loaded: of two packages listing one path, the newer owns it.
    generation: u64,
}

/// One paragraph of `status` (or of an `updates/` journal file), the fields we use.
#[derive(Debug, Default, Clone)]
struct StatusRecord {
    name: String,
    arch: String,
    version: String,
    state: String,
    multi_arch_same: bool,
    conffiles: Vec<(Vec<u8>, Option<[u8; 16]>)>,
}

impl StatusRecord {
    fn installed(&self) -> bool {
        INSTALLED_STATES.contains(&self.state.as_str())
    }

    fn stem(&self) -> String {
        if self.multi_arch_same && !self.arch.is_empty() {
            format!("{}:{}", self.name, self.arch)
        } else {
            self.name.clone()
        }
    }

    fn into_package(self) -> Package {
        let stem = self.stem();
        Package {
            name: self.name,
            arch: self.arch,
            version: self.version,
            stem,
            conffiles: self.conffiles,
            generation: 0,
        }
    }
}

/// A diversion target and the package allowed to keep the original name (`:` = local).
#[derive(Debug, Clone)]
struct Diversion {
    to: Vec<u8>,
    by: String,
}

/// Where a real path's package path starts, and the merged-/usr rewrites.
#[derive(Debug, Clone)]
struct PathMap {
    /// `<root>` as bytes without a trailing `/` (empty for `/`).
    root: Vec<u8>,
    /// (`/bin`, `/usr/bin`) for each top-level symlink into `usr/`.
    aliases: Vec<(Vec<u8>, Vec<u8>)>,
}

impl PathMap {
    fn new(root: &Path) -> PathMap {
        let mut aliases = Vec::new();
        for name in MERGED_USR {
            // One readlink per name: a missing or real directory simply has no alias.
            let Ok(target) = std::fs::read_link(root.join(name)) else {
                continue;
            };
            let t = target.as_os_str().as_bytes();
            let t = t.strip_prefix(b"/").unwrap_or(t);
            let t = t.strip_suffix(b"/").unwrap_or(t);
            if t.starts_with(b"usr/") && !t[4..].is_empty() && !t[4..].contains(&b'/') {
                let mut to = b"/".to_vec();
                to.extend_from_slice(t);
                aliases.push((format!("/{name}").into_bytes(), to));
            }
        }
        let root = root.as_os_str().as_bytes();
        let root = root.strip_suffix(b"/").unwrap_or(root).to_vec();
        PathMap { root, aliases }
    }

    /// A package path with its merged-/usr alias rewritten.
    fn canonical<'a>(&self, path: &'a [u8]) -> Cow<'a, [u8]> {
        for (from, to) in &self.aliases {
            if let Some(rest) = path.strip_prefix(from.as_slice()) {
                if rest.is_empty() || rest[0] == b'/' {
                    let mut out = to.clone();
                    out.extend_from_slice(rest);
                    return Cow::Owned(out);
                }
            }
        }
        Cow::Borrowed(path)
    }

    /// The index key of a real path: `<root>` stripped, alias rewritten.
    fn key<'a>(&self, real: &'a Path) -> Option<Cow<'a, [u8]>> {
        let rest = real
            .as_os_str()
            .as_bytes()
            .strip_prefix(self.root.as_slice())?;
        if !rest.starts_with(b"/") {
            return None;
        }
        Some(self.canonical(rest))
    }
}

/// The parsed apt index: a 64-bit hash per (package, arch, version), so 60k offered
/// versions cost about 1 MB. A collision (odds ~1e-10 at that size) would only make an
/// unlisted version look listed.
#[derive(Debug, Default)]
struct RepoCache {
    /// (file name, mtime, size) of every `*_Packages` file the set was built from.
    signature: Vec<(OsString, Option<SystemTime>, u64)>,
    offered: HashSet<u64>,
}

/// Everything dpkg records about installed files.
#[derive(Debug)]
pub struct DpkgIndex {
    admin: PathBuf,
    root: PathBuf,
    map: PathMap,
    diversions: HashMap<Vec<u8>, Diversion>,
    /// Package slots; `None` once a package is removed (slot numbers stay valid).
    pkgs: Vec<Option<Package>>,
    by_stem: HashMap<String, u32>,
    table: Table,
    generation: u64,
    repo: Mutex<RepoCache>,
}

impl DpkgIndex {
    /// Load from `admin_dir` (`<root>/var/lib/dpkg`) for the file system at `root`.
    pub fn load(admin_dir: &Path, root: &Path) -> io::Result<DpkgIndex> {
        let root = std::fs::canonicalize(root).map_err(|e| context(root, e))?;
        let admin = std::fs::canonicalize(admin_dir).map_err(|e| context(admin_dir, e))?;
        let map = PathMap::new(&root);
        let diversions = read_diversions(&admin.join("diversions"), &map)?;
        let mut index = DpkgIndex {
            admin,
            root,
            map,
            diversions,
            pkgs: Vec::new(),
            by_stem: HashMap::new(),
            table: Table::default(),
            generation: 0,
            repo: Mutex::new(RepoCache::default()),
        };
        for record in read_status(&index.admin)? {
            if record.installed() {
                let package = record.into_package();
                let entries = index.package_entries(&package)?;
                index.insert_package(package, entries);
            }
        }
        index.table.finish();
        Ok(index)
    }

    /// The admin dir (canonical) this index was loaded from.
    pub fn admin_dir(&self) -> &Path {
        &self.admin
    }

    /// The root (canonical) whose files this index describes.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Number of installed packages indexed.
    pub fn package_count(&self) -> usize {
        self.by_stem.len()
    }

    /// `path` relative to the admin dir, when it is inside it.
    fn admin_relative<'a>(&self, path: &'a Path) -> Option<&'a [u8]> {
        path.strip_prefix(&self.admin)
            .ok()
            .map(|p| p.as_os_str().as_bytes())
    }

    /// Every file entry of one package: its `.list` joined with `.md5sums` and the status
    /// conffiles. `Ok(None)` when its `.list` does not exist (not unpacked, or gone).
    fn package_entries(&self, pkg: &Package) -> io::Result<Option<Entries>> {
        let info = self.admin.join("info");
        let Some(list) = read_optional(&info.join(format!("{}.list", pkg.stem)))? else {
            return Ok(None);
        };
        let md5sums = read_optional(&info.join(format!("{}.md5sums", pkg.stem)))?;
        let digests = parse_md5sums(md5sums.as_deref().unwrap_or_default());
        let lines: Vec<&[u8]> = list
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"/") && *l != b"/.")
            .collect();
        // `.list` names directories too: any path that is another's parent is one.
        let dirs: HashSet<&[u8]> = lines.iter().filter_map(|l| parent(l)).collect();
        let mut out = Vec::new();
        for path in lines {
            if dirs.contains(path) {
                continue;
            }
            let (flags, md5) = match digests.get(&path[1..]) {
                Some(md5) => (HAS_DIGEST, *md5),
                None => (0, [0; 16]),
            };
            out.push((self.key_for(pkg, path), Entry { flags, md5 }));
        }
        self.add_conffiles(pkg, &mut out);
        Ok(Some(out))
    }

    /// Mark the conffiles (digest from status, not md5sums), adding any `.list` lacks.
    fn add_conffiles(&self, pkg: &Package, out: &mut Entries) {
        if pkg.conffiles.is_empty() {
            return;
        }
        let at: HashMap<Box<[u8]>, usize> = out
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        for (path, md5) in &pkg.conffiles {
            let key = self.key_for(pkg, path);
            let entry = Entry {
                flags: CONFFILE | if md5.is_some() { HAS_DIGEST } else { 0 },
                md5: md5.unwrap_or([0; 16]),
            };
            match at.get(&key) {
                Some(&i) => out[i].1 = entry,
                None => out.push((key, entry)),
            }
        }
    }

    /// The key of a file `pkg` ships at `path`: canonical, and diverted unless `pkg` is the
    /// diverting package.
    fn key_for(&self, pkg: &Package, path: &[u8]) -> Box<[u8]> {
        let canonical = self.map.canonical(path);
        match self.diversions.get(canonical.as_ref()) {
            Some(d) if d.by != pkg.name => d.to.clone().into_boxed_slice(),
            _ => canonical.into_owned().into_boxed_slice(),
        }
    }

    /// Put a package and its entries in (a new slot, or its old one); `table.finish()` must
    /// follow before a lookup.
    fn insert_package(&mut self, mut pkg: Package, entries: Option<Entries>) {
        let Some(entries) = entries else {
            return;
        };
        let slot = match self.by_stem.get(&pkg.stem) {
            Some(&slot) => slot,
            None => {
                let slot = u32::try_from(self.pkgs.len()).unwrap_or(u32::MAX);
                self.pkgs.push(None);
                self.by_stem.insert(pkg.stem.clone(), slot);
                slot
            }
        };
        for (key, e) in entries {
            if !self.table.push(&key, slot, e.flags, e.md5) {
                tracing::debug!(package = %pkg.name, "path too long for the dpkg index; skipped");
            }
        }
        self.generation += 1;
        pkg.generation = self.generation;
        if let Some(place) = self.pkgs.get_mut(slot as usize) {
            *place = Some(pkg);
        }
    }

    /// Reload everything, keeping the apt cache (it depends on apt's lists only).
    fn reload(&mut self) -> io::Result<()> {
        let fresh = DpkgIndex::load(&self.admin, &self.root)?;
        let repo = std::mem::take(&mut self.repo);
        *self = DpkgIndex { repo, ..fresh };
        Ok(())
    }

    /// What one package (by its `info/` stem) is now: its status record if installed, and
    /// its entries if its `.list` exists.
    fn read_package(&self, stem: &str, records: &[StatusRecord]) -> io::Result<Reread> {
        let package = records
            .iter()
            .find(|r| r.installed() && r.stem() == stem)
            .map(|r| r.clone().into_package());
        let entries = match &package {
            Some(p) => self.package_entries(p)?,
            None => None,
        };
        Ok((stem.to_string(), package, entries))
    }

    /// Replace packages by what `read_package` found (read everything first, then apply:
    /// an error leaves the index as it was).
    fn apply(&mut self, reread: Vec<Reread>) {
        // One pass over the table drops every re-read package, one merge adds them back.
        let mut gone = HashSet::new();
        for (stem, _, _) in &reread {
            if let Some(slot) = self.by_stem.remove(stem) {
                gone.insert(slot);
                if let Some(place) = self.pkgs.get_mut(slot as usize) {
                    *place = None;
                }
            }
        }
        self.table.remove_packages(&gone);
        for (_, package, entries) in reread {
            if let Some(p) = package {
                self.insert_package(p, entries);
            }
        }
        self.table.finish();
    }

    /// What a changed status (or journal) means for the index: the packages that appeared,
    /// went, or whose conffiles changed (to be re-read), and the new versions of the others
    /// (set in place, by slot).
    fn status_delta(&self, records: &[StatusRecord]) -> (BTreeSet<String>, Vec<(u32, String)>) {
        let mut stems = BTreeSet::new();
        let mut versions = Vec::new();
        let mut seen = HashSet::new();
        for r in records.iter().filter(|r| r.installed()) {
            let stem = r.stem();
            let slot = self.by_stem.get(&stem).copied();
            match slot.and_then(|s| self.pkgs.get(s as usize)?.as_ref()) {
                Some(p) if p.conffiles == r.conffiles && p.arch == r.arch => {
                    versions.extend(slot.map(|s| (s, r.version.clone())));
                }
                _ => {
                    stems.insert(stem.clone());
                }
            }
            seen.insert(stem);
        }
        stems.extend(self.by_stem.keys().filter(|s| !seen.contains(*s)).cloned());
        (stems, versions)
    }

    /// The record for a key, with its package (the most recently loaded one when several
    /// packages list the path).
    fn lookup(&self, key: &[u8]) -> Option<(&Rec, &Package)> {
        self.table
            .get(key)
            .iter()
            .filter_map(|r| Some((r, self.pkgs.get(r.pkg as usize)?.as_ref()?)))
            .max_by_key(|(_, p)| p.generation)
    }
}

impl PackageDb for DpkgIndex {
    fn manager(&self) -> Manager {
        Manager::Dpkg
    }

    fn owner(&self, path: &Path) -> Option<Owner> {
        let key = self.map.key(path)?;
        let (entry, pkg) = self.lookup(&key)?;
        Some(Owner {
            manager: Manager::Dpkg,
            package: pkg.name.clone(),
            arch: pkg.arch.clone(),
            version: pkg.version.clone(),
            digest: (entry.flags & HAS_DIGEST != 0).then(|| FileDigest {
                algo: DigestAlgo::Md5,
                bytes: entry.md5.to_vec(),
            }),
            conffile: entry.flags & CONFFILE != 0,
        })
    }

    /// `F_OFD_GETLK` (falling back to `F_GETLK` on kernels before 3.15): an OFD query also
    /// reports classic locks held by this very process, which `F_GETLK` never does.
    fn transaction_running(&self) -> bool {
        ["lock-frontend", "lock"]
            .iter()
            .any(|name| super::lock::write_lock_held(&self.admin.join(name)))
    }

    fn compare_versions(&self, a: &str, b: &str) -> Ordering {
        compare_versions(a, b)
    }

    fn is_database_file(&self, path: &Path) -> bool {
        path.starts_with(&self.admin)
    }

    /// `info/*.md5sums`, and `status` and its `updates/` journal (they hold the conffile
    /// digests).
    fn is_digest_file(&self, path: &Path) -> bool {
        match self.admin_relative(path) {
            Some(rel) => {
                rel == b"status"
                    || is_journal_file(rel)
                    || (rel.starts_with(b"info/") && rel.ends_with(b".md5sums"))
            }
            None => false,
        }
    }

    fn database_stamp(&self, path: &Path) -> Option<String> {
        let rel = self.admin_relative(path)?;
        let file = std::str::from_utf8(rel.strip_prefix(b"info/")?).ok()?;
        let (stem, _ext) = file.rsplit_once('.')?;
        let slot = *self.by_stem.get(stem)?;
        Some(self.pkgs.get(slot as usize)?.as_ref()?.version.clone())
    }

    fn is_temporary(&self, path: &Path) -> bool {
        let name = path.as_os_str().as_bytes();
        TEMP_SUFFIXES.iter().any(|s| name.ends_with(s.as_bytes()))
    }

    fn in_repository(&self, package: &str, arch: &str, version: &str) -> Option<bool> {
        let lists = self.root.join("var/lib/apt/lists");
        let signature = packages_files(&lists)?;
        let mut cache = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        if cache.signature != signature {
            match read_offered(&lists, &signature) {
                Ok(offered) => *cache = RepoCache { signature, offered },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read apt's package lists");
                    return None;
                }
            }
        }
        Some(cache.offered.contains(&offer_hash(package, arch, version)))
    }

    fn refresh_all(&mut self, changed: &[PathBuf]) -> io::Result<bool> {
        let rels: Vec<&[u8]> = changed
            .iter()
            .filter_map(|c| self.admin_relative(c))
            .collect();
        if rels.iter().any(|r| *r == b"diversions") {
            self.reload()?;
            return Ok(true);
        }
        let status_changed = rels.iter().any(|r| *r == b"status" || is_journal_file(r));
        // Packages whose `.list` or `.md5sums` changed, each once.
        let mut stems: BTreeSet<String> = rels
            .iter()
            .filter_map(|r| r.strip_prefix(b"info/"))
            .filter_map(|f| std::str::from_utf8(f).ok()?.rsplit_once('.'))
            .filter(|(_, ext)| matches!(*ext, "list" | "md5sums"))
            .map(|(stem, _)| stem.to_string())
            .collect();
        if !status_changed && stems.is_empty() {
            return Ok(false);
        }
        // `status` and its journal are parsed once for the whole batch: dpkg rewrites them
        // many times per run, and every package re-read needs them.
        let records = read_status(&self.admin)?;
        let mut versions = Vec::new();
        if status_changed {
            // Versions are set in place; only packages that came, went or changed their
            // conffiles are re-read.
            let (more, new_versions) = self.status_delta(&records);
            stems.extend(more);
            versions = new_versions;
        }
        // Everything is read before anything changes: an error leaves the index as it was.
        let reread = stems
            .iter()
            .map(|stem| self.read_package(stem, &records))
            .collect::<io::Result<Vec<_>>>()?;
        for (slot, version) in versions {
            if let Some(Some(p)) = self.pkgs.get_mut(slot as usize) {
                p.version = version;
            }
        }
        self.apply(reread);
        Ok(true)
    }

    fn len(&self) -> usize {
        self.table.len()
    }
}

/// An I/O error naming the file it is about.
fn context(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The file's bytes, `None` when it does not exist.
fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(context(path, e)),
    }
}

/// `/a/b` -> `/a`; `None` for `/a` (the root is never listed as a file).
fn parent(path: &[u8]) -> Option<&[u8]> {
    let slash = memchr::memrchr(b'/', path)?;
    (slash > 0).then(|| &path[..slash])
}

/// `updates/NNNN`: one of dpkg's journal files (not its `tmp.i` being written).
fn is_journal_file(rel: &[u8]) -> bool {
    rel.strip_prefix(b"updates/")
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// A 32-hex md5 as bytes.
fn parse_md5(hex_text: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

/// `<md5>  <path without leading />` lines -> path -> md5 (bad lines skipped).
fn parse_md5sums(text: &[u8]) -> HashMap<&[u8], [u8; 16]> {
    let mut out = HashMap::new();
    for line in text.split(|&b| b == b'\n') {
        if line.len() < 34 {
            continue;
        }
        let (hex_text, rest) = line.split_at(32);
        let path = rest.trim_ascii_start();
        let path = path.strip_prefix(b"/").unwrap_or(path);
        if let Some(md5) = parse_md5(hex_text) {
            out.insert(path, md5);
        }
    }
    out
}

/// `diversions`: triples of lines (from, to, diverting package), keyed by canonical `from`.
fn read_diversions(path: &Path, map: &PathMap) -> io::Result<HashMap<Vec<u8>, Diversion>> {
    let text = read_optional(path)?.unwrap_or_default();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let mut out = HashMap::new();
    for triple in lines.chunks_exact(3) {
        let (from, to, by) = (triple[0], triple[1], triple[2]);
        if from.is_empty() || to.is_empty() {
            continue;
        }
        let diversion = Diversion {
            to: map.canonical(to).into_owned(),
            by: String::from_utf8_lossy(by).into_owned(),
        };
        out.insert(map.canonical(from).into_owned(), diversion);
    }
    Ok(out)
}

/// `status`, then the `updates/` journal on top (as dpkg itself reads its database), one
/// record per (package, arch).
fn read_status(admin: &Path) -> io::Result<Vec<StatusRecord>> {
    let path = admin.join("status");
    let text = std::fs::read(&path).map_err(|e| context(&path, e))?;
    let mut records = parse_status(&text);
    let mut at: HashMap<(String, String), usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.name.clone(), r.arch.clone()), i))
        .collect();
    for file in journal_files(&admin.join("updates"))? {
        // A journal file can vanish when dpkg checkpoints while we read: status has it then.
        let Some(text) = read_optional(&file)? else {
            continue;
        };
        for r in parse_status(&text) {
            match at.get(&(r.name.clone(), r.arch.clone())) {
                Some(&i) => records[i] = r,
                None => {
                    at.insert((r.name.clone(), r.arch.clone()), records.len());
                    records.push(r);
                }
            }
        }
    }
    Ok(records)
}

/// `updates/NNNN` files in dpkg's order.
fn journal_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(context(dir, e)),
    };
    let mut numbered: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| context(dir, e))?;
        let name = entry.file_name();
        let digits = name.as_bytes();
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            let n = name
                .to_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX);
            numbered.push((n, entry.path()));
        }
    }
    numbered.sort();
    Ok(numbered.into_iter().map(|(_, p)| p).collect())
}

/// The paragraphs of a status file (fields we use only).
fn parse_status(text: &[u8]) -> Vec<StatusRecord> {
    let mut out = Vec::new();
    let mut current = StatusRecord::default();
    let mut field: &[u8] = b"";
    for line in text.split(|&b| b == b'\n') {
        if line.trim_ascii().is_empty() {
            if !current.name.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            current = StatusRecord::default();
            field = b"";
        } else if line[0] == b' ' || line[0] == b'\t' {
            if field.eq_ignore_ascii_case(b"Conffiles") {
                if let Some(c) = parse_conffile(line) {
                    current.conffiles.push(c);
                }
            }
        } else if let Some(colon) = memchr::memchr(b':', line) {
            field = &line[..colon];
            let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii());
            set_field(&mut current, field, value.into_owned());
        }
    }
    if !current.name.is_empty() {
        out.push(current);
    }
    out
}

fn set_field(r: &mut StatusRecord, field: &[u8], value: String) {
    match field.to_ascii_lowercase().as_slice() {
        b"package" => r.name = value,
        b"architecture" => r.arch = value,
        b"version" => r.version = value,
        b"multi-arch" => r.multi_arch_same = value == "same",
        b"status" => r.state = value.rsplit(' ').next().unwrap_or_default().to_string(),
        _ => {}
    }
}

/// ` /etc/x <md5> [obsolete] [remove-on-upgrade]` (the path may hold spaces: parse from the
/// right). `newconffile` (not configured yet) has no digest.
fn parse_conffile(line: &[u8]) -> Option<(Vec<u8>, Option<[u8; 16]>)> {
    let mut rest = line.trim_ascii();
    loop {
        let (head, last) = split_last_word(rest)?;
        if last == b"obsolete" || last == b"remove-on-upgrade" {
            rest = head;
            continue;
        }
        if !head.starts_with(b"/") {
            return None;
        }
        return Some((head.to_vec(), parse_md5(last)));
    }
}

fn split_last_word(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = memchr::memrchr(b' ', s)?;
    Some((s[..space].trim_ascii_end(), &s[space + 1..]))
}

/// `*_Packages` files in apt's lists dir with their (mtime, size); `None` when there are
/// none (or no such dir). Compressed lists (`_Packages.lz4`, `.gz`, ...) are not read.
fn packages_files(lists: &Path) -> Option<Vec<(OsString, Option<SystemTime>, u64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(lists).ok()?.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().ends_with(b"_Packages") {
            continue;
        }
        if let Ok(meta) = entry.metadata() {
            out.push((name, meta.modified().ok(), meta.len()));
        }
    }
    out.sort();
    (!out.is_empty()).then_some(out)
}

fn offer_hash(package: &str, arch: &str, version: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (package, arch, version).hash(&mut h);
    h.finish()
}

/// Every (package, arch, version) the lists offer, plus (package, "", version) so a caller
/// without an arch still gets an answer.
fn read_offered(
    lists: &Path,
    files: &[(OsString, Option<SystemTime>, u64)],
) -> io::Result<HashSet<u64>> {
    let mut offered = HashSet::new();
    for (name, _, _) in files {
        let path = lists.join(name);
        let file = std::fs::File::open(&path).map_err(|e| context(&path, e))?;
        let mut fields = [String::new(), String::new(), String::new()];
        for line in io::BufReader::new(file).split(b'\n') {
            let line = line.map_err(|e| context(&path, e))?;
            if line.trim_ascii().is_empty() {
                record_offer(&mut offered, &mut fields);
                continue;
            }
            let slot = if let Some(v) = line.strip_prefix(b"Package:") {
                Some((0, v))
            } else if let Some(v) = line.strip_prefix(b"Architecture:") {
                Some((1, v))
            } else {
                line.strip_prefix(b"Version:").map(|v| (2, v))
            };
            if let Some((i, v)) = slot {
                fields[i] = String::from_utf8_lossy(v.trim_ascii()).into_owned();
            }
        }
        record_offer(&mut offered, &mut fields);
    }
    Ok(offered)
}

fn record_offer(offered: &mut HashSet<u64>, fields: &mut [String; 3]) {
    let [package, arch, version] = fields;
    if !package.is_empty() && !version.is_empty() {
        offered.insert(offer_hash(package, arch, version));
        offered.insert(offer_hash(package, "", version));
    }
    fields.iter_mut().for_each(String::clear);
}

/// dpkg's version ordering (deb-version(7)): epoch numerically, then upstream version and
/// revision with `verrevcmp`.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split_version(a);
    let (eb, ub, rb) = split_version(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

/// `[epoch:]upstream[-revision]`: the epoch is before the first `:`, the revision after the
/// last `-`.
fn split_version(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// dpkg's character weight: `~` before the end of the string, letters before other
/// characters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit runs (by `order`) and digit runs (numerically).
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests;
