//! Explained changes end to end, with real packages: tiny `.deb`s installed, upgraded,
//! downgraded and removed by the real dpkg (and `.rpm`s by the real rpm) in a private root
//! that `[packages] root` points fimd at; `fimd check` and the daemon report each change with
//! its package verdict and severity, and a Slack sink with `min_severity = "medium"` hears
//! only the hand edit. Needs root and dpkg (rpm for the rpm test); CI sets FIMD_REQUIRE_ROOT
//! and FIMD_REQUIRE_RPM so these cannot skip.

mod common;

use common::debs::{self, Deb};
use common::Env;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn can_run() -> bool {
    common::can_run(
        common::is_root() && debs::have_dpkg(),
        "FIMD_REQUIRE_ROOT",
        "needs root and dpkg",
    )
}

/// An `Env` whose config watches a dpkg root's `/usr/bin`, `/etc/hello` and
/// `/var/lib/dpkg/info`, with `[packages] root` pointing at it.
struct Rig {
    env: Env,
    root: PathBuf,
    debs: PathBuf,
}

impl Rig {
    fn new(extra: &str) -> Rig {
        let env = Env::new();
        let root = env.base().join("root");
        debs::empty_root(&root);
        for d in ["usr/bin", "etc/hello"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        let debs = env.base().join("debs");
        std::fs::create_dir_all(&debs).expect("mkdir debs");
        let watches: String = ["usr/bin", "etc/hello", "var/lib/dpkg/info"]
            .iter()
            .map(|d| env.watch_table(&root.join(d)))
            .collect::<Vec<_>>()
            .join("\n");
        env.write_config(&format!(
            "{watches}\n[packages]\nroot = \"{}\"\nsettle = \"30s\"\n\n{extra}",
            root.display()
        ));
        Rig { env, root, debs }
    }

    fn hello(&self, version: &str, bin: &str) -> PathBuf {
        Deb::new("hello", version)
            .file("/usr/bin/hello", bin.as_bytes(), 0o755)
            .file("/etc/hello/hello.conf", b"greeting = hi\n", 0o644)
            .conffile("/etc/hello/hello.conf")
            .build(&self.debs.join(version))
    }

    /// Start `dpkg -i` of hello 2.0-1, whose postinst holds dpkg (and its lock) after the new
    /// file and digests are in place; returns once it is there (open the gate to go on).
    fn upgrade_paused_in_postinst(&self) -> (debs::Gate, std::process::Child) {
        let gate = debs::Gate::new(&self.env.base(), "postinst");
        let v2 = Deb::new("hello", "2.0-1")
            .file("/usr/bin/hello", b"#!/bin/sh\necho 2.0\n", 0o755)
            .file("/etc/hello/hello.conf", b"greeting = hi\n", 0o644)
            .conffile("/etc/hello/hello.conf")
            .script("postinst", &debs::pause_script(&gate))
            .build(&self.debs.join("2.0"));
        let dpkg = debs::spawn_dpkg(
            &self.root,
            &[
                "--force-confold",
                "--force-script-chrootless",
                "-i",
                v2.to_str().expect("utf-8"),
            ],
        );
        assert!(
            gate.wait_reached(Duration::from_secs(30)),
            "dpkg never reached postinst"
        );
        (gate, dpkg)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn check(&self) -> (i32, Vec<Value>) {
        let out = self
            .env
            .fimd()
            .args(["check", "--json"])
            .output()
            .expect("run check");
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code < 8,
            "check failed ({code}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON event"))
            .collect();
        (code, events)
    }

    fn init(&self) {
        let out = self.env.fimd().arg("init").output().expect("init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn event<'a>(events: &'a [Value], path: &Path) -> &'a Value {
    let p = path.to_string_lossy();
    events
        .iter()
        .find(|e| e["path"] == *p)
        .unwrap_or_else(|| panic!("no event for {p}: {events:#?}"))
}

#[test]
fn dpkg_upgrade_is_verified_a_hand_edit_is_critical() {
    if !can_run() {
        return;
    }
    let r = Rig::new("");
    let v1 = r.hello("1.0-1", "#!/bin/sh\necho hello 1.0\n");
    let v2 = r.hello("1.1-1", "#!/bin/sh\necho hello 1.1\n");
    let v3 = r.hello("1.2-1", "#!/bin/sh\necho hello 1.2\n");
    debs::install(&r.root, &v1);
    r.init();
    let bin = r.path("/usr/bin/hello");
    let conf = r.path("/etc/hello/hello.conf");

    // An upgrade: every change is explained, verified and low.
    debs::install(&r.root, &v2);
    let (code, events) = r.check();
    assert_eq!(code & 4, 4, "{events:#?}");
    let e = event(&events, &bin);
    assert_eq!(e["severity"], "low", "{e:#}");
    assert_eq!(e["reason"], "verified upgrade of hello 1.0-1 -> 1.1-1");
    let p = &e["package"];
    assert_eq!(
        (
            p["manager"].as_str(),
            p["name"].as_str(),
            p["version"].as_str(),
            p["old_version"].as_str()
        ),
        (Some("dpkg"), Some("hello"), Some("1.1-1"), Some("1.0-1"))
    );
    assert_eq!(
        (
            p["action"].as_str(),
            p["verified"].as_bool(),
            p["digest"].as_str()
        ),
        (Some("upgrade"), Some(true), Some("md5"))
    );
    for e in &events {
        assert_eq!(
            e["severity"], "low",
            "nothing in a clean upgrade is above low: {e:#}"
        );
    }
    // The package database's own files changed too, explained by the new version.
    let md5sums = r.path("/var/lib/dpkg/info/hello.md5sums");
    assert_eq!(event(&events, &md5sums)["severity"], "low");

    // A hand edit of the installed binary: critical.
    std::fs::write(&bin, "#!/bin/sh\necho pwned\n").expect("edit");
    let (_, events) = r.check();
    let e = event(&events, &bin);
    assert_eq!(e["severity"], "critical");
    assert_eq!(e["reason"], "content differs from hello's recorded digest");
    assert_eq!(e["package"]["verified"], false);

    // An admin's edit of the conffile, kept through an upgrade: medium, "locally modified".
    std::fs::write(&conf, "greeting = hello there\n").expect("edit conffile");
    let (_, events) = r.check();
    assert_eq!(event(&events, &conf)["reason"], "locally modified conffile");
    assert_eq!(event(&events, &conf)["severity"], "medium");
    debs::install(&r.root, &v3);
    let (_, events) = r.check();
    let e = event(&events, &bin);
    assert_eq!(
        (e["severity"].as_str(), e["reason"].as_str()),
        (
            Some("low"),
            Some("verified upgrade of hello 1.1-1 -> 1.2-1")
        )
    );
    assert!(
        events.iter().all(|e| e["path"] != *conf.to_string_lossy()),
        "kept conffile: no change"
    );

    // A downgrade is medium.
    debs::install(&r.root, &v2);
    let (_, events) = r.check();
    let e = event(&events, &bin);
    assert_eq!(
        (e["severity"].as_str(), e["package"]["action"].as_str()),
        (Some("medium"), Some("downgrade"))
    );

    // md5sums rewritten by hand, no transaction: critical.
    let text = std::fs::read_to_string(&md5sums).expect("md5sums");
    std::fs::write(
        &md5sums,
        text.replace(|c: char| c.is_ascii_hexdigit() && c != '0', "0"),
    )
    .expect("rewrite");
    let (_, events) = r.check();
    let e = event(&events, &md5sums);
    assert_eq!(e["severity"], "critical", "{e:#}");

    // Removal: the files go with their package, low.
    debs::purge(&r.root, "hello");
    let (_, events) = r.check();
    let e = event(&events, &bin);
    assert_eq!(e["event"], "removed");
    assert_eq!(
        (e["severity"].as_str(), e["package"]["action"].as_str()),
        (Some("low"), Some("remove"))
    );

    // The text history shows severity, reason and package.
    let out = r
        .env
        .fimd()
        .args(["events", "--severity", "critical"])
        .output()
        .expect("events");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("critical") && text.contains("pkg hello 1.1-1 NOT verified"),
        "{text}"
    );
    assert!(
        !text.contains(" low "),
        "--severity critical shows only critical: {text}"
    );
}

#[test]
fn an_edit_while_dpkg_runs_waits_then_is_critical() {
    if !can_run() {
        return;
    }
    let r = Rig::new("");
    let v1 = r.hello("1.0-1", "#!/bin/sh\necho 1.0\n");
    debs::install(&r.root, &v1);
    r.init();
    let (gate, mut dpkg) = r.upgrade_paused_in_postinst();
    // In the window: someone edits the freshly installed binary.
    let bin = r.path("/usr/bin/hello");
    std::fs::write(&bin, "#!/bin/sh\necho evil\n").expect("edit");
    // `check` finds the mismatch while the lock is held: it waits for the transaction...
    let env_cmd = {
        let mut c = r.env.fimd();
        c.args(["check", "--json"]);
        c
    };
    let mut check = env_cmd;
    let child = check
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("check");
    std::thread::sleep(Duration::from_millis(1500));
    let started = std::time::Instant::now();
    gate.open();
    let status = dpkg.wait().expect("dpkg");
    assert!(status.success());
    let out = child.wait_with_output().expect("check output");
    let waited = started.elapsed();
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    // ... and, the digest still differing once it ended, reports it critical.
    let e = event(&events, &bin);
    assert_eq!(e["severity"], "critical", "{events:#?}");
    assert!(
        waited < Duration::from_secs(20),
        "decided as soon as dpkg was done ({waited:?})"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting for it to record its digests"));
}

/// While dpkg holds its lock the daemon gathers real-time changes and records them when the
/// transaction ends (in one pass, which costs the upgrade less): a change made meanwhile waits
/// for the lock, then is recorded with the upgrade's own events.
#[test]
fn daemon_records_changes_made_during_a_transaction_when_it_ends() {
    if !can_run() {
        return;
    }
    let r = Rig::new("");
    let v1 = r.hello("1.0-1", "#!/bin/sh\necho 1.0\n");
    debs::install(&r.root, &v1);
    let d = r.env.start();
    let (gate, mut dpkg) = r.upgrade_paused_in_postinst();
    let notes = r.path("/etc/hello/notes.txt");
    std::fs::write(&notes, "written during the upgrade\n").expect("write");
    // Far beyond the 50 ms debounce: still held while the lock is.
    std::thread::sleep(Duration::from_millis(1500));
    let notes_text = notes.to_string_lossy().to_string();
    assert!(
        !r.env.events().iter().any(|e| e["path"] == *notes_text),
        "recorded while dpkg held its lock"
    );
    gate.open();
    assert!(dpkg.wait().expect("dpkg").success());
    let bin_text = r.path("/usr/bin/hello").to_string_lossy().to_string();
    let events = r.env.wait_events("the held events", |ev| {
        ev.iter().any(|e| e["path"] == *notes_text)
            && ev
                .iter()
                .any(|e| e["path"] == *bin_text && e["package"]["version"] == "2.0-1")
    });
    let e = event(&events, &r.path("/usr/bin/hello"));
    assert_eq!(e["severity"], "low", "{e:#}");
    assert_eq!(e["package"]["verified"], true, "{e:#}");
    assert_eq!(event(&events, &notes)["event"], "added");
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn daemon_slack_is_quiet_during_an_upgrade_and_loud_for_a_replaced_binary() {
    if !can_run() {
        return;
    }
    let (url, seen) = common::mock_http(vec![]);
    let r = Rig::new(&format!(
        "[notify]\nbatch_window = \"0s\"\n\n[notify.slack]\nwebhook_url = \"{url}/services/T/B/X\"\nmin_severity = \"medium\"\n"
    ));
    let v1 = r.hello("1.0-1", "#!/bin/sh\necho 1.0\n");
    let v2 = r.hello("1.1-1", "#!/bin/sh\necho 1.1\n");
    debs::install(&r.root, &v1);
    let d = r.env.start();
    debs::install(&r.root, &v2);
    let bin = r.path("/usr/bin/hello");
    let bin_text = bin.to_string_lossy().to_string();
    let events = r.env.wait_events("the upgrade's verified event", |ev| {
        ev.iter()
            .any(|e| e["path"] == *bin_text && e["package"]["version"] == "1.1-1")
    });
    assert!(events.iter().all(|e| e["severity"] == "low"), "{events:#?}");
    // Now a hand edit.
    std::fs::write(&bin, "#!/bin/sh\necho replaced\n").expect("edit");
    r.env.wait_events("the critical event", |ev| {
        ev.iter().any(|e| e["severity"] == "critical")
    });
    let first = seen
        .recv_timeout(Duration::from_secs(30))
        .expect("one Slack request");
    assert!(
        first.request_line.starts_with("POST /services/T/B/X"),
        "{}",
        first.request_line
    );
    assert!(
        first.body.contains("/usr/bin/hello") && first.body.contains("critical"),
        "{}",
        first.body
    );
    assert!(
        seen.recv_timeout(Duration::from_secs(2)).is_err(),
        "only the hand edit reached Slack"
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn rpm_upgrade_is_verified_a_hand_edit_is_critical() {
    use common::rpms::{self, RpmFile, RpmRoot, RpmSpec};
    if !common::can_run(rpms::available(), "FIMD_REQUIRE_RPM", rpms::MISSING) {
        return;
    }
    let env = Env::new();
    let rroot = RpmRoot::new(&env.base().join("root"));
    std::fs::create_dir_all(rroot.path("/usr/bin")).expect("mkdir");
    env.write_config(&format!(
        "{}\n[packages]\nroot = \"{}\"\nrpm_db = \"{}\"\n",
        env.watch_table(&rroot.path("/usr/bin")),
        rroot.root.display(),
        rroot.db_dir().display()
    ));
    let build = env.base().join("build");
    let spec = |v: &str, body: &[u8]| {
        RpmSpec::new("hello", v).file(RpmFile::new("/usr/bin/hello", body, 0o755))
    };
    rroot.install(&rpms::build(&build, &spec("1.0", b"v1\n")));
    let out = env.fimd().arg("init").output().expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rroot.upgrade(&rpms::build(&build, &spec("2.0", b"v2\n")));
    let check = || -> Vec<Value> {
        let out = env
            .fimd()
            .args(["check", "--json"])
            .output()
            .expect("check");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect()
    };
    let bin = rroot.path("/usr/bin/hello");
    let events = check();
    let e = event(&events, &bin);
    assert_eq!(e["severity"], "low", "{e:#}");
    assert_eq!(
        (
            e["package"]["manager"].as_str(),
            e["package"]["digest"].as_str()
        ),
        (Some("rpm"), Some("sha256"))
    );
    assert_eq!(e["package"]["old_version"], "1.0-1");
    std::fs::write(&bin, "evil\n").expect("edit");
    let events = check();
    assert_eq!(event(&events, &bin)["severity"], "critical");
}
