//! The dpkg index against real dpkg runs in a private root (`dpkg --root`): install, upgrade,
//! downgrade, remove, diversions, merged-/usr, and the lock probe against another process.

mod common;

use common::{can_run, debs, is_root};
use fimd::packages::dpkg::DpkgIndex;
use fimd::packages::{DigestAlgo, FileDigest, Owner, PackageDb};
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn usable() -> bool {
    can_run(
        is_root() && debs::have_dpkg(),
        "FIMD_REQUIRE_ROOT",
        "needs root and dpkg, dpkg-deb, dpkg-divert",
    )
}

/// A temp dir holding `root/` (an empty dpkg root) and the built `.deb`s.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(tmp.path())
        .expect("canonical")
        .join("root");
    let admin = debs::empty_root(&root);
    (tmp, root, admin)
}

/// The md5 of a file as `md5sum` computes it (independent of dpkg's records).
fn md5_of(path: &Path) -> FileDigest {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    assert!(out.status.success(), "md5sum {}", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let hex_text = text.split_whitespace().next().expect("md5sum output");
    FileDigest {
        algo: DigestAlgo::Md5,
        bytes: hex::decode(hex_text).expect("hex"),
    }
}

fn owner(idx: &DpkgIndex, path: &Path) -> Owner {
    idx.owner(path)
        .unwrap_or_else(|| panic!("{} has no owner", path.display()))
}

fn foo(version: &str) -> debs::Deb {
    debs::Deb::new("foo", version)
        .file(
            "/usr/bin/foo",
            format!("#!/bin/sh\necho {version}\n").as_bytes(),
            0o755,
        )
        .file(
            "/usr/share/doc/foo/README",
            b"same in every version\n",
            0o644,
        )
        .file(
            "/etc/foo.conf",
            format!("version = {version}\n").as_bytes(),
            0o644,
        )
        .conffile("/etc/foo.conf")
}

#[test]
fn install_upgrade_downgrade_remove() {
    if !usable() {
        return;
    }
    let (tmp, root, admin) = setup();
    let (bin, conf) = (root.join("usr/bin/foo"), root.join("etc/foo.conf"));

    debs::install(&root, &foo("1.0-1").build(tmp.path()));
    let mut idx = DpkgIndex::load(&admin, &root).expect("load");
    let o = owner(&idx, &bin);
    assert_eq!((o.package.as_str(), o.arch.as_str()), ("foo", "all"));
    assert_eq!(o.version, "1.0-1");
    assert_eq!(o.digest, Some(md5_of(&bin)));
    assert!(!o.conffile);
    let c = owner(&idx, &conf);
    assert!(c.conffile);
    assert_eq!(
        c.digest,
        Some(md5_of(&conf)),
        "conffile digest from status Conffiles"
    );
    assert_eq!(idx.len(), 3, "three files; directories not indexed");
    assert!(idx.owner(&root.join("usr/bin")).is_none());
    let v1_bin = md5_of(&bin);

    // Upgrade: the info files dpkg rewrote are enough to see the new version and digests.
    debs::install(&root, &foo("1.0-2").build(tmp.path()));
    assert!(idx.refresh(&admin.join("info/foo.list")).expect("refresh"));
    assert!(idx
        .refresh(&admin.join("info/foo.md5sums"))
        .expect("refresh"));
    let o = owner(&idx, &bin);
    assert_eq!(o.version, "1.0-2");
    assert_eq!(o.digest, Some(md5_of(&bin)));
    assert_ne!(o.digest, Some(v1_bin.clone()));
    assert_eq!(
        idx.database_stamp(&admin.join("info/foo.md5sums"))
            .as_deref(),
        Some("1.0-2")
    );
    // The new conffile digest is in status (the admin did not edit it: dpkg replaced it).
    assert!(idx.refresh(&admin.join("status")).expect("refresh"));
    assert_eq!(owner(&idx, &conf).digest, Some(md5_of(&conf)));

    // Downgrade: dpkg logs it as an upgrade; the ordering says what it is.
    debs::install(&root, &foo("1.0-1").build(tmp.path()));
    assert!(idx
        .refresh(&admin.join("info/foo.md5sums"))
        .expect("refresh"));
    let o = owner(&idx, &bin);
    assert_eq!((o.version.as_str(), o.digest), ("1.0-1", Some(v1_bin)));
    assert_eq!(idx.compare_versions("1.0-2", &o.version), Ordering::Greater);

    // Remove: dpkg rewrites the .list to name only the conffiles it keeps, and the status
    // says config-files (not installed): nothing of foo is owned any more.
    debs::remove(&root, "foo");
    let list = std::fs::read_to_string(admin.join("info/foo.list")).expect("read .list");
    assert_eq!(list, "/.\n/etc\n/etc/foo.conf\n");
    assert!(idx.refresh(&admin.join("info/foo.list")).expect("refresh"));
    assert!(idx.owner(&bin).is_none());
    assert!(idx.owner(&root.join("usr/share/doc/foo/README")).is_none());
    assert!(idx.refresh(&admin.join("status")).expect("refresh"));
    assert!(conf.exists() && idx.owner(&conf).is_none());
    assert!(idx.is_empty());
    debs::purge(&root, "foo");
    assert!(!conf.exists() && !admin.join("info/foo.list").exists());
    assert_eq!(DpkgIndex::load(&admin, &root).expect("load").len(), 0);
}

/// In the middle of a real upgrade (dpkg paused in the new version's postinst): the new
/// version is only in dpkg's `updates/` journal, not yet in `status`, and dpkg's lock is held.
#[test]
fn mid_upgrade_state_comes_from_the_journal() {
    if !usable() {
        return;
    }
    let (tmp, root, admin) = setup();
    debs::install(&root, &foo("1.0-1").build(tmp.path()));
    let mut idx = DpkgIndex::load(&admin, &root).expect("load");
    assert!(!idx.transaction_running());

    let gate = debs::Gate::new(tmp.path(), "postinst");
    let v2 = foo("1.0-2")
        .script("postinst", &debs::pause_script(&gate))
        .build(tmp.path());
    let mut dpkg = debs::spawn_dpkg(&root, &["-i", v2.to_str().expect("UTF-8")]);
    assert!(
        gate.wait_reached(std::time::Duration::from_secs(30)),
        "postinst never ran"
    );

    assert!(idx.transaction_running(), "dpkg holds its lock");
    let status = std::fs::read_to_string(admin.join("status")).expect("read status");
    assert!(
        status.contains("Version: 1.0-1"),
        "status not rewritten yet"
    );
    // What a watcher sees in order: .list, .md5sums, then the journal entry.
    assert!(idx
        .refresh(&admin.join("info/foo.md5sums"))
        .expect("refresh"));
    let journal = std::fs::read_dir(admin.join("updates"))
        .expect("updates/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "tmp.i"))
        .max()
        .expect("a journal entry");
    assert!(idx.refresh(&journal).expect("refresh"));
    let bin = root.join("usr/bin/foo");
    let o = owner(&idx, &bin);
    assert_eq!(o.version, "1.0-2");
    assert_eq!(o.digest, Some(md5_of(&bin)));
    assert_eq!(
        DpkgIndex::load(&admin, &root).expect("load").owner(&bin),
        Some(o)
    );

    gate.open();
    assert!(dpkg.wait().expect("wait for dpkg").success());
    assert!(!idx.transaction_running());
    assert!(idx.refresh(&admin.join("status")).expect("refresh"));
    assert_eq!(owner(&idx, &bin).version, "1.0-2");
}

#[test]
fn diversion_resolves_to_the_file_really_there() {
    if !usable() {
        return;
    }
    let (tmp, root, admin) = setup();
    debs::install(&root, &foo("1.0-1").build(tmp.path()));
    // bar diverts foo's /usr/bin/foo away (dpkg-divert --rename moves it) and ships its own.
    debs::divert(&root, "bar", "/usr/bin/foo", "/usr/bin/foo.distrib");
    let bar = debs::Deb::new("bar", "2")
        .file("/usr/bin/foo", b"#!/bin/sh\necho bar's wrapper\n", 0o755)
        .build(tmp.path());
    debs::install(&root, &bar);

    let idx = DpkgIndex::load(&admin, &root).expect("load");
    let (at_from, at_to) = (root.join("usr/bin/foo"), root.join("usr/bin/foo.distrib"));
    let o = owner(&idx, &at_from);
    assert_eq!(
        (o.package.as_str(), o.digest),
        ("bar", Some(md5_of(&at_from)))
    );
    let o = owner(&idx, &at_to);
    assert_eq!(
        (o.package.as_str(), o.digest),
        ("foo", Some(md5_of(&at_to)))
    );
}

#[test]
fn merged_usr_aliases() {
    if !usable() {
        return;
    }
    let (tmp, root, admin) = setup();
    std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("symlink");
    let tool = debs::Deb::new("tool", "1")
        .file("/bin/tool", b"old-style path\n", 0o755)
        .build(tmp.path());
    debs::install(&root, &tool);
    assert!(root.join("bin").is_symlink(), "dpkg kept the alias symlink");

    let idx = DpkgIndex::load(&admin, &root).expect("load");
    let real = root.join("usr/bin/tool");
    for spelling in [real.clone(), root.join("bin/tool")] {
        let o = owner(&idx, &spelling);
        assert_eq!(
            (o.package.as_str(), o.digest),
            ("tool", Some(md5_of(&real)))
        );
    }
}

#[test]
fn lock_held_by_another_process() {
    if !can_run(
        is_root() && Command::new("python3").arg("-V").output().is_ok(),
        "FIMD_REQUIRE_ROOT",
        "needs python3",
    ) {
        return;
    }
    let (_tmp, root, admin) = setup();
    let idx = DpkgIndex::load(&admin, &root).expect("load");
    assert!(!idx.transaction_running(), "no lock files");
    for name in ["lock-frontend", "lock"] {
        let path = admin.join(name);
        // The child takes a POSIX (fcntl) write lock as dpkg does, says so, and holds it
        // until its stdin closes.
        let script = "import fcntl, sys\nf = open(sys.argv[1], 'a')\nfcntl.lockf(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\nsys.stdin.read()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read child");
        assert_eq!(line.trim(), "locked");
        assert!(idx.transaction_running(), "{name} held");
        drop(child.stdin.take());
        assert!(child.wait().expect("wait").success());
        assert!(!idx.transaction_running(), "{name} released");
    }
}

/// This machine's own database, when it has one: dpkg owns its own binary, and the recorded
/// digest is the file's.
#[test]
fn this_machines_dpkg_database() {
    let admin = Path::new("/var/lib/dpkg");
    if !admin.join("status").is_file() {
        eprintln!("skipped: no /var/lib/dpkg/status here");
        return;
    }
    let idx = DpkgIndex::load(admin, Path::new("/")).expect("load /var/lib/dpkg");
    assert!(idx.len() > 100, "{} paths", idx.len());
    let dpkg = Path::new("/usr/bin/dpkg");
    let o = owner(&idx, dpkg);
    assert_eq!(o.package, "dpkg");
    assert_eq!(o.digest, Some(md5_of(dpkg)));
    if Path::new("/bin").is_symlink() {
        assert_eq!(owner(&idx, Path::new("/bin/dpkg")).package, "dpkg");
    }
}
