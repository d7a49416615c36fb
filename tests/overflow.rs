//! IN_Q_OVERFLOW for real. The kernel sizes an inotify instance's event queue from
//! `fs.inotify.max_queued_events` when the instance is created, so the daemon is started while
//! that is lowered to 16 and the value is restored as soon as it is READY: only inotify
//! instances created in that second get the small queue. This is its own test binary because
//! cargo runs test binaries one at a time, so no other test's daemon starts in the window, and
//! its tests take turns.
//! Needs root; CI sets FIMD_REQUIRE_ROOT=1 so that it cannot skip.

mod common;

use common::Env;
use std::path::Path;

const QUEUE: &str = "/proc/sys/fs/inotify/max_queued_events";

/// The tests of this binary change a system-wide setting: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A sysctl set for the life of the guard, restored on drop (also when the test panics).
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Sysctl {
        let old = std::fs::read_to_string(path).expect("read sysctl");
        std::fs::write(path, value).expect("write sysctl");
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(self.path, self.old.trim()) {
            eprintln!("could not restore {}: {e}", self.path);
        }
    }
}

fn write(p: &Path, text: &str) {
    std::fs::write(p, text).expect("write");
}

#[test]
fn a_kernel_queue_overflow_is_a_warning_and_a_full_rescan_and_nothing_is_lost() {
    let _serial = serial();
    let writable = rustix::process::geteuid().is_root()
        && std::fs::OpenOptions::new().write(true).open(QUEUE).is_ok();
    if !common::can_run(
        writable,
        "FIMD_REQUIRE_ROOT",
        &format!("needs root to lower {QUEUE}"),
    ) {
        return;
    }
    let env = Env::new();
    const N: usize = 2000;
    let files: Vec<_> = (0..N)
        .map(|i| env.root.join(format!("d{}/f{i}.conf", i % 20)))
        .collect();
    for f in &files {
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        write(f, "before\n");
    }
    let started = std::time::Instant::now();
    let d = {
        let _small_queue = Sysctl::set(QUEUE, "16");
        env.start()
    };

    // Far more events than 16 queued before the daemon's reader can drain them.
    for f in &files {
        write(f, "after\n");
    }
    let events = env.wait_events("every change", |e| {
        let mut p: Vec<&str> = e.iter().filter_map(|e| e["path"].as_str()).collect();
        p.sort_unstable();
        p.dedup();
        p.len() >= N
    });
    let stderr = d.stderr_text();
    assert!(
        stderr.contains("inotify queue overflowed (IN_Q_OVERFLOW)"),
        "no overflow seen; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("full rescan done reason=KernelOverflow"),
        "no full rescan after the overflow; stderr:\n{stderr}"
    );
    // One warning per owed rescan, at most one such rescan per 10 s, never a rescan loop or
    // a flood of warnings.
    let warnings = stderr.matches("IN_Q_OVERFLOW").count() as u64;
    let allowed = 2 + started.elapsed().as_secs() / 10;
    assert!(
        warnings <= allowed,
        "{warnings} overflow warnings in {:?}:\n{stderr}",
        started.elapsed()
    );
    // Every file's change recorded (a rescan may also have caught a file between its
    // truncation and its write: that empty state is a real one, recorded as well).
    let mut paths: Vec<&str> = events
        .iter()
        .inspect(|e| assert_eq!(e["event"], "modified", "{e:#}"))
        .filter_map(|e| e["path"].as_str())
        .collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len(), N, "every file");
    // And the baseline ends equal to the disk: nothing was lost.
    let (code, out) = env.dry_run();
    assert_eq!(code, 0, "the baseline matches the disk:\n{out}");
    let from_rescan = events.iter().filter(|e| e["source"] == "rescan").count();
    eprintln!("{from_rescan} of {N} changes found by the rescan after the overflow");
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}

/// A tree of `n` directories (a hundred per parent), one file in each.
fn many_directories(env: &Env, n: usize) {
    for i in 0..n {
        let dir = env.root.join(format!("p{}/d{i}", i / 100));
        std::fs::create_dir_all(&dir).expect("mkdir");
        write(&dir.join("f.py"), "x = 1\n");
    }
}

/// Wait until the daemon's startup scan is done; its stderr.
fn startup_scan_done(d: &common::Daemon) -> String {
    let done = common::wait_until(common::DEADLINE, || {
        d.stderr_text().contains("full rescan done reason=Startup")
    });
    let stderr = d.stderr_text();
    assert!(done, "no startup rescan; stderr:\n{stderr}");
    stderr
}

#[test]
fn startup_on_10k_directories_with_the_default_queue_sees_no_overflow() {
    let _serial = serial();
    let env = Env::new();
    many_directories(&env, 10_000);
    let init = env.fimd().arg("init").output().expect("init");
    assert!(init.status.success(), "{init:?}");
    let d = env.start();
    let stderr = startup_scan_done(&d);
    assert!(!stderr.contains("IN_Q_OVERFLOW"), "{stderr}");
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_daemons_own_reads_queue_no_kernel_events() {
    let _serial = serial();
    // With a queue far smaller than the tree's directory count, installing the watches and
    // the startup scan (which opens every directory) must not overflow it: only changes are
    // subscribed. (With notify 8's IN_OPEN, each directory queued one event while the watches
    // were installed and two per scan.)
    let writable = rustix::process::geteuid().is_root()
        && std::fs::OpenOptions::new().write(true).open(QUEUE).is_ok();
    if !common::can_run(
        writable,
        "FIMD_REQUIRE_ROOT",
        &format!("needs root to lower {QUEUE}"),
    ) {
        return;
    }
    let env = Env::new();
    many_directories(&env, 3_000);
    let init = env.fimd().arg("init").output().expect("init");
    assert!(init.status.success(), "{init:?}");
    let d = {
        let _small_queue = Sysctl::set(QUEUE, "256");
        env.start()
    };
    let stderr = startup_scan_done(&d);
    assert!(!stderr.contains("IN_Q_OVERFLOW"), "{stderr}");
    // Real time still works on that small queue.
    let f = env.root.join("p7/d700/f.py");
    write(&f, "x = 2\n");
    let events = env.wait_events("the change", |e| !e.is_empty());
    assert_eq!(events[0]["source"], "inotify", "{events:#?}");
    assert!(!d.stderr_text().contains("IN_Q_OVERFLOW"));
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_fanotify_queue_overflow_is_one_rescan_and_nothing_is_lost() {
    const FAN_QUEUE: &str = "/proc/sys/fs/fanotify/max_queued_events";
    let _serial = serial();
    let writable = rustix::process::geteuid().is_root()
        && std::fs::OpenOptions::new()
            .write(true)
            .open(FAN_QUEUE)
            .is_ok();
    if !common::can_run(
        writable,
        "FIMD_REQUIRE_ROOT",
        &format!("needs root to lower {FAN_QUEUE}"),
    ) {
        return;
    }
    let env = Env::new();
    env.write_config_whodata("require", &env.watch_table(&env.root));
    const N: usize = 2000;
    let files: Vec<_> = (0..N)
        .map(|i| env.root.join(format!("d{}/f{i}.conf", i % 20)))
        .collect();
    for f in &files {
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        write(f, "before\n");
    }
    // The queue size is read when the group is created (at the daemon's start).
    let d = {
        let _small_queue = Sysctl::set(FAN_QUEUE, "64");
        env.start()
    };
    // The daemon is stopped while the changes are made, so its queue surely overflows (a
    // fast reader could otherwise keep up with 64 events at a time).
    d.signal("STOP");
    for f in &files {
        write(f, "after\n");
    }
    d.signal("CONT");
    let events = env.wait_events("every change", |e| {
        let mut p: Vec<&str> = e.iter().filter_map(|e| e["path"].as_str()).collect();
        p.sort_unstable();
        p.dedup();
        p.len() >= N
    });
    let stderr = d.stderr_text();
    assert!(
        stderr.contains("fanotify queue overflowed (FAN_Q_OVERFLOW)"),
        "no overflow seen; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("full rescan done reason=KernelOverflow"),
        "{stderr}"
    );
    let mut paths: Vec<&str> = events.iter().filter_map(|e| e["path"].as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len(), N, "every file");
    let (code, out) = env.dry_run();
    assert_eq!(code, 0, "the baseline matches the disk:\n{out}");
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}
