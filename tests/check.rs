//! `init` / `check` / `events` / `diff` / `status` / `config-check` through the real binary on
//! temp trees with a real SQLite file.

mod common;

use common::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn exit_codes_follow_aide() {
    let t = TempTree::new("", "");
    t.write("keep.conf", "a=1\n");
    t.write("gone.conf", "b=1\n");
    t.write("edit.conf", "c=1\n");
    // No baseline yet: 18, with the hint.
    let r = t.run(&["check"]);
    assert_eq!(r.code, 18, "{}", r.stderr);
    assert!(r.stderr.contains("fimd init"), "{}", r.stderr);
    t.init();
    assert_eq!(t.run(&["check"]).code, 0);
    t.write("new.conf", "n\n");
    assert_eq!(t.run(&["check"]).code, 1, "added");
    std::fs::remove_file(t.path("gone.conf")).expect("rm");
    assert_eq!(t.run(&["check"]).code, 2, "removed");
    t.write("edit.conf", "c=2\n");
    assert_eq!(t.run(&["check"]).code, 4, "changed");
    assert_eq!(
        t.run(&["check"]).code,
        0,
        "check advances the baseline: each change reported once"
    );
    t.write("new2.conf", "n\n");
    std::fs::remove_file(t.path("new.conf")).expect("rm");
    t.write("keep.conf", "a=2\n");
    assert_eq!(t.run(&["check"]).code, 7, "all three");
    // Usage errors are 15, never clap's 2.
    assert_eq!(t.run(&["check", "--bogus"]).code, 15);
    assert_eq!(t.run(&["events", "--limit", "many"]).code, 15);
    assert_eq!(t.run(&["diff", "abc"]).code, 15);
    assert_eq!(t.run(&["events", "--since", "whenever"]).code, 15);
    assert_eq!(t.run(&["frobnicate"]).code, 15);
    assert_eq!(t.run(&["--help"]).code, 0);
    assert_eq!(t.run(&["--version"]).code, 0);
    // Existing baseline: init refuses without --force.
    let r = t.run(&["init"]);
    assert_eq!(r.code, 18);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(t.run(&["init", "--force"]).code, 0);
}

#[test]
fn legacy_forms_work() {
    let t = TempTree::new("", "");
    t.write("a.conf", "x\n");
    let r = Run::from(t.cmd().arg("--init").output().expect("run"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    t.write("b.conf", "y\n");
    let r = Run::from(t.cmd().output().expect("run"));
    assert_eq!(r.code, 1, "bare fimd = check: {}", r.stderr);
    assert!(
        r.stdout.contains("added") && r.stdout.contains("b.conf"),
        "{}",
        r.stdout
    );
    // The eleven notifier flags are accepted on every command.
    let r = t.run(&[
        "--slack-webhook-url",
        "http://127.0.0.1:9/x",
        "--jira-url",
        "http://127.0.0.1:9",
        "--jira-user",
        "u",
        "--jira-api-token",
        "t",
        "--jira-project-key",
        "SEC",
        "--servicenow-instance",
        "i",
        "--servicenow-user",
        "u",
        "--servicenow-password",
        "p",
        "--rapid7-api-key",
        "k",
        "--rapid7-workflow-id",
        "w",
        "--teams-webhook-url",
        "http://127.0.0.1:9/t",
        "status",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn config_errors_exit_17_with_position() {
    let t = TempTree::new("", "[content]\nbogus = 1\n");
    let r = t.run(&["check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr.contains("bogus") && r.stderr.contains(&format!("{}:", t.config.display())),
        "{}",
        r.stderr
    );
    let t = TempTree::new("recursiv = true", "");
    let r = t.run(&["config-check"]);
    assert_eq!(r.code, 17);
    assert!(r.stderr.contains("recursiv"), "{}", r.stderr);
    std::fs::write(&t.config, "[daemon\ndatabase = 3").expect("write");
    let r = t.run(&["config-check"]);
    assert_eq!(r.code, 17);
    assert!(r.stderr.contains(":1:"), "line number: {}", r.stderr);
    let t = TempTree::new("exclude = [\"[oops\"]", "");
    let r = t.run(&["config-check"]);
    assert_eq!(r.code, 17);
    assert!(r.stderr.contains("[oops"), "{}", r.stderr);
    let r = Run::from(
        fimd()
            .args(["--config", "/nonexistent/fimd.toml", "config-check"])
            .output()
            .expect("run"),
    );
    assert_eq!(r.code, 17, "an explicit config that is missing is an error");
    let t = TempTree::new("", "[notify]\nbackoff_initial = \"0s\"\n");
    assert_eq!(t.run(&["config-check"]).code, 17);
}

#[test]
fn config_check_prints_targets() {
    let t = TempTree::new("extensions = [\".conf\"]", "");
    let r = t.run(&["config-check"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&t.root.display().to_string()),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("sinks: none configured"), "{}", r.stdout);
}

#[test]
fn every_change_kind_with_json_shape() {
    let t = TempTree::new("", "");
    t.write("content.conf", "a=1\n");
    t.write("mode.conf", "m\n");
    t.write("owner.conf", "o\n");
    t.write("gone.conf", "g\n");
    std::os::unix::fs::symlink("content.conf", t.path("link")).expect("symlink");
    std::fs::create_dir(t.path("dir")).expect("mkdir");
    t.init();
    t.write("content.conf", "a=2\n");
    std::fs::set_permissions(t.path("mode.conf"), std::fs::Permissions::from_mode(0o4755))
        .expect("chmod");
    if is_root() {
        std::os::unix::fs::chown(t.path("owner.conf"), Some(1234), Some(4321)).expect("chown");
        std::os::unix::fs::chown(t.path("dir"), Some(1234), None).expect("chown dir");
    }
    std::fs::remove_file(t.path("gone.conf")).expect("rm");
    std::fs::remove_file(t.path("link")).expect("rm link");
    std::os::unix::fs::symlink("mode.conf", t.path("link")).expect("symlink");
    t.write("added.conf", "new\n");
    let (code, events) = t.check_json();
    assert_eq!(code, 7);
    let m = find(&events, "modified", "/content.conf").expect("content change");
    assert!(m["changed"]
        .as_array()
        .expect("array")
        .iter()
        .any(|c| c == "sha256"));
    assert_eq!(m["source"], "check");
    assert_eq!(m["host"], "testhost");
    assert!(m["id"].as_i64().is_some());
    assert!(m["time"].as_str().expect("time").ends_with('Z'));
    assert_ne!(m["old"]["sha256"], m["new"]["sha256"]);
    assert_eq!(m["new"]["type"], "file");
    let diff = m["diff"].as_str().expect("diff for a text file");
    assert!(diff.contains("-a=1") && diff.contains("+a=2"), "{diff}");
    let mode = find(&events, "modified", "/mode.conf").expect("mode change");
    assert_eq!(mode["new"]["mode"], "4755");
    assert!(mode["changed"]
        .as_array()
        .expect("array")
        .iter()
        .any(|c| c == "mode"));
    assert!(mode["diff"].is_null(), "metadata-only change has no diff");
    if is_root() {
        let o = find(&events, "modified", "/owner.conf").expect("owner change");
        assert_eq!(o["new"]["uid"], 1234);
        assert_eq!(o["new"]["gid"], 4321);
        let d = find(&events, "modified", "/dir").expect("dir owner change");
        assert_eq!(d["new"]["type"], "dir");
        assert_eq!(d["changed"], serde_json::json!(["uid"]));
    }
    let l = find(&events, "modified", "/link").expect("symlink target change");
    assert!(l["changed"]
        .as_array()
        .expect("array")
        .iter()
        .any(|c| c == "link_target"));
    assert_eq!(l["new"]["link_target"], "mode.conf");
    assert!(l["new"]["sha256"].is_null());
    let g = find(&events, "removed", "/gone.conf").expect("removed");
    assert!(g["new"].is_null() && !g["old"].is_null() && g["diff"].is_null());
    let a = find(&events, "added", "/added.conf").expect("added");
    assert!(a["old"].is_null() && a["diff"].is_null());
    // The history holds exactly what check printed, and diff ID prints the stored diff.
    let hist = t.run(&["events", "--json"]).json_lines();
    assert_eq!(hist, events);
    let id = m["id"].as_i64().expect("id").to_string();
    let r = t.run(&["diff", &id]);
    assert_eq!(r.stdout, diff);
    assert_eq!(t.run(&["diff", "99999"]).code, 15);
}

#[test]
fn dry_run_writes_nothing() {
    let t = TempTree::new("", "");
    t.write("a.conf", "1\n");
    t.init();
    t.write("a.conf", "2\n");
    let before = std::fs::read(&t.db).expect("db");
    let r = t.run(&["check", "--dry-run", "--json"]);
    assert_eq!(r.code, 4);
    let ev = r.json_lines();
    assert_eq!(ev.len(), 1);
    assert!(ev[0]["id"].is_null());
    assert!(ev[0]["diff"].as_str().is_some_and(|d| d.contains("+2")));
    assert_eq!(std::fs::read(&t.db).expect("db"), before);
    assert_eq!(t.run(&["events", "--json"]).stdout, "");
    assert_eq!(
        t.run(&["check"]).code,
        4,
        "the change is still there to record"
    );
}

#[test]
fn selection_extensions_include_exclude() {
    let t = TempTree::new(
        "extensions = [\".conf\"]\ninclude = [\"**/rc.local\"]\nexclude = [\"skip.conf\", \"**/cache/**\"]",
        "",
    );
    t.init();
    for f in [
        "a.conf",
        "sub/b.conf",
        "rc.local",
        "c.txt",
        "skip.conf",
        "cache/x.conf",
        "noext",
    ] {
        t.write(f, "x\n");
    }
    let (_, events) = t.check_json();
    let mut paths: Vec<&str> = events.iter().filter_map(|e| e["path"].as_str()).collect();
    paths.sort();
    let want: Vec<String> = ["a.conf", "rc.local", "sub/b.conf"]
        .iter()
        .map(|f| t.path(f).display().to_string())
        .collect();
    assert_eq!(paths, want);
    let t2 = TempTree::new("recursive = false", "");
    t2.init();
    t2.write("top.conf", "1");
    t2.write("deep/low.conf", "1");
    let (_, events) = t2.check_json();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(find(&events, "added", "/top.conf").is_some());
}

#[test]
fn sensitive_contents_never_leave_the_scanner() {
    let t = TempTree::new(
        "",
        "[sensitive]\npaths = []\npatterns = [\"*.key\", \"shadow\"]\ndetect_private_keys = true\n",
    );
    let pem =
        "-----BEGIN OPENSSH PRIVATE KEY-----\nMARKER_PEM_7f3a\n-----END OPENSSH PRIVATE KEY-----\n";
    t.write("host.key", "MARKER_KEY_91b2\n");
    t.write("shadow", "root:MARKER_SHADOW_55c1:19000::::::\n");
    t.write("innocent.conf", pem);
    t.write("plain.conf", "visible=MARKER_PLAIN_0d0d\n");
    t.write("later.conf", "token=none\n");
    t.init();
    t.write("host.key", "MARKER_KEY_2222\n");
    t.write("shadow", "root:MARKER_SHADOW_3333:19000::::::\n");
    t.write("innocent.conf", &format!("{pem}MARKER_PEM_4444\n"));
    // A key pasted into a config: it becomes sensitive, its event has no diff.
    t.write(
        "later.conf",
        &format!("token=none\n{}", pem.replace("7f3a", "5555")),
    );
    t.write("new.key", "MARKER_NEWKEY_6666\n");
    let check = t.run(&["check", "--json"]);
    assert_eq!(check.code, 5, "{}", check.stderr);
    let events = check.json_lines();
    for suffix in ["/host.key", "/shadow", "/innocent.conf", "/later.conf"] {
        let e = find(&events, "modified", suffix)
            .unwrap_or_else(|| panic!("{suffix} modified: {events:?}"));
        assert_eq!(e["sensitive"], true, "{suffix}");
        assert!(e["diff"].is_null(), "{suffix}");
    }
    assert_eq!(
        find(&events, "added", "/new.key").expect("added")["sensitive"],
        true
    );
    let mut outputs = vec![check.stdout, check.stderr];
    for args in [
        &["events", "--json"][..],
        &["events"],
        &["status"],
        &["check"],
        &["config-check"],
    ] {
        let r = t.run(args);
        outputs.push(r.stdout);
        outputs.push(r.stderr);
    }
    for id in 1..=6 {
        let r = t.run(&["diff", &id.to_string()]);
        outputs.push(r.stdout);
        outputs.push(r.stderr);
    }
    let db = all_bytes_under(t.db.parent().expect("db dir"));
    // The test can fail: a non-sensitive file's content is stored.
    assert!(
        contains(&db, "MARKER_PLAIN_0d0d"),
        "plain text content is kept for diffs"
    );
    for marker in ["MARKER_PEM", "MARKER_KEY", "MARKER_SHADOW", "MARKER_NEWKEY"] {
        assert!(!contains(&db, marker), "{marker} reached the database");
        for o in &outputs {
            assert!(!o.contains(marker), "{marker} reached the output: {o}");
        }
    }
}

#[test]
fn odd_names_round_trip() {
    let t = TempTree::new("", "");
    t.init();
    t.write("with space.conf", "1");
    t.write("new\nline.conf", "1");
    let raw = t.root.join(OsStr::from_bytes(b"caf\xe9.conf"));
    std::fs::write(&raw, "1").expect("write non-utf8");
    let (code, events) = t.check_json();
    assert_eq!(code, 1);
    assert_eq!(events.len(), 3);
    assert!(find(&events, "added", "/with space.conf").is_some());
    assert!(find(&events, "added", "/new\nline.conf").is_some());
    let e = events
        .iter()
        .find(|e| e.get("path_hex").is_some())
        .expect("non-UTF-8 name has path_hex");
    let bytes = hex::decode(e["path_hex"].as_str().expect("hex")).expect("valid hex");
    assert_eq!(bytes, raw.as_os_str().as_bytes());
    // Human output: one line per change, bytes escaped.
    std::fs::remove_file(&raw).expect("rm");
    std::fs::remove_file(t.path("new\nline.conf")).expect("rm");
    let r = t.run(&["check"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert!(
        r.stdout.contains("caf\\xe9.conf") && r.stdout.contains("new\\nline.conf"),
        "{}",
        r.stdout
    );
    // --path filters the history with the same globs.
    let r = t.run(&["events", "--json", "--path", "**/with space.conf"]);
    assert_eq!(r.json_lines().len(), 1);
    let r = t.run(&["events", "--json", "--limit", "2"]);
    let last = r.json_lines();
    assert_eq!(last.len(), 2);
    assert!(
        last[0]["id"].as_i64() < last[1]["id"].as_i64(),
        "oldest first"
    );
    assert_eq!(
        t.run(&["events", "--json", "--since", "1h"])
            .json_lines()
            .len(),
        5
    );
    assert_eq!(
        t.run(&["events", "--json", "--since", "2999-01-01T00:00:00Z"])
            .stdout,
        ""
    );
}

#[test]
fn fifos_sockets_and_symlink_loops_are_recorded_not_followed() {
    let t = TempTree::new("", "");
    let fifo = t.path("pipe");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(ok.success());
    std::os::unix::fs::symlink("loop-b", t.path("loop-a")).expect("symlink");
    std::os::unix::fs::symlink("loop-a", t.path("loop-b")).expect("symlink");
    std::fs::create_dir(t.path("d")).expect("mkdir");
    std::os::unix::fs::symlink("..", t.path("d/up")).expect("dir loop");
    let _sock = std::os::unix::net::UnixListener::bind(t.path("sock")).expect("socket");
    t.write("a.conf", "1");
    // A FIFO that is opened would block forever: bound the run.
    let mut child = t.cmd().arg("init").spawn().expect("spawn");
    let done = wait_until(Duration::from_secs(60), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !done {
        let _ = child.kill();
        panic!("init hung on a FIFO or a loop");
    }
    std::fs::remove_file(&fifo).expect("rm fifo");
    std::os::unix::fs::symlink("a.conf", &fifo).expect("fifo -> symlink");
    let (code, events) = t.check_json();
    assert_eq!(code, 4);
    let e = find(&events, "modified", "/pipe").expect("type change");
    assert_eq!(e["old"]["type"], "fifo");
    assert_eq!(e["new"]["type"], "symlink");
    assert!(e["changed"]
        .as_array()
        .expect("array")
        .iter()
        .any(|c| c == "type"));
    assert_eq!(
        events.len(),
        1,
        "loops and the socket are stable entries: {events:?}"
    );
}

#[test]
fn files_vanishing_during_the_scan_are_not_fatal() {
    let t = TempTree::new("", "");
    for i in 0..3000 {
        t.write(&format!("d{}/f{i}.conf", i % 30), "x\n");
    }
    t.init();
    let root = t.root.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let p = root.join(format!("d{}/f{}.conf", i % 30, i % 3000));
                let _ = std::fs::remove_file(&p);
                let _ = std::fs::write(&p, "y\n");
                let _ = std::fs::remove_dir_all(root.join(format!("tmp{}", i % 3)));
                let _ = std::fs::create_dir_all(root.join(format!("tmp{}/x", i % 3)));
                i += 1;
            }
        })
    };
    for _ in 0..3 {
        let r = t.run(&["check"]);
        assert!(
            r.code < 8,
            "check must not fail while files vanish: {} {}",
            r.code,
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().expect("churn thread");
    t.run(&["check"]);
    let r = t.run(&["check", "--dry-run"]);
    assert_eq!(
        r.code, 0,
        "baseline equals the disk once quiet: {}",
        r.stdout
    );
}

#[test]
fn sigkill_during_init_is_recoverable() {
    let t = TempTree::new("", "");
    for i in 0..20_000 {
        t.write(&format!("d{}/f{i}.conf", i % 100), "some text content\n");
    }
    let mut child = t.cmd().arg("init").spawn().expect("spawn");
    // Init writes through a rollback journal (or the WAL when another process has the
    // database open): wait until either exists, or the first batch has grown the file.
    let (wal, journal) = (
        t.db.with_extension("db-wal"),
        t.db.with_extension("db-journal"),
    );
    let started = wait_until(Duration::from_secs(120), || {
        std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0)
            || journal.exists()
            || std::fs::metadata(&t.db).is_ok_and(|m| m.len() > 2_000_000)
    });
    assert!(started, "init never wrote");
    let still_running = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        still_running,
        "init finished before it could be killed: make the tree larger"
    );
    let r = t.run(&["check"]);
    assert_eq!(
        r.code, 18,
        "a half-built baseline is no baseline: {}",
        r.stderr
    );
    // The load is one transaction: the rows written before the kill were rolled back.
    let s = t.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).expect("status json");
    assert_eq!(v["baseline_files"], 0, "{}", s.stdout);
    assert_eq!(t.run(&["init"]).code, 0, "a plain init recovers");
    assert_eq!(t.run(&["check"]).code, 0);
    let s = t.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).expect("status json");
    assert_eq!(v["baseline_files"], 20_000);
}

#[test]
fn corrupt_database_is_a_clear_error() {
    let t = TempTree::new("", "");
    t.write("a.conf", "1");
    t.init();
    std::fs::remove_file(t.db.with_extension("db-wal")).ok();
    std::fs::remove_file(t.db.with_extension("db-shm")).ok();
    std::fs::write(&t.db, vec![0x42u8; 8192]).expect("corrupt");
    let r = t.run(&["check"]);
    assert_eq!(r.code, 18);
    assert!(
        r.stderr.starts_with("fimd: database ") && r.stderr.contains("corrupt"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

#[test]
fn database_is_private() {
    let t = TempTree::new("", "");
    t.init();
    let dir_mode = std::fs::metadata(t.db.parent().expect("dir"))
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    let db_mode = std::fs::metadata(&t.db).expect("stat").permissions().mode() & 0o777;
    assert_eq!((dir_mode, db_mode), (0o700, 0o600));
    let r = t.run(&["status"]);
    assert!(r.stdout.contains("baseline: 1 entry ("), "{}", r.stdout);
}

#[test]
fn merge_order_handles_names_that_sort_around_a_slash() {
    // '-' and '.' sort before '/', '0' after: the walk and the baseline must still line up,
    // for files and for directories (a mis-merge would drop and re-add rows silently).
    let t = TempTree::new("", "");
    for f in [
        "a.conf", "a0", "a-b/x", "a/x", "a/y.conf", "a.d/z", "a0d/w", "b",
    ] {
        t.write(f, "1\n");
    }
    t.init();
    assert_eq!(t.run(&["check"]).code, 0);
    for d in ["a", "a.d", "a-b", "a0d"] {
        std::fs::set_permissions(t.path(d), std::fs::Permissions::from_mode(0o700))
            .expect("chmod dir");
    }
    for f in ["a.conf", "a/x", "a0d/w"] {
        t.write(f, "2\n");
    }
    let (code, events) = t.check_json();
    assert_eq!(code, 4, "{events:?}");
    let mut got: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap_or(""),
                e["path"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches(&format!("{}/", t.root.display()))
            )
        })
        .collect();
    got.sort();
    let want = [
        "modified a",
        "modified a-b",
        "modified a.conf",
        "modified a.d",
        "modified a/x",
        "modified a0d",
        "modified a0d/w",
    ];
    assert_eq!(got, want);
    assert_eq!(t.run(&["check"]).code, 0);
}

#[test]
fn renames_are_one_event_with_from_and_count_as_removed_plus_added() {
    let t = TempTree::new("", "");
    t.write("a.conf", "rename me\n");
    t.write("dir/x.conf", "x\n");
    t.write("dir/y.conf", "y\n");
    t.init();
    std::fs::rename(t.path("a.conf"), t.path("b.conf")).expect("mv file");
    std::fs::rename(t.path("dir"), t.path("moved")).expect("mv dir");
    let (code, events) = t.check_json();
    assert_eq!(
        code, 3,
        "AIDE counts a move as removed + added: {events:#?}"
    );
    assert_eq!(events.len(), 3, "{events:#?}");
    for (new, old) in [
        ("b.conf", "a.conf"),
        ("moved/x.conf", "dir/x.conf"),
        ("moved/y.conf", "dir/y.conf"),
    ] {
        let e =
            common::find(&events, "renamed", new).unwrap_or_else(|| panic!("{new}: {events:#?}"));
        assert_eq!(e["from"], *t.path(old).to_string_lossy());
        assert_eq!(e["old"]["sha256"], e["new"]["sha256"]);
        assert_eq!(e["changed"], serde_json::json!([]));
    }
    // The baseline follows: nothing more to report.
    assert_eq!(t.check_json(), (0, vec![]));
    // A copy is not a rename (another inode): removed + added.
    std::fs::copy(t.path("b.conf"), t.path("c.conf")).expect("cp");
    std::fs::remove_file(t.path("b.conf")).expect("rm");
    let (code, events) = t.check_json();
    assert_eq!(code, 3);
    assert!(
        common::find(&events, "added", "c.conf").is_some(),
        "{events:#?}"
    );
    assert!(
        common::find(&events, "removed", "b.conf").is_some(),
        "{events:#?}"
    );
}
