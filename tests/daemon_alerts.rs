//! Alerts through the daemon: an alert whose sink is down survives a restart and is delivered
//! by the next run; a burst becomes a bounded number of requests.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn recv_n(rx: &std::sync::mpsc::Receiver<Seen>, n: usize, limit: Duration) -> Vec<Seen> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) => got.push(s),
            Err(_) => break,
        }
    }
    got
}

fn webhook_config(env: &Env, url: &str) {
    env.write_config(&format!(
        "{}\n[notify]\nbatch_window = \"1s\"\nbackoff_initial = \"1s\"\nbackoff_max = \"2s\"\n\n[notify.webhook]\nurl = \"{url}/hook\"\n",
        env.watch_table(&env.root)
    ));
}

#[test]
fn an_alert_for_a_down_sink_is_delivered_after_a_restart() {
    // The sink answers 503 twice (down), then 200.
    let (url, seen) = mock_http(vec![503, 503]);
    let env = Env::new();
    webhook_config(&env, &url);
    std::fs::write(env.root.join("app.conf"), "a=1\n").expect("write");
    let d = env.start();
    std::fs::write(env.root.join("app.conf"), "a=2\n").expect("write");
    let first = recv_n(&seen, 1, Duration::from_secs(20));
    assert_eq!(first.len(), 1, "the daemon tried the sink");
    let (status, _) = d.stop();
    assert!(status.success(), "SIGTERM exits 0");
    assert_eq!(
        env.status()["outbox_pending"],
        1,
        "the undelivered alert is kept"
    );
    let d = env.start();
    let rest = recv_n(&seen, 2, Duration::from_secs(30));
    assert!(!rest.is_empty(), "the restarted daemon retried");
    let delivered = rest.last().expect("a request");
    assert!(
        delivered.request_line.starts_with("POST /hook "),
        "{}",
        delivered.request_line
    );
    let body: serde_json::Value = serde_json::from_str(&delivered.body).expect("json body");
    let path = env.root.join("app.conf").display().to_string();
    assert!(
        body["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["path"] == path.as_str()),
        "{body}"
    );
    env.wait_status("outbox drained", |s| s["outbox_pending"] == 0);
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn a_burst_becomes_a_bounded_number_of_requests() {
    let (url, seen) = mock_http(vec![]);
    let env = Env::new();
    webhook_config(&env, &url);
    let d = env.start();
    let dir = env.root.join("burst");
    std::fs::create_dir(&dir).expect("mkdir");
    for i in 0..2000 {
        std::fs::write(dir.join(format!("f{i}.conf")), "x\n").expect("write");
    }
    // A writer stalled between create and write can make one file `added` then `modified`:
    // at least 2000 events, every one delivered.
    let st = env.wait_status("all alerts delivered", |s| {
        s["events"].as_i64().unwrap_or(0) >= 2000 && s["outbox_pending"] == 0
    });
    let events = st["events"].as_i64().unwrap_or(0) as usize;
    let mut requests = Vec::new();
    while let Ok(s) = seen.try_recv() {
        requests.push(s);
    }
    let delivered: usize = requests
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .map(|b| b["events"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(delivered, events, "every event delivered once");
    eprintln!("burst of 2000 changes: {} webhook requests", requests.len());
    assert!(
        requests.len() <= 20,
        "bounded: {} requests for 2000 changes",
        requests.len()
    );
    let (status, _) = d.stop();
    assert!(status.success());
}

// ---------------------------------------------------------------------------------------
// Issue #16 item 4: parked alerts are sent again once the sink's configuration is fixed.

/// Where the test sink's old URL redirects to (a sink that moved).
const MOVED_TO: &str = "https://hooks.example.net/new-hook";

/// `/old...` answers 302 to [`MOVED_TO`]; anything else is accepted.
fn moved_sink() -> (String, std::sync::mpsc::Receiver<Seen>) {
    mock_http_fn(|req| match req.target().starts_with("/old") {
        true => Answer::status(302).header("Location", MOVED_TO),
        false => Answer::status(200).body("ok"),
    })
}

fn hook_config(env: &Env, url: &str, path: &str) {
    env.write_config(&format!(
        "{}\n[notify]\nbatch_window = \"1s\"\nbackoff_initial = \"1s\"\nbackoff_max = \"2s\"\n\n[notify.webhook]\nurl = \"{url}{path}\"\n",
        env.watch_table(&env.root)
    ));
}

/// Event ids of every real (not notify-test) delivery seen so far on `path`.
fn delivered_ids(
    all: &mut Vec<Seen>,
    seen: &std::sync::mpsc::Receiver<Seen>,
    path: &str,
) -> Vec<i64> {
    while let Ok(s) = seen.try_recv() {
        all.push(s);
    }
    let mut ids = Vec::new();
    for s in all.iter().filter(|s| s.target() == path) {
        if s.header("x-fimd-test").is_some() {
            continue;
        }
        let body: serde_json::Value = serde_json::from_str(&s.body).expect("json body");
        for e in body["events"].as_array().expect("events") {
            ids.push(e["id"].as_i64().expect("id"));
        }
    }
    ids.sort_unstable();
    ids
}

fn assert_once(ids: &[i64], want: &[i64]) {
    let mut unique = ids.to_vec();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "an alert was delivered twice: {ids:?}"
    );
    for id in want {
        assert!(ids.contains(id), "event {id} never delivered: {ids:?}");
    }
}

fn event_ids(env: &Env) -> Vec<i64> {
    env.events()
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}

#[test]
fn parked_alerts_are_delivered_once_after_the_url_is_fixed_and_reloaded() {
    let (url, seen) = moved_sink();
    let env = Env::new();
    hook_config(&env, &url, "/old-hook");
    let d = env.start();
    std::fs::write(env.root.join("a.conf"), "a=1\n").expect("write");
    std::fs::write(env.root.join("b.conf"), "b=1\n").expect("write");
    let st = env.wait_status("the 302 parked every alert", |s| {
        s["events"].as_i64().unwrap_or(0) >= 2
            && s["outbox_parked"] == s["events"]
            && s["outbox_pending"] == 0
    });
    let parked = st["outbox_parked"].as_i64().expect("parked");
    // status says how many are parked and why; the redirect names its target.
    let why = format!("sink answered 302 to {MOVED_TO}: fix the URL");
    assert_eq!(st["parked"][0]["sink"], "webhook", "{st}");
    assert_eq!(st["parked"][0]["rows"], parked, "{st}");
    assert!(
        st["parked"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&why),
        "{st}"
    );
    let text = env.fimd().arg("status").output().expect("status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("parked for webhook: {parked} ({why}")),
        "{text}"
    );
    assert!(d.stderr_text().contains(&why), "{}", d.stderr_text());

    // Fix the URL and reload: every parked alert is delivered, exactly once.
    hook_config(&env, &url, "/new-hook");
    d.signal("HUP");
    env.wait_status("the parked alerts were delivered", |s| {
        s["outbox_parked"] == 0 && s["outbox_pending"] == 0
    });
    let want = event_ids(&env);
    // One more change after the reload, delivered too: nothing parked comes back twice.
    std::fs::write(env.root.join("c.conf"), "c=1\n").expect("write");
    env.wait_status("the next alert was delivered", |s| {
        s["events"].as_i64().unwrap_or(0) > want.len() as i64 && s["outbox_pending"] == 0
    });
    let mut all = Vec::new();
    let ids = delivered_ids(&mut all, &seen, "/new-hook");
    assert_once(&ids, &event_ids(&env));
    assert!(want.iter().all(|id| ids.contains(id)));
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn parked_alerts_are_requeued_by_notify_test_and_at_start() {
    let (url, seen) = moved_sink();
    let env = Env::new();
    hook_config(&env, &url, "/old-hook");
    std::fs::write(env.root.join("a.conf"), "a=1\n").expect("write");
    let run = |args: &[&str]| {
        let o = env.fimd().args(args).output().expect("run fimd");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            o.status.code().unwrap_or(-1),
            text(&o.stdout),
            text(&o.stderr),
        )
    };
    assert_eq!(run(&["init"]).0, 0);
    std::fs::write(env.root.join("a.conf"), "a=2\n").expect("write");
    let (code, _, err) = run(&["check"]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(env.status()["outbox_parked"], 1);

    // A failing test alert says how many are parked and why, and requeues nothing.
    let why = format!("sink answered 302 to {MOVED_TO}: fix the URL");
    let (code, out, _) = run(&["notify-test"]);
    assert_eq!(code, 18, "{out}");
    assert!(
        out.contains(&format!("webhook: FAILED HTTP 302: {why}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("webhook: 1 alert parked ({why}")),
        "{out}"
    );
    assert_eq!(env.status()["outbox_parked"], 1);

    // After the fix, a successful test alert requeues and sends them.
    hook_config(&env, &url, "/new-hook");
    let (code, out, err) = run(&["notify-test"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("webhook: OK HTTP 200"), "{out}");
    assert!(
        out.contains(&format!(
            "webhook: 1 parked alert requeued (parked because: {why}"
        )),
        "{out}"
    );
    assert!(
        out.contains("requeued alerts: 1 delivered, 0 still queued"),
        "{out}"
    );
    let mut all = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        delivered_ids(&mut all, &seen, "/new-hook").len() == 1
    }));

    // Parked again under the old URL; the fix is picked up when the daemon starts.
    hook_config(&env, &url, "/old-hook");
    std::fs::write(env.root.join("a.conf"), "a=3\n").expect("write");
    assert_eq!(run(&["check"]).0, 4);
    assert_eq!(env.status()["outbox_parked"], 1);
    hook_config(&env, &url, "/new-hook");
    let d = env.start();
    env.wait_status("the parked alert was delivered at start", |s| {
        s["outbox_parked"] == 0 && s["outbox_pending"] == 0
    });
    let (status, _) = d.stop();
    assert!(status.success());
    let ids = delivered_ids(&mut all, &seen, "/new-hook");
    assert_once(&ids, &event_ids(&env));
    assert_eq!(ids.len(), 2, "{ids:?}");
}

// ---------------------------------------------------------------------------------------
// Issue #16 item 5: every form of every secret is scrubbed, whatever a sink echoes back.

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `%XX` decoded (what a server shows of the URL it received).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = std::str::from_utf8(b.get(i + 1..i + 3).unwrap_or_default())
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (x, _) => {
                out.push(x);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A sink that refuses with 401 and echoes, in the body, each form of the credentials it was
/// sent: the bare token after the auth scheme, the whole header, a Basic pair decoded and its
/// password, the API key header, and the request target raw and decoded.
fn echoing_sink() -> (String, std::sync::mpsc::Receiver<Seen>) {
    mock_http_fn(|req| {
        use base64::Engine;
        let mut said = Vec::new();
        if let Some(auth) = req.header("authorization") {
            let (scheme, token) = auth.split_once(' ').unwrap_or(("", auth.as_str()));
            said.push(format!("invalid api token: {token}"));
            if scheme.eq_ignore_ascii_case("basic") {
                let pair = base64::engine::general_purpose::STANDARD
                    .decode(token)
                    .map(|p| String::from_utf8_lossy(&p).into_owned())
                    .unwrap_or_default();
                let password = pair.split_once(':').map(|(_, p)| p.to_string());
                said.push(format!("password {}", password.unwrap_or_default()));
                said.push(format!("user:password {pair}"));
            }
            said.push(format!("header {auth}"));
        }
        if let Some(key) = req.header("x-api-key") {
            said.push(format!("bad key {key}"));
        }
        said.push(format!("for {}", unescape(req.target())));
        said.push(format!("raw {}", req.target()));
        Answer::status(401).body(&said.join("; "))
    })
}

#[test]
fn no_form_of_a_secret_reaches_the_log_the_database_or_command_output() {
    let (slack, slack_seen) = echoing_sink();
    let (teams, teams_seen) = echoing_sink();
    let (jira, jira_seen) = echoing_sink();
    let (sn, sn_seen) = echoing_sink();
    let (r7, r7_seen) = echoing_sink();
    let (hook, hook_seen) = echoing_sink();
    let teams = teams.replace("http://", "http://teamsuser:TEAMSPASSMARK@");
    let env = Env::new();
    env.write_config(&format!(
        r#"{watch}
[notify]
batch_window = "1s"

[notify.slack]
webhook_url = "{slack}/services/T0/B0/SLACKMARK77"

[notify.teams]
webhook_url = "{teams}/workflows/run?api-version=1&sig=TEAMS%2FSIG%2BMARK"

[notify.jira]
url = "{jira}"
user = "jirauser"
api_token = "JIRATOKENMARK"
project_key = "SEC"

[notify.servicenow]
url = "{sn}"
user = "snuser"
password = "SNPASSMARK"

[notify.rapid7]
api_key = "R7KEYMARK01"
url = "{r7}/connect/v1/workflows/R7WORKFLOWMARK9/events/execute"

[notify.webhook]
url = "{hook}/hook?token=HOOKQUERYMARK"
headers = {{ Authorization = "Bearer HOOKTOKENMARK" }}
secret = "HOOKHMACMARK"
"#,
        watch = env.watch_table(&env.root)
    ));
    let markers: Vec<String> = [
        "SLACKMARK77",
        "TEAMSPASSMARK",
        "TEAMS/SIG+MARK",
        "TEAMS%2FSIG%2BMARK",
        "JIRATOKENMARK",
        "SNPASSMARK",
        "R7KEYMARK01",
        "R7WORKFLOWMARK9",
        "HOOKQUERYMARK",
        "HOOKTOKENMARK",
        "HOOKHMACMARK",
    ]
    .iter()
    .map(|m| m.to_string())
    .chain(
        [
            "teamsuser:TEAMSPASSMARK",
            "jirauser:JIRATOKENMARK",
            "snuser:SNPASSMARK",
        ]
        .iter()
        .map(|pair| b64(pair)),
    )
    .collect();
    let assert_clean = |what: &str, text: &[u8]| {
        for m in &markers {
            assert!(
                !contains(text, m),
                "{what} leaks {m}:\n{}",
                String::from_utf8_lossy(text)
            );
        }
    };

    let d = env.start();
    std::fs::write(env.root.join("app.conf"), "a=1\n").expect("write");
    env.wait_status("every sink refused and parked its alert", |s| {
        s["outbox_parked"] == 6 && s["outbox_pending"] == 0
    });
    // Each sink was sent its secrets, so each echo carried them back.
    let first = |rx: &std::sync::mpsc::Receiver<Seen>| {
        rx.recv_timeout(Duration::from_secs(5)).expect("a request")
    };
    let hook_req = first(&hook_seen);
    assert_eq!(
        hook_req.header("authorization").as_deref(),
        Some("Bearer HOOKTOKENMARK")
    );
    assert!(hook_req.target().contains("HOOKQUERYMARK"));
    let basic =
        |user: &str, password: &str| format!("Basic {}", b64(&format!("{user}:{password}")));
    assert_eq!(
        first(&teams_seen).header("authorization"),
        Some(basic("teamsuser", "TEAMSPASSMARK")),
        "URL userinfo travels as a Basic header"
    );
    assert_eq!(
        first(&jira_seen).header("authorization"),
        Some(basic("jirauser", "JIRATOKENMARK"))
    );
    assert_eq!(
        first(&sn_seen).header("authorization"),
        Some(basic("snuser", "SNPASSMARK"))
    );
    assert_eq!(
        first(&r7_seen).header("x-api-key").as_deref(),
        Some("R7KEYMARK01")
    );
    assert!(first(&slack_seen).target().contains("SLACKMARK77"));

    // The database file and its WAL, while the daemon holds them open.
    let wal = env.db.with_extension("db-wal");
    let wal_bytes = std::fs::read(&wal).expect("the WAL exists while the daemon runs");
    assert!(!wal_bytes.is_empty());
    assert_clean("the WAL", &wal_bytes);
    assert_clean("the database", &std::fs::read(&env.db).expect("db"));
    let errors: Vec<String> = env.status()["parked"]
        .as_array()
        .expect("parked")
        .iter()
        .map(|p| p["last_error"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(errors.len(), 6, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.starts_with("HTTP 401: ") && e.contains("**REDACTED**")),
        "the echo is stored, redacted: {errors:?}"
    );

    // Command output: notify-test (each sink refuses again) and status.
    for args in [
        &["notify-test"][..],
        &["status"],
        &["status", "--json"],
        &["config-check"],
    ] {
        let o = env.fimd().args(args).output().expect("run");
        assert_clean(&format!("{args:?} stdout"), &o.stdout);
        assert_clean(&format!("{args:?} stderr"), &o.stderr);
        if args == ["notify-test"] {
            let out = String::from_utf8_lossy(&o.stdout);
            assert_eq!(out.matches("FAILED HTTP 401").count(), 6, "{out}");
            assert!(out.contains("**REDACTED**"), "{out}");
        }
    }
    let log = d.stderr_text();
    assert!(log.contains("**REDACTED**"), "{log}");
    assert_clean("the daemon log", log.as_bytes());
    let (status, _) = d.stop();
    assert!(status.success());
    assert_clean(
        "the database after exit",
        &all_bytes_under(env.db.parent().expect("dir")),
    );
}
