//! The rpm index against real rpm packages installed into a temp root with Debian's rpm 4.18
//! (sqlite rpmdb). Needs `rpm` and `rpmbuild`; CI sets FIMD_REQUIRE_RPM=1 so that these tests
//! cannot skip there.

mod common;

use common::rpms::{self, RpmFile, RpmRoot, RpmSpec};
use fimd::packages::rpm::RpmIndex;
use fimd::packages::{DigestAlgo, Manager, PackageDb};
use sha2::Digest;
use std::cmp::Ordering;
use std::path::PathBuf;
use std::time::Duration;

fn can_run() -> bool {
    common::can_run(rpms::available(), "FIMD_REQUIRE_RPM", rpms::MISSING)
}

/// A temp dir (kept alive by the caller) with `build/` and an rpm root at `root/`.
fn setup() -> (tempfile::TempDir, PathBuf, RpmRoot) {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = std::fs::canonicalize(dir.path()).expect("canonical tempdir");
    let root = RpmRoot::new(&base.join("root"));
    (dir, base.join("build"), root)
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(bytes).to_vec()
}

fn load(root: &RpmRoot) -> RpmIndex {
    RpmIndex::load(&root.db_dir(), &root.root).expect("load the rpm index")
}

fn hello(version: &str, bin: &[u8]) -> RpmSpec {
    RpmSpec::new("hello", version)
        .file(RpmFile::new("/usr/bin/hello", bin, 0o755))
        .file(RpmFile::new("/etc/hello.conf", b"greeting=hi\n", 0o644).config())
        .file(RpmFile::new("/var/log/hello.log", b"", 0o644).ghost())
}

#[test]
fn install_upgrade_downgrade_erase() {
    if !can_run() {
        return;
    }
    let (_dir, build, root) = setup();
    let v1 = hello("1.0", b"hello v1\n");
    let v2 = hello("2.0", b"hello v2\n").release("3");
    let rpm1 = rpms::build(&build, &v1);
    let rpm2 = rpms::build(&build, &v2);

    let mut index = load(&root);
    assert_eq!(index.len(), 0);
    let empty_stamp = index.stamp().to_string();
    let db_file = root.db_dir().join("rpmdb.sqlite");
    assert_eq!(
        index.database_stamp(&db_file).as_deref(),
        Some(empty_stamp.as_str())
    );

    // Install v1.
    root.install(&rpm1);
    let bin = root.path("/usr/bin/hello");
    assert_eq!(std::fs::read(&bin).expect("installed"), b"hello v1\n");
    assert!(
        index.refresh(&db_file).expect("refresh"),
        "rpmdb change reloads"
    );
    let owner = index.owner(&bin).expect("owned after install");
    assert_eq!(owner.manager, Manager::Rpm);
    assert_eq!(owner.package, "hello");
    assert_eq!(owner.arch, "noarch");
    assert_eq!(owner.version, "1.0-1");
    assert!(!owner.conffile);
    let digest = owner.digest.expect("a digest");
    assert_eq!(digest.algo, DigestAlgo::Sha256);
    assert_eq!(digest.bytes, sha256(b"hello v1\n"));

    let conf = index
        .owner(&root.path("/etc/hello.conf"))
        .expect("conffile owned");
    assert!(conf.conffile, "%config file");
    assert_eq!(
        conf.digest.expect("conffile digest").bytes,
        sha256(b"greeting=hi\n")
    );
    let ghost = index
        .owner(&root.path("/var/log/hello.log"))
        .expect("ghost owned");
    assert_eq!(ghost.digest, None, "%ghost has no digest");
    let stamp_v1 = index.stamp().to_string();
    assert_ne!(stamp_v1, empty_stamp);
    assert_eq!(
        index.database_stamp(&db_file).as_deref(),
        Some(stamp_v1.as_str())
    );

    // Upgrade to v2: the new version and digest after a refresh.
    root.upgrade(&rpm2);
    assert!(index
        .refresh(&root.db_dir().join("rpmdb.sqlite-wal"))
        .expect("refresh"));
    let owner = index.owner(&bin).expect("owned after upgrade");
    assert_eq!(owner.version, "2.0-3");
    assert_eq!(owner.digest.expect("digest").bytes, sha256(b"hello v2\n"));
    assert_eq!(index.compare_versions("2.0-3", "1.0-1"), Ordering::Greater);
    let stamp_v2 = index.stamp().to_string();
    assert_ne!(stamp_v2, stamp_v1, "an upgrade changes the stamp");
    assert_eq!(root.query_all(), vec!["hello-2.0-3.noarch".to_string()]);

    // Downgrade back to v1: rpm's ordering calls it older.
    root.downgrade(&rpm1);
    assert!(index.refresh(&db_file).expect("refresh"));
    let owner = index.owner(&bin).expect("owned after downgrade");
    assert_eq!(owner.version, "1.0-1");
    assert_eq!(
        index.compare_versions(&owner.version, "2.0-3"),
        Ordering::Less
    );
    assert_eq!(index.stamp(), stamp_v1, "same installed set, same stamp");

    // Erase: gone.
    root.erase("hello");
    assert!(index.refresh(&db_file).expect("refresh"));
    assert_eq!(index.owner(&bin), None);
    assert_eq!(index.len(), 0);
    assert_eq!(index.stamp(), empty_stamp);
}

#[test]
fn md5_digests_and_epochs() {
    if !can_run() {
        return;
    }
    let (_dir, build, root) = setup();
    let spec = RpmSpec::new("oldstyle", "0.9")
        .epoch(2)
        .digest_algo(1)
        .file(RpmFile::new(
            "/usr/share/oldstyle/data",
            b"old data\n",
            0o644,
        ));
    root.install(&rpms::build(&build, &spec));
    let index = load(&root);
    let owner = index
        .owner(&root.path("/usr/share/oldstyle/data"))
        .expect("owned");
    assert_eq!(owner.version, "2:0.9-1");
    let digest = owner.digest.expect("digest");
    assert_eq!(digest.algo, DigestAlgo::Md5);
    assert_eq!(hex::encode(&digest.bytes), md5_hex(b"old data\n"));
    assert_eq!(
        index.compare_versions("2:0.9-1", "10.0-1"),
        Ordering::Greater
    );
}

/// MD5 of `bytes` with coreutils' `md5sum` (no md5 crate in the tree).
fn md5_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run md5sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write to md5sum");
    let out = child.wait_with_output().expect("md5sum output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("md5sum printed a digest")
        .to_string()
}

#[test]
fn merged_usr_aliases_resolve_both_ways() {
    if !can_run() {
        return;
    }
    let (_dir, build, root) = setup();
    std::fs::create_dir_all(root.path("/usr/bin")).expect("mkdir usr/bin");
    std::os::unix::fs::symlink("usr/bin", root.path("/bin")).expect("bin -> usr/bin");
    let spec = RpmSpec::new("tool", "1")
        .file(RpmFile::new("/bin/tool", b"tool\n", 0o755))
        .file(RpmFile::new("/usr/bin/other", b"other\n", 0o755));
    root.install(&rpms::build(&build, &spec));
    assert!(
        root.path("/usr/bin/tool").is_file(),
        "installed through the alias"
    );
    let index = load(&root);
    for path in ["/usr/bin/tool", "/bin/tool", "/usr/bin/other", "/bin/other"] {
        let owner = index.owner(&root.path(path));
        assert_eq!(owner.map(|o| o.package), Some("tool".to_string()), "{path}");
    }
    assert_eq!(index.len(), 2, "one key per real path");
}

#[test]
fn database_files_and_refresh_rules() {
    if !can_run() {
        return;
    }
    let (_dir, build, root) = setup();
    let mut index = load(&root);
    let db = root.db_dir();
    assert!(index.is_database_file(&db.join("rpmdb.sqlite")));
    assert!(index.is_database_file(&db.join(".rpm.lock")));
    assert!(index.is_digest_file(&db.join("rpmdb.sqlite")));
    assert!(index.is_digest_file(&db.join("rpmdb.sqlite-wal")));
    assert!(!index.is_digest_file(&db.join("rpmdb.sqlite-shm")));
    assert!(!index.is_database_file(&root.path("/etc/passwd")));
    assert_eq!(index.database_stamp(&root.path("/etc/passwd")), None);
    assert!(index.is_temporary(&root.path("/usr/bin/hello;6b12b1d2")));
    assert!(!index.is_temporary(&root.path("/etc/hello.conf.rpmnew")));
    assert!(!index.is_temporary(&root.path("/etc/hello.conf.rpmsave")));
    assert_eq!(index.in_repository("hello", "noarch", "1.0-1"), None);

    root.install(&rpms::build(&build, &hello("1.0", b"x\n")));
    // The -shm (written by every reader, this index too) and the lock do not reload.
    assert!(!index
        .refresh(&db.join("rpmdb.sqlite-shm"))
        .expect("refresh"));
    assert!(!index.refresh(&db.join(".rpm.lock")).expect("refresh"));
    assert!(!index
        .refresh(&root.path("/etc/hello.conf"))
        .expect("refresh"));
    assert_eq!(index.len(), 0, "not reloaded yet");
    assert!(index.refresh(&db.join("rpmdb.sqlite")).expect("refresh"));
    assert_eq!(index.len(), 3);

    // A broken database: the refresh fails and the old index stays.
    let saved = std::fs::read(db.join("rpmdb.sqlite")).expect("read db");
    std::fs::write(db.join("rpmdb.sqlite"), b"not a database").expect("clobber");
    let _ = std::fs::remove_file(db.join("rpmdb.sqlite-wal"));
    let _ = std::fs::remove_file(db.join("rpmdb.sqlite-shm"));
    assert!(index.refresh(&db.join("rpmdb.sqlite")).is_err());
    assert_eq!(index.len(), 3, "the old index stays");
    assert!(index.owner(&root.path("/usr/bin/hello")).is_some());
    std::fs::write(db.join("rpmdb.sqlite"), saved).expect("restore");
}

#[test]
fn a_database_without_wal_and_shm_files_loads() {
    if !can_run() {
        return;
    }
    let (_dir, build, root) = setup();
    root.install(&rpms::build(&build, &hello("1.0", b"x\n")));
    // rpm checkpoints and truncates the WAL when it closes the database, so the main file
    // alone is complete; a copied or "parked" rpmdb has no -wal/-shm.
    let db = root.db_dir();
    for f in ["rpmdb.sqlite-wal", "rpmdb.sqlite-shm"] {
        std::fs::remove_file(db.join(f)).expect("remove");
    }
    let before = std::fs::read(db.join("rpmdb.sqlite")).expect("read db");
    let index = load(&root);
    assert_eq!(index.len(), 3);
    assert_eq!(index.package_count(), 1);
    let after = std::fs::read(db.join("rpmdb.sqlite")).expect("read db");
    assert!(before == after, "a load never writes the rpmdb");
    // sqlite recreates the -wal and -shm (empty) for a WAL-mode database even read-only,
    // when the directory is writable: one harmless extra refresh for a watching daemon.
    let left: Vec<String> = std::fs::read_dir(&db)
        .expect("readdir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    eprintln!("rpmdb dir after a read-only load: {left:?}");
}

/// A hostile or damaged header row is skipped; the other packages still load.
#[test]
fn a_malformed_header_row_is_skipped() {
    if !can_run() {
        return;
    }
    let (_dir, build, root) = setup();
    root.install(&rpms::build(&build, &hello("1.0", b"x\n")));
    let db_file = root.db_dir().join("rpmdb.sqlite");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use sqlx::{ConnectOptions, Connection};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db_file)
            .connect()
            .await
            .expect("open the rpmdb");
        // Counts claiming more than the blob holds, then plain garbage, then an empty blob.
        for blob in [
            vec![0, 0, 0, 200, 0, 0, 16, 0, 1, 2, 3],
            b"garbage".to_vec(),
            Vec::new(),
        ] {
            sqlx::query("INSERT INTO Packages (blob) VALUES (?)")
                .bind(blob)
                .execute(&mut conn)
                .await
                .expect("insert");
        }
        conn.close().await.expect("close");
    });
    let index = load(&root);
    assert_eq!(index.package_count(), 1);
    assert_eq!(index.len(), 3);
    assert!(index.owner(&root.path("/usr/bin/hello")).is_some());
}

#[test]
fn a_missing_database_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = RpmIndex::load(&dir.path().join("var/lib/rpm"), dir.path()).expect_err("no db");
    assert!(err.to_string().contains("rpmdb.sqlite"), "{err}");
    assert_eq!(fimd::packages::rpm::find_db(dir.path()), None);
}

#[test]
fn a_running_rpm_transaction_is_seen_through_its_lock() {
    if !can_run() {
        return;
    }
    let (_dir, build, root) = setup();
    // The %pre scriptlet waits (inside the rpm transaction, lock held) for <root>/go.
    let spec = RpmSpec::new("slow", "1")
        .pre_lua("while not posix.access(\"/go\") do posix.sleep(1) end")
        .file(RpmFile::new("/usr/bin/slow", b"slow\n", 0o755));
    let rpm = rpms::build(&build, &spec);
    let index = load(&root);
    assert!(!index.transaction_running(), "idle");

    let child = root
        .command()
        .args(["-i", "--nodeps"])
        .arg(&rpm)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rpm -i");
    let seen = common::wait_until(Duration::from_secs(30), || index.transaction_running());
    // Let rpm finish whatever happened.
    std::fs::write(root.path("/go"), b"").expect("release the scriptlet");
    let out = child.wait_with_output().expect("rpm finished");
    assert!(seen, "the transaction lock was never seen");
    assert!(
        out.status.success(),
        "rpm -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!index.transaction_running(), "released after rpm exits");
    assert!(
        root.db_dir().join(".rpm.lock").is_file(),
        "the lock lives in the rpmdb dir"
    );
}

/// The moment of an upgrade between rpm adding the new header and erasing the old one (the
/// new package's %post runs there): both are installed, the lock is held, and the index
/// gives the path to the new package, with the new digest.
#[test]
fn in_the_middle_of_an_upgrade_the_new_header_wins() {
    if !can_run() {
        return;
    }
    let (_dir, build, root) = setup();
    let v1 = RpmSpec::new("mid", "1").file(RpmFile::new("/usr/bin/mid", b"mid v1\n", 0o755));
    let v2 = RpmSpec::new("mid", "2")
        .post_lua("while not posix.access(\"/go\") do posix.sleep(1) end")
        .file(RpmFile::new("/usr/bin/mid", b"mid v2\n", 0o755));
    root.install(&rpms::build(&build, &v1));
    let rpm2 = rpms::build(&build, &v2);
    let mut index = load(&root);
    let child = root
        .command()
        .args(["-U", "--nodeps"])
        .arg(&rpm2)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rpm -U");
    let db_file = root.db_dir().join("rpmdb.sqlite");
    let both = common::wait_until(Duration::from_secs(30), || {
        index.refresh(&db_file).is_ok() && index.package_count() == 2
    });
    let running = index.transaction_running();
    let owner = index.owner(&root.path("/usr/bin/mid"));
    std::fs::write(root.path("/go"), b"").expect("release the scriptlet");
    let out = child.wait_with_output().expect("rpm finished");
    assert!(
        out.status.success(),
        "rpm -U failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(both, "never saw both headers installed");
    assert!(running, "the lock is held during %post");
    let owner = owner.expect("owned");
    assert_eq!(owner.version, "2-1");
    assert_eq!(owner.digest.expect("digest").bytes, sha256(b"mid v2\n"));

    index.refresh(&db_file).expect("refresh");
    assert_eq!(
        index.package_count(),
        1,
        "the old header is erased after %post"
    );
    assert!(!index.transaction_running());
}

#[test]
fn find_db_locates_the_rpmdb() {
    if !can_run() {
        return;
    }
    let (_dir, _build, root) = setup();
    assert_eq!(
        fimd::packages::rpm::find_db(&root.root).as_deref(),
        Some(root.db_dir().as_path())
    );
}
