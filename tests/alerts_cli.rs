//! Alerts through the real binary: `check` delivers to a sink before it exits, credentials from
//! the environment never show up in output or the database, `notify-test` reports per sink.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn check_delivers_to_the_webhook_and_keeps_tokens_secret() {
    let (url, seen) = mock_http(vec![]);
    let t = TempTree::new(
        "",
        &format!(
            "[notify]\nbatch_window = \"1s\"\n[notify.webhook]\nurl = \"{url}/hook\"\nheaders = {{ Authorization = \"Bearer TOKEN_MARKER_b33f\" }}\n"
        ),
    );
    t.write("a.conf", "1\n");
    t.init();
    t.write("a.conf", "2\n");
    // A Slack URL from the environment: it is a credential and must never be printed.
    let r = Run::from(
        t.cmd()
            .env(
                "SLACK_WEBHOOK_URL",
                format!("{url}/services/T0/B0/SLACK_MARKER_c0ffee"),
            )
            .args(["check", "--json"])
            .output()
            .expect("run"),
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    let mut got = Vec::new();
    while let Ok(s) = seen.recv_timeout(Duration::from_secs(10)) {
        got.push(s);
        if got.len() == 2 {
            break;
        }
    }
    assert_eq!(got.len(), 2, "one request per sink: {got:?}");
    let hook = got
        .iter()
        .find(|s| s.request_line.starts_with("POST /hook "))
        .expect("webhook request");
    assert!(
        hook.headers.contains("Bearer TOKEN_MARKER_b33f"),
        "{}",
        hook.headers
    );
    let body: serde_json::Value = serde_json::from_str(&hook.body).expect("json body");
    assert_eq!(body["host"], "testhost");
    assert_eq!(body["events"][0]["event"], "modified");
    assert_eq!(
        body["events"][0]["path"],
        t.path("a.conf").display().to_string()
    );
    let slack = got
        .iter()
        .find(|s| {
            s.request_line
                .starts_with("POST /services/T0/B0/SLACK_MARKER_c0ffee ")
        })
        .expect("slack request");
    assert!(
        serde_json::from_str::<serde_json::Value>(&slack.body).expect("json")["text"].is_string()
    );
    for marker in ["TOKEN_MARKER", "SLACK_MARKER"] {
        assert!(
            !r.stdout.contains(marker) && !r.stderr.contains(marker),
            "{marker} printed"
        );
        assert!(
            !contains(&all_bytes_under(t.db.parent().expect("dir")), marker),
            "{marker} stored"
        );
    }
    let status = t.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
    assert_eq!(v["outbox_pending"], 0, "{}", status.stdout);
    let cc = t.run(&["config-check"]);
    assert!(
        cc.stdout.contains("webhook") && !cc.stdout.contains("TOKEN_MARKER"),
        "{}",
        cc.stdout
    );
}

#[test]
fn notify_test_reports_each_sink() {
    let (url, seen) = mock_http(vec![200, 500]);
    let t = TempTree::new("", &format!("[notify.webhook]\nurl = \"{url}/ok\"\n"));
    let r = t.run(&["notify-test"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("webhook: OK"), "{}", r.stdout);
    assert!(seen.recv_timeout(Duration::from_secs(5)).is_ok());
    let r = t.run(&["notify-test"]);
    assert_eq!(
        r.code, 18,
        "a failing sink makes notify-test fail: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("webhook: FAILED") && r.stdout.contains("500"),
        "{}",
        r.stdout
    );
    let t = TempTree::new("", "");
    assert_eq!(t.run(&["notify-test"]).code, 17, "no sink configured");
    let t = TempTree::new("", "[notify.webhook]\nurl = \"http://example.com/hook\"\n");
    let r = t.run(&["config-check"]);
    assert_eq!(r.code, 17, "plain http only to loopback: {}", r.stderr);
}

#[test]
fn check_sends_at_once_without_waiting_out_the_batch_window() {
    let (url, seen) = mock_http(vec![]);
    // The shipped batch window (10 s): two checks in a row must not wait for it.
    let t = TempTree::new(
        "",
        &format!("[notify]\nbatch_window = \"10s\"\n[notify.webhook]\nurl = \"{url}/hook\"\n"),
    );
    t.write("a.conf", "1\n");
    t.init();
    for (i, content) in ["2\n", "3\n"].iter().enumerate() {
        t.write("a.conf", content);
        let started = std::time::Instant::now();
        let r = t.run(&["check"]);
        let took = started.elapsed();
        assert_eq!(r.code, 4, "{}", r.stderr);
        assert!(
            took < Duration::from_secs(5),
            "check {i} took {took:?}: {}",
            r.stderr
        );
        let got = seen
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_else(|_| panic!("check {i} delivered nothing: {}", r.stderr));
        assert!(got.request_line.starts_with("POST /hook "), "{got:?}");
    }
}
