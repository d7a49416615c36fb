//! The journal side of `fimd run`, for real: a standalone systemd-journald in a private mount
//! namespace (STACK.md 6b), fimd started as systemd would (INVOCATION_ID set), records read
//! back with `journalctl -o json`.

mod common;

use common::Env;
use std::path::Path;

fn write(p: &Path, text: &str) {
    std::fs::write(p, text).expect("write");
}

/// `journalctl -o json` output: the text (for messages) and one value per record.
fn journal_json(path: &Path) -> (String, Vec<serde_json::Value>) {
    let text = std::fs::read_to_string(path).expect("journal output");
    let records = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("journal JSON"))
        .collect();
    (text, records)
}

#[test]
fn journal_records_carry_the_fim_fields() {
    // Standalone journald in a private mount namespace (STACK.md 6b); needs root and
    // util-linux `unshare`. Set FIMD_REQUIRE_JOURNAL=1 to make a missing piece a failure.
    let journald = Path::new("/lib/systemd/systemd-journald");
    let usable = rustix::process::geteuid().is_root()
        && journald.exists()
        && Path::new("/usr/bin/unshare").exists()
        && Path::new("/usr/bin/journalctl").exists();
    if !common::can_run(
        usable,
        "FIMD_REQUIRE_JOURNAL",
        "needs root, unshare, systemd-journald and journalctl",
    ) {
        return;
    }
    let env = Env::new();
    let a = env.root.join("a.conf");
    write(&a, "x\n");
    let out = env.base().join("journal.json");
    let checks = env.base().join("checks.json");
    let script = format!(
        r#"set -e
# Only inside this mount namespace: a private /run (journal socket, volatile journal) and,
# when it exists, a private /var/log/journal. Nothing is written outside.
mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/journal
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
/lib/systemd/systemd-journald & J=$!
i=0; while [ ! -S /run/systemd/journal/socket ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
INVOCATION_ID=00000000000000000000000000000001 {fimd} --config {cfg} run & P=$!
# Watches are installed before the baseline is built: once its record is in, changes count.
i=0; while [ $i -lt 300 ]; do
  journalctl --no-pager -t fimd MESSAGE="baseline built" -o cat 2>/dev/null | grep -q . && break
  sleep 0.1; i=$((i+1)); done
echo y >> {a}
i=0; while [ $i -lt 300 ]; do
  journalctl --no-pager -t fimd -o json FIM_EVENT=modified > {out} 2>/dev/null || true
  [ -s {out} ] && break; sleep 0.1; i=$((i+1)); done
chmod 600 {a}
i=0; while [ $i -lt 300 ]; do
  journalctl --no-pager -t fimd -o json FIM_EVENT=modified > {out} 2>/dev/null || true
  [ "$(wc -l < {out})" -ge 2 ] && break; sleep 0.1; i=$((i+1)); done
kill -TERM $P; wait $P
# One more change, seen by `check --dry-run` (must not log it) and then by `check`.
echo z >> {a}
INVOCATION_ID=00000000000000000000000000000002 {fimd} --config {cfg} check --dry-run >/dev/null || true
INVOCATION_ID=00000000000000000000000000000003 {fimd} --config {cfg} check >/dev/null || true
i=0; while [ $i -lt 300 ]; do
  journalctl --no-pager -t fimd -o json FIM_SOURCE=check > {checks} 2>/dev/null || true
  [ -s {checks} ] && break; sleep 0.1; i=$((i+1)); done
kill $J; wait $J || true
"#,
        fimd = common::fimd_bin(),
        cfg = env.config.display(),
        a = a.display(),
        out = out.display(),
        checks = checks.display(),
    );
    let status = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_remove("NOTIFY_SOCKET")
        .status()
        .expect("unshare");
    assert!(status.success(), "journald script failed: {status}");
    let (text, records) = journal_json(&out);
    assert_eq!(records.len(), 2, "{text}");
    let path = a.to_string_lossy();
    for r in &records {
        assert_eq!(r["SYSLOG_IDENTIFIER"], "fimd");
        assert_eq!(r["MESSAGE_ID"], fimd::logging::MESSAGE_ID_FILE_CHANGED);
        assert_eq!(r["FIM_EVENT"], "modified");
        assert_eq!(r["FIM_PATH"], *path);
        assert_eq!(r["FIM_SENSITIVE"], "false");
        assert!(r["FIM_EVENT_ID"]
            .as_str()
            .is_some_and(|id| id.parse::<i64>().is_ok()));
    }
    // PRIORITY follows the severity (DESIGN.md Part 2): an unexplained change is medium (4).
    for r in &records {
        assert_eq!(r["FIM_SEVERITY"], "medium");
        assert_eq!(r["FIM_REASON"], "changed outside any package transaction");
    }
    assert_eq!(records[0]["PRIORITY"], "4", "medium: warning");
    assert!(records[0]["FIM_CHANGED"]
        .as_str()
        .is_some_and(|c| c.contains("sha256")));
    assert_eq!(records[1]["PRIORITY"], "4", "a chmod is medium too");
    assert_eq!(records[1]["FIM_CHANGED"], "mode,ctime");

    // `check --dry-run` writes nothing, not even a journal record; `check` records one.
    let (text, checks) = journal_json(&checks);
    assert_eq!(checks.len(), 1, "{text}");
    assert_eq!(checks[0]["FIM_EVENT"], "modified");
    assert_ne!(
        checks[0]["FIM_EVENT_ID"], "0",
        "the recorded check, not the dry run"
    );
}
