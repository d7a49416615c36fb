//! The severity rules and package verdicts against a fake package database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::packages::{DigestAlgo, FileDigest, Manager, Owner};

/// A package database in memory: owners by path, a transaction flag the test flips.
struct FakeDb {
    owners: HashMap<PathBuf, Owner>,
    running: Arc<AtomicBool>,
    stamps: HashMap<PathBuf, String>,
}

impl PackageDb for FakeDb {
    fn manager(&self) -> Manager {
        Manager::Dpkg
    }
    fn owner(&self, path: &Path) -> Option<Owner> {
        self.owners.get(path).cloned()
    }
    fn transaction_running(&self) -> bool {
        self.running.load(AtomicOrdering::SeqCst)
    }
    fn compare_versions(&self, a: &str, b: &str) -> Ordering {
        a.cmp(b)
    }
    fn is_database_file(&self, path: &Path) -> bool {
        path.starts_with("/var/lib/dpkg")
    }
    fn is_digest_file(&self, path: &Path) -> bool {
        path.to_string_lossy().ends_with(".md5sums")
    }
    fn database_stamp(&self, path: &Path) -> Option<String> {
        self.stamps.get(path).cloned()
    }
    fn is_temporary(&self, path: &Path) -> bool {
        path.to_string_lossy().ends_with(".dpkg-new")
    }
    fn in_repository(&self, _: &str, _: &str, version: &str) -> Option<bool> {
        Some(!version.contains("local"))
    }
    fn refresh_all(&mut self, _: &[PathBuf]) -> std::io::Result<bool> {
        Ok(false)
    }
    fn len(&self) -> usize {
        self.owners.len()
    }
}

fn md5(data: &[u8]) -> FileDigest {
    use md5::Digest;
    FileDigest {
        algo: DigestAlgo::Md5,
        bytes: md5::Md5::digest(data).to_vec(),
    }
}

fn owner(version: &str, digest: Option<FileDigest>, conffile: bool) -> Owner {
    Owner {
        manager: Manager::Dpkg,
        package: "tool".into(),
        arch: "all".into(),
        version: version.into(),
        digest,
        conffile,
    }
}

fn file(mode: u32, data: &[u8]) -> FileState {
    use sha2::Digest;
    FileState {
        kind: FileKind::File,
        size: data.len() as u64,
        mode,
        uid: 0,
        gid: 0,
        mtime_ns: 1,
        ctime_ns: 2,
        inode: 7,
        nlink: 1,
        sha256: Some(sha2::Sha256::digest(data).into()),
        link_target: None,
        attrs: None,
    }
}

fn recorded(state: FileState, stamp_version: Option<&str>) -> Recorded {
    Recorded {
        state,
        sensitive: false,
        hashed_at_ns: 0,
        tampered: false,
        package: stamp_version.and_then(|v| {
            Stamp::Owned {
                manager: "dpkg".into(),
                name: "tool".into(),
                arch: "all".into(),
                version: v.into(),
            }
            .text()
        }),
    }
}

struct Rig {
    explainer: Explainer,
    running: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
    bin: PathBuf,
    conf: PathBuf,
}

/// A root with `usr/bin/tool` (owned, v2 digest of "v2") and `etc/tool.conf` (conffile).
fn rig(settle: Duration, watch_floor: Option<Severity>) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let bin = root.join("usr/bin/tool");
    let conf = root.join("etc/tool.conf");
    std::fs::create_dir_all(bin.parent().expect("parent")).expect("mkdir");
    std::fs::create_dir_all(conf.parent().expect("parent")).expect("mkdir");
    let running = Arc::new(AtomicBool::new(false));
    let mut owners = HashMap::new();
    owners.insert(bin.clone(), owner("2", Some(md5(b"v2")), false));
    owners.insert(conf.clone(), owner("2", Some(md5(b"shipped")), true));
    let sshd = root.join("etc/ssh/sshd_config");
    owners.insert(sshd, owner("2", Some(md5(b"shipped")), true));
    let db = FakeDb {
        owners,
        running: running.clone(),
        stamps: HashMap::new(),
    };
    let mut cfg = Config::default();
    cfg.users.authorized_keys = false;
    cfg.watch = vec![crate::config::WatchConfig {
        path: root.clone(),
        recursive: true,
        extensions: vec![],
        include: vec![],
        exclude: vec![],
        severity: watch_floor,
        optional: false,
    }];
    let policy = crate::policy::Policy::from_config(&cfg, Path::new("test")).expect("policy");
    let explainer = Explainer::with_databases(vec![Box::new(db)], root, settle, Arc::new(policy));
    Rig {
        explainer,
        running,
        _dir: dir,
        bin,
        conf,
    }
}

fn modified<'a>(
    path: &'a Path,
    old: &'a Recorded,
    new: &'a FileState,
    changed: &'a [String],
) -> Change<'a> {
    Change {
        kind: EventKind::Modified,
        path,
        old: Some(old),
        new: Some(new),
        changed,
        sensitive: false,
    }
}

fn explained(v: Verdict) -> Explanation {
    match v {
        Verdict::Record(x) => *x,
        Verdict::Defer => panic!("deferred"),
    }
}

fn content_changed() -> Vec<String> {
    vec!["sha256".into(), "inode".into(), "ctime".into()]
}

#[test]
fn verified_upgrade_is_low_and_names_both_versions() {
    let r = rig(Duration::from_secs(600), None);
    std::fs::write(&r.bin, b"v2").expect("write");
    let old = recorded(file(0o755, b"v1"), Some("1"));
    let new = file(0o755, b"v2");
    let changed = content_changed();
    let x = explained(r.explainer.explain(&modified(&r.bin, &old, &new, &changed)));
    assert_eq!(x.severity, Severity::Low, "{x:?}");
    assert_eq!(x.reason, "verified upgrade of tool 1 -> 2");
    let p = x.package.expect("package");
    assert!(p.verified);
    assert_eq!(p.action.as_deref(), Some("upgrade"));
    assert_eq!(p.old_version.as_deref(), Some("1"));
    assert_eq!(p.digest.as_deref(), Some("md5"));
}

#[test]
fn downgrade_and_local_package_are_medium() {
    let r = rig(Duration::from_secs(600), None);
    std::fs::write(&r.bin, b"v2").expect("write");
    let old = recorded(file(0o755, b"v3"), Some("3"));
    let new = file(0o755, b"v2");
    let changed = content_changed();
    let x = explained(r.explainer.explain(&modified(&r.bin, &old, &new, &changed)));
    assert_eq!(
        (x.severity, x.reason.as_str()),
        (Severity::Medium, "verified downgrade of tool 3 -> 2")
    );
}

#[test]
fn replaced_binary_is_critical() {
    let r = rig(Duration::from_secs(600), None);
    std::fs::write(&r.bin, b"evil").expect("write");
    let old = recorded(file(0o755, b"v2"), Some("2"));
    let new = file(0o755, b"evil");
    let changed = content_changed();
    let x = explained(r.explainer.explain(&modified(&r.bin, &old, &new, &changed)));
    assert_eq!(x.severity, Severity::Critical);
    assert_eq!(x.reason, "content differs from tool's recorded digest");
    let p = x.package.expect("package");
    assert!(!p.verified);
    assert_eq!(p.action, None);
}

#[test]
fn mismatch_during_a_transaction_waits_then_is_decided() {
    let r = rig(Duration::from_secs(600), None);
    std::fs::write(&r.bin, b"evil").expect("write");
    let old = recorded(file(0o755, b"v1"), Some("1"));
    let new = file(0o755, b"evil");
    let changed = content_changed();
    r.running.store(true, AtomicOrdering::SeqCst);
    assert_eq!(
        r.explainer.explain(&modified(&r.bin, &old, &new, &changed)),
        Verdict::Defer
    );
    assert_eq!(
        r.explainer.explain(&modified(&r.bin, &old, &new, &changed)),
        Verdict::Defer
    );
    // The transaction ended and the digest still differs.
    r.running.store(false, AtomicOrdering::SeqCst);
    let x = explained(r.explainer.explain(&modified(&r.bin, &old, &new, &changed)));
    assert_eq!(x.severity, Severity::Critical);
}

#[test]
fn settle_bounds_the_wait() {
    let r = rig(Duration::ZERO, None);
    std::fs::write(&r.bin, b"evil").expect("write");
    let old = recorded(file(0o755, b"v1"), Some("1"));
    let new = file(0o755, b"evil");
    let changed = content_changed();
    r.running.store(true, AtomicOrdering::SeqCst);
    let x = explained(r.explainer.explain(&modified(&r.bin, &old, &new, &changed)));
    assert_eq!(
        x.severity,
        Severity::Critical,
        "a held lock must not hide a change forever"
    );
}

#[test]
fn edited_conffile_is_medium_unless_its_path_is_high() {
    let r = rig(Duration::from_secs(600), None);
    std::fs::write(&r.conf, b"edited").expect("write");
    let old = recorded(file(0o644, b"shipped"), Some("2"));
    let new = file(0o644, b"edited");
    let changed = vec!["sha256".to_string(), "size".into()];
    let x = explained(
        r.explainer
            .explain(&modified(&r.conf, &old, &new, &changed)),
    );
    assert_eq!(
        (x.severity, x.reason.as_str()),
        (Severity::Medium, "locally modified conffile")
    );
    let sshd = r.conf.parent().expect("etc").join("ssh/sshd_config");
    std::fs::create_dir_all(sshd.parent().expect("ssh")).expect("mkdir");
    std::fs::write(&sshd, b"edited").expect("write");
    let x = explained(r.explainer.explain(&modified(&sshd, &old, &new, &changed)));
    assert_eq!(x.severity, Severity::High, "{x:?}");
    assert_eq!(
        x.reason,
        "SSH daemon configuration changed outside any package transaction"
    );
}

#[test]
fn setuid_gained_is_critical_even_on_a_package_file() {
    let r = rig(Duration::from_secs(600), None);
    std::fs::write(&r.bin, b"v2").expect("write");
    let old = recorded(file(0o755, b"v2"), Some("2"));
    let new = file(0o4755, b"v2");
    let changed = vec!["mode".to_string(), "ctime".into()];
    let x = explained(r.explainer.explain(&modified(&r.bin, &old, &new, &changed)));
    assert_eq!(
        (x.severity, x.reason.as_str()),
        (Severity::Critical, "gained the setuid bit")
    );
    // The chmod is no package action even though the content still matches.
    let p = x.package.expect("package");
    assert!(p.verified && p.action.is_none());
}

#[test]
fn removal_by_the_package_is_low_by_hand_is_not() {
    let r = rig(Duration::from_secs(600), None);
    let gone = r.bin.with_file_name("old-tool");
    let old = recorded(file(0o755, b"x"), Some("1"));
    let c = Change {
        kind: EventKind::Removed,
        path: &gone,
        old: Some(&old),
        new: None,
        changed: &[],
        sensitive: false,
    };
    let x = explained(r.explainer.explain(&c));
    assert_eq!(
        (x.severity, x.reason.as_str()),
        (Severity::Low, "removed with package tool 1")
    );
    assert_eq!(x.package.and_then(|p| p.action).as_deref(), Some("remove"));
    // Still listed by its package: removed by hand.
    let c = Change { path: &r.bin, ..c };
    let x = explained(r.explainer.explain(&c));
    assert_eq!(x.severity, Severity::Medium);
}

#[test]
fn unowned_files_and_path_rules() {
    let r = rig(Duration::from_secs(600), None);
    let root = r.bin.ancestors().nth(3).expect("root").to_path_buf();
    let new = file(0o644, b"x");
    let rate = |rel: &str, sensitive: bool| {
        let path = root.join(rel);
        let c = Change {
            kind: EventKind::Added,
            path: &path,
            old: None,
            new: Some(&new),
            changed: &[],
            sensitive,
        };
        explained(r.explainer.explain(&c))
    };
    assert_eq!(
        rate("etc/nginx/nginx.conf", false).severity,
        Severity::Medium
    );
    assert_eq!(rate("etc/app.conf", true).severity, Severity::High);
    assert_eq!(
        rate("root/.ssh/authorized_keys", false).severity,
        Severity::High
    );
    assert_eq!(rate("etc/sudoers.d/x", false).severity, Severity::High);
    assert_eq!(
        rate("etc/ld.so.preload", false).severity,
        Severity::Critical
    );
    r.running.store(true, AtomicOrdering::SeqCst);
    let x = rate("etc/passwd", false);
    assert_eq!(
        (x.severity, x.reason.as_str()),
        (
            Severity::Medium,
            "written during a package transaction; not verifiable"
        )
    );
}

#[test]
fn watch_floor_raises_unexplained_changes_only() {
    let r = rig(Duration::from_secs(600), Some(Severity::Critical));
    let root = r.bin.ancestors().nth(3).expect("root").to_path_buf();
    let path = root.join("srv/app.conf");
    let new = file(0o644, b"x");
    let c = Change {
        kind: EventKind::Added,
        path: &path,
        old: None,
        new: Some(&new),
        changed: &[],
        sensitive: false,
    };
    assert_eq!(
        explained(r.explainer.explain(&c)).severity,
        Severity::Critical
    );
    std::fs::write(&r.bin, b"v2").expect("write");
    let old = recorded(file(0o755, b"v1"), Some("1"));
    let new = file(0o755, b"v2");
    let changed = content_changed();
    let x = explained(r.explainer.explain(&modified(&r.bin, &old, &new, &changed)));
    assert_eq!(x.severity, Severity::Low, "a verified upgrade is explained");
}

#[test]
fn temporaries_wait_for_the_transaction() {
    let r = rig(Duration::from_secs(600), None);
    let tmp = r.bin.with_file_name("tool.dpkg-new");
    let new = file(0o755, b"v2");
    let c = Change {
        kind: EventKind::Added,
        path: &tmp,
        old: None,
        new: Some(&new),
        changed: &[],
        sensitive: false,
    };
    r.running.store(true, AtomicOrdering::SeqCst);
    assert_eq!(r.explainer.explain(&c), Verdict::Defer);
}

#[test]
fn digest_file_rewritten_outside_a_transaction_is_critical() {
    let running = Arc::new(AtomicBool::new(false));
    let md5sums = PathBuf::from("/var/lib/dpkg/info/tool.md5sums");
    let mut stamps = HashMap::new();
    stamps.insert(md5sums.clone(), "2".to_string());
    let db = FakeDb {
        owners: HashMap::new(),
        running: running.clone(),
        stamps,
    };
    let policy = Arc::new(
        crate::policy::Policy::from_config(&Config::default(), Path::new("t")).expect("policy"),
    );
    let x = Explainer::with_databases(vec![Box::new(db)], "/".into(), Duration::ZERO, policy);
    let stamp = |v: &str| Stamp::Database {
        manager: "dpkg".into(),
        db: v.into(),
    };
    let old = Recorded {
        package: stamp("2").text(),
        ..recorded(file(0o644, b"a"), None)
    };
    let new = file(0o644, b"b");
    let changed = vec!["sha256".to_string()];
    let c = modified(&md5sums, &old, &new, &changed);
    let e = explained(x.explain(&c));
    assert_eq!(e.severity, Severity::Critical, "{e:?}");
    // The same rewrite by an upgrade (the package's version moved on) is low.
    let old = Recorded {
        package: stamp("1").text(),
        ..old
    };
    let c = modified(&md5sums, &old, &new, &changed);
    assert_eq!(explained(x.explain(&c)).severity, Severity::Low);
    assert_eq!(x.stamp(&md5sums), stamp("2").text());
}
