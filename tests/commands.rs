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

#[test]
fn a_glob_in_a_watch_path_is_a_config_error() {
    let t = TempTree::new("", "");
    let text = std::fs::read_to_string(&t.config).expect("config");
    let root = t.root.display().to_string();
    std::fs::write(&t.config, text.replace(&root, &format!("{root}/*.conf"))).expect("config");
    for cmd in ["config-check", "init", "check"] {
        let r = t.run(&[cmd]);
        assert_eq!(r.code, 17, "{cmd}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{cmd}: {}", r.stderr);
    }
    assert!(!t.db.exists());
}

#[test]
fn a_watch_written_with_single_brackets_is_a_config_error_naming_the_fix() {
    let t = TempTree::new("", "");
    let text = std::fs::read_to_string(&t.config).expect("config");
    std::fs::write(&t.config, text.replace("[[watch]]", "[watch]")).expect("config");
    let r = t.run(&["config-check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(r.stderr.contains("[[watch]]"), "{}", r.stderr);
}

#[test]
fn a_missing_watch_path_is_a_warning_everywhere_and_status_lists_it() {
    let t = TempTree::new("", "");
    t.write("a.conf", "a\n");
    let missing = t.root.parent().expect("base").join("ngnix");
    let missing_s = missing.display().to_string();
    let text = std::fs::read_to_string(&t.config).expect("config");
    let optional = t.root.parent().expect("base").join("nagios");
    std::fs::write(
        &t.config,
        text.replace(
            "[users]",
            &format!(
                "[[watch]]\npath = {missing_s:?}\n\n[[watch]]\npath = {:?}\noptional = true\n\n[users]",
                optional.display().to_string()
            ),
        ),
    )
    .expect("config");
    for cmd in ["config-check", "init", "check"] {
        let r = t.run(&[cmd]);
        assert_eq!(r.code, 0, "{cmd}: {}", r.stderr);
        let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(
            warnings.len(),
            1,
            "{cmd}: one warning, the optional path is silent: {}",
            r.stderr
        );
        assert!(warnings[0].contains(&missing_s), "{cmd}: {}", r.stderr);
    }
    let s = t.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&s.stdout).expect("status json");
    let listed = status["missing_watches"]
        .as_array()
        .expect("missing_watches");
    assert!(listed.iter().any(|p| p == &missing_s), "{status:#}");
    let s = t.run(&["status"]);
    assert!(s.stdout.contains(&missing_s), "{}", s.stdout);
}

#[test]
fn init_and_check_fail_when_no_watch_path_exists() {
    let t = TempTree::new("", "");
    std::fs::remove_dir(&t.root).expect("rmdir");
    for cmd in ["init", "check"] {
        let r = t.run(&[cmd]);
        assert_eq!(r.code, 17, "{cmd}: {}", r.stderr);
        assert!(
            r.stderr.contains(&t.root.display().to_string()),
            "{}",
            r.stderr
        );
    }
    assert!(!t.db.exists(), "no empty baseline was built");
}

#[test]
fn a_database_the_user_cannot_read_is_permission_denied_not_missing() {
    if !common::can_run(
        common::is_root(),
        "FIMD_REQUIRE_ROOT",
        "needs root to run fimd as another user",
    ) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let t = TempTree::new("", "");
    t.write("a.conf", "a\n");
    t.init();
    // The config is readable by anyone; the database (0600 in a 0700 directory) is not.
    let base = t.root.parent().expect("base");
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&t.config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    for cmd in ["status", "events", "check"] {
        let out = t
            .cmd()
            .arg(cmd)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run");
        let r = common::Run::from(out);
        assert_eq!(r.code, 18, "{cmd}: {}", r.stderr);
        assert!(
            r.stderr.contains("permission denied"),
            "{cmd}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&t.db.display().to_string()),
            "{cmd}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("fimd init"), "{cmd}: {}", r.stderr);
    }
}

#[test]
fn the_daemon_warns_about_a_missing_root_and_watches_it_once_it_appears() {
    let env = common::Env::new();
    let later = env.base().join("later");
    env.write_config(&format!(
        "{}{}",
        env.watch_table(&env.root),
        env.watch_table(&later)
    ));
    std::fs::write(env.root.join("a.conf"), "a\n").expect("write");
    let init = env.fimd().arg("init").output().expect("init");
    assert!(init.status.success(), "{init:?}");
    let d = env.start();
    let later_s = later.display().to_string();
    assert!(
        d.stderr_text()
            .contains(&format!("{later_s} does not exist")),
        "{}",
        d.stderr_text()
    );
    // The daemon's numbers are numbers in `status --json`.
    let status = env.wait_status("the daemon's facts", |s| s["daemon"]["pid"].is_number());
    assert_eq!(status["daemon"]["pid"], d.pid(), "{status:#}");
    std::fs::create_dir(&later).expect("mkdir");
    std::fs::write(later.join("new.conf"), "new\n").expect("write");
    let p = later.join("new.conf").display().to_string();
    let events = env.wait_events("the new root's file", |e| e.iter().any(|e| e["path"] == *p));
    assert!(
        events
            .iter()
            .any(|e| e["path"] == *p && e["event"] == "added"),
        "{events:#?}"
    );
    // And a change inside it after that, in real time.
    std::fs::write(later.join("new.conf"), "changed\n").expect("write");
    env.wait_events("the change in the new root", |e| {
        e.iter()
            .any(|e| e["path"] == *p && e["event"] == "modified")
    });
    let (status, _) = d.stop();
    assert_eq!(status.code(), Some(0));
}

/// fimd(8) as the package ships it.
fn man_page() -> String {
    use clap::CommandFactory;
    let mut cmd = fimd::cli::Cli::command();
    cmd.build();
    fimd::manpage::render(&cmd)
}

#[test]
fn the_man_page_renders_without_warnings_and_has_every_section() {
    let page = man_page();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("fimd.8");
    std::fs::write(&file, &page).expect("write");
    let groff = std::process::Command::new("groff")
        .args(["-ww", "-z", "-man"])
        .arg(&file)
        .output()
        .expect("groff (Debian: apt-get install groff-base)");
    assert!(groff.status.success(), "{groff:?}");
    assert_eq!(String::from_utf8_lossy(&groff.stderr), "", "groff warnings");
    if let Ok(man) = std::process::Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
    {
        assert!(man.status.success(), "{man:?}");
        assert_eq!(String::from_utf8_lossy(&man.stderr), "", "man -l warnings");
    }
    let mut at = 0;
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "OPTIONS",
        "CONFIGURATION",
        "FILES",
        "ENVIRONMENT",
        "EXIT STATUS",
        "SIGNALS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        let heading = format!("\n.SH {section}\n");
        let pos = page[at..]
            .find(&heading)
            .unwrap_or_else(|| panic!("{section} missing or out of order"));
        at += pos;
    }
    // Only pages that exist: no per-command pages.
    assert!(!page.contains("fimd\\-init") && !page.contains("fimd-init"));
    for cmd in [
        "init",
        "check",
        "run",
        "events",
        "diff",
        "status",
        "notify\\-test",
        "config\\-check",
    ] {
        assert!(
            page.contains(&format!("\\fBfimd {cmd}\\fR")),
            "command {cmd}"
        );
    }
}

#[test]
fn the_man_page_lists_every_configuration_key_with_its_default() {
    let page = man_page().replace("\\-", "-").replace("\\e", "\\");
    let defaults = toml::Value::try_from(fimd::config::Config::default()).expect("defaults");
    let sections = defaults.as_table().expect("table");
    let mut checked = 0;
    for (section, table) in sections {
        let Some(table) = table.as_table() else {
            // [[watch]]: every default watch is listed by its path.
            for w in table.as_array().expect("watch array") {
                let path = w["path"].as_str().expect("path");
                assert!(page.contains(&format!("path = \"{path}\"")), "watch {path}");
                checked += 1;
            }
            continue;
        };
        assert!(page.contains(&format!(".SS [{section}]")), "[{section}]");
        let start = page.find(&format!(".SS [{section}]\n")).expect("section");
        let body = &page[start + 4..];
        let body = &body[..body.find(".SS ").unwrap_or(body.len())];
        for (key, value) in table {
            if value.is_table() {
                continue;
            }
            let shown = body
                .split(&format!("\\fB{key} = "))
                .nth(1)
                .and_then(|rest| rest.split("\\fR").next())
                .unwrap_or_else(|| panic!("[{section}] {key} missing"));
            let parsed: toml::Table =
                toml::from_str(&format!("v = {shown}")).expect("a TOML value");
            let same = match (&parsed["v"], value) {
                (toml::Value::String(a), toml::Value::String(b)) => {
                    a == b
                        || humantime::parse_duration(a)
                            .ok()
                            .is_some_and(|a| humantime::parse_duration(b).ok() == Some(a))
                }
                (a, b) => a == b,
            };
            assert!(same, "[{section}] {key}: page {shown}, default {value}");
            checked += 1;
        }
    }
    assert!(checked > 25, "{checked} keys checked");
    for key in [
        "path",
        "recursive",
        "extensions",
        "include",
        "exclude",
        "optional",
    ] {
        assert!(page.contains(&format!("\n{key} ")), "[[watch]] key {key}");
    }
    for sink in ["slack", "teams", "jira", "servicenow", "rapid7", "webhook"] {
        assert!(
            page.contains(&format!(".SS [notify.{sink}]")),
            "[notify.{sink}]"
        );
    }
}

/// `packaging/demo.sh ARGS` with the test binary and its own TMPDIR: (exit code, stdout+stderr).
fn demo(tmp: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/demo.sh"))
        .args(args)
        .env("FIMD_BIN", env!("CARGO_BIN_EXE_fimd"))
        .env("TMPDIR", tmp)
        .env_remove("FIMD_CONFIG")
        .output()
        .expect("demo.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_demo_shows_the_init_summary_and_removes_its_temp_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (code, text) = demo(tmp.path(), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("baseline of"), "{text}");
    assert!(text.contains("modified"), "{text}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("ls").collect();
    assert!(left.is_empty(), "left behind: {left:?}\n{text}");
    // On a real tree (read-only): the init summary too.
    let t = TempTree::new("", "");
    t.write("a.conf", "a\n");
    let (code, text) = demo(tmp.path(), &[&t.root.display().to_string()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("baseline of 2 entries"), "{text}");
    assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 0);
}

#[test]
fn excluded_trees_cost_the_daemon_no_inotify_watches() {
    let env = common::Env::new();
    env.write_config(&format!(
        "{}exclude = [\"**/node_modules/**\"]\n",
        env.watch_table(&env.root)
    ));
    for i in 0..200 {
        std::fs::create_dir_all(env.root.join(format!("app/node_modules/m{i}/lib")))
            .expect("mkdir");
    }
    std::fs::write(env.root.join("app/main.conf"), "a\n").expect("write");
    let init = env.fimd().arg("init").output().expect("init");
    assert!(init.status.success(), "{init:?}");
    let d = env.start();
    let watches = inotify_watches(d.pid());
    // tree, tree/app and the tree's parent: not the 401 directories under node_modules.
    assert!((2..10).contains(&watches), "{watches} watches");
    // A new directory under the excluded tree gets no watch either; the rest is real time.
    std::fs::create_dir_all(env.root.join("app/node_modules/new/deep")).expect("mkdir");
    std::fs::write(env.root.join("app/main.conf"), "b\n").expect("write");
    env.wait_events("the change", |e| e.iter().any(|e| e["event"] == "modified"));
    assert_eq!(inotify_watches(d.pid()), watches);
    let (code, _) = d.stop();
    assert_eq!(code.code(), Some(0));
}

/// The inotify watches process `pid` holds (its `/proc/PID/fdinfo` lines).
fn inotify_watches(pid: u32) -> usize {
    let mut total = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
    {
        let inotify = std::fs::read_link(fd.path())
            .map(|t| t.to_string_lossy().ends_with("inotify"))
            .unwrap_or(false);
        if inotify {
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            total += info
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count();
        }
    }
    total
}
