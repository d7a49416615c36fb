//! `fimd run` end to end: the real binary, real inotify, a real SQLite file, sd-notify on a
//! datagram socket. Every wait is a condition with a deadline.

mod common;

use common::{changed, only, Env};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn write(p: &Path, text: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(p, text).expect("write");
}

/// Each of `n` files was added exactly once and nothing was removed. A writer stalled longer
/// than the debounce window between creat() and write() (two busy cores shared by parallel
/// tests) legitimately gives `added` (empty) then `modified`, so `modified` is tolerated.
fn assert_added_once(events: &[serde_json::Value], n: usize) {
    let added: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "added")
        .filter_map(|e| e["path"].as_str())
        .collect();
    let mut distinct = added.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), n, "every file added");
    assert_eq!(added.len(), n, "and exactly once");
    let others: Vec<_> = events.iter().filter(|e| e["event"] != "added").collect();
    assert!(
        others.iter().all(|e| e["event"] == "modified"),
        "no removed events: {others:#?}"
    );
    if !others.is_empty() {
        eprintln!(
            "note: {} modified after added (stalled writer)",
            others.len()
        );
    }
}

#[test]
fn modify_create_delete_chmod_are_reported_from_inotify() {
    let env = Env::new();
    let (a, b, c) = (
        env.root.join("a.conf"),
        env.root.join("b.conf"),
        env.root.join("c.conf"),
    );
    write(&a, "port = 1\n");
    write(&c, "gone soon\n");
    let d = env.start();
    assert!(env.events().is_empty(), "the first baseline is silent");

    write(&a, "port = 2\n");
    write(&b, "new\n");
    std::fs::remove_file(&c).expect("rm");
    let events = env.wait_events("modified+added+removed", |e| e.len() >= 3);
    assert_eq!(events.len(), 3, "{events:#?}");
    assert!(events.iter().all(|e| e["source"] == "inotify"));
    let m = only(&env.events_for(&a), "modified")
        .cloned()
        .expect("one modified");
    assert!(changed(&m).contains(&"sha256".to_string()));
    assert!(m["diff"].as_str().is_some_and(|d| d.contains("+port = 2")));
    assert!(only(&env.events_for(&b), "added").is_some());
    assert!(only(&env.events_for(&c), "removed").is_some());

    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let events = env.wait_events("chmod", |e| e.len() >= 4);
    let last = &events[3];
    assert_eq!(last["event"], "modified");
    assert!(changed(last).contains(&"mode".to_string()));
    assert!(!changed(last).contains(&"sha256".to_string()));
    assert_eq!(last["new"]["mode"], "0600");
    drop(d);
}

#[test]
fn chown_is_reported_when_root() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: chown needs root");
        return;
    }
    let env = Env::new();
    let a = env.root.join("owned.conf");
    write(&a, "x\n");
    let _d = env.start();
    std::os::unix::fs::chown(&a, Some(4242), Some(4343)).expect("chown");
    let events = env.wait_events("chown", |e| !e.is_empty());
    let e = &events[0];
    assert_eq!(e["event"], "modified");
    assert_eq!(e["new"]["uid"], 4242);
    assert_eq!(e["new"]["gid"], 4343);
    let ch = changed(e);
    assert!(
        ch.contains(&"uid".into()) && ch.contains(&"gid".into()),
        "{ch:?}"
    );
}

#[test]
fn create_then_write_within_the_window_is_one_added() {
    let env = Env::new();
    let _d = env.start();
    let p = env.root.join("fresh.conf");
    std::fs::File::create(&p).expect("create");
    write(&p, "one\n");
    write(&p, "one\ntwo\n");
    env.wait_events("added", |e| !e.is_empty());
    let events = env.barrier();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event"], "added");
    assert_eq!(events[0]["new"]["size"], 8, "the final state is described");
}

#[test]
fn rename_and_editor_replace() {
    let env = Env::new();
    let (a, b, cfg) = (
        env.root.join("a.conf"),
        env.root.join("b.conf"),
        env.root.join("app.conf"),
    );
    write(&a, "rename me\n");
    write(&cfg, "v = 1\n");
    let _d = env.start();

    std::fs::rename(&a, &b).expect("mv");
    // One `renamed` event: the new name, the old one in `from`, the same inode and content.
    let events = env.wait_events("rename", |e| !e.is_empty());
    assert_eq!(events.len(), 1, "{events:#?}");
    let r = only(&env.events_for(&b), "renamed")
        .cloned()
        .expect("renamed");
    assert_eq!(r["from"], *a.to_string_lossy());
    assert_eq!(r["old"]["sha256"], r["new"]["sha256"]);
    assert_eq!(r["old"]["inode"], r["new"]["inode"]);
    assert!(
        !changed(&r).contains(&"ctime".into()),
        "ctime is left out of a rename"
    );

    // An editor: write a temp file, then rename it over the original.
    let tmp = env.root.join(".app.conf.swp");
    write(&tmp, "v = 2\n");
    std::fs::rename(&tmp, &cfg).expect("replace");
    env.wait_events("replace", |e| e.len() >= 2);
    let m = only(&env.events_for(&cfg), "modified")
        .cloned()
        .expect("modified");
    assert!(changed(&m).contains(&"sha256".into()));
    assert!(changed(&m).contains(&"inode".into()));
    let events = env.barrier();
    assert!(env.events_for(&tmp).is_empty(), "{events:#?}");
    assert_eq!(events.len(), 2, "{events:#?}");
}

#[test]
fn a_symlinked_directory_is_never_followed() {
    // Found by the realtime bench: notify followed `link -> real` and reported changes in
    // `real/` under `link/` (and never under their real path).
    let env = Env::new();
    let real = env.root.join("real");
    write(&real.join("x.conf"), "1\n");
    std::os::unix::fs::symlink("real", env.root.join("link")).expect("symlink");
    let _d = env.start();
    write(&real.join("x.conf"), "2\n");
    write(&real.join("y.conf"), "3\n");
    env.wait_events("two events", |e| e.len() >= 2);
    let events = env.barrier();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(only(&env.events_for(&real.join("x.conf")), "modified").is_some());
    assert!(only(&env.events_for(&real.join("y.conf")), "added").is_some());
}

#[test]
fn files_written_at_once_in_a_new_directory_are_added() {
    let env = Env::new();
    let _d = env.start();
    let deep = env.root.join("new/deeper/deepest");
    std::fs::create_dir_all(&deep).expect("mkdir -p");
    for i in 0..20 {
        write(&deep.join(format!("f{i}")), "x\n");
    }
    write(&env.root.join("new/top"), "y\n");
    env.wait_events("21 added", |e| e.len() >= 21);
    assert_added_once(&env.barrier(), 21);
    assert_eq!(env.dry_run(), (0, String::new()));
}

#[test]
fn watched_directories_deleted_and_recreated() {
    let env = Env::new();
    let sub = env.root.join("sub");
    write(&sub.join("old"), "1\n");
    write(&env.root.join("top"), "2\n");
    let _d = env.start();

    // A subdirectory.
    std::fs::remove_dir_all(&sub).expect("rm sub");
    write(&sub.join("new"), "3\n");
    env.wait_events("sub recreated", |e| e.len() >= 2);
    assert!(only(&env.events_for(&sub.join("old")), "removed").is_some());
    assert!(only(&env.events_for(&sub.join("new")), "added").is_some());

    // The root itself: watched again at once through its parent.
    std::fs::remove_dir_all(&env.root).expect("rm root");
    let events = env.wait_events("root removed", |e| e.len() >= 4);
    assert!(events.iter().skip(2).all(|e| e["event"] == "removed"));
    std::fs::create_dir(&env.root).expect("mkdir root");
    write(&env.root.join("reborn"), "4\n");
    env.wait_events("first file in recreated root", |e| e.len() >= 5);
    write(&env.root.join("later/deep"), "5\n");
    let events = env.wait_events("second file in recreated root", |e| e.len() >= 6);
    assert!(only(&env.events_for(&env.root.join("reborn")), "added").is_some());
    assert!(only(&env.events_for(&env.root.join("later/deep")), "added").is_some());
    assert!(
        events.iter().all(|e| e["source"] == "inotify"),
        "{events:#?}"
    );
    assert_eq!(env.dry_run(), (0, String::new()));
}

#[test]
fn authorized_keys_created_is_added() {
    let env = Env::new();
    let home = env.base().join("home");
    let alice = home.join("alice");
    let bob = home.join("bob");
    std::fs::create_dir_all(alice.join(".ssh")).expect("mkdir");
    std::fs::create_dir_all(&bob).expect("mkdir");
    let passwd = env.base().join("passwd");
    write(
        &passwd,
        &format!(
            "alice:x:1000:1000::{}:/bin/sh\nbob:x:1001:1001::{}:/bin/sh\n",
            alice.display(),
            bob.display()
        ),
    );
    env.write_config(&format!(
        "{}[users]\nauthorized_keys = true\npasswd = \"{}\"\n",
        env.watch_table(&env.root),
        passwd.display()
    ));
    let _d = env.start();
    let ak = alice.join(".ssh/authorized_keys");
    write(&ak, "ssh-ed25519 AAAA alice\n");
    env.wait_events("alice's key", |e| !e.is_empty());
    assert!(only(&env.events_for(&ak), "added").is_some());

    // bob has no ~/.ssh yet: its creation is seen through the nearest watched ancestor.
    let bk = bob.join(".ssh/authorized_keys");
    write(&bk, "ssh-ed25519 BBBB bob\n");
    env.wait_events("bob's key", |e| e.len() >= 2);
    assert!(only(&env.events_for(&bk), "added").is_some());
    write(&bk, "ssh-ed25519 BBBB bob\nssh-rsa CCCC intruder\n");
    env.wait_events("bob's key modified", |e| e.len() >= 3);
    assert!(only(&env.events_for(&bk), "modified").is_some());
}

#[test]
fn burst_of_10000_writes_loses_nothing() {
    let env = Env::new();
    let _d = env.start();
    let n = 10_000;
    for i in 0..n {
        write(
            &env.root.join(format!("d{}/f{i}.conf", i % 50)),
            &format!("value = {i}\n"),
        );
    }
    let events = env.wait_events("10000 added", |e| {
        e.iter().filter(|e| e["event"] == "added").count() >= n
    });
    assert_added_once(&events, n);
    assert_eq!(env.dry_run(), (0, String::new()), "baseline equals disk");
}

#[test]
fn sighup_with_a_good_config_watches_and_baselines_new_roots_silently() {
    let env = Env::new();
    let extra = env.base().join("extra");
    write(&extra.join("existing.conf"), "old\n");
    write(&env.root.join("a.conf"), "a\n");
    let mut d = env.start();
    env.write_config(&format!(
        "{}{}",
        env.watch_table(&env.root),
        env.watch_table(&extra)
    ));
    d.signal("HUP");
    d.wait_message("RELOADING=1", |m| m.contains("RELOADING=1"));
    assert!(
        d.messages.iter().any(|m| m.contains("MONOTONIC_USEC=")),
        "{:?}",
        d.messages
    );
    d.wait_message("READY=1 after reload", |m| {
        m.contains("READY=1") && m.contains("reloaded")
    });
    assert!(
        env.events().is_empty(),
        "existing files of a new root: no events"
    );
    assert_eq!(env.dry_run(), (0, String::new()), "and they are baselined");

    write(&extra.join("existing.conf"), "new\n");
    write(&extra.join("fresh.conf"), "x\n");
    let events = env.wait_events("changes in the new root", |e| e.len() >= 2);
    assert!(events.iter().all(|e| e["source"] == "inotify"));

    // Dropping the root again: its rows go silently, its changes are no longer events.
    d.messages.clear();
    env.write_config(&env.watch_table(&env.root));
    d.signal("HUP");
    d.wait_message("second reload", |m| {
        m.contains("READY=1") && m.contains("reloaded") && !m.contains("RELOADING")
    });
    let st = env.status();
    assert_eq!(st["baseline_files"], 1, "{st:#}");
    write(&extra.join("existing.conf"), "ignored\n");
    write(&env.root.join("a.conf"), "b\n");
    env.wait_events("change in the kept root", |e| e.len() >= 3);
    let events = env.barrier();
    assert_eq!(events.len(), 3, "{events:#?}");
}

#[test]
fn sighup_with_a_bad_config_keeps_the_old_one() {
    let env = Env::new();
    let mut d = env.start();
    std::fs::write(&env.config, "[daemon]\nrescan_interval = \"soon\"\n").expect("write");
    d.signal("HUP");
    d.wait_message("READY=1 after failed reload", |m| {
        m.contains("READY=1") && m.contains("reload failed")
    });
    let errors: Vec<String> = d
        .stderr_text()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(String::from)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("configuration reload failed"));
    assert!(errors[0].contains("fimd.toml:2:"), "{}", errors[0]);
    // The daemon keeps running the old config; restore the file so our own CLI reads work.
    env.write_config(&env.watch_table(&env.root));
    write(&env.root.join("still.conf"), "watched\n");
    env.wait_events("change under the old config", |e| !e.is_empty());
}

#[test]
fn sigterm_exits_0_within_5_s_even_under_load_and_restart_catches_up() {
    let env = Env::new();
    let d = env.start();
    for i in 0..3000 {
        write(&env.root.join(format!("d{}/f{i}", i % 10)), "x\n");
    }
    let (status, took) = d.stop();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // Whatever was not committed is found by the startup rescan.
    let d = env.start();
    env.wait_events("3000 added after restart", |e| e.len() >= 3000);
    assert_eq!(env.dry_run(), (0, String::new()));
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sd_notify_protocol() {
    let env = Env::new();
    write(&env.root.join("a"), "1\n");
    let mut d = env.start_with(&[("WATCHDOG_USEC", "300000")]);
    // First start: a baseline is built, so startup is extended.
    assert!(d
        .messages
        .iter()
        .any(|m| m.contains("EXTEND_TIMEOUT_USEC=")));
    assert!(d.messages.iter().any(|m| m.contains("STATUS=")));
    let pings = d.count_messages(Duration::from_millis(1200), |m| m == "WATCHDOG=1\n");
    assert!(pings >= 3, "{:?}", d.messages);
    d.signal("TERM");
    d.wait_message("STOPPING=1", |m| m.contains("STOPPING=1"));
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_change_while_stopped_is_reported_as_rescan_on_start() {
    let env = Env::new();
    let a = env.root.join("a.conf");
    write(&a, "before\n");
    let d = env.start();
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
    let st = env.status();
    for fact in ["pid", "watches", "fallback", "queue_depth"] {
        assert!(st["daemon"].get(fact).is_none(), "{fact} cleared: {st:#}");
    }
    write(&a, "while stopped\n");
    let d = env.start();
    let events = env.wait_events("rescan event", |e| !e.is_empty());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["source"], "rescan");
    assert_eq!(events[0]["event"], "modified");
    let st = env.status();
    assert_eq!(st["daemon"]["pid"], d.pid());
    assert_eq!(st["daemon"]["fallback"], "none");
    assert!(st["daemon"]["last_rescan"].is_string(), "{st:#}");
    let watches = env.wait_status("watches published", |s| s["daemon"]["watches"].is_number())
        ["daemon"]["watches"]
        .clone();
    assert!(watches.as_u64() >= Some(2), "{watches}");
}

/// The shell run by `unshare -Ur` to lower the inotify watch limit of its own user namespace
/// (`/proc/sys/user/max_inotify_watches`; the machine's limit is untouched), then exec fimd.
const FEW_WATCHES: &str = "echo 8 > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\"";

/// Can this machine run a process in a user namespace of its own with a lower watch limit?
/// CI sets FIMD_REQUIRE_USERNS=1 to make "no" a failure instead of a skip.
fn can_limit_watches() -> bool {
    let ok = std::process::Command::new("unshare")
        .args([
            "-Ur",
            "sh",
            "-c",
            "echo 8 > /proc/sys/user/max_inotify_watches",
        ])
        .status()
        .is_ok_and(|s| s.success());
    common::can_run(
        ok,
        "FIMD_REQUIRE_USERNS",
        "needs unshare -Ur (user namespaces) to lower the watch limit",
    )
}

#[test]
fn out_of_watches_falls_back_to_rescans_with_one_warning() {
    if !can_limit_watches() {
        return;
    }
    let env = Env::new();
    // Two trees: `big` (40 directories) cannot get its watches within the limit of 8, `tree`
    // (one directory) can. `big` sorts first, so it is tried first and must give back the
    // watches it took, or `tree` would fall back too.
    let big = env.base().join("big");
    for i in 0..40 {
        write(&big.join(format!("d{i}/f.conf")), "x\n");
    }
    let a = env.root.join("a.conf");
    write(&a, "1\n");
    env.write_config(&format!(
        "{}{}",
        env.watch_table(&env.root),
        env.watch_table(&big)
    ));
    let config = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        config.replace("rescan_interval = \"1h\"", "rescan_interval = \"1s\""),
    )
    .expect("config");

    let d = env.start_under(&["unshare", "-Ur", "sh", "-c", FEW_WATCHES]);
    let big_text = big.to_string_lossy().into_owned();
    let st = env.wait_status("the fallback and the watch count published", |s| {
        s["daemon"]["fallback"].as_str() == Some(big_text.as_str())
            && s["daemon"]["watches"].is_number()
    });
    assert!(
        st["daemon"]["watches"].as_u64().is_some_and(|w| w <= 8),
        "{st:#}"
    );

    // The tree that fit is real time; the other is covered by the periodic rescan.
    write(&a, "2\n");
    let deep = big.join("d7/f.conf");
    write(&deep, "changed\n");
    let (a_text, deep_text) = (a.to_string_lossy(), deep.to_string_lossy());
    let events = env.wait_events("both changes", |e| {
        e.iter().any(|e| e["path"] == *a_text) && e.iter().any(|e| e["path"] == *deep_text)
    });
    let source_of = |p: &str| {
        events
            .iter()
            .find(|e| e["path"] == *p)
            .and_then(|e| e["source"].as_str())
    };
    assert_eq!(source_of(&a_text), Some("inotify"), "{events:#?}");
    assert_eq!(source_of(&deep_text), Some("rescan"), "{events:#?}");

    // Several rescans later: still one warning, naming the tree and the sysctl to raise.
    let warnings: Vec<String> = d
        .stderr_text()
        .lines()
        .filter(|l| l.contains("out of inotify watches"))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains(&*big_text), "{}", warnings[0]);
    assert!(
        warnings[0].contains("fs.inotify.max_user_watches"),
        "{}",
        warnings[0]
    );

    // The limit raised (in fimd's user namespace) and a reload: the tree is watched again.
    let raised = std::process::Command::new("nsenter")
        .args(["-U", "-t", &d.pid().to_string(), "sh", "-c"])
        .arg("echo 100000 > /proc/sys/user/max_inotify_watches")
        .status()
        .expect("nsenter");
    assert!(raised.success());
    d.signal("HUP");
    env.wait_status("no fallback after the reload", |s| {
        s["daemon"]["fallback"] == "none"
    });
    let other = big.join("d9/f.conf");
    write(&other, "live again\n");
    let other_text = other.to_string_lossy();
    let events = env.wait_events("the change in the re-watched tree", |e| {
        e.iter().any(|e| e["path"] == *other_text)
    });
    let ev = events.iter().find(|e| e["path"] == *other_text);
    assert_eq!(
        ev.map(|e| e["source"].clone()),
        Some("inotify".into()),
        "{events:#?}"
    );

    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn init_and_a_second_daemon_refuse_while_the_daemon_runs() {
    let env = Env::new();
    write(&env.root.join("a.conf"), "1\n");
    let d = env.start();
    let d_pid = d.pid();
    let pid = d_pid.to_string();
    let refused = |args: &[&str]| {
        let out = env.fimd().args(args).output().expect("fimd");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(18), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("daemon (pid {pid}) is running")),
            "{stderr}"
        );
    };
    refused(&["init", "--force"]);
    refused(&["run"]);
    // The running daemon is unaffected.
    write(&env.root.join("a.conf"), "2\n");
    env.wait_events("the change", |e| e.len() == 1);

    // A pid left behind by a crash does not count.
    d.signal("KILL");
    drop(d); // reaps it
    assert_eq!(
        env.status()["daemon"]["pid"],
        d_pid,
        "the crash left its pid"
    );
    let out = env.fimd().args(["init", "--force"]).output().expect("init");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
