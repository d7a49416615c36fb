//! The dpkg index on synthetic admin dirs (real dpkg runs are in tests/packages_dpkg.rs).

use super::*;
use std::fs;

const MD5_A: &str = "0123456789abcdef0123456789abcdef";
const MD5_B: &str = "fedcba9876543210fedcba9876543210";
const MD5_C: &str = "00112233445566778899aabbccddeeff";

/// A root with an admin dir at `<root>/var/lib/dpkg`.
struct Fake {
    _dir: tempfile::TempDir,
    root: PathBuf,
    admin: PathBuf,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let admin = root.join("var/lib/dpkg");
        fs::create_dir_all(admin.join("info")).unwrap();
        fs::create_dir_all(admin.join("updates")).unwrap();
        fs::write(admin.join("status"), "").unwrap();
        Fake {
            _dir: dir,
            root,
            admin,
        }
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.admin.join(rel);
        fs::write(&p, text).unwrap();
    }

    fn load(&self) -> DpkgIndex {
        DpkgIndex::load(&self.admin, &self.root).unwrap()
    }

    fn real(&self, pkg_path: &str) -> PathBuf {
        self.root.join(pkg_path.trim_start_matches('/'))
    }
}

fn paragraph(name: &str, version: &str, extra: &str) -> String {
    format!(
        "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n{extra}Description: x\n more text\n\n"
    )
}

fn md5(hex_text: &str) -> Option<FileDigest> {
    Some(FileDigest {
        algo: DigestAlgo::Md5,
        bytes: hex::decode(hex_text).unwrap(),
    })
}

/// Two packages (one with a conffile), a removed one, a Multi-Arch: same one.
fn sample() -> Fake {
    let f = Fake::new();
    let status = paragraph(
        "foo",
        "1.0-1",
        &format!(
            "Conffiles:\n /etc/foo.conf {MD5_B}\n /etc/foo.d/new conf newconffile\n /etc/old.conf {MD5_C} obsolete\n"
        ),
    ) + &paragraph("bar", "1:2.0", "")
        + "Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 3\n\n"
        + &paragraph("libz", "1.3", "Multi-Arch: same\n");
    f.write("status", &status);
    f.write(
        "info/foo.list",
        "/.\n/etc\n/etc/foo.conf\n/etc/foo.d\n/etc/foo.d/new conf\n/usr\n/usr/bin\n/usr/bin/foo\n/usr/bin/foo-link\n",
    );
    f.write("info/foo.md5sums", &format!("{MD5_A}  usr/bin/foo\n"));
    f.write(
        "info/bar.list",
        "/bin\n/bin/bar\n/usr/share/doc/bar/README\n",
    );
    f.write(
        "info/bar.md5sums",
        &format!("{MD5_C}  bin/bar\n{MD5_A}  usr/share/doc/bar/README\n"),
    );
    f.write("info/gone.list", "/usr/bin/gone\n");
    f.write("info/libz:amd64.list", "/usr/lib/libz.so.1\n");
    f.write(
        "info/libz:amd64.md5sums",
        &format!("{MD5_B}  usr/lib/libz.so.1\n"),
    );
    f
}

#[test]
fn owner_from_list_md5sums_and_conffiles() {
    let f = sample();
    let idx = f.load();
    let o = idx.owner(&f.real("/usr/bin/foo")).unwrap();
    assert_eq!(o.manager, Manager::Dpkg);
    assert_eq!(
        (o.package.as_str(), o.arch.as_str(), o.version.as_str()),
        ("foo", "amd64", "1.0-1")
    );
    assert_eq!(o.digest, md5(MD5_A));
    assert!(!o.conffile);

    let c = idx.owner(&f.real("/etc/foo.conf")).unwrap();
    assert!(c.conffile);
    assert_eq!(c.digest, md5(MD5_B), "conffile digest comes from status");
    let new = idx.owner(&f.real("/etc/foo.d/new conf")).unwrap();
    assert!(
        new.conffile && new.digest.is_none(),
        "newconffile: no digest yet"
    );
    let old = idx.owner(&f.real("/etc/old.conf")).unwrap();
    assert!(
        old.conffile && old.digest == md5(MD5_C),
        "obsolete conffile still owned"
    );

    // A symlink (no md5sums line): owned, no digest. Directories are not indexed.
    assert_eq!(
        idx.owner(&f.real("/usr/bin/foo-link")).unwrap().digest,
        None
    );
    assert!(idx.owner(&f.real("/usr/bin")).is_none());
    assert!(
        idx.owner(&f.real("/usr/bin/gone")).is_none(),
        "config-files: not installed"
    );
    assert!(
        idx.owner(Path::new("/usr/bin/foo")).is_none(),
        "outside the root"
    );

    let z = idx.owner(&f.real("/usr/lib/libz.so.1")).unwrap();
    assert_eq!((z.package.as_str(), z.digest), ("libz", md5(MD5_B)));
    assert_eq!(idx.package_count(), 3);
    assert_eq!(idx.len(), 8);
}

#[test]
fn merged_usr_aliases_both_ways() {
    let f = sample();
    fs::create_dir_all(f.root.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", f.root.join("bin")).unwrap();
    std::os::unix::fs::symlink("/usr/lib", f.root.join("lib")).unwrap();
    let idx = f.load();
    // bar ships /bin/bar: stored as /usr/bin/bar, found by either spelling.
    for spelling in ["/bin/bar", "/usr/bin/bar"] {
        let o = idx.owner(&f.real(spelling)).unwrap();
        assert_eq!(
            (o.package.as_str(), o.digest),
            ("bar", md5(MD5_C)),
            "{spelling}"
        );
    }
    assert_eq!(
        idx.owner(&f.real("/lib/libz.so.1")).unwrap().package,
        "libz"
    );
    assert!(idx.owner(&f.real("/binx/bar")).is_none());
}

#[test]
fn without_alias_bin_is_not_usr_bin() {
    let f = sample();
    let idx = f.load();
    assert!(idx.owner(&f.real("/bin/bar")).is_some());
    assert!(idx.owner(&f.real("/usr/bin/bar")).is_none());
}

#[test]
fn diversions_move_other_packages_files() {
    let f = sample();
    // bar diverts foo's /usr/bin/foo to /usr/bin/foo.real and ships its own /usr/bin/foo.
    f.write("diversions", "/usr/bin/foo\n/usr/bin/foo.real\nbar\n/usr/share/doc/bar/README\n/usr/share/doc/bar/README.local\n:\n");
    let list = fs::read_to_string(f.admin.join("info/bar.list")).unwrap();
    f.write("info/bar.list", &(list + "/usr/bin/foo\n"));
    let sums = fs::read_to_string(f.admin.join("info/bar.md5sums")).unwrap();
    f.write("info/bar.md5sums", &format!("{sums}{MD5_B}  usr/bin/foo\n"));
    let idx = f.load();
    let real = idx.owner(&f.real("/usr/bin/foo.real")).unwrap();
    assert_eq!((real.package.as_str(), real.digest), ("foo", md5(MD5_A)));
    let diverter = idx.owner(&f.real("/usr/bin/foo")).unwrap();
    assert_eq!(
        (diverter.package.as_str(), diverter.digest),
        ("bar", md5(MD5_B))
    );
    // A local diversion (`:`) moves even the package's own file.
    assert!(idx.owner(&f.real("/usr/share/doc/bar/README")).is_none());
    assert_eq!(
        idx.owner(&f.real("/usr/share/doc/bar/README.local"))
            .unwrap()
            .package,
        "bar"
    );
}

#[test]
fn refresh_one_package() {
    let f = sample();
    let mut idx = f.load();
    f.write("info/foo.md5sums", &format!("{MD5_C}  usr/bin/foo\n"));
    assert!(idx.refresh(&f.admin.join("info/foo.md5sums")).unwrap());
    assert_eq!(
        idx.owner(&f.real("/usr/bin/foo")).unwrap().digest,
        md5(MD5_C)
    );

    // A new file in the list, one dropped.
    f.write("info/foo.list", "/usr/bin/foo\n/usr/bin/foo2\n");
    assert!(idx.refresh(&f.admin.join("info/foo.list")).unwrap());
    assert!(idx.owner(&f.real("/usr/bin/foo2")).is_some());
    assert!(idx.owner(&f.real("/usr/bin/foo-link")).is_none());
    assert_eq!(idx.owner(&f.real("/usr/bin/bar")).map(|o| o.package), None);
    assert!(
        idx.owner(&f.real("/bin/bar")).is_some(),
        "other packages untouched"
    );

    // The .list gone: the package is gone.
    fs::remove_file(f.admin.join("info/foo.list")).unwrap();
    assert!(idx.refresh(&f.admin.join("info/foo.list")).unwrap());
    assert!(idx.owner(&f.real("/usr/bin/foo")).is_none());
    assert!(idx.owner(&f.real("/etc/foo.conf")).is_none());
    assert_eq!(idx.package_count(), 2);
    assert_eq!(idx.database_stamp(&f.admin.join("info/foo.list")), None);

    // Anything else is not ours to reload.
    assert!(!idx.refresh(&f.admin.join("info/bar.postinst")).unwrap());
    assert!(!idx.refresh(&f.real("/etc/passwd")).unwrap());
}

#[test]
fn refresh_error_keeps_the_old_index() {
    let f = sample();
    let mut idx = f.load();
    fs::remove_file(f.admin.join("info/foo.md5sums")).unwrap();
    fs::create_dir(f.admin.join("info/foo.md5sums")).unwrap();
    let err = idx.refresh(&f.admin.join("info/foo.md5sums")).unwrap_err();
    assert!(err.to_string().contains("foo.md5sums"), "{err}");
    assert_eq!(
        idx.owner(&f.real("/usr/bin/foo")).unwrap().digest,
        md5(MD5_A)
    );

    fs::remove_file(f.admin.join("status")).unwrap();
    let err = idx.refresh(&f.admin.join("status")).unwrap_err();
    assert!(err.to_string().contains("status"), "{err}");
    assert_eq!(idx.len(), 8);
}

#[test]
fn journal_carries_the_new_version() {
    let f = sample();
    let mut idx = f.load();
    // dpkg writes the new version to updates/NNNN after the .list and md5sums.
    f.write(
        "updates/0000",
        &paragraph("bar", "1:2.1", "").replace("installed", "half-installed"),
    );
    f.write(
        "updates/0001",
        &paragraph("bar", "1:2.2", "").replace("installed", "unpacked"),
    );
    assert!(idx.refresh(&f.admin.join("updates/0001")).unwrap());
    assert_eq!(idx.owner(&f.real("/bin/bar")).unwrap().version, "1:2.2");
    assert_eq!(
        idx.database_stamp(&f.admin.join("info/bar.md5sums"))
            .as_deref(),
        Some("1:2.2")
    );
    // A fresh load reads the journal too.
    assert_eq!(
        f.load().owner(&f.real("/bin/bar")).unwrap().version,
        "1:2.2"
    );

    // New conffile digest in the journal: that package is reloaded.
    let foo = paragraph(
        "foo",
        "1.0-2",
        &format!("Conffiles:\n /etc/foo.conf {MD5_A}\n"),
    );
    f.write("updates/0002", &foo);
    assert!(idx.refresh(&f.admin.join("updates/0002")).unwrap());
    let c = idx.owner(&f.real("/etc/foo.conf")).unwrap();
    assert_eq!((c.version.as_str(), c.digest), ("1.0-2", md5(MD5_A)));
    assert!(idx.owner(&f.real("/etc/old.conf")).is_none());

    // Removal recorded in the journal.
    f.write(
        "updates/0003",
        "Package: foo\nStatus: purge ok not-installed\nArchitecture: amd64\n\n",
    );
    assert!(idx.refresh(&f.admin.join("updates/0003")).unwrap());
    assert!(idx.owner(&f.real("/usr/bin/foo")).is_none());
    assert!(!idx.refresh(&f.admin.join("updates/tmp.i")).unwrap());
}

#[test]
fn status_change_reloads_everything() {
    let f = sample();
    let mut idx = f.load();
    let status = fs::read_to_string(f.admin.join("status")).unwrap();
    f.write(
        "status",
        &status.replace("Version: 1:2.0", "Version: 1:1.9"),
    );
    assert!(idx.refresh(&f.admin.join("status")).unwrap());
    assert_eq!(idx.owner(&f.real("/bin/bar")).unwrap().version, "1:1.9");
}

#[test]
fn shared_file_survives_one_owner_leaving() {
    // Removing either owner of a shared path leaves the other in place.
    let f = sample();
    let status = fs::read_to_string(f.admin.join("status")).unwrap()
        + &paragraph("libz", "1.3", "Multi-Arch: same\n").replace("amd64", "i386");
    f.write("status", &status);
    f.write(
        "info/libz:amd64.list",
        "/usr/lib/libz.so.1\n/usr/share/doc/libz/copyright\n",
    );
    f.write(
        "info/libz:i386.list",
        "/usr/lib/i386/libz.so.1\n/usr/share/doc/libz/copyright\n",
    );
    let mut idx = f.load();
    assert_eq!(idx.package_count(), 4);
    let copyright = f.real("/usr/share/doc/libz/copyright");
    assert_eq!(idx.owner(&copyright).unwrap().arch, "i386", "loaded last");
    // The most recently (re)loaded package is the owner (a file moving between packages).
    assert!(idx.refresh(&f.admin.join("info/libz:amd64.list")).unwrap());
    assert_eq!(idx.owner(&copyright).unwrap().arch, "amd64");
    assert_eq!(idx.len(), 11, "one record per package for the shared path");
    fs::remove_file(f.admin.join("info/libz:i386.list")).unwrap();
    assert!(idx.refresh(&f.admin.join("info/libz:i386.list")).unwrap());
    let o = idx.owner(&f.real("/usr/share/doc/libz/copyright")).unwrap();
    assert_eq!((o.package.as_str(), o.arch.as_str()), ("libz", "amd64"));
    assert!(idx.owner(&f.real("/usr/lib/i386/libz.so.1")).is_none());
}

#[test]
fn database_files_digest_files_stamps_temporaries() {
    let f = sample();
    let idx = f.load();
    let a = |rel: &str| f.admin.join(rel);
    assert!(idx.is_database_file(&a("info/foo.list")));
    assert!(idx.is_database_file(&a("status")));
    assert!(!idx.is_database_file(&f.real("/var/lib/dpkgx/status")));
    assert!(idx.is_digest_file(&a("info/foo.md5sums")));
    assert!(idx.is_digest_file(&a("status")));
    assert!(idx.is_digest_file(&a("updates/0003")));
    assert!(!idx.is_digest_file(&a("info/foo.list")));
    assert!(!idx.is_digest_file(&a("status-old")));
    assert!(!idx.is_digest_file(&f.real("/etc/x.md5sums")));
    assert_eq!(
        idx.database_stamp(&a("info/foo.list")).as_deref(),
        Some("1.0-1")
    );
    assert_eq!(
        idx.database_stamp(&a("info/libz:amd64.md5sums")).as_deref(),
        Some("1.3")
    );
    assert_eq!(idx.database_stamp(&a("info/gone.list")), None);
    assert_eq!(idx.database_stamp(&a("status")), None);
    for t in [
        "/etc/foo.conf.dpkg-new",
        "/usr/bin/x.dpkg-tmp",
        "/etc/a.dpkg-dist",
        "/etc/a.dpkg-old",
    ] {
        assert!(idx.is_temporary(Path::new(t)), "{t}");
    }
    assert!(!idx.is_temporary(Path::new("/etc/a.dpkg-newer")));
    assert!(!idx.is_temporary(Path::new("/etc/a.rpmnew")));
}

#[test]
fn missing_status_is_an_error_naming_it() {
    let f = Fake::new();
    fs::remove_file(f.admin.join("status")).unwrap();
    let err = DpkgIndex::load(&f.admin, &f.root).unwrap_err();
    assert!(err.to_string().contains("var/lib/dpkg/status"), "{err}");
}

#[test]
fn lock_probe_sees_a_lock_of_this_process_too() {
    use std::os::fd::AsRawFd;
    let f = sample();
    let idx = f.load();
    assert!(!idx.transaction_running(), "no lock files: no transaction");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(f.admin.join("lock"))
        .unwrap();
    assert!(!idx.transaction_running(), "lock file present but unlocked");
    let set = |kind: libc::c_int| {
        // SAFETY: test-only fcntl on a descriptor we own, with a zeroed flock.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        assert_eq!(
            unsafe { libc::fcntl(lock.as_raw_fd(), libc::F_SETLK, &fl) },
            0
        );
    };
    set(libc::F_WRLCK);
    assert!(
        idx.transaction_running(),
        "F_OFD_GETLK sees our own classic lock"
    );
    set(libc::F_UNLCK);
    assert!(!idx.transaction_running());
}

#[test]
fn repository_lists() {
    let f = sample();
    let idx = f.load();
    assert_eq!(
        idx.in_repository("bar", "amd64", "1:2.0"),
        None,
        "no lists dir"
    );
    let lists = f.root.join("var/lib/apt/lists");
    fs::create_dir_all(&lists).unwrap();
    fs::write(lists.join("x_InRelease"), "").unwrap();
    fs::write(lists.join("x_main_binary-amd64_Packages.lz4"), "").unwrap();
    assert_eq!(
        idx.in_repository("bar", "amd64", "1:2.0"),
        None,
        "no uncompressed list"
    );
    let packages = "Package: bar\nVersion: 1:2.0\nArchitecture: amd64\nDepends: x\n\nPackage: foo\nArchitecture: all\nVersion: 1.0-1\n";
    fs::write(lists.join("x_main_binary-amd64_Packages"), packages).unwrap();
    assert_eq!(idx.in_repository("bar", "amd64", "1:2.0"), Some(true));
    assert_eq!(idx.in_repository("bar", "", "1:2.0"), Some(true));
    assert_eq!(idx.in_repository("bar", "amd64", "1:2.1"), Some(false));
    assert_eq!(idx.in_repository("bar", "i386", "1:2.0"), Some(false));
    assert_eq!(
        idx.in_repository("foo", "all", "1.0-1"),
        Some(true),
        "last paragraph, no blank line"
    );
    // A second list file appears: the cache is rebuilt.
    fs::write(
        lists.join("y_Packages"),
        "Package: bar\nVersion: 1:2.1\nArchitecture: amd64\n",
    )
    .unwrap();
    assert_eq!(idx.in_repository("bar", "amd64", "1:2.1"), Some(true));
    fs::remove_file(lists.join("y_Packages")).unwrap();
    assert_eq!(idx.in_repository("bar", "amd64", "1:2.1"), Some(false));
}

#[test]
fn version_ordering_table() {
    use Ordering::{Equal, Greater, Less};
    let table = [
        ("1.0~rc1", "1.0", Less),
        ("1.0", "1.0~rc1", Greater),
        ("1.0~~", "1.0~", Less),
        ("1.0~", "1.0", Less),
        ("1.0", "1.0+b1", Less),
        ("1.0", "1.0a", Less),
        ("1.0a", "1.0+", Less),
        ("1.0a", "1.0-1", Greater),
        ("1:9.2p1-2+deb12u2", "1:9.2p1-2+deb12u3", Less),
        ("1:1.0", "2.0", Greater),
        ("0:2.0", "2.0", Equal),
        ("2:0.1", "1:9.9", Greater),
        ("1.2.10", "1.2.9", Greater),
        ("1.002", "1.2", Equal),
        ("1.0-1", "1.0-1", Equal),
        ("1.0-1", "1.0-2", Less),
        ("1.0-10", "1.0-9", Greater),
        ("1.0-1ubuntu1", "1.0-1", Greater),
        ("2.30-1~bpo12+1", "2.30-1", Less),
        ("1.0-a-1", "1.0-a-2", Less),
        ("1.0.0", "1.0", Greater),
        ("a", "b", Less),
        ("", "", Equal),
        ("7.4.052", "7.4.52", Equal),
        ("1.18.4-0ubuntu1", "1.18.4-0ubuntu1.1", Less),
    ];
    let idx = Fake::new().load();
    for (a, b, want) in table {
        assert_eq!(idx.compare_versions(a, b), want, "{a} vs {b}");
        assert_eq!(idx.compare_versions(b, a), want.reverse(), "{b} vs {a}");
    }
}

#[test]
fn conffile_lines() {
    assert_eq!(
        parse_conffile(format!(" /etc/a b {MD5_A} obsolete").as_bytes()),
        Some((b"/etc/a b".to_vec(), parse_md5(MD5_A.as_bytes())))
    );
    assert_eq!(
        parse_conffile(b" /etc/a newconffile"),
        Some((b"/etc/a".to_vec(), None))
    );
    assert_eq!(parse_conffile(b" garbage"), None);
}

#[test]
fn journal_refresh_error_changes_nothing() {
    let f = sample();
    let mut idx = f.load();
    // bar: a new version only; foo: new conffiles (a reload) whose md5sums cannot be read.
    f.write("updates/0000", &paragraph("bar", "1:2.1", ""));
    f.write("updates/0001", &paragraph("foo", "1.0-2", ""));
    fs::remove_file(f.admin.join("info/foo.md5sums")).unwrap();
    fs::create_dir(f.admin.join("info/foo.md5sums")).unwrap();
    assert!(idx.refresh(&f.admin.join("updates/0001")).is_err());
    assert_eq!(idx.owner(&f.real("/bin/bar")).unwrap().version, "1:2.0");
    assert!(idx.owner(&f.real("/etc/foo.conf")).unwrap().conffile);
}

#[test]
fn one_refresh_for_a_whole_batch() {
    // What one dpkg run leaves between two batches: a new version in the journal, a new
    // .list for one package, new md5sums for another, a file that is not ours.
    let f = sample();
    let mut idx = f.load();
    f.write("updates/0000", &paragraph("bar", "1:2.1", ""));
    f.write(
        "info/foo.list",
        "/etc/foo.conf\n/usr/bin/foo\n/usr/bin/foo3\n",
    );
    f.write(
        "info/bar.md5sums",
        &format!("{MD5_B}  bin/bar\n{MD5_A}  usr/share/doc/bar/README\n"),
    );
    let batch = [
        f.admin.join("info/foo.list"),
        f.admin.join("updates/0000"),
        f.admin.join("info/bar.md5sums"),
        f.admin.join("info/bar.postinst"),
    ];
    assert!(idx.refresh_all(&batch).unwrap());
    let bar = idx.owner(&f.real("/bin/bar")).unwrap();
    assert_eq!((bar.version.as_str(), bar.digest), ("1:2.1", md5(MD5_B)));
    assert!(idx.owner(&f.real("/usr/bin/foo3")).is_some());
    assert!(idx.owner(&f.real("/usr/bin/foo-link")).is_none());
    assert_eq!(
        idx.owner(&f.real("/usr/lib/libz.so.1")).unwrap().digest,
        md5(MD5_B),
        "other packages untouched"
    );
    assert!(!idx
        .refresh_all(&[f.admin.join("info/bar.postinst")])
        .unwrap());

    // One unreadable package in the batch: nothing of the batch applies.
    f.write("updates/0001", &paragraph("bar", "1:2.2", ""));
    fs::remove_file(f.admin.join("info/foo.md5sums")).unwrap();
    fs::create_dir(f.admin.join("info/foo.md5sums")).unwrap();
    let batch = [
        f.admin.join("updates/0001"),
        f.admin.join("info/foo.md5sums"),
    ];
    assert!(idx.refresh_all(&batch).is_err());
    assert_eq!(idx.owner(&f.real("/bin/bar")).unwrap().version, "1:2.1");
    assert!(idx.owner(&f.real("/usr/bin/foo3")).is_some());
}
