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
