//! The database under faults (issue #16, items 3, 9 and 11): a full disk, a database removed,
//! replaced or truncated under the running daemon, and a killed `init --force`.
//! The full-disk test mounts a small tmpfs and needs root; CI sets FIMD_REQUIRE_ROOT=1 so that
//! it cannot skip.

mod common;

use common::Env;
use std::time::{Duration, Instant};

fn run(env: &Env, args: &[&str]) -> (i32, String, String) {
    let out = env.fimd().args(args).output().expect("run fimd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
