//! Issue #16 items 6 and 7 with the real binary: hostile names and diffs never drive the
//! terminal nor forge log fields; the history is pruned by `[store] keep_events` without
//! losing an undelivered alert or breaking the tamper-evidence chain; `status` shows the
//! database size and the oldest event; `events` filters and limits.

mod common;

use common::{Env, TempTree};
use std::process::Command;
use std::time::{Duration, Instant};

const KEY: &str = "HMAC-KEY-MARKER-9d27e1";

fn sqlite(db: &std::path::Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(db).arg(sql).output();
    let out = out.unwrap_or_else(|e| panic!("sqlite3: {e}"));
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn have_sqlite3() -> bool {
    let ok = Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    common::can_run(ok, "FIMD_REQUIRE_ROOT", "needs the sqlite3 tool")
}

/// Configure `t` to keep events `keep`, signed with the test key when `keyed`.
fn set_store(t: &TempTree, keep: &str, keyed: bool) {
    let key_file = t.dir.path().join("hmac.key");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("key file");
    let key = if keyed {
        format!("hmac_key = \"${{file:{}}}\"\n", key_file.display())
    } else {
        String::new()
    };
    t.write_config("", &format!("[store]\n{key}keep_events = \"{keep}\"\n"));
}

fn event_ids(t: &TempTree) -> Vec<i64> {
    let r = t.run(&["events", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json_lines()
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect()
}

/// Wait (with a deadline) until every event recorded so far is older than `age`.
fn wait_older_than(t: &TempTree, age: Duration) {
    let newest = sqlite(&t.db, "SELECT MAX(time_ns) FROM events");
    let newest: i64 = newest.parse().unwrap_or_else(|e| panic!("{newest}: {e}"));
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    };
    let deadline = Instant::now() + age + Duration::from_secs(30);
    while now_ns() - newest <= age.as_nanos() as i64 {
        assert!(Instant::now() < deadline, "the clock did not move");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// See: issue #16 item 7. Old events go (with their delivered outbox rows), an event with an
/// undelivered alert and the newest event stay, and `fimd verify` still finds the chain
/// intact, while it still catches a deletion and a forged anchor.
#[test]
fn issue_16_7_retention_prunes_old_history_and_verify_still_passes() {
    if !have_sqlite3() {
        return;
    }
    let t = TempTree::new("", "");
    // Events are recorded while nothing is old enough to go (checks are slow on a busy
    // machine), then the retention shrinks to 2 s.
    set_store(&t, "1h", true);
    let a = t.write("a.conf", "0\n");
    t.init();
    for i in 1..=5 {
        std::fs::write(&a, format!("{i}\n")).expect("write");
        assert_eq!(t.check_json().0, 4);
    }
    assert_eq!(event_ids(&t), vec![1, 2, 3, 4, 5]);
    // Event 2's alert is still to be delivered, event 4's was delivered.
    sqlite(
        &t.db,
        "INSERT INTO outbox (event_id, sink, state, created_ns) VALUES (2, 'webhook', 'pending', 0); \
         INSERT INTO outbox (event_id, sink, state, created_ns, delivered_ns) VALUES (4, 'webhook', 'delivered', 0, 1);",
    );
    set_store(&t, "2s", true);
    wait_older_than(&t, Duration::from_secs(2));
    std::fs::write(&a, "6\n").expect("write");
    assert_eq!(t.check_json().0, 4);
    // 1, 3 and 4 were pruned before the scan; 2 waits for its alert; 5 was the newest.
    assert_eq!(event_ids(&t), vec![2, 5, 6]);
    assert_eq!(
        sqlite(
            &t.db,
            "SELECT event_id || ':' || state FROM outbox ORDER BY id"
        ),
        "2:pending"
    );
    let r = t.run(&["verify"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("3 events: intact"), "{}", r.stderr);

    // The alert goes out: next time event 2 goes too, and the holes merge.
    sqlite(
        &t.db,
        "UPDATE outbox SET state = 'delivered' WHERE event_id = 2",
    );
    wait_older_than(&t, Duration::from_secs(2));
    std::fs::write(&a, "7\n").expect("write");
    assert_eq!(t.check_json().0, 4);
    assert_eq!(event_ids(&t), vec![6, 7]);
    assert_eq!(sqlite(&t.db, "SELECT COUNT(*) FROM outbox"), "0");
    let r = t.run(&["verify"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    // Still tamper-evident. Deleting a kept event before a hole, or an anchor claiming so,
    // is a deletion:
    sqlite(
        &t.db,
        "UPDATE event_chain_anchors SET after_id = after_id + 1",
    );
    let r = t.run(&["verify"]);
    assert_eq!(r.code, 4, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("events 1 to 5: deleted\n"),
        "{}",
        r.stdout
    );
    sqlite(
        &t.db,
        "UPDATE event_chain_anchors SET after_id = after_id - 1",
    );
    assert_eq!(t.run(&["verify"]).code, 0);
    // an anchor not signed by the key is named;
    sqlite(&t.db, "UPDATE event_chain_anchors SET mac = zeroblob(32)");
    let r = t.run(&["verify"]);
    assert_eq!(r.code, 4, "{} {}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        "event 6: the record of the events pruned before it was altered\n"
    );
    // and deleting an event outside fimd still is found.
    sqlite(&t.db, "DELETE FROM events WHERE id = 6");
    let r = t.run(&["verify"]);
    assert_eq!(r.code, 4, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("events 1 to 6: deleted"), "{}", r.stdout);
}

/// See: issue #16 item 7. Without a key, retention prunes the same way, a failed alert
/// holds its event back, and turning the key on later signs a chain that verifies.
#[test]
fn issue_16_7_retention_without_a_key_then_signing_later() {
    if !have_sqlite3() {
        return;
    }
    let t = TempTree::new("", "");
    set_store(&t, "1h", false);
    let a = t.write("a.conf", "0\n");
    t.init();
    for i in 1..=3 {
        std::fs::write(&a, format!("{i}\n")).expect("write");
        assert_eq!(t.check_json().0, 4);
    }
    sqlite(
        &t.db,
        "INSERT INTO outbox (event_id, sink, state, created_ns) VALUES (1, 'slack', 'failed', 0)",
    );
    set_store(&t, "2s", false);
    wait_older_than(&t, Duration::from_secs(2));
    std::fs::write(&a, "4\n").expect("write");
    assert_eq!(t.check_json().0, 4);
    assert_eq!(event_ids(&t), vec![1, 3, 4]);
    // Tamper evidence turned on after pruning: everything kept is signed and verifies.
    set_store(&t, "2s", true);
    assert_eq!(t.check_json().0, 0);
    let r = t.run(&["verify"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    // Re-keyed after pruning: the anchors are signed again with the new key.
    let old_key = format!("${{file:{}}}", t.dir.path().join("hmac.key").display());
    let new_key = t.dir.path().join("hmac2.key");
    std::fs::write(&new_key, "second-key\n").expect("key");
    t.write_config(
        "",
        &format!(
            "[store]\nkeep_events = \"2s\"\nhmac_key = \"${{file:{}}}\"\n",
            new_key.display()
        ),
    );
    let r = t.run(&["verify", "--rekey", "--old-hmac-key", &old_key]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let r = t.run(&["verify"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(
        sqlite(&t.db, "SELECT COUNT(*) FROM event_chain_anchors") != "0",
        "the test must cover an anchor"
    );
}

/// See: issue #16 item 7. `status` shows the database size, the oldest event kept and the
/// retention in force.
#[test]
fn issue_16_7_status_shows_database_size_and_oldest_event() {
    let t = TempTree::new("", "");
    let a = t.write("a.conf", "0\n");
    t.init();
    let r = t.run(&["status"]);
    assert!(r.stdout.contains("oldest event: none\n"), "{}", r.stdout);
    std::fs::write(&a, "1\n").expect("write");
    let (_, events) = t.check_json();
    let time = events[0]["time"].as_str().unwrap_or_default().to_string();
    let r = t.run(&["status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("oldest event: 1 ({time})\n")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("history kept: 400 days\n"),
        "{}",
        r.stdout
    );
    let database = r.stdout.lines().next().unwrap_or_default();
    assert!(
        database.starts_with("database: ") && database.ends_with("B)"),
        "{database}"
    );
    let r = t.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("status JSON");
    assert_eq!(v["oldest_event"]["id"], 1);
    assert_eq!(v["oldest_event"]["time"], time.as_str());
    assert!(v["database_bytes"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(v["keep_events"], "400 days");
}

/// See: issue #16 item 7. Filters and the limit combine: the last N events that match,
/// oldest first.
#[test]
fn issue_16_7_events_limit_applies_after_the_filters() {
    let t = TempTree::new("", "");
    let a = t.write("a.conf", "0\n");
    let b = t.write("b.txt", "0\n");
    t.init();
    for i in 1..=4 {
        std::fs::write(&a, format!("{i}\n")).expect("write");
        std::fs::write(&b, format!("{i}\n")).expect("write");
        t.check_json();
    }
    let ids = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["events", "--json"];
        all.extend_from_slice(args);
        let r = t.run(&all);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json_lines()
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .collect()
    };
    let a_ids: Vec<i64> = t
        .run(&["events", "--json", "--path", "**/a.conf"])
        .json_lines()
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert_eq!(a_ids.len(), 4);
    assert_eq!(ids(&["--path", "**/a.conf", "--limit", "2"]), a_ids[2..]);
    assert_eq!(ids(&["--limit", "3"]), vec![6, 7, 8]);
    assert_eq!(ids(&["--limit", "0"]), Vec::<i64>::new());
    assert_eq!(ids(&["--since", "1h", "--limit", "1"]), vec![8]);
    assert_eq!(ids(&["--severity", "high"]), Vec::<i64>::new());
    assert_eq!(ids(&["--severity", "medium", "--limit", "1"]), vec![8]);
    assert_eq!(ids(&["--since", "2099-01-01T00:00:00Z"]), Vec::<i64>::new());
}

/// Characters a file's writer controls and a terminal obeys: OSC title change, clear
/// screen, a C1 CSI, a right-to-left override.
const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{202e}txt.exe\u{2066}";

fn assert_inert(what: &str, out: &str) {
    for bad in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}', '\u{2066}'] {
        assert!(
            !out.contains(bad),
            "{what} holds U+{:04X} raw: {out:?}",
            bad as u32
        );
    }
}

/// See: issue #16 item 6. A diff line and a file name never reach the terminal raw;
/// `diff --raw` gives the stored bytes.
#[test]
fn issue_16_6_diffs_and_names_are_escaped_for_the_terminal() {
    let t = TempTree::new("", "");
    let a = t.write("app.conf", "port = 80\n");
    let name = format!("x{HOSTILE}.conf");
    t.write(&name, "1\n");
    t.init();
    std::fs::write(&a, format!("port = 80\ncomment = {HOSTILE} C:\\dir\n")).expect("write");
    std::fs::write(t.path(&name), "2\n").expect("write");
    let r = t.run(&["check"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_inert("check", &r.stdout);
    assert!(r.stdout.contains("\\u{202e}txt.exe"), "{}", r.stdout);
    let r = t.run(&["events"]);
    assert_inert("events", &r.stdout);
    assert!(
        r.stdout
            .contains("x\\x1b]0;owned\\x07\\x1b[2J\\u{9b}31m\\u{202e}txt.exe\\u{2066}.conf"),
        "{}",
        r.stdout
    );
    let id = t
        .run(&["events", "--json", "--path", "**/app.conf"])
        .json_lines()
        .first()
        .and_then(|e| e["id"].as_i64())
        .unwrap_or_default()
        .to_string();
    let r = t.run(&["diff", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_inert("diff", &r.stdout);
    assert!(
        r.stdout.contains(
            "+comment = \\x1b]0;owned\\x07\\x1b[2J\\u{9b}31m\\u{202e}txt.exe\\u{2066} C:\\dir\n"
        ),
        "{}",
        r.stdout
    );
    let raw = t
        .cmd()
        .args(["diff", "--raw", &id])
        .output()
        .expect("diff --raw");
    assert!(raw.status.success());
    assert!(
        common::contains(&raw.stdout, &format!("+comment = {HOSTILE} C:\\dir\n")),
        "{:?}",
        String::from_utf8_lossy(&raw.stdout)
    );
    // The JSON keeps the exact name (escaped by JSON itself).
    let r = t.run(&["events", "--json", "--path", "**/x*"]);
    let path = r.json_lines()[0]["path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(path.ends_with(&name), "{path}");
}

/// See: issue #16 item 6. In the plain-text log a name cannot forge another field: the
/// path is one quoted value, and the record keeps its own FIM_EVENT and FIM_SENSITIVE.
#[test]
fn issue_16_6_a_name_cannot_forge_log_fields() {
    let env = Env::new();
    let d = env.start();
    let name = "x FIM_EVENT=removed FIM_SENSITIVE=true.conf";
    let path = env.root.join(name);
    std::fs::write(&path, "1\n").expect("write");
    env.wait_events("the added event", |e| {
        e.iter()
            .any(|e| e["path"].as_str().is_some_and(|p| p.ends_with(name)))
    });
    let line = {
        let deadline = Instant::now() + common::DEADLINE;
        loop {
            let text = d.stderr_text();
            if let Some(l) = text.lines().find(|l| l.contains("FIM_PATH=")) {
                break l.to_string();
            }
            assert!(Instant::now() < deadline, "no change record in:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let quoted = format!("FIM_PATH={:?}", path.display().to_string());
    assert!(line.contains(&quoted), "{line}");
    assert!(line.contains("FIM_EVENT=added"), "{line}");
    assert!(line.contains("FIM_SENSITIVE=false"), "{line}");
    // Outside quoted values, each key appears once.
    let mut bare = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in line.chars() {
        match (in_quotes, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_quotes = !in_quotes,
            (false, _, c) => bare.push(c),
            _ => {}
        }
    }
    for key in ["FIM_EVENT=", "FIM_SENSITIVE=", "FIM_PATH="] {
        assert_eq!(bare.matches(key).count(), 1, "{key} in {line}");
    }
    d.signal("TERM");
    let _ = d.stop();
}

/// A new database gives pruned pages back (auto_vacuum = incremental, 2), and opening it
/// again (a read command) writes nothing: its WAL stays empty.
#[test]
fn new_databases_vacuum_incrementally_and_reads_write_nothing() {
    let t = TempTree::new("", "");
    t.write("a.conf", "a\n");
    t.init();
    assert_eq!(sqlite(&t.db, "PRAGMA auto_vacuum"), "2");
    let wal = t.db.with_file_name("fimd.db-wal");
    let before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    for args in [&["status"][..], &["events"]] {
        let r = t.run(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        let after = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert_eq!(after, before, "{args:?} wrote to the database");
    }
}
