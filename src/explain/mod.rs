//! The stage between compare and commit: turns a compared change into an explained one
//! (package verdict, severity, reason), the same for `check`, rescans and the daemon.
//!
//! Severity is decided from facts fimd verified itself (a digest match, a lock held, a
//! version recorded), never from a process name (DESIGN.md "Severity"). A change to a
//! package's file while that package manager's transaction runs and before its digest is
//! recorded is *deferred*: the caller scans the path again later, and after `settle` (or as
//! soon as the transaction ends) it is decided for good.

mod fresh;
pub mod rules;
mod verify;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::PackagesConfig;
use crate::event::{EventKind, PackageInfo, Severity};
use crate::packages::{dpkg::DpkgIndex, rpm::RpmIndex, PackageDb};
use crate::policy::Policy;
use crate::state::{FileKind, FileState, Recorded};

pub use verify::Match;

/// One compared change, before it becomes an event.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub kind: EventKind,
    pub path: &'a Path,
    pub old: Option<&'a Recorded>,
    pub new: Option<&'a FileState>,
    /// Attribute names that differ (empty for added/removed).
    pub changed: &'a [String],
    /// Either version is sensitive.
    pub sensitive: bool,
}

/// What the explain stage says about a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Record(Box<Explanation>),
    /// Not yet: a package transaction may still record this file's digest. Scan it again.
    Defer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub severity: Severity,
    pub reason: String,
    pub package: Option<PackageInfo>,
}

/// The package stamp kept with a baseline row (`Recorded::package`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stamp {
    /// A package's file: which package and version it came from.
    Owned {
        manager: String,
        name: String,
        arch: String,
        version: String,
    },
    /// A package database's own file: the state it described ([`PackageDb::database_stamp`]).
    Database { manager: String, db: String },
}

impl Stamp {
    pub fn parse(text: Option<&str>) -> Option<Stamp> {
        serde_json::from_str(text?).ok()
    }
    fn text(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }
}

/// One loaded package database and how it is kept fresh.
struct Slot {
    db: Box<dyn PackageDb>,
    fresh: fresh::Freshness,
}

/// The explain stage's state: the package indexes, the policy (severity floors), the paths
/// waiting for a transaction to settle.
pub struct Explainer {
    slots: Mutex<Vec<Slot>>,
    /// What to load at the first use ([`Explainer::slots`]).
    pending: Mutex<Option<PackagesConfig>>,
    policy: Arc<Policy>,
    /// The file system the package databases describe; path rules look at paths below it.
    root: PathBuf,
    settle: Duration,
    /// Deferred paths and when they were first deferred.
    waiting: Mutex<HashMap<PathBuf, Instant>>,
}

impl std::fmt::Debug for Explainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explainer")
            .field("root", &self.root)
            .field("databases", &self.describe())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Explainer {
    /// Without package databases: severity from the path rules alone.
    pub fn without_packages(policy: Arc<Policy>) -> Explainer {
        Explainer {
            slots: Mutex::new(Vec::new()),
            pending: Mutex::new(None),
            policy,
            root: PathBuf::from("/"),
            settle: Duration::ZERO,
            waiting: Mutex::default(),
        }
    }

    /// An explain stage over these databases (tests, and callers that loaded them already).
    /// They are not refreshed from disk.
    pub fn with_databases(
        dbs: Vec<Box<dyn PackageDb>>,
        root: PathBuf,
        settle: Duration,
        policy: Arc<Policy>,
    ) -> Explainer {
        let slots = dbs
            .into_iter()
            .map(|db| Slot {
                db,
                fresh: fresh::Freshness::default(),
            })
            .collect();
        Explainer {
            slots: Mutex::new(slots),
            pending: Mutex::new(None),
            policy,
            root,
            settle,
            waiting: Mutex::default(),
        }
    }

    /// The explain stage for `[packages]`. The databases are read at the first use (the first
    /// change to explain or baseline row to stamp), so a `check` that finds nothing changed
    /// never reads them.
    pub fn load(cfg: &PackagesConfig, policy: Arc<Policy>) -> Explainer {
        Explainer {
            slots: Mutex::new(Vec::new()),
            pending: Mutex::new(cfg.enabled.then(|| cfg.clone())),
            policy,
            root: cfg.root.clone(),
            settle: cfg.settle,
            waiting: Mutex::default(),
        }
    }

    /// The loaded databases (reading them first if this is the first use).
    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        let mut slots = lock(&self.slots);
        if let Some(cfg) = lock(&self.pending).take() {
            *slots = load_slots(&cfg);
        }
        slots
    }

    /// Is a package manager's transaction running now (its lock held)? A few `fcntl` probes.
    pub fn transaction_running(&self) -> bool {
        self.slots().iter().any(|s| s.db.transaction_running())
    }

    /// `dpkg (84213 paths), rpm (0 paths)` or `none`, for the startup log and `status`.
    pub fn describe(&self) -> String {
        let slots = self.slots();
        if slots.is_empty() {
            return "none".to_string();
        }
        slots
            .iter()
            .map(|s| format!("{} ({} paths)", s.db.manager().as_str(), s.db.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reload what changed in the package databases since the last call (a few `stat`s when
    /// nothing did). Call before explaining a batch.
    pub fn refresh(&self) {
        for slot in self.slots().iter_mut() {
            let n = slot.fresh.update(slot.db.as_mut());
            if n > 0 {
                tracing::debug!(
                    manager = slot.db.manager().as_str(),
                    reloaded = n,
                    "package index refreshed"
                );
            }
        }
    }

    /// The stamp to keep with a baseline row of `path` (None: no package knows it).
    pub fn stamp(&self, path: &Path) -> Option<String> {
        let slots = self.slots();
        for slot in slots.iter() {
            let db = slot.db.as_ref();
            let manager = db.manager().as_str().to_string();
            if db.is_database_file(path) {
                let db_stamp = db.database_stamp(path)?;
                return Stamp::Database {
                    manager,
                    db: db_stamp,
                }
                .text();
            }
            if let Some(o) = db.owner(path) {
                return Stamp::Owned {
                    manager,
                    name: o.package,
                    arch: o.arch,
                    version: o.version,
                }
                .text();
            }
        }
        None
    }

    /// Explain one change (may read the file again to check a non-SHA-256 digest: call from
    /// a blocking thread).
    pub fn explain(&self, c: &Change) -> Verdict {
        let verdict = self.package_verdict(c);
        if verdict == PkgVerdict::Defer {
            return Verdict::Defer;
        }
        lock(&self.waiting).remove(c.path);
        let (severity, reason) = self.rate(c, &verdict);
        Verdict::Record(Box::new(Explanation {
            severity,
            reason,
            package: verdict.into_package(),
        }))
    }

    /// Deferred now? True while `running` and the path has waited less than `settle`.
    fn keep_waiting(&self, path: &Path, running: bool) -> bool {
        let mut waiting = lock(&self.waiting);
        if !running {
            waiting.remove(path);
            return false;
        }
        let first = *waiting
            .entry(path.to_path_buf())
            .or_insert_with(Instant::now);
        if first.elapsed() < self.settle {
            return true;
        }
        waiting.remove(path);
        false
    }

    /// What the package databases say about this change.
    fn package_verdict(&self, c: &Change) -> PkgVerdict {
        let slots = self.slots();
        let any_running = || slots.iter().any(|s| s.db.transaction_running());
        let old_stamp = Stamp::parse(c.old.and_then(|o| o.package.as_deref()));
        for slot in slots.iter() {
            let db = slot.db.as_ref();
            if db.is_database_file(c.path) {
                return database_verdict(db, c, old_stamp.as_ref());
            }
        }
        if slots.iter().any(|s| s.db.is_temporary(c.path)) {
            // `.dpkg-new` and friends exist only within a transaction: wait for it to end.
            if self.keep_waiting(c.path, any_running()) {
                return PkgVerdict::Defer;
            }
        }
        let owned = slots
            .iter()
            .find_map(|s| s.db.owner(c.path).map(|o| (s.db.as_ref(), o)));
        let Some((db, owner)) = owned else {
            return match (c.kind, old_stamp) {
                // The package no longer lists the file: it was removed with the package (or
                // a new version no longer ships it).
                (
                    EventKind::Removed,
                    Some(Stamp::Owned {
                        manager,
                        name,
                        arch,
                        version,
                    }),
                ) => PkgVerdict::RemovedByPackage(PackageInfo {
                    manager,
                    name,
                    arch,
                    version,
                    old_version: None,
                    action: Some("remove".into()),
                    verified: false,
                    digest: None,
                    conffile: false,
                }),
                _ if any_running() => PkgVerdict::DuringTransaction,
                _ => PkgVerdict::None,
            };
        };
        let running = db.transaction_running();
        let old_version = match &old_stamp {
            Some(Stamp::Owned { name, version, .. }) if *name == owner.package => {
                Some(version.clone())
            }
            _ => None,
        };
        let action = action_of(db, c.kind, old_version.as_deref(), &owner.version);
        let info = |verified: bool, action: Option<String>| PackageInfo {
            manager: owner.manager.as_str().to_string(),
            name: owner.package.clone(),
            arch: owner.arch.clone(),
            version: owner.version.clone(),
            old_version: old_version.clone(),
            action,
            verified,
            digest: owner.digest.as_ref().map(|d| d.algo.as_str().to_string()),
            conffile: owner.conffile,
        };
        if c.kind == EventKind::Removed {
            // Still listed by its package: removed by hand, or by a transaction not done yet.
            if self.keep_waiting(c.path, running) {
                return PkgVerdict::Defer;
            }
            return PkgVerdict::Unexplained(info(false, None));
        }
        let Some(new) = c.new else {
            return PkgVerdict::Unexplained(info(false, None));
        };
        // The package manager replaces a file (new inode) or writes a new one; a chmod or
        // chown in place is not a package action, whatever the content.
        let replaced = c.kind == EventKind::Added
            || c.changed
                .iter()
                .any(|a| a == "sha256" || a == "inode" || a == "type");
        let version_moved = c.kind == EventKind::Added
            || old_version.as_deref().is_some_and(|v| v != owner.version);
        let digest_match = match (&owner.digest, new.sha256, new.kind) {
            (Some(d), Some(sha), FileKind::File) => verify::content_matches(c.path, &sha, d),
            _ => Match::Unknown,
        };
        match digest_match {
            Match::Yes if replaced => PkgVerdict::Verified(info(true, Some(action))),
            Match::Yes => PkgVerdict::Unexplained(info(true, None)),
            Match::ChangedMeanwhile => {
                if self.keep_waiting(c.path, true) {
                    PkgVerdict::Defer
                } else {
                    PkgVerdict::Mismatch(info(false, None))
                }
            }
            Match::Unknown if owner.digest.is_none() || new.kind != FileKind::File => {
                // The package records no digest for it (a symlink, a conffile not yet
                // configured): explained only by the package's own transaction.
                if replaced && (version_moved || running) {
                    PkgVerdict::NoDigest(info(false, Some(action)))
                } else {
                    PkgVerdict::Unexplained(info(false, None))
                }
            }
            Match::No | Match::Unknown => {
                if self.keep_waiting(c.path, running) {
                    PkgVerdict::Defer
                } else if owner.conffile {
                    PkgVerdict::ModifiedConffile(info(false, None))
                } else if digest_match == Match::Unknown {
                    PkgVerdict::Unverifiable(info(false, None))
                } else {
                    PkgVerdict::Mismatch(info(false, None))
                }
            }
        }
    }

    /// DESIGN.md "Severity": the first rule that matches wins.
    fn rate(&self, c: &Change, v: &PkgVerdict) -> (Severity, String) {
        // Path rules look at the path as the package root's system sees it.
        let rel = match c.path.strip_prefix(&self.root) {
            Ok(r) if self.root != Path::new("/") => Path::new("/").join(r),
            _ => c.path.to_path_buf(),
        };
        // 1. critical
        if c.old.is_some_and(|o| o.tampered) {
            return (
                Severity::Critical,
                format!(
                    "baseline row for {} was altered outside fimd",
                    crate::event::display_path(c.path)
                ),
            );
        }
        if let PkgVerdict::Mismatch(p) = v {
            return (
                Severity::Critical,
                format!("content differs from {}'s recorded digest", p.name),
            );
        }
        if let Some(bits) = gained_special_bits(c) {
            let verified_install =
                c.kind == EventKind::Added && matches!(v, PkgVerdict::Verified(_));
            if !verified_install {
                return (Severity::Critical, format!("gained the {bits} bit"));
            }
        }
        if let Some(caps) = gained_caps(c) {
            let verified_install =
                c.kind == EventKind::Added && matches!(v, PkgVerdict::Verified(_));
            if !verified_install {
                return (Severity::Critical, format!("gained {caps}"));
            }
        }
        if rules::is_ld_preload(&rel) {
            return (
                Severity::Critical,
                "/etc/ld.so.preload changed: every program loads what it names".to_string(),
            );
        }
        if let PkgVerdict::DatabaseTampered(manager) = v {
            return (
                Severity::Critical,
                format!("{manager} digest file changed while no package transaction ran"),
            );
        }
        // 3. explained by the package manager (before rule 2, which is for unexplained
        // changes only).
        match v {
            PkgVerdict::Verified(p) => {
                let action = p.action.as_deref().unwrap_or("install");
                if action == "downgrade" {
                    return (
                        Severity::Medium,
                        format!("verified downgrade of {}", versions(p)),
                    );
                }
                if self.in_repository(p) == Some(false) {
                    return (
                        Severity::Medium,
                        format!(
                            "verified {action} of {}, installed from a local file, not from a configured repository",
                            versions(p)
                        ),
                    );
                }
                return (
                    Severity::Low,
                    format!("verified {action} of {}", versions(p)),
                );
            }
            PkgVerdict::RemovedByPackage(p) => {
                return (
                    Severity::Low,
                    format!("removed with package {} {}", p.name, p.version),
                )
            }
            PkgVerdict::NoDigest(p) => {
                let action = p.action.as_deref().unwrap_or("install");
                return (
                    Severity::Low,
                    format!(
                        "{action} of {} (the package records no digest for it)",
                        versions(p)
                    ),
                );
            }
            PkgVerdict::DatabaseUpdated(what) => return (Severity::Low, what.clone()),
            PkgVerdict::DuringTransaction => {
                return (
                    Severity::Medium,
                    "written during a package transaction; not verifiable".to_string(),
                )
            }
            _ => {}
        }
        // 2. high (unexplained)
        let floor = self.policy.severity_floor(c.path);
        let acl_changed = c.changed.iter().any(|a| a == "acl");
        let mut rated = if let Some(flag) = gained_flag(c) {
            (Severity::High, format!("{flag} flag set"))
        } else if acl_changed && (c.sensitive || rules::is_high_path(&rel)) {
            let what = if c.sensitive {
                "a sensitive file"
            } else {
                rules::high_path_kind(&rel)
            };
            (Severity::High, format!("ACL changed on {what}"))
        } else if c.sensitive {
            (Severity::High, "sensitive file changed".to_string())
        } else if rules::is_high_path(&rel) {
            (
                Severity::High,
                format!(
                    "{} changed outside any package transaction",
                    rules::high_path_kind(&rel)
                ),
            )
        } else {
            // 4. medium, 5. info
            match v {
                PkgVerdict::ModifiedConffile(_) => {
                    (Severity::Medium, "locally modified conffile".to_string())
                }
                PkgVerdict::Unverifiable(p) => (
                    Severity::Medium,
                    format!("{} records a digest fimd cannot check", p.name),
                ),
                PkgVerdict::DatabaseOther(manager) => (
                    Severity::Medium,
                    format!("{manager} database file changed outside a package transaction"),
                ),
                _ if is_dir_mtime_only(c) => (
                    Severity::Info,
                    "only the directory's modification time changed".to_string(),
                ),
                _ => (
                    Severity::Medium,
                    "changed outside any package transaction".to_string(),
                ),
            }
        };
        if let Some(floor) = floor.filter(|f| *f > rated.0) {
            rated = (
                floor,
                format!("{} (under a watch with severity = {floor})", rated.1),
            );
        }
        rated
    }

    fn in_repository(&self, p: &PackageInfo) -> Option<bool> {
        let slots = self.slots();
        slots
            .iter()
            .find(|s| s.db.manager().as_str() == p.manager)
            .and_then(|s| s.db.in_repository(&p.name, &p.arch, &p.version))
    }
}

/// Rate the events recorded before fimd had severities (an upgraded database), by the same
/// rules as new ones, with what their rows still tell (no package verdict: unexplained).
pub async fn rate_unrated(
    store: &crate::store::Store,
    explainer: &Explainer,
) -> Result<usize, crate::store::StoreError> {
    let mut done = 0;
    loop {
        let events = store.unrated_events(1000).await?;
        if events.is_empty() {
            return Ok(done);
        }
        let rated: Vec<(i64, Severity, String)> = events
            .iter()
            .filter_map(|e| {
                let (severity, reason) = explainer.rate_recorded(e);
                Some((e.id?, severity, reason))
            })
            .collect();
        store.rate_events(&rated).await?;
        done += rated.len();
    }
}

impl Explainer {
    /// The severity of an already recorded event, from its JSON alone.
    pub fn rate_recorded(&self, e: &crate::event::Event) -> (Severity, String) {
        let state = |s: &Option<crate::event::StateJson>| {
            s.as_ref().map(|s| FileState {
                kind: s.file_kind().unwrap_or(FileKind::File),
                size: s.size,
                mode: u32::from_str_radix(&s.mode, 8).unwrap_or(0),
                uid: s.uid,
                gid: s.gid,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: s.inode,
                nlink: s.nlink,
                sha256: None,
                link_target: None,
                attrs: None,
            })
        };
        let (old_state, new) = (state(&e.old), state(&e.new));
        let old = old_state.map(|state| Recorded {
            state,
            sensitive: e.sensitive,
            hashed_at_ns: 0,
            package: None,
            tampered: false,
        });
        let path = e.path_buf();
        let change = Change {
            kind: e.event,
            path: &path,
            old: old.as_ref(),
            new: new.as_ref(),
            changed: &e.changed,
            sensitive: e.sensitive,
        };
        self.rate(&change, &PkgVerdict::None)
    }
}

/// Read the package databases `cfg` names (blocking: reads them whole). A missing database
/// is skipped silently (packages are "off automatically"); an unreadable one is a warning
/// and skipped.
fn load_slots(cfg: &PackagesConfig) -> Vec<Slot> {
    let mut slots = Vec::new();
    if cfg.enabled {
        let admin = cfg.dpkg_admin_dir();
        if admin.join("status").is_file() {
            // dpkg's journal (`updates/`) holds the new version and conffile digests
            // while a transaction runs; `status` gets them only at its end.
            let tracked = [admin.join("status"), admin.join("diversions")];
            let dirs = [admin.join("info"), admin.join("updates")];
            let fresh = fresh::Freshness::new(&tracked, &dirs);
            match DpkgIndex::load(&admin, &cfg.root) {
                Ok(db) => slots.push(Slot {
                    db: Box::new(db),
                    fresh,
                }),
                Err(e) => {
                    tracing::warn!(admin_dir = %admin.display(), error = %e, "cannot load the dpkg database; changes are not checked against it")
                }
            }
        }
        if let Some(dir) = cfg
            .rpm_db_dir()
            .filter(|d| d.join("rpmdb.sqlite").is_file())
        {
            let tracked = [dir.join("rpmdb.sqlite"), dir.join("rpmdb.sqlite-wal")];
            let fresh = fresh::Freshness::new(&tracked, &[]);
            match RpmIndex::load(&dir, &cfg.root) {
                Ok(db) => slots.push(Slot {
                    db: Box::new(db),
                    fresh,
                }),
                Err(e) => {
                    tracing::warn!(rpm_db = %dir.display(), error = %e, "cannot load the rpm database; changes are not checked against it")
                }
            }
        }
    }
    slots
}

/// The package side of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PkgVerdict {
    /// No package owns it and no transaction runs.
    None,
    Defer,
    /// Content matches the package's digest and the package manager replaced the file.
    Verified(PackageInfo),
    /// Removed, and its package no longer lists it.
    RemovedByPackage(PackageInfo),
    /// Replaced by its package's transaction; the package records no digest for it.
    NoDigest(PackageInfo),
    /// Unowned, written while a transaction ran.
    DuringTransaction,
    /// A package's non-conffile whose content differs from the recorded digest.
    Mismatch(PackageInfo),
    /// A package's conffile edited (its content differs from the shipped one).
    ModifiedConffile(PackageInfo),
    /// The digest is of an algorithm fimd does not compute.
    Unverifiable(PackageInfo),
    /// Owned, but changed in a way no package action explains (chmod, removal by hand).
    Unexplained(PackageInfo),
    /// A package database file updated by the package manager (reason given).
    DatabaseUpdated(String),
    /// A digest file of this manager changed with no transaction and no version change.
    DatabaseTampered(&'static str),
    /// Another database file changed that way.
    DatabaseOther(&'static str),
}

impl PkgVerdict {
    fn into_package(self) -> Option<PackageInfo> {
        match self {
            PkgVerdict::Verified(p)
            | PkgVerdict::RemovedByPackage(p)
            | PkgVerdict::NoDigest(p)
            | PkgVerdict::Mismatch(p)
            | PkgVerdict::ModifiedConffile(p)
            | PkgVerdict::Unverifiable(p)
            | PkgVerdict::Unexplained(p) => Some(p),
            _ => None,
        }
    }
}

/// A file of the package database itself changed: by the package manager (a transaction
/// runs, or the state it describes moved on: a new version), or by someone else.
fn database_verdict(db: &dyn PackageDb, c: &Change, old: Option<&Stamp>) -> PkgVerdict {
    let manager = db.manager().as_str();
    let now = db.database_stamp(c.path);
    let old = match old {
        Some(Stamp::Database { db, .. }) => Some(db.as_str()),
        _ => None,
    };
    let content_changed = c.kind != EventKind::Modified || c.changed.iter().any(|a| a == "sha256");
    if db.transaction_running() {
        return PkgVerdict::DatabaseUpdated(format!(
            "{manager} database updated by a running package transaction"
        ));
    }
    if now.is_some() && now.as_deref() != old {
        let what = match c.kind {
            EventKind::Removed => "database entry removed".to_string(),
            _ => format!("database updated (now {})", now.as_deref().unwrap_or("?")),
        };
        return PkgVerdict::DatabaseUpdated(format!("{manager} {what}"));
    }
    if c.kind == EventKind::Removed && now.is_none() {
        return PkgVerdict::DatabaseUpdated(format!(
            "{manager} database entry removed with its package"
        ));
    }
    if !content_changed {
        return PkgVerdict::DatabaseUpdated(format!(
            "{manager} database file rewritten with the same content"
        ));
    }
    if db.is_digest_file(c.path) {
        PkgVerdict::DatabaseTampered(manager)
    } else {
        PkgVerdict::DatabaseOther(manager)
    }
}

/// install, upgrade, downgrade or reinstall, by the manager's own version ordering.
fn action_of(db: &dyn PackageDb, kind: EventKind, old: Option<&str>, new: &str) -> String {
    let action = match (kind, old) {
        (EventKind::Added, _) => "install",
        (EventKind::Removed, _) => "remove",
        // Recorded before fimd knew its package: the package moved on since.
        (_, None) => "upgrade",
        (_, Some(old)) => match db.compare_versions(new, old) {
            Ordering::Greater => "upgrade",
            Ordering::Less => "downgrade",
            Ordering::Equal => "reinstall",
        },
    };
    action.to_string()
}

/// `openssh-server 1:9.2p1-2+deb12u2 -> 1:9.2p1-2+deb12u3` (or one version).
fn versions(p: &PackageInfo) -> String {
    match &p.old_version {
        Some(old) if *old != p.version => format!("{} {old} -> {}", p.name, p.version),
        _ => format!("{} {}", p.name, p.version),
    }
}

/// "setuid" / "setgid" / "setuid and setgid" when the new version gained them.
fn gained_special_bits(c: &Change) -> Option<&'static str> {
    // Directories: a setgid directory only passes its group on; no privilege is gained.
    let new = c.new.filter(|n| n.kind == FileKind::File)?;
    let old_mode = c.old.map(|o| o.state.mode).unwrap_or(0);
    let gained = new.mode & !old_mode & 0o6000;
    match gained {
        0 => None,
        0o4000 => Some("setuid"),
        0o2000 => Some("setgid"),
        _ => Some("setuid and setgid"),
    }
}

/// Capabilities the new version has that the old lacked (`cap_setuid+ep`).
fn gained_caps(c: &Change) -> Option<String> {
    let new = c.new?.attrs.as_ref()?.caps.as_deref()?;
    let old = match c.old {
        // Not recorded before: nothing to compare with (filled in silently).
        Some(o) => o.state.attrs.as_ref()?.caps.as_deref(),
        None => None,
    };
    crate::scan::attrs::caps_text_gained(old, new)
}

/// "immutable" / "append-only" when the new version gained that inode flag.
fn gained_flag(c: &Change) -> Option<&'static str> {
    let new = c.new?.attrs.as_ref()?.flags.clone().unwrap_or_default();
    let old = match c.old {
        Some(o) => o.state.attrs.as_ref()?.flags.clone().unwrap_or_default(),
        None => String::new(),
    };
    if new.contains('i') && !old.contains('i') {
        Some("immutable")
    } else if new.contains('a') && !old.contains('a') {
        Some("append-only")
    } else {
        None
    }
}

fn is_dir_mtime_only(c: &Change) -> bool {
    c.new.is_some_and(|n| n.kind == FileKind::Dir) && c.changed.iter().all(|a| a == "mtime")
}

#[cfg(test)]
mod tests;
