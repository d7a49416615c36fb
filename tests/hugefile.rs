//! A huge file must neither blind the daemon nor hold back other events (issue #16 item 1):
//! while a sparse multi-GiB file is hashed at a low `hash_rate`, the watchdog keeps being fed
//! (pings at shorter intervals than WATCHDOG_USEC, read from our NOTIFY_SOCKET with their
//! arrival times) and a small file changed meanwhile gets its event first.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;

/// Datagrams read by a thread, with their arrival times.
type Received = Arc<Mutex<Vec<(Instant, String)>>>;

fn read_notify(d: &Daemon, stop: Arc<std::sync::atomic::AtomicBool>) -> Received {
    let sock = d.notify_socket();
    let got: Received = Arc::default();
    let out = got.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                out.lock().expect("lock").push((Instant::now(), m));
            }
        }
    });
    got
}

fn event_of<'a>(
    events: &'a [serde_json::Value],
    path: &std::path::Path,
) -> Option<&'a serde_json::Value> {
    let p = path.to_string_lossy();
    events.iter().find(|e| e["path"] == *p)
}

#[test]
fn a_huge_file_keeps_the_watchdog_fed_and_small_files_flowing() {
    let env = Env::new();
    // 128 MiB/s: the 2 GiB file takes at least 16 s to hash (more on a loaded machine).
    let config = std::fs::read_to_string(&env.config).expect("config");
    let config = config.replacen("[daemon]\n", "[daemon]\nhash_rate = 134217728\n", 1);
    std::fs::write(&env.config, config).expect("config");
    std::fs::write(env.root.join("before"), "x\n").expect("write");
    // systemd's WatchdogSec=2s: a ping every second, and never 2 s without one.
    let watchdog = Duration::from_secs(2);
    let mut d = env.start_with(&[("WATCHDOG_USEC", "2000000")]);
    d.wait_message("the first ping", |m| m.contains("WATCHDOG=1"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pings = read_notify(&d, stop.clone());

    // `truncate -s 2G`: sparse, nothing on disk, 2 GiB to read.
    let big = env.root.join("huge.img");
    let started = Instant::now();
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(2 * GIB))
        .expect("sparse file");
    // Let the hash begin, then change a small file.
    std::thread::sleep(Duration::from_millis(1500));
    let small = env.root.join("small.conf");
    std::fs::write(&small, "port = 22\n").expect("write");
    let events = env.wait_events("the small file's event", |e| event_of(e, &small).is_some());
    assert!(
        event_of(&events, &big).is_none(),
        "the small file waited for the huge one: {events:#?}"
    );
    let small_latency = started.elapsed();
    // Minutes at most, even on a loaded machine; polled gently (each poll is a process).
    let events = loop {
        let events = env.events();
        if event_of(&events, &big).is_some() {
            break events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no event for the huge file; stderr:\n{}",
            d.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let hashed_for = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let e = event_of(&events, &big).expect("event");
    assert_eq!(e["event"], "added");
    assert_eq!(e["new"]["size"], 2 * GIB);
    // SHA-256 of 2 GiB of zeros.
    assert_eq!(
        e["new"]["sha256"],
        "a7c744c13cc101ed66c29f672f92455547889cc586ce6d44fe76ae824958ea51"
    );

    let pings: Vec<Instant> = pings
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    let mut marks = vec![started];
    marks.extend(pings.iter().copied().filter(|t| *t >= started));
    let widest = marks
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(hashed_for);
    assert!(
        hashed_for > 2 * watchdog,
        "the hash was too quick to show anything: {hashed_for:?}"
    );
    assert!(
        widest < watchdog,
        "the watchdog went {widest:?} without a ping while the huge file was hashed for {hashed_for:?} ({} pings); the small file took {small_latency:?}",
        pings.len()
    );
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}

/// The lane must not split a rename: a big file renamed is one `renamed` event (the old name
/// is held back until the new one is hashed), and a small file changed with it is recorded.
#[test]
fn a_big_file_renamed_is_one_renamed_event() {
    let env = Env::new();
    let old = env.root.join("disk.img");
    // Above the lane's threshold (64 MiB without a hash_rate).
    std::fs::File::create(&old)
        .and_then(|f| f.set_len(96 << 20))
        .expect("sparse file");
    let d = env.start();
    let new = env.root.join("disk-renamed.img");
    std::fs::rename(&old, &new).expect("rename");
    let events = env.wait_events("the rename", |e| event_of(e, &new).is_some());
    let e = event_of(&events, &new).expect("event");
    assert_eq!(e["event"], "renamed", "{events:#?}");
    assert_eq!(e["from"], old.to_string_lossy().as_ref());
    assert!(
        event_of(&env.barrier(), &old).is_none(),
        "no removed event for the old name"
    );
    assert_eq!(env.dry_run(), (0, String::new()));
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS")
}

/// Issue #16 item 12: a burst of real-time events (30,000 files in one directory; the dev build
/// before the fix: 39 MiB idle -> 105 MiB, still 105 MiB a minute later) gives its memory back
/// once the daemon is idle again: resident memory back under twice its idle value within a
/// minute.
#[test]
fn memory_is_given_back_after_a_burst() {
    let env = Env::new();
    let d = env.start();
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(d.pid());
    let dir = env.root.join("burst");
    std::fs::create_dir(&dir).expect("mkdir");
    let files = 30_000;
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i:05}")), "x\n").expect("write");
    }
    let started = Instant::now();
    loop {
        let n = env.status()["events"].as_u64().unwrap_or(0);
        if n >= files {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {n} of {files} events recorded"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = rss_kib(d.pid());
    let back = Instant::now();
    let mut now = after;
    while now >= 2 * idle && back.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        now = rss_kib(d.pid());
    }
    eprintln!(
        "RSS {idle} KiB idle, {after} KiB after {files} events, {now} KiB {:.1} s later",
        back.elapsed().as_secs_f64()
    );
    assert!(
        now < 2 * idle,
        "RSS {idle} KiB idle, {after} KiB after {files} events, still {now} KiB a minute later"
    );
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}
