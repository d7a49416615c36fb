//! Who-data for real (root): the daemon on fanotify reports the process, user and login
//! behind each real-time change; without CAP_SYS_ADMIN `auto` falls back to inotify with the
//! reason in `status`, and `require` refuses to start. CI runs as root and sets
//! FIMD_REQUIRE_ROOT so these cannot skip.

mod common;

use common::Env;
use serde_json::Value;
use std::process::Command;

fn can_run() -> bool {
    let setpriv = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    common::can_run(
        common::is_root() && setpriv,
        "FIMD_REQUIRE_ROOT",
        "needs root (CAP_SYS_ADMIN for fanotify) and setpriv",
    )
}

fn last_for<'a>(events: &'a [Value], path: &std::path::Path) -> Option<&'a Value> {
    let p = path.to_string_lossy();
    events.iter().rev().find(|e| e["path"] == *p)
}

#[test]
fn actors_of_changes_made_by_another_user_and_login() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    env.write_config_whodata("require", &env.watch_table(&env.root));
    std::fs::set_permissions(
        &env.root,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod tree");
    let d = env.start();
    let st = env.status();
    assert_eq!(st["daemon"]["backend"], "fanotify (who-data)", "{st:#}");

    // A write by uid 65534 with a login uid of 4242, from a shell with a distinctive argv.
    let f = env.root.join("by-nobody.conf");
    let script = format!(
        "echo 4242 > /proc/self/loginuid; exec setpriv --reuid 65534 --regid 65534 --clear-groups \
         sh -c 'echo hi > \"$1\"; sleep 1' fimd-writer-argv '{}'",
        f.display()
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .status()
        .expect("writer");
    assert!(status.success());
    let events = env.wait_events("the write with its actor", |ev| {
        last_for(ev, &f).is_some_and(|e| e["actor"].is_object())
    });
    let e = last_for(&events, &f).expect("event");
    let a = &e["actor"];
    assert_eq!(a["uid"], 65534, "{e:#}");
    assert_eq!(a["auid"], 4242, "{e:#}");
    assert_eq!(a["comm"], "sh");
    let cmdline: Vec<&str> = a["cmdline"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(cmdline.contains(&"fimd-writer-argv"), "{cmdline:?}");
    assert!(a["pid"]
        .as_u64()
        .is_some_and(|p| p > 0 && p != u64::from(d.pid())));
    assert_eq!(a["exited"], false);

    // A process gone before the daemon reads its event (the daemon is stopped meanwhile, the
    // writer exits and is reaped) still gives its pid, with `exited: true`.
    let g = env.root.join("quick.conf");
    d.signal("STOP");
    let status = Command::new("sh")
        .args(["-c", &format!("echo x > '{}'", g.display())])
        .status()
        .expect("quick writer");
    d.signal("CONT");
    assert!(status.success());
    let events = env.wait_events("the quick writer's event", |ev| {
        last_for(ev, &g).is_some_and(|e| e["actor"].is_object())
    });
    let a = &last_for(&events, &g).expect("event")["actor"];
    assert!(a["pid"].as_u64().is_some_and(|p| p > 0), "{a:#}");
    assert_eq!(a["exited"], true, "{a:#}");
    assert!(
        a["comm"].is_null() && a["cmdline"] == serde_json::json!([]),
        "{a:#}"
    );

    // chmod, rename, delete by that user, and a directory renamed: each with its actor;
    // renames as one `renamed` event.
    let sub = env.root.join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::write(sub.join("in.conf"), "x\n").expect("write");
    std::fs::set_permissions(&sub, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod sub");
    let g2 = env.root.join("renamed.conf");
    let moved = env.root.join("moved");
    // One long-lived process does it all (chmod, mv and rm as separate programs would be
    // gone before their events are read: pid only).
    let py = "import os, sys, time\n\
              a, b, d, m = sys.argv[1:5]\n\
              for step in (lambda: os.chmod(a, 0o600), lambda: os.rename(a, b),\n\
                           lambda: os.rename(d, m), lambda: os.remove(b)):\n\
              \x20   time.sleep(0.3); step()\n\
              time.sleep(1)\n";
    let script = format!(
        "exec setpriv --reuid 65534 --regid 65534 --clear-groups /usr/bin/python3 -c '{py}' '{}' '{}' '{}' '{}'",
        f.display(),
        g2.display(),
        sub.display(),
        moved.display()
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .status()
        .expect("writer");
    assert!(status.success());
    let events = env.wait_events("chmod, renames and delete", |ev| {
        ev.iter()
            .any(|e| e["event"] == "removed" && e["path"] == *g2.to_string_lossy())
            && ev
                .iter()
                .any(|e| e["path"] == *moved.join("in.conf").to_string_lossy())
    });
    let by_nobody = |e: &Value| e["actor"]["uid"] == 65534;
    let chmod = events
        .iter()
        .find(|e| {
            e["path"] == *f.to_string_lossy()
                && e["changed"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|a| a == "mode"))
        })
        .expect("chmod event");
    assert!(by_nobody(chmod), "{chmod:#}");
    let renamed = events
        .iter()
        .find(|e| e["event"] == "renamed" && e["path"] == *g2.to_string_lossy())
        .expect("renamed event");
    assert_eq!(renamed["from"], *f.to_string_lossy());
    assert!(by_nobody(renamed), "{renamed:#}");
    let dir = events
        .iter()
        .find(|e| e["event"] == "renamed" && e["path"] == *moved.join("in.conf").to_string_lossy())
        .expect("the directory's file renamed");
    assert_eq!(dir["from"], *sub.join("in.conf").to_string_lossy());
    let removed = events
        .iter()
        .find(|e| e["event"] == "removed" && e["path"] == *g2.to_string_lossy())
        .expect("removed event");
    assert!(by_nobody(removed), "{removed:#}");

    // The text history says who.
    let out = env.fimd().args(["events"]).output().expect("events");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("by sh[") && text.contains("uid=nobody"),
        "{text}"
    );

    // fimd's own rescans never have actors.
    let (status, _) = d.stop();
    assert!(status.success());
    std::fs::write(&f, "changed while stopped\n").expect("write");
    let d = env.start();
    let events = env.wait_events("the rescan event", |ev| {
        ev.iter().any(|e| e["source"] == "rescan")
    });
    assert!(events
        .iter()
        .filter(|e| e["source"] == "rescan")
        .all(|e| e["actor"].is_null()));
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn without_cap_sys_admin_auto_falls_back_and_require_refuses() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    env.write_config_whodata("auto", &env.watch_table(&env.root));
    let no_admin = [
        "setpriv",
        "--bounding-set",
        "-sys_admin",
        "--inh-caps",
        "-sys_admin",
        "--",
    ];
    let d = env.start_under(&no_admin);
    let st = env.status();
    let backend = st["daemon"]["backend"].as_str().unwrap_or_default();
    assert!(
        backend.starts_with("inotify (who-data unavailable: "),
        "{backend}"
    );
    // Still real time, without actors.
    let f = env.root.join("a.conf");
    std::fs::write(&f, "x\n").expect("write");
    let events = env.wait_events("the inotify event", |ev| last_for(ev, &f).is_some());
    assert!(last_for(&events, &f).is_some_and(|e| e["actor"].is_null()));
    let (status, _) = d.stop();
    assert!(status.success());

    env.write_config_whodata("require", &env.watch_table(&env.root));
    let out = env.fimd_under(&no_admin).arg("run").output().expect("run");
    assert_eq!(out.status.code(), Some(18));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("who-data is required"), "{err}");
}
