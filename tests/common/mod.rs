//! Shared test helpers: a temp tree with its own config and database, and a `fimd` runner
//! with a clean environment (no notifier variables, no systemd variables).
#![allow(dead_code)]

mod daemon;
pub mod debs;
pub mod rpms;
#[allow(unused_imports)]
pub use daemon::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct TempTree {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub config: PathBuf,
    pub db: PathBuf,
}

impl TempTree {
    /// A tree at `<tmp>/tree`, a config watching it with `watch_extra` appended to its
    /// `[[watch]]` table, and `extra` appended to the file.
    pub fn new(watch_extra: &str, extra: &str) -> TempTree {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(dir.path()).expect("canonical tempdir");
        let root = base.join("tree");
        std::fs::create_dir(&root).expect("mkdir tree");
        let db = base.join("state/fimd.db");
        let config = base.join("fimd.toml");
        let t = TempTree {
            dir,
            root,
            config,
            db,
        };
        t.write_config(watch_extra, extra);
        t
    }

    pub fn write_config(&self, watch_extra: &str, extra: &str) {
        let text = format!(
            "[daemon]\ndatabase = {db:?}\nhost = \"testhost\"\n\n[[watch]]\npath = {root:?}\n{watch_extra}\n\n[users]\nauthorized_keys = false\n\n{extra}\n",
            db = self.db,
            root = self.root
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir -p");
        }
        std::fs::write(&p, content).expect("write file");
        p
    }

    pub fn cmd(&self) -> Command {
        let mut c = fimd();
        c.arg("--config").arg(&self.config);
        c
    }

    /// Run `fimd --config <cfg> ARGS`.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().expect("run fimd"))
    }

    pub fn init(&self) {
        let r = self.run(&["init"]);
        assert_eq!(r.code, 0, "init failed: {}", r.stderr);
    }

    /// `check --json`: (exit code, events).
    pub fn check_json(&self) -> (i32, Vec<serde_json::Value>) {
        let r = self.run(&["check", "--json"]);
        assert!(r.code < 8, "check failed ({}): {}", r.code, r.stderr);
        (r.code, r.json_lines())
    }
}

/// `fimd` with an environment that cannot leak into the test.
pub fn fimd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fimd"));
    for var in [
        "SERVICENOW_INSTANCE",
        "SERVICENOW_USER",
        "SERVICENOW_PASSWORD",
        "RAPID7_API_KEY",
        "RAPID7_WORKFLOW_ID",
        "JIRA_URL",
        "JIRA_USER",
        "JIRA_API_TOKEN",
        "JIRA_PROJECT_KEY",
        "SLACK_WEBHOOK_URL",
        "TEAMS_WEBHOOK_URL",
        "CREDENTIALS_DIRECTORY",
        "JOURNAL_STREAM",
        "INVOCATION_ID",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "RUST_LOG",
        "FIMD_CONFIG",
    ] {
        c.env_remove(var);
    }
    c
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

/// Find one event by kind and path suffix.
pub fn find<'a>(
    events: &'a [serde_json::Value],
    kind: &str,
    path_suffix: &str,
) -> Option<&'a serde_json::Value> {
    events.iter().find(|e| {
        e["event"] == kind && e["path"].as_str().is_some_and(|p| p.ends_with(path_suffix))
    })
}

/// Every byte of every file under `dir` (database, WAL, SHM).
pub fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_file() {
            out.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Poll `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// One HTTP request as a tiny blocking mock server on 127.0.0.1 saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request_line: String,
    pub headers: String,
    pub body: String,
}

/// Serve `statuses` in turn (then 200) on 127.0.0.1:<random>; returns (base URL, receiver).
pub fn mock_http(statuses: Vec<u16>) -> (String, std::sync::mpsc::Receiver<Seen>) {
    let statuses = std::sync::Mutex::new(statuses.into_iter());
    mock_http_fn(move |_| {
        let status = statuses
            .lock()
            .ok()
            .and_then(|mut s| s.next())
            .unwrap_or(200);
        Answer::status(status).body("ok")
    })
}

/// What [`mock_http_fn`]'s responder answers.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            ..Answer::default()
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn body(mut self, body: &str) -> Answer {
        self.body = body.to_string();
        self
    }
}

impl Seen {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
    /// The request target (path and query).
    pub fn target(&self) -> &str {
        self.request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
    }
}

/// An HTTP server on 127.0.0.1:<random> answering each request with `respond(request)`;
/// returns (base URL, receiver of every request seen).
pub fn mock_http_fn(
    respond: impl Fn(&Seen) -> Answer + Send + 'static,
) -> (String, std::sync::mpsc::Receiver<Seen>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind mock");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut headers = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push_str(&line);
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let seen = Seen {
                request_line: request_line.trim().to_string(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let answer = respond(&seen);
            let mut reply = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                answer.status,
                answer.body.len()
            );
            for (n, v) in &answer.headers {
                reply.push_str(&format!("{n}: {v}\r\n"));
            }
            reply.push_str("\r\n");
            reply.push_str(&answer.body);
            let _ = reader.get_mut().write_all(reply.as_bytes());
            if tx.send(seen).is_err() {
                break;
            }
        }
    });
    (url, rx)
}

/// Whether a test that needs privileges can run here. When it cannot: a failure if `require`
/// (an environment variable CI sets) is set, otherwise a skip with `why` on stderr.
pub fn can_run(usable: bool, require: &str, why: &str) -> bool {
    if !usable {
        assert!(
            std::env::var_os(require).is_none(),
            "{require} is set but this test cannot run: {why}"
        );
        eprintln!("skipped: {why}");
    }
    usable
}
