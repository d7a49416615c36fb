//! Issue #16 items 6 and 7 with the real binary: hostile names and diffs never drive the
//! terminal nor forge log fields; the history is pruned by `[store] keep_events` without
//! losing an undelivered alert or breaking the tamper-evidence chain; `status` shows the
//! database size and the oldest event; `events` filters and limits.

mod common;

use common::{Env, TempTree};
use std::time::{Duration, Instant};

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
            .contains("x\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u{202e}txt.exe\\u{2066}.conf"),
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
            "+comment = \\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u{202e}txt.exe\\u{2066} C:\\dir\n"
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
