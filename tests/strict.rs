//! Issue #16 item 8: ownership and permissions, like sshd's StrictModes. Run as root, fimd
//! refuses a config or database (or a directory above them) that another user could write,
//! and a database path that is a symlink: one line naming the path and the fix, exit 17 for
//! the config, 18 for the database. `--insecure-permissions` accepts them.

mod common;

use common::TempTree;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn can_run() -> bool {
    common::can_run(
        common::is_root(),
        "FIMD_REQUIRE_ROOT",
        "the permission checks apply only to root",
    )
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A tree with one file and a baseline, made by root with safe modes.
fn tree() -> TempTree {
    let t = TempTree::new("", "");
    t.write("a.conf", "a\n");
    t.init();
    t
}

/// `fimd check` is refused with `code`, on one stderr line naming `culprit` and `fix`; with
/// `--insecure-permissions` the same command runs.
fn assert_refused(t: &TempTree, code: i32, culprit: &Path, fix: &str) {
    let r = t.run(&["check"]);
    assert_eq!(r.code, code, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", r.stderr);
    let line = lines[0];
    assert!(line.starts_with("fimd: "), "{line}");
    assert!(
        line.contains(&format!("{} ", culprit.display())),
        "names {}: {line}",
        culprit.display()
    );
    assert!(line.contains(fix), "says `{fix}`: {line}");
    assert!(line.contains("--insecure-permissions"), "{line}");
    let r = t.run(&["--insecure-permissions", "check"]);
    assert_eq!(r.code, 0, "accepted with the flag: {}", r.stderr);
}

#[test]
fn issue_16_8_world_writable_config_is_refused() {
    if !can_run() {
        return;
    }
    let t = tree();
    chmod(&t.config, 0o666);
    assert_refused(
        &t,
        17,
        &t.config,
        &format!("chmod go-w {}", t.config.display()),
    );
    chmod(&t.config, 0o644);
    assert_eq!(t.run(&["check"]).code, 0);
}

#[test]
fn issue_16_8_config_owned_by_nobody_is_refused() {
    if !can_run() {
        return;
    }
    let t = tree();
    std::os::unix::fs::chown(&t.config, Some(65534), Some(65534)).expect("chown");
    assert_refused(
        &t,
        17,
        &t.config,
        &format!("chown root {}", t.config.display()),
    );
}

#[test]
fn issue_16_8_config_in_a_world_writable_directory_is_refused() {
    if !can_run() {
        return;
    }
    let t = tree();
    let base = t.config.parent().expect("base").to_path_buf();
    chmod(&base, 0o777);
    assert_refused(&t, 17, &base, &format!("chmod go-w {}", base.display()));
    // Sticky and root-owned (like /tmp) is accepted: only an entry's owner may replace it.
    chmod(&base, 0o1777);
    let r = t.run(&["check"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn issue_16_8_writable_database_or_directory_is_refused() {
    if !can_run() {
        return;
    }
    let t = tree();
    chmod(&t.db, 0o666);
    assert_refused(&t, 18, &t.db, &format!("chmod go-w {}", t.db.display()));
    chmod(&t.db, 0o600);
    std::os::unix::fs::chown(&t.db, Some(65534), None).expect("chown");
    assert_refused(&t, 18, &t.db, &format!("chown root {}", t.db.display()));
    std::os::unix::fs::chown(&t.db, Some(0), None).expect("chown");
    let state = t.db.parent().expect("state dir").to_path_buf();
    chmod(&state, 0o770);
    assert_refused(&t, 18, &state, &format!("chmod go-w {}", state.display()));
    chmod(&state, 0o700);
    // The read commands refuse it too; the database message names the database.
    chmod(&t.db, 0o644 | 0o020);
    let r = t.run(&["events"]);
    assert_eq!(r.code, 18, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("database {} refused", t.db.display())),
        "{}",
        r.stderr
    );
}

#[test]
fn issue_16_8_database_symlink_is_refused_and_its_target_untouched() {
    if !can_run() {
        return;
    }
    let t = TempTree::new("", "");
    t.write("a.conf", "a\n");
    let state = t.db.parent().expect("state dir").to_path_buf();
    std::fs::create_dir(&state).expect("mkdir state");
    chmod(&state, 0o700);
    // Today's main follows the link and makes its target (any existing file) the database.
    let target = t.dir.path().join("elsewhere.db");
    std::fs::write(&target, "").expect("target");
    std::os::unix::fs::symlink(&target, &t.db).expect("symlink");
    let untouched = || std::fs::metadata(&target).map(|m| m.len()).unwrap_or(1) == 0;
    let r = t.run(&["init"]);
    assert_eq!(r.code, 18, "{}", r.stderr);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&t.db.display().to_string()),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(untouched(), "the link's target was written");
    for cmd in [&["check"][..], &["run"], &["status"], &["config-check"]] {
        let r = t.run(cmd);
        assert_eq!(r.code, 18, "{cmd:?}: {}", r.stderr);
    }
    assert!(untouched(), "the link's target was written");
    let r = t.run(&["--insecure-permissions", "init"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn issue_16_8_reload_of_an_insecure_config_keeps_the_running_one() {
    if !can_run() {
        return;
    }
    let env = common::Env::new();
    std::fs::write(env.root.join("a.conf"), "a\n").expect("write");
    let mut d = env.start();
    // Made writable by others, and naming a second tree: the reload is refused.
    let extra = env.base().join("extra");
    std::fs::create_dir(&extra).expect("mkdir");
    env.write_config(&format!(
        "{}{}",
        env.watch_table(&env.root),
        env.watch_table(&extra)
    ));
    chmod(&env.config, 0o666);
    d.signal("HUP");
    d.wait_message("READY=1 after the refused reload", |m| {
        m.contains("READY=1") && m.contains("reload failed")
    });
    let stderr = d.stderr_text();
    assert!(
        stderr.contains("refused") && stderr.contains("chmod go-w"),
        "{stderr}"
    );
    // The old config is in force: the old tree reports, the new one does not. (The mode is
    // put back so that the helpers' `fimd events` may read the config; no reload follows.)
    chmod(&env.config, 0o644);
    std::fs::write(extra.join("new.conf"), "x\n").expect("write");
    std::fs::write(env.root.join("a.conf"), "b\n").expect("write");
    env.wait_events("the change in the old tree", |e| !e.is_empty());
    let events = env.barrier();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(events[0]["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("/tree/a.conf")));
}
