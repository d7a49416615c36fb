//! Tamper evidence for real: a key from a secret reference, rows edited with the sqlite3
//! tool behind fimd's back, `fimd verify` and `check` catching them, the key never leaking.

mod common;

use common::TempTree;
use std::process::Command;

const KEY: &str = "HMAC-KEY-MARKER-5f1c0a";

fn sqlite(t: &TempTree, sql: &str) {
    let out = Command::new("sqlite3").arg(&t.db).arg(sql).output();
    let out = out.unwrap_or_else(|e| panic!("sqlite3: {e}"));
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have_sqlite3() -> bool {
    let ok = Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    common::can_run(ok, "FIMD_REQUIRE_ROOT", "needs the sqlite3 tool")
}

/// A tree whose config takes the key from a file, by reference.
fn keyed_tree() -> TempTree {
    let t = TempTree::new("", "");
    let key_file = t.dir.path().join("hmac.key");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("key file");
    t.write_config(
        "",
        &format!("[store]\nhmac_key = \"${{file:{}}}\"\n", key_file.display()),
    );
    t
}

#[test]
fn verify_names_edited_deleted_and_swapped_rows() {
    if !have_sqlite3() {
        return;
    }
    let t = keyed_tree();
    let a = t.write("a.conf", "1\n");
    t.init();
    let r = t.run(&["status"]);
    assert!(
        r.stdout.contains("tamper evidence: on (key "),
        "{}",
        r.stdout
    );
    // Seven events, ids 1..7.
    for i in 0..7 {
        std::fs::write(&a, format!("{i}{i}\n")).expect("write");
        assert_eq!(t.check_json().0, 4);
    }
    let r = t.run(&["verify"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("2 baseline rows, 7 events: intact"),
        "{}",
        r.stderr
    );
    let r = t.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&r.stdout).expect("status json");
    assert!(status["chain_head"]["uid"]
        .as_str()
        .is_some_and(|u| u.ends_with(":7")));

    // Delete event 2, edit event 5, swap events 6 and 7 (every column but the id).
    sqlite(&t, "DELETE FROM events WHERE id = 2");
    sqlite(
        &t,
        "UPDATE events SET reason = 'nothing to see' WHERE id = 5",
    );
    let cols = "uid, time, time_ns, host, source, event, path, from_path, changed, old, new, \
                sensitive, diff, severity, reason, actor, package, mac";
    sqlite(&t, &format!(
        "CREATE TABLE swap AS SELECT id, {cols} FROM events WHERE id IN (6, 7); \
         UPDATE events SET ({cols}) = (SELECT {cols} FROM swap WHERE swap.id = 13 - events.id) WHERE id IN (6, 7); \
         DROP TABLE swap;"
    ));
    let r = t.run(&["verify"]);
    assert_eq!(r.code, 4, "{} {}", r.stdout, r.stderr);
    let named: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(named[0], "event 2: deleted", "{named:?}");
    let altered: Vec<&str> = named[1..]
        .iter()
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    // 3 follows the deleted row; 5 was edited; 6 and 7 were swapped. 1 and 4 are intact.
    assert_eq!(
        altered,
        vec!["event 3", "event 5", "event 6", "event 7"],
        "{named:?}"
    );

    let r = t.run(&["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["intact"], false);
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(5));
}

#[test]
fn an_edited_baseline_row_is_a_critical_event_then_re_recorded() {
    if !have_sqlite3() {
        return;
    }
    let t = keyed_tree();
    let a = t.write("sshd_config", "PermitRootLogin no\n");
    t.init();
    // The attacker changes the file and the baseline row to match it.
    std::fs::write(&a, "PermitRootLogin yes\n").expect("write");
    let (_, before) = t.check_json();
    assert_eq!(before.len(), 1);
    sqlite(&t, "DELETE FROM events");
    sqlite(
        &t,
        "UPDATE baseline SET sha256 = zeroblob(32) WHERE kind = 'file'",
    );
    let (code, events) = t.check_json();
    assert_eq!(code, 4, "{events:#?}");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["severity"], "critical");
    let reason = events[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("baseline row for ") && reason.ends_with("was altered outside fimd"),
        "{reason}"
    );
    // Re-recorded from disk and signed: not reported again.
    assert_eq!(t.check_json(), (0, vec![]));
    let r = t.run(&["verify"]);
    assert!(
        r.stdout.lines().all(|l| l.starts_with("event")),
        "the baseline is intact again: {}",
        r.stdout
    );

    // The key never reaches the database, the WAL or any output.
    let bytes = common::all_bytes_under(t.db.parent().expect("state dir"));
    assert!(!common::contains(&bytes, KEY));
    for args in [
        &["status", "--json"][..],
        &["events", "--json"],
        &["verify"],
        &["config-check"],
    ] {
        let r = t.run(args);
        assert!(
            !r.stdout.contains(KEY) && !r.stderr.contains(KEY),
            "{args:?}"
        );
    }
}

#[test]
fn key_on_signs_once_key_off_or_changed_is_a_config_error() {
    if !have_sqlite3() {
        return;
    }
    let t = TempTree::new("", "");
    let a = t.write("a.conf", "1\n");
    t.init();
    std::fs::write(&a, "2\n").expect("write");
    assert_eq!(t.check_json().0, 4);
    let r = t.run(&["status"]);
    assert!(r.stdout.contains("tamper evidence: off"), "{}", r.stdout);
    let r = t.run(&["verify"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(r.stderr.contains("tamper evidence is off"), "{}", r.stderr);

    // Turned on for an existing database: signed once, then intact.
    let key_file = t.dir.path().join("k1");
    std::fs::write(&key_file, "first-key").expect("key");
    let with_key =
        |f: &std::path::Path| format!("[store]\nhmac_key = \"${{file:{}}}\"\n", f.display());
    t.write_config("", &with_key(&key_file));
    let r = t.run(&["check"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(t.run(&["verify"]).code, 0);

    // Another key: a clear configuration error, nothing recorded.
    let other = t.dir.path().join("k2");
    std::fs::write(&other, "second-key").expect("key");
    t.write_config("", &with_key(&other));
    let r = t.run(&["check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr.contains("another tamper-evidence key"),
        "{}",
        r.stderr
    );
    // ... until re-keyed with the old key available.
    let r = t.run(&[
        "verify",
        "--rekey",
        "--old-hmac-key",
        &format!("${{file:{}}}", key_file.display()),
    ]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(t.run(&["check"]).code, 0);
    assert_eq!(t.run(&["verify"]).code, 0);

    // No key for a signed database: also a configuration error.
    t.write_config("", "");
    let r = t.run(&["check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(r.stderr.contains("hmac_key is not set"), "{}", r.stderr);
    // A reference that cannot be resolved names the reference.
    t.write_config("", "[store]\nhmac_key = \"${credential:fimd-hmac-key}\"\n");
    let r = t.run(&["check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr.contains("${credential:fimd-hmac-key}"),
        "{}",
        r.stderr
    );
}
