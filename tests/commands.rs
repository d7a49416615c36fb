//! What the commands tell the user: init's summary, coverage gaps (watch paths that are
//! globs or do not exist), errors that name the real cause, help and the man page.

mod common;

use common::TempTree;

#[test]
fn init_prints_one_summary_line_without_a_terminal() {
    let t = TempTree::new("", "");
    t.write("a.conf", "a\n");
    t.write("sub/b.conf", "b\n");
    // Output goes to pipes here: no terminal.
    let r = t.run(&["init"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    let line = lines[0];
    // Entries (the root, sub/, two files), files hashed, seconds, database path and size.
    assert!(line.contains("4 entries"), "{line}");
    assert!(line.contains("2 files hashed"), "{line}");
    assert!(line.contains(" s;"), "{line}");
    assert!(line.contains(&t.db.display().to_string()), "{line}");
    assert!(line.contains("KiB") || line.contains("MiB"), "{line}");
    // check's entry count is the same as init's and status's.
    let c = t.run(&["check"]);
    assert_eq!(c.code, 0, "{}", c.stderr);
    let s = t.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&s.stdout).expect("status json");
    assert_eq!(status["baseline_entries"], 4, "{status:#}");
}

/// The number after "entries" in a summary line.
fn entries_in(line: &str) -> u64 {
    let before = line
        .split(" entries")
        .next()
        .and_then(|s| s.rsplit(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_default();
    before
        .parse()
        .unwrap_or_else(|_| panic!("no entry count in {line:?}"))
}

#[test]
fn check_counts_entries_as_status_does_when_authorized_keys_are_missing() {
    let t = TempTree::new("", "");
    t.write("a.conf", "a\n");
    let base = t.root.parent().expect("base").to_path_buf();
    let alice = base.join("home/alice/.ssh");
    std::fs::create_dir_all(&alice).expect("mkdir");
    std::fs::write(alice.join("authorized_keys"), "ssh-ed25519 AAAA alice\n").expect("keys");
    std::fs::create_dir_all(base.join("home/bob")).expect("mkdir");
    let passwd = base.join("passwd");
    std::fs::write(
        &passwd,
        format!(
            "alice:x:1000:1000::{}:/bin/sh\nbob:x:1001:1001::{}:/bin/sh\n",
            base.join("home/alice").display(),
            base.join("home/bob").display()
        ),
    )
    .expect("passwd");
    let config = std::fs::read_to_string(&t.config).expect("config").replace(
        "[users]\nauthorized_keys = false",
        &format!("[users]\nauthorized_keys = true\npasswd = {passwd:?}"),
    );
    std::fs::write(&t.config, config).expect("config");
    let init = t.run(&["init"]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    t.write("a.conf", "changed\n");
    let check = t.run(&["check"]);
    assert_eq!(check.code, 4, "{}", check.stderr);
    let status = t.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
    let entries = status["baseline_entries"].as_u64().expect("entries");
    assert_eq!(entries_in(&init.stderr), entries, "{}", init.stderr);
    assert_eq!(entries_in(&check.stderr), entries, "{}", check.stderr);
}
