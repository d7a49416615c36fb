//! Security attributes, for real: setcap, setfacl, chattr and setfattr on a temp tree (ext4
//! or tmpfs on kernels >= 6.0: both hold capabilities, ACLs, user xattrs and the i/a flags),
//! then `check --json`. Needs root (capabilities, immutable flags) and the tools from the
//! libcap2-bin, acl, attr and e2fsprogs packages; CI installs them and sets
//! FIMD_REQUIRE_ROOT=1 so this cannot skip.

mod common;

use common::TempTree;
use std::process::Command;

fn tool(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn can_run() -> bool {
    let tools = ["setcap", "setfacl", "chattr", "setfattr", "sqlite3"]
        .iter()
        .all(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    common::can_run(
        rustix::process::geteuid().is_root() && tools,
        "FIMD_REQUIRE_ROOT",
        "needs root and setcap, setfacl, chattr, setfattr, sqlite3",
    )
}

fn event_for<'a>(events: &'a [serde_json::Value], path: &std::path::Path) -> &'a serde_json::Value {
    let p = path.to_string_lossy();
    events
        .iter()
        .find(|e| e["path"] == *p)
        .unwrap_or_else(|| panic!("no event for {p}: {events:#?}"))
}

#[test]
fn attributes_are_recorded_compared_and_rated() {
    if !can_run() {
        return;
    }
    let t = TempTree::new("", "");
    let bin = t.write("bin/tool", "#!/bin/sh\n");
    let conf = t.write("etc/app.conf", "a=1\n");
    let keys = t.write("home/u/.ssh/authorized_keys", "ssh-ed25519 AAAA x\n");
    let data = t.write("data.txt", "x\n");
    let dir = t.path("home/u");
    t.init();
    assert_eq!(t.check_json(), (0, vec![]), "nothing changed yet");

    tool(&["setcap", "cap_setuid,cap_net_raw+ep", bin.to_str().unwrap()]);
    tool(&["setfacl", "-m", "u:nobody:rw", conf.to_str().unwrap()]);
    tool(&["chattr", "+i", keys.to_str().unwrap()]);
    tool(&[
        "setfattr",
        "-n",
        "user.note",
        "-v",
        "SECRET-XATTR-MARKER",
        data.to_str().unwrap(),
    ]);
    tool(&["setfacl", "-d", "-m", "u:nobody:r", dir.to_str().unwrap()]);
    let (code, events) = t.check_json();
    // Unlock before any assertion can fail, so the temp dir can be removed.
    tool(&["chattr", "-i", keys.to_str().unwrap()]);
    assert_eq!(code, 4, "{events:#?}");

    let e = event_for(&events, &bin);
    assert_eq!(e["changed"], serde_json::json!(["ctime", "caps"]));
    assert_eq!(e["old"]["caps"], serde_json::Value::Null);
    assert_eq!(
        e["new"]["caps"], "cap_setuid,cap_net_raw=ep",
        "as getcap prints it"
    );
    assert_eq!(e["severity"], "critical");
    assert_eq!(e["reason"], "gained cap_setuid+ep cap_net_raw+ep");

    let e = event_for(&events, &conf);
    assert_eq!(e["changed"], serde_json::json!(["mode", "ctime", "acl"]));
    assert_eq!(
        e["new"]["acl"],
        "user::rw-,user:nobody:rw-,group::r--,mask::rw-,other::r--"
    );
    assert_eq!(e["severity"], "medium");

    let e = event_for(&events, &keys);
    assert_eq!(e["changed"], serde_json::json!(["ctime", "flags"]));
    assert_eq!(e["new"]["flags"], "i");
    assert_eq!(
        (e["severity"].as_str(), e["reason"].as_str()),
        (Some("high"), Some("immutable flag set"))
    );

    let e = event_for(&events, &data);
    assert_eq!(e["changed"], serde_json::json!(["ctime", "xattrs"]));
    let digest = e["new"]["xattrs"]["user.note"].as_str().unwrap_or_default();
    assert_eq!(digest.len(), 64, "the value's sha256, never the value");

    let e = event_for(&events, &dir);
    assert_eq!(e["new"]["type"], "dir");
    assert_eq!(e["changed"], serde_json::json!(["acl"]));
    assert!(e["new"]["acl"]
        .as_str()
        .is_some_and(|a| a.contains("default:user:nobody:r--")));

    // The xattr's value is never stored or printed.
    let raw = std::fs::read(&t.db).unwrap_or_default();
    let marker = b"SECRET-XATTR-MARKER";
    assert!(!raw.windows(marker.len()).any(|w| w == marker));

    // Recorded now: the next check sees only the flag taken off again.
    let (_, events) = t.check_json();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["old"]["flags"], "i");
    assert_eq!(events[0]["new"]["flags"], serde_json::Value::Null);
    assert_eq!(t.check_json(), (0, vec![]));
}

#[test]
fn setuid_gained_is_critical_and_the_first_scan_after_an_upgrade_is_silent() {
    if !can_run() {
        return;
    }
    let t = TempTree::new("", "");
    let bin = t.write("bin/tool", "#!/bin/sh\n");
    t.init();
    // A baseline from before attributes existed: the next check fills them in silently.
    let out = Command::new("sqlite3")
        .arg(&t.db)
        .arg("UPDATE baseline SET attrs = NULL")
        .output();
    assert!(out.is_ok_and(|o| o.status.success()), "sqlite3 failed");
    assert_eq!(t.check_json(), (0, vec![]), "filled in silently");
    tool(&["setcap", "cap_net_raw+ep", bin.to_str().unwrap()]);
    let (_, events) = t.check_json();
    assert_eq!(events[0]["changed"], serde_json::json!(["ctime", "caps"]));
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let (code, events) = t.check_json();
    assert_eq!(code, 4);
    assert_eq!(events[0]["severity"], "critical");
    assert_eq!(events[0]["reason"], "gained the setuid bit");
}
