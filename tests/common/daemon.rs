//! Daemon test helpers: a temp tree with its config and database, the real `fimd` binary, a daemon
//! started with a filesystem-path NOTIFY_SOCKET we read from, and waiting on conditions with
//! deadlines (never fixed sleeps).
#![allow(dead_code)]

use serde_json::Value;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Generous: two cores are shared with other builds.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn fimd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_fimd")
}

/// A temp directory holding `tree/` (the watched root), `fimd.toml` and the database.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Canonical path of the watched tree.
    pub root: PathBuf,
    pub config: PathBuf,
    pub db: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(dir.path()).expect("canonicalize");
        let root = base.join("tree");
        std::fs::create_dir(&root).expect("mkdir tree");
        let env = Env {
            config: base.join("fimd.toml"),
            db: base.join("state/fimd.db"),
            root,
            dir,
        };
        env.write_config(&env.watch_table(&env.root));
        env
    }

    pub fn base(&self) -> PathBuf {
        self.root.parent().expect("parent").to_path_buf()
    }

    /// A `[[watch]]` table for `path` (all files).
    pub fn watch_table(&self, path: &Path) -> String {
        format!("[[watch]]\npath = \"{}\"\n", path.display())
    }

    /// Write the config: the fixed test settings plus `rest` (watch tables, `[users]`...).
    /// The real-time source is inotify (`whodata = "off"`), which most daemon tests are
    /// about; [`Env::write_config_whodata`] picks another.
    pub fn write_config(&self, rest: &str) {
        self.write_config_whodata("off", rest);
    }

    /// Like [`Env::write_config`], with `[daemon] whodata = <mode>`.
    pub fn write_config_whodata(&self, mode: &str, rest: &str) {
        let users = if rest.contains("[users]") {
            ""
        } else {
            "[users]\nauthorized_keys = false\n"
        };
        let text = format!(
            "[daemon]\ndatabase = \"{}\"\ndebounce = \"50ms\"\nrescan_interval = \"1h\"\nhash_workers = 2\nwhodata = \"{mode}\"\n\n\
             [sensitive]\npaths = []\npatterns = [\"*.key\"]\n\n{users}{rest}",
            self.db.display()
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    /// `fimd --config <ours>` with a clean environment (no systemd, no sinks).
    pub fn fimd(&self) -> Command {
        self.fimd_under(&[])
    }

    /// Like [`Env::fimd`], run through `wrapper` (a command that ends by exec'ing the
    /// arguments it is given, e.g. `unshare -Ur sh -c '...; exec "$0" "$@"'`).
    pub fn fimd_under(&self, wrapper: &[&str]) -> Command {
        let mut c = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(fimd_bin());
                c
            }
            None => Command::new(fimd_bin()),
        };
        for var in [
            "INVOCATION_ID",
            "JOURNAL_STREAM",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "FIMD_CONFIG",
            "RUST_LOG",
            "CREDENTIALS_DIRECTORY",
            "SLACK_WEBHOOK_URL",
            "TEAMS_WEBHOOK_URL",
            "JIRA_URL",
            "SERVICENOW_INSTANCE",
            "RAPID7_API_KEY",
        ] {
            c.env_remove(var);
        }
        c.arg("--config").arg(&self.config);
        c
    }

    /// Start `fimd run` and wait for READY=1.
    pub fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    pub fn start_with(&self, env: &[(&str, &str)]) -> Daemon {
        let d = self.spawn(env);
        d.wait_ready()
    }

    /// Start `fimd run` without waiting.
    pub fn spawn(&self, env: &[(&str, &str)]) -> Daemon {
        self.spawn_under(&[], env)
    }

    /// Start `fimd run` through `wrapper` (see [`Env::fimd_under`]) and wait for READY=1.
    pub fn start_under(&self, wrapper: &[&str]) -> Daemon {
        self.spawn_under(wrapper, &[]).wait_ready()
    }

    /// Start `fimd run` through `wrapper` (see [`Env::fimd_under`]) without waiting.
    pub fn spawn_under(&self, wrapper: &[&str], env: &[(&str, &str)]) -> Daemon {
        let n = std::fs::read_dir(self.base())
            .map(|d| d.count())
            .unwrap_or(0);
        let sock = self.base().join(format!("notify-{n}.sock"));
        let _ = std::fs::remove_file(&sock);
        let notify = UnixDatagram::bind(&sock).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let stderr = self.base().join(format!("stderr-{n}.log"));
        let mut cmd = self.fimd_under(wrapper);
        cmd.arg("run")
            .env("NOTIFY_SOCKET", &sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn fimd run");
        Daemon {
            child: Some(child),
            notify,
            messages: Vec::new(),
            stderr,
        }
    }

    /// Every recorded event (`fimd events --json`).
    pub fn events(&self) -> Vec<Value> {
        let out = self
            .fimd()
            .args(["events", "--json"])
            .output()
            .expect("events");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("event JSON"))
            .collect()
    }

    /// Events of one path.
    pub fn events_for(&self, path: &Path) -> Vec<Value> {
        let p = path.to_string_lossy();
        self.events()
            .into_iter()
            .filter(|e| e["path"] == *p)
            .collect()
    }

    /// Poll the events until `done` holds; panics with the last events at the deadline.
    pub fn wait_events(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        poll(what, || self.events(), |e| done(e))
    }

    /// Poll `fimd status --json` until `done` holds.
    pub fn wait_status(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        poll(what, || self.status(), done)
    }

    /// A barrier for negative checks: write a fresh sentinel file in the root and wait for
    /// its event. Any event still due for an earlier change is recorded before it (changes
    /// are debounced and processed in order), so afterwards "no event for X" is final.
    /// Returns the events without the sentinels.
    pub fn barrier(&self) -> Vec<Value> {
        let n = std::fs::read_dir(&self.root)
            .map(|d| d.count())
            .unwrap_or(0);
        let name = format!("zz-barrier-{n}-{}", std::process::id());
        let sentinel = self.root.join(&name);
        std::fs::write(&sentinel, "barrier\n").expect("sentinel");
        let p = sentinel.to_string_lossy().into_owned();
        let events = self.wait_events("the barrier", |e| e.iter().any(|e| e["path"] == *p));
        events
            .into_iter()
            .filter(|e| {
                !e["path"]
                    .as_str()
                    .is_some_and(|s| s.contains("/zz-barrier-"))
            })
            .collect()
    }

    /// `fimd check --dry-run`: (exit code, stdout).
    pub fn dry_run(&self) -> (i32, String) {
        let out = self
            .fimd()
            .args(["check", "--dry-run"])
            .output()
            .expect("check");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// `fimd status --json`.
    pub fn status(&self) -> Value {
        let out = self
            .fimd()
            .args(["status", "--json"])
            .output()
            .expect("status");
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }
}

/// A running `fimd run`.
pub struct Daemon {
    child: Option<Child>,
    notify: UnixDatagram,
    /// Every sd-notify datagram received so far.
    pub messages: Vec<String>,
    pub stderr: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Another handle on the notify socket, for a reader thread that timestamps datagrams
    /// (what it reads is not in [`Daemon::messages`]).
    pub fn notify_socket(&self) -> UnixDatagram {
        self.notify.try_clone().expect("clone the notify socket")
    }

    /// Read datagrams until one satisfies `pred` (searching those already received first).
    pub fn wait_message(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(m) = self.messages.iter().find(|m| pred(m)) {
            return m.clone();
        }
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        while start.elapsed() < DEADLINE {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.messages.push(m.clone());
                if pred(&m) {
                    return m;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "fimd exited ({status}) while waiting for {what}; stderr:\n{}",
                    self.stderr_text()
                );
            }
        }
        panic!(
            "timed out waiting for {what}; got {:?}; stderr:\n{}",
            self.messages,
            self.stderr_text()
        );
    }

    /// Count datagrams matching `pred` received during `window` (plus those already seen).
    pub fn count_messages(&mut self, window: Duration, pred: impl Fn(&str) -> bool) -> usize {
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        while start.elapsed() < window {
            if let Ok(n) = self.notify.recv(&mut buf) {
                self.messages
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        self.messages.iter().filter(|m| pred(m)).count()
    }

    fn wait_ready(mut self) -> Daemon {
        self.wait_message("READY=1", |m| m.lines().any(|l| l == "READY=1"));
        self
    }

    /// Send a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM and wait: (exit status, time to exit).
    pub fn stop(mut self) -> (ExitStatus, Duration) {
        // It may be exiting already (a TERM sent before): then `kill` fails, which is fine.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        let mut child = self.child.take().expect("child");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(20) {
                let threads = thread_states(child.id());
                let _ = child.kill();
                panic!(
                    "fimd did not exit within 20 s of SIGTERM\nthreads:\n{threads}\nstderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon has not exited (`Some(status)` once it has).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Wait up to `timeout` for the daemon to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Poll the daemon's stderr log until a line satisfies `pred`; returns that line.
    pub fn wait_message_in_stderr(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.stderr_text();
            if let Some(line) = text.lines().find(|l| pred(l)) {
                return line.to_string();
            }
            if let Some(status) = self.exited() {
                panic!("fimd exited ({status}) while waiting for {what}; stderr:\n{text}");
            }
            if start.elapsed() > DEADLINE {
                panic!("timed out waiting for {what}; stderr:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

/// Call `fetch` every 50 ms until `done` holds for its value; at [`DEADLINE`], panic with
/// the last value.
fn poll<T: std::fmt::Debug>(what: &str, fetch: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    let start = Instant::now();
    loop {
        let value = fetch();
        if done(&value) {
            return value;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}; last seen: {value:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each thread of `pid`: name, state and the kernel function it waits in (for a hang).
fn thread_states(pid: u32) -> String {
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return String::new();
    };
    tasks
        .flatten()
        .map(|t| {
            let state = read(t.path().join("status"))
                .lines()
                .find(|l| l.starts_with("State:"))
                .unwrap_or_default()
                .to_string();
            format!(
                "  {} {} wchan={}",
                read(t.path().join("comm")).trim(),
                state,
                read(t.path().join("wchan")).trim()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Find the one event of `kind` in `events`, if exactly one.
pub fn only<'a>(events: &'a [Value], kind: &str) -> Option<&'a Value> {
    let v: Vec<&Value> = events.iter().filter(|e| e["event"] == kind).collect();
    (v.len() == 1).then(|| v[0])
}

pub fn changed(e: &Value) -> Vec<String> {
    e["changed"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
