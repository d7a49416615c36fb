//! Reliability at the edges (issue #16): files nested deeper than PATH_MAX (item 2) and a
//! symlinked watch root that is retargeted (item 10), through `check` and the daemon.
//! See: issue #16 "Reliability under faults and hostile input".

mod common;

use common::{Env, TempTree};
use rustix::fs::{mkdirat, openat, Mode, OFlags};
use serde_json::Value;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Nesting of the issue's reproduction: 22 directories of 200-character names (4.4 KB).
const LEVELS: usize = 22;

/// Make `<base>/DDD…/DDD…/…` (`LEVELS` deep) with `mkdirat`, relative to each parent's
/// descriptor (the path API cannot reach that far). Returns the deepest directory's
/// descriptor and its full path.
fn deep_dirs(base: &Path, letter: char) -> (OwnedFd, PathBuf) {
    let name = letter.to_string().repeat(200);
    let mut dir = rustix::fs::open(base, OFlags::DIRECTORY, Mode::empty()).expect("open base");
    let mut full = base.to_path_buf();
    for _ in 0..LEVELS {
        match mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => panic!("mkdirat: {e}"),
        }
        dir = openat(&dir, name.as_str(), OFlags::DIRECTORY, Mode::empty()).expect("openat");
        full.push(&name);
    }
    assert!(full.as_os_str().len() > 4096, "deeper than PATH_MAX");
    (dir, full)
}

/// Write `content` to `name` in the directory `dir` (created or truncated).
fn write_at(dir: &OwnedFd, name: &str, content: &str) {
    let f = openat(
        dir,
        name,
        OFlags::CREATE | OFlags::WRONLY | OFlags::TRUNC,
        Mode::from_raw_mode(0o644),
    )
    .expect("create file");
    rustix::io::write(&f, content.as_bytes()).expect("write");
}

fn for_path<'a>(events: &'a [Value], kind: &str, path: &Path) -> Option<&'a Value> {
    let p = path.to_string_lossy();
    events
        .iter()
        .find(|e| e["event"] == kind && e["path"] == *p)
}

#[test]
fn issue_16_2_check_reports_files_beyond_path_max() {
    let t = TempTree::new("", "");
    t.write("shallow.conf", "a = 1\n");
    t.init();
    let (dir, deep) = deep_dirs(&t.root, 'd');
    write_at(&dir, "hidden.conf", "evil = 1\n");
    let file = deep.join("hidden.conf");

    let r = t.run(&["check", "--json"]);
    assert_eq!(r.code, 1, "added: {}", r.stderr);
    assert!(
        !r.stderr.contains("cannot read directory"),
        "the deep tree was walked: {}",
        r.stderr
    );
    let events = r.json_lines();
    let added = for_path(&events, "added", &file).expect("the deep file is reported, full path");
    assert_eq!(added["new"]["size"], 9);
    assert_eq!(events.len(), 1, "{events:?}");

    write_at(&dir, "hidden.conf", "evil = 2\n");
    let (code, events) = t.check_json();
    assert_eq!(code, 4, "{events:?}");
    let modified = for_path(&events, "modified", &file).expect("modified");
    assert!(
        modified["diff"]
            .as_str()
            .is_some_and(|d| d.contains("+evil = 2")),
        "{modified}"
    );

    rustix::fs::unlinkat(&dir, "hidden.conf", rustix::fs::AtFlags::empty()).expect("unlink");
    let (code, events) = t.check_json();
    assert_eq!(code, 2, "{events:?}");
    assert!(for_path(&events, "removed", &file).is_some(), "{events:?}");
}

/// The daemon reports a file created deep below a watched root, and later changes to it
/// (the deep directories carry real-time watches, not only the periodic rescan).
fn daemon_reports_deep_files(whodata: &str) {
    let env = Env::new();
    env.write_config_whodata(whodata, &env.watch_table(&env.root));
    let d = env.start();
    let (dir, deep) = deep_dirs(&env.root, 'e');
    write_at(&dir, "hidden.conf", "evil = 1\n");
    let file = deep.join("hidden.conf");
    env.wait_events("the deep file's added event", |ev| {
        for_path(ev, "added", &file).is_some()
    });
    write_at(&dir, "hidden.conf", "evil = 22\n");
    let events = env.wait_events("the deep file's modified event", |ev| {
        for_path(ev, "modified", &file).is_some()
    });
    let m = for_path(&events, "modified", &file).expect("modified");
    assert_eq!(m["source"], "inotify", "seen in real time: {m}");
    let stderr = d.stderr_text();
    assert!(!stderr.contains("cannot watch directory"), "{stderr}");
    assert!(!stderr.contains("cannot read directory"), "{stderr}");
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn issue_16_2_daemon_reports_files_beyond_path_max_inotify() {
    daemon_reports_deep_files("off");
}

#[test]
fn issue_16_2_daemon_reports_files_beyond_path_max_fanotify() {
    if !common::can_run(
        common::is_root(),
        "FIMD_REQUIRE_ROOT",
        "needs root (CAP_SYS_ADMIN for fanotify)",
    ) {
        return;
    }
    daemon_reports_deep_files("require");
}

/// `<base>/old/a.conf`, `<base>/new/b.conf` and `<base>/link -> old`; returns the link.
fn symlinked_root(base: &Path) -> PathBuf {
    for (dir, file) in [("old", "a.conf"), ("new", "b.conf")] {
        std::fs::create_dir(base.join(dir)).expect("mkdir");
        std::fs::write(base.join(dir).join(file), format!("{file}\n")).expect("write");
    }
    let link = base.join("link");
    std::os::unix::fs::symlink(base.join("old"), &link).expect("symlink");
    link
}

/// `ln -sfn <base>/new <base>/link`, atomically (a new link renamed over the old one).
fn retarget(base: &Path) {
    let tmp = base.join("link.tmp");
    std::os::unix::fs::symlink(base.join("new"), &tmp).expect("symlink");
    std::fs::rename(&tmp, base.join("link")).expect("rename over the link");
}

/// The retarget's three facts: one high `modified` event on the link naming both targets,
/// the old tree's file removed, the new tree's file added.
fn assert_retarget_events(events: &[Value], base: &Path) {
    let link = base.join("link");
    let moved = for_path(events, "modified", &link).expect("an event on the link");
    assert_eq!(moved["severity"], "high", "{moved}");
    assert_eq!(
        moved["reason"],
        format!(
            "watch root {} now points to {} (was {})",
            link.display(),
            base.join("new").display(),
            base.join("old").display()
        ),
        "{moved}"
    );
    assert_eq!(moved["changed"], serde_json::json!(["link_target"]));
    assert!(
        for_path(events, "removed", &base.join("old/a.conf")).is_some(),
        "the old tree's file is removed: {events:#?}"
    );
    assert!(
        for_path(events, "added", &base.join("new/b.conf")).is_some(),
        "the new tree's file is added: {events:#?}"
    );
}

#[test]
fn issue_16_10_check_reports_a_retargeted_symlink_root() {
    let t = TempTree::new("", "");
    let base = t.root.parent().expect("base").to_path_buf();
    let link = symlinked_root(&base);
    std::fs::write(
        &t.config,
        format!(
            "[daemon]\ndatabase = {:?}\n\n[[watch]]\npath = {link:?}\n\n[users]\nauthorized_keys = false\n",
            t.db
        ),
    )
    .expect("config");
    t.init();
    let (code, events) = t.check_json();
    assert_eq!((code, events.len()), (0, 0), "{events:?}");

    retarget(&base);
    let r = t.run(&["check", "--dry-run", "--json"]);
    assert_eq!(r.code, 7, "dry run: {}", r.stderr);
    assert_retarget_events(&r.json_lines(), &base);

    let (code, events) = t.check_json();
    assert_eq!(code, 7, "modified + removed + added: {events:#?}");
    assert_retarget_events(&events, &base);
    assert_eq!(events.len(), 3, "{events:#?}");

    let (code, events) = t.check_json();
    assert_eq!((code, events.len()), (0, 0), "reported once: {events:?}");
}

/// A daemon config watching `<base>/link`, with this rescan interval.
fn link_config(env: &Env, rescan: &str) -> PathBuf {
    let base = env.base();
    let link = symlinked_root(&base);
    std::fs::write(
        &env.config,
        format!(
            "[daemon]\ndatabase = {:?}\ndebounce = \"50ms\"\nrescan_interval = \"{rescan}\"\nwhodata = \"off\"\n\n\
             [[watch]]\npath = {link:?}\n\n[users]\nauthorized_keys = false\n",
            env.db
        ),
    )
    .expect("config");
    link
}

fn wait_retarget(env: &Env) {
    let base = env.base();
    let events = env.wait_events("the retarget's events", |ev| {
        let p = base.join("link").to_string_lossy().into_owned();
        ev.iter().any(|e| e["path"] == *p)
            && for_path(ev, "added", &base.join("new/b.conf")).is_some()
    });
    assert_retarget_events(&events, &base);
}

#[test]
fn issue_16_10_daemon_reload_reports_a_retargeted_symlink_root() {
    let env = Env::new();
    link_config(&env, "1h");
    let mut d = env.start();
    retarget(&env.base());
    d.signal("HUP");
    d.wait_message("READY=1 after the reload", |m| {
        m.contains("configuration reloaded")
    });
    wait_retarget(&env);
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn issue_16_10_daemon_periodic_rescan_reports_a_retargeted_symlink_root() {
    let env = Env::new();
    link_config(&env, "1s");
    let d = env.start();
    retarget(&env.base());
    wait_retarget(&env);
    // It keeps monitoring the new tree.
    let c = env.base().join("new/c.conf");
    std::fs::write(&c, "c\n").expect("write");
    env.wait_events("the new tree's next event", |ev| {
        for_path(ev, "added", &c).is_some()
    });
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn issue_16_10_daemon_start_reports_a_retargeted_symlink_root() {
    let env = Env::new();
    link_config(&env, "1h");
    let out = env.fimd().arg("init").output().expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    retarget(&env.base());
    let d = env.start();
    wait_retarget(&env);
    let (status, _) = d.stop();
    assert!(status.success());
}
