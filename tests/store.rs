//! The database under faults (issue #16, items 3, 9 and 11): a full disk, a database removed,
//! replaced or truncated under the running daemon, and a killed `init --force`.
//! The full-disk test mounts a small tmpfs and needs root; CI sets FIMD_REQUIRE_ROOT=1 so that
//! it cannot skip.

mod common;

use common::Env;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted on `dir` for the test's length (lazily unmounted on drop, also
/// when the test panics).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mkdir mount point");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mount -t tmpfs on {} failed", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Write `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0x5au8; 64 << 10];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                break;
            }
        }
    }
    // Whatever still fits in a partial block.
    while let Ok(n) = f.write(&chunk[..512]) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

fn run(env: &Env, args: &[&str]) -> (i32, String, String) {
    let out = env.fimd().args(args).output().expect("run fimd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_full_disk_keeps_the_change_retries_and_never_stops_the_daemon() {
    if !common::can_run(
        common::is_root(),
        "FIMD_REQUIRE_ROOT",
        "needs root to mount a small tmpfs",
    ) {
        return;
    }
    let env = Env::new();
    let _tmpfs = Tmpfs::mount(env.db.parent().expect("state dir"), "8m");
    let watched = env.root.join("app.conf");
    std::fs::write(&watched, "setting = 1\n").expect("write");
    let mut d = env.start();
    let before = env.barrier();
    assert!(
        before.is_empty(),
        "no events before the change: {before:#?}"
    );

    let filler = env.db.with_file_name("filler");
    let filled = fill(&filler);
    assert!(filled > 0, "the tmpfs had room to fill");
    std::fs::write(&watched, "setting = 2\n").expect("write");
    let message = d.wait_message_in_stderr("the disk-full error", |s| {
        s.contains(&format!("disk full ({})", env.db.display()))
    });
    assert!(
        !message.contains("disk I/O error"),
        "the error says what is wrong: {message}"
    );
    // Read-only commands work while the disk is full.
    let (code, out, err) = run(&env, &["status", "--json"]);
    assert_eq!(code, 0, "status while the disk is full: {err}");
    let status: Value = serde_json::from_str(&out).expect("status JSON");
    assert!(status.is_object(), "{status}");
    let (code, _, err) = run(&env, &["events", "--json"]);
    assert_eq!(code, 0, "events while the disk is full: {err}");
    // Keep it full across a few retries (1 s, 2 s, 4 s backoff), then free the space.
    let full_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < full_until {
        assert!(
            d.exited().is_none(),
            "the daemon exited while the disk was full:\n{}",
            d.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(&filler).expect("free the space");

    let p = watched.to_string_lossy().into_owned();
    let events = env.wait_events("the change recorded once the disk has room", |e| {
        e.iter().any(|e| e["path"] == *p)
    });
    let mine: Vec<&Value> = events.iter().filter(|e| e["path"] == *p).collect();
    assert_eq!(
        mine.len(),
        1,
        "exactly one event for the change: {events:#?}"
    );
    assert_eq!(mine[0]["event"], "modified");
    assert_eq!(
        mine[0]["source"], "inotify",
        "the kept change, not a rescan"
    );
    // No connection was left broken: later changes are recorded too.
    let after = env.barrier();
    assert_eq!(after.len(), 1, "{after:#?}");
    assert!(d.exited().is_none(), "{}", d.stderr_text());
    let stderr = d.stderr_text();
    assert!(
        !stderr.contains("transaction depth"),
        "no connection reused mid-transaction:\n{stderr}"
    );
    let (status, _) = d.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "clean stop after the disk-full episode"
    );
}

#[test]
fn a_removed_database_is_an_error_and_the_daemon_exits_18() {
    let env = Env::new();
    std::fs::write(env.root.join("a.conf"), "a\n").expect("write");
    let mut d = env.start();
    std::fs::remove_file(&env.db).expect("remove the database");
    let status = d.wait_exit(Duration::from_secs(25)).unwrap_or_else(|| {
        panic!(
            "the daemon kept running without its database:\n{}",
            d.stderr_text()
        )
    });
    assert_eq!(status.code(), Some(18), "{}", d.stderr_text());
    let stderr = d.stderr_text();
    assert!(
        stderr.contains(&format!("database {} was removed", env.db.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("ERROR"),
        "an error, not a notice:\n{stderr}"
    );
}

#[test]
fn a_replaced_database_is_an_error_and_the_daemon_exits_18() {
    let env = Env::new();
    std::fs::write(env.root.join("a.conf"), "a\n").expect("write");
    let mut d = env.start();
    // Another file (another inode) put in its place, as a restore from backup would.
    let copy = env.db.with_file_name("copy.db");
    std::fs::copy(&env.db, &copy).expect("copy");
    std::fs::rename(&copy, &env.db).expect("replace");
    let status = d.wait_exit(Duration::from_secs(25)).unwrap_or_else(|| {
        panic!(
            "the daemon kept writing into the old file:\n{}",
            d.stderr_text()
        )
    });
    assert_eq!(status.code(), Some(18), "{}", d.stderr_text());
    assert!(
        d.stderr_text().contains("was replaced by another file"),
        "{}",
        d.stderr_text()
    );
}

#[test]
fn a_truncated_database_is_an_error_and_the_daemon_exits_18() {
    let env = Env::new();
    for i in 0..200 {
        std::fs::write(env.root.join(format!("f{i}.conf")), "a\n").expect("write");
    }
    let mut d = env.start();
    // Checkpointed, so the main file holds every page its header counts.
    let (code, _, err) = run(&env, &["status"]);
    assert_eq!(code, 0, "{err}");
    let len = std::fs::metadata(&env.db).expect("db").len();
    assert!(len > 8192, "a database of several pages: {len}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&env.db)
        .and_then(|f| f.set_len(4096))
        .expect("truncate");
    let status = d.wait_exit(Duration::from_secs(25)).unwrap_or_else(|| {
        panic!(
            "the daemon kept running on a truncated database:\n{}",
            d.stderr_text()
        )
    });
    assert_eq!(status.code(), Some(18), "{}", d.stderr_text());
    assert!(
        d.stderr_text()
            .contains("was truncated (4096 bytes, SQLite counts"),
        "{}",
        d.stderr_text()
    );
}

fn checkpoint(db: &Path) {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg("PRAGMA wal_checkpoint(TRUNCATE);")
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Retention's vacuum (here run by a `check` beside the daemon) shrinks the database file:
/// not a truncation, the daemon keeps running and recording.
#[test]
fn a_database_shrunk_by_retention_is_not_a_truncation() {
    let env = Env::new();
    let line = "x".repeat(99) + "\n";
    for i in 0..100 {
        std::fs::write(env.root.join(format!("f{i}.conf")), line.repeat(200)).expect("write");
    }
    let mut d = env.start();
    for i in 0..100 {
        let text = line.repeat(200).replace('x', "y");
        std::fs::write(env.root.join(format!("f{i}.conf")), text).expect("write");
    }
    let events = env.barrier();
    assert!(events.len() >= 100, "{}", events.len());
    // Pages reach the file itself at a checkpoint (with 64 KiB pages SQLite's own comes
    // only every 64 MB of WAL).
    checkpoint(&env.db);
    let grown = std::fs::metadata(&env.db).expect("db").len();
    std::thread::sleep(Duration::from_secs(2));
    let config = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        format!("{config}\n[store]\nkeep_events = \"1s\"\n"),
    )
    .expect("config");
    let (code, _, err) = run(&env, &["check"]);
    assert!(code == 0 || code == 4, "{code}: {err}");
    checkpoint(&env.db);
    let shrunk = std::fs::metadata(&env.db).expect("db").len();
    assert!(
        shrunk < grown,
        "the vacuum gave pages back: {grown} -> {shrunk}"
    );
    // The daemon looks at its file every 10 s.
    assert!(
        d.wait_exit(Duration::from_secs(13)).is_none(),
        "the daemon stopped:\n{}",
        d.stderr_text()
    );
    // Still recording: the sentinel's event comes (the barrier panics at its deadline).
    env.barrier();
}

#[test]
fn a_start_after_the_database_was_lost_records_a_critical_recreated_event() {
    let env = Env::new();
    std::fs::write(env.root.join("a.conf"), "a\n").expect("write");
    // A first start builds the first baseline: no event, no error.
    let d = env.start();
    assert!(env.events().is_empty());
    let first = d.stderr_text();
    assert!(
        !first.contains("ERROR"),
        "a first start is not an error:\n{first}"
    );
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
    for suffix in ["", "-wal", "-shm"] {
        let mut p = env.db.as_os_str().to_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let d = env.start();
    let events = env.wait_events("the recreated-baseline event", |e| !e.is_empty());
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["severity"], "critical", "{e:#}");
    assert_eq!(
        e["reason"], "baseline was recreated (previous database missing)",
        "{e:#}"
    );
    assert_eq!(e["path"], env.db.to_string_lossy().as_ref());
    let stderr = d.stderr_text();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("missing its baseline")),
        "one error line in the journal:\n{stderr}"
    );
    // The new baseline is complete: a later change is reported as usual.
    let after = env.barrier();
    assert_eq!(after.len(), 1, "{after:#?}");
    d.stop();
}

#[test]
fn a_killed_init_force_keeps_the_old_baseline_and_history() {
    let env = Env::new();
    std::fs::write(env.root.join("a.conf"), "a\n").expect("write");
    let (code, _, err) = run(&env, &["init"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(env.root.join("a.conf"), "a changed\n").expect("write");
    let (code, _, err) = run(&env, &["check"]);
    assert_eq!(code, 4, "one change recorded: {err}");
    let history = env.events();
    assert_eq!(history.len(), 1);
    // A big sparse file makes the new scan long enough to be killed half way.
    let big = env.root.join("big.img");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(6 << 30))
        .expect("sparse file");
    let building = {
        let mut name = env.db.file_name().expect("name").to_os_string();
        name.push(".new");
        env.db.with_file_name(name)
    };
    let mut child = env
        .fimd()
        .args(["init", "--force"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("init --force");
    let started = Instant::now();
    // Killed once its new baseline is under way (or after a second, whichever is first).
    while !building.exists() && started.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "init --force finished before it could be killed (make the file bigger)"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    // The old baseline is whole and verifies: without the big file (hashing 6 GiB would take
    // minutes in a debug build) the tree is what the old baseline holds.
    std::fs::remove_file(&big).expect("rm big");
    let (code, out, err) = run(&env, &["check", "--dry-run"]);
    assert_eq!(code, 0, "the old baseline stands: {out}{err}");
    assert_eq!(env.events(), history, "the history is untouched");

    // A new init --force completes, keeps the history and leaves no building file.
    let (code, _, err) = run(&env, &["init", "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(!building.exists(), "the new file was renamed into place");
    let (code, _, err) = run(&env, &["check", "--dry-run"]);
    assert_eq!(code, 0, "the new baseline is complete: {err}");
    let kept = env.events();
    assert_eq!(kept.len(), 1, "events survive init --force: {kept:#?}");
    assert_eq!(kept[0]["path"], history[0]["path"]);
}
